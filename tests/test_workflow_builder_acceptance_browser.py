"""Issue 20's acceptance, end to end in headless Chromium, as a marketer who has never seen YAML.

The shop's customers live in Bitrix24 (the plugin's portal emulator) and are
synced into Hub; letters go to a real SMTP server, SMS to the file channel.
Four people have not bought for 120 days: Алла (email and SMS allowed), Борис
(email only), Вера (email and SMS; she will buy after the letter) and Дина
(SMS only for now: outside the segment until she agrees to letters, later).
Around them, decoys: Егор bought a month ago, Фёдор never agreed to anything,
Анна withdrew her consent.

The marketer builds "not bought for 90 days → a 10 % code for 14 days → a
letter → 5 days, then 11:00 → bought since entering? leave : SMS and a call
task in the CRM" by clicking in the builder (only the name, title, numbers
and the task's words are typed into the fields; never the YAML), and the
saved definition is exactly that document. Trying it on Алла, Борис and Вера
shows, without sending anything, the letter and SMS and task for Алла, the
SMS stopped for Борис (no consent) and the branch question for Вера (asked
again once her order is in, it sends her out at the branch).
Switching on shows the forecast's numbers and asks; the scheduler's own entry
point then runs as of tomorrow 10:00 Moscow time, and the health banner that
said "the scheduler is not running" is gone.

The letters arrive at the SMTP server, one each, each with its own code.
While Алла, Борис and Вера wait, the marketer shortens the wait to 3 days in
the builder and saves without moving them; Дина agrees to letters the next
day and enters on the new version. Вера buys (a won deal in the portal, then
a sync). Time moves on: Дина's SMS comes at 11:00 on her day 4 with her call
task; Алла's at 11:00 on day 5 as her version promised, with the tasks for
Алла and Борис in the portal; Вера leaves at the branch; the decoys get
nothing; a repeated tick adds nothing. The versions page lists both versions
and who saved them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from hub import consent, messaging, schedule, sync
from hub.admin import health_banner
from hub.db import utcnow
from hub.models import AuditEntry, ExternalRef, Message
from plugins.bitrix24 import connection
from plugins.bitrix24.sandbox import Portal, SandboxServer
from tests.browser import Browser
from tests.support.admin import AdminEnv, admin_env  # noqa: F401
from tests.support.admin_browser import sign_in
from workflows import forecast, store
from workflows.models import PromoCode, WorkflowRow, WorkflowRun

pytestmark = pytest.mark.both_databases

NAME = "win_back_5d"
TITLE = "Вернуть уснувших: промокод, письмо, SMS и звонок"
CODE = re.compile(r"VERNIS-[A-Z0-9]+")
CONTACT = 3  # the portal's owner type of a contact (crm.activity.todo.add)
# key: first name, last name, phone, email, days since the won deal, channels agreed to marketing
PEOPLE = {
    "alla": ("Алла", "Активная", "+7 916 111-00-01", "alla@example.ru", 120, ("email", "sms")),
    "boris": ("Борис", "Безсмс", "+7 916 111-00-02", "boris@example.ru", 120, ("email",)),
    "vera": ("Вера", "Вернувшаяся", "+7 916 111-00-03", "vera@example.ru", 120, ("email", "sms")),
    "dina": ("Дина", "Поздняя", "+7 916 111-00-04", "dina@example.ru", 120, ("sms",)),  # agrees to letters later
    "egor": ("Егор", "Свежий", "+7 916 111-00-05", "egor@example.ru", 30, ("email", "sms")),  # bought lately
    "fedor": ("Фёдор", "Несогласный", "+7 916 111-00-06", "fedor@example.ru", 120, ()),  # agreed to nothing
}
DECOYS = ("egor", "fedor", "anna")

EXPECTED = {
    "name": NAME,
    "title": TITLE,
    "trigger": {"segment": "dormant_90d"},
    "reentry": "never",
    "goal": {"event": "order.created", "within": "30d"},
    "steps": [
        {"promo_code": {"discount": "10%", "valid_for": "14d", "prefix": "VERNIS"}},
        {"send": {"channel": "email", "template": "reactivation_email"}},
        {"wait": {"for": "5d", "until": "11:00"}},
        {"if": {"field": "orders.last_at", "op": "after", "value": "run.started_at"},
         "then": "exit",
         "else": [{"send": {"channel": "sms", "template": "reactivation_sms"}},
                  {"crm_task": {"title": "Позвонить {{ contact.first_name }}"}}]},
    ],
}


@pytest.fixture
def portal() -> Iterator[SandboxServer]:
    server = SandboxServer(Portal(contacts=0, seed=20, today=utcnow().date())).start()
    yield server
    server.stop()
    server.portal.close()


def seed_portal(portal: SandboxServer) -> dict[str, int]:
    """The shop's customers and their won deals, as the manager keeps them in Bitrix24."""
    p = portal.portal
    zone = dt.timezone(dt.timedelta(hours=3))
    today = dt.datetime.now(zone).date()
    crm: dict[str, int] = {}
    for key, (first, last, phone, address, days, _agreed) in PEOPLE.items():
        crm[key] = p.add_contact({"NAME": first, "LAST_NAME": last,
                                  "PHONE": [{"VALUE": phone, "VALUE_TYPE": "MOBILE"}],
                                  "EMAIL": [{"VALUE": address, "VALUE_TYPE": "WORK"}]})
        p.add_deal({"TITLE": f"Заказ {last}", "CONTACT_ID": crm[key], "STAGE_ID": "WON", "OPPORTUNITY": 2400,
                    "CURRENCY_ID": "RUB", "CLOSEDATE": (today - dt.timedelta(days=days)).isoformat()})
    return crm


