"""Warm-up of a new sending domain (plugins.mailing.warmup): a daily allowance that grows, kept by every worker.

Real letters go to a real SMTP server; the next day is reached by giving
the dispatch a later `now`, as a scheduler replaying that moment would.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from hub import messaging
from hub.config import SettingsError
from hub.i18n import use_language
from hub.models import Message
from hub.send_reasons import reason_text
import plugins.mailing
from plugins.mailing import warmup
from plugins.mailing.warmup import Warmup
from tests.conftest import HubDB
from tests.processes import hub_env, kill_session
from tests.test_mailing_smtp import person, queue_reactivation, smtp_settings

pytestmark = pytest.mark.both_databases


@pytest.fixture
def mailing(plugin_manager: Any) -> Any:
    """The mailing plugin on the test's plugin manager: its channels, its send rule, its Russian."""
    plugin_manager.register(plugins.mailing, name="mailing")
    return plugin_manager


@pytest.fixture(autouse=True)
def fresh_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """The count a process keeps lives as long as the process: each test starts without one."""
    monkeypatch.setattr(warmup, "_count", warmup._Count())


def local_today(zone: str = "Europe/Moscow") -> dt.date:
    return dt.datetime.now(ZoneInfo(zone)).date()


def next_midnight(day: dt.date, zone: str = "Europe/Moscow") -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0), tzinfo=ZoneInfo(zone)).astimezone(
        dt.timezone.utc)


# --- the schedule and its settings -----------------------------------------------------------------

def test_the_allowance_grows_each_day_until_the_target_ends_the_warm_up() -> None:
    plan = Warmup(dt.date(2026, 12, 7), first=500, growth=1.5, target=10_000)
    days = [plan.allowance(dt.date(2026, 12, 7) + dt.timedelta(days=n)) for n in range(9)]
    assert days == [500, 750, 1125, 1687, 2531, 3796, 5695, 8542, None]
    assert plan.allowance(dt.date(2026, 12, 1)) == 500  # before the start: the first day's allowance
    assert plan.allowance(dt.date(2030, 1, 1)) is None


def settings_with(db: HubDB, **extra: Any) -> Any:
    return replace(db.settings, extra={**db.settings.extra, **extra})


def test_settings_from_the_environment_and_from_hub_toml(hub_db: HubDB) -> None:
    assert warmup.parse(hub_db.settings) is None
    plan = warmup.parse(settings_with(hub_db, mail_warmup_start="2026-12-07", mail_warmup_first="1 000",
                                      mail_warmup_growth="2", mail_warmup_target="50000"))
    assert plan == Warmup(dt.date(2026, 12, 7), 1000, 2.0, 50_000)
    table = warmup.parse(settings_with(hub_db, mailing={"warmup_start": dt.date(2026, 12, 7), "warmup_growth": 1.3}))
    assert table == Warmup(dt.date(2026, 12, 7), 500, 1.3, 100_000)


@pytest.mark.parametrize(("extra", "words"), [
    ({"mail_warmup_start": "7 декабря"}, "HUB_MAIL_WARMUP_START: '7 декабря'"),
    ({"mail_warmup_start": "2026-13-01"}, "HUB_MAIL_WARMUP_START"),
    ({"mail_warmup_start": "2026-12-07", "mail_warmup_first": "много"}, "HUB_MAIL_WARMUP_FIRST: 'много'"),
    ({"mail_warmup_start": "2026-12-07", "mail_warmup_first": "0"}, "HUB_MAIL_WARMUP_FIRST"),
    ({"mail_warmup_start": "2026-12-07", "mail_warmup_first": "-5"}, "HUB_MAIL_WARMUP_FIRST"),
    ({"mail_warmup_start": "2026-12-07", "mail_warmup_growth": "1"}, "HUB_MAIL_WARMUP_GROWTH"),
    ({"mail_warmup_start": "2026-12-07", "mail_warmup_growth": "nan"}, "HUB_MAIL_WARMUP_GROWTH"),
    ({"mail_warmup_start": "2026-12-07", "mail_warmup_growth": "<b>x</b>"}, "HUB_MAIL_WARMUP_GROWTH: '<b>x</b>'"),
    ({"mail_warmup_start": "2026-12-07", "mail_warmup_target": "10", "mail_warmup_first": "500"},
     "HUB_MAIL_WARMUP_TARGET (10)"),
    ({"mailing": {"warmup_start": "вчера"}}, "[mailing] warmup_start: 'вчера'"),
])
def test_a_bad_setting_is_refused_in_russian_naming_it(hub_db: HubDB, mailing, extra: dict[str, Any],
                                                       words: str) -> None:
    with use_language("ru"), pytest.raises(SettingsError) as caught:
        warmup.parse(settings_with(hub_db, **extra))
    message = str(caught.value)
    assert message.startswith(words.split(":")[0].split(" (")[0]) and words in message, message
    assert any("а" <= ch <= "я" for ch in message.lower().replace("декабря", "").replace("много", "")
               .replace("вчера", "")), message


# --- holding what is over the day's allowance -----------------------------------------------------

