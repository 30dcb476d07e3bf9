"""`hub init`: create or upgrade the database."""

from __future__ import annotations

import click

from hub import migrations
from hub.cli import App, pass_app
from hub.config import ensure_secret_key
from hub.db import shown_url


@click.command("init")
@pass_app
def init(app: App) -> None:
    """Create or upgrade the database; safe to run again."""
    settings = ensure_secret_key(app.settings)
    if settings is not app.settings:
        click.echo(f"Generated HUB_SECRET_KEY and stored it in {settings.config_path}")
    before = migrations.current_revision(app.engine)
    migrations.upgrade(app.engine)
    after = migrations.current_revision(app.engine)
    state = "already up to date" if before == after else ("created" if before is None else "upgraded")
    click.echo(f"Database {shown_url(settings.database_url)}: {state} (schema {after})")
