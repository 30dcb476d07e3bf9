"""`hub admin` in a process of its own, serving a test's database, stopped whatever the test did.

The `running_admin` fixture is registered for every test module by tests/conftest.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.conftest import SECRET, HubDB
from tests.servers import free_port

HUB = str(Path(sys.executable).with_name("hub"))


class RunningAdmin:
    def __init__(self, url: str, proc: subprocess.Popen[str], log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def stop(self) -> str:
        """Stop the server as a service manager does (SIGTERM) and return everything it wrote."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text()


@contextmanager
def serving_admin(database_url: str, workdir: Path, **env_vars: str) -> Iterator[RunningAdmin]:
    """`hub admin` on a free port for `database_url` (plus any HUB_* settings given), until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=database_url, HUB_SECRET_KEY=SECRET, HUB_PUBLIC_URL=f"http://127.0.0.1:{port}",
               HUB_ADMIN_SECURE_COOKIES="false")  # plain http on loopback: the session cookie must come back
    env.update(env_vars)
    log = workdir / "admin.log"
    with log.open("w") as out:
        proc = subprocess.Popen([HUB, "admin", "--port", str(port)], cwd=workdir, env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    server = RunningAdmin(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 120  # a start-up wait, not an assertion about speed
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                requests.get(server.url + "/healthz", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "hub admin did not start:\n" + log.read_text()
                time.sleep(0.1)
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_admin(hub_db: HubDB, tmp_path: Path) -> Iterator[RunningAdmin]:
    """`hub admin` serving the test database in a process of its own, stopped whatever the test did."""
    with serving_admin(hub_db.url, tmp_path) as server:
        yield server
