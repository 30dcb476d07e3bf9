"""One-off campaigns: checked drafts, an honest preview, each person at most once, pause, schedule, CLI, RQ."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections import Counter
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from hub import consent, links, message_templates, messaging, queue
from hub.segments import fields
from hub.segments import store as segment_store
from hub.config import load_settings
from hub.db import utcnow
from hub.i18n import use_language
from hub.models import AuditEntry, Message
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.shop import Person, make_shop, use_workflows
from workflows import campaigns, store, ticks, triggers
from workflows.campaigns import CampaignError, Draft

pytestmark = pytest.mark.both_databases  # exactly once, whichever database holds the runs

PEOPLE = [
    Person("anna", "Анна", None, "anna@example.ru"),
    Person("boris", "Борис", None, "boris@example.ru", consent=()),  # consent withdrawn below
    Person("olga", "Ольга", "+74951110003", None),  # no email
    Person("petr", "Пётр", None, "petr@example.ru"),  # suppressed below
    Person("roma", "Рома", None, "roma@example.ru"),  # two letters this week: capped
    *[Person(f"p{i}", f"Имя{i}", None, f"p{i}@example.ru") for i in range(10)],
]
LETTER = message_templates.Template(
    name="sale_email", channel="email", subject="{{ contact.first_name }}, распродажа",
    text="Здравствуйте, {{ contact.first_name }}! Всё со скидкой.",
    html="<p>Здравствуйте, {{ contact.first_name }}! Всё со скидкой.</p>")
UNREACHABLE = ("boris", "olga", "petr", "roma")  # no consent, no email, suppressed, capped
PROMO_LETTER = message_templates.Template(
    name="sale_promo_email", channel="email", subject="Скидка {{ promo.discount }}%",
    text="Ваш промокод {{ promo.code }} до {{ promo.expires_at|date }}.")


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    import workflows

    db = use_workflows(hub_db, plugin_manager, monkeypatch)
    workflows.register_commands(cli)
    return db


def base(db: HubDB, now: dt.datetime | None = None) -> dict[str, int]:
    """The shop's people, everyone dormant (their last order 120 days ago), with the twists PEOPLE names."""
    now = now or utcnow()
    ids = make_shop(db, PEOPLE, now=now)
    with db.engine.begin() as conn:
        consent.record(conn, ids["boris"], "email", "marketing", "withdrawn", source="test")
        consent.suppress(conn, "email", "petr@example.ru", reason="bounce", source="test",
                         secret=db.settings.require_secret_key())
        for n in range(2):
            conn.execute(Message.__table__.insert().values(
                idempotency_key=f"earlier:{n}", contact_id=ids["roma"], channel="email", template="x", body_text="…",
                purpose="marketing", address="roma@example.ru", status="sent", attempts=1, meta={},
                due_at=now - dt.timedelta(days=1), created_at=now - dt.timedelta(days=1 + n),
                updated_at=now - dt.timedelta(days=1)))
        segment_store.add(conn, fields.build(db.settings), {
            "name": "buyers", "title": "Покупатели", "rule": {"field": "orders.count", "op": "gte", "value": 1}})
        message_templates.save(conn, db.settings, LETTER)
        message_templates.save(conn, db.settings, PROMO_LETTER)
    return ids


def draft(**changes: Any) -> Draft:
    return replace(Draft(title="Распродажа", segment="buyers", channel="email", template="sale_email"), **changes)


def letters(db: HubDB, name: str) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Message).where(Message.origin == campaigns.workflow_name(name))
                                 .order_by(Message.contact_id)))


def deliver(db: HubDB, now: dt.datetime | None = None, settings: Any = None) -> None:
    """What the scheduler's tick does without Redis: advance every due run and send what they wrote."""
    ticks.advance_due(db.engine, settings or db.settings, now=now or utcnow())


