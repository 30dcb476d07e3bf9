"""The webhooks people add: where to, which events, the secret (encrypted), and whether they are on.

The secret is encrypted with a key derived from HUB_SECRET_KEY, like the CRM
credentials (hub.credentials), so a copied database alone cannot forge
deliveries. A URL may carry a receiver's token in its path or query, so
anything shown to people goes through `redact`, and nothing is ever logged
with the URL. Where a URL may point is hub.webhooks.targets' call.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, func, select, update

from hub.credentials import CredentialError, seal, unseal
from hub.db import utcnow
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import Webhook, WebhookAttempt, WebhookDelivery
from hub.webhooks import EVENTS, forget_subscriptions, signing, targets

webhooks_t = Webhook.__table__
deliveries_t = WebhookDelivery.__table__
attempts_t = WebhookAttempt.__table__

MAX_URL = 2000
MAX_SECRET = 200
MIN_SECRET = 16
FAILING_DAY = dt.timedelta(hours=24)
# What an attempt's error can say (kept in English in webhook_attempts), and how people read it.
CONNECTION_FAILED = "connection failed"
TIMED_OUT = "timed out"
REDIRECT_REFUSED = "redirect not followed (only 307/308 to the same host are)"
TOO_MANY_REDIRECTS = "too many redirects"
GAVE_UP = "gave up after 24 hours"
ADDRESS_REFUSED = "address refused (loopback, private or reserved)"
_ERROR_TITLES = {CONNECTION_FAILED: N_("connection failed"),
                 TIMED_OUT: N_("no answer in time (10 seconds to connect or for each read, 30 in all)"),
                 REDIRECT_REFUSED: N_("redirect not followed (only 307/308 to the same host are)"),
                 TOO_MANY_REDIRECTS: N_("too many redirects"), GAVE_UP: N_("gave up after 24 hours"),
                 ADDRESS_REFUSED: N_("not sent: the receiver's address is loopback, private or reserved "
                                     "(webhooks_allow_private allows loopback and private ones)")}
_TOKENISH = re.compile(r"(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-.~%]{8,}|[A-Za-z0-9_\-.~%]{16,}")


class WebhookError(ValueError):
    """A webhook that cannot be added or changed; the message says why, in the reader's language."""


