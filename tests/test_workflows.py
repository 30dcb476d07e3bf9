"""Workflows in-process (no Redis): definitions, runs, waits, branches, policies, exactly-once, measuring.

Messages go to the file channel (the embedded default), so every letter a
test expects is a real .eml file in ./outbox. Time passes only through the
`now` the engine is given (a fake clock, where a week must pass); everything
else is real: SQLite and PostgreSQL, the segments engine, the outbox.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from hub import consent, identity, localtime, schedule, send_limits
from hub.i18n import use_language
from hub.config import load_settings
from hub.db import utcnow
from hub.hookspecs import hookimpl
from hub.models import Contact, Message
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.shop import SHOP, Person, add_order, enable, make_shop, runs_of, start, use_workflows, write
from workflows import forecast, measure, policy, runner, store, ticks, triggers
from workflows.models import PromoCode, StepResult, WorkflowRow, WorkflowRun
from workflows.steps import Outcome, Step, StepFailed

pytestmark = pytest.mark.both_databases  # exactly-once runs and steps (ON CONFLICT)

UTC = dt.timezone.utc
LIBRARY = ("birthday", "post_purchase_feedback", "reactivation_90d", "welcome", "winback_dead")


# --- a shop and the tools to look at it -----------------------------------------------------

def hub(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def hub_json(*args: str) -> Any:
    result = hub(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def letters(db: HubDB) -> list[email.message.EmailMessage]:
    folder = Path("outbox")
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(folder.glob("*-email.eml"))] if folder.exists() else []


def body(message: email.message.EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()


def rows(db: HubDB, table: Any, *where: Any) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(table).where(*where)))


def count(db: HubDB, table: Any, *where: Any) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def a_morning(days_ago: int = 30) -> dt.datetime:
    """07:00 UTC (10:00 in Moscow) some days ago: a fixed local time, always in the past."""
    return (utcnow() - dt.timedelta(days=days_ago)).replace(hour=7, minute=0, second=0, microsecond=0)


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


# --- definitions --------------------------------------------------------------------------

def test_the_shipped_workflows_check_and_list(wf: HubDB) -> None:
    listed = {w["name"]: w for w in hub_json("workflows", "list")}
    assert set(LIBRARY) <= set(listed)
    reactivation = listed["reactivation_90d"]
    assert reactivation["enabled"] is False and reactivation["origin"] == "library"
    assert reactivation["trigger"] == "segment dormant_90d"
    assert reactivation["reentry"] == "180d" and reactivation["holdout"] == "10%"
    assert reactivation["steps"] == ["1. promo_code 15% 14d", "2. send email reactivation_email", "3. wait 7d",
                                     "4. if", "5. exit", "6. send sms reactivation_sms", "7. crm_task"]
    assert listed["birthday"]["trigger"] == 'schedule "0 10 * * *" → segment birthday_7d'
    assert all("error" not in w for w in listed.values())


def test_show_names_the_trigger_and_each_step_as_people_call_them(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside the table's cells
    shown = hub("workflows", "show", "reactivation_90d")
    assert shown.exit_code == 0, shown.output
    assert "Вернуть клиентов, которые не покупали 90 дней (reactivation_90d)" in shown.output
    assert "Запуск: вход в сегмент «Не покупали 90 дней, письма разрешены» (dormant_90d)." in shown.output
    for text, name in [("Промокод 15\u00a0% на 14 дней", "promo_code 15% 14d"),
                       ("Отправить письмо: reactivation_email", "send email"), ("Подождать 7 дней", "wait 7d"),
                       ("Условие", "if"), ("Завершить", "exit"), ("Задача в CRM со сроком 2 дня", "crm_task")]:
        assert text in shown.output and name in shown.output
    status = hub("workflows", "status", "reactivation_90d").output
    assert "вход в сегмент «Не покупали 90 дней, письма разрешены» (dormant_90d)" in status
    assert "Промокод 15\u00a0% на 14 дней (promo_code)" in status and "14d" not in status
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    english = hub("workflows", "show", "reactivation_90d").output
    assert "Win back customers who have not bought for 90 days (reactivation_90d)" in english
    assert "entering the segment “Dormant for 90 days, email allowed” (dormant_90d)" in english
    assert "Task in the CRM, due in 2 days" in english
    status = hub("workflows", "status", "reactivation_90d").output
    assert "Promo code 15% for 14 days (promo_code)" in status


def test_a_marketers_title_with_brackets_is_printed_as_written(wf: HubDB, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Titles and descriptions are the marketer's text, not rich markup: «[/]» must neither crash nor vanish."""
    monkeypatch.setenv("COLUMNS", "200")
    path = write(tmp_path, "brackets.yaml", "name: brackets\ntitle: \"Скидка [/] [bold]VIP[/bold]\"\n"
                 "description: \"Для [red]своих[/]\"\ntrigger: {segment: dormant_90d}\n"
                 "steps:\n  - tag: \"[vip]\"\n")
    assert hub("workflows", "add", path).exit_code == 0
    shown = hub("workflows", "show", "brackets")
    assert shown.exit_code == 0, shown.output
    assert "Скидка [/] [bold]VIP[/bold] (brackets)" in shown.output
    assert "Для [red]своих[/]" in shown.output and "Добавить метку: [vip]" in shown.output
    status = hub("workflows", "status", "brackets")
    assert status.exit_code == 0 and "Скидка [/] [bold]VIP[/bold] (brackets)" in status.output, status.output
    dry = hub("workflows", "run", "brackets", "--dry-run")
    assert dry.exit_code == 0 and "brackets" in dry.output, dry.output


def test_every_step_and_trigger_kind_has_a_title_and_a_summary_in_both_languages(wf: HubDB) -> None:
    from hub.i18n import use_language
    from workflows.definition import TRIGGER_KINDS, If, Trigger, step_types
    from workflows.steps import Exit, kind_summary, kind_title

    kinds = {n: c for n, c in step_types().items() if c.__module__.startswith("workflows.")}
    assert {"send", "promo_code", "wait", "crm_task", "crm_comment", "crm_field", "tag", "untag",
            "webhook"} <= set(kinds)
    kinds.update({"if": If, "exit": Exit})
    for name, cls in kinds.items():
        with use_language("en"):
            english = kind_title(cls), kind_summary(cls)
        russian = kind_title(cls), kind_summary(cls)
        assert english[0] != name and english[1], name
        assert russian[0] != english[0] and russian[1] != english[1], name
    for kind in TRIGGER_KINDS:
        trigger = Trigger(kind)
        with use_language("en"):
            english = trigger.title(), trigger.summary()
        assert trigger.title() != english[0] and trigger.summary() != english[1]


