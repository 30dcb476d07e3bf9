"""Promo codes: how they look, issued once per run, redeemed by synced orders or by hand, reminders before expiry."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from hub.db import utcnow
from hub.models import Message, Order
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.shop import Person, add_order, make_shop, runs_of, start, use_workflows, write
from workflows import measure, promo, store, ticks
from workflows.models import PromoCode

pytestmark = pytest.mark.both_databases  # codes issued once per run (ON CONFLICT)

AMBIGUOUS = set("01OIL")


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def codes(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(PromoCode).order_by(PromoCode.id)))


def hub(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def a_morning(days_ago: int) -> dt.datetime:
    return (utcnow() - dt.timedelta(days=days_ago)).replace(hour=7, minute=0, second=0, microsecond=0)


def test_codes_are_readable_over_the_phone() -> None:
    assert not set(promo.ALPHABET) & AMBIGUOUS and len(promo.ALPHABET) == 31
    for _ in range(200):
        prefix, body = promo.new_code("BACK").split("-")
        assert prefix == "BACK" and len(body) == promo.DEFAULT_LENGTH and set(body) <= set(promo.ALPHABET)
    assert set(promo.new_code(None, 16)) <= set(promo.ALPHABET)
    assert promo.normalize("  back-7k2qxm ") == "BACK-7K2QXM"


class Draws:
    """A code generator that collides on purpose: `script` first, then fresh codes in order."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.fresh = 0
        self.count = 0

    def __call__(self, prefix: str | None, length: int = promo.DEFAULT_LENGTH) -> str:
        self.count += 1
        if self.script:
            return self.script.pop(0)
        self.fresh += 1
        n, body = self.fresh, ""
        for _ in range(length):
            n, digit = divmod(n, len(promo.ALPHABET))
            body = promo.ALPHABET[digit] + body
        return f"{prefix}-{body}" if prefix else body