def hub(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


# --- drafts -------------------------------------------------------------------------------

def test_a_draft_is_checked_field_by_field_and_named_from_its_title(wf: HubDB) -> None:
    base(wf)
    with wf.engine.connect() as conn:
        assert campaigns.check(conn, wf.settings, draft()) == []
        problems = campaigns.check(conn, wf.settings, draft(title=" ", segment="buyres", holdout=70))
        found = {p["field"]: p["detail"] for p in problems}
        assert set(found) == {"title", "holdout"}  # the fields people typed come first
        found = {p["field"]: p["detail"] for p in campaigns.check(conn, wf.settings, draft(segment="buyres"))}
        assert "'buyers'" in found["segment"]  # did you mean
        assert "template" in {p["field"] for p in campaigns.check(conn, wf.settings, draft(template="sale_emial"))}
        wrong_channel = campaigns.check(conn, wf.settings, draft(channel="sms"))
        assert [p["field"] for p in wrong_channel] == ["template"]
        no_code = campaigns.check(conn, wf.settings, draft(template="sale_promo_email"))
        assert [p["field"] for p in no_code] == ["template"] and "promo" in no_code[0]["detail"]
        with_code = draft(template="sale_promo_email", promo={"discount": 15, "valid": "14d", "prefix": "SALE"})
        assert campaigns.check(conn, wf.settings, with_code) == []
        bad_code = campaigns.check(conn, wf.settings, draft(template="sale_promo_email",
                                                            promo={"discount": 150, "valid": "soon", "x": 1}))
        assert {p["field"] for p in bad_code} == {"promo"}
        bad_code = campaigns.check(conn, wf.settings, draft(template="sale_promo_email",
                                                            promo={"discount": 150, "valid": "14d"}))
        assert [p["field"] for p in bad_code] == ["promo.discount"]
        bad_code = campaigns.check(conn, wf.settings, draft(template="sale_promo_email",
                                                            promo={"discount": 15, "valid": "soon"}))
        assert [p["field"] for p in bad_code] == ["promo.valid"]
    with pytest.raises(CampaignError) as caught:
        campaigns.create(wf.engine, wf.settings, draft(segment="nope", template="none"), actor="m@shop.example")
    assert {p["field"] for p in caught.value.problems} == {"segment", "template"}
    first = campaigns.create(wf.engine, wf.settings, draft(title="Чёрная пятница <script>"), actor="m@shop.example")
    second = campaigns.create(wf.engine, wf.settings, draft(title="Чёрная пятница <script>"), actor="m@shop.example")
    assert (first["name"], second["name"]) == ("chernaya_pyatnitsa_script", "chernaya_pyatnitsa_script_2")
    assert first["title"] == "Чёрная пятница <script>" and first["status"] == "draft"
    with pytest.raises(CampaignError, match="name"):
        campaigns.create(wf.engine, wf.settings, draft(), actor="m", name=first["name"])
    with pytest.raises(CampaignError, match="name"):
        campaigns.create(wf.engine, wf.settings, draft(), actor="m", name="Bad Name; drop table")
    with pytest.raises(CampaignError, match="campaign: .*'chernaya_pyatnitsa_script'"):
        campaigns.show(wf.engine, wf.settings, "chernaya_pyatnitsa_scirpt")
    changed = campaigns.update(wf.engine, wf.settings, first["name"], draft(title="Пятница", holdout=10),
                               actor="m@shop.example")
    assert (changed["title"], changed["holdout"]) == ("Пятница", 10)
    with wf.engine.connect() as conn:
        assert [i["name"] for i in campaigns.listing(conn)] == [second["name"], first["name"]]
        assert campaigns.listing(conn, status="done") == []
        actions = list(conn.execute(select(AuditEntry.action).order_by(AuditEntry.id)).scalars())
    assert actions == ["campaign_created", "campaign_created", "campaign_updated"]


# --- preview ------------------------------------------------------------------------------

def test_the_preview_counts_who_gets_it_and_why_the_others_do_not(wf: HubDB) -> None:
    ids = base(wf)
    made = campaigns.create(wf.engine, wf.settings, draft(holdout=30), actor="m")
    report = campaigns.preview(wf.engine, wf.settings, made["name"], sample=3)
    members = sorted(ids.values())
    reachable = [ids[k] for k in ids if k not in UNREACHABLE]
    held = {cid for cid in reachable if triggers.in_holdout_name(made["workflow"], cid, 30)}
    assert held and len(held) < len(reachable)  # the hash puts some people in the control group, not everyone
    # The control group is drawn among those the letter reaches, as the engine enters only them.
    expected = {"holdout": len(held), "no_address": 1, "no_consent": 1, "suppressed": 1, "capped": 1}
    assert report["members"] == len(members)
    assert report["held_back"] == expected
    assert report["will_receive"] == len(members) - sum(expected.values())
    assert report["quiet_hours"] == 0  # email has no quiet hours by default
    assert len(report["sample"]) == 3 and all(s["address"].endswith("@example.ru") for s in report["sample"])
    # A draft not yet saved previews the same way (its control group not yet drawn by its name).
    unsaved = campaigns.preview(wf.engine, wf.settings, draft(), sample=0)
    assert unsaved["held_back"] == {"holdout": 0, "no_address": 1, "no_consent": 1, "suppressed": 1, "capped": 1}
    assert unsaved["sample"] == []
    # The letter as it would go, with a sample code when the campaign issues one.
    promo = campaigns.create(wf.engine, wf.settings, draft(template="sale_promo_email",
                                                           promo={"discount": 15, "valid": "14d", "prefix": "SALE"}),
                             actor="m")
    letter = campaigns.render_for(wf.engine, wf.settings, promo["name"], ids["anna"])
    assert letter["address"] == "anna@example.ru" and letter["subject"] == "Скидка 15%"
    assert "SALE-" in letter["text"]
    with pytest.raises(CampaignError, match="contact"):
        campaigns.render_for(wf.engine, wf.settings, promo["name"], 999_999)
    with pytest.raises(CampaignError, match="contact"):
        campaigns.render_for(wf.engine, wf.settings, promo["name"], "1; drop")  # type: ignore[arg-type]


# --- sending exactly once -----------------------------------------------------------------

def test_sending_twice_and_at_once_from_two_threads_sends_each_member_one_letter(wf: HubDB) -> None:
    ids = base(wf)
    made = campaigns.create(wf.engine, wf.settings, draft(), actor="m")
    name = made["name"]
    errors: list[BaseException] = []

    def go() -> None:
        try:
            campaigns.send_now(wf.engine, wf.settings, name, actor="m")
        except BaseException as exc:  # noqa: BLE001 - the test reports it below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    again = campaigns.send_now(wf.engine, wf.settings, name, actor="m")
    # Only those the letter reaches enter: nobody held back has a run (and so no promo code).
    assert again["status"] == "sending" and again["counts"]["runs"] == len(ids) - len(UNREACHABLE)
    assert again["counts"]["held_back"] == {"no_consent": 1, "no_address": 1, "suppressed": 1, "capped": 1}
    deliver(wf)
    campaigns.send_now(wf.engine, wf.settings, name, actor="m")  # after the sending, too
    deliver(wf)
    sent = letters(wf, name)
    per_contact = Counter(m.contact_id for m in sent)
    assert set(per_contact.values()) == {1}
    expected = {ids[k] for k in ids if k not in ("boris", "olga", "petr", "roma")}
    assert {m.contact_id for m in sent if m.status == "sent"} == expected
    assert not [m for m in sent if m.status != "sent"]
    assert all(m.meta["campaign"] == name and m.meta["workflow"] == made["workflow"] for m in sent)
    with wf.engine.connect() as conn:
        started = conn.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "campaign_started")).scalar_one()
    assert started == 1
    assert campaigns.start_due(wf.engine, wf.settings) == []
    done = campaigns.show(wf.engine, wf.settings, name)
    assert done["status"] == "done" and done["sent"] == len(expected)
    assert done["counts"]["messages"] == {"sent": len(expected)}
    # The carrying workflow stays out of the workflows' own list and cannot be switched on.
    with wf.engine.connect() as conn:
        assert made["workflow"] not in [r.name for r in store.rows(conn)]
    result = hub("workflows", "enable", made["workflow"])
    assert result.exit_code == 1 and "hub campaigns" in result.output and "Traceback" not in result.output
    result = hub("workflows", "list", "--json")
    assert result.exit_code == 0 and made["workflow"] not in result.output


