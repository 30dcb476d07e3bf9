"""Dispatch: a worker's run through the outbox, handing each message to its channel.

Per message that reaches a channel there is one short write transaction,
just before the channel is called: it commits this message as `sending`
(and, in the same commit, the outcome of the message before it), so at any
moment a worker holds at most one message in doubt. Every message passes the
send rules (hub.messaging.rules) just before its channel is called, whoever
dispatches it. A temporary failure (SMTP 4xx, a gateway that is down) defers
the message and retries it later with backoff; a permanent one fails it, and
when the address itself is dead the address is suppressed and a consent
event records the bounce.

What a letter costs the database, as it runs once per letter: the send
rules read consent and suppressions, the frequency cap's earlier messages
and the time zones once per claimed batch (hub.messaging.rules, batch_of),
and the hand-over is one UPDATE in its transaction: this message to
`sending` and the message before it to its outcome, each row on its own
conditions. Consent read for the batch is not trusted blindly: the UPDATE
hands the letter over only if the address is still not suppressed and the
latest answer still grants it (hub.consent.still_allowed), so a withdrawal
committed before the hand-over holds the letter however early the batch was
read; when that condition fails the rules are asked again, of the database.

What a letter waits for: a channel with `start` (email) has its answer read
while the next letter's rules are asked, and a channel with `prepare` gets
that next letter ready meanwhile (composed, the SMTP envelope behind the
letter before), so the server is not left idle while the worker commits.
Prepared is not handed over: its data go only after its commit, and a
prepared letter whose hand-over fails comes to nothing (hub.messaging.channels).
"""

from __future__ import annotations

import datetime as dt
import operator
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from sqlalchemy import Connection, Engine, and_, bindparam, case, func, literal, or_, update
from sqlalchemy.exc import OperationalError

from hub import consent, queue
from hub.config import Settings
from hub.db import get_engine, utcnow
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.messaging.channels import Channel, ChannelUnavailable, Delivery, Outgoing, channel_factories
from hub.messaging.claims import CLAIM_LEASE, claim, recover_stale, worker_name
from hub.messaging.compose import Created, insert, prepare
from hub.messaging.feedback import record_bounce
from hub.messaging.outbox import (DEFERRED, FAILED, QUEUED, SENDING, SENT, SUPPRESSED, UNKNOWN,
                                  MessagingError, get, messages_t)
from hub.messaging.rules import SendRules, Verdict

MAX_ATTEMPTS = 6
# Seconds to wait after the 1st, 2nd, ... temporary failure; the last repeats.
BACKOFF = (60, 300, 1800, 7200, 21600)
DEFAULT_BATCH = 100
# A channel that cannot send at all (server down) is tried again this much later.
RELEASE_DELAY = dt.timedelta(seconds=60)



@dataclass
class DispatchReport:
    """What one dispatch did; `errors` holds channel-level problems (nothing about recipients)."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    suppressed: int = 0
    deferred: int = 0
    held: int = 0
    unknown: int = 0
    released: int = 0
    recovered_unknown: int = 0
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Outcome:
    id: int
    status: str
    error: str | None = None
    provider_id: str | None = None
    parts: int | None = None
    tried: int = 0
    due_at: dt.datetime | None = None
    sent_at: dt.datetime | None = None
    cost: Decimal | None = None
    bounce: Outgoing | None = None
    sent: Outgoing | None = None


def backoff(attempts: int) -> dt.timedelta:
    """How long to wait after the attempts so far before the next one."""
    return dt.timedelta(seconds=BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1])


def channel_rate(settings: Settings, channel: str) -> float | None:
    """Messages per second for a channel (HUB_EMAIL_RATE, HUB_SMS_RATE, ...); None: no limit."""
    return _positive(settings, f"{channel}_rate", N_("a number of messages per second"))


def claim_lease(settings: Settings) -> dt.timedelta:
    """How long a claimed batch stays a worker's (HUB_MESSAGES_LEASE_S; default CLAIM_LEASE)."""
    seconds = _positive(settings, "messages_lease_s", N_("a number of seconds"))
    return CLAIM_LEASE if seconds is None else dt.timedelta(seconds=seconds)


