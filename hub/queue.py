"""Where work runs: RQ workers when Redis is configured, this process otherwise.

Callers enqueue the same job functions either way, so the demo and a small
shop need no Redis, and a larger one adds `hub worker` processes without a
code change. Redis only carries work: every job reads and writes its state in
the database, so flushing Redis loses nothing.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from hub.config import Settings

DEFAULT_QUEUES = ("high", "default", "low")
log = logging.getLogger(__name__)


@dataclass
class Enqueued:
    """A job handed to RQ (`job` set) or already run in-process (`result` set)."""

    id: str
    inline: bool
    result: Any = None
    job: Any = None


def redis_connection(settings: Settings) -> Any:
    from redis import Redis

    if not settings.redis_url:
        raise RuntimeError("HUB_REDIS_URL is not set")
    return Redis.from_url(settings.redis_url)


def enqueue(settings: Settings, func: Callable[..., Any], *args: Any, queue: str = "default",
            job_id: str | None = None, background: bool = False, **kwargs: Any) -> Enqueued:
    """Run `func` on a worker, or in this process when there is no Redis.

    `job_id` makes an enqueue idempotent on RQ: a second enqueue with the same
    id while the first is pending replaces nothing and runs nothing twice.
    Without Redis the job runs right here, unless `background` asks for it to
    run after the caller returns (a web request that must answer at once):
    then it goes to one background thread, so such jobs run one at a time.
    """
    if not settings.redis_url:
        if background:
            future = _background().submit(_logged, func, args, kwargs)
            return Enqueued(id=job_id or func.__name__, inline=True, job=future)
        return Enqueued(id=job_id or func.__name__, inline=True, result=func(*args, **kwargs))
    from rq import Queue

    q = Queue(queue, connection=redis_connection(settings))
    if job_id is not None:
        existing = q.fetch_job(job_id)
        if existing is not None and existing.get_status(refresh=True) in ("queued", "started", "deferred", "scheduled"):
            return Enqueued(id=job_id, inline=False, job=existing)
    job = q.enqueue(func, *args, job_id=job_id, **kwargs)
    return Enqueued(id=job.id, inline=False, job=job)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _background() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-job")
        return _executor


def _logged(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return func(*args, **kwargs)
    except Exception:
        log.exception("background job %s failed", getattr(func, "__name__", func))
        raise


def drain(timeout: float | None = None) -> None:
    """Wait for in-process background jobs queued so far (tests and shutdown)."""
    done = _background().submit(lambda: None)
    done.result(timeout=timeout)


def work(settings: Settings, queues: tuple[str, ...] = DEFAULT_QUEUES, *, burst: bool = False,
         simple: bool = False) -> bool:
    """Run an RQ worker on `queues` (a forking one unless `simple`)."""
    from rq import SimpleWorker, Worker

    cls = SimpleWorker if simple else Worker
    worker = cls(list(queues), connection=redis_connection(settings))
    return worker.work(burst=burst, with_scheduler=False)


def health(settings: Settings) -> dict[str, Any]:
    """Queue sizes and failed jobs, for monitoring and the admin dashboard."""
    if not settings.redis_url:
        return {"mode": "in-process"}
    from rq import Queue

    conn = redis_connection(settings)
    out: dict[str, Any] = {"mode": "rq", "queues": {}}
    for name in DEFAULT_QUEUES:
        q = Queue(name, connection=conn)
        out["queues"][name] = {"queued": q.count, "failed": q.failed_job_registry.count}
    return out
