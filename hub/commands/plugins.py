"""`hub plugins`: what is loaded, from where, implementing which hooks."""

from __future__ import annotations

import click

from hub import plugins
from hub.cli import emit_json
from hub.i18n import N_
from hub.i18n import gettext as _


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def plugins_cmd(as_json: bool) -> None:
    """Installed plugins and the hooks each implements."""
    described = plugins.describe()
    if as_json:
        emit_json(described)
        return
    for p in described:
        version = f" {p['version']}" if p["version"] else ""
        click.echo(f"{p['name']}{version} [{_kind(p['kind'])}]: {', '.join(p['hooks']) or '-'}")


# How a plugin came to be loaded, as people read it; --json keeps the English word.
_KINDS = {"core": N_("core"), "installed": N_("installed"), "directory": N_("from the plugins directory"),
          "registered": N_("registered")}


def _kind(kind: str) -> str:
    return _(_KINDS[kind]) if kind in _KINDS else kind
