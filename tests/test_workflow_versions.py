"""A workflow's versions: who saved each and when, two compared, an old one restored, runs moved only when asked.

Runs advance through the real runner with a fake clock (`now`), as in
tests/test_workflows.py; moving runs is SQL that must work alike on SQLite
and PostgreSQL, so those tests run on both.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from hub.db import utcnow
from hub.i18n import use_language
from hub.models import AuditEntry, Contact
from hub.segments import fields
from hub.segments import store as segment_store
from tests.conftest import HubDB
from tests.browser import Browser
from tests.support.admin import AdminEnv, admin_env, client_as, plain, post, text  # noqa: F401 - the fixture
from tests.support.admin_browser import sign_in
from tests.support.cli import cli
from tests.support.shop import SHOP, make_shop, runs_of, start, use_workflows, write
from workflows import store, ticks, triggers, versions
from workflows.definition import WorkflowError
from workflows.models import WorkflowRow, WorkflowRun

UTC = dt.timezone.utc


def hub(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def hub_json(*args: str) -> Any:
    result = hub(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def a_morning(days_ago: int = 30) -> dt.datetime:
    return (utcnow() - dt.timedelta(days=days_ago)).replace(hour=7, minute=0, second=0, microsecond=0)


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def save(db: HubDB, text_: str, by: str | None = "admin:marketer@shop.example") -> int:
    """Save a workflow document (YAML) as the builder would; returns the workflow's version after."""
    import yaml

    with db.engine.begin() as conn:
        workflow, _ = store.add(conn, db.settings, yaml.safe_load(text_), by=by, kind=store.ADMIN_ORIGIN)
        return int(store.row(conn, workflow.name).version)


def tags(db: HubDB, contact_id: int) -> list[str]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Contact.tags).where(Contact.id == contact_id)).scalar_one() or [])


FIRST = """name: mine
title: Мой сценарий
trigger: {segment: dormant_90d}
holdout: 10%
steps:
  - wait: 7d
  - tag: one
"""
SECOND = FIRST.replace("holdout: 10%", "holdout: 20%").replace("wait: 7d", "wait: 5d") + "  - tag: two\n"


# --- history, diff, restore ----------------------------------------------------------------

