"""`hub connect shop` and `hub sandbox shop`."""

from __future__ import annotations

from typing import Any

import click

from hub.api import App, format_number, ngettext, pass_app
from hub.api import gettext as _

from hub_shop.client import ShopError, check_url, client_for, save_connection


@click.command("shop")
@click.option("--url", required=True, metavar="URL", help="The shop's API address, e.g. https://shop.example.ru.")
@click.option("--token", prompt="API token", hide_input=True,
              help="The shop's API token (asked for when left out, so it stays out of the shell history).")
@pass_app
def connect(app: App, url: str, token: str) -> None:
    """Connect a web shop: checked with one call, then stored encrypted with HUB_SECRET_KEY."""
    settings, engine = app.settings, app.ready_engine()
    try:
        url = check_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    if not token.strip():
        raise click.BadParameter(_("the token is empty"), param_hint="--token")
    client = client_for(settings, url=url, token=token.strip(), retries=1)  # the user is waiting: fail fast
    try:
        status = client.get("/api/status")
    except ShopError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()
    save_connection(settings, engine, url, token.strip())
    click.echo(connected(status, client.where))


def connected(status: dict[str, Any], where: str) -> str:
    """What `hub connect shop` says once the shop answered: its name, address and size."""
    counts = []
    if isinstance(status.get("customers"), int):
        counts.append(ngettext("%(num)s customer", "%(num)s customers", status["customers"],
                               num=format_number(status["customers"])))
    if isinstance(status.get("orders"), int):
        counts.append(ngettext("%(num)s order", "%(num)s orders", status["orders"],
                               num=format_number(status["orders"])))
    shop = status.get("shop") or _("the shop")
    if counts:
        return _("Connected to %(shop)s at %(where)s (%(counts)s). Sync it with: hub sync shop", shop=shop,
                 where=where, counts=", ".join(counts))
    return _("Connected to %(shop)s at %(where)s. Sync it with: hub sync shop", shop=shop, where=where)


@click.command("shop")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8031, show_default=True)
@click.option("--people", type=click.IntRange(0), default=200, show_default=True, help="How many customers it holds.")
@click.option("--seed", type=int, default=1, show_default=True)
def sandbox(host: str, port: int, people: int, seed: int) -> None:
    """A local web shop with sample customers and orders, speaking the shop protocol (Ctrl+C stops it)."""
    from hub_shop.emulator import serve

    serve(host=host, port=port, people=people, seed=seed, print_fn=click.echo)
