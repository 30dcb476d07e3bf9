"""NPS after a purchase: signed 0–10 links in the survey, a click recorded on the contact, usable in segments."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import select

from hub.admin import create_app
from hub.db import utcnow
from hub.models import Message
from hub.segments import fields, store as segment_store
from hub.segments.evaluate import Segments
from tests.conftest import HubDB
from tests.support.shop import Person, add_order, enable, make_shop, runs_of, use_workflows
from workflows import measure, nps, ticks
from workflows.models import Interaction

pytestmark = pytest.mark.both_databases  # answers recorded once (ON CONFLICT)

LINK = re.compile(r"https?://\S+/nps/(\S+)")


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def answers(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Interaction).order_by(Interaction.id)))


def test_a_survey_after_a_won_deal_and_the_click_that_answers_it(wf: HubDB) -> None:
    t0 = (utcnow() - dt.timedelta(days=10)).replace(hour=7, minute=0, second=0, microsecond=0)
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru", bought_days_ago=400, consent=())], now=t0)
    from hub import consent

    with wf.engine.begin() as conn:
        consent.record(conn, ids["anna"], "email", "surveys", "granted", source="checkout")
    enable(wf, "post_purchase_feedback", t0)
    add_order(wf, "anna", closed_at=t0 + dt.timedelta(minutes=30))
    ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(hours=1))
    ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(days=4))
    (survey,) = [m for m in _messages(wf) if m.template == "nps_survey_email"]
    assert survey.status == "sent" and survey.purpose == "surveys"
    tokens = LINK.findall(survey.body_text)
    assert len(tokens) == 11
    (run,) = runs_of(wf, "post_purchase_feedback")
    assert [nps.read(wf.settings, t) for t in tokens] == [(ids["anna"], run.id, s) for s in range(11)]

    # hook:register_routes (the public page the links lead to)
    client = create_app(wf.settings).test_client()
    page = client.get(f"/nps/{tokens[8]}")
    assert page.status_code == 200 and "Ваша оценка: <strong>8</strong>" in page.get_data(as_text=True)
    assert [(a.contact_id, a.kind, a.value, a.run_id) for a in answers(wf)] == [(ids["anna"], "nps", 8, run.id)]
    client.get(f"/nps/{tokens[9]}")  # changed their mind: one answer per survey, the latest
    client.post(f"/nps/{tokens[9]}", data={"comment": "Быстро привезли <b>спасибо</b>"})
    (answer,) = answers(wf)
    assert answer.value == 9 and answer.comment == "Быстро привезли <b>спасибо</b>"
    shown = client.get(f"/nps/{tokens[9]}").get_data(as_text=True)
    assert "&lt;b&gt;спасибо&lt;/b&gt;" in shown  # what a person typed comes back escaped
    bad = client.get(f"/nps/{tokens[9][:-3]}abc")
    assert bad.status_code == 400 and "Эта ссылка на опрос недействительна" in bad.get_data(as_text=True)
    assert len(answers(wf)) == 1

    with wf.engine.connect() as conn:
        card = nps.interactions_for_contact(conn, ids["anna"])
    assert card[0]["kind"] == "nps" and card[0]["value"] == 9
    status = measure.status(wf.engine, wf.settings, "post_purchase_feedback")
    assert status["nps"] == {"answers": 1, "nps": 100.0}


def test_nps_and_workflow_runs_are_fields_segments_can_use(wf: HubDB) -> None:
    t0 = (utcnow() - dt.timedelta(days=5)).replace(hour=7, minute=0, second=0, microsecond=0)
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru"), Person("gleb", "Глеб", None, "g@example.ru"),
                         Person("zoya", "Зоя", None, "z@example.ru")], now=t0)
    assert nps.record(wf.engine, ids["anna"], None, 10)
    assert nps.record(wf.engine, ids["gleb"], None, 3)
    assert not nps.record(wf.engine, 999_999, None, 7)  # a contact that is gone
    with wf.engine.begin() as conn:
        segment_store.add(conn, fields.build(wf.settings), {
            "name": "promoters", "rule": {"field": "contact.nps", "op": "gte", "value": 9}})
        segment_store.add(conn, fields.build(wf.settings), {
            "name": "in_reactivation", "rule": {"field": "workflow.reactivation_90d.status", "op": "eq",
                                                "value": "waiting"}})
        segment_store.add(conn, fields.build(wf.settings), {
            "name": "never_reactivated", "rule": {"field": "workflow.reactivation_90d.status", "op": "eq",
                                                  "value": "none"}})
    from tests.support.shop import start

    start(wf, "reactivation_90d", t0)
    waiting = {r.contact_id for r in runs_of(wf, "reactivation_90d") if r.status == "waiting"}
    with wf.engine.connect() as conn:
        segments = Segments(conn, wf.settings)
        assert segments.member_ids("promoters") == [ids["anna"]]
        assert set(segments.member_ids("in_reactivation")) == waiting
        assert set(segments.member_ids("never_reactivated")) == set()
    with wf.engine.begin() as conn:
        with pytest.raises(Exception, match=re.escape("'reactivation_9d' — не подходящее значение name для "
                                                      "workflow.<name>.status; может быть, 'reactivation_90d'?")):
            segment_store.add(conn, fields.build(wf.settings), {
                "name": "typo", "rule": {"field": "workflow.reactivation_9d.status", "op": "eq", "value": "done"}})


def _messages(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Message)))