def test_a_real_smtp_server_gets_the_test_once_and_the_campaign_once(wf: HubDB, mailbox: Any) -> None:
    box, port = mailbox
    settings = replace(wf.settings, extra={**wf.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
                                           "mail_from": "Лавка <shop@example.ru>"})
    ids = base(wf)
    made = campaigns.create(wf.engine, settings, draft(template="sale_promo_email",
                                                       promo={"discount": 10, "valid": "7d"}), actor="m")
    test = campaigns.send_test(wf.engine, settings, made["name"], to="me@shop.example", actor="m@shop.example")
    assert len(box.received) == 1 and box.received[0].rcpt_tos == ["me@shop.example"]
    assert test["subject"].startswith("[") and "Скидка 10%" in test["subject"]
    with pytest.raises(CampaignError, match="to"):
        campaigns.send_test(wf.engine, settings, made["name"], to="not an address", actor="m")
    campaigns.send_now(wf.engine, settings, made["name"], actor="m")
    deliver(wf, settings=settings)
    campaigns.send_now(wf.engine, settings, made["name"], actor="m")
    deliver(wf, settings=settings)
    to = Counter(r for got in box.received[1:] for r in got.rcpt_tos)
    expected = {f"{k}@example.ru" for k in ids if k not in ("boris", "olga", "petr", "roma")}
    assert set(to) == expected and set(to.values()) == {1}
    shown = campaigns.show(wf.engine, settings, made["name"])
    assert shown["sent"] == len(expected)  # the test letter is nobody's: not counted
    # A code for each letter that went: nobody held back (no consent, suppressed, no address) got one.
    assert shown["counts"]["promo_issued"] == len(expected) == shown["sent"]
    with wf.engine.connect() as conn:
        entries = list(conn.execute(select(AuditEntry.action, AuditEntry.details)
                                    .where(AuditEntry.action.like("%test_sent"))))
    # Audited once, by the campaign, with the staff member's own address whole.
    assert [(a, d["to"], d["campaign"]) for a, d in entries] == [("campaign_test_sent", "me@shop.example",
                                                                  made["name"])]


