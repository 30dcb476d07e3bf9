"""Sending politely per destination domain (plugins.mailing.domain_rates): the setting, the groups, the holds.

The shared case is real: two processes with their own working folders
dispatch one outbox (one SQLite file) through one Redis to a real SMTP
server, and the arrival times that server records must keep the pace
whatever the machine's load (slower is always fine).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import func, select

from hub import messaging, ratelimit
from hub.config import SettingsError
from hub.i18n import use_language
from hub.models import Message
from hub.send_reasons import reason_text
import plugins.mailing
from plugins.mailing import domain_rates
from plugins.mailing.domain_rates import Rate, parse, parse_rate
from tests.conftest import HubDB
from tests.processes import hub_env, kill_session
from tests.support.admin import client_as, post, text
from tests.support.smtp import Mailbox, smtp_server
from tests.test_mailing_smtp import person, queue_reactivation, smtp_settings
from tests.test_message_log import add_message

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mailing(plugin_manager: Any) -> Any:
    """The mailing plugin on the test's plugin manager: its channels, its send rule, its Russian."""
    plugin_manager.register(plugins.mailing, name="mailing")
    return plugin_manager


@pytest.fixture(autouse=True)
def fresh_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with empty buckets: in-process ones live as long as the process."""
    monkeypatch.setattr(ratelimit, "_local", {})
    monkeypatch.setattr(domain_rates, "_buckets", {})
    monkeypatch.setattr(domain_rates, "_turns", domain_rates._Turns())
    monkeypatch.setattr(domain_rates, "_held", domain_rates._Held())


# --- the setting -----------------------------------------------------------------------------------

def test_paces_per_second_minute_and_hour() -> None:
    rates = parse("mail.ru=20/s, yandex.ru=1200/min; gmail.com=3000/h,\n*=50/s")
    assert rates is not None
    assert rates.rates == {"mail.ru": Rate(20, 1), "yandex.ru": Rate(1200, 60), "gmail.com": Rate(3000, 3600)}
    assert rates.others == Rate(50, 1)
    assert str(Rate(3000, 3600)) == "3000/h" and Rate(1200, 60).per_second == 20
    assert parse("") is None and parse(None) is None and parse_rate("none") is None
    assert parse({"Mail.RU": "20/S", "*": "none"}) == domain_rates.DomainRates({"mail.ru": Rate(20, 1)}, None)


def test_one_providers_domains_share_one_pace_and_other_domains_each_their_own() -> None:
    rates = parse("bk.ru=10/s, ya.ru=15/s, *=5/s")
    assert rates is not None
    for domain in ("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru", "my.com"):
        assert rates.for_domain(domain) == ("mail.ru", Rate(10, 1))
    for domain in ("yandex.ru", "ya.ru", "yandex.com", "yandex.by", "yandex.kz", "yandex.ua", "narod.ru"):
        assert rates.for_domain(domain) == ("yandex.ru", Rate(15, 1))
    assert rates.for_domain("googlemail.com") == ("gmail.com", Rate(5, 1))  # the group, at the others' pace
    assert rates.for_domain("shop.example") == ("shop.example", Rate(5, 1))
    assert rates.for_domain("rambler.ru") == ("rambler.ru", Rate(5, 1))  # its own bucket, not a shared one
    only = parse("mail.ru=10/s")
    assert only is not None and only.for_domain("gmail.com") is None  # no `*`: other domains are not paced
    assert domain_rates.domain_of("Anna@Mail.RU") == "mail.ru" and domain_rates.domain_of("no-at-sign") is None


@pytest.mark.parametrize(("raw", "words"), [
    ("mail.ru=fast", "'fast'"),
    ("mail.ru=0/s", "'0/s'"),
    ("mail.ru=20/d", "'20/d'"),
    ("mail.ru=-5/s", "'-5/s'"),
    ("mail.ru 20/s", "'mail.ru 20/s'"),
    ("=20/s", "''"),
    ("<script>alert(1)</script>=1/s", "'<script>alert(1)</script>'"),
    ("mail.ru=20/s, bk.ru=10/s", "mail.ru"),
    ("gmail.com=20/s, gmail.com=30/s", "gmail.com"),
    ("mail.ru=99999999999/s", "'99999999999/s'"),
    ("x" * 20_000, "HUB_MAIL_DOMAIN_RATES"),
    (["mail.ru=20/s"], "HUB_MAIL_DOMAIN_RATES"),
])
def test_a_bad_setting_is_refused_in_russian_naming_the_variable_and_the_bad_part(raw: Any, words: str) -> None:
    with use_language("ru"), pytest.raises(SettingsError) as caught:
        parse(raw)
    message = str(caught.value)
    assert message.startswith("HUB_MAIL_DOMAIN_RATES: ") and words in message
    assert any("а" <= ch <= "я" for ch in message.lower()), message


def test_the_hub_toml_table_is_read_and_named_in_its_errors(hub_db: HubDB) -> None:
    table = {"mailing": {"domain_rates": {"mail.ru": "2/x"}}}
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, **table})
    with pytest.raises(SettingsError, match=r"^\[mailing\] domain_rates: '2/x'"):
        domain_rates.load(settings)
    settings = replace(settings, extra={**settings.extra, "mailing": {"domain_rates": {"mail.ru": "2/s"}}})
    loaded = domain_rates.load(settings)
    assert loaded is not None and loaded.rates == {"mail.ru": Rate(2, 1)}


# --- holds, in one process -------------------------------------------------------------------------

def test_a_busy_domain_is_held_in_turns_while_the_others_go_in_the_same_pass(hub_db: HubDB, mailing,
                                                                                 mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port, mail_domain_rates="mail.ru=1/min, *=none")
    ids = [person(hub_db, f"Имя{i}", f"p{i}@{d}") for i, d in enumerate(["mail.ru", "bk.ru", "inbox.ru"])]
    ids += [person(hub_db, f"Имя{i}", f"q{i}@{d}") for i, d in enumerate(["gmail.com", "yandex.ru", "shop.example"])]
    queue_reactivation(hub_db, settings, ids)
    now = dt.datetime.now(dt.timezone.utc)
    report = messaging.dispatch(hub_db.engine, settings)
    assert (report.sent, report.held) == (4, 2)
    arrived = sorted(r.rcpt_tos[0].split("@")[1] for r in box.received)
    assert arrived == ["gmail.com", "mail.ru", "shop.example", "yandex.ru"]
    with hub_db.engine.connect() as conn:
        held = conn.execute(select(Message.address, Message.due_at, Message.error)
                            .where(Message.status == "queued").order_by(Message.id)).all()
    assert [h.address for h in held] == ["p1@bk.ru", "p2@inbox.ru"]
    waits = [(h.due_at.replace(tzinfo=dt.timezone.utc) - now).total_seconds() for h in held]
    assert waits[0] >= 59 and waits[1] - waits[0] >= 59  # one turn a minute, not all at once
    assert held[0].error == "held: domain rate 1/min for mail.ru"
    with use_language("ru"):
        assert reason_text(held[0].error) == "отложено: вежливая отправка на mail.ru: не больше 1 письма в минуту"
    with use_language("en"):
        assert reason_text(held[0].error) == "held: sending pace for mail.ru: at most 1 letter a minute"
    assert messaging.dispatch(hub_db.engine, settings).claimed == 0  # nothing is due before its turn


def test_a_dispatch_that_finds_held_letters_due_sends_them_at_the_pace(hub_db: HubDB, mailing) -> None:
    """As the scheduler's dispatch every 30 s does: all the held letters are due at once, and all go."""
    box = StampingMailbox()
    with smtp_server(box) as port:
        settings = smtp_settings(hub_db, port, mail_domain_rates="mail.ru=2/s")
        queue_reactivation(hub_db, settings, [person(hub_db, f"Имя{i}", f"p{i}@mail.ru") for i in range(6)])
        first = messaging.dispatch(hub_db.engine, settings)
        assert first.sent >= 1 and first.sent + first.held == 6  # a slow pass finds more slots: slower is fine
        with hub_db.engine.connect() as conn:
            last_turn = conn.execute(select(func.max(Message.due_at))).scalar_one()
        later = last_turn.replace(tzinfo=dt.timezone.utc) + dt.timedelta(seconds=30)
        second = messaging.dispatch(hub_db.engine, settings, now=later)
        assert (second.sent, second.held) == (first.held, 0)
    times = [t for t, _to in box.arrived]
    assert len(times) == 6
    # Slots 500 ms apart, each taken after the letter before it arrived (see the two-worker test).
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert times[j] - times[i] >= (j - i - 1) * 0.5 - 0.001, (i, j, times)


