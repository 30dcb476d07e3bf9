"""`hub webhooks …`: tell other systems what happens in Hub (signed POSTs, retried for a day)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from hub import formats
from hub.cli import ROW_ID, App, emit_json
from hub.i18n import gettext as _
from hub.webhooks import store, targets


def _app() -> App:
    return click.get_current_context().ensure_object(App)


def _errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """A refused URL, event or secret ends in one `Error:` line, like every other Hub command."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except store.WebhookError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.group("webhooks")
def webhooks_group() -> None:
    """Webhooks out: other systems hear chosen events, signed with HMAC-SHA256 (docs/webhooks.md)."""


@webhooks_group.command("add")
@click.argument("url")
@click.option("--events", required=True, metavar="EVENT,…",
              help="Comma-separated events: segment.entered, segment.exited, message.sent, message.bounced, "
                   "consent.changed, promo.redeemed, contact.merged, contact.erased.")
@click.option("--secret", default=None, help="The signing secret (16 to 200 characters); generated if not given.")
@_errors
def add_cmd(url: str, events: str, secret: str | None) -> None:
    """Send the chosen events to URL; the signing secret is printed once."""
    app = _app()
    engine = app.ready_engine()
    with engine.begin() as conn:
        hook_id, chosen = store.add(conn, url, events.split(","), app.settings.require_secret_key(), secret=secret,
                                    actor="cli", allow_private=targets.allow_private(app.settings))
    click.echo(_("Added webhook %(id)s: %(url)s", id=hook_id, url=store.redact(url)))
    if secret is None:
        click.echo(_("Signing secret (shown only now; keep it where the receiver can read it): %(secret)s",
                     secret=chosen))


@webhooks_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_cmd(as_json: bool) -> None:
    """Every webhook: its URL (redacted), events, state, and the last delivery."""
    app = _app()
    with app.ready_engine().connect() as conn:
        hooks = store.listing(conn)
    if as_json:
        emit_json([h.as_json() for h in hooks])
        return
    if not hooks:
        click.echo(_("No webhooks yet; add one with: hub webhooks add URL --events segment.entered"))
    tz = app.settings.tz
    for h in hooks:
        state = _("on") if h.enabled else _("SWITCHED OFF")
        click.echo(f"#{h.id}  {h.url}  {state}")
        click.echo("    " + _("events: %(events)s", events=", ".join(h.events)))
        if h.last_delivery_at is not None:
            click.echo("    " + _("last delivery: %(when)s, %(status)s; waiting: %(pending)s",
                                  when=formats.moment(h.last_delivery_at, tz),
                                  status=store.status_text(h.last_status or ""), pending=formats.number(h.pending)))
        if h.failing_since is not None:
            click.echo("    " + _("failing since %(when)s", when=formats.moment(h.failing_since, tz)))
        if not h.enabled:
            click.echo("    " + _("Switched off on %(when)s: %(reason)s. Switch it on again with: "
                                  "hub webhooks enable %(id)s", when=formats.moment(h.disabled_at, tz),
                                  reason=_(h.disabled_reason) if h.disabled_reason else "", id=h.id))


@webhooks_group.command("remove")
@click.argument("hook_id", metavar="ID", type=ROW_ID)
@_errors
def remove_cmd(hook_id: int) -> None:
    """Remove webhook ID with its deliveries; nothing more is sent to it."""
    with _app().ready_engine().begin() as conn:
        if not store.remove(conn, hook_id):
            raise store.WebhookError(_("no webhook with id %(id)s", id=hook_id))
    click.echo(_("Removed webhook %(id)s.", id=hook_id))


@webhooks_group.command("enable")
@click.argument("hook_id", metavar="ID", type=ROW_ID)
@_errors
def enable_cmd(hook_id: int) -> None:
    """Switch webhook ID on again after it was switched off for failing."""
    with _app().ready_engine().begin() as conn:
        if not store.enable(conn, hook_id):
            raise store.WebhookError(_("no webhook with id %(id)s", id=hook_id))
    click.echo(_("Webhook %(id)s is on again.", id=hook_id))


@webhooks_group.command("deliveries")
@click.argument("hook_id", metavar="[ID]", type=ROW_ID, required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many of the latest deliveries.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_errors
def deliveries_cmd(hook_id: int | None, limit: int, as_json: bool) -> None:
    """The latest deliveries (of webhook ID, or of all), each with its attempts."""
    app = _app()
    with app.ready_engine().connect() as conn:
        if hook_id is not None and store.get(conn, hook_id) is None:
            raise store.WebhookError(_("no webhook with id %(id)s", id=hook_id))
        rows = store.deliveries(conn, hook_id, limit)
    if as_json:
        emit_json([_json(r) for r in rows])
        return
    if not rows:
        click.echo(_("No deliveries yet."))
    tz = app.settings.tz
    for r in rows:
        click.echo(_("%(uid)s %(event)s → webhook %(hook)s: %(status)s, created %(when)s",
                     uid=r["uid"], event=r["event"], hook=r["webhook_id"], status=store.status_text(r["status"]),
                     when=formats.moment(r["created_at"], tz)))
        for a in r["attempt_log"]:
            answer = f"HTTP {a['status_code']}" if a["status_code"] is not None else _("no answer")
            extra = f"  {store.error_text(a['error'])}" if a["error"] else ""
            click.echo(f"    {formats.moment(a['at'], tz)}  {answer}  "
                       + _("%(ms)s ms", ms=formats.number(a["duration_ms"])) + extra)
        if r["status"] == "pending" and r["attempt_log"]:
            click.echo("    " + _("next attempt: %(when)s", when=formats.moment(r["next_attempt_at"], tz)))


def _json(r: dict[str, Any]) -> dict[str, Any]:
    def iso(v: Any) -> Any:
        return v.isoformat() if hasattr(v, "isoformat") else v

    return {"id": r["id"], "event_id": r["uid"], "webhook_id": r["webhook_id"], "event": r["event"],
            "status": r["status"], "attempts": r["attempts"], "created_at": iso(r["created_at"]),
            "next_attempt_at": iso(r["next_attempt_at"]) if r["status"] == "pending" else None,
            "delivered_at": iso(r["delivered_at"]), "last_status_code": r["last_status_code"],
            "attempt_log": [{"at": iso(a["at"]), "status_code": a["status_code"], "error": a["error"],
                             "duration_ms": a["duration_ms"]} for a in r["attempt_log"]]}