@pytest.fixture
def env(admin_env: AdminEnv, mailbox: Any, portal: SandboxServer, tmp_path: Path) -> AdminEnv:  # noqa: F811
    """The admin over a base synced from the portal: email to the test's SMTP server, SMS to files."""
    _box, port = mailbox
    admin_env.settings = replace(admin_env.settings, extra={
        **admin_env.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
        "mail_from": "Цветочная лавка <shop@example.ru>", "public_url": "https://hub.example.ru",
        "outbox_dir": str(tmp_path / "sms")})
    admin_env.app.config["HUB_SETTINGS"] = admin_env.settings
    settings, engine = admin_env.settings, admin_env.engine
    crm = seed_portal(portal)
    connection.save(engine, settings, {"kind": "webhook", "url": portal.webhook_url})
    report = sync.run(engine, settings, "bitrix24", full=True)
    assert report.counts.errors == [] and report.counts.contacts["created"] == len(PEOPLE), report
    with engine.begin() as conn:
        for key, crm_id in crm.items():
            admin_env.ids[key] = conn.execute(select(ExternalRef.contact_id).where(
                ExternalRef.source == "bitrix24", ExternalRef.external_id == str(crm_id),
                ExternalRef.deleted_at.is_(None))).scalar_one()
            admin_env.ids[f"crm:{key}"] = crm_id
            for channel in PEOPLE[key][5]:
                consent.record(conn, admin_env.ids[key], channel, "marketing", "granted", source="site form",
                               settings=settings, evidence={"form": "подписка на сайте"})
        # Anna (the admin's sample customer, dormant too) withdrew her consent: outside the segment.
        consent.record(conn, admin_env.ids["anna"], "email", "marketing", "withdrawn", source="letter",
                       settings=settings)
    return admin_env


# --- the browser ------------------------------------------------------------------------------

def console_errors(browser: Browser) -> list[str]:
    """What the pages wrote to the console as errors (a broken script, a blocked inline style)."""
    try:
        entries = browser.driver.get_log("browser")
    except Exception:  # noqa: BLE001 - a driver without the log: nothing to report
        return []
    return [e["message"] for e in entries if e.get("level") == "SEVERE" and "favicon" not in e["message"]]


LATIN_WORD = re.compile(r"(?<![\w@.:/-])[A-Za-z][a-z]{3,}(?![\w@.:/-])")
# Latin words a Russian page may show: names of things (templates, the CRM), not words of its own.
LATIN_OK = {"Email", "email"}
VISIBLE_TEXT = """
var copy = document.body.cloneNode(true);
copy.querySelectorAll('code, pre, textarea, script, style, [translate=no], option, .health-banner').forEach(
  function (n) { n.remove(); });
document.body.appendChild(copy);
copy.hidden = false;
var text = copy.innerText;
copy.remove();
return text;
"""


ENGLISH: dict[str, set[str]] = {}