def test_shipped_workflows_are_titled_in_english_and_read_in_russian(wf: HubDB) -> None:
    from hub.i18n import title, use_language

    for name, document in store.library_documents().items():
        assert document["title"].isascii() and document["description"].isascii(), name
        with use_language("en"):
            assert title(document["title"]) == document["title"]
        assert title(document["title"]) != document["title"] and title(document["description"]), name
    assert title(store.library_documents()["reactivation_90d"]["title"]) == (
        "Вернуть клиентов, которые не покупали 90 дней")


BAD = {
    "unknown_step.yaml": ("steps: [{sned: {channel: email, template: reactivation_email}}]",
                          "steps[0]: unknown step 'sned'; did you mean 'send'?"),
    "bad_duration.yaml": ("steps: [{wait: 7 days}]",
                          "steps[0].wait.for: '7 days' is not a length of time (a number and s, m, h, d or w: "
                          "30m, 12h, 7d, 2w)"),
    "missing_template.yaml": ("steps: [{send: {channel: email, template: reactivaton_email}}]",
                              "steps[0].send.template: no template named 'reactivaton_email'; "
                              "did you mean 'reactivation_email'?"),
    "no_promo.yaml": ("steps: [{send: {channel: email, template: reactivation_email}}]",
                      "steps[0].send.template: reactivation_email uses promo, but no promo_code step comes "
                      "before this one"),
    "wrong_channel.yaml": ("steps: [{send: {channel: sms, template: reactivation_email}}]",
                           "steps[0].send.template: reactivation_email is an email template; it cannot go by sms"),
    "bad_rule.yaml": ("steps: [{if: {field: orders.last_at, op: befor, value: run.started_at}, then: exit}]",
                      "steps[0].if.op: 'befor' is not an operator for orders.last_at; did you mean 'before'?"),
    "bad_discount.yaml": ("steps: [{promo_code: {discount: 15, valid_for: 14d}}]",
                          "steps[0].promo_code.discount: 15: write the discount in per cent, e.g. 15%"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_step_is_refused_with_its_path(wf: HubDB, tmp_path: Path, name: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_LANGUAGE", "en")  # the exact English messages; Russian is checked below
    steps, expected = BAD[name]
    path = write(tmp_path, name, f"name: mine\ntrigger: {{segment: dormant_90d}}\n{steps}\n")
    result = hub("workflows", "add", path)
    assert result.exit_code == 1
    assert result.output == f"Error: {name}: {expected}\n"


BAD_IN_RUSSIAN = {
    "unknown_step.yaml": "steps[0]: неизвестный шаг 'sned'; может быть, 'send'?",
    "missing_template.yaml": "steps[0].send.template: нет шаблона 'reactivaton_email'; может быть, "
                             "'reactivation_email'?",
    "no_promo.yaml": "steps[0].send.template: reactivation_email использует promo, но до этого шага нет шага "
                     "promo_code",
    "wrong_channel.yaml": "steps[0].send.template: reactivation_email — шаблон письма; его нельзя отправить по "
                          "каналу sms",
    "bad_discount.yaml": "steps[0].promo_code.discount: 15: укажите скидку в процентах, например 15%",
}


@pytest.mark.parametrize("name", sorted(BAD_IN_RUSSIAN))
def test_a_bad_step_is_refused_in_russian_by_default(wf: HubDB, tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, f"name: mine\ntrigger: {{segment: dormant_90d}}\n{BAD[name][0]}\n")
    result = hub("workflows", "add", path)
    assert result.exit_code == 1
    assert result.output == f"Ошибка: {name}: {BAD_IN_RUSSIAN[name]}\n"


def test_a_bad_trigger_and_several_problems_at_once(wf: HubDB, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    path = write(tmp_path, "mine.yaml", "name: Mine\ntrigger: {segment: dormant_9d}\nreentry: sometimes\n"
                                        "holdout: 80%\nsteps: [{wait: 1d}]\n")
    output = hub("workflows", "add", path).output
    assert output.startswith("Error: mine.yaml: name: 'Mine' is not a workflow name")
    assert "trigger.segment: no segment named 'dormant_9d'; did you mean 'dormant_90d'?" in output
    assert "reentry: 'sometimes' is not a length of time" in output
    assert "holdout: '80%': write a share from 0% to 50%, like 10%" in output
    event = write(tmp_path, "event.yaml", "name: ev\ntrigger: {event: order.paid}\nsteps: [{wait: 1d}]\n")
    assert hub("workflows", "add", event).output == (
        "Error: event.yaml: trigger.event: 'order.paid' is not an event; use one of: order.created, order.won, "
        "contact.created, promo.expiring, promo.expired, deal.stuck\n")
    broken = write(tmp_path, "broken.yaml", "name: [\n")
    assert hub("workflows", "add", broken).output.startswith("Error: broken.yaml: not valid YAML (")
    shipped = write(tmp_path, "own.yaml", "name: welcome\ntrigger: {event: contact.created}\nsteps: [{wait: 1d}]\n")
    assert hub("workflows", "add", shipped).output == (
        "Error: own.yaml: 'welcome' is a shipped workflow; save yours under another name\n")
    assert hub("workflows", "status", "reactivaton_90d").output == (
        "Error: no workflow named 'reactivaton_90d'; did you mean 'reactivation_90d'? (see `hub workflows list`)\n")
    monkeypatch.delenv("HUB_LANGUAGE")
    assert hub("workflows", "status", "reactivaton_90d").output == (
        "Ошибка: нет сценария 'reactivaton_90d'; может быть, 'reactivation_90d'? (см. `hub workflows list`)\n")
    assert "holdout: '80%': укажите долю от 0% до 50%, например 10%" in hub("workflows", "add", path).output


def test_a_saved_workflow_gets_versions_and_runs_keep_theirs(wf: HubDB, tmp_path: Path) -> None:
    now = a_morning()
    make_shop(wf, SHOP[:1], now=now)
    first = write(tmp_path, "w.yaml", "name: mine\ntrigger: {segment: dormant_90d}\nsteps: [{wait: 2d}, {tag: one}]\n")
    added = hub_json("workflows", "add", first)
    assert added == {**added, "workflow": "mine", "created": True, "version": 1, "enabled": False}
    start(wf, "mine", now)
    second = write(tmp_path, "w.yaml", "name: mine\ntrigger: {segment: dormant_90d}\nsteps: [{wait: 2d}, {tag: two}]\n")
    assert hub_json("workflows", "add", second)["version"] == 2
    ticks.advance_due(wf.engine, wf.settings, now=now + dt.timedelta(days=3))
    (run,) = runs_of(wf, "mine")
    assert run.version == 1 and run.status == "done"
    assert rows(wf, Contact, Contact.id == run.contact_id)[0].tags == ["one"]


# --- the reactivation campaign, as a new user meets it ----------------------------------------

def test_reactivation_gives_each_dormant_consenting_contact_one_code_and_one_email(wf: HubDB) -> None:
    ids = make_shop(wf, SHOP, now=utcnow())
    dormant = {k for k in ("anna", "gleb", "dina", "zoya", "ivan")}  # bought long ago, email consent
    holdout = {k for k in dormant if triggers.in_holdout_name("reactivation_90d", ids[k], 10)}
    first = hub_json("workflows", "run", "reactivation_90d")
    assert first == {"workflow": "reactivation_90d", "started": len(dormant), "holdout": len(holdout),
                     "skipped": 0, "messages": len(dormant - holdout), "sent": len(dormant - holdout)}
    got = letters(wf)
    assert sorted(m["To"].addresses[0].addr_spec for m in got) == sorted(f"{k}@example.ru" for k in dormant - holdout)
    codes = {r.contact_id: r for r in rows(wf, PromoCode)}
    assert set(codes) == {ids[k] for k in dormant - holdout}
    for message in got:
        contact = ids[message["To"].addresses[0].addr_spec.split("@")[0]]
        code = codes[contact].code
        assert code.startswith("BACK-") and len(code) == 11 and not set(code[5:]) & set("01OIL")
        assert code in body(message) and code in message["Subject"] or "15%" in message["Subject"]
        assert code in body(message)
    again = hub_json("workflows", "run", "reactivation_90d")
    assert again == {**again, "started": 0, "skipped": len(dormant), "messages": 0}
    assert len(letters(wf)) == len(got)
    status = hub_json("workflows", "status", "reactivation_90d")
    assert status["entered"] == len(dormant) and status["in_holdout"] == len(holdout)
    assert status["steps"][0] == {**status["steps"][0], "kind": "promo_code", "done": len(dormant - holdout)}
    assert status["steps"][1] == {**status["steps"][1], "kind": "send", "sent": len(dormant - holdout),
                                  "skipped": 0, "failed": 0}
    assert status["promo_codes"] == {"issued": len(dormant - holdout), "redeemed": 0, "expired": 0,
                                     "active": len(dormant - holdout)}


def test_consent_is_asked_again_when_the_message_goes(wf: HubDB) -> None:
    now = a_morning()
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru"),
                         Person("gleb", "Глеб", None, "gleb@example.ru")],
                    now=now)
    path = Path("own.yaml")
    path.write_text("name: two_letters\ntrigger: {segment: dormant_90d}\nsteps:\n"
                    "  - promo_code: {discount: 10%, valid_for: 7d}\n"
                    "  - send: {channel: email, template: reactivation_email}\n  - wait: 1d\n"
                    "  - send: {channel: email, template: reactivation_email}\n", encoding="utf-8")
    assert hub("workflows", "add", str(path)).exit_code == 0
    start(wf, "two_letters", now)
    with wf.engine.begin() as conn:
        consent.record(conn, ids["gleb"], "email", "marketing", "withdrawn", source="unsubscribe link")
    ticks.advance_due(wf.engine, wf.settings, now=now + dt.timedelta(days=1, minutes=1))
    by_contact = {(m.contact_id, m.status) for m in rows(wf, Message)}
    assert (ids["gleb"], "suppressed") in by_contact and (ids["anna"], "sent") in by_contact
    assert sum(1 for m in rows(wf, Message) if m.status == "sent") == 3
    status = measure.status(wf.engine, wf.settings, "two_letters")
    assert status["steps"][3] == {**status["steps"][3], "sent": 1, "skipped": 1}


def test_a_week_later_the_sms_goes_only_to_who_did_not_buy(wf: HubDB) -> None:
    t0 = a_morning(30)
    people = [Person("anna", "Анна", "+74951110001", "anna@example.ru"),
              Person("gleb", "Глеб", "+74951110004", "gleb@example.ru"),
              Person("zoya", "Зоя", "+74951110007", "zoya@example.ru")]
    ids = make_shop(wf, people, now=t0)
    treated = [k for k in ids if not triggers.in_holdout_name("reactivation_90d", ids[k], 10)]
    start(wf, "reactivation_90d", t0)
    buyer = treated[0]
    add_order(wf, buyer, closed_at=t0 + dt.timedelta(days=2))
    later = t0 + dt.timedelta(days=7, minutes=5)
    report = ticks.advance_due(wf.engine, wf.settings, now=later)
    assert report["claimed"] == len(treated)
    by_run = {r.contact_id: r for r in runs_of(wf, "reactivation_90d")}
    assert by_run[ids[buyer]].status == "exited"
    sms = {m.contact_id: m for m in rows(wf, Message, Message.channel == "sms")}
    assert set(sms) == {ids[k] for k in treated[1:]}
    for m in sms.values():
        code = rows(wf, PromoCode, PromoCode.run_id == by_run[m.contact_id].id)[0].code
        assert code in m.body_text and m.status == "sent"
    for k in treated[1:]:
        run = by_run[ids[k]]
        assert run.status == "done"  # the call task was skipped: a spreadsheet-like shop is in no CRM
        (task,) = rows(wf, StepResult, StepResult.run_id == run.id, StepResult.kind == "crm_task")
        assert task.status == "skipped" and task.detail == "the contact is in no CRM that accepts write-back"


# --- policies -----------------------------------------------------------------------------

def test_quiet_hours_hold_an_sms_until_the_contacts_morning(wf: HubDB, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_QUIET_HOURS_SMS", "21:00-09:00")
    wf = replace(wf, settings=load_settings())
    evening = a_morning(20) + dt.timedelta(hours=9, minutes=30)  # 16:30 UTC: 19:30 in Moscow, 21:30 in Yekaterinburg
    ids = make_shop(wf, [Person("moscow", "Мария", "+74951234567", "m@example.ru"),
                         Person("ural", "Урал", "+73432123456", "u@example.ru"),
                         Person("own", "Ольга", "+74951234568", "o@example.ru", timezone="Asia/Vladivostok")],
                    now=evening)
    path = write(tmp_path, "sms.yaml", "name: sms_only\ntrigger: {segment: dormant_90d}\nsteps:\n"
                                       "  - promo_code: {discount: 10%, valid_for: 7d}\n"
                                       "  - send: {channel: sms, template: reactivation_sms}\n")
    assert hub("workflows", "add", path).exit_code == 0
    start(wf, "sms_only", evening)
    created = {m.contact_id for m in rows(wf, Message)}
    assert created == {ids["moscow"]}
    runs = {r.contact_id: r for r in runs_of(wf, "sms_only")}
    ural_morning = dt.datetime.combine((evening + dt.timedelta(days=1)).date(), dt.time(4, 0), tzinfo=UTC)
    assert runs[ids["ural"]].status == "waiting" and runs[ids["ural"]].next_at == ural_morning
    held = rows(wf, StepResult, StepResult.run_id == runs[ids["ural"]].id, StepResult.kind == "send")[0]
    assert held.status == "deferred" and held.deferrals == 1
    assert held.detail == "quiet hours 21:00-09:00 in Asia/Yekaterinburg"
    # Vladivostok (UTC+10): 16:30 UTC is 02:30 there; its morning is 23:00 UTC the same day
    assert runs[ids["own"]].next_at == evening.replace(hour=23, minute=0)
    ticks.advance_due(wf.engine, wf.settings, now=ural_morning + dt.timedelta(minutes=1))
    assert {m.contact_id for m in rows(wf, Message)} == set(ids.values())
    status = measure.status(wf.engine, wf.settings, "sms_only")
    assert status["steps"][1]["deferred"] == 2


def test_the_frequency_cap_spans_workflows_and_spares_transactional_mail(wf: HubDB, tmp_path: Path) -> None:
    t0 = a_morning(40)
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru")], now=t0)
    for name, steps in {
        "first": "[{promo_code: {discount: 5%, valid_for: 30d}},"
                 " {send: {channel: email, template: reactivation_email}},"
                 " {send: {channel: email, template: reactivation_email}}]",
        "second": "[{promo_code: {discount: 5%, valid_for: 30d}},"
                  " {send: {channel: email, template: reactivation_email, on_cap: skip}},"
                  " {send: {channel: email, template: double_opt_in_email, purpose: transactional}}]",
        "third": "[{promo_code: {discount: 5%, valid_for: 30d}},"
                 " {send: {channel: email, template: reactivation_email}}]",
    }.items():
        assert hub("workflows", "add", write(tmp_path, f"{name}.yaml",
                                             f"name: {name}\ntrigger: {{segment: dormant_90d}}\nsteps: {steps}\n")
                   ).exit_code == 0
    start(wf, "first", t0)
    start(wf, "second", t0 + dt.timedelta(hours=1))
    start(wf, "third", t0 + dt.timedelta(days=2))
    results = rows(wf, StepResult, StepResult.run_id == runs_of(wf, "second")[0].id)
    capped, transactional = sorted(results, key=lambda r: r.step)[1:]
    assert capped.status == "skipped" and capped.detail == "frequency cap 2/7d reached"
    assert transactional.status == "done"
    (third,) = runs_of(wf, "third")
    assert third.status == "waiting" and third.next_at == t0 + dt.timedelta(days=7)
    ticks.advance_due(wf.engine, wf.settings, now=t0 + dt.timedelta(days=7, minutes=1))
    marketing = [m for m in rows(wf, Message) if m.purpose == "marketing"]
    assert len(marketing) == 3 and all(m.contact_id == ids["anna"] for m in marketing)
    assert runs_of(wf, "third")[0].status == "done"


def test_local_time_and_zones() -> None:
    quiet = localtime.parse_quiet_hours("21:00-09:00")
    assert quiet is not None and str(quiet) == "21:00-09:00"
    msk = localtime.zone("Europe/Moscow")
    assert msk is not None
    late = dt.datetime(2025, 3, 3, 20, 30, tzinfo=UTC)  # 23:30 in Moscow
    assert quiet.end_after(late, msk) == dt.datetime(2025, 3, 4, 6, 0, tzinfo=UTC)
    assert quiet.end_after(dt.datetime(2025, 3, 3, 12, 0, tzinfo=UTC), msk) is None
    assert localtime.phone_zone("+73432123456").key == "Asia/Yekaterinburg"  # a landline: one zone
    assert localtime.phone_zone("+79161234567") is None  # a mobile: anywhere in Russia
    assert localtime.contact_zone(None, ["+79161234567"], msk) is msk
    assert localtime.contact_zone("Asia/Omsk", ["+73432123456"], msk).key == "Asia/Omsk"
    assert localtime.parse_time_of_day(600) == dt.time(10, 0)  # YAML's reading of an unquoted 10:00
    with pytest.raises(ValueError, match="не длительность"):
        localtime.parse_duration("7x")
    with use_language("en"), pytest.raises(ValueError, match="not a length of time; write it with a unit, like 7d"):
        localtime.parse_duration(7)
    cap = send_limits.parse_cap("2/7d")
    assert cap is not None
    day = dt.datetime(2025, 1, 10, tzinfo=UTC)
    assert policy.cap_until(cap, [day - dt.timedelta(days=1)], day) is None
    assert policy.cap_until(cap, [day - dt.timedelta(days=3), day - dt.timedelta(days=1)], day) == \
        day + dt.timedelta(days=4)


def test_bad_settings_name_the_setting(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_LANGUAGE", "en")  # the exact English messages
    monkeypatch.setenv("HUB_FREQUENCY_CAP", "twice a week")
    result = hub("workflows", "run", "reactivation_90d")
    assert result.exit_code == 1
    assert result.output == ("Error: frequency_cap (HUB_FREQUENCY_CAP): 'twice a week' is not "
                             "a cap; write messages/period, e.g. \"2/7d\", or \"none\"\n")
    # The limits hold every message now, so they are the core's settings; the old names say so.
    monkeypatch.delenv("HUB_FREQUENCY_CAP")
    monkeypatch.setenv("HUB_WORKFLOWS_QUIET_HOURS_SMS", "21:00-09:00")
    result = hub("workflows", "run", "reactivation_90d")
    assert result.exit_code == 1
    assert result.output == ("Error: [workflows] quiet_hours (HUB_WORKFLOWS_QUIET_HOURS) is now set as "
                             "[quiet_hours] in hub.toml (HUB_QUIET_HOURS_<CHANNEL>): it holds every message, "
                             "not only the workflows'\n")


# --- exactly once -------------------------------------------------------------------------

class Died(BaseException):
    """A worker killed at this point (BaseException: nothing in the engine catches it)."""


def test_a_worker_killed_inside_a_step_leaves_nothing_half_done(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = a_morning()
    ids = make_shop(wf, SHOP[:1] + SHOP[3:4] + SHOP[6:8], now=t0)
    from workflows.send import Send

    real_write = Send.write

    def dies_after_writing(self: Send, conn: Any, calls: Any, prepared: Any) -> Any:
        real_write(self, conn, calls, prepared)  # the messages are in the transaction, not yet committed
        raise Died()

    monkeypatch.setattr(Send, "write", dies_after_writing)
    with pytest.raises(Died):
        start(wf, "reactivation_90d", t0)
    assert count(wf, Message) == 0 and count(wf, PromoCode) == len([k for k in ids if not triggers.in_holdout_name(
        "reactivation_90d", ids[k], 10)])
    monkeypatch.setattr(Send, "write", real_write)
    # Nobody may touch the runs while the dead worker's lease lasts; then they are taken over.
    assert ticks.advance_due(wf.engine, wf.settings, now=t0 + dt.timedelta(seconds=30)).get("claimed", 0) == 0
    ticks.advance_due(wf.engine, wf.settings, now=t0 + dt.timedelta(minutes=3))
    treated = [r for r in runs_of(wf, "reactivation_90d") if not r.holdout]
    assert count(wf, Message) == len(treated) == count(wf, PromoCode)
    assert all(r.status == "waiting" and r.step == 3 for r in treated)
    assert len(letters(wf)) == len(treated)


def test_messages_a_dead_worker_never_sent_go_with_the_next_tick(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = a_morning()
    make_shop(wf, SHOP[:1] + SHOP[3:4], now=t0)

    def dies(self: Any) -> None:
        raise Died()

    real_dispatch = runner.Advance.dispatch
    monkeypatch.setattr(runner.Advance, "dispatch", dies)
    with pytest.raises(Died):
        start(wf, "reactivation_90d", t0)
    queued = rows(wf, Message)
    assert queued and all(m.status == "queued" for m in queued)
    monkeypatch.setattr(runner.Advance, "dispatch", real_dispatch)  # a new worker, alive
    report = ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(minutes=5))
    assert report.outbox["sent"] == len(queued)
    assert len(letters(wf)) == len(queued)
    assert ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(minutes=10)).outbox["sent"] == 0


def test_two_workers_never_hold_the_same_run(wf: HubDB) -> None:
    t0 = a_morning()
    make_shop(wf, SHOP[:1] + SHOP[3:4], now=t0)
    with wf.engine.begin() as conn:
        store.install_library(conn)
    with wf.engine.connect() as conn:
        row, workflow = store.current(conn, wf.settings, "reactivation_90d")
    triggers.fire(wf.engine, wf.settings, row, workflow, now=t0, manual=True)
    with wf.engine.connect() as conn:
        due = runner.due_ids(conn, t0)
    lease = dt.timedelta(minutes=2)
    first = runner.claim(wf.engine, due, token="one", now=t0, lease=lease)
    second = runner.claim(wf.engine, due, token="two", now=t0, lease=lease)
    assert [r.id for r in first] == due and second == []
    taken_over = runner.claim(wf.engine, due, token="three", now=t0 + lease + dt.timedelta(seconds=1), lease=lease)
    assert [r.id for r in taken_over] == due


class LoyaltyCRM:
    """A test plugin: a step that calls another system and cannot be repeated safely."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.die = False
        self.refuse: set[int] = set()

    @hookimpl
    def register_workflow_steps(self, register: Any) -> None:
        plugin = self

        class Points(Step):
            name = "loyalty_points"
            repeatable = False

            def __init__(self, options: Any, checking: Any) -> None:
                if not isinstance(options, int) or options <= 0:
                    from workflows.steps import StepError

                    raise StepError("give a number of points, e.g. loyalty_points: 100")
                self.points = options

            def run(self, call: Any) -> Outcome:
                plugin.calls.append(call.run.contact_id)
                if plugin.die:
                    raise Died()
                if call.run.contact_id in plugin.refuse:
                    raise StepFailed("the loyalty system has no card for this contact")
                return Outcome.done({"points": self.points})

        register("loyalty_points", Points)


def test_a_plugin_step_that_died_mid_call_is_parked_never_repeated(wf: HubDB, plugin_manager: Any,
                                                                     tmp_path: Path) -> None:
    # hook:register_workflow_steps
    crm = LoyaltyCRM()
    plugin_manager.register(crm)
    t0 = a_morning()
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru"), Person("gleb", "Глеб", None, "g@example.ru")],
                    now=t0)
    bad = write(tmp_path, "bad.yaml",
                "name: points\ntrigger: {segment: dormant_90d}\nsteps: [{loyalty_points: lots}]\n")
    assert hub("workflows", "add", bad).output == (  # a stranger's step speaks its own words, in its own language
        "Ошибка: bad.yaml: steps[0].loyalty_points: give a number of points, e.g. loyalty_points: 100\n")
    good = write(tmp_path, "good.yaml", "name: points\ntrigger: {segment: dormant_90d}\n"
                                        "steps: [{loyalty_points: 100}, {tag: got_points}]\n")
    assert hub("workflows", "add", good).exit_code == 0
    crm.die = True
    with pytest.raises(Died):
        start(wf, "points", t0)
    crm.die = False
    crm.refuse = {ids["gleb"]}
    ticks.advance_due(wf.engine, wf.settings, now=t0 + dt.timedelta(minutes=5))
    runs = {r.contact_id: r for r in runs_of(wf, "points")}
    died_on = crm.calls[0]
    assert runs[died_on].status == "parked" and "may or may not have happened" in runs[died_on].error
    assert crm.calls.count(died_on) == 1  # never called again by itself
    other = next(c for c in ids.values() if c != died_on)
    if other == ids["gleb"]:
        assert runs[other].status == "parked" and runs[other].error == "the loyalty system has no card for this contact"
    else:
        assert runs[other].status == "done"
    parked = hub_json("workflows", "parked", "points")
    assert {p["id"] for p in parked} == {r.id for r in runs.values() if r.status == "parked"}
    assert hub("workflows", "retry", str(runs[died_on].id), "--skip").exit_code == 0
    crm.refuse = set()
    assert hub("workflows", "retry", "--all", "points").exit_code == 0
    ticks.advance_due(wf.engine, wf.settings, now=utcnow())  # `retry` puts them back as of now
    assert {r.status for r in runs_of(wf, "points")} == {"done"}
    assert crm.calls.count(died_on) == 1  # skipped by a person, not repeated
    tagged = [c.tags for c in rows(wf, Contact)]
    assert all("got_points" in t for t in tagged)


# --- triggers -----------------------------------------------------------------------------

def test_an_enabled_workflow_starts_on_its_own_at_the_tick(wf: HubDB) -> None:
    t0 = a_morning()
    make_shop(wf, SHOP[:1] + SHOP[3:4], now=t0)
    assert ticks.tick(wf.engine, wf.settings, now=t0).started == {}
    enable(wf, "reactivation_90d", t0)
    report = ticks.tick(wf.engine, wf.settings, now=t0)
    assert report.started["reactivation_90d"]["started"] == 2
    again = ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(minutes=1))
    assert again.started["reactivation_90d"] == {"started": 0, "holdout": 0, "skipped": 2}
    ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(days=8))  # the runs finish
    # reentry: after 180 days a contact still dormant may start again, once
    late = t0 + dt.timedelta(days=181)
    assert ticks.tick(wf.engine, wf.settings, now=late).started["reactivation_90d"]["started"] == 2
    assert sorted(r.cycle for r in runs_of(wf, "reactivation_90d")) == [1, 1, 2, 2]


def test_entering_a_segment_starts_runs_in_the_refresh_itself(wf: HubDB) -> None:
    make_shop(wf, SHOP[:1], now=utcnow())
    enable(wf, "reactivation_90d")
    assert hub("segments", "refresh", "dormant_90d").exit_code == 0
    (run,) = runs_of(wf, "reactivation_90d")
    assert run.trigger == "segment:dormant_90d"


def test_events_start_post_purchase_and_welcome_runs(wf: HubDB) -> None:
    t0 = a_morning(20)
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru", bought_days_ago=300)], now=t0)
    enable(wf, "post_purchase_feedback", t0)
    enable(wf, "welcome", t0)
    add_order(wf, "anna", closed_at=t0 + dt.timedelta(hours=1))
    make_shop(wf, [Person("new", "Нина", None, "nina@example.ru", bought_days_ago=None, consent=()),
                   Person("subscribed", "Саша", None, "sasha@example.ru", bought_days_ago=None, consent=("email",))],
              now=t0)
    with wf.engine.begin() as conn:  # contacts created after the workflows were switched on
        conn.execute(update(Contact).where(Contact.first_name.in_(["Нина", "Саша"]))
                     .values(created_at=t0 + dt.timedelta(minutes=30)))
    ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(hours=2))
    (feedback,) = runs_of(wf, "post_purchase_feedback")
    assert feedback.contact_id == ids["anna"] and feedback.trigger_key.startswith("order.won:")
    assert feedback.status == "waiting"
    welcome = {r.contact_id: r for r in runs_of(wf, "welcome")}
    assert len(welcome) == 2 and ids["anna"] not in welcome
    templates_sent = {(m.contact_id, m.template) for m in rows(wf, Message)}
    new_id = next(c.id for c in rows(wf, Contact) if c.first_name == "Нина")
    sub_id = next(c.id for c in rows(wf, Contact) if c.first_name == "Саша")
    assert (new_id, "double_opt_in_email") in templates_sent and (sub_id, "welcome_email") in templates_sent
    assert all(t != "welcome_email" for c, t in templates_sent if c == new_id)
    # the same order seen again by the next tick starts nothing
    ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(hours=3))
    assert len(runs_of(wf, "post_purchase_feedback")) == 1
    # three days later at noon (Moscow) the survey goes, with eleven signed links
    ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(days=3, hours=6))
    (survey,) = [m for m in rows(wf, Message) if m.template == "nps_survey_email"]
    assert survey.purpose == "surveys" and survey.body_text.count("/nps/") == 11


def test_an_event_workflow_must_be_on_to_run(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    result = hub("workflows", "run", "welcome")
    assert result.exit_code == 1
    assert result.output == ("Ошибка: welcome запускается по событию (contact.created); включите сценарий, чтобы "
                             "отслеживать события: hub workflows enable welcome\n")
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    assert hub("workflows", "run", "welcome").output == (
        "Error: welcome starts on an event (contact.created); switch it on to start watching for them: "
        "hub workflows enable welcome\n")


# --- forecasting and measuring -------------------------------------------------------------

def test_a_dry_run_forecasts_and_changes_nothing(wf: HubDB) -> None:
    ids = make_shop(wf, SHOP, now=utcnow())
    tables = (WorkflowRow, WorkflowRun, PromoCode, Message, StepResult)
    before = [count(wf, t) for t in tables]
    report = hub_json("workflows", "run", "reactivation_90d", "--dry-run", "--days", "14", "--sample", "3")
    assert [count(wf, t) for t in tables] == before
    dormant = {"anna", "gleb", "dina", "zoya", "ivan"}
    holdout = {k for k in dormant if triggers.in_holdout_name("reactivation_90d", ids[k], 10)}
    treated = dormant - holdout
    with_sms = {k for k in treated if "sms" in next(p.consent for p in SHOP if p.key == k)
                and next(p.phone for p in SHOP if p.key == k)}
    assert report["would_start"] == len(treated) and report["holdout"] == len(holdout)
    assert report["messages"] == {"email": len(treated), **({"sms": len(with_sms)} if with_sms else {})}
    steps = {s["step"]: s for s in report["steps"]}
    assert steps[4]["else"] == len(treated)
    assert steps[6].get("skipped_no_address", 0) + steps[6].get("skipped_no_consent", 0) == len(treated - with_sms)
    assert len(report["contacts"]) == 3 and report["contacts"][0]["actions"][0]["what"] == "promo_code 15% 14d"
    text = CliRunner().invoke(cli, ["workflows", "run", "reactivation_90d", "--dry-run"], env={"COLUMNS": "250"})
    assert text.exit_code == 0, text.output
    assert "ничего не меняется" in text.output
    assert "Персональный промокод (promo_code)" in text.output  # the day table's column: the kind's title first
    assert "Промокод 15\u00a0% на 14 дней (promo_code)" in text.output and "promo_code 15%" not in text.output


def test_status_counts_conversions_revenue_and_the_uplift_over_the_holdout(wf: HubDB, tmp_path: Path) -> None:
    t0 = a_morning(40)
    people = [Person(f"p{i}", f"Имя{i}", None, f"p{i}@example.ru") for i in range(40)]
    ids = make_shop(wf, people, now=t0)
    path = write(tmp_path, "half.yaml", "name: half\ntrigger: {segment: dormant_90d}\nholdout: 50%\n"
                                        "goal: {event: order.won, within: 10d}\nsteps: [{wait: 1d}]\n")
    assert hub("workflows", "add", path).exit_code == 0
    start(wf, "half", t0)
    held = [k for k in ids if triggers.in_holdout_name("half", ids[k], 50)]
    treated = [k for k in ids if k not in held]
    assert held and treated
    buyers_t, buyers_h = treated[: len(treated) // 2], held[:1]
    for k in buyers_t + buyers_h:
        add_order(wf, k, closed_at=t0 + dt.timedelta(days=3), amount="1000")
    add_order(wf, treated[-1], closed_at=t0 + dt.timedelta(days=20), order_id="too-late")  # outside the window
    status = hub_json("workflows", "status", "half")
    t, h = status["conversion"]["treated"], status["conversion"]["holdout"]
    assert (t["runs"], t["converted"], h["runs"], h["converted"]) == (len(treated), len(buyers_t), len(held), 1)
    assert status["converted"] == len(buyers_t) + 1
    assert Decimal(status["revenue"]) == Decimal(1000) * (len(buyers_t) + 1)
    expected = round((len(buyers_t) / len(treated) - 1 / len(held)) * 100, 2)
    assert status["uplift"]["rate_points"] == pytest.approx(expected, abs=0.02)
    assert status["entered"] == 40 and status["in_holdout"] == len(held)
    shown = CliRunner().invoke(cli, ["workflows", "status", "half"], env={"COLUMNS": "250"}).output
    assert "в течение 10 дней" in shown and "10d" not in shown
    assert (f"достигли цели после кампании: {len(buyers_t)} из {len(treated)} (" in shown
            and f"в контрольной группе, которая ничего не получала: 1 из {len(held)} (" in shown)
    assert "Подождать 1 день (wait)" in shown
    english = CliRunner().invoke(cli, ["workflows", "status", "half"], env={"COLUMNS": "250", "HUB_LANGUAGE": "en"})
    assert f"reached the goal after the campaign: {len(buyers_t)} of {len(treated)} (" in english.output
    assert "within 10 days" in english.output


def test_a_status_without_figures_yet_says_so_in_plain_russian(wf: HubDB, tmp_path: Path) -> None:
    path = write(tmp_path, "three.yaml", "name: three\ntrigger: {segment: dormant_90d}\nholdout: 10%\n"
                                         "goal: {event: order.won, within: 21d}\nsteps: [{wait: 1d}]\n")
    assert hub("workflows", "add", path).exit_code == 0
    shown = CliRunner().invoke(cli, ["workflows", "status", "three"], env={"COLUMNS": "250"}).output
    assert "в течение 21 дня" in shown and "21 день" not in shown, shown
    assert "прирост пока не посчитать" in shown and "п. п." not in shown, shown
    assert "в контрольной группе 0\n" in shown and "; \n" not in shown, shown
    english = CliRunner().invoke(cli, ["workflows", "status", "three"], env={"COLUMNS": "250", "HUB_LANGUAGE": "en"})
    assert "within 21 days" in english.output and "the uplift cannot be counted yet" in english.output


def test_a_length_after_within_takes_the_genitive() -> None:
    from hub import formats

    days = {n: formats.duration(dt.timedelta(days=n), "ru", within=True) for n in (1, 2, 5, 11, 21, 22)}
    assert days == {1: "1 дня", 2: "2 дней", 5: "5 дней", 11: "11 дней", 21: "21 дня", 22: "22 дней"}
    assert formats.duration(dt.timedelta(hours=3), "ru", within=True) == "3 часов"
    assert formats.duration(dt.timedelta(days=21), "ru") == "21 день"  # «на 21 день» stays as it was
    assert formats.duration(dt.timedelta(days=21), "en", within=True) == "21 days"


def test_merging_two_contacts_keeps_both_runs(wf: HubDB) -> None:
    t0 = a_morning()
    ids = make_shop(wf, [Person("a", "Анна", None, "a1@example.ru"), Person("b", "Анна", None, "a2@example.ru")],
                    now=t0)
    start(wf, "reactivation_90d", t0)
    assert {m.contact_id for m in rows(wf, Message)} == {ids["a"], ids["b"]}
    with wf.engine.begin() as conn:
        identity.merge_contacts(conn, ids["a"], ids["b"], reason={"rule": "merged by hand"}, settings=wf.settings,
                                actor="test")
    runs = runs_of(wf, "reactivation_90d")
    assert {r.contact_id for r in runs} == {ids["a"]} and sorted(r.cycle for r in runs) == [1, 2]
    assert {c.contact_id for c in rows(wf, PromoCode)} == {ids["a"]}
    assert {m.contact_id for m in rows(wf, Message)} == {ids["a"]}  # the outbox follows too (the core's hook)
    assert count(wf, StepResult) == 2 * count(wf, StepResult, StepResult.run_id == runs[0].id)  # none lost


# --- the scheduler's lock ---------------------------------------------------------------------

def test_only_one_scheduler_ticks_at_a_time(wf: HubDB) -> None:
    ttl = dt.timedelta(seconds=60)
    first = schedule.DatabaseLock(wf.engine, ttl, holder="first")
    second = schedule.DatabaseLock(wf.engine, ttl, holder="second")
    assert first.acquire() and not second.acquire()
    assert first.renew() and second.held_by() == "first"
    tick = hub_json("workflows", "tick")
    assert tick == {"ticked": False, "reason": "another scheduler is ticking (first); nothing done"}
    first.release()
    assert second.acquire() and not first.acquire()
    second.release()
    assert hub_json("workflows", "tick")["ticked"] is True
    with wf.engine.begin() as conn:  # a holder that died: its lock expires
        conn.execute(update(schedule.state_t).values(holder="dead", expires_at=utcnow() - ttl))
    assert first.acquire()


def test_contact_card_runs_for_the_admin(wf: HubDB) -> None:
    t0 = a_morning()
    ids = make_shop(wf, SHOP[:1], now=t0)
    start(wf, "reactivation_90d", t0)
    with wf.engine.connect() as conn:
        (run,) = runner.runs_for_contact(conn, wf.settings, ids["anna"])
    assert run["workflow"] == "reactivation_90d" and run["status"] in ("waiting", "holdout")
    assert run["started_at"] == t0


def test_forecast_of_a_shipped_workflow_before_anything_is_installed(wf: HubDB) -> None:
    make_shop(wf, SHOP[:2], now=utcnow())
    report = forecast.forecast(wf.engine, wf.settings, "winback_dead", days=30)
    assert count(wf, WorkflowRow) == 0
    assert report["workflow"] == "winback_dead" and report["would_start"] + report["holdout"] == 0


# --- webhooks, and erasure ------------------------------------------------------------------

class Receiver:
    """A real HTTP server on loopback that answers webhooks from a script and keeps what it got."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.got: list[tuple[str, dict[str, Any]]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers["Content-Length"])
                receiver.got.append((self.headers["Idempotency-Key"], json.loads(self.rfile.read(size))))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/hub?token=SECRET-TOKEN"


def test_webhooks_are_retried_with_the_same_key_and_parked_when_refused(wf: HubDB, tmp_path: Path) -> None:
    receiver = Receiver()
    t0 = a_morning()
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru"), Person("gleb", "Глеб", None, "g@example.ru")],
                    now=t0)
    path = write(tmp_path, "hook.yaml", f"name: hooked\ntrigger: {{segment: dormant_90d}}\nsteps:\n"
                                        f"  - promo_code: {{discount: 5%, valid_for: 7d}}\n"
                                        f"  - webhook: {{url: '{receiver.url}'}}\n")
    assert hub("workflows", "add", path).exit_code == 0
    receiver.answers = [503, 400]  # the first run's call: try later; the second's: refused
    start(wf, "hooked", t0)
    runs = {r.contact_id: r for r in runs_of(wf, "hooked")}
    first, second = (runs[ids["anna"]], runs[ids["gleb"]])
    assert first.status == "waiting" and first.attempts == 1 and first.next_at == t0 + dt.timedelta(minutes=1)
    assert second.status == "parked" and second.error == "127.0.0.1 refused the webhook: HTTP 400"
    assert "SECRET-TOKEN" not in (second.error or "")  # the address's token is never repeated
    ticks.advance_due(wf.engine, wf.settings, now=t0 + dt.timedelta(minutes=2))
    assert runs_of(wf, "hooked")[0].status == "done"
    keys = [k for k, _ in receiver.got]
    assert keys[0] == keys[2] == f"workflow:{first.id}:1"  # the retry carried the same key
    payload = receiver.got[2][1]
    assert payload["contact"]["email"] == "anna@example.ru"
    assert payload["promo"]["code"] == rows(wf, PromoCode, PromoCode.run_id == first.id)[0].code
    receiver.server.shutdown()


def test_an_erased_person_gets_nothing_more(wf: HubDB, plugin_manager: Any) -> None:
    # hook:contact_erased (the workflows plugin's part of an erasure)
    t0 = a_morning()
    ids = make_shop(wf, SHOP[:1], now=t0)
    start(wf, "reactivation_90d", t0)
    from workflows import nps

    nps.record(wf.engine, ids["anna"], None, 9, comment="Всё понравилось")
    with wf.engine.begin() as conn:
        plugin_manager.hook.contact_erased(conn=conn, settings=wf.settings, contact_id=ids["anna"])
    (run,) = runs_of(wf, "reactivation_90d")
    assert run.status in ("cancelled", "holdout")
    from workflows.models import Interaction

    assert count(wf, Interaction) == 0
    assert ticks.advance_due(wf.engine, wf.settings, now=t0 + dt.timedelta(days=8)).get("claimed", 0) == 0


def test_a_scheduled_workflow_fires_at_its_time_in_hub_timezone(wf: HubDB) -> None:
    early = a_morning(10) - dt.timedelta(hours=4)  # 03:00 UTC, 06:00 in Moscow
    ids = make_shop(wf, [Person("anna", "Анна", "+74951110001", "anna@example.ru"),
                         Person("gleb", "Глеб", "+74951110004", "gleb@example.ru")], now=early)
    soon = (early + dt.timedelta(days=3)).date()
    birthday = soon.replace(year=1990) if (soon.month, soon.day) != (2, 29) else dt.date(1990, 3, 1)
    with wf.engine.begin() as conn:
        conn.execute(update(Contact).where(Contact.id == ids["anna"]).values(birthday=birthday))
    enable(wf, "birthday", early)
    assert ticks.tick(wf.engine, wf.settings, now=early + dt.timedelta(hours=1)).started["birthday"] == {
        "started": 0, "holdout": 0, "skipped": 0}  # 07:00 in Moscow: not yet
    report = ticks.tick(wf.engine, wf.settings, now=early + dt.timedelta(hours=4, minutes=1))  # 10:01
    assert report.started["birthday"]["started"] == 1
    (run,) = runs_of(wf, "birthday")
    assert run.contact_id == ids["anna"] and run.status == "done"
    sent = {m.template for m in rows(wf, Message, Message.contact_id == ids["anna"])}
    assert sent == {"birthday_email", "birthday_sms"}
    code = rows(wf, PromoCode, PromoCode.run_id == run.id)[0].code
    assert code.startswith("BDAY-") and all(code in m.body_text for m in rows(wf, Message))
    later = ticks.tick(wf.engine, wf.settings, now=early + dt.timedelta(hours=5))  # the same day: fired already
    assert later.started["birthday"] == {"started": 0, "holdout": 0, "skipped": 0}