def test_transactional_mail_is_never_held_by_the_pace(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port, mail_domain_rates="mail.ru=1/h")
    cids = [person(hub_db, f"Анна{i}", f"anna{i}@mail.ru", granted=False) for i in range(3)]
    for i, cid in enumerate(cids):
        done = messaging.send(hub_db.engine, settings, contact_id=cid, channel="email",
                              template="double_opt_in_email", key=f"doi:{i}", purpose="transactional")
        assert done["status"] == "sent"
    assert len(box.received) == 3


def test_nothing_is_paced_unless_set(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    ids = [person(hub_db, f"Имя{i}", f"p{i}@mail.ru") for i in range(5)]
    queue_reactivation(hub_db, settings, ids)
    assert messaging.dispatch(hub_db.engine, settings).sent == 5


def test_a_bad_setting_stops_the_dispatch_with_its_name_and_the_letters_wait(hub_db: HubDB, mailing,
                                                                                mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port, mail_domain_rates="mail.ru=lots")
    queue_reactivation(hub_db, settings, [person(hub_db, "Анна", "anna@mail.ru")])
    with pytest.raises(SettingsError, match="HUB_MAIL_DOMAIN_RATES"):
        messaging.dispatch(hub_db.engine, settings)
    assert box.received == []
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Message.status)).scalar() == "queued"


# --- two workers, one Redis ------------------------------------------------------------------------