def _positive(settings: Settings, key: str, what: str) -> float | None:
    """A setting that must be a number above 0; None when it is not set."""
    raw = settings.extra.get(key)
    if raw in (None, ""):
        return None
    name = f"HUB_{key.upper()}"
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise MessagingError(_("%(name)s: %(value)r is not %(what)s", name=name, value=raw, what=_(what))) from None
    if value <= 0:
        raise MessagingError(_("%(name)s: must be more than 0", name=name))
    return value


_WAITING = (QUEUED, DEFERRED)
# How long a hand-over waits before asking again for SQLite's write lock while another worker holds it
# (seconds; the last repeats). Another worker's hand-over holds it for a fraction of a millisecond.
LOCK_PAUSES = (0.0001, 0.0002, 0.0005, 0.001, 0.002)


class _Busy(Exception):
    """The hand-over's first write found SQLite's write lock taken: nothing was written; ask again."""


def _busy(exc: BaseException) -> bool:
    """Whether `exc` is SQLite saying another connection holds the write lock (SQLITE_BUSY)."""
    found = exc.orig if isinstance(exc, OperationalError) else exc
    return isinstance(found, sqlite3.OperationalError) and \
        getattr(found, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


class Dispatcher:
    """One worker's run through the outbox: channels stay open across its batches.

    Per message that reaches a channel there is one short write transaction,
    just before the channel is called: it moves this message to `sending` and
    writes what was decided since the last one (the previous message's
    outcome, skips and holds by the send rules). So the outbox is never more than
    one message behind the channel, and that one is the message in its hands.
    """

    def __init__(self, engine: Engine, settings: Settings, *, worker: str | None = None,
                 batch_size: int = DEFAULT_BATCH, progress: Callable[[int], None] | None = None,
                 now: dt.datetime | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.worker = worker or worker_name()
        self.batch_size = max(1, batch_size)
        self.rules = SendRules()
        self.now = now  # the moment claims and send rules judge by; None: the clock, read for each message
        self.progress = progress
        self.lease = claim_lease(settings)
        self.report = DispatchReport()
        self._factories = channel_factories()
        from hub.plugins import get_pm

        self._message_sent = get_pm().hook.message_sent
        self._open: dict[str, Channel] = {}
        self._down: set[str] = set()
        self._limiters: dict[str, Any] = {}
        self._in_flight: int | None = None  # the message a channel is sending right now
        self._renewed = 0.0  # time.monotonic() of the batch's claim or its last renewal
        self._lock_wait: float | None = None  # SQLite: seconds a hand-over may wait for the write lock

    # channels

    def _channel(self, name: str) -> Channel:
        channel = self._open.get(name)
        if channel is None:
            channel = self._factories[name](self.settings)
            channel.open()
            self._open[name] = channel
        return channel

    def _limiter(self, name: str) -> Any:
        if name not in self._limiters:
            rate = channel_rate(self.settings, name)
            if rate is None:
                self._limiters[name] = None
            else:
                from hub import ratelimit

                self._limiters[name] = ratelimit.limiter(self.settings, f"channel:{name}", rate,
                                                         burst=max(1, int(rate)))
        return self._limiters[name]

    def close(self) -> None:
        for channel in self._open.values():
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - closing must not hide what happened before
                pass
        self._open.clear()

    # the run

    def run(self, *, channels: Sequence[str] | None = None, limit: int | None = None,
            ids: Sequence[int] | None = None) -> DispatchReport:
        started = time.perf_counter()
        self.report.recovered_unknown = recover_stale(self.engine)
        names = list(channels) if channels else sorted(self._factories)
        unknown = [n for n in names if n not in self._factories]
        if unknown:
            raise MessagingError(_("no channel %(name)r; registered: %(known)s", name=unknown[0],
                                    known=", ".join(sorted(self._factories)) or _("none")))
        remaining = limit
        active = names  # channels with work left; a channel leaves when it has none
        try:
            while active and (remaining is None or remaining > 0) and not queue.stop_requested():
                for name in list(active):
                    if queue.stop_requested():  # the worker is stopping: the next job takes what is left
                        break
                    size = self.batch_size
                    rate = channel_rate(self.settings, name)
                    if rate is not None:  # about a minute of sending per batch at most
                        size = min(size, max(1, int(rate * 60)))
                    if remaining is not None:
                        size = min(size, remaining)
                    batch = claim(self.engine, name, size, worker=self.worker, ids=ids, lease=self.lease,
                                  now=self.now)
                    self._renewed = time.monotonic()
                    if not batch:
                        active.remove(name)
                        continue
                    self.report.claimed += len(batch)
                    if remaining is not None:
                        remaining -= len(batch)
                    self._send_batch(name, batch)
                    if name in self._down:
                        active.remove(name)
                    if remaining is not None and remaining <= 0:
                        break
        finally:
            self.close()
        self.report.duration_s = round(time.perf_counter() - started, 3)
        return self.report

    def _send_batch(self, name: str, batch: list[tuple[Outgoing, int, int | None]]) -> None:
        pending: list[_Outcome] = []  # decided, not yet written
        done = 0  # rows of the batch whose outcome is in `pending` or written, or whose answer is awaited
        answer: Callable[[], _Outcome] | None = None  # the channel's answer about the message it has
        try:
            limiter = self._limiter(name)
            with self.engine.connect() as reader, self._writer() as writer, \
                    self.rules.batch(reader, [m for m, _, _ in batch]):
                fresh = reader.dialect.name == "sqlite"  # PostgreSQL reads afresh at each statement anyway
                for message, attempts, parts in batch:
                    if queue.stop_requested():
                        break
                    # Asked while the channel may still be waiting for its server's answer about the
                    # message before: the rules read the database, the server reads the letter.
                    verdict = self.rules(reader, self.settings, message, self.now)
                    if fresh and reader.in_transaction():
                        reader.rollback()  # no snapshot held while writing; the next check sees the latest
                    if verdict is not None:
                        pending.append(_refusal(message, verdict))
                        done += 1
                        continue
                    try:
                        channel = self._channel(name)
                        if limiter is not None:
                            limiter.acquire()
                        if answer is not None:  # the outcome before is known before this one is handed over
                            prepare = getattr(channel, "prepare", None)
                            if prepare is not None:  # this one made ready while the server reads the one before
                                prepare(message)
                            pending.append(answer())
                            answer = None
                            if queue.stop_requested():  # asked to stop while waiting for that answer
                                break
                        guard = consent.send_time_guard(reader, message)
                        ours = self._hand_over(writer, pending, message, batch[done + 1:], guard)
                        pending = []
                        if ours is None:  # the batch read's answer no longer holds: ask the rules again
                            consent.forget_send_time_facts(reader, message)
                            verdict = self.rules(reader, self.settings, message, self.now)
                            if fresh and reader.in_transaction():
                                reader.rollback()
                            if verdict is not None:
                                pending.append(_refusal(message, verdict))
                                done += 1
                                continue
                            ours = self._hand_over(writer, [], message, batch[done + 1:], None)
                        if ours:
                            answer = self._deliver(channel, name, message, attempts, parts)
                    except ChannelUnavailable as exc:  # the channel's promise: nothing was handed over
                        if answer is not None:
                            pending.append(answer())
                            answer = None
                        self._down.add(name)
                        self.report.errors.append(f"{name}: {exc}")
                        self._flush(pending)
                        pending = []
                        self._release(batch[done:], str(exc))
                        done = len(batch)
                        break
                    done += 1
                if answer is not None:
                    pending.append(answer())
                    answer = None
        except BaseException as exc:
            # A setting error, Ctrl-C, a lost database: keep what was decided, put back what
            # never reached the channel, and leave a message caught mid-send for review. If
            # even that fails, a message handed over stays `sending` and becomes `unknown`
            # later, never resent; the others wait for their lease to run out.
            try:
                if answer is not None and (self._in_flight is None or isinstance(exc, Exception)):
                    # The message before went out whole: its answer is known, or there to read
                    # (unless the process is being stopped: then it is left in doubt, below).
                    pending.append(answer())
                self._flush(pending)
                rest = batch[done:]
                in_flight = self._in_flight
                if in_flight is not None:
                    self._mark_unknown(in_flight, f"dispatch stopped while sending ({type(exc).__name__})")
                    rest = [r for r in rest if r[0].id != in_flight]
                self._release(rest, f"dispatch stopped ({type(exc).__name__}: {exc})"[:300])
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            raise
        self._flush(pending)
        if done < len(batch):  # asked to stop: whatever is left is due now, for the next worker
            self._release(batch[done:], "the worker stopped before sending it", delay=None)

    @contextmanager
    def _writer(self) -> Iterator[Connection]:
        """The batch's connection for hand-overs; on SQLite it waits for the write lock in short steps.

        SQLite's own wait (busy_timeout) sleeps a millisecond at the first
        refusal, then 2, 5, 10 ms…, while the other worker's hand-over holds
        the lock for a fraction of a millisecond: with two workers, a few
        letters in a hundred waited that long, each time with the SMTP server
        idle. On this connection SQLite answers at once instead, and
        `_hand_over` asks again after LOCK_PAUSES, for as long in all as
        busy_timeout allowed; the connection's own setting is restored after.
        """
        with self.engine.connect() as conn:
            if conn.dialect.name != "sqlite":
                yield conn
                return
            driver = conn.connection.driver_connection
            assert driver is not None  # just connected
            allowed = int(driver.execute("PRAGMA busy_timeout").fetchone()[0])
            driver.execute("PRAGMA busy_timeout=0")
            self._lock_wait = allowed / 1000
            try:
                yield conn
            finally:
                self._lock_wait = None
                try:
                    driver.execute(f"PRAGMA busy_timeout={allowed}")
                except sqlite3.Error:  # never back to the pool without its wait
                    conn.invalidate()

    def _hand_over(self, conn: Connection, pending: list[_Outcome], message: Outgoing,
                   rest: list[tuple[Outgoing, int, int | None]], guard: consent.Guard | None) -> bool | None:
        """Commit `message` as `sending`, with the outcomes decided so far; see `_handing_over`.

        When SQLite's write lock is taken (another worker's hand-over), the
        first write fails at once without writing anything (`_writer`); the
        transaction is rolled back and tried again after a short pause, for
        as long as the connection's busy_timeout would have waited.
        """
        waited, tries = 0.0, 0
        while True:
            try:
                return self._handing_over(conn, pending, message, rest, guard)
            except _Busy as busy:
                if self._lock_wait is None or waited >= self._lock_wait:
                    raise (busy.__cause__ or busy) from None
                pause = LOCK_PAUSES[min(tries, len(LOCK_PAUSES) - 1)]
                time.sleep(pause)
                waited += pause
                tries += 1

    def _handing_over(self, conn: Connection, pending: list[_Outcome], message: Outgoing,
                      rest: list[tuple[Outgoing, int, int | None]], guard: consent.Guard | None) -> bool | None:
        """Commit `message` as `sending`, with the outcomes decided so far.

        True: handed over; False: the claim was lost; None: `guard` (the consent
        the batch read found, hub.consent.send_time_guard) no longer holds, or
        the claim was lost: the caller asks the rules again, then hands over without it.

        One short transaction on the batch's own connection (no pool round
        trip per message). It starts by writing, so on SQLite it waits for the
        write lock (`_hand_over`) rather than failing as a read-then-write
        transaction would. The outcome of the message handed over before this
        one is written by the same UPDATE (one statement for both rows); the
        others decided since (the send rules' skips and holds) by statements of
        their own. The lease on the rest of the batch is renewed in the same
        transaction when a third of it has gone by.
        """
        now = utcnow()
        before = next((o for o in pending if o.tried > 0), None)  # at most one: the message handed over last
        params = {"_id": message.id, "_worker": self.worker, "_now": now}
        if guard is not None:
            params |= guard.params
        with conn.begin():
            try:  # the first write takes the write lock: refused (_Busy), it has written nothing
                if before is None:
                    taken = _hand_over_statement(guard).run(conn, params)[0] > 0
                else:
                    params |= _outcome_params(before, self.worker, now) | {"_id": message.id, "_prev": before.id}
                    returned = _hand_over_after_statement(guard).run(conn, params)[1]
                    taken = any(row[0] == message.id for row in returned)
            except Exception as exc:
                if self._lock_wait is not None and _busy(exc):
                    raise _Busy() from exc
                raise
            self._write(conn, pending, now, written=before)
            if rest and time.monotonic() - self._renewed >= self.lease.total_seconds() / 3:
                conn.execute(_RENEW, {"_ids": [m.id for m, _, _ in rest], "_worker": self.worker, "_now": now})
                self._renewed = time.monotonic()
        self._count(pending)
        if not taken and guard is not None:
            return None
        return taken

    def _deliver(self, channel: Channel, name: str, message: Outgoing, attempts: int, parts: int | None
                 ) -> Callable[[], _Outcome]:
        """Hand one message (already committed as `sending`) to its channel; the answer, read when called.

        A channel with `start` (see hub.messaging.channels.Channel) puts the
        message on its way now and reads its server's answer when asked, so
        the dispatcher checks the next message's rules meanwhile; the answer
        is always read before the next message is handed over, so at most one
        message is in doubt, as with `send`.
        """
        now = utcnow()
        # Set while the channel has the message: if this process is stopped now (Ctrl-C),
        # the message is marked unknown rather than put back.
        self._in_flight = message.id
        try:
            start = getattr(channel, "start", None)
            if start is None:
                outcome = self._outcome(message, channel.send(message), attempts, parts, now)
                self._in_flight = None
                return lambda: outcome
            reply: Callable[[], Delivery] = start(message)
        except ChannelUnavailable:  # the channel's promise: nothing was handed over
            self._in_flight = None
            raise
        except Exception as exc:  # noqa: BLE001 - a channel bug: whether it went out is not known
            self._in_flight = None
            failed = _channel_error(message, name, exc)
            return lambda: failed

        def answer() -> _Outcome:
            # Stopped while reading it (Ctrl-C), the message stays in flight: marked unknown.
            try:
                delivery = reply()
            except Exception as exc:  # noqa: BLE001 - a channel bug: whether it went out is not known
                self._in_flight = None
                return _channel_error(message, name, exc)
            self._in_flight = None
            return self._outcome(message, delivery, attempts, parts, now)

        return answer

    def _outcome(self, message: Outgoing, delivery: Delivery, attempts: int, parts: int | None,
                 now: dt.datetime) -> _Outcome:
        """What a channel's answer means for the message's row."""
        tried = attempts + 1
        parts = delivery.parts or parts
        if delivery.status == "sent":
            return _Outcome(message.id, SENT, provider_id=delivery.provider_id, parts=parts, tried=1, sent_at=now,
                            cost=delivery.cost, sent=message)
        if delivery.status == "deferred":
            if tried >= MAX_ATTEMPTS:
                return _Outcome(message.id, FAILED, error=f"gave up after {tried} attempts: {delivery.error}",
                                parts=parts, tried=1)
            # A provider that says how long to wait (a 429's Retry-After) knows better than our backoff.
            wait = (dt.timedelta(seconds=max(delivery.retry_after, 1.0)) if delivery.retry_after
                    else backoff(tried))
            return _Outcome(message.id, DEFERRED, error=delivery.error, parts=parts, tried=1, due_at=now + wait)
        if delivery.status == "bounced":
            return _Outcome(message.id, FAILED, error=f"bounced: {delivery.error}", parts=parts, tried=1,
                            bounce=message)
        if delivery.status == "failed":
            return _Outcome(message.id, FAILED, error=delivery.error, parts=parts, tried=1)
        return _Outcome(message.id, UNKNOWN, error=delivery.error or "the channel could not tell whether it was sent",
                        provider_id=delivery.provider_id, parts=parts, tried=1)

    def _mark_unknown(self, message_id: int, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(messages_t).where(messages_t.c.id == message_id, messages_t.c.status == SENDING)
                         .values(status=UNKNOWN, error=reason, attempts=messages_t.c.attempts + 1,
                                 updated_at=utcnow()))
        self.report.unknown += 1

    def _release(self, rest: list[tuple[Outgoing, int, int | None]], reason: str, *,
                 delay: dt.timedelta | None = RELEASE_DELAY) -> None:
        """Give up this worker's claim on rows no channel has had: due again after `delay` (None: as they were).

        A row already committed as `sending` is among them only when its
        channel said nothing was handed over (ChannelUnavailable) or was never called.
        """
        if not rest:
            return
        now = utcnow()
        params = [{"_id": m.id, "_status": DEFERRED if attempts else QUEUED} for m, attempts, _ in rest]
        values: dict[str, Any] = {"status": bindparam("_status"), "claimed_at": None, "updated_at": now}
        if delay is not None:
            values |= {"due_at": now + delay, "error": f"not sent yet: {reason}"}
        t = messages_t
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == bindparam("_id"), t.c.worker == self.worker,
                                         _status_in(SENDING, *_WAITING))
                         .values(**values), params)
        self.report.released += len(rest)

    def _flush(self, outcomes: list[_Outcome]) -> None:
        """Write outcomes in a transaction of their own (the end of a batch)."""
        if not outcomes:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            self._write(conn, outcomes, now)
        self._count(outcomes)

    def _write(self, conn: Connection, outcomes: list[_Outcome], now: dt.datetime, *,
               written: _Outcome | None = None) -> None:
        """Write outcomes, with bounces and the message_sent hook, in the caller's transaction.

        A message a channel had is updated only while it is this worker's and
        `sending` (or marked `unknown` meanwhile); a send rule's skip or hold only
        while the row is still this worker's and waiting: a row whose lease
        ran out and that another worker took is left to that worker. `written`
        is an outcome whose row the caller has updated already (its hooks still run here).
        """
        if not outcomes:
            return
        of_send: list[dict[str, Any]] = []
        of_policy: list[dict[str, Any]] = []
        for o in outcomes:
            if o is not written:
                (of_send if o.tried > 0 else of_policy).append(_outcome_params(o, self.worker, now))
        if of_send:
            conn.execute(_OUTCOME_OF_SEND, of_send)
        if of_policy:
            conn.execute(_OUTCOME_OF_POLICY, of_policy)
        hook = self._message_sent
        for o in outcomes:
            if o.bounce is not None:
                record_bounce(conn, self.settings, o.bounce, o.error or "bounced")
            elif o.sent is not None and hook.get_hookimpls():
                hook(conn=conn, message=_sent_dict(o))

    def _count(self, outcomes: list[_Outcome]) -> None:
        if not outcomes:
            return
        for o in outcomes:
            counter = "bounced" if o.bounce is not None else ("held" if o.status == QUEUED else o.status)
            setattr(self.report, counter, getattr(self.report, counter) + 1)
        if self.progress:
            self.progress(len(outcomes))


