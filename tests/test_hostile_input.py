"""Hostile input that used to hold a worker or answer 500, and a Redis that does not answer.

- YAML anchors and aliases: a couple of hundred bytes of nested aliases stand
  for billions of nodes, and every reader of a definition walks them all; they
  are refused where any document is read (hub.segments.rules.PlainLoader).
- Numbers in URLs and forms: `str.isdigit` says yes to «²», which `int`
  refuses; hub.db.whole_number takes ASCII digits only.
- A Redis whose packets are dropped: the banner, /status.json and the
  dashboard give up after queue.PROBE_TIMEOUT_S, and while one request asks,
  the others use the previous answer. A socket that listens and never
  accepts stands for such a Redis: connecting works, nothing ever answers.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import update

from hub.admin import create_app, health_banner
from hub.db import utcnow, whole_number
from hub.segments import rules
from tests.support.admin import AdminEnv, client_as, csrf_token, plain, post, sign_in, text
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.shop import use_workflows
from workflows import store, ticks, triggers
from workflows.models import WorkflowRun

REFUSED = "якоря и ссылки YAML (& и *) не поддерживаются"
MINE = "name: mine\ntitle: Мой сценарий\ntrigger: {segment: dormant_90d}\nsteps:\n  - wait: 7d\n  - tag: one\n"


def bomb(levels: int = 9) -> str:
    """Each level lists the one before nine times: 9**levels strings from a few hundred bytes."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "name: bomb\n" + "\n".join(lines) + "\n"


def save(env: AdminEnv, text_: str) -> None:
    with env.engine.begin() as conn:
        store.add(conn, env.settings, yaml.safe_load(text_), by="cli", kind=store.ADMIN_ORIGIN)


# --- YAML anchors and aliases ----------------------------------------------------------------

def test_the_reader_refuses_anchors_and_aliases_with_where_they_are() -> None:
    for typed, where in (("a: &x 1\nb: *x\n", "строка 1, столбец 4"), ("b: {x: 1}\nc: *b\n", "строка 2, столбец 4"),
                         ("base: &b {x: 1}\nmore:\n  <<: *b\n", "строка 1, столбец 7"),
                         (bomb(), "строка 2, столбец 5")):
        with pytest.raises(rules.DocumentRefused) as refused:
            rules.read_yaml(typed)
        assert str(refused.value) == f"{REFUSED} ({where})"
    assert rules.read_yaml("a: 1\nb: [1, 2]\nc: '&x *y'\n") == {"a": 1, "b": [1, 2], "c": "&x *y"}
    shared = {"x": 1}
    written = yaml.dump({"a": shared, "b": shared}, Dumper=rules.PlainDumper)
    assert rules.read_yaml(written) == {"a": {"x": 1}, "b": {"x": 1}}  # what the hub writes, it reads back