def test_each_run_gets_a_distinct_code_when_draws_collide(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = a_morning(3)
    make_shop(wf, [Person(f"p{i}", f"Имя{i}", None, f"p{i}@example.ru") for i in range(12)], now=t0)
    with wf.engine.begin() as conn:  # a code issued long ago, by hand
        conn.execute(PromoCode.__table__.insert().values(code="BACK-AAAAAA", prefix="BACK", discount=10,
                                                         created_at=t0, expires_at=t0))
    # The old code drawn again three times, then a new one twice in a row: collisions with a stored code
    # and within one insert, whichever batches the engine makes.
    draws = Draws("BACK-AAAAAA", "BACK-AAAAAA", "BACK-AAAAAA", "BACK-BBBBBB", "BACK-BBBBBB")
    monkeypatch.setattr(promo, "new_code", draws)
    start(wf, "reactivation_90d", t0)
    treated = [r for r in runs_of(wf, "reactivation_90d") if not r.holdout]
    issued = [c for c in codes(wf) if c.run_id is not None]
    assert sorted(c.run_id for c in issued) == sorted(r.id for r in treated)
    assert len({c.code for c in codes(wf)}) == len(issued) + 1
    assert "BACK-BBBBBB" in {c.code for c in issued} and "BACK-AAAAAA" not in {c.code for c in issued}
    assert draws.count == len(issued) + 4  # every collision was drawn again
    assert not [r for r in runs_of(wf, "reactivation_90d") if r.status == "parked"]


def test_a_code_that_cannot_be_drawn_unique_parks_the_run(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = a_morning(3)
    make_shop(wf, [Person(f"p{i}", f"Имя{i}", None, f"p{i}@example.ru") for i in range(12)], now=t0)
    monkeypatch.setattr(promo, "new_code", lambda prefix, length=6: "BACK-AAAAAA")
    start(wf, "reactivation_90d", t0)
    treated = [r for r in runs_of(wf, "reactivation_90d") if not r.holdout]
    assert [c.code for c in codes(wf)] == ["BACK-AAAAAA"]
    parked = [r for r in treated if r.status == "parked"]
    assert len(treated) >= 2 and len(parked) == len(treated) - 1
    assert {r.error for r in parked} == {"could not draw a unique promo code"}


def test_each_run_gets_one_code_that_expires_at_the_end_of_its_last_day(wf: HubDB) -> None:
    t0 = a_morning(3)
    ids = make_shop(wf, [Person(f"p{i}", f"Имя{i}", None, f"p{i}@example.ru") for i in range(12)], now=t0)
    start(wf, "reactivation_90d", t0)
    issued = codes(wf)
    treated = [r for r in runs_of(wf, "reactivation_90d") if not r.holdout]
    assert sorted(c.run_id for c in issued) == sorted(r.id for r in treated)
    assert len({c.code for c in issued}) == len(issued)
    last_day = (t0 + dt.timedelta(days=14)).astimezone(wf.settings.tz).date()
    for c in issued:
        assert c.discount == 15 and c.prefix == "BACK" and c.step == 0 and c.contact_id in ids.values()
        local = c.expires_at.astimezone(wf.settings.tz)
        assert (local.date(), local.time()) == (last_day, dt.time(23, 59, 59))
    # Running the step again for the same runs finds the codes it issued.
    from workflows.definition import Instruction
    from workflows.runner import Advance

    with wf.engine.connect() as conn:
        row, workflow = store.current(conn, wf.settings, "reactivation_90d")
    advance = Advance(wf.engine, wf.settings, now=t0, pm=None)
    states = [_state(r) for r in treated]
    calls = advance._calls(states, workflow.program[0], workflow)
    step = workflow.program[0].step
    assert isinstance(workflow.program[0], Instruction)
    with wf.engine.begin() as conn:
        again = step.write(conn, calls, [None] * len(calls))
    assert sorted(o.result["code"] for o in again) == sorted(c.code for c in issued)
    assert len(codes(wf)) == len(issued)


def _state(run: Any) -> Any:
    from workflows.runner import RunState

    return RunState(run.id, run.workflow_id, run.version, run.contact_id, run.cycle, run.step, run.attempts,
                    run.started_at, run.trigger, dict(run.context))


def test_an_order_that_carries_the_code_redeems_it_and_counts_as_a_conversion(wf: HubDB) -> None:
    t0 = a_morning(5)
    people = [Person(f"p{i}", f"Имя{i}", None, f"p{i}@example.ru") for i in range(8)]
    make_shop(wf, people, now=t0)
    start(wf, "reactivation_90d", t0)
    issued = {c.contact_id: c for c in codes(wf)}
    buyer_id, code = next(iter(issued.items()))
    buyer = next(p.key for p in people if make_key(wf, p.key) == buyer_id)
    add_order(wf, buyer, closed_at=t0 + dt.timedelta(days=2), amount="4200", promo=f" {code.code.lower()} ")
    tick = ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(days=2, hours=1))
    assert tick.redeemed == 1
    (redeemed,) = [c for c in codes(wf) if c.redeemed_at is not None]
    assert redeemed.code == code.code and redeemed.redeemed_by == "order:shop" and redeemed.order_id is not None
    assert ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(days=2, hours=2)).redeemed == 0
    status = measure.status(wf.engine, wf.settings, "reactivation_90d", now=t0 + dt.timedelta(days=3))
    assert status["promo_codes"]["redeemed"] == 1
    assert status["conversion"]["treated"]["converted"] == 1 and status["revenue"] == "4200.00"


def make_key(db: HubDB, key: str) -> int:
    from hub.models import ExternalRef

    with db.engine.connect() as conn:
        return conn.execute(select(ExternalRef.contact_id).where(ExternalRef.external_id == key)).scalar_one()


def test_hub_promo_redeem_by_hand(wf: HubDB) -> None:
    t0 = a_morning(3)
    make_shop(wf, [Person("p1", "Анна", None, "p1@example.ru"), Person("p2", "Борис", None, "p2@example.ru"),
                   Person("p3", "Вера", None, "p3@example.ru")], now=t0)
    start(wf, "reactivation_90d", t0)
    first, *rest = codes(wf)
    if rest:  # one code that ran out yesterday
        with wf.engine.begin() as conn:
            conn.execute(update(PromoCode).where(PromoCode.id == rest[0].id)
                         .values(expires_at=utcnow() - dt.timedelta(days=1)))
    done = hub("promo", "redeem", first.code.lower(), "--json")
    assert done.exit_code == 0, done.output
    found = json.loads(done.output)
    assert found == {**found, "code": first.code, "status": "redeemed", "redeemed_by": "cli", "discount": 15.0}
    twice = hub("promo", "redeem", first.code)
    assert twice.exit_code == 1 and twice.output.startswith(f"Ошибка: промокод {first.code} уже использован ")
    # the moment in the shop's zone, as Russians write it
    assert re.search(r"уже использован \d\d\.\d\d\.\d{4} \d\d:\d\d МСК \(cli\)", twice.output)
    assert hub("promo", "redeem", "BACK-NOPE42").output == "Ошибка: нет промокода 'BACK-NOPE42'\n"
    if rest:
        expired = hub("promo", "redeem", rest[0].code)
        assert expired.output.startswith(f"Ошибка: промокод {rest[0].code} истёк ")
        assert expired.output.endswith("; погасить его всё равно можно с --force\n")
        assert hub("promo", "redeem", rest[0].code, "--force").exit_code == 0
    shown = json.loads(hub("promo", "show", first.code, "--json").output)
    assert shown["status"] == "redeemed"


