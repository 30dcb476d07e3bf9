"""`hub sandbox bitrix24|amocrm` prints a `hub connect …` command that works as printed.

The sandbox runs as a user runs it, `hub sandbox CRM` in a process of its
own; the test reads what it printed, runs the printed command as it stands
(split as a shell would), and syncs.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any, Iterator

import pytest
from click.testing import CliRunner

from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.crms import load_crm_plugins

HUB = str(Path(sys.executable).with_name("hub"))
PEOPLE = 30


@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any) -> HubDB:
    load_crm_plugins(plugin_manager)
    return hub_db


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Printed:
    """What a running `hub sandbox CRM` prints, read line by line as it comes."""

    def __init__(self, stream: IO[str], pid: int) -> None:
        self.stream = stream
        self.pid = pid
        self.lines: list[str] = []

    def command(self, prefix: str) -> str:
        """The next printed line that starts with `prefix` (a command, as printed)."""
        for line in iter(self.stream.readline, ""):
            self.lines.append(line.rstrip("\n"))
            if line.strip().startswith(prefix):
                return line.strip()
        raise AssertionError(f"the sandbox printed no {prefix!r} line:\n" + "\n".join(self.lines))


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Printed]:
    """`hub sandbox CRM` (request.param) running in a process of its own until the test ends."""
    crm = request.param
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    process = subprocess.Popen([HUB, "sandbox", crm, "--port", str(free_port()), "--contacts", str(PEOPLE)],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(120, process.kill)  # a sandbox that never prints must not hang the run
    watchdog.start()
    try:
        assert process.stdout is not None
        yield Printed(process.stdout, process.pid)
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def run(command_line: str) -> Any:
    """A printed `hub …` line, run as a shell would split it."""
    args = shlex.split(command_line)
    assert args[0] == "hub"
    return CliRunner().invoke(cli, args[1:], catch_exceptions=False)


def sync(crm: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["sync", crm, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


@pytest.mark.parametrize("sandbox", ["bitrix24"], indirect=True)
def test_the_bitrix24_sandbox_prints_a_command_that_connects(hub: HubDB, sandbox: Printed) -> None:
    command = sandbox.command("hub connect bitrix24 ")
    # The advice holds whether the sandbox runs in the foreground or with & in the same terminal.
    assert ("Оставьте эту команду работать (или запустите её с & в конце) и выполните в терминале, "
            "в папке с настройками Hub:") in sandbox.lines
    assert command.startswith("hub connect bitrix24 --webhook http://127.0.0.1:")
    connected = run(command)
    assert connected.exit_code == 0, connected.output
    assert "Подключено к Битрикс24 127.0.0.1:" in connected.output
    assert sync("bitrix24")["contacts"]["created"] == PEOPLE
    stop = sandbox.command("затем: hub sync bitrix24.")
    assert stop.endswith(f"а если она работает в фоне — kill {sandbox.pid}."), stop


@pytest.mark.parametrize("sandbox", ["amocrm"], indirect=True)
def test_the_amocrm_sandbox_prints_commands_that_connect(hub: HubDB, sandbox: Printed) -> None:
    oauth = sandbox.command("hub connect amocrm ")
    # The whole OAuth code flow against the emulator: its address, the integration's keys, the code.
    assert {"--base-url", "--client-id", "--client-secret", "--redirect-uri", "--code"} <= set(shlex.split(oauth))
    connected = run(oauth)
    assert connected.exit_code == 0, connected.output
    assert "токенами OAuth (обновляются автоматически)" in connected.output
    assert sync("amocrm")["contacts"]["created"] == PEOPLE

    again = run(oauth)  # the code works once, as amoCRM's does: the printed alternative is for later
    assert again.exit_code == 1 and "amoCRM отклонил авторизацию" in again.output
    long_lived = sandbox.command("hub connect amocrm ")
    assert "или в любое время — долгосрочным токеном (он не обновляется):" in sandbox.lines
    assert "--long-lived-token" in shlex.split(long_lived)
    connected = run(long_lived)
    assert connected.exit_code == 0 and "долгосрочным токеном" in connected.output, connected.output
    assert sync("amocrm")["contacts"]["created"] == 0  # the same account: nothing new