def _status_in(*states: str) -> Any:
    """`status IN (...)` spelt out, as statements run for many rows at once (executemany) need."""
    return or_(*(messages_t.c.status == s for s in states))


# The dispatcher's writes, built once: they run for every message, and building a statement
# costs more than running it.
_t = messages_t
_HAND_OVER = (update(_t).where(_t.c.id == bindparam("_id"), _t.c.worker == bindparam("_worker"),
                               _status_in(*_WAITING))
              .values(status=SENDING, claimed_at=bindparam("_now"), updated_at=bindparam("_now")))
_RENEW = (update(_t).where(_t.c.id.in_(bindparam("_ids", expanding=True)), _t.c.worker == bindparam("_worker"),
                           _status_in(*_WAITING))
          .values(claimed_at=bindparam("_now")))
_OUTCOME_VALUES = dict(status=bindparam("_status"), error=bindparam("_error"),
                       provider_id=func.coalesce(bindparam("_provider_id"), _t.c.provider_id),
                       parts=func.coalesce(bindparam("_parts"), _t.c.parts),
                       cost=func.coalesce(bindparam("_cost", type_=_t.c.cost.type), _t.c.cost),
                       attempts=_t.c.attempts + bindparam("_tried"),
                       due_at=func.coalesce(bindparam("_due_at", type_=_t.c.due_at.type), _t.c.due_at),
                       sent_at=bindparam("_sent_at", type_=_t.c.sent_at.type),
                       claimed_at=bindparam("_claimed_at", type_=_t.c.claimed_at.type),
                       updated_at=bindparam("_now", type_=_t.c.updated_at.type))
