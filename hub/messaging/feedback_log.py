"""What was heard of sent messages, as people read it in the message log and in `hub messages show`.

hub.messaging.feedback writes the events and acts on them; this module only
reads them back: a message's events newest first, the kinds heard for a page
of messages in one query (the log's markers), and each event in the reader's
words («Отказ: адрес не существует (5.1.1)»). The reporter's raw text
(a diagnostic, a reason) is shown cut short: it comes from a stranger's server.
An erased person's events keep their kind and time only, whatever is stored.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import Connection, select

from hub.db import chunks
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.messaging.feedback import KINDS
from hub.models import Erasure, MessageEvent

events_t = MessageEvent.__table__

# The kinds the log marks beside a message's status, and filters by: what someone should look at.
MARKED = ("bounce", "complaint", "click", "undelivered")
MARKERS = {"bounce": N_("bounce"), "complaint": N_("complaint"), "click": N_("click"),
           "undelivered": N_("not delivered")}
# What the log's filter offers for each marked kind.
FILTER_TITLES = {"bounce": N_("with a bounce"), "complaint": N_("with a complaint"), "click": N_("with a click"),
                 "undelivered": N_("not delivered (SMS)")}
MAX_SHOWN = 200  # characters of a reporter's own text (diagnostic, reason) shown
MAX_EVENTS = 500  # events listed for one message; a message clicked thousands of times shows the latest
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
# What an enhanced status code (RFC 3463) means to a shop owner: exact codes first, then by subject.
_CODES = {"1.1": N_("the address does not exist"), "1.2": N_("the domain does not exist"),
          "1.10": N_("the domain accepts no mail"), "2.1": N_("the mailbox is disabled"),
          "2.2": N_("the mailbox is full"), "2.3": N_("the letter is too large"), "3.4": N_("the letter is too large"),
          "1.6": N_("the address has moved"), "4.7": N_("the recipient's server did not take it in time")}
_SUBJECTS = {"1": N_("the address is wrong"), "2": N_("the mailbox does not take mail"),
             "3": N_("the recipient's server has a problem"), "4": N_("the recipient's server could not be reached"),
             "5": N_("the recipient's server refused the conversation"),
             "6": N_("the recipient's server refused the letter's content"),
             "7": N_("refused by the recipient's spam filter or policy")}
# Reporters people know by another name than their domain.
_REPORTERS = {"mail.ru": "Mail.ru", "corp.mail.ru": "Mail.ru", "list.ru": "Mail.ru", "bk.ru": "Mail.ru",
              "inbox.ru": "Mail.ru", "yandex.ru": N_("Yandex"), "yandex.net": N_("Yandex"), "yandex": N_("Yandex"),
              "ya.ru": N_("Yandex"), "gmail.com": "Gmail", "google.com": "Gmail", "rambler.ru": N_("Rambler"),
              "outlook.com": "Outlook", "hotmail.com": "Outlook", "yahoo.com": "Yahoo"}


def events(conn: Connection, message_id: int, *, limit: int = MAX_EVENTS) -> list[dict[str, Any]]:
    """A message's events, newest first (at most `limit`)."""
    e = events_t.c
    rows = conn.execute(select(e.id, e.kind, e.at, e.url, e.detail).where(e.message_id == message_id)
                        .order_by(e.at.desc(), e.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


def erased(conn: Connection, contact_id: int | None) -> bool:
    """Whether a message's person was erased: their events then read as kind and time, whatever was stored since."""
    if contact_id is None:
        return False
    e = Erasure.__table__.c
    return conn.execute(select(e.contact_id).where(e.contact_id == contact_id).limit(1)).first() is not None


def kinds(conn: Connection, message_ids: Iterable[int]) -> dict[int, list[str]]:
    """The kinds heard for each message, in the order of hub.messaging.feedback.KINDS; one query per 500 ids."""
    e = events_t.c
    found: dict[int, set[str]] = {}
    for part in chunks(sorted(set(message_ids)), 500):
        for message_id, kind in conn.execute(select(e.message_id, e.kind).where(e.message_id.in_(part))
                                             .group_by(e.message_id, e.kind)):
            found.setdefault(int(message_id), set()).add(str(kind))
    return {m: [k for k in KINDS if k in heard] + sorted(heard - set(KINDS)) for m, heard in found.items()}


def markers(heard: Iterable[str]) -> list[tuple[str, str]]:
    """(kind, short word) for the kinds the log marks, among those heard."""
    got = set(heard)
    return [(kind, _(MARKERS[kind])) for kind in MARKED if kind in got]


def _short(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 1].rstrip() + "…"


def bounce_cause(detail: dict[str, Any]) -> tuple[str, str]:
    """(why in words, the status code or "") for a bounce: the code's meaning, else the server's own words."""
    status = str(detail.get("status") or "").strip()
    code = status if _STATUS.match(status) else ""
    if code:
        _class, subject, rest = code.split(".")
        words = _CODES.get(f"{subject}.{rest}") or _SUBJECTS.get(subject)
        if words:
            return _(words), code
    said = detail.get("diagnostic") or detail.get("reason") or ""
    return (_short(said) if said and said not in ("bounce", "soft_bounce") else ""), code


def reporter_title(reporter: Any) -> str:
    """Mail.ru for «mail.ru»: who reported a complaint, as people call them; anything else shown cut short."""
    raw = " ".join(str(reporter or "").split()).strip().lower()
    if not raw:
        return ""
    for domain, title in _REPORTERS.items():
        if raw == domain or raw.endswith("." + domain) or raw.startswith(domain + " ") or raw.startswith(domain + "/"):
            return _(title)
    return _short(str(reporter).strip())


def describe(kind: str, url: str | None = None, detail: dict[str, Any] | None = None, *,
             erased: bool = False) -> str:
    """One event in the reader's words; for an erased person only what kind of event it was."""
    detail = {} if erased or not isinstance(detail, dict) else detail
    url = None if erased else url
    if kind in ("bounce", "soft_bounce"):
        why, code = bounce_cause(detail)
        if why and code:
            return (_("Bounce: %(why)s (%(code)s)", why=why, code=code) if kind == "bounce" else
                    _("Temporary bounce: %(why)s (%(code)s)", why=why, code=code))
        if why or code:
            return (_("Bounce: %(why)s", why=why or code) if kind == "bounce" else
                    _("Temporary bounce: %(why)s", why=why or code))
        return _("Bounce") if kind == "bounce" else _("Temporary bounce")
    if kind == "complaint":
        who = reporter_title(detail.get("reporter"))
        return _("Spam complaint (%(reporter)s)", reporter=who) if who else _("Spam complaint")
    if kind == "click":
        return _("Link clicked: %(url)s", url=_short(url)) if url else _("Link clicked")
    if kind == "open":
        return _("Opened (approximate: mail services load images themselves)")
    if kind == "delivered":
        return _("Delivered by the operator")
    if kind == "undelivered":
        why = detail.get("reason") or detail.get("code") or ""
        return _("Not delivered: %(why)s", why=_short(why)) if why else _("Not delivered")
    return _short(kind)


def as_json(event: dict[str, Any], *, erased: bool = False) -> dict[str, Any]:
    """An event for --json: English keys and kinds; an erased person's without url or detail."""
    at = event["at"]
    if isinstance(at, dt.datetime) and at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return {"kind": event["kind"], "at": at.isoformat() if isinstance(at, dt.datetime) else at,
            "url": None if erased else event.get("url"), "detail": {} if erased else (event.get("detail") or {})}


def cost_text(cost: Decimal | None) -> str | None:
    """A stored cost (4 decimals) as a plain number string: "3.45", "0.0125"; None when unknown."""
    if cost is None:
        return None
    cents = Decimal(cost).quantize(Decimal("0.01"))
    return str(cents) if cents == cost else format(Decimal(cost).normalize(), "f")