# --- schedule, pause, cancel --------------------------------------------------------------

def test_a_schedule_in_moscow_time_starts_when_the_scheduler_reaches_it(wf: HubDB,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TIMEZONE", "Europe/Moscow")
    db = replace(wf, settings=load_settings())
    base(db)
    made = campaigns.create(db.engine, db.settings, draft(), actor="m")
    day = (utcnow() + dt.timedelta(days=3)).date()
    result = hub("campaigns", "schedule", made["name"], "--at", f"{day.isoformat()} 10:00")
    assert result.exit_code == 0, result.output
    at = dt.datetime.combine(day, dt.time(7, 0), tzinfo=dt.timezone.utc)  # 10:00 in Moscow
    shown = campaigns.show(db.engine, db.settings, made["name"])
    assert shown["status"] == "scheduled" and shown["scheduled_at"] == at
    assert campaigns.start_due(db.engine, db.settings, now=at - dt.timedelta(minutes=1)) == []
    assert campaigns.show(db.engine, db.settings, made["name"])["status"] == "scheduled"
    assert campaigns.start_due(db.engine, db.settings, now=at) == [made["name"]]
    assert campaigns.start_due(db.engine, db.settings, now=at + dt.timedelta(minutes=1)) == []
    started = campaigns.show(db.engine, db.settings, made["name"])
    assert started["status"] == "sending" and started["started_at"] == at
    deliver(db, now=at)  # the runs write their letters, due at 10:00; the outbox has not sent them yet
    assert {m.status for m in letters(db, made["name"])} == {"queued"}
    campaigns.start_due(db.engine, db.settings, now=at + dt.timedelta(minutes=1))
    # Not done while a letter still waits in the outbox (quiet hours, the cap, a retry would do the same).
    assert campaigns.show(db.engine, db.settings, made["name"])["status"] == "sending"
    messaging.dispatch(db.engine, db.settings, now=at + dt.timedelta(minutes=1))
    campaigns.start_due(db.engine, db.settings, now=at + dt.timedelta(minutes=2))
    assert campaigns.show(db.engine, db.settings, made["name"])["status"] == "done"
    # In the past, without a zone, or garbage: refused with what is wrong.
    other = campaigns.create(db.engine, db.settings, draft(), actor="m")
    for text in ("2020-01-01 10:00", "tomorrow-ish", "2026-13-45 99:00"):
        result = hub("campaigns", "schedule", other["name"], "--at", text)
        assert result.exit_code == 1 and result.output.startswith("Ошибка: ") and "Traceback" not in result.output
    with pytest.raises(CampaignError, match="scheduled_at"):
        campaigns.schedule(db.engine, db.settings, other["name"], dt.datetime(2030, 1, 1, 10), actor="m")


def test_pause_holds_the_letters_not_yet_sent_and_resume_sends_them(wf: HubDB) -> None:
    ids = base(wf)
    made = campaigns.create(wf.engine, wf.settings, draft(), actor="m")
    name = made["name"]
    with pytest.raises(CampaignError, match="status"):
        campaigns.pause(wf.engine, name, actor="m")  # a draft is not sending
    campaigns.send_now(wf.engine, wf.settings, name, actor="m")
    with wf.engine.connect() as conn:  # the first few go, then the marketer pauses
        first = campaigns.runs_t.c
        reachable = [ids[k] for k in ("anna", "p0", "p1")]
        few = list(conn.execute(select(first.id).where(first.workflow_id == made_workflow_id(wf, name),
                                                       first.contact_id.in_(reachable))).scalars())
    from workflows import runner

    runner.advance(wf.engine, wf.settings, few)
    assert len(letters(wf, name)) == 3
    assert campaigns.pause(wf.engine, name, actor="m")["status"] == "paused"
    deliver(wf)
    assert len(letters(wf, name)) == 3  # nothing more while paused
    assert campaigns.start_due(wf.engine, wf.settings) == []
    assert campaigns.show(wf.engine, wf.settings, name)["status"] == "paused"  # not done: runs wait
    with pytest.raises(CampaignError, match="status"):
        campaigns.cancel(wf.engine, name, actor="m")
    assert campaigns.resume(wf.engine, name, actor="m")["status"] == "sending"
    deliver(wf)
    assert Counter(m.contact_id for m in letters(wf, name)) == Counter(
        {cid: 1 for k, cid in ids.items() if k not in UNREACHABLE})
    campaigns.start_due(wf.engine, wf.settings)
    assert campaigns.show(wf.engine, wf.settings, name)["status"] == "done"
    with pytest.raises(CampaignError, match="status") as caught:
        campaigns.resume(wf.engine, name, actor="m")
    assert "завершена" in str(caught.value)


def made_workflow_id(db: HubDB, name: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(campaigns.campaigns_t.c.workflow_id).where(
            campaigns.campaigns_t.c.name == name)).scalar_one()


def test_cancel_only_before_it_starts(wf: HubDB) -> None:
    base(wf)
    made = campaigns.create(wf.engine, wf.settings, draft(), actor="m")
    campaigns.schedule(wf.engine, wf.settings, made["name"], utcnow() + dt.timedelta(days=1), actor="m")
    assert campaigns.cancel(wf.engine, made["name"], actor="m")["status"] == "cancelled"
    for move in (lambda: campaigns.send_now(wf.engine, wf.settings, made["name"], actor="m"),
                 lambda: campaigns.cancel(wf.engine, made["name"], actor="m"),
                 lambda: campaigns.update(wf.engine, wf.settings, made["name"], draft(), actor="m"),
                 lambda: campaigns.schedule(wf.engine, wf.settings, made["name"], utcnow() + dt.timedelta(days=1),
                                            actor="m")):
        with pytest.raises(CampaignError, match="status") as caught:
            move()
        assert "отменена" in str(caught.value)
    assert campaigns.start_due(wf.engine, wf.settings, now=utcnow() + dt.timedelta(days=2)) == []
    assert letters(wf, made["name"]) == []


# --- the command line ---------------------------------------------------------------------

def test_the_command_line_creates_previews_sends_and_reports_in_json(wf: HubDB) -> None:
    ids = base(wf)
    result = hub("campaigns", "create", "--title", "Весна", "--segment", "buyers", "--channel", "email",
                 "--template", "sale_promo_email", "--promo-discount", "15", "--promo-valid", "14d",
                 "--promo-prefix", "SPRING", "--holdout", "10", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["name"] == "vesna" and created["promo"] == {"discount": 15, "valid": "14d", "prefix": "SPRING"}
    preview = json.loads(hub("campaigns", "preview", "vesna", "--sample", "2", "--json").output)
    assert preview["members"] == len(ids) and len(preview["sample"]) == 2
    human = hub("campaigns", "preview", "vesna")
    assert human.exit_code == 0 and "нет согласия" in human.output
    result = hub("campaigns", "send", "vesna")
    assert result.exit_code == 0, result.output
    shown = json.loads(hub("campaigns", "show", "vesna", "--json").output)
    # Without Redis the command sends every letter itself, so the campaign is over when it returns.
    assert shown["status"] == "done" and shown["sent"] == preview["will_receive"]
    listed = json.loads(hub("campaigns", "list", "--status", "done", "--json").output)
    assert [i["name"] for i in listed] == ["vesna"]
    for args in (("campaigns", "send", "vesnaa"), ("campaigns", "cancel", "vesna"),
                 ("campaigns", "create", "--title", "X", "--segment", "nope", "--channel", "email",
                  "--template", "sale_email"),
                 ("campaigns", "test", "vesna", "--to", "<script>"),
                 ("campaigns", "list", "--status", "lost")):
        result = hub(*args)
        assert result.exit_code != 0 and "Traceback" not in result.output and "Ошибка" in result.output, args
    for command in ("create", "list", "show", "preview", "test", "schedule", "send", "pause", "resume", "cancel"):
        assert hub("campaigns", command, "--help").exit_code == 0


# --- Redis and workers --------------------------------------------------------------------

@pytest.fixture
def rq(wf: HubDB, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    Redis.from_url(redis_url).flushdb()
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    return replace(wf, settings=load_settings())


def test_with_redis_the_scheduler_starts_it_and_a_worker_sends_it(rq: HubDB) -> None:
    ids = base(rq)
    made = campaigns.create(rq.engine, rq.settings, draft(), actor="m")
    at = utcnow() + dt.timedelta(hours=2)
    campaigns.schedule(rq.engine, rq.settings, made["name"], at, actor="m")
    early = ticks.tick(rq.engine, rq.settings, now=at - dt.timedelta(minutes=5))
    assert early.campaigns == [] and early.enqueued == 0
    # The time comes: workers take runs by the real clock, so the schedule is moved to a moment just past.
    at = utcnow() - dt.timedelta(seconds=1)
    with rq.engine.begin() as conn:
        conn.execute(update(campaigns.campaigns_t).values(scheduled_at=at))
    report = ticks.tick(rq.engine, rq.settings, now=at)
    assert report.campaigns == [made["name"]]
    with rq.engine.connect() as conn:  # started and handed to workers at once, in batches of run ids
        r = campaigns.runs_t.c
        held = conn.execute(select(func.count()).where(r.workflow_id == made_workflow_id(rq, made["name"]),
                                                       r.job_id.is_not(None))).scalar_one()
    assert held == len(ids) - len(UNREACHABLE)
    assert ticks.tick(rq.engine, rq.settings, now=at).enqueued == 0  # they sit in live jobs already
    assert letters(rq, made["name"]) == []  # the scheduler only hands out the work
    queue.work(rq.settings, ("default", "low"), burst=True, simple=True)
    sent = letters(rq, made["name"])
    assert Counter(m.contact_id for m in sent) == Counter(
        {cid: 1 for k, cid in ids.items() if k not in UNREACHABLE})
    ticks.tick(rq.engine, rq.settings, now=at + dt.timedelta(minutes=1))
    assert campaigns.show(rq.engine, rq.settings, made["name"])["status"] == "done"


# --- review findings: links, finishing, pause in the outbox, failures, races, states, times --------

SIGNED_LINKS = message_templates.Template(
    name="links_email", channel="email", subject="Ссылки",
    text="Отписаться: {{ unsubscribe_url }} Настройки: {{ preferences_url }} Подтвердить: {{ confirm_url }}",
    html='<a href="{{ unsubscribe_url }}">x</a><a href="{{ preferences_url }}">y</a><a href="{{ confirm_url }}">z</a>')


def test_a_preview_carries_no_link_the_public_routes_accept(wf: HubDB) -> None:
    ids = base(wf)
    with wf.engine.begin() as conn:
        message_templates.save(conn, wf.settings, SIGNED_LINKS)
    made = campaigns.create(wf.engine, wf.settings, draft(template="links_email"), actor="m")
    letter = campaigns.render_for(wf.engine, wf.settings, made["name"], ids["anna"])
    found = re.findall(r"/(u|preferences|confirm)/([^\s\"'<]+)", letter["text"] + letter["html"])
    assert {kind for kind, _ in found} == {"u", "preferences", "confirm"}
    readers = {"u": links.read_unsubscribe, "preferences": links.read_preferences, "confirm": links.read_confirm}
    for kind, token in found:  # the public routes read their tokens with these: none is accepted
        assert token == message_templates.PREVIEW_TOKEN
        with pytest.raises(Exception):  # noqa: B017 - whatever the reader raises, it does not accept the token
            readers[kind](wf.settings, token)
    with wf.engine.connect() as conn:  # and nobody's consent changed
        assert consent.can_contact(conn, wf.settings, ids["anna"], "email", "marketing",
                                   "anna@example.ru").allowed


def test_a_paused_campaigns_letters_already_in_the_outbox_wait_and_go_on_resume(wf: HubDB) -> None:
    base(wf)
    made = campaigns.create(wf.engine, wf.settings, draft(), actor="m")
    name = made["name"]
    campaigns.send_now(wf.engine, wf.settings, name, actor="m")
    from workflows import runner

    with wf.engine.connect() as conn:
        ids = list(conn.execute(select(campaigns.runs_t.c.id).where(
            campaigns.runs_t.c.workflow_id == made_workflow_id(wf, name))).scalars())
    runner.advance(wf.engine, wf.settings, ids, dispatch=False)  # written to the outbox, not yet sent
    written = letters(wf, name)
    assert written and {m.status for m in written} == {"queued"}
    campaigns.pause(wf.engine, name, actor="m")
    messaging.dispatch(wf.engine, wf.settings)
    held = letters(wf, name)
    assert {m.status for m in held} == {"queued"} and all(m.error == "held: campaign paused" for m in held)
    campaigns.start_due(wf.engine, wf.settings)
    assert campaigns.show(wf.engine, wf.settings, name)["status"] == "paused"
    campaigns.resume(wf.engine, name, actor="m")
    messaging.dispatch(wf.engine, wf.settings)
    assert {m.status for m in letters(wf, name)} == {"sent"}
    campaigns.start_due(wf.engine, wf.settings)
    assert campaigns.show(wf.engine, wf.settings, name)["status"] == "done"


def test_one_campaigns_failure_does_not_stop_the_tick_or_the_others(wf: HubDB,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    base(wf)
    broken = campaigns.create(wf.engine, wf.settings, draft(title="Сломанная"), actor="m")
    fine = campaigns.create(wf.engine, wf.settings, draft(title="Хорошая"), actor="m")
    at = utcnow() + dt.timedelta(hours=1)
    for made in (broken, fine):
        campaigns.schedule(wf.engine, wf.settings, made["name"], at, actor="m")
    real = campaigns.send_now

    def failing(engine: Any, settings: Any, name: str, **kwargs: Any) -> Any:
        if name == broken["name"]:
            raise IntegrityError("INSERT …", {"email": "anna@example.ru"}, Exception("duplicate key"))
        return real(engine, settings, name, **kwargs)

    monkeypatch.setattr(campaigns, "send_now", failing)
    report = ticks.tick(wf.engine, wf.settings, now=at)
    assert report.campaigns == [fine["name"]]
    error = report.errors[f"campaign {broken['name']}"]
    assert "IntegrityError" in error and "anna@" not in error  # no personal data in the report
    assert campaigns.show(wf.engine, wf.settings, broken["name"])["status"] == "scheduled"  # tried again next tick
    monkeypatch.setattr(campaigns, "start_due", lambda *a, **k: 1 / 0)
    later = ticks.tick(wf.engine, wf.settings, now=at)
    assert later.errors["campaigns"] == "ZeroDivisionError"


def test_an_edit_saved_while_it_starts_is_not_lost(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    base(wf)
    made = campaigns.create(wf.engine, wf.settings, draft(title="Старое"), actor="m")
    with wf.engine.connect() as conn:
        stale = campaigns._row(conn, made["name"])
    campaigns.update(wf.engine, wf.settings, made["name"], draft(title="Новое"), actor="m")
    real, calls = campaigns._row, []

    def first_stale(conn: Any, name: str) -> Any:  # the starter read the row just before the edit was saved
        calls.append(name)
        return stale if len(calls) == 1 else real(conn, name)

    monkeypatch.setattr(campaigns, "_row", first_stale)
    campaigns.send_now(wf.engine, wf.settings, made["name"], actor="m")
    with wf.engine.connect() as conn:
        definition = conn.execute(select(store.workflows_t.c.definition).where(
            store.workflows_t.c.name == made["workflow"])).scalar_one()
    assert definition["title"] == "Новое"


def test_a_scheduled_campaign_that_no_longer_checks_goes_back_to_draft_with_the_reason(wf: HubDB) -> None:
    base(wf)
    made = campaigns.create(wf.engine, wf.settings, draft(), actor="m")
    at = utcnow() + dt.timedelta(hours=1)
    campaigns.schedule(wf.engine, wf.settings, made["name"], at, actor="m")
    with wf.engine.begin() as conn:
        message_templates.remove(conn, "sale_email")
    with use_language("en"):
        report = ticks.tick(wf.engine, wf.settings, now=at)
    assert report.campaigns == [] and "sale_email" in report.errors[f"campaign {made['name']}"]
    shown = campaigns.show(wf.engine, wf.settings, made["name"])
    assert shown["status"] == "draft" and shown["scheduled_at"] is None
    assert shown["problem"] and "sale_email" in shown["problem"]
    ticks.tick(wf.engine, wf.settings, now=at + dt.timedelta(minutes=1))  # not tried again and again
    with wf.engine.connect() as conn:
        held = conn.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "campaign_held")).scalar_one()
    assert held == 1
    assert "campaign_held" in campaigns.AUDIT_ACTIONS
    with wf.engine.begin() as conn:
        message_templates.save(conn, wf.settings, LETTER)
    campaigns.update(wf.engine, wf.settings, made["name"], draft(title="Исправленная"), actor="m")
    assert campaigns.show(wf.engine, wf.settings, made["name"])["problem"] is None


def test_sending_a_finished_or_paused_campaign_says_what_it_is(wf: HubDB) -> None:
    base(wf)
    made = campaigns.create(wf.engine, wf.settings, draft(), actor="m")
    name = made["name"]
    campaigns.send_now(wf.engine, wf.settings, name, actor="m")
    campaigns.pause(wf.engine, name, actor="m")
    with use_language("en"), pytest.raises(CampaignError, match="status") as caught:
        campaigns.send_now(wf.engine, wf.settings, name, actor="m")
    assert "is paused; it can only be resumed" in str(caught.value)
    campaigns.resume(wf.engine, name, actor="m")
    deliver(wf)
    campaigns.start_due(wf.engine, wf.settings)
    assert campaigns.show(wf.engine, wf.settings, name)["status"] == "done"
    with use_language("en"), pytest.raises(CampaignError, match="status") as caught:
        campaigns.send_now(wf.engine, wf.settings, name, actor="m")
    assert "finished" in str(caught.value)
    result = hub("campaigns", "send", name)
    assert result.exit_code == 1 and "Ошибка" in result.output and "завершена" in result.output


def _gap(zone: ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    """The first local time within a year that the clocks skip in `zone` (None where they never move)."""
    t = now.astimezone(zone).replace(minute=30, second=0, microsecond=0, tzinfo=None)
    for _ in range(24 * 366):
        t += dt.timedelta(hours=1)
        local = t.replace(tzinfo=zone)
        if local.astimezone(dt.timezone.utc).astimezone(zone).replace(tzinfo=None) != t:
            return local
    return None


def test_far_off_and_skipped_times_are_refused_by_name(wf: HubDB) -> None:
    base(wf)
    made = campaigns.create(wf.engine, wf.settings, draft(), actor="m")
    far = dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    with use_language("en"), pytest.raises(CampaignError, match="at most a year ahead"):
        campaigns.schedule(wf.engine, wf.settings, made["name"], far, actor="m")
    with pytest.raises(CampaignError, match="scheduled_at"):
        campaigns.schedule(wf.engine, wf.settings, made["name"], utcnow() + dt.timedelta(days=400), actor="m")
    for text in ("9999-12-31T23:00-05:00", "9999-12-31 23:59", "0001-01-01T00:00+14:00"):
        result = hub("campaigns", "schedule", made["name"], "--at", text)
        assert result.exit_code == 1 and result.output.startswith("Ошибка: "), (text, result.output)
        assert "Traceback" not in result.output
    gap = _gap(ZoneInfo("Europe/Berlin"), utcnow())
    assert gap is not None
    with use_language("en"), pytest.raises(CampaignError, match="does not exist in Europe/Berlin"):
        campaigns.schedule(wf.engine, wf.settings, made["name"], gap, actor="m")
    assert campaigns.show(wf.engine, wf.settings, made["name"])["status"] == "draft"


def test_every_campaign_command_reports_in_json(wf: HubDB, mailbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    box, port = mailbox
    monkeypatch.setenv("HUB_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("HUB_MAIL_FROM", "Лавка <shop@example.ru>")
    base(wf)
    made = campaigns.create(wf.engine, wf.settings, draft(), actor="m")
    name = made["name"]

    def run(*args: str) -> dict[str, Any]:
        result = hub("campaigns", *args, "--json")
        assert result.exit_code == 0, (args, result.output)
        return json.loads(result.output)

    tested = run("test", name, "--to", "me@shop.example")
    assert tested["name"] == name and tested["test"]["address"] == "me@shop.example" and len(box.received) == 1
    at = (utcnow() + dt.timedelta(days=2)).replace(microsecond=0)
    scheduled = run("schedule", name, "--at", at.isoformat())
    assert scheduled["status"] == "scheduled" and dt.datetime.fromisoformat(scheduled["scheduled_at"]) == at
    sent = run("send", name)
    assert sent["status"] in ("sending", "done") and sent["counts"]["runs"] == len(PEOPLE) - len(UNREACHABLE)
    other = campaigns.create(wf.engine, wf.settings, draft(title="Другая"), actor="m")
    assert run("cancel", other["name"])["status"] == "cancelled"
    third = campaigns.create(wf.engine, wf.settings, draft(title="Третья"), actor="m")
    campaigns.send_now(wf.engine, wf.settings, third["name"], actor="m")
    paused = run("pause", third["name"])
    assert paused["status"] == "paused" and paused["paused_at"]
    assert run("resume", third["name"])["status"] == "sending"
