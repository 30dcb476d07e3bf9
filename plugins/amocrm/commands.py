"""`hub connect amocrm` and `hub sandbox amocrm`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from hub.api import format_moment, get_engine, load_settings
from hub.api import gettext as _
from plugins.amocrm import tokens
from plugins.amocrm.client import AmoError, check_base_url
from plugins.amocrm.source import client_for


def webhook_url(settings: Any, secret: str) -> str:
    """The address to give amoCRM: `public_url` (hub.toml / HUB_PUBLIC_URL) + the route, or just the route."""
    path = f"/hooks/amocrm/{secret}"
    base = str(settings.extra.get("public_url") or "").rstrip("/")
    return base + path if base else path


def account_details(settings: Any) -> dict[str, Any]:
    """GET /api/v4/account through the stored connection (refreshing if needed), kept with it."""
    engine = get_engine(settings.database_url)
    client = client_for(settings)
    body = client.get("/api/v4/account") or {}
    account = {k: body.get(k) for k in ("id", "name", "subdomain", "currency", "customers_mode") if k in body}
    tokens.update(engine, settings, account=account)
    return account


def connect(settings: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Store a new connection (from tokens.exchange_code, oauth_connection or long_lived_connection),
    check it against the account and keep the account's details; returns them."""
    tokens.save(get_engine(settings.database_url), settings, data)
    return account_details(settings)


@click.command("amocrm")
@click.option("--base-url", help="The account's address, e.g. https://SUBDOMAIN.amocrm.ru (http only for the sandbox).")
@click.option("--client-id", help="The integration's ID (Settings → Integrations → your integration → Keys).")
@click.option("--client-secret", help="The integration's secret key.")
@click.option("--redirect-uri", help="The redirect URI registered with the integration.")
@click.option("--code", help="An authorization code (works once, for 20 minutes).")
@click.option("--access-token", help="An access token, given together with --refresh-token.")
@click.option("--refresh-token", help="The refresh token issued with --access-token.")
@click.option("--long-lived-token", help="A long-lived token of a private integration (never refreshed).")
@click.option("--refresh", "refresh_now", is_flag=True,
              help="Refresh the stored token pair now (a scheduler can run this to keep an idle connection alive).")
