"""Reading a source ahead of writing it, in a thread of its own.

A CRM that allows 7 requests a second sets the floor of a full sync: its
pages cannot come faster. Storing a page (identity resolution, upserts) takes
a varying share of the gap between two requests: longer than it for
contacts, much shorter for calls. Read and stored in turn, a slow stretch of
writing holds up the reading and the sync takes the sum of both; read by a
thread of its own while the caller writes, it takes about the longer of them.

What is read ahead waits in memory up to a bound (`in_memory`, in the units
of `weight`: records for pages) and beyond it pickled in a temporary file, so
a source that reads faster than the database writes is never held back and
memory stays bounded however far ahead it gets (an item that cannot be
pickled, such as a record of a class a plugins-directory file defines,
waits in memory all the same).

Items come out strictly in the order they were read, so resume points
committed with each page keep their meaning. An error in reading is raised to
the consumer where it happened, after every item read before it. When the
consumer stops early (its own error, Ctrl-C, a `break`), the reader is told to
stop at its next item and its iterator is closed in its own thread.
"""

from __future__ import annotations

import contextvars
import os
import pickle
import tempfile
import threading
from collections import deque
from typing import IO, Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

# How long closing waits for the reader to notice it should stop (it notices between two items; a
# request in flight ends within the source's own timeouts). Past this the thread, a daemon, is left.
CLOSE_WAIT_S = 30.0
STOP_WAIT_S = 1.0  # the same wait when the process is being stopped (Ctrl-C, SystemExit)


class ReadAhead(Generic[T]):
    """The items of `make()`, produced by a reader thread and consumed in order by the caller.

    Use as a context manager and iterate it once:

        with ReadAhead(lambda: source.read(...), weight=len) as pages:
            for page in pages:
                store(page)
    """

    def __init__(self, make: Callable[[], Iterator[T]], *, weight: Callable[[T], int] = lambda item: 1,
                 in_memory: int = 50_000, name: str = "hub-read-ahead") -> None:
        self._make = make
        self._weight = weight
        self._bound = in_memory
        self._ready = threading.Condition()
        # ("item", value, weight) | ("spooled", (offset, length), 0) | ("error", exception, 0) | ("end", None, 0)
        self._queue: deque[tuple[str, Any, int]] = deque()
        self._held = 0  # weight of the items waiting in memory
        self._spool: IO[bytes] | None = None
        self._spool_end = 0
        self._spooled = 0  # items waiting in the spool
        self._stop = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._read,), name=name, daemon=True)
        self.spooled_total = 0  # items that went through the spool, for a benchmark or a test to see

    def __enter__(self) -> ReadAhead[T]:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        # Ctrl-C or a worker told to stop: the process is on its way out, so the reader (a daemon,
        # maybe in the middle of a slow request) is not waited for; after an error it is, briefly.
        self.close(wait=STOP_WAIT_S if kind is not None and not issubclass(kind, Exception) else CLOSE_WAIT_S)

    def close(self, wait: float = CLOSE_WAIT_S) -> None:
        """Stop the reader (at its next item), waiting up to `wait` s, and drop what it read that was not consumed."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(wait)
        with self._ready:
            self._queue.clear()
            self._held = 0
            if self._spool is not None:
                self._spool.close()
                self._spool = None

    def __iter__(self) -> Iterator[T]:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                kind, value, weight = self._queue.popleft()
                self._held -= weight
                if kind == "spooled":
                    assert self._spool is not None
                    offset, length = value
                    data = os.pread(self._spool.fileno(), length, offset)
                    self._spooled -= 1
                    if self._spooled == 0:  # nothing waits in the file: its space is used again
                        self._spool_end = 0
            if kind == "item":
                yield value
            elif kind == "spooled":
                yield pickle.loads(data)
            elif kind == "error":
                raise value
            else:
                return

    def _read(self) -> None:
        try:
            iterator = self._make()
            try:
                for item in iterator:
                    if self._stop.is_set():
                        break
                    self._put(item)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there in its place
            self._push(("error", exc, 0))
        else:
            self._push(("end", None, 0))

    def _put(self, item: T) -> None:
        weight = self._weight(item)
        with self._ready:
            if not self._queue or self._held + weight <= self._bound:
                self._queue.append(("item", item, weight))
                self._held += weight
                self._ready.notify()
                return
        try:
            data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - e.g. a record class a plugins-directory file defines
            data = None
        with self._ready:
            if self._stop.is_set():  # closed meanwhile: nobody will read it
                return
            if data is None:  # what cannot be pickled waits in memory: slower to bound, never lost
                self._queue.append(("item", item, weight))
                self._held += weight
                self._ready.notify()
                return
            if self._spool is None:
                self._spool = tempfile.TemporaryFile(prefix="hub-read-ahead-")
            offset = self._spool_end
            os.pwrite(self._spool.fileno(), data, offset)
            self._spool_end += len(data)
            self._spooled += 1
            self.spooled_total += 1
            self._queue.append(("spooled", (offset, len(data)), 0))
            self._ready.notify()

    def _push(self, entry: tuple[str, Any, int]) -> None:
        with self._ready:
            self._queue.append(entry)
            self._ready.notify()
