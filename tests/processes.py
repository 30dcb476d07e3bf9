"""Hub processes started by tests (`hub worker`, `hub scheduler`, ...), stopped even when the test fails.

Each process starts in a session of its own, and everything it starts stays in
that session: an RQ work-horse moves to a process group of its own, but not to
another session. So on the way out, whatever happened in the test, every
process of the session is killed and the main one reaped; nothing outlives
the test that started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent


def session_members(sid: int) -> list[int]:
    """Pids of the live processes in session `sid` (zombies included until reaped)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie waiting to be reaped is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def kill_session(proc: subprocess.Popen[Any], timeout: float = 120) -> None:
    """SIGKILL every process of `proc`'s session until none is left, and reap `proc`.

    Processes that are not our children (an RQ work-horse) cannot be waited
    for, so the session is looked at again until it is empty: a process dying
    of SIGKILL is still listed for a moment, and one forking right now is
    caught on the next look.
    """
    deadline = time.monotonic() + timeout
    while True:
        members = session_members(proc.pid)
        if not members:
            break
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.wait()
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {members} of session {proc.pid} survive SIGKILL")
        time.sleep(0.01)
    if proc.poll() is None:
        proc.wait()


def hub_env(**values: str) -> dict[str, str]:
    """The environment for a `hub` process: this one's, this checkout on the path, and `values`."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **values}


@contextmanager
def hub_process(args: Sequence[str], *, env: Mapping[str, str], cwd: Path | str,
                **popen: Any) -> Iterator[subprocess.Popen[Any]]:
    """Run `python -m hub ARGS` for the length of the block; the whole session is killed on the way out."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    proc = subprocess.Popen([sys.executable, "-m", "hub", *args], env=dict(env), cwd=cwd, start_new_session=True,
                            **popen)
    try:
        yield proc
    finally:
        kill_session(proc)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def stop(proc: subprocess.Popen[Any], timeout: float = 300) -> int:
    """SIGTERM, as a service manager stops a process, and wait for it to exit; its exit code.

    The timeout is generous on purpose: it only keeps a broken test from hanging.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)