def english_on(browser: Browser) -> set[str]:
    """English words in what the page says (names in code, inputs and menus' values aside)."""
    assert browser.script("return document.documentElement.lang") == "ru", browser.url
    found = set(LATIN_WORD.findall(browser.script(VISIBLE_TEXT) or "")) - LATIN_OK
    ENGLISH[re.sub(r"https?://[^/]+", "", browser.url)] = found
    return found


def step(path: str) -> str:
    return f'#workflow-builder .wf-step[data-path="{path}"]'


def settled(browser: Browser) -> None:
    """The server found nothing wrong with the text the builder wrote."""
    browser.wait(lambda: browser.find("#wf-problems").get_attribute("data-state") == "ok",
                 "the workflow to check without problems: " + browser.text("#wf-problems"))


def add_step(browser: Browser, at: str, kind: str) -> None:
    """«+ шаг» at `at`, then the kind from its menu."""
    browser.click(f'#workflow-builder .wf-add[data-at="{at}"]')
    browser.click(f'#workflow-builder .wf-adder:has(> .wf-add[data-at="{at}"]) button[data-add-kind="{kind}"]')
    browser.wait(lambda: browser.exists(f"{step(at)}[data-kind={kind}]"),
                 f"a {kind} step at {at} after choosing it in the «+ шаг» menu")


def duration(browser: Browser, css: str, number: int, unit: str) -> None:
    browser.fill(f"{css} input[type=number]", str(number))
    browser.select(f"{css} select", unit)


def build_workflow(browser: Browser, live: str) -> None:
    """The win-back workflow from the builder's menus and forms; the YAML box is never typed in."""
    browser.click("#new-workflow")
    browser.wait(lambda: browser.exists("#wf-name") and browser.exists('.wf-add[data-at="steps[0]"]'), "the builder")
    # An empty workflow: the check says, in words, what is still missing
    browser.wait_text("#wf-problems", "Шаги: добавьте хотя бы один шаг")
    english_on(browser)
    yaml_before = browser.find("#workflow-document").get_attribute("value")
    browser.fill("#wf-name", NAME)
    browser.fill("#wf-title", TITLE)
    browser.select("#wf-trigger-kind", "segment")
    browser.select('#workflow-builder [data-part="segment"] select', "dormant_90d")

    add_step(browser, "steps[0]", "promo_code")
    browser.fill(f'{step("steps[0]")} [data-option="discount"] input', "10")
    duration(browser, f'{step("steps[0]")} [data-option="valid_for"]', 14, "d")
    browser.fill(f'{step("steps[0]")} [data-option="prefix"] input', "VERNIS")

    add_step(browser, "steps[1]", "send")
    assert not browser.find(f'{step("steps[1]")} [data-option="template"] select').is_enabled()  # channel first
    browser.select(f'{step("steps[1]")} [data-option="channel"] select', "email")
    browser.select(f'{step("steps[1]")} [data-option="template"] select', "reactivation_email")

    add_step(browser, "steps[2]", "wait")
    duration(browser, f'{step("steps[2]")} [data-option="for"]', 5, "d")
    browser.fill(f'{step("steps[2]")} [data-option="until"] input', "11:00")

    add_step(browser, "steps[3]", "if")
    browser.click(f"{step('steps[3]')} button.wf-preset-bought-since")
    browser.wait(lambda: browser.exists(f'{step("steps[3]")} input[data-extra="run.started_at"]'),
                 "the condition «bought since entering»")
    assert browser.find(f'{step("steps[3]")} input[data-extra="run.started_at"]').is_selected()
    then = f'{step("steps[3]")} .wf-branch[data-branch="then"]'
    assert browser.exists(f'{then} .wf-step[data-kind="exit"]')
    # A marketer looks at the condition before going on: by then the builder has written it into the text.
    browser.wait(lambda: "run.started_at" in browser.find("#workflow-document").get_attribute("value"),
                 "the condition in the text form")
    settled(browser)

    add_step(browser, "steps[3].else[0]", "send")
    sms = step("steps[3].else[0]")
    browser.select(f'{sms} [data-option="channel"] select', "sms")
    browser.wait(lambda: browser.exists(f'{sms} [data-option="template"] option[value="reactivation_sms"]'),
                 "SMS templates offered for the SMS channel")
    assert not browser.exists(f'{sms} [data-option="template"] option[value="reactivation_email"]')
    browser.select(f'{sms} [data-option="template"] select', "reactivation_sms")

    add_step(browser, "steps[3].else[1]", "crm_task")
    browser.fill(f'{step("steps[3].else[1]")} [data-option="title"] input', "Позвонить {{ contact.first_name }}")

    browser.select("#wf-goal-event", "order.created")
    browser.wait(lambda: browser.exists("#wf-goal-within input[type=number]"), "the goal's window")
    duration(browser, "#wf-goal-within", 30, "d")
    settled(browser)
    browser.wait(lambda: all(part in browser.find("#workflow-document").get_attribute("value")
                             for part in ("reactivation_sms", "Позвонить {{ contact.first_name }}", "30d")),
                 "the text form to follow the builder, up to its last change")  # the builder writes it debounced
    text = browser.find("#workflow-document").get_attribute("value")
    assert text != yaml_before and "Позвонить {{ contact.first_name }}" in text and "VERNIS" in text

    english_on(browser)
    browser.click("#wf-save")
    browser.wait_text(".flash", f"Сценарий {NAME}")
    english_on(browser)
    assert browser.url.endswith(f"/workflows/{NAME}")


