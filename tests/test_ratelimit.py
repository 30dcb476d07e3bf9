"""The leaky bucket lets a burst through, then paces to the rate, in-process and in Redis."""

from __future__ import annotations

import threading

import pytest

from hub.ratelimit import LocalBucket, RedisBucket, SendWindow
from tests.support.clock import ManualClock


def test_burst_then_paced_to_the_rate() -> None:
    clock = ManualClock(1000.0)
    bucket = LocalBucket(2, 50, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(60)]
    assert waits[:50] == [0.0] * 50
    assert all(abs(w - 0.5) < 1e-9 for w in waits[50:])
    assert abs(clock.now - 1005.0) < 1e-9  # 10 requests past the burst at 2/s


def test_a_quiet_bucket_drains_and_allows_a_new_burst() -> None:
    clock = ManualClock(1000.0)
    bucket = LocalBucket(2, 10, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        bucket.acquire()
    assert bucket.delay() > 0
    clock.now += 5  # drains 10 slots
    assert [bucket.delay() for _ in range(10)] == [0.0] * 10
    assert bucket.delay() > 0


def test_threads_share_one_bucket() -> None:
    clock = ManualClock(1000.0)
    bucket = LocalBucket(5, 5, clock=clock, sleep=lambda s: None)
    taken: list[float] = []

    def grab() -> None:
        for _ in range(20):
            if bucket.delay() == 0:
                taken.append(clock())

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 5  # the clock never moved: exactly one burst among all threads


def test_redis_bucket_is_shared_between_instances(redis_url: str) -> None:
    from redis import Redis

    conn = Redis.from_url(redis_url)
    conn.delete("hub:ratelimit:test-shared")
    first = RedisBucket(conn, "test-shared", rate=1, burst=3)
    second = RedisBucket(Redis.from_url(redis_url), "test-shared", rate=1, burst=3)
    assert [first.delay(), second.delay(), first.delay()] == [0.0, 0.0, 0.0]
    wait = second.delay()
    assert 0.9 < wait <= 1.0  # the fourth request waits for one slot to drain, whoever asks


def test_a_request_is_stamped_when_written_not_when_its_place_was_granted() -> None:
    clock = ManualClock(1000.0)
    window = SendWindow(7, 1.0, clock=clock, sleep=clock.sleep)
    first = window.reserve()
    clock.now += 0.3  # this thread waits 0.3 s for the GIL before the bytes go out
    first.sent()
    for _ in range(6):
        window.reserve().sent()
    window.reserve().sent()
    # A stamp taken at the grant would have let the eighth go at 1001.0, 0.7 s after the first left.
    assert clock.now == pytest.approx(1001.3)
    assert window.sent_times()[-1] == pytest.approx(1001.3)


def test_no_place_is_granted_while_another_request_is_still_unwritten_and_a_cancel_takes_no_slot() -> None:
    window = SendWindow(2, 60.0)
    outstanding = window.reserve()
    granted = threading.Event()

    def next_sender() -> None:
        window.reserve().sent()
        granted.set()

    thread = threading.Thread(target=next_sender)
    thread.start()
    assert not granted.wait(0.2)
    outstanding.cancel()  # never sent: no stamp, and the next request may go
    assert granted.wait(60)  # a limit that only stops a broken test
    thread.join()
    assert len(window.sent_times()) == 1
    outstanding.sent()  # settling twice changes nothing
    assert len(window.sent_times()) == 1