def test_an_expired_code_names_the_moment_it_ran_out_in_the_shops_zone(wf: HubDB) -> None:
    """21:30 UTC is 00:30 the next day in Moscow: the refusal and `hub promo show` name the same day."""
    t0 = a_morning(3)
    make_shop(wf, [Person("p1", "Анна", None, "p1@example.ru")], now=t0)
    start(wf, "reactivation_90d", t0)
    code = codes(wf)[0]
    ran_out = (utcnow() - dt.timedelta(days=2)).replace(hour=21, minute=30, second=0, microsecond=0)
    with wf.engine.begin() as conn:
        conn.execute(update(PromoCode).where(PromoCode.id == code.id).values(expires_at=ran_out))
    local = ran_out + dt.timedelta(hours=3)
    moment = f"{local:%d.%m.%Y} 00:30 МСК"
    assert hub("promo", "show", code.code).output.endswith(f"действует до {moment}\n")
    refused = hub("promo", "redeem", code.code)
    assert refused.exit_code == 1 and f"истёк {moment};" in refused.output
    assert hub("promo", "redeem", code.code, "--force").exit_code == 0
    add_order(wf, "p1", closed_at=t0)
    with wf.engine.begin() as conn:
        order_id = conn.execute(select(Order.id).order_by(Order.id.desc())).scalars().first()
        conn.execute(update(PromoCode).where(PromoCode.id == code.id).values(order_id=order_id))
    again = hub("promo", "redeem", code.code)
    assert again.exit_code == 1 and f"(заказ №{order_id})" in again.output, again.output


def test_a_code_about_to_expire_starts_a_reminder(wf: HubDB, tmp_path: Path) -> None:
    t0 = a_morning(20)
    ids = make_shop(wf, [Person(f"p{i}", f"Имя{i}", f"+7495111000{i}", f"p{i}@example.ru") for i in range(6)], now=t0)
    path = write(tmp_path, "remind.yaml", "name: promo_reminder\ntrigger: {event: promo.expiring, before: 3d, "
                                          "workflow: reactivation_90d}\nreentry: 30d\n"
                                          "steps: [{send: {channel: sms, template: promo_reminder_sms}}]\n")
    assert hub("workflows", "add", path, "--enable").exit_code == 0
    with wf.engine.begin() as conn:
        store.set_enabled(conn, "promo_reminder", True, now=t0)
    start(wf, "reactivation_90d", t0)
    issued = codes(wf)
    promo.redeem(wf.engine, issued[0].code, now=t0 + dt.timedelta(days=1))
    assert ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(days=5)).started["promo_reminder"][
        "started"] == 0  # not yet
    ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(days=12))
    reminders = runs_of(wf, "promo_reminder")
    assert {r.contact_id for r in reminders} == {c.contact_id for c in issued[1:]}
    with wf.engine.connect() as conn:
        sms = {m.contact_id: m for m in conn.execute(select(Message).where(Message.template == "promo_reminder_sms"))}
    for c in issued[1:]:
        assert c.code in sms[c.contact_id].body_text
    ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(days=12, hours=1))
    assert len(runs_of(wf, "promo_reminder")) == len(issued) - 1  # one reminder per code
    assert set(ids.values()) >= {c.contact_id for c in issued}


def test_codes_are_written_to_the_crm_field_when_one_is_configured(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_WORKFLOWS_PROMO_CRM_FIELD", "promo_code")
    from dataclasses import replace

    from hub.config import load_settings

    wf = replace(wf, settings=load_settings())
    t0 = a_morning(2)
    make_shop(wf, [Person("p1", "Анна", None, "p1@example.ru"), Person("p2", "Борис", None, "p2@example.ru")], now=t0)
    start(wf, "reactivation_90d", t0)
    assert all(c.crm_field == "promo_code" for c in codes(wf))
    done = promo.write_back_pending(wf.engine, wf.settings)
    # the shop here is a spreadsheet, in no CRM: refused once, noted, not asked again
    assert done == {"written": 0, "refused": len(codes(wf)), "later": 0}
    assert all(c.writeback_error and "accepts write-back" in c.writeback_error for c in codes(wf))
    assert promo.write_back_pending(wf.engine, wf.settings) == {"written": 0, "refused": 0, "later": 0}
