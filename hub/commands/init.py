"""`hub init`: create or upgrade the database."""

from __future__ import annotations

import click

from hub import migrations
from hub.cli import App, pass_app
from hub.config import ensure_secret_key
from hub.db import shown_url
from hub.i18n import gettext as _


@click.command("init")
@pass_app
def init(app: App) -> None:
    """Create or upgrade the database; safe to run again."""
    settings = ensure_secret_key(app.settings)
    if settings is not app.settings:
        click.echo(_("Generated HUB_SECRET_KEY and stored it in %(path)s", path=settings.config_path))
    before = migrations.current_revision(app.engine)
    migrations.upgrade(app.engine)
    after = migrations.current_revision(app.engine)
    url = shown_url(settings.database_url)
    if before == after:
        line = _("Database %(url)s: already up to date (schema %(revision)s)", url=url, revision=after)
    elif before is None:
        line = _("Database %(url)s: created (schema %(revision)s)", url=url, revision=after)
    else:
        line = _("Database %(url)s: upgraded (schema %(revision)s)", url=url, revision=after)
    click.echo(line)