def try_on(browser: Browser, live: str, surname: str) -> tuple[str, list[tuple[str, str]]]:
    """The trace of one contact, picked through the page's search box: (entering, [(outcome, text)])."""
    browser.open(f"{live}/workflows/{NAME}/try")
    browser.fill('#try-search input[name="q"]', surname)
    browser.click("#try-search button[type=submit]")
    browser.wait(lambda: browser.exists("#try-found a"), f"{surname} found")
    links = [a for a in browser.find_all("#try-found a") if surname in a.text]
    assert len(links) == 1, browser.text("#try-found")
    links[0].click()
    browser.wait(lambda: browser.exists("#trace"), f"the trace of {surname}")
    english_on(browser)
    steps = [(li.get_attribute("data-outcome"), li.text) for li in browser.find_all("#trace li.trace-step")]
    return browser.text("#try-entry"), steps


def try_three(browser: Browser, live: str) -> None:
    """Алла: the letter, the SMS and the task; Борис: the SMS stopped for want of consent; Вера: the question."""
    entry, alla = try_on(browser, live, "Активная")
    assert browser.find("#try-entry").get_attribute("data-status") == "enters" and "входит сейчас" in entry
    assert [o for o, _ in alla] == ["done", "sent", "waited", "branch", "sent", "done", "end"], alla
    promo, letter, wait, branch, sms, task, _end = (t for _, t in alla)
    assert "промокод будет выдан: 10 %" in promo and "VERNIS-" in promo
    assert "alla@example.ru" in letter and "Алла" in letter
    assert browser.find("#trace iframe.letter-frame").get_attribute("sandbox") == "allow-popups"
    assert "11:00" in wait and "11:00" in branch
    assert "ветка «нет»" in branch and "позже дня входа" in branch
    assert "+7 916 111-00-01" in sms and "Алла" in sms  # the phone as the contact card writes it
    assert "Позвонить Алла" in task

    entry, boris = try_on(browser, live, "Безсмс")
    assert [o for o, _ in boris] == ["done", "sent", "waited", "branch", "stopped", "done", "end"], boris
    assert "boris@example.ru" in boris[1][1]
    assert "не отправится: нет согласия на канал «SMS»" in boris[4][1]
    assert "Позвонить Борис" in boris[5][1]

    # Вера has not bought yet: what will happen depends on an order nobody can know of now; the trace
    # says which question the branch asks of her data at that moment.
    entry, vera = try_on(browser, live, "Вернувшаяся")
    (branch,) = [t for o, t in vera if o == "branch"]
    # her value stands beside its field: «когда закрыт последний выигранный заказ (…) позже дня входа (…)»
    assert "ветка «нет»" in branch and "последний выигранный заказ" in branch and "позже дня входа" in branch


def try_vera_after_her_order(browser: Browser, live: str) -> None:
    """Once her order is in, the same trace takes the «да» branch: she leaves, no SMS, no task."""
    entry, vera = try_on(browser, live, "Вернувшаяся")
    assert browser.find("#try-entry").get_attribute("data-status") == "running", entry
    outcomes = [o for o, _ in vera]
    assert outcomes[:4] == ["done", "sent", "waited", "branch"] and "sent" not in outcomes[4:], vera
    assert "ветка «да»" in vera[3][1], vera
    assert not any("Позвонить" in t for _, t in vera), vera


