"""`hub connect shop` and `hub sandbox shop`."""

from __future__ import annotations

import click

from hub.api import App, pass_app

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
        raise click.BadParameter("the token is empty", param_hint="--token")
    client = client_for(settings, url=url, token=token.strip(), retries=1)  # the user is waiting: fail fast
    try:
        status = client.get("/api/status")
    except ShopError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()
    save_connection(settings, engine, url, token.strip())
    counts = ", ".join(f"{status[k]} {k}" for k in ("customers", "orders") if isinstance(status.get(k), int))
    click.echo(f"Connected to {status.get('shop') or 'the shop'} at {client.where}"
               + (f" ({counts})" if counts else "") + ". Sync it with: hub sync shop")


@click.command("shop")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8031, show_default=True)
@click.option("--people", type=click.IntRange(0), default=200, show_default=True, help="How many customers it holds.")
@click.option("--seed", type=int, default=1, show_default=True)
def sandbox(host: str, port: int, people: int, seed: int) -> None:
    """A local web shop with sample customers and orders, speaking the shop protocol (Ctrl+C stops it)."""
    from hub_shop.emulator import serve

    serve(host=host, port=port, people=people, seed=seed, print_fn=click.echo)
