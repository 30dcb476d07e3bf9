"""amoCRM pacing: a request that left late catches up within one process, never past 7 in a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from hub.ratelimit import LocalBucket, RedisBucket
from plugins.amocrm import tokens
from plugins.amocrm.client import WINDOW_S
from plugins.amocrm.sandbox import Account, SandboxServer
from plugins.amocrm.source import CATCH_UP, client_for
from tests.conftest import HubDB, with_settings


@pytest.fixture
def account() -> Iterator[SandboxServer]:
    server = SandboxServer(Account(contacts=30, seed=2)).start()
    yield server
    server.stop()


def connect(db: HubDB, server: SandboxServer) -> None:
    tokens.save(db.engine, db.settings,
                tokens.long_lived_connection(server.base_url, server.account.issue_long_lived_token()))


def test_one_process_may_catch_up_and_workers_sharing_redis_may_not(hub_db: HubDB, account: SandboxServer,
                                                                   redis_url: str) -> None:
    connect(hub_db, account)
    alone = client_for(hub_db.settings)
    assert isinstance(alone.limiter, LocalBucket) and alone.limiter.burst == CATCH_UP > 1
    shared = client_for(with_settings(hub_db.settings, redis_url=redis_url))
    assert isinstance(shared.limiter, RedisBucket) and shared.limiter.burst == 1


def test_late_senders_catching_up_never_put_eight_requests_in_a_second(hub_db: HubDB,
                                                                      account: SandboxServer) -> None:
    """Four threads, each stalling now and then as if the CPU were elsewhere: amoCRM refuses nothing.

    The emulator counts requests when they arrive and answers 429 to an eighth within a second; the
    client's own window is checked too, over every eight consecutive sends.
    """
    connect(hub_db, account)
    client = client_for(hub_db.settings)
    failures: list[BaseException] = []

    def fetch(worker: int) -> None:
        try:
            for i in range(8):
                if (worker + i) % 3 == 0:
                    time.sleep(0.35)  # a stall: its turn in the bucket passes, and it may take it back later
                client.get("/api/v4/account")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    sends: list[float] = []
    window = client.window
    assert window is not None
    settle = window._settle

    def stamped(sent: bool) -> None:
        settle(sent)
        if sent:
            sends.append(time.monotonic())

    window._settle = stamped  # type: ignore[method-assign]
    threads = [threading.Thread(target=fetch, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures
    assert account.account.stats()["too_many_requests"] == 0
    assert len(sends) == 32
    assert all(later - first >= WINDOW_S - 1e-3 for first, later in zip(sends, sends[7:], strict=False))