def switch_on(browser: Browser, live: str, env: AdminEnv) -> dict[str, Any]:
    """Through the confirmation page: the forecast's numbers, then the button carrying them."""
    browser.open(f"{live}/workflows/{NAME}")
    browser.click("#switch-on")
    browser.wait(lambda: browser.exists("#enable-summary"), "the confirmation page")
    found = forecast.forecast(env.engine, env.settings, NAME, days=14)
    assert browser.text("#enable-would-start") == str(found["would_start"]) == "3"
    assert browser.text('#enable-numbers [data-channel="email"]') == "3"
    assert browser.text("#enable-promo") == "3"
    assert browser.text('#enable-numbers [data-channel="sms"]') == str(found["messages"]["sms"]) == "2"
    assert browser.text("#enable-summary") == ("Сразу войдут 3 человека. За 14 дней: 3 письма, 2 SMS, 3 промокода, "
                                                "3 задачи менеджерам в CRM.")
    assert browser.exists('#enable-chart[data-chart="bar"]')
    english_on(browser)
    browser.click("#enable-confirm")
    browser.wait_text(".flash", TITLE)  # the flash names the workflow by its title
    assert "включ" in browser.text(".flash").lower(), browser.text(".flash")
    with env.engine.connect() as conn:
        assert store.row(conn, NAME).enabled
        (audit,) = conn.execute(select(AuditEntry.actor, AuditEntry.details)
                                .where(AuditEntry.action == "workflow_enabled")).all()
    assert audit.actor == "admin:marketer@shop.example"  # who, through the admin
    assert audit.details["confirmed"]["would_start"] == 3 and audit.details["confirmed"]["expected"] == 3
    return found


def change_the_wait(browser: Browser, live: str) -> None:
    """While runs wait: 3 days instead of 5, saved without moving the runs in progress."""
    browser.open(f"{live}/workflows/{NAME}")
    browser.click("#edit-workflow")
    browser.wait(lambda: browser.exists(step("steps[2]")), "the builder with the saved workflow")
    settled(browser)
    english_on(browser)
    assert browser.find("#wf-name").get_attribute("readonly")
    duration(browser, f'{step("steps[2]")} [data-option="for"]', 3, "d")
    browser.wait(lambda: "3d" in browser.find("#workflow-document").get_attribute("value"), "the text to say 3d")
    settled(browser)
    assert not browser.find("#wf-move-runs").is_selected()  # «Перевести запуски в работе…» left as it is
    browser.click("#wf-save")
    browser.wait_text(".flash", "версия 2")
    assert "остаются на той версии" in browser.text(".flash"), browser.text(".flash")
    # The runs in progress stay on version 1.
    browser.click("#versions-link")
    browser.wait(lambda: browser.exists('#versions tr[data-version="2"]'), "the versions page")
    in_progress = {v: browser.find(f'#versions tr[data-version="{v}"] td.num').text for v in ("1", "2")}
    assert in_progress == {"1": "3", "2": "0"}, in_progress


# --- the clock -------------------------------------------------------------------------------

def tick(env: AdminEnv, at: dt.datetime) -> dict[str, Any]:
    """`hub scheduler`'s pass as of `at`: the workflows' schedule, then the outbox as the tick at that time sees it."""
    report = schedule.run_due(env.engine, env.settings, now=at, only=["workflows"])
    assert not report.failed, report.failed
    messaging.dispatch(env.engine, env.settings, now=at)
    return dict(report.ran["workflows"])


def outbox(env: AdminEnv) -> list[Any]:
    with env.engine.connect() as conn:
        return list(conn.execute(select(Message.id, Message.contact_id, Message.channel, Message.status,
                                        Message.address, Message.due_at, Message.body_text)
                                 .where(Message.origin == NAME).order_by(Message.id)))


def runs(env: AdminEnv) -> dict[int, Any]:
    with env.engine.connect() as conn:
        return {r.contact_id: r for r in conn.execute(
            select(WorkflowRun).join(WorkflowRow, WorkflowRow.id == WorkflowRun.workflow_id)
            .where(WorkflowRow.name == NAME))}


def sms_files(tmp_path: Path) -> list[str]:
    folder = tmp_path / "sms"
    return [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*-sms.txt"))] if folder.exists() else []


def utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)


