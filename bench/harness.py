"""What the benchmarks share: a work directory kept or removed, a local SMTP sink process, a throwaway IMAP server
and a throwaway PostgreSQL cluster.

Imported by the scripts in this folder (`python bench/NAME.py` puts the
folder on sys.path); not part of the installed package.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_workdir(args: argparse.Namespace, run: Callable[[argparse.Namespace, Path], dict[str, Any]], *,
               prefix: str = "hub-bench-", cleanup: Callable[[], None] | None = None) -> int:
    """Run the benchmark in `args.workdir` or a new temporary one (removed unless `args.keep`),
    then print its result: the one JSON document on stdout."""
    made = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix=prefix)) if made else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args, workdir)
    finally:
        if cleanup is not None:
            cleanup()
        if args.keep or not made:
            log(f"files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


def serve_smtp(handler: Any, port_file: Path) -> None:
    """Serve `handler` (an aiosmtpd handler) on a free port written to `port_file`, until SIGTERM."""
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    port_file.write_text(str(port))
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    while not stop:
        time.sleep(0.1)
    controller.stop()


@contextmanager
def serve_imap() -> Iterator[Any]:
    """A throwaway dovecot, started as the test suite starts it (tests/servers.py), stopped on exit.

    Yields tests.servers.Dovecot: its URL (any user name logs in with its password) and `maildir(user)`,
    where a benchmark may write letters directly instead of APPENDing them one by one.
    """
    from tests.servers import start_dovecot  # the checkout's root is on sys.path (see the scripts' imports)

    with start_dovecot() as server:
        yield server


@contextmanager
def serve_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster, started as the test suite starts it (tests/servers.py), removed on exit.

    Yields its SQLAlchemy URL (an empty database). The cluster runs with fsync and synchronous commit
    off, as the tests' does: it measures Hub's work and PostgreSQL's, not the disk's flushes.
    """
    from tests.servers import postgres_server  # the checkout's root is on sys.path (see the scripts' imports)

    with postgres_server() as url:
        yield url


def start_server(args: list[str], env: dict[str, str], port: int, logfile: Path) -> subprocess.Popen[bytes]:
    """Start a web server (`hub admin`, a floor server) and wait until its /healthz answers."""
    import requests

    with logfile.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=logfile.parent)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited:\n{logfile.read_text()[-2000:]}")
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return proc
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                stop(proc)
                raise RuntimeError(f"the server did not start:\n{logfile.read_text()[-2000:]}") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server as a service manager does (SIGTERM), killing it if it does not go within a minute."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
