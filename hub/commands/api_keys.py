"""`hub api-keys create|list|revoke`: keys for the systems that call /api/v1 (a website, 1C, a script).

A key is printed once, when it is made: Hub keeps only its hash, so a lost
key is revoked and replaced, never shown again. Each change names who ran the
command, as the consent ledger does.
"""

from __future__ import annotations

from typing import Any

import click

from hub import formats
from hub.cli import App, emit_json, pass_app
from hub.i18n import gettext as _
from hub.webapi import keys


def cli_actor() -> str:
    """Who runs the command, as the audit log and the keys' "created by" name them."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "cli"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A key as `--json` shows it: ISO 8601 dates, never the key itself."""
    return {"id": row["id"], "name": row["name"], "prefix": row["prefix"], "scopes": row["scopes"],
            "rate": row["rate"], "created_at": _iso(row["created_at"]), "created_by": row["created_by"],
            "last_used_at": _iso(row["last_used_at"]), "revoked_at": _iso(row["revoked_at"])}


def _audit(conn: Any, action: str, **details: Any) -> None:
    """The same audit entry the admin page writes (never the key itself)."""
    from hub.admin import audit  # imported here: other commands need not load the web framework

    audit.record(conn, cli_actor(), action, **details)


@click.group("api-keys")
def api_keys_group() -> None:
    """Keys for the HTTP API (/api/v1): create, list, revoke."""


@api_keys_group.command("create")
@click.argument("name")
@click.option("--scopes", required=True,
              help="What the key may do, comma-separated, e.g. contacts:write,orders:write.")
@click.option("--rate", type=click.IntRange(1, 100_000), default=keys.DEFAULT_RATE, show_default=True,
              help="Requests per second the key may send (bursts of twice that).")
@click.option("--json", "json_out", is_flag=True, help="Print the key and its details as JSON.")
@pass_app
def create_cmd(app: App, name: str, scopes: str, rate: int, json_out: bool) -> None:
    """Create a key called NAME and print it once: Hub keeps only its hash."""
    engine = app.ready_engine()
    try:
        chosen = keys.parse_scopes(scopes, keys.known_scopes())
        with engine.begin() as conn:
            made = keys.create(conn, name, chosen, actor=cli_actor(), rate=rate)
            _audit(conn, "api_key_created", key=made.name, scopes=made.scopes, rate=rate)
    except keys.ApiKeyError as exc:
        raise click.ClickException(str(exc)) from None
    if json_out:
        emit_json({"id": made.id, "name": made.name, "key": made.key, "scopes": made.scopes, "rate": rate})
        return
    click.echo(_("Key %(name)s created (scopes: %(scopes)s; %(rate)s requests a second):", name=made.name,
                 scopes=", ".join(made.scopes), rate=formats.number(rate)))
    click.echo(made.key)
    click.echo(_("Copy it now: it will not be shown again. Send it with every request as the header "
                 "Authorization: Bearer <key>."))


@api_keys_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also list revoked keys.")
@click.option("--json", "json_out", is_flag=True, help="Print the keys as JSON.")
@pass_app
def list_cmd(app: App, show_all: bool, json_out: bool) -> None:
    """The keys: name, first characters, scopes, rate, who created them and when, last use."""
    with app.ready_engine().connect() as conn:
        rows = keys.listing(conn, revoked=show_all)
    if json_out:
        emit_json([as_json(r) for r in rows])
        return
    if not rows:
        click.echo(_("No API keys yet. Create one: hub api-keys create NAME --scopes contacts:write"))
        return
    tz = app.settings.tz
    for r in rows:
        click.echo(_("#%(id)s %(name)s (%(prefix)s…): %(scopes)s; %(rate)s requests a second", id=r["id"],
                     name=r["name"], prefix=r["prefix"], scopes=", ".join(r["scopes"]),
                     rate=formats.number(r["rate"])))
        click.echo("    " + _("created %(at)s by %(who)s; last used: %(used)s",
                              at=formats.moment(r["created_at"], tz, zone=True), who=r["created_by"],
                              used=formats.moment(r["last_used_at"], tz, zone=True) if r["last_used_at"]
                              else _("never")))
        if r["revoked_at"] is not None:
            click.echo("    " + _("revoked %(at)s", at=formats.moment(r["revoked_at"], tz, zone=True)))


@api_keys_group.command("revoke")
@click.argument("key")
@pass_app
def revoke_cmd(app: App, key: str) -> None:
    """Revoke the key named KEY (or with that number): every request with it is refused from now on."""
    with app.ready_engine().begin() as conn:
        row = keys.find(conn, key.strip())
        if row is None:
            raise click.ClickException(_("no API key named %(name)s (see `hub api-keys list --all`)", name=key))
        if not keys.revoke(conn, row.id):
            raise click.ClickException(_("the key %(name)s was already revoked", name=row.name))
        _audit(conn, "api_key_revoked", key=row.name, prefix=row.prefix)
    click.echo(_("Key %(name)s revoked: requests with it are refused from now on.", name=row.name))
