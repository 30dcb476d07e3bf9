"""The NPS answer back in the CRM, the survey for deals closed on a date, and tasks for the synced manager.

- A survey answer becomes one queued write-back job, which leaves a comment
  in the CRM holding the person («Оценка NPS: 9 из 10. Комментарий: …»); a
  CRM that is down gets it at a later tick, and the page never waits for it.
- post_purchase_feedback (trigger order.won) also starts for deals whose
  close date has no time: a CRM's date read as midnight, or not read at all.
- A task goes to the record's manager as the last sync read it
  (external_refs.responsible_id), with no lookup in the CRM.

The CRM is an in-test source plugin named like the shop's sample people's
source ("shop").
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update

from hub import queue, sync, writeback
from hub.admin import create_app
from hub.db import utcnow
from hub.hookspecs import hookimpl
from hub.models import ExternalRef, Order
from hub.records import OrderRecord
from tests.conftest import HubDB
from tests.support.shop import Person, add_order, enable, make_shop, runs_of, use_workflows
from workflows import nps, ticks, triggers
from workflows.models import Interaction

pytestmark = pytest.mark.both_databases  # answers' state in JSON, orders compared by time

LINK = re.compile(r"https?://\S+/nps/(\S+)")


class ShopCrm:
    """What the CRM was asked: comments and tasks; it can be down."""

    def __init__(self) -> None:
        self.comments: list[tuple[str, str]] = []
        self.tasks: list[dict[str, Any]] = []
        self.down = False

    def set_field(self, external_id: str, name: str, value: Any) -> str | None:
        return None

    def add_comment(self, external_id: str, text: str) -> str | None:
        if self.down:
            raise ConnectionError("the CRM is not answering")
        self.comments.append((external_id, text))
        return f"note-{len(self.comments)}"

    def add_task(self, external_id: str, title: str, *, due_at: dt.datetime, description: str = "",
                 responsible_id: str | None = None) -> str | None:
        self.tasks.append({"id": external_id, "title": title, "responsible_id": responsible_id})
        return "task-1"


class OlderCrm(ShopCrm):
    """A plugin written before add_task took the manager: its add_task has no such parameter."""

    def add_task(self, external_id: str, title: str, *, due_at: dt.datetime,  # type: ignore[override]
                 description: str = "") -> str | None:
        self.tasks.append({"id": external_id, "title": title})
        return "task-2"


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


@pytest.fixture
def crm(wf: HubDB, plugin_manager: Any) -> ShopCrm:
    made = ShopCrm()

    @hookimpl
    def register_sources(register: Any) -> None:
        register("shop", lambda settings: made)

    plugin_manager.register(SimpleNamespace(register_sources=register_sources), name="shop-crm")
    return made


def answers(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Interaction).order_by(Interaction.id)))


def test_an_answer_is_one_queued_comment_in_the_crm(wf: HubDB, crm: ShopCrm, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru")], now=utcnow())
    jobs: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(nps, "enqueue", lambda settings, func, *args, **kw: jobs.append((func, args, kw)))
    client = create_app(wf.settings).test_client()
    token = nps.url(wf.settings, ids["anna"], None, 9).rsplit("/", 1)[1]

    assert client.get(f"/nps/{token}").status_code == 200
    assert [(func, args, kw["background"]) for func, args, kw in jobs] == [(nps.write_back_job, (ids["anna"],), True)]
    assert crm.comments == []  # not in the web request
    assert answers(wf)[0].meta == {"crm": "pending"}

    monkeypatch.setenv("HUB_DATABASE_URL", wf.url)
    assert nps.write_back_job(ids["anna"]) == {"written": 1, "nowhere": 0, "refused": 0, "later": 0}
    assert crm.comments == [("anna", "Оценка NPS: 9 из 10.")]
    assert answers(wf)[0].meta["crm"] == "written"
    assert nps.write_back_pending(wf.engine, wf.settings) == {"written": 0, "nowhere": 0, "refused": 0, "later": 0}


def test_a_comment_added_on_the_page_goes_to_the_crm_with_the_score(wf: HubDB, crm: ShopCrm) -> None:
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru")], now=utcnow())
    client = create_app(wf.settings).test_client()
    token = nps.url(wf.settings, ids["anna"], None, 4).rsplit("/", 1)[1]
    client.post(f"/nps/{token}", data={"comment": "Долго везли <script>x</script>"})
    queue.drain(timeout=60)  # without Redis the job runs in a background thread
    assert crm.comments == [("anna", "Оценка NPS: 4 из 10. Комментарий: Долго везли <script>x</script>")]


def test_a_crm_that_is_down_gets_the_answer_at_a_later_tick(wf: HubDB, crm: ShopCrm) -> None:
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru"),
                         Person("boris", "Борис", None, "boris@example.ru")], now=utcnow())
    crm.down = True
    client = create_app(wf.settings).test_client()
    page = client.get(f"/nps/{nps.url(wf.settings, ids['anna'], None, 10).rsplit('/', 1)[1]}")
    queue.drain(timeout=60)
    assert page.status_code == 200 and "Ваша оценка" in page.get_data(as_text=True)  # the page does not fail
    assert crm.comments == [] and answers(wf)[0].meta == {"crm": "pending"}

    crm.down = False
    report = ticks.tick(wf.engine, wf.settings)
    assert report.nps_written_back["written"] == 1
    assert crm.comments == [("anna", "Оценка NPS: 10 из 10.")]

    # Someone no CRM holds: noted once, not asked again.
    with wf.engine.begin() as conn:
        conn.execute(update(ExternalRef).where(ExternalRef.external_id == "boris").values(deleted_at=utcnow()))
    nps.record(wf.engine, ids["boris"], None, 7)
    assert nps.write_back_pending(wf.engine, wf.settings)["nowhere"] == 1
    assert answers(wf)[-1].meta["crm"] == "nowhere"
    assert ticks.tick(wf.engine, wf.settings).nps_written_back["nowhere"] == 0


# --- post_purchase_feedback for deals closed on a date ----------------------------------------------

def test_a_deal_won_on_a_date_without_a_time_starts_the_survey(wf: HubDB) -> None:
    day = (utcnow() - dt.timedelta(days=2)).date()
    switched_on = dt.datetime.combine(day, dt.time(10), dt.timezone.utc)
    people = [Person(k, k.title(), None, f"{k}@example.ru", bought_days_ago=400)
              for k in ("utc", "local", "unread", "before", "timed", "older")]
    make_shop(wf, people, now=switched_on - dt.timedelta(days=30))
    enable(wf, "post_purchase_feedback", switched_on)
    midnight_utc = dt.datetime.combine(day, dt.time(0), dt.timezone.utc)
    midnight_local = dt.datetime.combine(day, dt.time(0), wf.settings.tz).astimezone(dt.timezone.utc)
    add_order(wf, "utc", closed_at=midnight_utc, order_id="d-utc")  # "2026-12-01" read as UTC midnight
    add_order(wf, "local", closed_at=midnight_local, order_id="d-local")  # … or as the shop's midnight
    add_order(wf, "before", closed_at=midnight_utc - dt.timedelta(days=1), order_id="d-before")  # the day before
    add_order(wf, "timed", closed_at=switched_on - dt.timedelta(hours=1), order_id="d-timed")  # an hour before
    with wf.engine.begin() as conn:  # a date the plugin could not read at all: from when the deal was made
        sync.write_orders(conn, [
            OrderRecord(source="shop", external_id="d-unread", contact_external_id="unread", amount=Decimal(900),
                        status="won", closed_at=None, created_at=switched_on + dt.timedelta(hours=2)),
            OrderRecord(source="shop", external_id="d-older", contact_external_id="older", amount=Decimal(900),
                        status="won", closed_at=None, created_at=switched_on - dt.timedelta(days=5))],
            sync.Counts())
    ticks.tick(wf.engine, wf.settings, now=switched_on + dt.timedelta(hours=8))
    started = {r.trigger_key.split(":")[-1] for r in runs_of(wf, "post_purchase_feedback")}
    with wf.engine.connect() as conn:
        names = dict(conn.execute(select(Order.id, Order.external_id)).all())
    assert {names[int(o)] for o in started} == {"d-utc", "d-local", "d-unread"}


def test_won_after_reads_a_midnight_as_a_date() -> None:
    on = dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc)
    moscow = dt.timezone(dt.timedelta(hours=3))
    assert triggers.won_after(dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), on)
    assert triggers.won_after(dt.datetime(2026, 11, 30, 21, tzinfo=dt.timezone.utc), on, moscow)
    assert not triggers.won_after(dt.datetime(2026, 11, 30, 21, tzinfo=dt.timezone.utc), on)
    assert not triggers.won_after(dt.datetime(2026, 12, 1, 9, 59, tzinfo=dt.timezone.utc), on, moscow)
    assert not triggers.won_after(dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc), on, moscow)


# --- the manager from the sync ----------------------------------------------------------------------

def test_a_task_goes_to_the_manager_the_sync_read(wf: HubDB, crm: ShopCrm, plugin_manager: Any) -> None:
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru")], now=utcnow())
    with wf.engine.begin() as conn:
        conn.execute(update(ExternalRef).where(ExternalRef.external_id == "anna").values(responsible_id="17"))
    due = utcnow() + dt.timedelta(days=1)
    with wf.engine.connect() as conn:
        done = writeback.apply(conn, wf.settings, ids["anna"], "add_task", first_only=True, title="Позвонить",
                               due_at=due)
    assert crm.tasks == [{"id": "anna", "title": "Позвонить", "responsible_id": "17"}]
    assert [(w.source, w.result) for w in done] == [("shop", "task-1")]

    with wf.engine.begin() as conn:  # never synced with a manager: None, and the plugin may look them up
        conn.execute(update(ExternalRef).where(ExternalRef.external_id == "anna").values(responsible_id=None))
    with wf.engine.connect() as conn:
        writeback.apply(conn, wf.settings, ids["anna"], "add_task", title="Ещё раз", due_at=due)
    assert crm.tasks[-1]["responsible_id"] is None

    older = OlderCrm()

    @hookimpl
    def register_sources(register: Any) -> None:
        register("older", lambda settings: older)

    plugin_manager.register(SimpleNamespace(register_sources=register_sources), name="older-crm")
    with wf.engine.begin() as conn:
        conn.execute(ExternalRef.__table__.insert().values(source="older", external_id="o-1",
                                                           contact_id=ids["anna"], responsible_id="5"))
    with wf.engine.connect() as conn:
        writeback.apply(conn, wf.settings, ids["anna"], "add_task", only=["older"], title="Старый", due_at=due)
    assert older.tasks == [{"id": "o-1", "title": "Старый"}]
    assert not writeback.takes_responsible(OlderCrm) and writeback.takes_responsible(ShopCrm)