def naive(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.replace(tzinfo=None) if moment.tzinfo else moment


# --- the story -------------------------------------------------------------------------------

def test_issue_20_a_win_back_built_by_clicking(env: AdminEnv, live: str, browser: Browser, mailbox: Any,
                                               portal: SandboxServer, tmp_path: Path) -> None:
    box, _port = mailbox
    ids = env.ids
    zone = env.settings.tz
    console_errors(browser)  # what earlier tests left in the log is read away
    health_banner.forget()
    ENGLISH.clear()

    sign_in(browser, live, "marketer", "/workflows/")
    assert browser.exists('.health-banner[data-health="scheduler"]')
    assert "Планировщик не запущен" in browser.text('.health-banner[data-health="scheduler"]')

    build_workflow(browser, live)
    with env.engine.connect() as conn:
        row, _workflow = store.current(conn, env.settings, NAME)
    assert row.definition == EXPECTED
    assert not row.enabled and row.version == 1

    try_three(browser, live)
    assert box.received == [] and outbox(env) == []  # trying sends nothing
    switch_on(browser, live, env)
    assert console_errors(browser) == []

    # Tomorrow 10:00 Moscow time: the scheduler's pass; the banner that said it never ran is gone.
    day0 = dt.datetime.now(zone).date() + dt.timedelta(days=1)
    t0 = dt.datetime.combine(day0, dt.time(10, 0), tzinfo=zone)
    first = tick(env, t0)
    assert first["runs started"] == 3, first
    health_banner.forget()
    browser.open(f"{live}/workflows/{NAME}")
    assert not browser.exists(".health-banner")

    want = {"alla@example.ru", "boris@example.ru", "vera@example.ru"}
    assert Counter(r for got in box.received for r in got.rcpt_tos) == Counter({a: 1 for a in want})
    with env.engine.connect() as conn:
        issued = {r.contact_id: r.code for r in conn.execute(select(PromoCode.contact_id, PromoCode.code))}
    assert set(issued) == {ids["alla"], ids["boris"], ids["vera"]}
    codes_by_address = {}
    for got in box.received:
        name = next(p[0] for p in PEOPLE.values() if p[3] == got.rcpt_tos[0])
        assert str(got.message["Subject"]).startswith(f"{name}, мы скучаем: скидка 10%"), got.message["Subject"]
        body = got.message.get_body(preferencelist=("plain",))
        assert body is not None
        found = CODE.findall(body.get_content())
        assert len(set(found)) == 1, body.get_content()
        codes_by_address[got.rcpt_tos[0]] = found[0]
    assert len(set(codes_by_address.values())) == 3
    assert codes_by_address["alla@example.ru"] == issued[ids["alla"]]
    waiting = runs(env)
    day5 = dt.datetime.combine(day0 + dt.timedelta(days=5), dt.time(11, 0), tzinfo=zone)
    for key in ("alla", "boris", "vera"):
        assert waiting[ids[key]].status == "waiting" and waiting[ids[key]].version == 1
        assert naive(waiting[ids[key]].next_at) == utc(day5), (key, waiting[ids[key]].next_at)

    assert tick(env, t0)["runs started"] == 0  # the same moment again: nothing new
    assert len(box.received) == 3

    # While they wait: a shorter wait, saved without moving them; Дина agrees to letters.
    change_the_wait(browser, live)
    with env.engine.connect() as conn:
        assert store.row(conn, NAME).version == 2
    with env.engine.begin() as conn:
        consent.record(conn, ids["dina"], "email", "marketing", "granted", source="site form",
                       settings=env.settings, evidence={"form": "подписка на сайте"})
    t1 = t0 + dt.timedelta(days=1)
    assert tick(env, t1)["runs started"] == 1
    dina = runs(env)[ids["dina"]]
    assert dina.version == 2
    day4_dina = dt.datetime.combine(day0 + dt.timedelta(days=4), dt.time(11, 0), tzinfo=zone)
    assert naive(dina.next_at) == utc(day4_dina)
    assert [g.rcpt_tos for g in box.received[3:]] == [["dina@example.ru"]]

    # Вера buys: a won deal in the portal, brought in by the next sync.
    portal.portal.add_deal({"TITLE": "Заказ после письма", "CONTACT_ID": ids["crm:vera"], "STAGE_ID": "WON",
                            "OPPORTUNITY": 3100, "CURRENCY_ID": "RUB",
                            "CLOSEDATE": (day0 + dt.timedelta(days=2)).isoformat()})
    assert sync.run(env.engine, env.settings, "bitrix24").counts.orders["created"] == 1
    try_vera_after_her_order(browser, live)
    tick(env, t0 + dt.timedelta(days=2))

    # Дина's day 4, 11:00 (the new version's 3 days); a minute before, nothing.
    tick(env, day4_dina - dt.timedelta(minutes=1))
    assert [m for m in outbox(env) if m.channel == "sms"] == []
    tick(env, day4_dina)
    sms = [m for m in outbox(env) if m.channel == "sms"]
    assert [(m.contact_id, m.status) for m in sms] == [(ids["dina"], "sent")]
    assert naive(sms[0].due_at) == utc(day4_dina)
    (task,) = portal.portal.activities(CONTACT, ids["crm:dina"])
    assert task["title"] == "Позвонить Дина"

    # Day 5, 11:00: the waiting runs finish on their version.
    tick(env, day5 - dt.timedelta(minutes=1))
    assert len([m for m in outbox(env) if m.channel == "sms"]) == 1
    tick(env, day5)
    tick(env, day5)  # again: nothing twice
    messages = outbox(env)
    per = Counter((m.contact_id, m.channel) for m in messages)
    assert set(per.values()) == {1}, per
    texted = {m.contact_id: m for m in messages if m.channel == "sms"}
    assert texted[ids["alla"]].status == "sent" and naive(texted[ids["alla"]].due_at) == utc(day5)
    assert ids["vera"] not in texted
    assert texted[ids["boris"]].status == "suppressed", texted[ids["boris"]]  # no consent: held, never sent
    with env.engine.connect() as conn:
        codes = conn.execute(select(PromoCode.contact_id, PromoCode.code)).all()
    issued = {r.contact_id: r.code for r in codes}
    assert Counter(r.contact_id for r in codes) == Counter({ids[k]: 1 for k in ("alla", "boris", "vera", "dina")})
    texts = sms_files(tmp_path)
    assert len(texts) == 2
    for key in ("dina", "alla"):
        assert sum(issued[ids[key]] in t and PEOPLE[key][0] in t for t in texts) == 1, (key, texts)
    for key in ("alla", "boris"):
        (task,) = portal.portal.activities(CONTACT, ids[f"crm:{key}"])
        assert task["title"] == f"Позвонить {PEOPLE[key][0]}"
    assert portal.portal.activities(CONTACT, ids["crm:vera"]) == []
    final = runs(env)
    assert {k: final[ids[k]].status for k in ("alla", "boris", "vera", "dina")} == {
        "alla": "done", "boris": "done", "vera": "exited", "dina": "done"}
    assert {final[ids[k]].version for k in ("alla", "boris", "vera")} == {1}
    for key in DECOYS:
        assert ids[key] not in final and ids[key] not in issued, key
        if key in PEOPLE:
            assert portal.portal.activities(CONTACT, ids[f"crm:{key}"]) == []
    assert Counter(r for got in box.received for r in got.rcpt_tos) == Counter(
        {a: 1 for a in (*want, "dina@example.ru")})

    # The workflow's page: four entered; Борис's SMS counted as skipped, the others' sent.
    browser.open(f"{live}/workflows/{NAME}")
    assert browser.text("#entered") == "4"
    (sms_row,) = [r for r in browser.find_all("#steps tbody tr") if "Отправить SMS" in r.text]
    cells = [c.text for c in sms_row.find_elements("css selector", "td.num")]
    assert cells[0] == "2" and cells[3] == "1", cells  # sent, skipped
    english_on(browser)
    # The versions page: both, with who saved them.
    browser.open(f"{live}/workflows/{NAME}")
    browser.click("#versions-link")
    browser.wait(lambda: browser.exists('#versions tr[data-version="2"]'), "the versions page")
    english_on(browser)
    browser.open(f"{live}/workflows/{NAME}/versions/2")
    english_on(browser)
    assert all(not words for words in ENGLISH.values()), ENGLISH
    browser.open(f"{live}/workflows/{NAME}/versions")
    for version in ("1", "2"):
        assert "marketer@shop.example" in browser.text(f'#versions tr[data-version="{version}"]'), version
    assert console_errors(browser) == []