# A message a channel had: while it is this worker's and `sending` (or marked `unknown` meanwhile).
_WAS_SENDING = _status_in(SENDING, UNKNOWN)
_OUTCOME_OF_SEND = (update(_t).where(_t.c.id == bindparam("_id"), _t.c.worker == bindparam("_worker"),
                                     _WAS_SENDING).values(**_OUTCOME_VALUES))
# A send rule's skip or hold: while the row is still this worker's and waiting.
_OUTCOME_OF_POLICY = (update(_t).where(_t.c.id == bindparam("_id"), _t.c.worker == bindparam("_worker"),
                                       _status_in(*_WAITING)).values(**_OUTCOME_VALUES))


def _outcome_params(o: _Outcome, worker: str, now: dt.datetime) -> dict[str, Any]:
    """The bound values of _OUTCOME_VALUES for one outcome."""
    return {"_id": o.id, "_worker": worker, "_now": now, "_status": o.status, "_error": o.error,
            "_provider_id": o.provider_id, "_parts": o.parts, "_tried": o.tried, "_due_at": o.due_at,
            "_sent_at": o.sent_at, "_cost": o.cost,
            # a row that waits again is free for any worker when it is due
            "_claimed_at": None if o.status in _WAITING else now}


class _Compiled(NamedTuple):
    """A statement as `_Prepared` runs it on one database."""

    sql: str
    pick: Callable[[dict[str, Any]], Any] | None  # the values in the order of the SQL's positional parameters
    fixed: dict[str, Any]  # values that are literals in the statement
    processors: dict[str, tuple[int, Callable[[Any], Any]]]  # name → (kind of type, bind processor)


