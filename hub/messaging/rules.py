"""Send rules: every message passes the check_send hook just before its channel is called, whoever dispatches it.

The core's consent decision (hub.outbox_hooks), quiet hours and the frequency
cap (hub.send_limits) and a business's own rules are all implementations of
that hook; a skip marks the message `suppressed`, a deferral holds it
`queued` until then.

A dispatch asks the rules about a claimed batch on one connection, one
message after another (`SendRules.batch`). A rule may read what it needs for
the whole batch at once (`batch_of`) and keep it in the connection's info
under a key starting with BATCH_FACTS, which the end of the batch clears:
the contacts' time zones and the frequency cap's earlier messages
(hub.send_limits), and the consent ledger's answers (hub.consent). A fact
that decides consent may be read early only with a check at the hand-over:
the ledger's is repeated inside the UPDATE that hands the letter over
(hub.consent.still_allowed, hub.messaging.dispatcher), and a refusal read
early is asked again of the database before it is final.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import Connection

from hub.config import Settings
from hub.db import utcnow
from hub.messaging.channels import Outgoing


@dataclass(frozen=True, slots=True)
class Verdict:
    """A send rule's objection: skip the message for good (`until` None) or hold it until a UTC time."""

    reason: str
    until: dt.datetime | None = None

    @classmethod
    def skip(cls, reason: str) -> Verdict:
        return cls(reason)

    @classmethod
    def defer(cls, until: dt.datetime, reason: str) -> Verdict:
        return cls(reason, until)


def combine(verdicts: Iterable[Verdict | None]) -> Verdict | None:
    """The rules' joint answer: any skip wins (with every skip's reason), else the latest hold.

    Independent of the order plugins were registered in: a rule cannot
    shorten another's hold or lift another's refusal.
    """
    found = [v for v in verdicts if v is not None]
    if not found:
        return None
    skips = [v.reason for v in found if v.until is None]
    if skips:
        return Verdict.skip("; ".join(dict.fromkeys(skips)))
    last = max(v.until for v in found if v.until is not None)
    return Verdict.defer(last, "; ".join(dict.fromkeys(v.reason for v in found)))


_BATCH = "hub.send_rules.batch"
# Keys under which a rule keeps what it read for the batch in hand; cleared when the batch ends.
BATCH_FACTS = "hub.send_rules.facts."


def batch_of(conn: Connection) -> Sequence[Outgoing]:
    """The claimed batch a dispatch is checking on this connection; () outside one."""
    return conn.info.get(_BATCH, ())


class SendRules:
    """The check_send hook, looked up once: a dispatch asks it for every message it sends."""

    def __init__(self, pm: Any = None) -> None:
        from hub.plugins import get_pm

        self._hook = (pm or get_pm()).hook.check_send

    def __call__(self, conn: Connection, settings: Settings, message: Outgoing,
                 now: dt.datetime | None = None) -> Verdict | None:
        return combine(self._hook(conn=conn, settings=settings, message=message, now=now or utcnow()))

    @contextmanager
    def batch(self, conn: Connection, messages: Sequence[Outgoing]) -> Iterator[None]:
        """The rules are about to be asked about these messages on `conn`, in order (see batch_of).

        What rules kept for the batch is dropped afterwards: the connection
        goes back to the pool, and its info with it.
        """
        conn.info[_BATCH] = tuple(messages)
        try:
            yield
        finally:
            for key in [k for k in conn.info if k == _BATCH or (isinstance(k, str) and k.startswith(BATCH_FACTS))]:
                del conn.info[key]
