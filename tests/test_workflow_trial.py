"""Test on a contact: what reactivation_90d would do to one person and why, with nothing written."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub.db import utcnow
from hub.hookspecs import hookimpl
from hub.models import Message
from tests.conftest import HubDB
from tests.support.admin import AdminEnv, admin_env  # noqa: F401
from tests.support.cli import cli
from tests.support.shop import SHOP, Person, add_order, make_shop, use_workflows
from workflows import trial, triggers
from workflows.models import PromoCode, WorkflowRun

pytestmark = pytest.mark.both_databases


class ShopCrm:
    """A CRM that accepts writes (it is never asked: a trace writes nothing)."""

    def __init__(self, settings: Any) -> None:
        pass

    def set_field(self, external_id: str, name: str, value: Any) -> str | None:
        raise AssertionError("a trace must not write to a CRM")

    def add_comment(self, external_id: str, text: str) -> str | None:
        raise AssertionError("a trace must not write to a CRM")

    def add_task(self, external_id: str, title: str, *, due_at: dt.datetime, description: str = "") -> str | None:
        raise AssertionError("a trace must not write to a CRM")


class ShopPlugin:
    @hookimpl
    def register_sources(self, register: Any) -> None:
        register("shop", ShopCrm)


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    db = use_workflows(hub_db, plugin_manager, monkeypatch)
    plugin_manager.register(ShopPlugin(), name="shop-crm")
    return db


def counts(db: HubDB) -> list[int]:
    with db.engine.connect() as conn:
        return [conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (WorkflowRun.__table__, PromoCode.__table__, Message.__table__)]


def treated(ids: dict[str, int], *keys: str) -> list[str]:
    return [k for k in keys if not triggers.in_holdout_name("reactivation_90d", ids[k], 10)]


def test_three_people_with_different_histories(wf: HubDB) -> None:
    now = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)  # 11:00 in Moscow
    people = [Person(f"a{i}", "Анна", f"+7495111{i:04d}", f"a{i}@example.ru") for i in range(6)] + \
        [Person(f"b{i}", "Борис", f"+7495222{i:04d}", f"b{i}@example.ru", consent=("email",)) for i in range(6)]
    ids = make_shop(wf, people, now=now)
    before = counts(wf)
    anna = treated(ids, *[f"a{i}" for i in range(6)])[0]
    report = trial.trial(wf.engine, wf.settings, "reactivation_90d", ids[anna], now=now)
    assert report["entry"]["enters"] and not report["entry"]["holdout"]
    steps = {s["step"]: s for s in report["steps"] if s.get("step")}
    code = steps[1]["code"]
    assert code.startswith("BACK-") and "15" in steps[1]["text"]
    assert steps[2]["outcome"] == "sent" and steps[2]["address"] == f"{anna}@example.ru"
    assert "Анна" in steps[2]["subject"] and code in steps[2]["body"] and "Анна" in steps[2]["body"]
    assert steps[3]["outcome"] == "waited"
    assert steps[4]["outcome"] == "branch" and steps[4]["branch"] == "else"
    assert steps[6]["outcome"] == "sent" and code in steps[6]["body"]
    assert steps[7]["outcome"] == "done" and "Позвонить клиенту Анна" in steps[7]["title"]
    assert steps[7]["crm"] == [{"source": "shop", "title": "shop", "external_id": anna}]  # no admin page: its name
    assert 5 not in steps  # the exit of the "yes" branch is not walked
    boris = treated(ids, *[f"b{i}" for i in range(6)])[0]
    no_sms = {s["step"]: s for s in trial.trial(wf.engine, wf.settings, "reactivation_90d", ids[boris],
                                                 now=now)["steps"] if s.get("step")}
    assert no_sms[2]["outcome"] == "sent"
    assert no_sms[6]["outcome"] == "stopped" and no_sms[6]["reason"] == "no_consent"
    assert "SMS" in no_sms[6]["text"] and "согласия" in no_sms[6]["text"]
    # Someone who buys after entering: the rule is asked of today's data at the simulated moment.
    buyer = treated(ids, *[f"a{i}" for i in range(6)])[1]
    add_order(wf, buyer, closed_at=now + dt.timedelta(hours=1))
    bought = trial.trial(wf.engine, wf.settings, "reactivation_90d", ids[buyer], now=now)
    steps = {s["step"]: s for s in bought["steps"] if s.get("step")}
    assert steps[4]["branch"] == "then" and "ветка «да»" in steps[4]["text"]
    assert steps[5]["outcome"] == "exit" and 6 not in steps
    assert counts(wf) == before  # nothing written: no run, no promo code, no message


def test_holdout_quiet_hours_and_who_would_not_enter(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    people = [Person(f"p{i}", "Вера", f"+7495333{i:04d}", f"p{i}@example.ru") for i in range(30)]
    now = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)
    ids = make_shop(wf, people, now=now)
    held = next(k for k in ids if triggers.in_holdout_name("reactivation_90d", ids[k], 10))
    report = trial.trial(wf.engine, wf.settings, "reactivation_90d", ids[held], now=now)
    assert report["entry"]["holdout"] and report["steps"] == []
    assert "контрольной группе" in report["entry"]["text"]
    # SMS quiet hours 21:00-09:00: an SMS due at 22:00 Moscow time waits for the morning.
    monkeypatch.setenv("HUB_QUIET_HOURS_SMS", "21:00-09:00")
    from hub.config import load_settings

    settings = load_settings()
    evening = now.replace(hour=19)  # 22:00 in Moscow; seven days on it is the evening again
    person = treated(ids, *ids)[0]
    steps = {s["step"]: s for s in trial.trial(wf.engine, settings, "reactivation_90d", ids[person],
                                               now=evening)["steps"] if s.get("step")}
    assert steps[6]["outcome"] == "sent" and steps[6]["moved"]
    assert dt.datetime.fromisoformat(steps[6]["at"]) == (evening + dt.timedelta(days=8)).replace(hour=6)  # 09:00
    assert "тихие часы" in steps[6]["text"]
    # Not in the segment (bought lately): traced anyway, the reason first.
    add_order(wf, person, closed_at=now - dt.timedelta(days=2))
    fresh = trial.trial(wf.engine, wf.settings, "reactivation_90d", ids[person], now=now)
    assert not fresh["entry"]["enters"] and fresh["entry"]["status"] == "not_member"
    assert "сейчас не входит" in fresh["entry"]["text"] and fresh["steps"]


def test_erased_and_merged_ids(wf: HubDB) -> None:
    now = utcnow()
    ids = make_shop(wf, SHOP[:4], now=now)
    from hub import dedupe
    from plugins.gdpr import erasure

    dedupe.merge_by_hand(wf.engine, ids["anna"], ids["gleb"], actor="cli", settings=wf.settings)
    report = trial.trial(wf.engine, wf.settings, "reactivation_90d", ids["gleb"], now=now)
    assert report["contact_id"] == ids["anna"] and report["asked"] == ids["gleb"]
    assert f"#{ids['gleb']}" in report["merged"] and f"объединён с #{ids['anna']}" in report["merged"]
    erasure.erase(wf.engine, wf.settings, ids["boris"], actor="test")
    with pytest.raises(trial.TrialError, match="удалён по запросу"):
        trial.trial(wf.engine, wf.settings, "reactivation_90d", ids["boris"], now=now)
    with pytest.raises(trial.TrialError, match="нет контакта #99999999"):
        trial.trial(wf.engine, wf.settings, "reactivation_90d", 99999999, now=now)
    for forged in ("abc", "-5", "1e9", "<script>", "9" * 40):
        with pytest.raises(trial.TrialError):
            trial.trial(wf.engine, wf.settings, "reactivation_90d", forged, now=now)


def test_the_command_line_prints_the_trace_and_json(wf: HubDB) -> None:
    ids = make_shop(wf, SHOP, now=utcnow())
    person = treated(ids, "anna", "gleb", "zoya", "ivan")[0]
    result = CliRunner().invoke(cli, ["workflows", "try", "reactivation_90d", "--contact", str(ids[person]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["contact_id"] == ids[person] and report["steps"][0]["kind"] == "promo_code"
    text = CliRunner().invoke(cli, ["workflows", "try", "reactivation_90d", "--contact", str(ids[person])],
                              env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "Промокод 15" in text.output and "Отправить письмо: «Возвращайтесь (письмо)»" in text.output
    bad = CliRunner().invoke(cli, ["workflows", "try", "reactivation_90d", "--contact", "abc"])
    assert bad.exit_code == 1 and "не номер контакта" in bad.output
    unknown = CliRunner().invoke(cli, ["workflows", "try", "reactivaton_90d", "--contact", str(ids[person])])
    assert unknown.exit_code == 1 and "reactivation_90d" in unknown.output
    with wf.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(WorkflowRun.__table__)).scalar_one() == 0


def test_the_try_page_for_every_role_with_forged_and_hostile_input(admin_env: AdminEnv) -> None:  # noqa: F811
    from tests.support.admin import client_as, plain, post, text

    viewer = client_as(admin_env, "viewer")  # a trace writes nothing: every role may
    found = viewer.get("/workflows/reactivation_90d/try", query_string={"q": "Хакер"})
    assert found.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text(found) and "<script>alert(1)" not in text(found)
    anna = admin_env.ids["anna"]
    page = viewer.get("/workflows/reactivation_90d/try", query_string={"contact": anna})
    assert page.status_code == 200 and 'data-outcome="sent"' in text(page)
    assert "Промокод 15" in plain(page) and "задача со сроком" in plain(page)
    assert 'translate="no">Позвонить клиенту Анна: промокод BACK-' in text(page)
    assert "в Битрикс24" in plain(page) and "bitrix24 (101)" not in plain(page)  # which CRM would get the task
    frame = viewer.get("/workflows/reactivation_90d/try/letter", query_string={"contact": anna, "step": 2})
    assert frame.status_code == 200 and "sandbox" in frame.headers["Content-Security-Policy"]
    assert "Анна" in text(frame) and "BACK-" in text(frame)
    for forged in ("abc", "1 OR 1=1", "<script>", "9" * 40):
        bad = viewer.get("/workflows/reactivation_90d/try", query_string={"contact": forged})
        assert bad.status_code == 200 and "Traceback" not in text(bad)
        assert 'id="try-error"' in text(bad)
    assert viewer.get("/workflows/reactivation_90d/try", query_string={"q": "x" * 5000}).status_code == 200
    assert viewer.get("/workflows/no_such/try").status_code == 404
    assert viewer.get("/workflows/reactivation_90d/try/letter", query_string={"contact": anna,
                                                                              "step": "x"}).status_code == 404
    from hub import dedupe

    dedupe.merge_by_hand(admin_env.engine, admin_env.ids["petrov_1"], admin_env.ids["petrov_2"], actor="cli",
                         settings=admin_env.settings)
    merged = viewer.get("/workflows/reactivation_90d/try", query_string={"contact": admin_env.ids["petrov_2"]})
    assert merged.status_code == 200 and f"объединён с #{admin_env.ids['petrov_1']}" in plain(merged)
    marketer = client_as(admin_env, "marketer")
    assert "Проверить на контакте" in text(marketer.get("/workflows/reactivation_90d"))
    post(marketer, "/language", {"language": "en"})
    english = plain(marketer.get("/workflows/reactivation_90d/try", query_string={"contact": anna}))
    assert "Test on a contact" in english and "would go to anna@example.ru" in english
