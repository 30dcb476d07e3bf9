"""Stops a test's server when the process that started it dies without stopping it.

    python tests/watchdog.py OWNER_PID SERVER_PID SIGNAL WORKDIR [MARKER]

tests/servers.py and tests/browser.py start one beside each server they start,
as a child of the test process (OWNER_PID). Normally the test process stops its
server itself and this watchdog, seeing the server gone, just exits. When the
test process dies first (a pytest-xdist worker terminated at the end of an
interrupted run, SIGKILL, a crash), the watchdog is handed to init: it then
sends SIGNAL to SERVER_PID, kills it if it is still there after a while, kills
every process whose command line holds MARKER (Chromium's helpers, found by
their profile folder), and removes WORKDIR. It runs in a session of its own,
so a Ctrl-C meant for the test run does not end it before it has cleaned up.
Standard library only, so it starts in a moment.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

POLL_S = 0.5
GRACE_S = 10.0


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def holding(marker: str) -> list[int]:
    """Pids of the processes whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry))
    return found


def kill(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:
            pass


def clean_up(server: int, signum: int, workdir: str, marker: str) -> None:
    kill([server], signum)
    deadline = time.monotonic() + GRACE_S  # how long a polite stop may take, then SIGKILL
    while running(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    kill([server], signal.SIGKILL)
    if marker:
        kill(holding(marker), signal.SIGKILL)
    shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str]) -> None:
    owner, server, signum, workdir = int(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    marker = argv[4] if len(argv) > 4 else ""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.getppid() == owner:
        if not running(server):
            return  # stopped by its owner, which also removes its folder
        time.sleep(POLL_S)
    clean_up(server, signum, workdir, marker)


if __name__ == "__main__":
    main(sys.argv[1:])