def test_the_editors_answer_an_alias_bomb_at_once_with_400(admin_env: AdminEnv) -> None:
    client = client_as(admin_env, "marketer")
    token = csrf_token(client, "/workflows/new")
    for path, body in (("/workflows/builder/check", {"document": bomb(), "model": True}),
                       ("/segments/check", {"document": bomb(), "model": True})):
        answer = client.post(path, headers={"X-CSRFToken": token}, json=body)
        assert answer.status_code == 400, path
        assert answer.get_json()["ok"] is False and REFUSED in answer.get_json()["problems"][0]
    saved = post(client, "/workflows/new", {"document": bomb()}, token_from="/workflows/new")
    assert saved.status_code == 400 and REFUSED in plain(saved)
    rule = "name: bomb\nrule: &r {field: contact.city, op: is_null}\n"
    saved = post(client, "/segments/save", {"document": rule}, token_from="/segments/new")
    assert saved.status_code in (200, 400) and REFUSED in plain(saved)


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def test_hub_workflows_and_segments_add_refuse_an_alias_bomb(wf: HubDB, tmp_path: Path) -> None:
    file = tmp_path / "bomb.yaml"
    file.write_text(bomb(), encoding="utf-8")
    for command in (["workflows", "add", str(file)], ["segments", "add", str(file)]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code != 0, command
        assert result.output.startswith(f"Ошибка: bomb.yaml: {REFUSED} (строка 2, столбец "), result.output


# --- numbers that are not ASCII digits -------------------------------------------------------

def test_whole_number_takes_ascii_digits_within_bounds_only() -> None:
    assert whole_number("42") == 42 and whole_number(" 7 ") == 7 and whole_number("0", least=0) == 0
    for bad in ("²", "٣", "1²", "", "0", "-1", "1_000", "1e3", "9" * 5000, "9" * 20, None, 3):
        assert whole_number(bad) is None, bad
    assert whole_number("15", most=14) is None and whole_number("14", most=14) == 14


def test_superscripts_and_huge_numbers_in_urls_are_refused_in_words_never_a_500(admin_env: AdminEnv) -> None:
    save(admin_env, MINE)
    save(admin_env, MINE + "  - tag: two\n")
    viewer = client_as(admin_env, "viewer")
    tried = viewer.get("/workflows/mine/try?contact=%C2%B2")
    assert tried.status_code == 200 and "Контакт: '²' — это не номер контакта." in plain(tried)
    for query in ("contact=%C2%B2&step=1", "contact=1&step=%C2%B2", "contact=1&step=" + "9" * 5000):
        assert viewer.get(f"/workflows/mine/try/letter?{query}").status_code == 404, query
    for compare in ("%C2%B2", "9" * 5000):
        page = viewer.get(f"/workflows/mine/versions/2?compare={compare}", follow_redirects=True)
        assert page.status_code == 200 and "— не версия этого сценария (от 1 до 2)." in plain(page)
    forecast = viewer.get("/workflows/mine/forecast?days=%C2%B2", follow_redirects=True)
    assert forecast.status_code == 200 and "Дни:" in plain(forecast)
    for path in ("/contacts/?page=%C2%B2", "/segments/dormant_90d/explain?contact=%C2%B2",
                 "/messages/?contact=%C2%B2"):
        assert viewer.get(path).status_code in (200, 302, 400, 404), path
    admin = client_as(admin_env, "admin")
    assert admin.get("/gdpr/person?contact=%C2%B2").status_code == 302
    marketer = client_as(admin_env, "marketer")
    switched = post(marketer, "/workflows/mine/enabled", {"enabled": "1", "expected": "²"}, token_from="/workflows/")
    assert switched.status_code == 302 and switched.headers["Location"].endswith("/workflows/mine/enable")
    retried = post(marketer, "/workflows/mine/retry", {"run": "²"}, token_from="/workflows/", follow_redirects=True)
    assert retried.status_code == 200 and "не номер запуска" in plain(retried)


def test_hub_workflows_diff_refuses_a_superscript_version(wf: HubDB) -> None:
    with wf.engine.begin() as conn:
        store.add(conn, wf.settings, yaml.safe_load(MINE), by="cli")
    for bad in ("²", "9" * 5000):
        result = CliRunner().invoke(cli, ["workflows", "diff", "mine", bad, "1"])
        assert result.exit_code != 0 and result.output.startswith("Ошибка:"), result.output
        assert "не номер версии" in result.output and "Traceback" not in result.output


# --- moving runs: a leased run is counted once ---------------------------------------------------

def test_a_save_that_moves_runs_counts_a_run_a_worker_holds_once(admin_env: AdminEnv) -> None:
    save(admin_env, MINE)
    with admin_env.engine.connect() as conn:
        row, workflow = store.current(conn, admin_env.settings, "mine")
    triggers.fire(admin_env.engine, admin_env.settings, row, workflow, now=utcnow(), manual=True)  # anna enters
    ticks.advance_due(admin_env.engine, admin_env.settings, now=utcnow(), workflow_id=row.id)
    with admin_env.engine.begin() as conn:  # a worker holds the run right now: it stays on version 1
        held = conn.execute(update(WorkflowRun).values(lease_token="x",
                                                       lease_until=utcnow() + dt.timedelta(minutes=5)))
    assert held.rowcount == 1
    marketer = client_as(admin_env, "marketer")
    saved = post(marketer, "/workflows/mine/edit",
                 {"document": MINE + "  - tag: two\n", "move_runs": "1", "base_version": "1"},
                 token_from="/workflows/mine/edit", follow_redirects=True)
    assert "переведено на неё: 0; осталось на своей версии: 1." in plain(saved)


# --- a Redis that never answers ----------------------------------------------------------------

@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A Redis address that takes the connection and never says a word (as one whose packets are dropped)."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(64)
        yield f"redis://127.0.0.1:{listening.getsockname()[1]}/0"


@pytest.fixture(autouse=True)
def fresh_banner() -> Iterator[None]:
    health_banner.forget()
    yield
    health_banner.forget()


def test_a_silent_redis_is_said_on_the_banner_status_and_dashboard(admin_env: AdminEnv, silent_redis: str) -> None:
    settings = replace(admin_env.settings, redis_url=silent_redis)
    app = create_app(settings)
    client = sign_in(app.test_client(), admin_env.users["admin"])
    page = client.get("/contacts/")
    assert page.status_code == 200
    assert "Redis недоступен (TimeoutError)" in plain(page)
    status = client.get("/status.json").get_json()
    assert status["checks"]["redis"] == "error: TimeoutError" and "TimeoutError" in status["queue"]["error"]
    dashboard = client.get("/")
    assert dashboard.status_code == 200 and "TimeoutError" in text(dashboard)


def test_while_one_request_asks_again_the_others_use_the_previous_answer(admin_env: AdminEnv,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    settings = admin_env.settings
    first = health_banner.current(settings)
    key = (settings.database_url, settings.redis_url)
    monkeypatch.setattr(health_banner, "CACHE_S", 0.0)  # the kept answer is stale from now on
    asked: list[str] = []

    def read(_settings: Any) -> health_banner.Health:
        asked.append("read")
        return first

    monkeypatch.setattr(health_banner, "read", read)
    lock = health_banner._refreshing[key]
    lock.acquire()  # another request is asking right now (as it would, waiting on Redis)
    try:
        answers: list[Any] = []
        other = threading.Thread(target=lambda: answers.append(health_banner.current(settings)))
        other.start()
        other.join()
        assert answers == [first] and asked == []  # answered at once, from what was kept
    finally:
        lock.release()
    assert health_banner.current(settings) is first and asked == ["read"]  # nobody asking: this one asks
