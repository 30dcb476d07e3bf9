"""The leaky bucket lets a burst through, then paces to the rate, in-process and in Redis."""

from __future__ import annotations

import threading

from hub.ratelimit import LocalBucket, RedisBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_burst_then_paced_to_the_rate() -> None:
    clock = FakeClock()
    bucket = LocalBucket(2, 50, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(60)]
    assert waits[:50] == [0.0] * 50
    assert all(abs(w - 0.5) < 1e-9 for w in waits[50:])
    assert abs(clock.now - 1005.0) < 1e-9  # 10 requests past the burst at 2/s


def test_a_quiet_bucket_drains_and_allows_a_new_burst() -> None:
    clock = FakeClock()
    bucket = LocalBucket(2, 10, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        bucket.acquire()
    assert bucket.delay() > 0
    clock.now += 5  # drains 10 slots
    assert [bucket.delay() for _ in range(10)] == [0.0] * 10
    assert bucket.delay() > 0


def test_threads_share_one_bucket() -> None:
    clock = FakeClock()
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


def test_a_sliding_window_never_lets_more_than_the_limit_into_any_window() -> None:
    from hub.ratelimit import SlidingWindow

    clock = FakeClock()
    window = SlidingWindow(7, 1.05, clock=clock, sleep=clock.sleep)
    starts = []
    for i in range(30):
        if i % 5 == 0:
            clock.now += 0.08  # a send held up by a busy thread
        window.acquire()
        starts.append(clock.now)
    assert all(starts[i + 7] - starts[i] >= 1.05 - 1e-9 for i in range(len(starts) - 7))