def test_the_excess_waits_for_the_next_local_day_and_that_day_sends_more(hub_db: HubDB, mailing, mailbox,
                                                                         hub_clock: Any) -> None:
    box, port = mailbox
    today = dt.date(2026, 12, 7)
    hub_clock.set(dt.datetime(2026, 12, 7, 10, 0, tzinfo=ZoneInfo("Europe/Moscow")))
    settings = smtp_settings(hub_db, port, mail_warmup_start=today.isoformat(), mail_warmup_first="3",
                             mail_warmup_growth="2", mail_warmup_target="1000")
    ids = [person(hub_db, f"Имя{i}", f"p{i}@example.ru") for i in range(10)]
    queue_reactivation(hub_db, settings, ids)
    buyer = person(hub_db, "Анна", "anna@example.ru", granted=False)
    report = messaging.dispatch(hub_db.engine, settings)
    assert (report.sent, report.held) == (3, 7)
    done = messaging.send(hub_db.engine, settings, contact_id=buyer, channel="email", template="double_opt_in_email",
                          key="doi:1", purpose="transactional")
    assert done["status"] == "sent"  # transactional mail is never held by the warm-up
    assert len(box.received) == 4
    midnight = next_midnight(today)
    assert midnight == dt.datetime(2026, 12, 7, 21, 0, tzinfo=dt.timezone.utc)
    with hub_db.engine.connect() as conn:
        held = conn.execute(select(Message.due_at, Message.error).where(Message.status == "queued")).all()
    assert len(held) == 7 and {h.due_at.replace(tzinfo=dt.timezone.utc) for h in held} == {midnight}
    assert {h.error for h in held} == {"held: domain warm-up: 3 of 3 sent today"}
    with use_language("ru"):
        assert reason_text(held[0].error) == ("отложено: прогрев домена: на сегодня отправлено 3 из 3, "
                                              "остальные письма уйдут завтра")
    with use_language("en"):
        assert reason_text(held[0].error) == ("held: domain warm-up: 3 of 3 letters sent today, "
                                              "the rest will go tomorrow")
    # Later the same day nothing more goes.
    hub_clock.set(midnight - dt.timedelta(minutes=1))
    assert messaging.dispatch(hub_db.engine, settings, now=hub_clock.now).claimed == 0
    # The next local day allows 6: six go, the last waits for the day after.
    hub_clock.set(midnight + dt.timedelta(minutes=1))
    report = messaging.dispatch(hub_db.engine, settings, now=hub_clock.now)
    assert (report.sent, report.held) == (6, 1)
    with hub_db.engine.connect() as conn:
        last = conn.execute(select(Message.due_at, Message.error).where(Message.status == "queued")).one()
    assert last.due_at.replace(tzinfo=dt.timezone.utc) == next_midnight(today + dt.timedelta(days=1))
    assert last.error == "held: domain warm-up: 6 of 6 sent today"
    assert len(box.received) == 10


def test_once_the_allowance_reaches_the_target_nothing_is_held(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    start = local_today() - dt.timedelta(days=3)  # day 4: 2 × 2³ = 16, at the target
    settings = smtp_settings(hub_db, port, mail_warmup_start=start.isoformat(), mail_warmup_first="2",
                             mail_warmup_growth="2", mail_warmup_target="16")
    queue_reactivation(hub_db, settings, [person(hub_db, f"Имя{i}", f"p{i}@example.ru") for i in range(20)])
    assert messaging.dispatch(hub_db.engine, settings).sent == 20


ONE_DISPATCH = textwrap.dedent("""
    from hub import messaging, plugins
    from hub.config import load_settings
    from hub.db import get_engine
    settings = load_settings()
    plugins.use(plugins.build(settings))
    messaging.dispatch(get_engine(settings.database_url), settings, channels=["email"], batch_size=2)
""")


def test_two_workers_together_keep_the_allowance_within_one_letter(hub_db: HubDB, mailing, mailbox,
                                                                    tmp_path: Path) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    queue_reactivation(hub_db, settings, [person(hub_db, f"Имя{i}", f"p{i}@example.ru") for i in range(30)])
    env = hub_env(HUB_DATABASE_URL=hub_db.url, HUB_SECRET_KEY=settings.secret_key or "", HUB_PLUGINS="mailing",
                  HUB_SMTP_URL=f"smtp://127.0.0.1:{port}", HUB_MAIL_FROM="shop@example.ru",
                  HUB_PUBLIC_URL="https://hub.example.ru", HUB_MAIL_WARMUP_START=local_today().isoformat(),
                  HUB_MAIL_WARMUP_FIRST="7")
    procs = []
    try:
        for n in range(2):
            (tmp_path / f"w{n}").mkdir()
            procs.append(subprocess.Popen([sys.executable, "-c", ONE_DISPATCH], env=env, cwd=tmp_path / f"w{n}",
                                          start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        logs = [p.communicate(timeout=300)[0].decode(errors="replace") for p in procs]
    finally:
        for p in procs:
            kill_session(p)
    assert [p.returncode for p in procs] == [0, 0], logs
    with hub_db.engine.connect() as conn:
        counts = dict(conn.execute(select(Message.status, func.count()).group_by(Message.status)).all())
    assert 7 <= counts["sent"] <= 8 and counts["sent"] + counts["queued"] == 30, counts
    assert len(box.received) == counts["sent"]
