"""Which of Hub's messages a report is about, believing only what a stranger cannot make up.

Two ways, in this order:

1. The VERP return path (plugins.mailing.verp): the report was delivered to
   ``bounces+1234-<sig>@…``, or quotes the original's Return-Path. The keyed
   signature makes the id trustworthy.
2. The original's Message-ID, matched exactly against ``messages.provider_id``
   of an email message (the SMTP channel keeps the Message-ID it generated
   there). Message-IDs hold a random part, so nobody guesses one.

The X-Hub-Message-Id header of the quoted original is never used: anyone
can write it, and a report naming a stranger's message must not suppress
their address. When the report names the recipient, it must be the address
the message went to (compared without letter case), or the report is
not believed either. A message whose address was erased since is still
matched (the run then records the event without anything readable).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from hub.api import Message, Settings
from plugins.mailing import verp
from plugins.mailing.bounces.dsn import Report

messages_t = Message.__table__
EMAIL = "email"
QUERY_CHUNK = 500  # ids per IN (...) list: well under every database's limit on parameters


@dataclass(frozen=True)
class Matched:
    """The message a report is about, the address it went to (None once erased) and when it was sent."""

    message_id: int
    address: str | None
    sent_at: dt.datetime | None = None


def message_for(conn: Connection, settings: Settings, report: Report) -> int | None:
    """The id of the Hub message `report` is about, or None (not Hub's, forged, or about someone else)."""
    found = matches(conn, settings, [report])[0]
    return found.message_id if found is not None else None


def matches(conn: Connection, settings: Settings, reports: Sequence[Report]) -> list[Matched | None]:
    """`message_for` for a batch, in two queries whatever its size (one by id, one by Message-ID)."""
    by_verp = [_verp_id(settings, r) for r in reports]
    ids = {i for i in by_verp if i is not None}
    wanted_mids = {r.original_message_id for r, i in zip(reports, by_verp, strict=True)
                   if i is None and r.original_message_id}
    rows_by_id: dict[int, Matched] = {}
    for chunk in _chunks(sorted(ids)):
        for by_id in conn.execute(select(messages_t.c.id, messages_t.c.address, messages_t.c.sent_at)
                                  .where(messages_t.c.id.in_(chunk), messages_t.c.channel == EMAIL)):
            rows_by_id[by_id.id] = Matched(by_id.id, by_id.address, _aware(by_id.sent_at))
    rows_by_mid: dict[str, Matched] = {}
    for mids in _chunks(sorted(wanted_mids)):
        for by_mid in conn.execute(select(messages_t.c.id, messages_t.c.address, messages_t.c.sent_at,
                                          messages_t.c.provider_id)
                                   .where(messages_t.c.provider_id.in_(mids), messages_t.c.channel == EMAIL)
                                   .order_by(messages_t.c.id)):
            rows_by_mid.setdefault(by_mid.provider_id, Matched(by_mid.id, by_mid.address, _aware(by_mid.sent_at)))
    out: list[Matched | None] = []
    for report, verp_id in zip(reports, by_verp, strict=True):
        if verp_id is not None:
            row = rows_by_id.get(verp_id)
        else:
            row = rows_by_mid.get(report.original_message_id or "")
        if row is None or not same_address(report.recipient, row.address):
            out.append(None)
        else:
            out.append(row)
    return out


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    """A stored time as UTC-aware (SQLite hands it back naive)."""
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=dt.timezone.utc)
    return when


def same_address(reported: str | None, sent_to: str | None) -> bool:
    """Whether the report's recipient is the address the message went to (an erased or unnamed one passes).

    Without regard to letter case: Hub keeps every address lowercased
    (hub.normalize.email), and Exchange names the recipient as its directory
    spells it ("Ivan.Sidorov@…"). A Cyrillic domain is compared in the ASCII
    form the SMTP channel sent it in (``ivan@xn--…``), which is the one reports name.
    """
    if not reported or not sent_to:
        return True
    return _comparable(reported) == _comparable(sent_to)


def _comparable(address: str) -> str:
    local, _, domain = address.strip().strip("<>").rpartition("@")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # not a name IDNA can write: compared as it is
    return f"{local}@{domain}".casefold()


def _verp_id(settings: Settings, report: Report) -> int | None:
    for address in report.return_paths:
        found = verp.message_id_of(settings, address)
        if found is not None:
            return found
    return None


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + QUERY_CHUNK] for i in range(0, len(items), QUERY_CHUNK)]
