"""`hub worker`: run the queue's jobs (with Redis)."""

from __future__ import annotations

import click

from hub import queue
from hub.cli import App, pass_app
from hub.i18n import gettext as _


@click.command("worker")
@click.option("--queue", "queues", multiple=True,
              help="Queues to listen on (default: all four: high, default, low, and webhooks, where webhook "
                   "deliveries wait).")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@pass_app
def worker_cmd(app: App, queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker (needs HUB_REDIS_URL); SIGTERM stops it once the message in hand is sent."""
    if not app.settings.redis_url:
        raise click.ClickException(_("HUB_REDIS_URL is not set; without Redis, jobs run in-process and need no worker"))
    app.ready_engine()
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        queue.work(app.settings, queues or queue.DEFAULT_QUEUES, burst=burst)
    except RedisConnectionError as exc:
        raise click.ClickException(_("cannot reach Redis at HUB_REDIS_URL: %(error)s",
                                     error=str(exc).splitlines()[0])) from None