def connect_amocrm(base_url: str | None, client_id: str | None, client_secret: str | None, redirect_uri: str | None,
                   code: str | None, access_token: str | None, refresh_token: str | None,
                   long_lived_token: str | None, refresh_now: bool) -> None:
    """Connect an amoCRM account: an authorization code, a token pair, or a long-lived token.

    The tokens are stored encrypted with HUB_SECRET_KEY. Access tokens live a
    day and refresh tokens three months; Hub refreshes them itself, one worker
    at a time.
    """
    settings = load_settings()
    engine = get_engine(settings.database_url)
    try:
        if refresh_now:
            if any((base_url, client_id, client_secret, redirect_uri, code, access_token, refresh_token,
                    long_lived_token)):
                raise click.UsageError(_("--refresh takes no other option; it refreshes the stored connection"))
            if not tokens.keep_alive(engine, settings, force=True):
                raise click.ClickException(_("the amoCRM connection uses a long-lived token, which is never "
                                             "refreshed"))
            data, _version = tokens.load(engine, settings)
            good_until = format_moment(dt.datetime.fromisoformat(data["refresh_expires_at"]), settings.tz, zone=True)
            click.echo(_("Refreshed the amoCRM tokens for %(url)s; the refresh token is good until %(moment)s.",
                         url=data["base_url"], moment=good_until))
            return
        data = _connection(base_url, client_id, client_secret, redirect_uri, code, access_token, refresh_token,
                           long_lived_token)
        account = connect(settings, data)
    except (AmoError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    stored, _version = tokens.load(engine, settings)
    name = account.get("subdomain") or account.get("name") or stored["base_url"]
    if stored["kind"] == "long_lived":
        click.echo(_("Connected to amoCRM account %(name)s (%(url)s) with a long-lived token, stored encrypted.",
                     name=name, url=stored["base_url"]))
    else:
        click.echo(_("Connected to amoCRM account %(name)s (%(url)s) with OAuth tokens (refreshed automatically), "
                     "stored encrypted.", name=name, url=stored["base_url"]))
    mode = account.get("customers_mode") or "disabled"
    modes = {"disabled": _("switched off (customers)"), "unavailable": _("not on this plan")}
    click.echo(_("Currency %(currency)s; Customers: %(customers)s.", currency=account.get("currency") or "RUB",
                 customers=modes.get(mode, mode)))
    url = webhook_url(settings, stored["webhook_secret"])
    click.echo(_("Webhook address for amoCRM (Settings → Integrations → Web hooks; contacts and leads: "
                 "added, changed, deleted, status changed):"))
    click.echo(f"  {url}")
    if url.startswith("/"):
        click.echo("  " + _("Prefix it with the public address of `hub admin`, or set public_url in hub.toml."))
    click.echo(_("Next: hub sync amocrm"))


def _connection(base_url: str | None, client_id: str | None, client_secret: str | None, redirect_uri: str | None,
                code: str | None, access_token: str | None, refresh_token: str | None,
                long_lived_token: str | None) -> dict[str, Any]:
    modes = [name for name, given in (("--code", code), ("--access-token/--refresh-token",
                                                         access_token or refresh_token),
                                      ("--long-lived-token", long_lived_token)) if given]
    if len(modes) != 1:
        if modes:
            raise click.UsageError(_("give exactly one of --code, --access-token with --refresh-token, "
                                     "or --long-lived-token (got %(given)s)", given=", ".join(modes)))
        raise click.UsageError(_("give exactly one of --code, --access-token with --refresh-token, "
                                 "or --long-lived-token"))
    if not base_url:
        raise click.UsageError(_("--base-url is required, e.g. https://SUBDOMAIN.amocrm.ru"))
    base_url = check_base_url(base_url)
    if long_lived_token:
        return tokens.long_lived_connection(base_url, long_lived_token, client_id=client_id,
                                            client_secret=client_secret, redirect_uri=redirect_uri)
    missing = [name for name, value in (("--client-id", client_id), ("--client-secret", client_secret),
                                        ("--redirect-uri", redirect_uri)) if not value]
    if missing:
        raise click.UsageError(_("%(missing)s required with %(mode)s (the integration's keys)",
                                 missing=", ".join(missing), mode=modes[0]))
    assert client_id and client_secret and redirect_uri
    if code:
        return tokens.exchange_code(base_url, client_id, client_secret, redirect_uri, code)
    if not (access_token and refresh_token):
        raise click.UsageError(_("--access-token and --refresh-token go together"))
    return tokens.oauth_connection(base_url, client_id, client_secret, redirect_uri,
                                   access_token=access_token, refresh_token=refresh_token)


@click.command("amocrm")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8025, show_default=True, help="Port to listen on.")
@click.option("--contacts", type=int, default=2000, show_default=True, help="Contacts to seed (with their leads).")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Seed of the sample data: the same seed, the same data.")
@click.option("--b2b", is_flag=True,
              help="Also hold companies whose employees share a switchboard and a role mailbox, a household "
                   "sharing a home line, customers who typed the hotline, and one person entered three ways.")
@click.option("--companies", type=click.IntRange(0, 1_000_000), default=None,
              help="How many companies the account holds (default: one per twelve people).")
@click.option("--activities", type=click.IntRange(0, 5_000_000), default=None,
              help="How many calls and tasks managers logged (default: two per person).")
def sandbox_amocrm(host: str, port: int, contacts: int, seed: int, b2b: bool, companies: int | None,
                   activities: int | None) -> None:
    """Run a local amoCRM emulator (API v4, OAuth, limits and quirks) with realistic data."""
    from plugins.amocrm import sandbox

    sandbox.serve(host=host, port=port, contacts=contacts, seed=seed, b2b=b2b, companies=companies,
                  activities=activities)