def test_history_says_who_saved_each_version_and_when(wf: HubDB, tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside the table's cells
    before = utcnow()
    assert hub("workflows", "add", write(tmp_path, "mine.yaml", FIRST)).exit_code == 0
    assert save(wf, SECOND) == 2
    assert save(wf, SECOND) == 2  # nothing changed: no new version
    with wf.engine.connect() as conn:
        found = versions.history(conn, "mine")
    assert [v["version"] for v in found] == [2, 1]
    assert found[0]["who"] == "marketer@shop.example" and found[0]["current"] is True
    assert found[1]["who"] == "командная строка" and found[1]["created_by"] == "cli" and not found[1]["current"]
    assert all(v["created_at"].replace(tzinfo=UTC) >= before.replace(microsecond=0) - dt.timedelta(seconds=1)
               for v in found)
    listed = hub_json("workflows", "versions", "mine")
    assert [(v["version"], v["created_by"], v["current"], v["runs"]) for v in listed] == [
        (2, "admin:marketer@shop.example", True, 0), (1, "cli", False, 0)]
    shown = hub("workflows", "versions", "mine")
    assert shown.exit_code == 0 and "marketer@shop.example" in shown.output and "командная строка" in shown.output
    assert hub("workflows", "versions", "mne").output.startswith("Ошибка: нет сценария 'mne'")
    assert hub("workflows", "diff", "welcome").output == (
        "Ошибка: у 'welcome' только одна версия: сравнивать не с чем\n")
    assert "--json" in hub("workflows", "move-runs", "--help").output


def test_diff_names_a_changed_wait_an_added_step_and_a_changed_holdout(wf: HubDB) -> None:
    save(wf, FIRST)
    save(wf, SECOND)
    with wf.engine.connect() as conn:
        report = versions.diff(conn, "mine", 1, 2, settings=wf.settings)
    changes = [(c["kind"], c["text"]) for c in report["changes"]]
    assert ("changed", "Контрольная группа: 10% → 20%") in changes
    assert ("changed", "шаг 1: «Подождать 7 дней» → «Подождать 5 дней»") in changes
    assert ("added", "шаг 3 добавлен: «Добавить метку: two»") in changes
    assert len(changes) == 3
    lines = {(line["kind"], line["text"].strip()) for line in report["lines"]}
    assert ("removed", "holdout: 10%") in lines and ("added", "holdout: 20%") in lines
    assert any(kind == "added" and "two" in t for kind, t in lines)
    assert ("same", "trigger: {segment: dormant_90d}") in lines or ("same", "trigger:") in lines
    with use_language("en"):
        with wf.engine.connect() as conn:
            english = versions.diff(conn, "mine", 1, 2, settings=wf.settings)["changes"]
    assert {"kind": "changed", "text": "step 1: «Wait 7 days» → «Wait 5 days»"} in english
    as_json = hub_json("workflows", "diff", "mine")  # the one before the current, and the current
    assert (as_json["old"], as_json["new"]) == (1, 2) and len(as_json["changes"]) == 3
    printed = hub("workflows", "diff", "mine", "1", "2")
    assert printed.exit_code == 0, printed.output
    assert "+ шаг 3 добавлен: «Добавить метку: two»" in printed.output and "+ holdout: 20%" in printed.output
    assert hub("workflows", "diff", "mine", "1", "9").output == (
        "Ошибка: у mine нет версии 9 (см. `hub workflows versions mine`)\n")
    assert "не номер версии" in hub("workflows", "diff", "mine", "abc").output


def test_restore_saves_the_old_document_as_a_new_version_and_leaves_runs_alone(wf: HubDB) -> None:
    now = a_morning()
    make_shop(wf, SHOP[:1], now=now)
    save(wf, FIRST)
    start(wf, "mine", now)
    save(wf, SECOND)
    (run,) = runs_of(wf, "mine")
    assert run.version == 1 and run.status == "waiting"
    restored = hub_json("workflows", "restore", "mine", "1")
    assert restored == {"workflow": "mine", "restored": 1, "version": 3, "changed": True, "enabled": False,
                        "entry_changed": ["holdout"], "switched_off": False}
    with wf.engine.connect() as conn:
        found = versions.history(conn, "mine")
        current = store.row(conn, "mine")
        audit = conn.execute(select(AuditEntry.actor, AuditEntry.details)
                             .where(AuditEntry.action == "workflow_version_restored")).all()
    assert [v["version"] for v in found] == [3, 2, 1] and found[0]["created_by"] == "cli"
    assert current.definition["steps"] == [{"wait": "7d"}, {"tag": "one"}] and current.version == 3
    assert audit == [("cli", {"workflow": "mine", "restored": 1, "version": 3, "entry_changed": ["holdout"],
                              "switched_off": False})]
    assert runs_of(wf, "mine")[0].version == 1  # the run is where it was
    again = hub_json("workflows", "restore", "mine", "3")
    assert again == {"workflow": "mine", "restored": 3, "version": 3, "changed": False, "enabled": False,
                     "entry_changed": [], "switched_off": False}


def test_a_version_that_no_longer_checks_is_not_restored(wf: HubDB) -> None:
    registry = fields.build(wf.settings)
    with wf.engine.begin() as conn:
        segment_store.add(conn, registry, {"name": "buyers", "title": "Покупатели",
                                           "rule": {"field": "orders.count", "op": "gte", "value": 1}})
    save(wf, FIRST.replace("dormant_90d", "buyers"))
    save(wf, SECOND)
    with wf.engine.begin() as conn:
        segment_store.remove(conn, registry, "buyers")
    with pytest.raises(WorkflowError) as caught, wf.engine.begin() as conn:
        versions.restore(conn, wf.settings, "mine", 1, "admin:marketer@shop.example")
    assert caught.value.problems[0] == "версия 1 больше не проходит проверку в этом Hub:"
    assert "trigger.segment" in caught.value.problems[1] and "buyers" in caught.value.problems[1]
    output = hub("workflows", "restore", "mine", "1").output
    assert output.startswith("Ошибка: версия 1 больше не проходит проверку") and "buyers" in output
    with wf.engine.connect() as conn:
        assert store.row(conn, "mine").version == 2
        diffed = versions.diff(conn, "mine", 1, 2, settings=wf.settings)
    assert 1 in diffed["problems"] and diffed["changes"] == [] and diffed["lines"]  # compared as text only
    assert hub("workflows", "restore", "reactivation_90d", "1").output.startswith(
        "Ошибка: 'reactivation_90d' — готовый сценарий")


# --- runs keep their version; moving them when asked --------------------------------------------

@pytest.mark.both_databases
def test_an_old_run_finishes_on_its_version_while_a_new_one_follows_the_new(wf: HubDB) -> None:
    t0 = a_morning()
    ids = make_shop(wf, SHOP[:1], now=t0)
    save(wf, "name: mine\ntrigger: {segment: dormant_90d}\nsteps: [{tag: one}, {wait: 2d}, {tag: old}]\n")
    start(wf, "mine", t0)
    save(wf, "name: mine\ntrigger: {segment: dormant_90d}\nsteps: [{tag: one}, {wait: 1d}, {tag: new}]\n")
    ids |= make_shop(wf, [SHOP[3]], now=t0)  # gleb arrives after the change
    start(wf, "mine", t0 + dt.timedelta(hours=1))
    by_contact = {r.contact_id: r for r in runs_of(wf, "mine")}
    assert by_contact[ids["anna"]].version == 1 and by_contact[ids["gleb"]].version == 2
    ticks.advance_due(wf.engine, wf.settings, now=t0 + dt.timedelta(days=1, hours=2))
    assert tags(wf, ids["gleb"]) == ["one", "new"] and tags(wf, ids["anna"]) == ["one"]  # anna still waits 2 days
    ticks.advance_due(wf.engine, wf.settings, now=t0 + dt.timedelta(days=2, minutes=1))
    assert tags(wf, ids["anna"]) == ["one", "old"]
    assert {r.status for r in runs_of(wf, "mine")} == {"done"}


SEVEN = ("name: mine\ntrigger: {segment: dormant_90d}\nsteps:\n  - tag: a\n  - wait: 1d\n  - tag: b\n  - wait: 1d\n"
         "  - tag: c\n  - wait: 1d\n  - tag: d\n")
# steps[2] becomes a wait (another kind), steps[4] stays a tag (changed), steps[6] is gone
CHANGED = ("name: mine\ntrigger: {segment: dormant_90d}\nsteps:\n  - tag: a\n  - wait: 1d\n  - wait: 2d\n"
           "  - wait: 1d\n  - tag: c2\n  - wait: 1d\n")


@pytest.mark.both_databases
def test_move_runs_moves_those_whose_place_exists_and_says_why_the_others_stay(wf: HubDB) -> None:
    t0 = a_morning()
    day = dt.timedelta(days=1, minutes=1)
    save(wf, SEVEN)
    ids = make_shop(wf, [SHOP[0]], now=t0)  # anna: will stand before steps[6]
    start(wf, "mine", t0)
    ids |= make_shop(wf, [SHOP[3]], now=t0)  # gleb: before steps[4]
    start(wf, "mine", t0 + day)
    ids |= make_shop(wf, [SHOP[6], SHOP[7]], now=t0)  # zoya and ivan: before steps[2]
    start(wf, "mine", t0 + 2 * day)
    at = {r.contact_id: (r.step, r.status) for r in runs_of(wf, "mine")}
    assert at == {ids["anna"]: (6, "waiting"), ids["gleb"]: (4, "waiting"), ids["zoya"]: (2, "waiting"),
                  ids["ivan"]: (2, "waiting")}
    gleb_next = {r.contact_id: r.next_at for r in runs_of(wf, "mine")}[ids["gleb"]]
    save(wf, CHANGED)
    now = t0 + 2 * day + dt.timedelta(minutes=5)
    with wf.engine.begin() as conn:  # a worker holds ivan's run right now
        conn.execute(update(WorkflowRun).where(WorkflowRun.contact_id == ids["ivan"])
                     .values(lease_token="x", lease_until=now + dt.timedelta(minutes=5)))
    with wf.engine.connect() as conn:
        assert versions.in_progress_elsewhere(conn, "mine") == {1: 4}
        assert versions.counts_text({2: 12, 1: 3}) == "12 запусков на версии 2, 3 на версии 1"
    with wf.engine.begin() as conn:
        report = versions.move_runs(conn, wf.settings, "mine", by="admin:marketer@shop.example", now=now)
    assert report.moved == {1: 1} and report.leased == 1 and report.kept_total == 3
    assert sorted((k["version"], k["step"], k["count"], k["reason"]) for k in report.kept) == [
        (1, 3, 1, "сейчас этот шаг выполняет обработчик; попробуйте ещё раз через минуту"),
        (1, 3, 1, "шаг 3 (Добавить метку: b) в версии 2 стал другим шагом"),
        (1, 7, 1, "шаг 7 (Добавить метку: d) удалён в версии 2")]
    runs = {r.contact_id: r for r in runs_of(wf, "mine")}
    assert (runs[ids["gleb"]].version, runs[ids["gleb"]].step) == (2, 4)
    assert runs[ids["gleb"]].next_at == gleb_next  # a waiting run keeps the moment it waits for
    assert {runs[ids[k]].version for k in ("anna", "zoya", "ivan")} == {1}
    with wf.engine.connect() as conn:
        audit = conn.execute(select(AuditEntry.actor, AuditEntry.details)
                             .where(AuditEntry.action == "workflow_runs_moved")).all()
    assert audit == [("admin:marketer@shop.example", {"workflow": "mine", "version": 2, "moved": 1, "kept": 3})]
    ticks.advance_due(wf.engine, wf.settings, now=t0 + 5 * day)
    assert tags(wf, ids["gleb"]) == ["a", "b", "c2"]  # the new version's step
    assert tags(wf, ids["anna"]) == ["a", "b", "c", "d"]  # finished on its own version
    assert tags(wf, ids["zoya"]) == ["a", "b"]  # on its own version's steps[2], then waits again
    second = hub_json("workflows", "move-runs", "mine")
    # zoya and ivan (no longer held) now stand before steps[4], which version 2 has: asked again, they move
    assert second == {**second, "moved": {"1": 2}, "moved_total": 2, "kept_total": 0, "to_version": 2}


@pytest.mark.both_databases
def test_a_run_whose_step_comes_earlier_moves_only_without_history_in_between(wf: HubDB) -> None:
    """Step results and outbox keys are numbered by instruction: a moved run must not meet its own history."""
    t0 = a_morning()
    branchy = ("name: mine\ntrigger: {segment: dormant_90d}\nsteps:\n"
               "  - if: {field: contact.tags, op: contains, value: vip}\n    then: [{tag: x}, {tag: y}]\n"
               "  - wait: 1d\n  - tag: z\n")
    save(wf, branchy)
    ids = make_shop(wf, [SHOP[0]], now=t0)
    start(wf, "mine", t0)
    (run,) = runs_of(wf, "mine")
    assert (run.step, run.status) == (4, "waiting")  # if, then x and y skipped, waited at 3: before tag z
    save(wf, branchy.replace("[{tag: x}, {tag: y}]", "[{tag: x}]"))  # tag z is now instruction 3
    with wf.engine.begin() as conn:
        report = versions.move_runs(conn, wf.settings, "mine", by="cli", now=t0 + dt.timedelta(hours=1))
    assert report.moved == {} and [k["reason"] for k in report.kept] == [
        "шаг 5 (Добавить метку: z) в версии 2 стоит раньше, а запуск уже прошёл шаг между ними"]
    ticks.advance_due(wf.engine, wf.settings, now=t0 + dt.timedelta(days=1, minutes=1))
    assert tags(wf, ids["anna"]) == ["z"]  # done on its own version, nothing skipped
    (run,) = runs_of(wf, "mine")
    assert (run.version, run.status) == (1, "done")


# --- the admin's pages ---------------------------------------------------------------------------

def admin_save(env: AdminEnv, text_: str, by: str = "admin:marketer@shop.example") -> None:
    import yaml

    with env.engine.begin() as conn:
        store.add(conn, env.settings, yaml.safe_load(text_), by=by, kind=store.ADMIN_ORIGIN)


def test_the_versions_pages_for_a_viewer_and_a_marketer(admin_env: AdminEnv) -> None:  # noqa: F811
    admin_save(admin_env, FIRST, by="cli")
    with admin_env.engine.connect() as conn:
        row, workflow = store.current(conn, admin_env.settings, "mine")
    triggers.fire(admin_env.engine, admin_env.settings, row, workflow, now=utcnow(), manual=True)  # anna enters
    ticks.advance_due(admin_env.engine, admin_env.settings, now=utcnow(), workflow_id=row.id)
    admin_save(admin_env, SECOND)
    viewer = client_as(admin_env, "viewer")
    detail = text(viewer.get("/workflows/mine"))
    assert 'id="versions-link"' in detail and "/workflows/mine/versions" in detail
    page = text(viewer.get("/workflows/mine/versions"))
    assert "Версия 2" in page and "Текущая" in page and "marketer@shop.example" in page
    assert "командная строка" in page and "Запуски на старых версиях" in page
    assert "1 запуск на версии 1" in page
    assert "Перевести запуски на текущую версию" not in page  # a viewer sees, and cannot change
    one = text(viewer.get("/workflows/mine/versions/1"))
    assert "Восстановить эту версию" not in one and "Это первая версия. Сравните её с другой:" in one
    two = plain(viewer.get("/workflows/mine/versions/2"))
    assert "Сравнение с версией 1" in two and "шаг 1: «Подождать 7 дней» → «Подождать 5 дней»" in two
    assert '<span class="diff-line added">+ holdout: 20%</span>' in two
    assert '<span class="diff-line removed">- holdout: 10%</span>' in two
    for path in ("/workflows/mine/versions/1/restore", "/workflows/mine/versions/move-runs"):
        assert post(viewer, path).status_code == 403
    with admin_env.engine.connect() as conn:
        assert store.row(conn, "mine").version == 2

    marketer = client_as(admin_env, "marketer")
    page = text(marketer.get("/workflows/mine/versions"))
    assert "Перевести запуски на текущую версию" in page and 'data-confirm="Перевести идущие запуски' in page
    one = text(marketer.get("/workflows/mine/versions/1"))
    assert "Восстановить эту версию" in one
    assert 'data-confirm="Сохранить версию 1 как новую версию 3? Текущие запуски не изменятся."' in one
    assert "Это первая версия. Сравните её с другой:" in one and "не с чем" not in one
    restored = plain(post(marketer, "/workflows/mine/versions/1/restore", follow_redirects=True))
    assert "Версия 1 восстановлена как версия 3" in restored
    with admin_env.engine.connect() as conn:
        assert store.row(conn, "mine").version == 3
        assert [r.version for r in conn.execute(select(WorkflowRun.version))] == [1]  # runs stay where they are
    moved = plain(post(marketer, "/workflows/mine/versions/move-runs", follow_redirects=True))
    assert "1 запуск переведён на версию 3." in moved
    with admin_env.engine.connect() as conn:
        assert [r.version for r in conn.execute(select(WorkflowRun.version))] == [3]
        actions = set(conn.execute(select(AuditEntry.action).where(AuditEntry.actor == "admin:marketer@shop.example"))
                      .scalars())
    assert {"workflow_version_restored", "workflow_runs_moved"} <= actions
    audit = text(client_as(admin_env, "admin").get("/users/audit"))
    assert "восстановлена версия сценария" in audit
    assert "запуски сценария переведены на другую версию" in audit
    post(marketer, "/language", {"language": "en"})
    english = text(marketer.get("/workflows/mine/versions/3?compare=2"))
    assert "Compared with version 2" in english and "Restore this version" not in english  # 3 is current
    assert "step 1: «Wait 5 days» → «Wait 7 days»" in plain(marketer.get("/workflows/mine/versions/3?compare=2"))


@pytest.mark.parametrize("path", ["/workflows/mine/versions/0", "/workflows/mine/versions/-1",
                                  "/workflows/mine/versions/999999", "/workflows/mine/versions/abc",
                                  "/workflows/mine/versions/99999999999999999999999",
                                  "/workflows/nope/versions", "/workflows/nope/versions/1"])
def test_forged_versions_are_not_found(admin_env: AdminEnv, path: str) -> None:  # noqa: F811
    admin_save(admin_env, FIRST)
    marketer = client_as(admin_env, "marketer")
    assert marketer.get(path).status_code == 404
    assert post(marketer, path + "/restore").status_code in (404, 405)


def test_a_forged_comparison_and_a_campaigns_workflow(admin_env: AdminEnv) -> None:  # noqa: F811
    admin_save(admin_env, FIRST)
    admin_save(admin_env, SECOND)
    viewer = client_as(admin_env, "viewer")
    for raw in ("abc", "0", "-1", "999999", "<script>alert(1)</script>", "1" * 500):
        page = viewer.get("/workflows/mine/versions/2", query_string={"compare": raw}, follow_redirects=True)
        assert page.status_code == 200
        shown = plain(page)
        assert "не версия этого сценария (от 1 до 2)" in shown and "<script>alert(1)" not in text(page)
        assert "Сравнение с версией 1" in shown  # the previous version instead
    marketer = client_as(admin_env, "marketer")
    marketer.get("/workflows/")  # installs the shipped workflows
    shipped = plain(marketer.get("/workflows/reactivation_90d/versions/1"))
    assert "Готовый сценарий следует версии" in shipped and "Восстановить эту версию" not in shipped
    refused = plain(post(marketer, "/workflows/reactivation_90d/versions/1/restore", follow_redirects=True))
    assert "Версия 1 не восстановлена: 'reactivation_90d' — готовый сценарий" in refused
    with admin_env.engine.begin() as conn:
        conn.execute(update(WorkflowRow).where(WorkflowRow.name == "mine").values(origin=store.CAMPAIGN_ORIGIN))
    assert viewer.get("/workflows/mine/versions").status_code == 404
    assert viewer.get("/workflows/mine/versions/1").status_code == 404
    with admin_env.engine.connect() as conn, pytest.raises(WorkflowError):
        versions.history(conn, "mine")


def test_a_marketer_compares_restores_and_moves_runs_in_the_browser(live: str, browser: Browser,
                                                                    admin_env: AdminEnv) -> None:  # noqa: F811
    admin_save(admin_env, FIRST)
    with admin_env.engine.connect() as conn:
        row, workflow = store.current(conn, admin_env.settings, "mine")
    triggers.fire(admin_env.engine, admin_env.settings, row, workflow, now=utcnow(), manual=True)  # anna waits 7 days
    ticks.advance_due(admin_env.engine, admin_env.settings, now=utcnow(), workflow_id=row.id)
    admin_save(admin_env, SECOND)
    sign_in(browser, live, "marketer", "/workflows/mine")
    browser.click("#versions-link")
    browser.wait(lambda: browser.exists("#versions"), "the versions list")
    assert "1 запуск на версии 1" in browser.text("#older-counts")
    browser.click("#versions tr[data-version='1'] a")
    browser.wait(lambda: browser.exists("#restore"), "version 1")
    assert "Это первая версия. Сравните её с другой:" in browser.text("#compare")
    assert browser.find("#restore").get_attribute("data-confirm") == (
        "Сохранить версию 1 как новую версию 3? Текущие запуски не изменятся.")
    browser.click("#restore button")
    browser.accept_confirm()
    browser.wait(lambda: browser.exists("#versions") and browser.exists(".flash"), "the list after restoring")
    assert "Версия 1 восстановлена как версия 3" in browser.text(".flash")
    browser.click("#versions tr[data-version='3'] a")
    browser.wait(lambda: browser.exists("#diff"), "version 3 compared with 2")
    assert "шаг 1: «Подождать 5 дней» → «Подождать 7 дней»" in browser.text("#changes")
    assert "шаг 3 удалён: «Добавить метку: two»" in browser.text("#changes")
    assert browser.find("#diff .diff-line.removed").text.startswith("- ")
    browser.click("a[href$='/workflows/mine/versions']")
    browser.wait(lambda: browser.exists("#move-runs"), "the move button")
    browser.click("#move-runs button")
    browser.accept_confirm()
    browser.wait_text(".flash", "1 запуск переведён на версию 3.")
    assert not browser.exists("#move-runs")


# --- conditions in words, key order, the first version (the new-user trial) -----------------

RULED = """name: ruled
title: С условием
trigger: {segment: dormant_90d}
holdout: 10%
steps:
  - wait: 7d
  - if: {field: orders.last_at, op: after, value: run.started_at}
    then: exit
  - if: {field: consent.email.marketing, op: in, value: [none, pending]}
    then: [{tag: ask_consent}]
  - tag: done
"""
# The same workflow as the database may hand it back: every mapping's keys in another order; one real change.
REORDERED = """name: ruled
steps:
  - wait: 7d
  - then: exit
    if: {value: run.started_at, op: after, field: orders.last_at}
  - then: [{tag: ask_consent}]
    if: {value: [none, pending], field: consent.email.marketing, op: not_in}
  - tag: done
holdout: 20%
trigger: {segment: dormant_90d}
title: С условием
"""


def test_a_changed_condition_is_named_in_words_and_reordered_keys_are_no_change(wf: HubDB) -> None:
    save(wf, RULED)
    save(wf, REORDERED)
    with wf.engine.connect() as conn:
        report = versions.diff(conn, "ruled", 1, 2, settings=wf.settings)
    changes = [(c["kind"], c["text"]) for c in report["changes"]]
    assert changes == [
        ("changed", "Контрольная группа: 10% → 20%"),
        ("changed", "шаг 4: «Условие: согласие (Email, Акции и специальные предложения) одно из: не спрашивали, "
                    "ждёт подтверждения» → «Условие: согласие (Email, Акции и специальные предложения) ни одно из: "
                    "не спрашивали, ждёт подтверждения»")], changes
    assert not any("{" in text_ and "field" in text_ for _, text_ in changes)  # no JSON
    changed = [(line["kind"], line["text"].strip()) for line in report["lines"] if line["kind"] in ("added",
                                                                                                    "removed")]
    assert sorted(changed) == sorted([
        ("removed", "holdout: 10%"), ("added", "holdout: 20%"),
        ("removed", "- if: {field: consent.email.marketing, op: in, value: [none, pending]}"),
        ("added", "- if: {field: consent.email.marketing, op: not_in, value: [none, pending]}")]), changed
    assert report["old_text"].splitlines()[:2] == ["name: ruled", "title: С условием"]
    with use_language("en"):
        with wf.engine.connect() as conn:
            english = versions.diff(conn, "ruled", 1, 2, settings=wf.settings)["changes"]
    assert english[1]["text"] == (
        "step 4: «Condition: consent (Email, Offers and special deals) is one of: never asked, pending» → "
        "«Condition: consent (Email, Offers and special deals) is none of: never asked, pending»")


def test_the_moment_of_entering_reads_as_words_in_a_compared_condition(wf: HubDB) -> None:
    save(wf, RULED)
    save(wf, RULED.replace("op: after, value: run.started_at", "op: before, value: run.started_at"))
    with wf.engine.connect() as conn:
        report = versions.diff(conn, "ruled", 1, 2, settings=wf.settings)
    assert [c["text"] for c in report["changes"]] == [
        "шаг 2: «Условие: когда закрыт последний выигранный заказ после момента входа в сценарий» → "
        "«Условие: когда закрыт последний выигранный заказ до момента входа в сценарий»"]


def test_canonical_text_does_not_depend_on_key_order() -> None:
    import yaml

    one, two = yaml.safe_load(RULED), yaml.safe_load(REORDERED.replace("holdout: 20%", "holdout: 10%").replace(
        "op: not_in", "op: in"))
    assert versions.to_text(one) == versions.to_text(two)
    assert "- if: {field: orders.last_at, op: after, value: run.started_at}\n  then: exit" in versions.to_text(two)


def test_the_only_version_says_there_is_nothing_to_compare_with(admin_env: AdminEnv) -> None:  # noqa: F811
    admin_save(admin_env, FIRST)
    page = plain(client_as(admin_env, "viewer").get("/workflows/mine/versions/1"))
    assert "Это первая версия: сравнивать её не с чем." in page and 'id="compare-form"' not in page
    admin_save(admin_env, SECOND)
    page = plain(client_as(admin_env, "viewer").get("/workflows/mine/versions/1"))
    assert "Это первая версия. Сравните её с другой:" in page and 'id="compare-form"' in page
    assert "не с чем" not in page
    compared = plain(client_as(admin_env, "viewer").get("/workflows/mine/versions/1?compare=2"))
    assert "Сравнение с версией 2" in compared and "Это первая версия" not in compared
