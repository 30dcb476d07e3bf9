"""Saving a workflow never skips the switch-on check and never loses an edit.

A new version of a switched-on workflow that changes who enters it (trigger,
an earlier reentry, a smaller holdout) is saved switched off, from the admin's
builder, a restored version and the command line alike, while its runs in
progress go on; a save from an editor opened at an older version, or at the
same moment as another, is refused with who saved what instead of overwriting.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub import consent, sync
from hub.admin.audit import audit_t
from hub.db import utcnow
from hub.models import Contact
from hub.records import ContactRecord, OrderRecord
from tests.browser import Browser
from tests.support.admin import AdminEnv, admin_env, client_as, plain, post, text  # noqa: F401 - the fixture
from tests.support.admin_browser import sign_in
from tests.support.cli import cli
from workflows import builder_model, store, ticks, triggers
from workflows.models import WorkflowRow, WorkflowRun, WorkflowVersion

NAME = "mine"


def doc(**changes: Any) -> dict[str, Any]:
    return {"name": NAME, "title": "Мой сценарий", "trigger": {"segment": "dormant_90d"}, "reentry": "never",
            "holdout": "10%", "steps": [{"wait": "1d"}, {"tag": "moved_on"}], **changes}


@pytest.fixture
def env(admin_env: AdminEnv) -> AdminEnv:  # noqa: F811
    """Nine people who have not bought for 120 days and agreed to letters, and the workflow «mine», switched on."""
    now = utcnow()
    records: list[Any] = []
    for i in range(9):
        records.append(ContactRecord(source="bitrix24", external_id=f"d{i}", first_name=f"Дарья{i}",
                                     last_name="Спящая", emails=[f"d{i}@example.ru"]))
        records.append(OrderRecord(source="bitrix24", external_id=f"od{i}", contact_external_id=f"d{i}",
                                   amount=Decimal("900"), status="won", closed_at=now - dt.timedelta(days=120)))
    with admin_env.engine.begin() as conn:
        sync.write_page(conn, records, admin_env.settings, sync.Counts())
        for cid in conn.execute(select(Contact.id).where(Contact.last_name == "Спящая")).scalars():
            consent.record(conn, cid, "email", "marketing", "granted", source="test", settings=admin_env.settings)
        store.install_library(conn)
        store.save(conn, admin_env.settings, doc(), by="admin:admin@shop.example", kind=store.ADMIN_ORIGIN)
        store.set_enabled(conn, NAME, True)
    return admin_env


def row(env: AdminEnv) -> Any:
    with env.engine.connect() as conn:
        return conn.execute(select(WorkflowRow).where(WorkflowRow.name == NAME)).one()


def version_count(env: AdminEnv) -> int:
    with env.engine.connect() as conn:
        return len(conn.execute(select(WorkflowVersion.version).join(
            WorkflowRow, WorkflowRow.id == WorkflowVersion.workflow_id).where(WorkflowRow.name == NAME)).all())


def last_audit(env: AdminEnv, action: str) -> dict[str, Any]:
    with env.engine.connect() as conn:
        found = conn.execute(select(audit_t.c.details).where(audit_t.c.action == action)
                             .order_by(audit_t.c.id.desc())).first()
    assert found is not None, action
    return dict(found.details)


def edit(client: Any, document: dict[str, Any], base: Any) -> Any:
    form = {"document": builder_model.to_text(document)}
    if base is not None:
        form["base_version"] = str(base)
    return post(client, f"/workflows/{NAME}/edit", form, token_from=f"/workflows/{NAME}/edit")


def start_runs(env: AdminEnv, now: dt.datetime) -> None:
    """What a tick does for the switched-on workflow: its members enter and wait a day."""
    found = row(env)
    with env.engine.connect() as conn:
        workflow = store.definition(conn, env.settings, found.id, found.version)
    triggers.fire(env.engine, env.settings, found, workflow, now=now, manual=True)
    ticks.advance_due(env.engine, env.settings, now=now, workflow_id=found.id)


def tagged(env: AdminEnv) -> int:
    with env.engine.connect() as conn:
        return sum("moved_on" in (t or []) for t in conn.execute(
            select(Contact.tags).where(Contact.last_name == "Спящая")).scalars())


# --- what counts as a change of who enters -------------------------------------------------------

def test_entry_changed_names_only_what_lets_others_in() -> None:
    same = doc()
    assert store.entry_changed(same, doc(title="Другое", steps=[{"wait": "3d"}, {"tag": "x"}])) == []
    assert store.entry_changed(same, doc(trigger={"segment": "vip"})) == ["trigger"]
    assert store.entry_changed(same, doc(trigger={"segment": "dormant_90d", "on": "exit"})) == ["trigger"]
    assert store.entry_changed(same, doc(reentry="1d")) == ["reentry"]  # never → a day
    assert store.entry_changed(doc(reentry="30d"), doc(reentry="7d")) == ["reentry"]  # sooner
    assert store.entry_changed(doc(reentry="7d"), doc(reentry="30d")) == []  # later: fewer come back
    assert store.entry_changed(doc(reentry="7d"), doc(reentry="never")) == []
    assert store.entry_changed(same, doc(holdout="0%")) == ["holdout"]  # fewer kept aside: more messaged
    assert store.entry_changed(same, doc(holdout="20%")) == []
    assert store.entry_changed(same, {k: v for k, v in doc().items() if k != "holdout"}) == ["holdout"]
    date = doc(trigger={"date": "contact.birthday", "before": "7d", "at": "10:00"})
    del date["reentry"]  # a date trigger lets a contact in once a year by default
    assert store.entry_changed(date, {**date, "reentry": "30d"}) == ["reentry"]
    assert store.entry_changed(date, {**date, "reentry": "never"}) == []
    assert store.entry_changed(same, doc(reentry="??")) == ["reentry"]  # unreadable counts as a change
    assert store.entry_changed(same, "not a document") == ["trigger", "holdout"]


# --- the admin's builder ----------------------------------------------------------------------

@pytest.mark.both_databases
def test_a_save_that_changes_who_enters_switches_off_and_asks_again_while_runs_go_on(env: AdminEnv) -> None:
    now = utcnow()
    start_runs(env, now)
    with env.engine.connect() as conn:
        assert conn.execute(select(WorkflowRun.id)).first() is not None
    marketer = client_as(env, "marketer")
    page = text(marketer.get(f"/workflows/{NAME}/edit"))
    assert 'name="base_version" value="1"' in page
    saved = edit(marketer, doc(trigger={"segment": "never_bought"}), 1)
    assert saved.status_code == 302 and saved.headers["Location"].endswith(f"/workflows/{NAME}/enable")
    confirm = marketer.get(saved.headers["Location"])
    assert "Вход в сценарий изменился, поэтому сценарий выключен" in plain(confirm)
    assert 'name="expected"' in text(confirm)  # the same confirmation as switching on for the first time
    now_row = row(env)
    assert now_row.version == 2 and now_row.enabled is False
    assert last_audit(env, "workflow_saved") == {"workflow": NAME, "created": False, "version": 2, "written": True,
                                                 "entry_changed": ["trigger"], "switched_off": True}
    assert tagged(env) == 0
    ticks.advance_due(env.engine, env.settings, now=now + dt.timedelta(days=2), workflow_id=now_row.id)
    assert tagged(env) == 9  # the runs under way went on while it is off


@pytest.mark.both_databases
def test_reentry_and_holdout_that_widen_switch_off_texts_and_waits_keep_it_on(env: AdminEnv) -> None:
    marketer = client_as(env, "marketer")
    kept = edit(marketer, doc(steps=[{"wait": "3d"}, {"tag": "another"}], holdout="20%"), 1)
    assert kept.status_code == 302 and kept.headers["Location"].endswith(f"/workflows/{NAME}")
    assert row(env).enabled is True and row(env).version == 2
    assert last_audit(env, "workflow_saved")["switched_off"] is False
    off = edit(marketer, doc(steps=[{"wait": "3d"}, {"tag": "another"}], holdout="20%", reentry="1d"), 2)
    assert off.status_code == 302 and off.headers["Location"].endswith("/enable")
    assert row(env).enabled is False and last_audit(env, "workflow_saved")["entry_changed"] == ["reentry"]
    with env.engine.begin() as conn:
        store.set_enabled(conn, NAME, True)
    off = edit(marketer, doc(steps=[{"wait": "3d"}, {"tag": "another"}], holdout="0%", reentry="1d"), 3)
    assert off.status_code == 302 and off.headers["Location"].endswith("/enable")
    assert row(env).enabled is False and last_audit(env, "workflow_saved")["entry_changed"] == ["holdout"]
    same = edit(marketer, doc(steps=[{"wait": "3d"}, {"tag": "another"}], holdout="0%", reentry="1d"), 4)
    assert same.status_code == 302 and "остаётся версией 4" in plain(marketer.get(same.headers["Location"]))
    assert version_count(env) == 4  # nothing claimed that was not written


def test_a_switched_off_workflow_is_saved_without_asking(env: AdminEnv) -> None:
    with env.engine.begin() as conn:
        store.set_enabled(conn, NAME, False)
    saved = edit(client_as(env, "marketer"), doc(trigger={"segment": "vip"}), 1)
    assert saved.status_code == 302 and saved.headers["Location"].endswith(f"/workflows/{NAME}")
    assert last_audit(env, "workflow_saved")["entry_changed"] == ["trigger"]


@pytest.mark.both_databases
def test_restoring_a_version_that_changes_who_enters_switches_off(env: AdminEnv) -> None:
    with env.engine.begin() as conn:
        store.save(conn, env.settings, doc(trigger={"segment": "never_bought"}), by="cli")
        store.set_enabled(conn, NAME, True)
    assert row(env).version == 2 and row(env).enabled is True
    marketer = client_as(env, "marketer")
    restored = post(marketer, f"/workflows/{NAME}/versions/1/restore", {}, token_from=f"/workflows/{NAME}/versions")
    assert restored.status_code == 302 and restored.headers["Location"].endswith(f"/workflows/{NAME}/enable")
    assert "Вход в сценарий изменился" in plain(marketer.get(restored.headers["Location"]))
    assert row(env).version == 3 and row(env).enabled is False
    assert last_audit(env, "workflow_version_restored") == {"workflow": NAME, "restored": 1, "version": 3,
                                                            "entry_changed": ["trigger"], "switched_off": True}


# --- a save from an old version, or at the same moment ------------------------------------------

@pytest.mark.both_databases
def test_a_save_from_an_editor_opened_before_someone_elses_save_is_refused_with_the_text_kept(env: AdminEnv) -> None:
    marketer = client_as(env, "marketer")
    assert 'name="base_version" value="1"' in text(marketer.get(f"/workflows/{NAME}/edit"))
    with env.engine.begin() as conn:  # an administrator saves version 2 meanwhile
        store.save(conn, env.settings, doc(steps=[{"wait": "2d"}, {"tag": "admins"}]),
                   by="admin:admin@shop.example", kind=store.ADMIN_ORIGIN)
    mine = doc(steps=[{"wait": "1d"}, {"tag": "marketers_own"}])
    refused = edit(marketer, mine, 1)
    assert refused.status_code == 409
    said = plain(refused)
    assert "Пока вы редактировали" in said and "admin@shop.example" in said and "(версия 2)" in said
    body = text(refused)
    assert f'href="/workflows/{NAME}/versions"' in body and "marketers_own" in body  # the typed text is kept
    assert 'name="base_version" value="2"' in body  # saving again, knowingly, keeps it
    assert version_count(env) == 2 and row(env).definition["steps"][1] == {"tag": "admins"}
    assert last_audit(env, "workflow_save_refused") == {"workflow": NAME, "base_version": 1, "current_version": 2}
    for forged in ("²", "1" * 50, "-1", ""):
        answer = edit(marketer, mine, forged)
        assert answer.status_code == 409 and "Пока вы редактировали" in plain(answer), forged
    again = edit(marketer, mine, 2)
    assert again.status_code == 302 and row(env).definition["steps"][1] == {"tag": "marketers_own"}


@pytest.mark.both_databases
def test_two_saves_at_the_same_moment_write_one_version_and_the_other_is_told(
        env: AdminEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    clients = [client_as(env, "marketer"), client_as(env, "admin")]
    for client in clients:
        client.get(f"/workflows/{NAME}/edit")
    if env.engine.dialect.name == "postgresql":
        # Both read version 1 before either writes (SQLite's BEGIN IMMEDIATE makes the second wait instead)
        meet = threading.Barrier(2)
        real = store.entry_changed

        def both_read(old: Any, new: Any) -> list[str]:
            meet.wait()
            return real(old, new)

        monkeypatch.setattr(store, "entry_changed", both_read)
    answers: dict[int, Any] = {}

    def save(i: int) -> None:
        answers[i] = edit(clients[i], doc(steps=[{"wait": "1d"}, {"tag": f"by_{i}"}]), 1)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers.values()) == [302, 409]
    (lost,) = [a for a in answers.values() if a.status_code == 409]
    assert "Пока вы редактировали" in plain(lost) and "(версия 2)" in plain(lost)
    assert version_count(env) == 2
    (won,) = [i for i, a in answers.items() if a.status_code == 302]
    assert row(env).definition["steps"][1] == {"tag": f"by_{won}"}


@pytest.mark.both_databases
def test_the_store_reports_a_save_it_did_not_write(env: AdminEnv) -> None:
    with env.engine.begin() as conn:
        first = store.save(conn, env.settings, doc(steps=[{"wait": "2d"}]), by="cli", base_version=1)
        late = store.save(conn, env.settings, doc(steps=[{"wait": "3d"}]), by="cli", base_version=1)
        unchanged = store.save(conn, env.settings, doc(steps=[{"wait": "2d"}]), by="cli")
    assert (first.written, first.version, first.stale) == (True, 2, False)
    assert (late.written, late.version, late.stale, late.saved_by) == (False, 2, True, "cli")
    assert (unchanged.written, unchanged.version, unchanged.stale) == (False, 2, False)


# --- the command line ---------------------------------------------------------------------------

def hub(*args: str, **env_vars: str) -> Any:
    import workflows

    workflows.register_commands(cli)
    return CliRunner().invoke(cli, list(args), env=env_vars or None)


def write(tmp_path: Any, document: dict[str, Any]) -> str:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_add_of_a_changed_entry_shows_the_forecast_and_needs_yes_past_the_limit(env: AdminEnv, tmp_path: Any) -> None:
    wider = write(tmp_path, doc(reentry="1d", holdout="5%"))
    over = hub("workflows", "add", wider, HUB_WORKFLOWS_CONFIRM_ADMIN_OVER="0")
    assert over.exit_code == 0, over.output
    assert "Вход в сценарий mine изменился (повторный вход раньше, меньшая контрольная группа)" in over.output
    assert "За 14 дней:" in over.output and "сохранён выключенным" in over.output and "--yes" in over.output
    assert "hub workflows enable mine" in over.output
    assert row(env).version == 2 and row(env).enabled is False
    assert last_audit(env, "workflow_disabled") == {"workflow": NAME, "version": 2, "reason": "entry_changed",
                                                    "entry_changed": ["reentry", "holdout"]}
    with env.engine.begin() as conn:
        store.set_enabled(conn, NAME, True)
    texts = write(tmp_path, doc(reentry="1d", holdout="5%", title="Новое название"))
    kept = hub("workflows", "add", texts, "--json", HUB_WORKFLOWS_CONFIRM_ADMIN_OVER="0")
    assert kept.exit_code == 0, kept.output
    found = json.loads(kept.stdout)
    assert (found["version"], found["enabled"], found["switched_off"], found["entry_changed"]) == (3, True, False, [])
    unchanged = hub("workflows", "add", texts)
    assert unchanged.exit_code == 0 and "не изменился (версия 3, включён)" in unchanged.output
    assert version_count(env) == 3
    widest = write(tmp_path, doc(trigger={"segment": "vip"}, reentry="1d", holdout="0%"))
    yes = hub("workflows", "add", widest, "--yes", "--json", HUB_WORKFLOWS_CONFIRM_ADMIN_OVER="0")
    assert yes.exit_code == 0, yes.output
    found = json.loads(yes.stdout)  # the forecast went to stderr: stdout is one JSON document
    assert (found["version"], found["enabled"], found["switched_off"]) == (4, True, False)
    assert found["entry_changed"] == ["trigger", "holdout"]
    assert last_audit(env, "workflow_enabled") == {"workflow": NAME, "version": 4, "reason": "entry_changed",
                                                   "yes": True}


def test_add_under_the_limit_keeps_it_on_after_printing_the_forecast(env: AdminEnv, tmp_path: Any) -> None:
    done = hub("workflows", "add", write(tmp_path, doc(reentry="1d")))
    assert done.exit_code == 0, done.output
    assert "За 14 дней:" in done.output and "снова включён" in done.output
    assert row(env).version == 2 and row(env).enabled is True
    assert "--yes" in hub("workflows", "add", "--help").output


def test_restore_on_the_command_line_asks_like_enable(env: AdminEnv) -> None:
    with env.engine.begin() as conn:
        store.save(conn, env.settings, doc(trigger={"segment": "never_bought"}), by="cli")
        store.set_enabled(conn, NAME, True)
    over = hub("workflows", "restore", NAME, "1", HUB_WORKFLOWS_CONFIRM_ADMIN_OVER="0")
    assert over.exit_code == 0, over.output
    assert "сохранён выключенным" in over.output and "восстановлена как версия 3" in over.output
    assert row(env).version == 3 and row(env).enabled is False
    with env.engine.begin() as conn:
        store.set_enabled(conn, NAME, True)
    yes = hub("workflows", "restore", NAME, "2", "--yes", "--json", HUB_WORKFLOWS_CONFIRM_ADMIN_OVER="0")
    assert yes.exit_code == 0, yes.output
    assert json.loads(yes.stdout) == {"workflow": NAME, "restored": 2, "version": 4, "changed": True,
                                      "entry_changed": ["trigger"], "enabled": True, "switched_off": False}
    assert re.search(r"--yes", hub("workflows", "restore", "--help").output)


# --- in the browser -------------------------------------------------------------------------------

def test_a_marketer_whose_editor_is_out_of_date_is_told_who_saved_and_keeps_the_text(
        env: AdminEnv, live: str, browser: Browser) -> None:
    sign_in(browser, live, "marketer", f"/workflows/{NAME}/edit")
    browser.wait(lambda: browser.exists(".wf-step"), "the builder")
    assert browser.find("#wf-base-version").get_attribute("value") == "1"
    with env.engine.begin() as conn:  # an administrator saves version 2 while the page is open
        store.save(conn, env.settings, doc(steps=[{"wait": "2d"}, {"tag": "admins"}]),
                   by="admin:admin@shop.example", kind=store.ADMIN_ORIGIN)
    browser.click("#wf-save")
    said = browser.wait_text("#wf-conflict", "Пока вы редактировали")
    assert "admin@shop.example" in said and "(версия 2)" in said
    assert "moved_on" in str(browser.find("#workflow-document").get_attribute("value"))  # the text it had
    assert row(env).definition["steps"][1] == {"tag": "admins"} and version_count(env) == 2
    browser.click("#wf-conflict a")
    browser.wait(lambda: browser.url.endswith(f"/workflows/{NAME}/versions"), "the versions page")
