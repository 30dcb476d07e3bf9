"""The shipped stuck_deal_followup workflow: a deal 14 days in one stage → one call task for its manager.

The trigger is the event deal.stuck (`after: 14d`), one run per deal and
period; the CRM is a fake write-back source that keeps the tasks it is
given. A deal 15 days in its stage makes one task naming the deal and the
stage, for the deal's own manager; 10 days makes none; running again makes
no second task until another 14 days have passed; a deal moved on to the
next stage makes none until it is stuck there too; a customer with two
stuck deals gets a task for each.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import yaml
from sqlalchemy import insert, select, update

from hub.db import utcnow
from hub.hookspecs import hookimpl
from hub.models import Order
from hub.segments import store as segment_store
from tests.conftest import HubDB
from tests.support.shop import Person, enable, make_shop, runs_of, start, use_workflows
from workflows import store
from workflows.models import StepResult

pytestmark = pytest.mark.both_databases

NAME = "stuck_deal_followup"


class TaskCrm:
    """A CRM that keeps every task it is asked to create."""

    tasks: list[dict[str, Any]] = []

    def __init__(self, settings: Any) -> None:
        pass

    def set_field(self, external_id: str, name: str, value: Any) -> str | None:
        return None

    def add_comment(self, external_id: str, text: str) -> str | None:
        return None

    def add_task(self, external_id: str, title: str, *, due_at: dt.datetime, description: str = "",
                 **kwargs: Any) -> str | None:
        TaskCrm.tasks.append({"external_id": external_id, "title": title, "description": description,
                              "due_at": due_at, **kwargs})
        return f"task-{len(TaskCrm.tasks)}"


class CrmPlugin:
    @hookimpl
    def register_sources(self, register: Any) -> None:
        register("shop", TaskCrm)


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    db = use_workflows(hub_db, plugin_manager, monkeypatch)
    plugin_manager.register(CrmPlugin(), name="stuck-deal-crm")
    TaskCrm.tasks = []
    return db


def open_deal(db: HubDB, contact_id: int, key: str, *, days: int, now: dt.datetime,
              stage: str = "Согласование КП") -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(Order).values(
            source="shop", external_id=f"deal-{key}", contact_external_id=key, contact_id=contact_id,
            amount=Decimal("90000"), currency="RUB", status="open", title=f"Поставка для {key}", pipeline="Опт",
            stage=stage, stage_entered_at=now - dt.timedelta(days=days, hours=1), responsible_id="7",
            attributes={}))


def crm_tasks(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(StepResult).where(StepResult.kind == "crm_task")))


def test_a_deal_stuck_for_15_days_makes_one_task_and_10_days_none(wf: HubDB) -> None:
    now = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)
    ids = make_shop(wf, [Person("anna", "Анна", "+74951110001", "anna@example.ru"),
                         Person("boris", "Борис", "+74951110002", "boris@example.ru")], now=now)
    open_deal(wf, ids["anna"], "anna", days=15, now=now)
    open_deal(wf, ids["boris"], "boris", days=10, now=now)
    enable(wf, NAME, now=now - dt.timedelta(days=1))
    start(wf, NAME, now)
    assert [r.contact_id for r in runs_of(wf, NAME)] == [ids["anna"]]
    (task,) = TaskCrm.tasks
    assert task["external_id"] == "anna"
    assert task["title"] == "Сделка «Поставка для anna» 15 дней в этапе «Согласование КП»: позвоните клиенту"
    assert "Тестова Анна" in task["description"] and "«Опт»" in task["description"]
    assert task["due_at"] == now + dt.timedelta(days=1)
    assert task["responsible_id"] == "7"  # the deal's manager, as the sync read it
    (result,) = crm_tasks(wf)
    assert result.status == "done"
    # The scheduler's next look, an hour later: the same stuck deal makes no second task.
    start(wf, NAME, now + dt.timedelta(hours=1))
    start(wf, NAME, now + dt.timedelta(days=2))
    assert len(TaskCrm.tasks) == 1 and len(runs_of(wf, NAME)) == 1


def test_a_deal_moved_on_makes_no_task_until_it_is_stuck_again(wf: HubDB) -> None:
    now = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)
    ids = make_shop(wf, [Person("vera", "Вера", "+74951110003", "vera@example.ru")], now=now)
    open_deal(wf, ids["vera"], "vera", days=20, now=now)
    enable(wf, NAME, now=now - dt.timedelta(days=1))
    start(wf, NAME, now)
    assert len(TaskCrm.tasks) == 1
    # The manager called; the deal moved to the next stage today.
    with wf.engine.begin() as conn:
        conn.execute(update(Order).where(Order.external_id == "deal-vera").values(
            stage="Договор", stage_entered_at=now + dt.timedelta(days=1)))
    start(wf, NAME, now + dt.timedelta(days=3))
    assert len(TaskCrm.tasks) == 1
    # Stuck in the new stage for 15 days: a new task, naming the new stage.
    later = now + dt.timedelta(days=16, hours=2)
    start(wf, NAME, later)
    assert len(TaskCrm.tasks) == 2
    assert "15 дней в этапе «Договор»" in TaskCrm.tasks[1]["title"]


def test_a_won_deal_or_a_contact_in_no_crm_makes_no_task(wf: HubDB) -> None:
    now = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)
    ids = make_shop(wf, [Person("gleb", "Глеб", "+74951110004", "gleb@example.ru")], now=now)
    open_deal(wf, ids["gleb"], "gleb", days=30, now=now)
    with wf.engine.begin() as conn:
        conn.execute(update(Order).where(Order.external_id == "deal-gleb").values(status="won", closed_at=now))
    enable(wf, NAME, now=now - dt.timedelta(days=1))
    start(wf, NAME, now)
    assert TaskCrm.tasks == [] and runs_of(wf, NAME) == []


def test_the_shipped_workflow_reads_in_russian_and_checks(wf: HubDB) -> None:
    from hub.api import translated_title
    from hub.i18n import use_language

    document = store.library_documents()[NAME]
    assert document["trigger"] == {"event": "deal.stuck", "after": "14d"} and document["reentry"] == "1d"
    with use_language("ru"):
        assert translated_title(document["title"]) == "Звонок по сделке, которая застряла в одном этапе"
        assert "14 дней" in translated_title(document["description"])
    with wf.engine.begin() as conn:
        store.install_library(conn)
    with wf.engine.connect() as conn:
        row, workflow = store.current(conn, wf.settings, NAME)
    assert workflow.trigger.describe() == "event deal.stuck 14d in one stage"
    assert workflow.reentry == dt.timedelta(days=1)
    with use_language("ru"):
        assert workflow.trigger.text() == "открытая сделка 14 дней в одном этапе"
    shipped = segment_store.builtin_documents()["deal_stuck_14d"]
    assert shipped["rule"] == {"field": "deals.open_stuck_days", "op": "gte", "value": 14}


def test_two_stuck_deals_of_one_customer_make_a_task_each_for_their_own_managers(wf: HubDB) -> None:
    now = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)
    ids = make_shop(wf, [Person("dina", "Дина", "+74951110005", "dina@example.ru")], now=now)
    open_deal(wf, ids["dina"], "dina", days=20, now=now)
    with wf.engine.begin() as conn:  # a second deal of hers, in another stage, with another manager
        conn.execute(insert(Order).values(
            source="shop", external_id="deal-dina-2", contact_external_id="dina", contact_id=ids["dina"],
            amount=Decimal("5000"), currency="RUB", status="open", title="Сервис", pipeline="Сервис",
            stage="Счёт выставлен", stage_entered_at=now - dt.timedelta(days=16), responsible_id="9",
            attributes={}))
    enable(wf, NAME, now=now - dt.timedelta(days=1))
    start(wf, NAME, now)
    assert [t["title"] for t in TaskCrm.tasks] == [
        "Сделка «Поставка для dina» 20 дней в этапе «Согласование КП»: позвоните клиенту"]
    start(wf, NAME, now + dt.timedelta(hours=3))  # reentry: a day between one customer's runs
    assert len(TaskCrm.tasks) == 1
    start(wf, NAME, now + dt.timedelta(days=1, hours=1))
    assert [(t["title"], t["responsible_id"]) for t in TaskCrm.tasks][1:] == [
        ("Сделка «Сервис» 17 дней в этапе «Счёт выставлен»: позвоните клиенту", "9")]
    start(wf, NAME, now + dt.timedelta(days=5))
    assert len(TaskCrm.tasks) == 2

    # Still stuck 14 days later (34 and 30 days): each deal's manager is reminded once more.
    start(wf, NAME, now + dt.timedelta(days=14, hours=2))
    start(wf, NAME, now + dt.timedelta(days=15, hours=3))
    start(wf, NAME, now + dt.timedelta(days=16, hours=4))
    assert [t["title"].split(" дней")[0] for t in TaskCrm.tasks[2:]] == [
        "Сделка «Поставка для dina» 34", "Сделка «Сервис» 31"]
    assert len(runs_of(wf, NAME)) == 4


def test_a_deal_whose_contact_is_gone_from_its_crm_gets_the_task_in_the_crm_that_holds_them(wf: HubDB) -> None:
    now = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)
    ids = make_shop(wf, [Person("egor", "Егор", "+74951110006", "egor@example.ru")], now=now)
    with wf.engine.begin() as conn:  # the deal came from a CRM that does not hold Егор (a file, an old CRM)
        conn.execute(insert(Order).values(
            source="old_crm", external_id="deal-egor", contact_id=ids["egor"], amount=Decimal("100"),
            currency="RUB", status="open", title="Остаток", stage="Новая",
            stage_entered_at=now - dt.timedelta(days=15), attributes={}))
    enable(wf, NAME, now=now - dt.timedelta(days=1))
    start(wf, NAME, now)
    (task,) = TaskCrm.tasks
    assert task["external_id"] == "egor" and "«Остаток» 15 дней" in task["title"]


@pytest.mark.parametrize(("trigger", "problem"), [
    ("{event: deal.stuck}", "trigger.after: не указано; напишите, сколько сделка стоит в одном этапе, например 14d"),
    ("{event: deal.stuck, after: soon}", "trigger.after: 'soon'"),
    ("{event: order.won, after: 14d}", "trigger.after: after бывает только у deal.stuck"),
    ("{segment: dormant_90d, after: 14d}", "trigger.after: after бывает только у deal.stuck"),
])
def test_a_stuck_deal_trigger_needs_its_length_and_only_it_takes_one(wf: HubDB, trigger: str, problem: str) -> None:
    from hub.i18n import use_language
    from workflows.definition import WorkflowError, parse

    document = {"name": "mine", "trigger": yaml.safe_load(trigger), "steps": [{"wait": "1d"}]}
    with use_language("ru"), wf.engine.connect() as conn, pytest.raises(WorkflowError) as raised:
        parse(document, conn, wf.settings)
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems
