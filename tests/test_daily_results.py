"""A workflow's results by local day: sends, deliveries, a bounce, an unsubscribe, a redeemed code, the revenue.

Everything happens for real: the workflow runs, its letters go to an SMTP
server on loopback that refuses one address for good, a person withdraws
consent, an order redeems a code. The clock is Hub's fake one, set around
Moscow midnight, so each event lands on the local day it happened on and not
on its UTC date. The totals must agree with `hub workflows status`.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub import consent
from hub.models import Order
from hub.testing import FakeClock
from tests.conftest import HubDB
from tests.support.admin import AdminEnv, client_as, plain, text
from tests.support.cli import cli
from tests.support.shop import Person, add_order, make_shop, start, use_workflows, write
from workflows import daily, measure, promo
from workflows.models import PromoCode

pytestmark = pytest.mark.both_databases  # the days are SQL GROUP BYs over bounds and a window in time

UTC = dt.timezone.utc
DAY_ONE = dt.datetime(2026, 12, 1, 7, 0, tzinfo=UTC)            # 10:00 on 1 December in Moscow
JUST_AFTER_MIDNIGHT = dt.datetime(2026, 12, 1, 21, 30, tzinfo=UTC)  # 00:30 on 2 December in Moscow
DAY_TWO = dt.datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
PEOPLE = [Person("anna", "Анна", None, "anna@example.ru"), Person("boris", "Борис", None, "boris@example.ru"),
          Person("vera", "Вера", None, "vera@example.ru"), Person("dead", "Глеб", None, "dead@example.ru"),
          Person("fresh", "Дина", None, "fresh@example.ru", bought_days_ago=5)]  # not dormant: never messaged
WORKFLOW = """name: daily_check
title: Daily check
trigger: {segment: dormant_90d}
holdout: 0%
goal: {event: promo.redeemed, within: 30d}
steps:
  - promo_code: {discount: 15%, valid_for: 14d, prefix: BACK}
  - send: {channel: email, template: reactivation_email, purpose: marketing}
"""


@pytest.fixture
def shop(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch, mailbox: Any, hub_clock: FakeClock,
         tmp_path: Path) -> tuple[HubDB, dict[str, int], Any]:
    box, port = mailbox
    box.rcpt_replies["dead@example.ru"] = "550 5.1.1 No such user"
    monkeypatch.setenv("HUB_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("HUB_MAIL_FROM", "Лавка <shop@example.ru>")
    db = use_workflows(hub_db, plugin_manager, monkeypatch)
    hub_clock.set(DAY_ONE)
    ids = make_shop(db, PEOPLE, now=DAY_ONE)
    added = CliRunner().invoke(cli, ["workflows", "add", write(tmp_path, "daily.yaml", WORKFLOW)])
    assert added.exit_code == 0, added.output
    start(db, "daily_check", DAY_ONE)
    assert sorted(r.rcpt_tos[0] for r in box.received) == ["anna@example.ru", "boris@example.ru", "vera@example.ru"]

    hub_clock.set(JUST_AFTER_MIDNIGHT)
    with db.engine.begin() as conn:  # an unsubscribe, and a withdrawal by someone it never wrote to
        consent.record(conn, ids["boris"], "email", "marketing", "withdrawn", source="unsubscribe link")
        consent.record(conn, ids["fresh"], "email", "marketing", "withdrawn", source="unsubscribe link")
    hub_clock.set(DAY_TWO)
    with db.engine.connect() as conn:
        code = conn.execute(select(PromoCode.code).where(PromoCode.contact_id == ids["anna"])).scalar_one()
    add_order(db, "anna", closed_at=DAY_TWO, amount="1800", promo=code, order_id="with-code")
    with db.engine.connect() as conn:
        order_id = conn.execute(select(Order.id).where(Order.external_id == "with-code")).scalar_one()
    promo.redeem(db.engine, code, order_id=order_id, now=DAY_TWO)
    return db, ids, box


def test_each_event_lands_on_its_local_day(shop: tuple[HubDB, dict[str, int], Any]) -> None:
    db, ids, box = shop
    with db.engine.connect() as conn:
        report = daily.results_by_day(conn, "daily_check", settings=db.settings, days=3, now=DAY_TWO)
    assert report == {"workflow": "daily_check", "days": ["2026-11-30", "2026-12-01", "2026-12-02"],
                      "sent": [0, 4, 0], "delivered": [0, 3, 0], "bounced": [0, 1, 0],
                      "unsubscribed": [0, 0, 1], "redeemed": [0, 0, 1], "revenue": ["0.00", "0.00", "1800.00"]}
    json.dumps(report)  # JSON as it is
    with db.engine.connect() as conn:
        row_id = conn.execute(select(measure.runs_t.c.workflow_id).limit(1)).scalar_one()
        assert daily.results_by_day(conn, row_id, settings=db.settings, days=3, now=DAY_TWO) == report
        one_day = daily.results_by_day(conn, "daily_check", settings=db.settings, days=1, now=JUST_AFTER_MIDNIGHT)
    assert one_day["days"] == ["2026-12-02"] and one_day["unsubscribed"] == [1] and one_day["sent"] == [0]


def test_the_totals_agree_with_the_workflow_report(shop: tuple[HubDB, dict[str, int], Any]) -> None:
    db, ids, box = shop
    status = measure.status(db.engine, db.settings, "daily_check", now=DAY_TWO)
    with db.engine.connect() as conn:
        report = daily.results_by_day(conn, "daily_check", settings=db.settings, days=30, now=DAY_TWO)
    send = next(s for s in status["steps"] if s["kind"] == "send")
    assert sum(report["delivered"]) == send["sent"] == 3
    assert sum(report["bounced"]) == send["failed"] == 1
    assert sum(report["redeemed"]) == status["promo_codes"]["redeemed"] == 1
    assert sum(Decimal(v) for v in report["revenue"]) == Decimal(status["revenue"]) == Decimal("1800")


def test_an_unsubscribe_long_after_the_letter_is_not_the_letters(shop: tuple[HubDB, dict[str, int], Any],
                                                                 hub_clock: FakeClock) -> None:
    db, ids, box = shop
    late = hub_clock.set(DAY_ONE + daily.UNSUBSCRIBE_WINDOW + dt.timedelta(hours=1))
    with db.engine.begin() as conn:
        consent.record(conn, ids["vera"], "email", "marketing", "withdrawn", source="unsubscribe link")
    with db.engine.connect() as conn:
        report = daily.results_by_day(conn, "daily_check", settings=db.settings, days=10, now=late)
    assert sum(report["unsubscribed"]) == 1  # Boris's; Vera left too late to blame the letter


def test_unknown_workflows_and_a_silly_range_are_refused(shop: tuple[HubDB, dict[str, int], Any]) -> None:
    from workflows.definition import WorkflowError

    db, ids, box = shop
    with db.engine.connect() as conn:
        with pytest.raises(WorkflowError):
            daily.results_by_day(conn, "daily_chek", settings=db.settings)
        with pytest.raises(WorkflowError):
            daily.results_by_day(conn, 987654, settings=db.settings)
        with pytest.raises(ValueError):
            daily.results_by_day(conn, "daily_check", settings=db.settings, days=0)


def test_the_chart_data_has_a_line_per_series_and_one_for_revenue(shop: tuple[HubDB, dict[str, int], Any]) -> None:
    db, ids, box = shop
    with db.engine.connect() as conn:
        charts = daily.chart(daily.results_by_day(conn, "daily_check", settings=db.settings, days=3, now=DAY_TWO))
    counts, revenue = charts["counts"], charts["revenue"]
    assert counts["labels"] == ["30.11.2026", "01.12.2026", "02.12.2026"] == revenue["labels"]
    assert [d["label"] for d in counts["datasets"]] == ["отправлено", "доставлено", "не доставлено", "отписались",
                                                       "использовано промокодов"]
    assert counts["datasets"][1]["data"] == [0, 3, 0] and revenue["datasets"][0]["data"] == [0.0, 0.0, 1800.0]


def test_the_workflow_page_draws_the_days(admin_env: AdminEnv) -> None:
    page = client_as(admin_env, "viewer").get("/workflows/reactivation_90d")
    assert page.status_code == 200
    body = text(page)
    for chart in ("daily-counts", "daily-revenue"):
        assert f'<canvas id="{chart}" data-chart="line"' in body and f'id="{chart}-data"' in body
    assert "По дням" in plain(page)
