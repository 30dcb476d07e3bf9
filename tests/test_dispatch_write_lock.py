"""On SQLite a hand-over that finds the write lock taken asks again in short steps, as long as busy_timeout allows,
and hands every letter over exactly once; the connection goes back to the pool with its own busy_timeout."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from typing import Any, Callable

import pytest
from sqlalchemy import event

from hub import messaging
from hub.hookspecs import hookimpl
from hub.messaging import Outgoing, dispatcher
from tests.conftest import HubDB
from tests.test_messaging import Channels, make, person, row


@pytest.fixture
def channels(plugin_manager: Any) -> Channels:
    plugin = Channels()
    plugin_manager.register(plugin)
    return plugin


class LockHolder:
    """A send rule that, asked about a given letter, has another connection take the write lock.

    The rule returns once the lock is taken, so the hand-over of that very
    letter meets it; the other connection lets go from its own thread after
    `hold` seconds, or as soon as `until()` says so (then `hold` only bounds the wait).
    """

    def __init__(self, path: str, letter: int, hold: float, until: Callable[[], bool] | None = None) -> None:
        self.path, self.letter, self.hold, self.until = path, letter, hold, until
        self.thread: threading.Thread | None = None

    @hookimpl
    def check_send(self, conn: Any, settings: Any, message: Outgoing, now: dt.datetime) -> None:
        if message.id != self.letter or self.thread is not None:
            return
        taken = threading.Event()

        def hold() -> None:
            other = sqlite3.connect(self.path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            taken.set()
            deadline = time.monotonic() + self.hold
            pause = threading.Event()  # not time.sleep, which a test may be counting
            while time.monotonic() < deadline and not (self.until is not None and self.until()):
                pause.wait(0.001)
            other.execute("COMMIT")
            other.close()

        self.thread = threading.Thread(target=hold)
        self.thread.start()
        assert taken.wait(10)


def sqlite_path(db: HubDB) -> str:
    return db.url.removeprefix("sqlite:///")


def test_a_hand_over_waits_for_another_writer_and_sends_each_letter_once(
        hub_db: HubDB, channels: Channels, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [make(hub_db, person(hub_db, first=f"Имя{i}", email=f"p{i}@example.ru"), f"k{i}").id for i in range(4)]
    pauses: list[float] = []
    # Let go once the hand-over has asked again five times (however busy the machine), 30 s at most.
    holder = LockHolder(sqlite_path(hub_db), ids[2], hold=30, until=lambda: len(pauses) >= 5)
    plugin_manager.register(holder)
    real_sleep = dispatcher.time.sleep

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(dispatcher.time, "sleep", sleep)

    report = messaging.dispatch(hub_db.engine, hub_db.settings)

    assert holder.thread is not None
    holder.thread.join()
    assert report.sent == 4 and report.unknown == 0 and not report.errors
    assert [m.id for m in channels.email.sent] == ids  # each once, in order
    assert all(row(hub_db, i)["status"] == "sent" for i in ids)
    assert len(pauses) >= 5 and max(pauses) <= max(dispatcher.LOCK_PAUSES)  # it asked again, in short steps


def test_a_lock_held_past_busy_timeout_stops_the_dispatch_and_sends_nothing_twice(
        hub_db: HubDB, channels: Channels, plugin_manager: Any) -> None:
    @event.listens_for(hub_db.engine, "connect")
    def short_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=100")

    hub_db.engine.dispose()  # new connections, with the short wait
    ids = [make(hub_db, person(hub_db, first=f"Имя{i}", email=f"p{i}@example.ru"), f"k{i}").id for i in range(3)]
    holder = LockHolder(sqlite_path(hub_db), ids[1], hold=1.5)
    plugin_manager.register(holder)

    with pytest.raises(Exception, match="database is locked"):
        messaging.dispatch(hub_db.engine, hub_db.settings)
    assert holder.thread is not None
    holder.thread.join()

    assert [m.id for m in channels.email.sent] == [ids[0]]  # the one handed over before the lock was taken
    # Its outcome could not be written either (the lock was still held): the one letter in doubt a
    # stopped worker may leave, for recover_stale; the others were never handed over.
    assert row(hub_db, ids[0])["status"] == "sending"
    assert [row(hub_db, i)["status"] for i in ids[1:]] == ["queued", "queued"]
    again = messaging.dispatch(hub_db.engine, hub_db.settings, ids=ids[1:], worker="the next worker",
                               now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5))  # the lease ran out
    assert again.sent == 2
    assert [m.id for m in channels.email.sent] == ids  # nothing twice


def test_the_connection_goes_back_to_the_pool_with_its_own_busy_timeout(hub_db: HubDB, channels: Channels) -> None:
    make(hub_db, person(hub_db), "k")
    seen: list[int] = []

    @event.listens_for(hub_db.engine, "checkin")
    def returned(dbapi_conn: Any, _record: Any) -> None:
        seen.append(int(dbapi_conn.execute("PRAGMA busy_timeout").fetchone()[0]))

    report = messaging.dispatch(hub_db.engine, hub_db.settings)
    assert report.sent == 1
    assert seen and all(timeout == 30000 for timeout in seen)
