"""`hub admin`: serve the admin and the public routes."""

from __future__ import annotations

import click

from hub.cli import App, address_refused, pass_app
from hub.i18n import gettext as _


@click.command("admin")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True, help="The port to listen on.")
@click.option("--threads", type=click.IntRange(1, 256),
              help="Requests served at once, each holding one database connection while it runs "
                   "(default: 4 on SQLite, 8 on PostgreSQL).")
@pass_app
def admin_cmd(app: App, host: str, port: int, threads: int | None) -> None:
    """Serve the admin and the public routes (webhook receivers, unsubscribe links) with waitress."""
    import logging

    from hub import wsgi

    app.ready_engine()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("hub.access", "waitress"):
        logging.getLogger(name).setLevel(logging.INFO)
    # "Task queue depth is N" for every request that waits for a free thread: normal in a burst, noise in a log.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    threads = threads or wsgi.default_threads(app.settings.database_url)
    def ready(url: str) -> None:
        click.echo(_("Hub admin: %(url)s/ (waitress, %(threads)s threads; Ctrl+C stops it)", url=url,
                     threads=threads), err=True)

    try:
        wsgi.serve(wsgi.create(app.settings), host, port, threads=threads, ready=ready)
    except wsgi.PortInUse as exc:
        raise click.ClickException(address_refused(host, port, exc.errno)) from None
