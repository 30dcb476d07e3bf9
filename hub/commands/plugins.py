"""`hub plugins`: what is loaded, from where, implementing which hooks."""

from __future__ import annotations

import click

from hub import plugins
from hub.cli import emit_json


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True)
def plugins_cmd(as_json: bool) -> None:
    """Installed plugins and the hooks each implements."""
    described = plugins.describe()
    if as_json:
        emit_json(described)
        return
    for p in described:
        version = f" {p['version']}" if p["version"] else ""
        click.echo(f"{p['name']}{version} [{p['kind']}]: {', '.join(p['hooks']) or '-'}")
