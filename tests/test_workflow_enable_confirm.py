"""Switching a workflow on asks first, with the forecast's numbers; over a limit, only an admin may."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from hub import consent, sync
from hub.admin.audit import audit_t
from hub.db import utcnow
from hub.models import Contact
from hub.records import ContactRecord, OrderRecord
from tests.support.admin import AdminEnv, admin_env, client_as, plain, post, text  # noqa: F401
from workflows import forecast, store
from workflows.models import WorkflowRow, WorkflowRun

NAME = "reactivation_90d"


@pytest.fixture
def env(admin_env: AdminEnv) -> AdminEnv:  # noqa: F811
    """Anna and nine more who have not bought for 120 days and agreed to letters: all dormant."""
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
    return admin_env


def limit(env: AdminEnv, value: int) -> None:
    settings = env.app.config["HUB_SETTINGS"]
    env.app.config["HUB_SETTINGS"] = replace(settings, extra={**settings.extra,
                                                              "workflows_confirm_admin_over": value})


def enabled(env: AdminEnv, name: str = NAME) -> bool:
    with env.engine.connect() as conn:
        return bool(conn.execute(select(WorkflowRow.enabled).where(WorkflowRow.name == name)).scalar_one())


def expected(page: str) -> int:
    found = re.search(r'name="expected" value="(\d+)"', page)
    assert found, page
    return int(found.group(1))


def test_the_confirmation_shows_the_forecasts_numbers_and_switches_on(env: AdminEnv) -> None:
    marketer = client_as(env, "marketer")
    page = marketer.get(f"/workflows/{NAME}/enable")
    assert page.status_code == 200
    body = text(page)
    report = forecast.forecast(env.engine, env.settings, NAME, days=14)
    assert report["would_start"] > 0
    assert expected(body) == report["would_start"]
    assert re.search(r'id="enable-would-start">(\d+)<', body).group(1) == str(report["would_start"])
    assert re.search(r'id="enable-holdout">(\d+)<', body).group(1) == str(report["holdout"])
    assert re.search(r'data-channel="email">(\d+)<', body).group(1) == str(report["messages"]["email"])
    codes = sum(d.get("promo_code", 0) for d in report["by_day"])
    assert re.search(r'id="enable-promo">(\d+)<', body).group(1) == str(codes)
    summary = plain(page)
    assert "Сразу войд" in summary and "За 14 дней:" in summary and "промокод" in summary
    assert 'data-chart="bar"' in body and 'id="enable-chart-data"' in body
    with env.engine.connect() as conn:
        assert conn.execute(select(WorkflowRun.id)).first() is None  # asking wrote nothing
    done = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(expected(body))},
                follow_redirects=True)
    assert "включён" in text(done) and enabled(env)
    with env.engine.connect() as conn:
        entry = conn.execute(select(audit_t.c.details).where(audit_t.c.action == "workflow_enabled")).scalar_one()
    assert entry["confirmed"]["would_start"] == report["would_start"]
    assert entry["confirmed"]["messages"] == report["messages"] and entry["confirmed"]["promo_codes"] == codes


def test_stale_or_missing_numbers_are_shown_again_instead_of_switching_on(env: AdminEnv) -> None:
    marketer = client_as(env, "marketer")
    now = expected(text(marketer.get(f"/workflows/{NAME}/enable")))
    stale = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(now + 100)})
    assert stale.status_code == 409 and "Цифры изменились" in text(stale)
    assert expected(text(stale)) == now and not enabled(env)
    for forged in ("", "abc", "-1", "1" * 40):
        asked = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": forged})
        assert asked.status_code == 302 and asked.headers["Location"].endswith(f"/workflows/{NAME}/enable")
    assert not enabled(env)
    close = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(now + 3)},
                 follow_redirects=True)  # a small drift: the person saw the same picture
    assert "включён" in text(close) and enabled(env)
    off = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "0"}, follow_redirects=True)  # off: no question
    assert "выключен" in text(off) and not enabled(env)


def test_over_the_limit_only_an_admin_may_switch_on(env: AdminEnv) -> None:
    limit(env, 0)
    marketer = client_as(env, "marketer")
    page = marketer.get(f"/workflows/{NAME}/enable")
    assert "Включить может только администратор" in text(page) and 'id="enable-form"' not in text(page)
    number = forecast.forecast(env.engine, env.settings, NAME, days=14)["would_start"]
    refused = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(number)})
    assert refused.status_code == 403 and "Включить может только администратор" in text(refused)
    assert not enabled(env)
    admin = client_as(env, "admin")
    page = admin.get(f"/workflows/{NAME}/enable")
    assert 'id="enable-form"' in text(page)
    done = post(admin, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(expected(text(page)))},
                follow_redirects=True)
    assert "включён" in text(done) and enabled(env)


def test_a_viewer_sees_the_numbers_but_no_button_and_cannot_post(env: AdminEnv) -> None:
    viewer = client_as(env, "viewer")
    page = viewer.get(f"/workflows/{NAME}/enable")
    assert page.status_code == 200 and 'id="enable-summary"' in text(page) and 'id="enable-form"' not in text(page)
    assert f'/workflows/{NAME}/enable"' not in text(viewer.get("/workflows/"))  # no «Включить» in the list
    refused = post(viewer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": "1"})
    assert refused.status_code == 403 and not enabled(env)
    assert viewer.get("/workflows/no_such_workflow/enable").status_code == 404


def test_an_event_workflow_says_the_forecast_cannot_foresee_events(env: AdminEnv) -> None:
    marketer = client_as(env, "marketer")
    page = plain(marketer.get("/workflows/post_purchase_feedback/enable"))
    assert "Будущие события прогноз предсказать не может" in page
    assert "id=\"enable-event\"" in page
    done = post(marketer, "/workflows/post_purchase_feedback/enabled", {"enabled": "1", "expected": "0"},
                follow_redirects=True)
    assert "включён" in text(done) and enabled(env, "post_purchase_feedback")


def test_the_command_line_prints_the_numbers_and_asks_for_yes_over_the_limit(env: AdminEnv) -> None:
    import workflows
    from click.testing import CliRunner
    from tests.support.cli import cli

    workflows.register_commands(cli)
    over = CliRunner().invoke(cli, ["workflows", "enable", NAME],
                              env={"HUB_WORKFLOWS_CONFIRM_ADMIN_OVER": "0", "HUB_LANGUAGE": "en"})
    assert over.exit_code == 1 and "Error:" in over.output and "--yes" in over.output
    assert "would enter at once" in over.output and "Within 14 days:" in over.output
    assert not enabled(env)
    bad = CliRunner().invoke(cli, ["workflows", "enable", NAME], env={"HUB_WORKFLOWS_CONFIRM_ADMIN_OVER": "many"})
    assert bad.exit_code == 1 and "confirm_admin_over" in bad.output and not enabled(env)
    done = CliRunner().invoke(cli, ["workflows", "enable", NAME, "--yes"],
                              env={"HUB_WORKFLOWS_CONFIRM_ADMIN_OVER": "0"})
    assert done.exit_code == 0, done.output
    assert "Сразу войд" in done.output and "За 14 дней:" in done.output and "включён" in done.output
    assert enabled(env)
    under = CliRunner().invoke(cli, ["workflows", "enable", "welcome"])  # under the default limit of 1000
    assert under.exit_code == 0, under.output
    assert enabled(env, "welcome") and "события отслеживаются, когда сценарий включён" in under.output
    assert "--yes" in CliRunner().invoke(cli, ["workflows", "enable", "--help"]).output


# --- what the confirmation says: overlap, CRM work, the silent, the holdout, the scheduler -------------------

TITLE = "Вернуть клиентов, которые не покупали 90 дней"


def dormant_ids(env: AdminEnv) -> list[int]:
    with env.engine.connect() as conn:
        return sorted(conn.execute(select(Contact.id).where(Contact.last_name == "Спящая")).scalars())


def copy_of_the_shipped_one(env: AdminEnv, name: str = "reactivation_copy", title: str = "Копия возврата") -> None:
    document = {**store.library_documents()[NAME], "name": name, "title": title}
    with env.engine.begin() as conn:
        store.add(conn, env.settings, document, origin=store.ADMIN_ORIGIN, by="test")


def scheduler_ticks(env: AdminEnv) -> None:
    from hub import schedule

    schedule.run_due(env.engine, env.settings, only=["api_idempotency"])


@pytest.mark.both_databases
def test_a_copy_beside_the_switched_on_original_warns_with_numbers_links_and_audits_them(env: AdminEnv) -> None:
    from sqlalchemy import insert

    from hub.segments.evaluate import Segments
    from workflows import triggers

    copy_of_the_shipped_one(env)
    now = utcnow()
    ids = dormant_ids(env)
    with env.engine.begin() as conn:
        store.set_enabled(conn, NAME, True)
        row = store.row(conn, NAME)
        for cid in ids[:4]:  # the original already writes to four of them
            conn.execute(insert(WorkflowRun.__table__).values(
                workflow_id=row.id, version=row.version, contact_id=cid, status="waiting", step=2, trigger="segment",
                next_at=now + dt.timedelta(days=3), started_at=now))
        members = Segments(conn, env.settings, now=now).member_ids("dormant_90d")
    chosen = [cid for cid in members if not triggers.in_holdout_name("reactivation_copy", cid, 10)]
    running = [cid for cid in chosen if cid in ids[:4]]
    entering = [cid for cid in chosen if cid not in ids[:4] and not triggers.in_holdout_name(NAME, cid, 10)]
    assert len(running) >= 2 and len(entering) >= 2  # the draw on these ids; the numbers below follow it
    marketer = client_as(env, "marketer")
    page = plain(marketer.get("/workflows/reactivation_copy/enable"))
    assert 'id="enable-overlap"' in page and 'role="alert"' in page
    assert f"Внимание: {len(running) + len(entering)} из тех, кто войдёт, уже получают сообщения" in page
    assert (f'{len(running)} из них уже идут по сценарию «<a href="/workflows/{NAME}">{TITLE}</a>» (включён)'
            in page)
    assert (f'{len(entering)} из них войдут и в сценарий «<a href="/workflows/{NAME}">{TITLE}</a>» '
            f"(включён; они есть в его сегменте)") in page
    assert "Автоматически для них ничего не изменится" in page
    done = post(marketer, "/workflows/reactivation_copy/enabled",
                {"enabled": "1", "expected": str(expected(text(marketer.get("/workflows/reactivation_copy/enable"))))},
                follow_redirects=True)
    assert "Сценарий «Копия возврата» включён" in plain(done)
    with env.engine.connect() as conn:
        entry = conn.execute(select(audit_t.c.details).where(audit_t.c.action == "workflow_enabled")).scalar_one()
    assert entry["confirmed"]["overlap"] == {"contacts": len(running) + len(entering),
                                             "workflows": {NAME: {"running": len(running),
                                                                  "entering": len(entering)}}}
    # The original's page now names the copy; a title with markup in it stays text.
    copy_of_the_shipped_one(env, "reactivation_evil", "<script>alert(1)</script>")
    with env.engine.begin() as conn:
        store.set_enabled(conn, "reactivation_evil", True)
        store.set_enabled(conn, NAME, False)
    shown = text(marketer.get(f"/workflows/{NAME}/enable"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown and "<script>alert(1)" not in shown
    assert 'href="/workflows/reactivation_copy"' in shown


def test_the_command_line_says_the_overlap_too(env: AdminEnv) -> None:
    import workflows
    from click.testing import CliRunner

    from tests.support.cli import cli

    workflows.register_commands(cli)
    copy_of_the_shipped_one(env)
    with env.engine.begin() as conn:
        store.set_enabled(conn, NAME, True)
    done = CliRunner().invoke(cli, ["workflows", "enable", "reactivation_copy", "--yes"])
    assert done.exit_code == 0, done.output
    assert "Внимание:" in done.output and f"войдут и в сценарий «{TITLE}» (включён" in done.output
    assert "Планировщик не запущен" in done.output
    english = CliRunner().invoke(cli, ["workflows", "enable", NAME, "--yes"], env={"HUB_LANGUAGE": "en"})
    assert english.exit_code == 0, english.output
    assert "Careful:" in english.output and "«Копия возврата» too (switched on; they are in its segment)" \
        in english.output


def add_unreachable(env: AdminEnv) -> None:
    """Three dormant people who never agreed to letters and two with a phone only (and no consent for SMS)."""
    now = utcnow()
    records: list[Any] = []
    for i in range(5):
        address = {"emails": [f"n{i}@example.ru"]} if i < 3 else {"phones": [f"+7916555000{i}"]}
        records.append(ContactRecord(source="bitrix24", external_id=f"n{i}", first_name=f"Нина{i}",
                                     last_name="Молчащая", **address))
        records.append(OrderRecord(source="bitrix24", external_id=f"on{i}", contact_external_id=f"n{i}",
                                   amount=Decimal("700"), status="won", closed_at=now - dt.timedelta(days=120)))
    with env.engine.begin() as conn:
        sync.write_page(conn, records, env.settings, sync.Counts())


def lapsed_workflow(env: AdminEnv) -> str:
    """The shipped win-back workflow on a segment that does not ask for consent: some it cannot write to."""
    from hub.segments import store as segment_store
    from hub.segments.evaluate import Segments

    segment = {"name": "lapsed_any", "title": "Давно не покупали", "rule": {"all": [
        {"field": "orders.count", "op": "gte", "value": 1}, {"field": "orders.last_at", "op": "before",
                                                             "value": "-90d"}]}}
    with env.engine.begin() as conn:
        segment_store.add(conn, Segments(conn, env.settings).registry, segment)
    document = {**store.library_documents()[NAME], "name": "reactivation_all", "title": "Вернуть всех",
                "trigger": {"segment": "lapsed_any"}}
    with env.engine.begin() as conn:
        store.add(conn, env.settings, document, origin=store.ADMIN_ORIGIN, by="test")
    return "reactivation_all"


def test_the_summary_counts_crm_tasks_and_says_who_gets_nothing_and_why(env: AdminEnv) -> None:
    from workflows import triggers

    add_unreachable(env)
    name = lapsed_workflow(env)
    report = forecast.forecast(env.engine, env.settings, name, days=14)
    steps = {s["step"]: s for s in report["steps"]}
    email = steps[2]
    reached = sum(email.get(k, 0) for k in forecast.OUTCOMES)
    assert reached == report["would_start"]  # each entrant counted once at the letter, deferred or not
    silent = report["silent"]
    with env.engine.connect() as conn:
        added = dict(conn.execute(select(Contact.first_name, Contact.id).where(Contact.last_name == "Молчащая")).all())
    drawn = {k: not triggers.in_holdout_name(name, cid, 10) for k, cid in added.items()}  # the holdout gets nothing
    assert silent["skipped_no_consent"] >= sum(drawn[f"Нина{i}"] for i in range(3)) >= 1
    assert silent["skipped_no_address"] >= sum(drawn[f"Нина{i}"] for i in range(3, 5)) >= 1
    assert silent["total"] == sum(v for k, v in silent.items() if k != "total")
    tasks = sum(d.get("crm_task", 0) for d in report["by_day"])
    assert tasks == report["would_start"]  # nobody buys in a forecast: everyone reaches the manager's task
    page = plain(client_as(env, "marketer").get(f"/workflows/{name}/enable"))
    assert re.search(rf"\b{tasks} задач[аи]? менеджерам в CRM", page), page
    assert ("не получ" in page and "ни одного сообщения: нет согласия на такие сообщения — "
            f"{silent['skipped_no_consent']}; нет адреса для отправки (email или телефона) — "
            f"{silent['skipped_no_address']}." in page)
    assert f'id="enable-silent">{silent["total"]}<' in page and 'data-kind="crm_task">' in page
    forecast_page = plain(client_as(env, "viewer").get(f"/workflows/{name}/forecast"))
    assert not re.search(r"произошло бы \d", forecast_page)
    assert (f"отправится: {email['count']}; нет согласия: {email['skipped_no_consent']}; "
            f"нет адреса: {email['skipped_no_address']}; всего дошли до шага: {reached}") in forecast_page
    viewer = client_as(env, "viewer")
    post(viewer, "/language", {"language": "en"})
    english = plain(viewer.get(f"/workflows/{name}/enable"))
    assert re.search(rf"\b{tasks} tasks? for managers in the CRM", english)
    assert "would get no message at all: no consent to such messages — " in english


def test_the_per_step_counts_read_as_a_list_that_adds_up() -> None:
    from hub.i18n import use_language

    step = {"step": 2, "label": "send", "kind": "send", "count": 21, "deferred_frequency_cap": 14,
            "skipped_no_address": 18, "skipped_no_consent": 37}
    with use_language("ru"):
        assert "; ".join(forecast.step_outcomes(step)) == (
            "отправится: 21 (из них отложено из-за лимита частоты: 14); нет согласия: 37; нет адреса: 18; "
            "всего дошли до шага: 76")
        assert forecast.step_outcomes({"kind": "crm_task", "count": 5}) == ["будет выполнено: 5"]
        assert forecast.step_outcomes({"kind": "if", "then": 2, "else": 3}) == [
            "условие выполнено: 2", "условие не выполнено: 3", "всего дошли до шага: 5"]
    with use_language("en"):
        assert forecast.step_outcomes(step)[0] == "will be sent: 21 (of these, held by the frequency cap: 14)"


def test_the_holdout_is_said_as_a_drawn_share() -> None:
    from hub.i18n import use_language

    numbers = {"would_start": 32, "holdout": 8, "holdout_percent": 10.0, "already_running": 0, "messages": {},
               "promo_codes": 0, "actions": {}, "days": 14, "silent": {"total": 0}}
    with use_language("ru"):
        assert forecast.switch_on_text(numbers).startswith(
            "Сразу войдут 32 человека; в контрольную группу попадут 8 (≈10 % — выбор случайный, при малых числах "
            "доля колеблется).")
    with use_language("en"):
        assert "8 would go into the holdout (≈10 % — chosen at random" in forecast.switch_on_text(numbers)


def test_the_holdout_on_the_page_is_the_draw_the_runs_will_make(env: AdminEnv) -> None:
    from hub.segments.evaluate import Segments
    from workflows import triggers

    add_unreachable(env)
    with env.engine.connect() as conn:
        members = Segments(conn, env.settings, now=utcnow()).member_ids("dormant_90d")
    held = [cid for cid in members if triggers.in_holdout_name(NAME, cid, 10)]
    page = text(client_as(env, "marketer").get(f"/workflows/{NAME}/enable"))
    assert f'id="enable-holdout">{len(held)}<' in page
    assert f'id="enable-would-start">{len(members) - len(held)}<' in page
    if held:
        assert "выбор случайный, при малых числах доля колеблется" in plain(client_as(env, "marketer").get(
            f"/workflows/{NAME}/enable"))


def test_over_the_limit_a_marketer_gets_a_link_to_pass_to_an_admin(env: AdminEnv) -> None:
    limit(env, 0)
    marketer = client_as(env, "marketer")
    page = text(marketer.get(f"/workflows/{NAME}/enable"))
    assert "Попросите администратора открыть эту страницу:" in page
    assert f'id="enable-share" value="http://localhost/workflows/{NAME}/enable" readonly' in page
    assert 'data-copy="enable-share"' in page and "enable-confirm.js" in page
    refused = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(expected(
        text(client_as(env, "admin").get(f"/workflows/{NAME}/enable"))))})
    assert refused.status_code == 403 and "Попросите администратора открыть эту страницу:" in text(refused)
    assert "Попросите администратора" not in text(client_as(env, "admin").get(f"/workflows/{NAME}/enable"))
    assert client_as(env, "marketer").get("/workflows/static/enable-confirm.js").status_code == 200


def test_switching_on_without_a_scheduler_says_so_on_the_page_and_in_the_flash(env: AdminEnv) -> None:
    marketer = client_as(env, "marketer")
    page = plain(marketer.get(f"/workflows/{NAME}/enable"))
    assert ("Планировщик не запущен: после включения запуски не начнутся, пока администратор его не запустит: "
            "<code>hub scheduler</code>") in page
    done = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(expected(page))},
                follow_redirects=True)
    assert (f"Сценарий «{TITLE}» включён, но планировщик не запущен: запуски не начнутся, пока администратор не "
            "запустит hub scheduler.") in plain(done)
    assert f"{NAME} включён" not in plain(done)
    off = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "0"}, follow_redirects=True)
    assert f"Сценарий «{TITLE}» выключен: новые запуски не начнутся." in plain(off)
    scheduler_ticks(env)
    page = plain(marketer.get(f"/workflows/{NAME}/enable"))
    assert 'id="enable-scheduler"' not in page
    done = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(expected(page))},
                follow_redirects=True)
    assert f"Сценарий «{TITLE}» включён: запуски начнутся со следующей проверки." in plain(done)
    post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "0"})
    post(marketer, "/language", {"language": "en"})
    page = plain(marketer.get(f"/workflows/{NAME}/enable"))
    done = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(expected(page))},
                follow_redirects=True)
    assert "The workflow «Win back customers who have not bought for 90 days» is on" in plain(done)


def test_in_a_browser_a_marketer_copies_the_link_for_the_admin_and_sees_the_overlap(env: AdminEnv, live: str,
                                                                                      browser: Any) -> None:
    from tests.support.admin_browser import sign_in

    copy_of_the_shipped_one(env)
    with env.engine.begin() as conn:
        store.set_enabled(conn, NAME, True)
    limit(env, 0)
    sign_in(browser, live, "marketer", "/workflows/reactivation_copy/enable")
    warning = browser.wait_text("#enable-overlap", "Внимание:")
    assert f"войдут и в сценарий «{TITLE}» (включён" in warning
    assert browser.find("#enable-share").get_attribute("value") == f"{live}/workflows/reactivation_copy/enable"
    assert not browser.exists("#enable-form")
    browser.click("button[data-copy=enable-share]")
    browser.wait_text("button[data-copy=enable-share]", "Скопировано")
    assert browser.script("return document.activeElement.id") == "enable-share"  # the link stands selected
    browser.click(f"#enable-overlap a[href='/workflows/{NAME}']")
    browser.wait(lambda: browser.url.endswith(f"/workflows/{NAME}"), "the original's page")