@dataclass(frozen=True)
class Hook:
    """A webhook as people see it: the URL only redacted, never the secret."""

    id: int
    url: str  # redacted
    events: list[str]
    enabled: bool
    created_at: dt.datetime
    created_by: str
    failing_since: dt.datetime | None
    disabled_at: dt.datetime | None
    disabled_reason: str | None
    last_delivery_at: dt.datetime | None
    last_status: str | None
    pending: int

    def as_json(self) -> dict[str, Any]:
        def iso(v: dt.datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {"id": self.id, "url": self.url, "events": self.events, "enabled": self.enabled,
                "created_at": iso(self.created_at), "created_by": self.created_by,
                "failing_since": iso(self.failing_since), "disabled_at": iso(self.disabled_at),
                "disabled_reason": self.disabled_reason, "last_delivery_at": iso(self.last_delivery_at),
                "last_status": self.last_status, "pending": self.pending}


def check_url(url: str) -> str:
    """The URL stripped of spaces, or WebhookError: http or https with a host, at most 2,000 characters."""
    url = (url or "").strip()
    if not url:
        raise WebhookError(_("give the receiver's URL, e.g. https://example.com/hooks/hub"))
    if len(url) > MAX_URL:
        raise WebhookError(_("the URL is too long (at most %(max)s characters)", max=MAX_URL))
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise WebhookError(_("the URL must not contain spaces or control characters"))
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise WebhookError(_("%(url)s is not a valid URL", url=redact(url))) from None
    if parts.scheme not in ("http", "https"):
        raise WebhookError(_("the URL must start with http:// or https://"))
    if not parts.hostname:
        raise WebhookError(_("the URL has no host: give one, e.g. https://example.com/hooks/hub"))
    return url


def check_target(url: str, allow_private: bool) -> None:
    """WebhookError unless every address the URL's host resolves to may receive webhooks (hub.webhooks.targets).

    A host that does not resolve (yet) is accepted: every connection is checked again when it is made.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses = targets.resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError):
        return
    for address in addresses:
        why = targets.refusal(address, allow_private)
        if why == "always":
            raise WebhookError(_("%(host)s is %(address)s, a link-local, multicast or reserved address (such as "
                                 "a cloud metadata service): webhooks never go there", host=host, address=address))
        if why == "private":
            raise WebhookError(_("%(host)s is %(address)s, a loopback or private address inside your network; to "
                                 "allow receivers there, set webhooks_allow_private = true in hub.toml (or "
                                 "HUB_WEBHOOKS_ALLOW_PRIVATE=1)", host=host, address=address))


def check_events(events: Iterable[str]) -> list[str]:
    """The events in the order of EVENTS, or WebhookError naming the unknown one and listing the valid ones."""
    wanted = [e.strip() for e in events if e and e.strip()]
    if not wanted:
        raise WebhookError(_("choose at least one event: %(events)s", events=", ".join(EVENTS)))
    for event in wanted:
        if event not in EVENTS:
            raise WebhookError(_("unknown event %(event)r; valid events: %(events)s", event=event,
                                 events=", ".join(EVENTS)))
    return [e for e in EVENTS if e in wanted]


def check_secret(secret: str) -> str:
    if not MIN_SECRET <= len(secret) <= MAX_SECRET or any(c.isspace() for c in secret) or not secret.isprintable():
        raise WebhookError(_("the secret must be %(min)s to %(max)s printable characters without spaces",
                             min=MIN_SECRET, max=MAX_SECRET))
    return secret


def redact(url: str) -> str:
    """The URL fit to show: no user or password, query values and token-like path parts replaced by ***."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    if ":" in host:
        host = f"[{host}]"
    path = "/".join("***" if _TOKENISH.fullmatch(seg) else seg for seg in parts.path.split("/"))
    query = "&".join(f"{p.split('=', 1)[0]}=***" if "=" in p else "***" for p in parts.query.split("&") if p)
    user = "***@" if parts.username or parts.password else ""
    return f"{parts.scheme}://{user}{host}{port}{path}" + (f"?{query}" if query else "")


def error_text(error: str | None) -> str:
    """An attempt's or delivery's error in the reader's language; a receiver's own snippet stays as it came."""
    if not error:
        return ""
    return "; ".join(_(_ERROR_TITLES[p]) if p in _ERROR_TITLES else p for p in error.split("; "))


def status_text(status: str | None) -> str:
    """A delivery's status as people read it."""
    return {"pending": _("waiting to be sent"), "delivered": _("delivered"),
            "failed": _("not delivered")}.get(status or "", status or "")


def add(conn: Connection, url: str, events: Iterable[str], secret_key: str, *, secret: str | None = None,
        actor: str = "cli", allow_private: bool = False) -> tuple[int, str]:
    """Add a webhook; returns its id and the secret (generated when none is given), to show once.

    `allow_private` is the setting webhooks_allow_private (targets.allow_private(settings)).
    """
    url = check_url(url)
    chosen = check_events(events)
    secret = check_secret(secret) if secret else signing.new_secret()
    check_target(url, allow_private)
    new_id = conn.execute(webhooks_t.insert().values(
        url=url, events=chosen, secret=seal(secret_key, secret.encode()), created_at=utcnow(),
        created_by=actor[:200], enabled=True).returning(webhooks_t.c.id)).scalar_one()
    forget_subscriptions(conn)
    return int(new_id), secret


def secret_of(conn: Connection, hook_id: int, secret_key: str) -> str:
    token = conn.execute(select(webhooks_t.c.secret).where(webhooks_t.c.id == hook_id)).scalar()
    if token is None:
        raise WebhookError(_("no webhook with id %(id)s", id=hook_id))
    try:
        return unseal(secret_key, token).decode()
    except CredentialError:
        raise WebhookError(_("the secret of webhook %(id)s cannot be decrypted: HUB_SECRET_KEY differs from the "
                             "one it was saved with; remove the webhook and add it again", id=hook_id)) from None


def remove(conn: Connection, hook_id: int) -> bool:
    """Remove a webhook with its deliveries and attempts; False if there was none."""
    ids = select(deliveries_t.c.id).where(deliveries_t.c.webhook_id == hook_id).scalar_subquery()
    conn.execute(delete(attempts_t).where(attempts_t.c.delivery_id.in_(ids)))
    conn.execute(delete(deliveries_t).where(deliveries_t.c.webhook_id == hook_id))
    forget_subscriptions(conn)
    return conn.execute(delete(webhooks_t).where(webhooks_t.c.id == hook_id)).rowcount > 0


def enable(conn: Connection, hook_id: int) -> bool:
    """Switch a webhook back on after it was switched off; its failures start counting afresh."""
    forget_subscriptions(conn)
    return conn.execute(update(webhooks_t).where(webhooks_t.c.id == hook_id).values(
        enabled=True, failing_since=None, disabled_at=None, disabled_reason=None)).rowcount > 0


def listing(conn: Connection, hook_id: int | None = None, *, with_deliveries: bool = True,
            only_off: bool = False) -> list[Hook]:
    """The webhooks (or one), each with its last delivery and how many wait, read through indexes.

    Per webhook: its newest delivery by (webhook_id, id) and its waiting ones
    by (webhook_id, id) among pending rows, so the cost follows the number of
    webhooks, not of deliveries kept.
    """
    d = deliveries_t.c
    q = select(webhooks_t).order_by(webhooks_t.c.id)
    if hook_id is not None:
        q = q.where(webhooks_t.c.id == hook_id)
    if only_off:
        q = q.where(webhooks_t.c.enabled.is_(False))
    out = []
    for r in conn.execute(q):
        last = pending = None
        if with_deliveries:
            last = conn.execute(select(d.status, d.created_at).where(d.webhook_id == r.id)
                                .order_by(d.id.desc()).limit(1)).first()
            pending = conn.execute(select(func.count()).select_from(deliveries_t)
                                   .where(d.webhook_id == r.id, d.status == "pending")).scalar()
        out.append(Hook(id=r.id, url=redact(r.url), events=list(r.events or ()), enabled=bool(r.enabled),
                        created_at=r.created_at, created_by=r.created_by, failing_since=r.failing_since,
                        disabled_at=r.disabled_at, disabled_reason=r.disabled_reason,
                        last_delivery_at=last.created_at if last else None, last_status=last.status if last else None,
                        pending=int(pending or 0)))
    return out


def get(conn: Connection, hook_id: int) -> Hook | None:
    return next(iter(listing(conn, hook_id)), None)


def switched_off(conn: Connection) -> list[Hook]:
    """Webhooks switched off after a day of failures: what the notices name (the webhooks table alone)."""
    return listing(conn, with_deliveries=False, only_off=True)


def deliveries(conn: Connection, hook_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest deliveries (of one webhook, or all), newest first, each with its attempts."""
    d = deliveries_t.c
    q = select(d.id, d.uid, d.webhook_id, d.event, d.status, d.attempts, d.next_attempt_at, d.created_at,
               d.delivered_at, d.last_status_code, d.last_error).order_by(d.id.desc()).limit(limit)
    if hook_id is not None:
        q = q.where(d.webhook_id == hook_id)
    rows = [dict(r) for r in conn.execute(q).mappings()]
    if not rows:
        return rows
    a = attempts_t.c
    tries: dict[int, list[dict[str, Any]]] = {}
    for t in conn.execute(select(a.delivery_id, a.at, a.status_code, a.error, a.duration_ms)
                          .where(a.delivery_id.in_([r["id"] for r in rows])).order_by(a.id)).mappings():
        tries.setdefault(t["delivery_id"], []).append({k: t[k] for k in ("at", "status_code", "error", "duration_ms")})
    for r in rows:
        r["attempt_log"] = tries.get(r["id"], [])
    return rows
