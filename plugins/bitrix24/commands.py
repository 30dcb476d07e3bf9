"""`hub connect bitrix24` and `hub sandbox bitrix24`."""

from __future__ import annotations

from typing import Any

import click

from hub.api import App, pass_app, person_name
from hub.api import gettext as _
from plugins.bitrix24 import connection
from plugins.bitrix24.client import Bitrix24Error, check_webhook_url


@click.command("bitrix24")
@click.option("--webhook", metavar="URL", help="Incoming-webhook URL, https://PORTAL/rest/USER_ID/CODE/.")
@click.option("--client-id", help="OAuth: the app's client id (instead of --webhook).")
@click.option("--client-secret", help="OAuth: the app's client secret.")
@click.option("--code", help="OAuth: the authorization code from the app's redirect.")
@click.option("--access-token", help="OAuth: an access token you already have (with --refresh-token).")
@click.option("--refresh-token", help="OAuth: the refresh token that goes with --access-token.")
@click.option("--portal", metavar="URL", help="OAuth with --access-token: the portal, https://PORTAL/.")
@click.option("--oauth-url", default=connection.OAUTH_URL, show_default=True, help="OAuth token endpoint.")
@click.option("--application-token", help="Token Bitrix24 puts in every event (outgoing webhook or app), "
                                          "so the event receiver can tell real events from forged ones.")
@pass_app
def connect(app: App, webhook: str | None, client_id: str | None, client_secret: str | None, code: str | None,
            access_token: str | None, refresh_token: str | None, portal: str | None, oauth_url: str,
            application_token: str | None) -> None:
    """Connect a Bitrix24 portal by incoming webhook or OAuth app; checked with one call, stored encrypted."""
    settings, engine = app.settings, app.ready_engine()
    data: dict[str, Any]
    if webhook:
        try:
            data = {"kind": "webhook", "url": check_webhook_url(webhook)}
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--webhook") from None
    elif client_id and client_secret and code:
        tokens = _tokens(oauth_url, grant_type="authorization_code", client_id=client_id,
                                           client_secret=client_secret, code=code)
        data = {"kind": "oauth", "client_id": client_id, "client_secret": client_secret, "oauth_url": oauth_url,
                **tokens}
    elif client_id and client_secret and access_token and refresh_token and portal:
        data = {"kind": "oauth", "client_id": client_id, "client_secret": client_secret, "oauth_url": oauth_url,
                "access_token": access_token, "refresh_token": refresh_token,
                "client_endpoint": portal.rstrip("/") + "/rest/"}
    else:
        raise click.UsageError(_("give --webhook URL, or --client-id and --client-secret with --code "
                                 "(or with --access-token, --refresh-token and --portal)"))
    if application_token:
        data["application_token"] = application_token
    if data["kind"] == "oauth":
        # Stored first: a refresh during the check replaces the refresh token.
        connection.save(engine, settings, data)
    try:
        client = connection.client(settings, engine, None if data["kind"] == "oauth" else data)
        client.max_retries = 2  # a check the user is waiting for: fail in seconds, not minutes
        profile = client.call("profile").get("result") or {}
    except Bitrix24Error as exc:
        raise click.ClickException(str(exc)) from None
    if data["kind"] == "webhook":
        connection.save(engine, settings, data)
    click.echo(_("Connected to Bitrix24 %(host)s as %(who)s.", host=client.auth.host, who=user_name(profile)))
    if not application_token:
        click.echo(_("Events: add --application-token (from the outgoing webhook or the app) to accept events "
                     "at /hooks/bitrix24; until then the scheduled sync keeps Hub current."))
    click.echo(_("Next: hub sync bitrix24"))


def user_name(profile: dict[str, Any]) -> str:
    """The webhook's user as people call them ("Анна Соколова"), or their id when the portal names no one."""
    name = " ".join(person_name(profile.get(k)) or "" for k in ("NAME", "LAST_NAME")).strip()
    return name or _("user %(id)s", id=profile.get("ID"))


@click.command("bitrix24")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8024, show_default=True, help="Port to listen on.")
@click.option("--contacts", type=int, default=1000, show_default=True, help="How many people the portal holds.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seed of the sample data: the same seed, the same data.")
@click.option("--b2b", is_flag=True,
              help="Also hold companies whose employees share a switchboard and a role mailbox, a household "
                   "sharing a home line, customers who typed the hotline, and one person entered three ways.")
@click.option("--companies", type=click.IntRange(0, 1_000_000), default=None,
              help="How many companies the portal holds (default: one per ten people).")
@click.option("--activities", type=click.IntRange(0, 5_000_000), default=None,
              help="How many calls, meetings, e-mails and tasks managers logged (default: two per person).")
def sandbox(host: str, port: int, contacts: int, seed: int, b2b: bool, companies: int | None,
            activities: int | None) -> None:
    """A local Bitrix24 portal with realistic data, its limits and quirks (Ctrl+C stops it)."""
    from plugins.bitrix24.sandbox import serve

    serve(host=host, port=port, contacts=contacts, seed=seed, b2b=b2b, companies=companies, activities=activities)


def _tokens(oauth_url: str, **params: str) -> dict[str, Any]:
    try:
        return connection.request_tokens(oauth_url, **params)
    except Bitrix24Error as exc:
        raise click.ClickException(str(exc)) from None