class StampingMailbox(Mailbox):
    """Records when each letter's data arrived: before the 250 that lets its worker go on."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[tuple[float, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived.append((time.time(), envelope.rcpt_tos[0]))
        return await super().handle_DATA(server, session, envelope)


WORKER = textwrap.dedent("""
    import sys, time
    from sqlalchemy import func, select
    from hub import messaging, plugins
    from hub.config import load_settings
    from hub.db import get_engine
    from hub.models import Message
    settings = load_settings()
    plugins.use(plugins.build(settings))
    engine = get_engine(settings.database_url)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        messaging.dispatch(engine, settings, channels=["email"], batch_size=4)
        with engine.connect() as conn:
            left = conn.execute(select(func.count()).select_from(Message)
                                .where(Message.status.in_(("queued", "deferred", "sending")))).scalar()
        if not left:
            sys.exit(0)
        time.sleep(0.02)
    sys.exit(3)
""")

RATE = 2  # letters a second to the Mail.ru group: 500 ms apart, exact in microseconds
WORKERS = 2


def test_two_workers_share_the_pace_through_redis_and_other_domains_do_not_wait(
        hub_db: HubDB, mailing, redis_url: str, tmp_path: Path) -> None:
    Redis.from_url(redis_url).flushdb()
    box = StampingMailbox()
    with smtp_server(box) as port:
        settings = replace(smtp_settings(hub_db, port), redis_url=redis_url)
        group = ["mail.ru", "bk.ru", "inbox.ru", "list.ru"]
        slow = [person(hub_db, f"Медленный{i}", f"m{i}@{group[i % 4]}") for i in range(12)]
        fast = [person(hub_db, f"Быстрый{i}", f"f{i}@{d}")
                for i, d in enumerate(["gmail.com", "yandex.ru", "shop.example", "rambler.ru"] * 3)]
        queue_reactivation(hub_db, settings, slow + fast)  # Mail.ru's letters first in the outbox
        env = hub_env(HUB_DATABASE_URL=hub_db.url, HUB_REDIS_URL=redis_url, HUB_SECRET_KEY=settings.secret_key or "",
                      HUB_PLUGINS="mailing", HUB_SMTP_URL=f"smtp://127.0.0.1:{port}",
                      HUB_MAIL_FROM="shop@example.ru", HUB_MAIL_DOMAIN_RATES=f"mail.ru={RATE}/s",
                      HUB_PUBLIC_URL="https://hub.example.ru")
        procs = []
        try:
            for n in range(WORKERS):
                (tmp_path / f"w{n}").mkdir()
                procs.append(subprocess.Popen([sys.executable, "-c", WORKER], env=env, cwd=tmp_path / f"w{n}",
                                              start_new_session=True, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT))
            logs = [p.communicate(timeout=300)[0].decode(errors="replace") for p in procs]
        finally:
            for p in procs:
                kill_session(p)
    assert [p.returncode for p in procs] == [0] * WORKERS, logs
    with hub_db.engine.connect() as conn:
        rows = conn.execute(select(Message.status, Message.worker)).all()
    assert {r.status for r in rows} == {"sent"} and len(rows) == 24
    assert len({r.worker for r in rows}) == WORKERS
    times = [t for t, to in box.arrived if to.split("@")[1] in group]
    assert len(times) == 12
    # Letter k's slot is taken after letter k-1 of the same worker arrived, and slots are 1/RATE apart
    # (Redis's clock, this machine's): of the letters arriving in any window, all but each worker's
    # first took their slots inside it. So letters i..j need (j - i - WORKERS) intervals at least.
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert times[j] - times[i] >= (j - i - WORKERS) / RATE - 0.001, (i, j, times)
    # Letters to other domains went out while Mail.ru's waited their turns.
    others = [t for t, to in box.arrived if to.split("@")[1] not in group]
    assert len(others) == 12 and max(others) < times[-1]


# --- the reasons in the message log ----------------------------------------------------------------

def test_the_message_log_says_why_a_letter_waits_in_russian_and_english(admin_env: Any) -> None:
    paced = add_message(admin_env, status="queued", key="paced", address="anna@bk.ru",
                        error="held: domain rate 20/s for mail.ru")
    warm = add_message(admin_env, status="queued", key="warm", error="held: domain warm-up: 750 of 750 sent today")
    viewer = client_as(admin_env, "viewer")
    page = text(viewer.get("/messages/"))
    assert "вежливая отправка на mail.ru: не больше 20 писем в секунду" in page
    assert "прогрев домена: на сегодня отправлено 750 из 750, остальные письма уйдут завтра" in page
    one = text(viewer.get(f"/messages/{paced}"))
    assert "вежливая отправка на mail.ru: не больше 20 писем в секунду" in one
    marketer = client_as(admin_env, "marketer")
    assert post(marketer, "/language", {"language": "en", "next": "/messages/"},
                token_from="/messages/").status_code == 302
    page_en = text(marketer.get(f"/messages/{warm}"))
    assert "domain warm-up: 750 of 750 letters sent today, the rest will go tomorrow" in page_en