def _picker(order: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The values of a positional statement's parameters, in its order, as one tuple."""
    if len(order) == 1:  # itemgetter of one name gives the value itself
        name = order[0]
        return lambda values: (values[name],)
    if not order:
        return lambda values: ()
    return operator.itemgetter(*order)


class _Prepared:
    """A statement compiled once per database and run on the driver's own cursor, in the caller's transaction.

    The hand-over runs once per letter, and through SQLAlchemy's execution
    path (cache key, parameter processing, result set-up) its Python costs
    several times what the database spends on it. The SQL is SQLAlchemy's own
    compilation and the values pass through the same type processors
    (times, numbers), so the database sees exactly what `conn.execute` would
    send; only the bookkeeping around it is skipped. When something listens
    to the connection's statements (before_cursor_execute or
    after_cursor_execute: logging, a test counting statements), the statement
    goes through SQLAlchemy's driver-level path instead, so they hear it.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, dialect: Any) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            processors: dict[str, tuple[int, Callable[[Any], Any]]] = {}
            fixed: dict[str, Any] = {}
            kinds: dict[tuple[type, str], int] = {}
            for bind, name in compiled.bind_names.items():  # as SQLAlchemy picks a name's processor
                impl = bind.type.dialect_impl(dialect)
                processor = impl.bind_processor(dialect)
                if processor is not None:
                    # Names of one type share a kind: the same value (the hand-over's time in several
                    # columns) is processed once for them all.
                    kind = kinds.setdefault((type(impl), repr(impl)), len(kinds))
                    processors[name] = (kind, processor)
                if not bind.required:  # a literal in the statement (the status 'sending')
                    fixed[name] = bind.effective_value
            if compiled.escaped_bind_names:  # names a driver cannot take as they are: none of ours so far
                raise MessagingError(f"cannot prepare {sorted(compiled.escaped_bind_names)}")
            order = tuple(compiled.positiontup) if compiled.positional else None
            pick = None if order is None else _picker(order)
            found = self._by_dialect[dialect.name] = _Compiled(compiled.string, pick, fixed, processors)
        return found

    def run(self, conn: Connection, params: dict[str, Any]) -> tuple[int, list[Any]]:
        """Execute with `params` (every bound name the statement has); the rows it changed and those it returned."""
        sql, pick, defaults, processors = self._compiled(conn.dialect)
        values = defaults | params
        done: dict[tuple[int, int], Any] = {}
        for name, (kind, processor) in processors.items():
            value = values[name]
            key = (kind, id(value))  # `params` holds every value meanwhile, so an id names one object
            if key in done:
                values[name] = done[key]
            else:
                values[name] = done[key] = processor(value)
        bound: Any = pick(values) if pick is not None else values
        if conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute:
            result = conn.exec_driver_sql(sql, bound)
            if result.returns_rows:  # RETURNING: the rows it changed are the rows it returned
                rows = list(result.all())
                return len(rows), rows
            return result.rowcount, []
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, bound)
            returned = cursor.fetchall() if cursor.description else []
            return cursor.rowcount, returned
        finally:
            cursor.close()


# The hand-over, in four shapes built once each: with or without the consent guard (for a letter the
# batch read allowed, hub.consent.still_allowed; transactional letters need no granted answer), and
# alone or with the outcome of the message handed over before it.
_HAND_OVERS: dict[tuple[bool | None, bool], _Prepared] = {}


def _hand_over_statement(guard: consent.Guard | None) -> _Prepared:
    """`message → sending`, while it is this worker's and waiting (and, guarded, still allowed)."""
    key = (None if guard is None else guard.transactional, False)
    found = _HAND_OVERS.get(key)
    if found is None:
        stmt = _HAND_OVER if guard is None else _HAND_OVER.where(consent.still_allowed(guard.transactional))
        found = _HAND_OVERS[key] = _Prepared(stmt)
    return found


def _hand_over_after_statement(guard: consent.Guard | None) -> _Prepared:
    """`_id → sending` and `_prev → its outcome` in one UPDATE, each row on its own conditions; returns the ids.

    The row `_id` changes as _HAND_OVER changes it, the row `_prev` as
    _OUTCOME_OF_SEND does: every column is a CASE on which row it is.
    """
    key = (None if guard is None else guard.transactional, True)
    found = _HAND_OVERS.get(key)
    if found is None:
        this = _t.c.id == bindparam("_id")
        handed = {"status": literal(SENDING), "claimed_at": bindparam("_now", type_=_t.c.claimed_at.type),
                  "updated_at": bindparam("_now", type_=_t.c.updated_at.type)}
        values = {name: case((this, handed.get(name, _t.c[name])), else_=value)
                  for name, value in _OUTCOME_VALUES.items()}
        take = and_(this, _status_in(*_WAITING))
        if guard is not None:
            take = and_(take, consent.still_allowed(guard.transactional))
        stmt = (update(_t).where(_t.c.id.in_([bindparam("_id"), bindparam("_prev")]),
                                 _t.c.worker == bindparam("_worker"),
                                 or_(take, and_(_t.c.id == bindparam("_prev"), _WAS_SENDING)))
                .values(**values).returning(_t.c.id))
        found = _HAND_OVERS[key] = _Prepared(stmt)
    return found


def _channel_error(message: Outgoing, name: str, exc: Exception) -> _Outcome:
    return _Outcome(message.id, UNKNOWN, error=f"{name} channel error: {type(exc).__name__}: {exc}", tried=1)


def _refusal(message: Outgoing, verdict: Verdict) -> _Outcome:
    """A send rule's objection as an outcome: held until a time, or suppressed."""
    if verdict.until is not None:
        return _Outcome(message.id, QUEUED, error=f"held: {verdict.reason}", due_at=verdict.until)
    return _Outcome(message.id, SUPPRESSED, error=verdict.reason)


def _sent_dict(o: _Outcome) -> dict[str, Any]:
    m = o.sent
    assert m is not None
    return {"id": m.id, "contact_id": m.contact_id, "channel": m.channel, "address": m.address,
            "purpose": m.purpose, "template": m.template, "subject": m.subject, "idempotency_key": m.key,
            "provider_id": o.provider_id, "parts": o.parts, "sent_at": o.sent_at, "meta": dict(m.meta)}


def dispatch(engine: Engine, settings: Settings, *, channels: Sequence[str] | None = None,
             batch_size: int = DEFAULT_BATCH, limit: int | None = None, ids: Sequence[int] | None = None,
             worker: str | None = None, progress: Callable[[int], None] | None = None,
             now: dt.datetime | None = None) -> DispatchReport:
    """Send what is due, batch by batch, until the outbox has nothing ready (or `limit` is reached).

    Safe to run in any number of processes at once: each row is claimed by one.
    Every message passes the send rules (the check_send hook) first. `now`
    makes the run judge what is due and what the rules allow as of that
    moment (a scheduler replaying a given time); by default, the clock.
    """
    dispatcher = Dispatcher(engine, settings, worker=worker, batch_size=batch_size, progress=progress, now=now)
    return dispatcher.run(channels=channels, limit=limit, ids=ids)


def send(engine: Engine, settings: Settings, **create_args: Any) -> dict[str, Any]:
    """Create one message (see create) and dispatch it right away; returns its row.

    With a key that exists, nothing is created and nothing is sent again: the
    existing row is returned as it is.
    """
    with engine.connect() as conn:
        prepared = prepare(conn, settings, **create_args)
    if isinstance(prepared, Created):
        created = prepared
    else:
        with engine.begin() as conn:
            created = insert(conn, prepared)
    if created.created:
        dispatch(engine, settings, channels=[create_args["channel"]], ids=[created.id])
    with engine.connect() as conn:
        found = get(conn, created.id)
    assert found is not None
    return found


def dispatch_job(channels: list[str] | None = None, batch_size: int = DEFAULT_BATCH,
                 limit: int | None = None) -> dict[str, Any]:
    """The queue job: a dispatch in a worker, with settings read afresh there."""
    from hub.config import load_settings

    settings = load_settings()
    return dispatch(get_engine(settings.database_url), settings, channels=channels, batch_size=batch_size,
                    limit=limit).as_dict()
