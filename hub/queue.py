"""Where work runs: RQ workers when Redis is configured, this process otherwise.

Callers enqueue the same job functions either way, so the demo and a small
shop need no Redis, and a larger one adds `hub worker` processes without a
code change. Redis only carries work: every job reads and writes its state in
the database, so flushing Redis loses nothing.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import re
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from hub.config import Settings, SettingsError
from hub.i18n import gettext as _

DEFAULT_QUEUES = ("high", "default", "webhooks", "low")  # webhooks: deliveries, a lane of their own
# How long a job may run on RQ before its work-horse is ended. RQ's own default (180 s) would cut
# off a full sync of a large portal, which a CRM's rate limit stretches over hours; a job that
# hangs is still ended, and what it committed stays (syncs resume from their cursors).
JOB_TIMEOUT_S = 24 * 3600
log = logging.getLogger(__name__)

# RQ accepts only these characters in a job id (rq.job.JOB_ID_PATTERN) and refuses anything else.
_RQ_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NOT_RQ = re.compile(r"[^A-Za-z0-9_-]+")


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
        raise RuntimeError(_("HUB_REDIS_URL is not set"))
    return Redis.from_url(settings.redis_url)


# How long a look at Redis from a page may wait. Without a limit, a Redis whose packets are dropped
# holds the asking request for minutes (the kernel's TCP timeouts), and with it every admin page.
PROBE_TIMEOUT_S = 0.5


def probe_connection(settings: Settings) -> Any:
    """A connection for looking at Redis (the banner, /status.json, /healthz, the dashboard), never for work.

    It gives up after PROBE_TIMEOUT_S, connecting or reading, and does not
    retry: a page says "Redis cannot be reached" in half a second instead of
    waiting as long as the network does. Jobs keep `redis_connection`, whose
    patience is right for them.
    """
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if not settings.redis_url:
        raise RuntimeError(_("HUB_REDIS_URL is not set"))
    return Redis.from_url(settings.redis_url, socket_connect_timeout=PROBE_TIMEOUT_S,
                          socket_timeout=PROBE_TIMEOUT_S, retry=Retry(NoBackoff(), 0))


def job_key(job_id: str) -> str:
    """The RQ job id for a caller's `job_id`: the same id whenever the caller passes the same one.

    RQ refuses ids with anything but letters, digits, '_' and '-', and a
    webhook receiver that passed "bitrix24:contacts:17:…" answered 500 for
    every event. An id RQ accepts (and up to 64 characters) is kept as it is;
    any other becomes its readable part plus a hash of the whole, so two
    different ids never meet ("a:b" and "a_b" stay two jobs) and the same id
    always maps to the same job, which keeps enqueues idempotent.
    """
    if _RQ_ID.fullmatch(job_id):
        return job_id
    readable = _NOT_RQ.sub("-", job_id).strip("-")[:48]
    digest = hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{readable}-{digest}" if readable else f"job-{digest}"


def enqueue(settings: Settings, func: Callable[..., Any], *args: Any, queue: str = "default",
            job_id: str | None = None, background: bool = False, lane: str = "jobs", **kwargs: Any) -> Enqueued:
    """Run `func` on a worker, or in this process when there is no Redis.

    `job_id` makes an enqueue idempotent on RQ: a second enqueue with the same
    id while the first is pending replaces nothing and runs nothing twice.
    Any string will do: it is turned into an id RQ accepts by `job_key`.
    Without Redis the job runs right here, unless `background` asks for it to
    run after the caller returns (a web request that must answer at once):
    then it goes to the background thread of its `lane`, so such jobs run one
    at a time per lane (webhook deliveries have a lane of their own, so a slow
    receiver never holds up signup letters or syncs).
    """
    global _submitted
    if job_id is not None:
        job_id = job_key(job_id)
    if not settings.redis_url:
        if background:
            with _executor_lock:
                _submitted += 1
            context = contextvars.copy_context()  # the job runs in the caller's language
            future = _background(lane).submit(context.run, _logged, func, args, kwargs)
            return Enqueued(id=job_id or func.__name__, inline=True, job=future)
        return Enqueued(id=job_id or func.__name__, inline=True, result=func(*args, **kwargs))
    from rq import Queue

    q = Queue(queue, connection=redis_connection(settings))
    if job_id is not None:
        existing = q.fetch_job(job_id)
        status = existing.get_status(refresh=True) if existing is not None else None
        if status == "started":
            # A worker whose machine died leaves its job "started" until RQ's own clean-up (every
            # 10 minutes); its heartbeat lapsed 90 s after the death, and then it is abandoned, not
            # running: marked failed here, so the schedule hands the work out again at once.
            q.started_job_registry.cleanup()
            status = existing.get_status(refresh=True) if existing is not None else None
        if existing is not None and status in ("queued", "started", "deferred", "scheduled"):
            return Enqueued(id=job_id, inline=False, job=existing)
    job = q.enqueue(func, *args, job_id=job_id, job_timeout=job_timeout(settings), **kwargs)
    return Enqueued(id=job.id, inline=False, job=job)


def job_timeout(settings: Settings) -> int:
    """HUB_JOB_TIMEOUT_S: seconds a job may run on a worker (default a day)."""
    raw = settings.extra.get("job_timeout_s")
    if raw is None or str(raw).strip() == "":
        return JOB_TIMEOUT_S
    try:
        seconds = int(str(raw).strip())
    except ValueError:
        seconds = 0
    if seconds < 60:
        raise SettingsError(_("HUB_JOB_TIMEOUT_S: %(value)r is not a number of seconds (60 or more)",
                              value=str(raw)[:40]))
    return seconds


_executors: dict[str, ThreadPoolExecutor] = {}
_submitted = 0  # background jobs handed to a lane so far: drain() waits until none came in meanwhile
_executor_lock = threading.Lock()


def _background(lane: str = "jobs") -> ThreadPoolExecutor:
    with _executor_lock:
        executor = _executors.get(lane)
        if executor is None:
            executor = _executors[lane] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hub-{lane}")
        return executor


def _logged(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return func(*args, **kwargs)
    except Exception:
        log.exception("background job %s failed", getattr(func, "__name__", func))
        raise


def drain(timeout: float | None = None) -> None:
    """Wait for in-process background jobs queued so far, in every lane (tests and shutdown).

    Lanes are drained until all are idle together: a job in one lane may queue
    work in another (a signup letter's commit queues its webhook deliveries).
    """
    while True:
        submitted = _submitted
        with _executor_lock:
            lanes = list(_executors.values())
        for executor in lanes:
            executor.submit(lambda: None).result(timeout=timeout)
        if _submitted == submitted:
            return


def work(settings: Settings, queues: tuple[str, ...] = DEFAULT_QUEUES, *, burst: bool = False,
         simple: bool = False) -> bool:
    """Run an RQ worker on `queues` (a forking one unless `simple`) that stops promptly on SIGTERM."""
    forking, in_process = worker_classes()
    cls = in_process if simple else forking
    worker = cls(list(queues), connection=redis_connection(settings))
    return worker.work(burst=burst, with_scheduler=False)


def workers(settings: Settings, connection: Any = None) -> int:
    """How many RQ workers (`hub worker`) are listening on this Redis: 0 means queued work waits for nobody.

    RQ's own registry (`Worker.count`) still lists a worker that was killed
    (SIGKILL, a lost server) until a live worker cleans it up, which never
    happens when none is left; a worker counts here only while its heartbeat
    key lives (RQ lets it expire some minutes after the worker stopped beating).
    """
    from rq import Worker

    conn = connection if connection is not None else probe_connection(settings)
    keys = Worker.all_keys(connection=conn)
    if not keys:
        return 0
    pipe = conn.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return sum(1 for found in pipe.execute() if found)


def health(settings: Settings) -> dict[str, Any]:
    """Queue sizes, failed jobs and listening workers, for monitoring and the admin dashboard."""
    if not settings.redis_url:
        return {"mode": "in-process"}
    from rq import Queue

    conn = probe_connection(settings)
    out: dict[str, Any] = {"mode": "rq", "workers": workers(settings, conn), "queues": {}}
    for name in DEFAULT_QUEUES:
        q = Queue(name, connection=conn)
        out["queues"][name] = {"queued": q.count, "failed": q.failed_job_registry.count}
    return out


# --- stopping promptly --------------------------------------------------------------------

# A long job (an outbox dispatch) asks this between units of work: once set, it finishes the one
# in hand, puts the rest back and returns, so `hub worker` stops within moments of SIGTERM
# instead of after the whole job. RQ's own warm shutdown only waits for the job to end.
STOP_SIGNAL = getattr(signal, "SIGUSR1", None)  # (none on Windows) what `hub worker` sends its work-horse on SIGTERM
_stopping = False


def stop_requested() -> bool:
    """Whether this process has been asked to stop; long jobs check it between units of work."""
    return _stopping


def request_stop() -> None:
    """Ask the jobs running in this process to return at their next safe point."""
    global _stopping
    _stopping = True


def clear_stop() -> None:
    """Forget an earlier request (a process that starts working again, tests)."""
    global _stopping
    _stopping = False


def _on_stop_signal(signum: int, frame: Any) -> None:
    request_stop()


LISTEN_S = 1.0  # how long a worker's command listener reads before looking whether to stop


class _PromptStop:
    """Hub's additions to RQ's workers: on SIGTERM the job in hand is told to wrap up.

    RQ's warm shutdown waits for the current job however long it runs. Here the
    worker also sets the stop flag in its own process (SimpleWorker runs jobs
    there) and sends STOP_SIGNAL to the work-horse; the horse inherits a handler
    that sets the flag, so the signal can never kill it, even right after the
    fork. A SIGTERM sent to the horse directly (a service manager stopping the
    whole group) sets the flag too; RQ's cold shutdown still kills it with SIGKILL.
    """

    horse_pid: int

    def _install_signal_handlers(self) -> None:
        clear_stop()
        if STOP_SIGNAL is not None:
            signal.signal(STOP_SIGNAL, _on_stop_signal)
        super()._install_signal_handlers()  # type: ignore[misc]

    def request_stop(self, signum: int, frame: Any) -> None:
        request_stop()
        if self.horse_pid and STOP_SIGNAL is not None:
            try:
                os.kill(self.horse_pid, STOP_SIGNAL)
            except ProcessLookupError:
                pass
        super().request_stop(signum, frame)  # type: ignore[misc]

    def setup_work_horse_signals(self) -> None:
        super().setup_work_horse_signals()  # type: ignore[misc]
        signal.signal(signal.SIGTERM, _on_stop_signal)

    def subscribe(self) -> None:
        """RQ's listener for worker commands, reading for LISTEN_S at a time instead of a minute.

        The listener thread sees that it should end only between two reads, and RQ waits for it
        when the worker stops. With RQ's one-minute reads, a worker whose listener had just begun
        another read (which depends on how threads happen to be scheduled) took a minute to stop.
        """
        self.pubsub = self.connection.pubsub()  # type: ignore[attr-defined]
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})  # type: ignore[attr-defined]
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=LISTEN_S, daemon=True, exception_handler=self._pubsub_exception_handler)  # type: ignore[attr-defined]


def worker_classes() -> tuple[type, type]:
    """(forking worker, simple worker) with Hub's prompt stop."""
    from rq import SimpleWorker, Worker

    class HubWorker(_PromptStop, Worker):
        pass

    class HubSimpleWorker(_PromptStop, SimpleWorker):
        pass

    return HubWorker, HubSimpleWorker
