"""Reading a source ahead of writing it: order, bounded memory, errors in place, and a sync that overlaps."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any, Iterator

import pytest
from sqlalchemy import text

from hub import sync
from hub import readahead
from hub.readahead import ReadAhead
from hub.records import ActivityRecord, ContactRecord, OrderRecord
from tests.conftest import HubDB


def test_items_come_in_order_through_memory_and_the_spool() -> None:
    pages = [[f"r{page}-{i}" for i in range(page % 5 + 1)] for page in range(200)]
    release = threading.Event()

    def read() -> Iterator[list[str]]:
        yield from pages[:1]
        release.wait(10)  # the consumer holds the first page while the rest pile up
        yield from pages[1:]

    with ReadAhead(read, weight=len, in_memory=10) as ahead:
        got: list[list[str]] = []
        for page in ahead:
            if not got:
                release.set()
                while ahead._thread.is_alive():  # let the reader get to the end before taking any more
                    ahead._thread.join(0.01)
            got.append(page)
        assert ahead.spooled_total > 150  # most went to the file: only 10 records may wait in memory
    assert got == pages


def test_an_error_in_reading_comes_after_every_item_read_before_it() -> None:
    def read() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("page 3 is broken")

    got = []
    with pytest.raises(ValueError, match="page 3 is broken"), ReadAhead(read) as ahead:
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_stops_the_reader_and_closes_its_iterator() -> None:
    closed = threading.Event()
    produced = []

    def read() -> Iterator[int]:
        try:
            for i in range(1_000_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    ahead = ReadAhead(read, in_memory=5)
    with ahead:
        for item in ahead:
            if item == 3:
                break
    assert closed.is_set()
    assert not ahead._thread.is_alive()
    assert len(produced) < 1_000_000


class _OverlapSource:
    """Two entities; the second one's first read is seen while the first one's page is still being written."""

    name = "overlap"

    def __init__(self) -> None:
        self.orders_read = threading.Event()

    def entities(self) -> tuple[str, ...]:
        return ("contacts", "orders")

    def checkpoint(self, entity: str) -> str:
        return f"{entity}-then"

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[sync.Page]:
        if entity == "contacts":
            yield sync.Page([ContactRecord(source="overlap", external_id="c1", first_name="Анна",
                                           emails=["anna@example.ru"])], "1")
        else:
            self.orders_read.set()
            yield sync.Page([OrderRecord(source="overlap", external_id="o1", contact_external_id="c1",
                                         amount=Decimal(100), status="won")], "1")


def test_a_sync_reads_the_next_entity_while_it_writes_this_one(hub_db: HubDB,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    engine = hub_db.engine
    source = _OverlapSource()
    seen_while_writing: list[bool] = []
    write_page = sync.write_page

    def slow_write(conn: Any, records: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(records[0], ContactRecord):
            seen_while_writing.append(source.orders_read.wait(10))
        write_page(conn, records, *args, **kwargs)

    monkeypatch.setattr(sync, "write_page", slow_write)
    report = sync.run(engine, hub_db.settings, "overlap", full=True, source=source)
    assert seen_while_writing == [True]
    assert report.counts.contacts["created"] == 1 and report.counts.orders["created"] == 1
    with engine.connect() as conn:
        for entity in ("contacts", "orders"):
            cursor, full_state = sync._load_state(conn, "overlap", entity)
            assert (cursor, full_state) == (f"{entity}-then", None)


def test_pages_that_went_through_the_spool_are_written_as_read(hub_db: HubDB,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every record kind pickles: a sync whose every page waits in the file writes what it read."""
    source = _OverlapSource()
    monkeypatch.setattr(sync, "READ_AHEAD_RECORDS", 0)
    spooled = []
    original = ReadAhead._put

    def put(self: ReadAhead[Any], item: Any) -> None:
        original(self, item)
        spooled.append(self.spooled_total)

    monkeypatch.setattr(ReadAhead, "_put", put)
    report = sync.run(hub_db.engine, hub_db.settings, "overlap", full=True, source=source)
    assert report.counts.contacts["created"] == 1 and report.counts.orders["created"] == 1
    with hub_db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM orders WHERE contact_id IS NOT NULL")).scalar() == 1
    assert max(spooled) >= 1


class _ThreePasses(_OverlapSource):
    """Contacts, orders, then a pass of calls, which changes nobody's order stats."""

    def entities(self) -> tuple[str, ...]:
        return ("contacts", "orders", "activities")

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[sync.Page]:
        if entity == "activities":
            yield sync.Page([ActivityRecord(source="overlap", external_id="a1", kind="call",
                                            at=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc),
                                            contact_external_id="c1")], "1")
        else:
            yield from super().read(entity, cursor, full)


def test_order_stats_are_recomputed_after_a_pass_that_can_change_them_or_was_resumed(
        hub_db: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    refreshed: list[str] = []
    entity_now: list[str] = []
    real = sync.identity.refresh_source_stats

    def counting(conn: Any, source: str) -> None:
        refreshed.append(entity_now[-1])
        real(conn, source)

    def progress(entity: str, n: int) -> None:
        entity_now.append(entity)

    monkeypatch.setattr(sync.identity, "refresh_source_stats", counting)
    sync.run(hub_db.engine, hub_db.settings, "overlap", full=True, source=_ThreePasses(), progress=progress)
    assert refreshed == ["contacts", "orders"]  # not after the calls
    with hub_db.engine.connect() as conn:
        assert conn.execute(text("SELECT orders_count FROM contacts")).scalar() == 1

    # A pass of calls an earlier run began and a kill cut short: resumed, its stats are recomputed.
    with hub_db.engine.begin() as conn:
        sync._save_state(conn, "overlap", "activities", cursor="activities-then",
                         full={"page": "0", "then": "activities-then"})
    refreshed.clear()
    sync.run(hub_db.engine, hub_db.settings, "overlap", source=_ThreePasses(), progress=progress)
    assert refreshed == ["activities"]


def test_what_cannot_be_pickled_waits_in_memory_instead_of_stopping_the_read() -> None:
    release = threading.Event()

    def read() -> Iterator[Any]:
        yield [1]
        release.wait(10)
        for n in range(20):
            yield [lambda n=n: n]  # a lambda does not pickle

    with ReadAhead(read, weight=len, in_memory=1) as ahead:
        got = []
        for page in ahead:
            if not got:
                release.set()
                while ahead._thread.is_alive():
                    ahead._thread.join(0.01)
            got.append(page)
    assert got[0] == [1] and [page[0]() for page in got[1:]] == list(range(20))
    assert ahead.spooled_total == 0


def test_ctrl_c_does_not_wait_for_a_reader_stuck_in_a_slow_request() -> None:
    stuck = threading.Event()
    let_go = threading.Event()

    def read() -> Iterator[int]:
        yield 1
        stuck.set()
        let_go.wait(60)  # a request that takes its time
        yield 2

    ahead = ReadAhead(read)
    waited: list[float] = []
    join = ahead._thread.join

    def timed_join(timeout: float | None = None) -> None:
        waited.append(timeout if timeout is not None else -1)
        join(timeout)

    ahead._thread.join = timed_join  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt), ahead:
        for _ in ahead:
            stuck.wait(10)
            raise KeyboardInterrupt
    let_go.set()
    assert waited == [readahead.STOP_WAIT_S]
