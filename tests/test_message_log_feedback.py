"""What came back about a sent message, where people look at messages: the message page, the log, `hub messages`.

A letter goes out through the outbox to a real SMTP server on loopback; what
is heard of it later is recorded through hub.messaging.feedback.record, as
the bounce mailbox, the link redirects and the SMS reports record it. The
page lists it in the reader's words, newest first; the log marks it beside
the status (one query for the page's messages) and filters by it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event, update

from hub import formats, messaging
from hub.message_templates import Template
from hub.messaging import feedback
from hub.models import Message
from plugins.gdpr import erasure
from tests.support.admin import AdminEnv, client_as, plain, post, text
from tests.test_message_log import add_message, ids_on, total_on

pytestmark = pytest.mark.both_databases  # events are read per page with IN and EXISTS: both databases must agree

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 12, 4, 9, 0, tzinfo=UTC)  # 12:00 in Moscow


def record(env: AdminEnv, message_id: int, kind: str, *, at: dt.datetime, **kwargs: Any) -> None:
    with env.engine.begin() as conn:
        done = feedback.record(conn, env.settings, message_id, kind, at=at, **kwargs)
    assert done is not None and not done.duplicate


def sent_letter(env: AdminEnv, mailbox: Any) -> int:
    """A letter to Anna written by the outbox and sent by the email channel to a real SMTP server."""
    box, port = mailbox
    settings = replace(env.settings, extra={**env.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
                                            "mail_from": "Лавка <shop@example.ru>"})
    template = Template(name="order_ready", channel="email", subject="Заказ готов",
                        text="Здравствуйте, {{ contact.first_name }}! Заказ ждёт вас.")
    with env.engine.begin() as conn:
        created = messaging.create(conn, settings, contact_id=env.ids["anna"], channel="email", template=template,
                                   key="feedback-log:1", purpose="transactional")
    messaging.dispatch(env.engine, settings, ids=[created.id])
    with env.engine.connect() as conn:
        assert (messaging.get(conn, created.id) or {})["status"] == "sent"
    assert [r.rcpt_tos for r in box.received] == [["anna@example.ru"]]
    return created.id


def moment(value: dt.datetime) -> str:
    return formats.moment(value, "Europe/Moscow")


def kinds_on(page: Any) -> list[str]:
    return re.findall(r'<tr data-kind="([a-z_]+)">', text(page))


def event_texts(page: Any) -> list[str]:
    import html

    return [html.unescape(t) for t in re.findall(r'<td class="event-text">(.*?)</td>', text(page), re.S)]


# --- the message page ---------------------------------------------------------------------------

def test_the_message_page_lists_what_came_back_newest_first_in_russian(admin_env: AdminEnv, mailbox: Any) -> None:
    mid = sent_letter(admin_env, mailbox)
    record(admin_env, mid, "open", at=T0)
    record(admin_env, mid, "click", at=T0 + dt.timedelta(minutes=1), url="https://shop.example.ru/sale?utm=mail")
    record(admin_env, mid, "soft_bounce", at=T0 + dt.timedelta(minutes=2),
           detail={"status": "4.2.2", "diagnostic": "452 4.2.2 Mailbox full", "reason": "452 4.2.2 Mailbox full"})
    record(admin_env, mid, "bounce", at=T0 + dt.timedelta(minutes=3),
           detail={"status": "5.1.1", "diagnostic": "550 5.1.1 user unknown"}, uid="<dsn-1@mx.example.ru>")
    record(admin_env, mid, "complaint", at=T0 + dt.timedelta(minutes=4),
           detail={"feedback_type": "abuse", "reporter": "mail.ru"}, uid="<arf-1@fbl.mail.ru>")
    page = client_as(admin_env, "viewer").get(f"/messages/{mid}")
    assert page.status_code == 200
    assert kinds_on(page) == ["complaint", "bounce", "soft_bounce", "click", "open"]
    assert event_texts(page) == [
        "Жалоба на спам (Mail.ru)",
        "Отказ: адрес не существует (5.1.1)",
        "Временный отказ: ящик переполнен (4.2.2)",
        "Переход по ссылке https://shop.example.ru/sale?utm=mail",
        "Открытие (неточно: почтовые сервисы загружают картинки сами)",
    ]
    shown = plain(page)
    assert "Что пришло в ответ" in shown
    assert moment(T0 + dt.timedelta(minutes=4)) in shown and moment(T0) in shown
    assert '<a href="https://shop.example.ru' not in text(page)  # the link is text, not a live link
    assert 'id="cost"' not in text(page)  # a letter has no cost


def test_the_message_page_reads_in_english(admin_env: AdminEnv, mailbox: Any) -> None:
    mid = sent_letter(admin_env, mailbox)
    record(admin_env, mid, "bounce", at=T0, detail={"status": "5.1.1"})
    record(admin_env, mid, "complaint", at=T0 + dt.timedelta(minutes=1), detail={"reporter": "yandex.ru"})
    client = client_as(admin_env, "viewer")
    assert post(client, "/language", {"language": "en", "next": "/messages/"}, token_from="/messages/").status_code \
        in (302, 303)
    page = client.get(f"/messages/{mid}")
    assert event_texts(page) == ["Spam complaint (Yandex)", "Bounce: the address does not exist (5.1.1)"]
    assert "What came back" in plain(page)
    log = plain(client.get("/messages/"))
    assert "Heard back" in log and "with a complaint" in log


def test_an_sms_shows_its_cost_and_the_operators_reports(admin_env: AdminEnv) -> None:
    mid = add_message(admin_env, channel="sms", origin="reactivation_90d", provider_id="sms-1")
    other = add_message(admin_env, channel="sms", origin="reactivation_90d", provider_id="sms-2", key="other")
    with admin_env.engine.begin() as conn:
        conn.execute(update(Message.__table__).where(Message.__table__.c.id == mid).values(cost=Decimal("3.45")))
    record(admin_env, mid, "delivered", at=T0, detail={"provider": "smsc", "code": "1"})
    record(admin_env, other, "undelivered", at=T0, detail={"provider": "smsc", "code": "20",
                                                          "reason": "абонент недоступен"})
    client = client_as(admin_env, "viewer")
    page = client.get(f"/messages/{mid}")
    assert event_texts(page) == ["Доставлено оператором"]
    assert re.search(r'<td id="cost">3,45\s₽</td>', text(page)), text(page)
    assert event_texts(client.get(f"/messages/{other}")) == ["Не доставлено: абонент недоступен"]
    quiet = add_message(admin_env, key="quiet")
    assert "По этому сообщению пока ничего не пришло" in plain(client.get(f"/messages/{quiet}"))


def test_hostile_and_huge_details_are_escaped_and_cut(admin_env: AdminEnv) -> None:
    mid = add_message(admin_env)
    record(admin_env, mid, "bounce", at=T0, detail={"diagnostic": "<script>alert(1)</script>" + "x" * 50_000})
    record(admin_env, mid, "click", at=T0 + dt.timedelta(minutes=1),
           url='https://shop.example.ru/"><img src=x onerror=alert(2)>')
    record(admin_env, mid, "complaint", at=T0 + dt.timedelta(minutes=2),
           detail={"reporter": "<b onmouseover=alert(3)>evil</b>"})
    record(admin_env, mid, "soft_bounce", at=T0 + dt.timedelta(minutes=3), detail={"status": "9.9.9<i>"})
    page = client_as(admin_env, "viewer").get(f"/messages/{mid}")
    assert page.status_code == 200
    raw = text(page)
    assert "<script>alert(1)" not in raw and "<img src=x" not in raw and "<b onmouseover" not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    texts = event_texts(page)
    assert texts[0] == "Временный отказ"  # what is not a status code is not shown as one
    assert texts[1] == "Жалоба на спам (<b onmouseover=alert(3)>evil</b>)"
    assert texts[2].startswith('Переход по ссылке https://shop.example.ru/"><img')
    assert texts[3].startswith("Отказ: <script>alert(1)</script>xxx") and texts[3].endswith("…")
    assert len(texts[3]) < 300


def test_an_erased_persons_events_show_only_kind_and_time(admin_env: AdminEnv) -> None:
    mid = add_message(admin_env)
    record(admin_env, mid, "bounce", at=T0, detail={"status": "5.1.1", "diagnostic": "anna@example.ru unknown"})
    erasure.erase(admin_env.engine, admin_env.settings, admin_env.ids["anna"], actor="test")
    # A click through an old link after the erasure: the stored url is not shown either.
    record(admin_env, mid, "click", at=T0 + dt.timedelta(minutes=1), url="https://shop.example.ru/?email=anna")
    page = client_as(admin_env, "viewer").get(f"/messages/{mid}")
    assert event_texts(page) == ["Переход по ссылке", "Отказ"]
    assert moment(T0) in plain(page)
    assert "anna" not in " ".join(event_texts(page))
    result = CliRunner().invoke(cli(), ["messages", "show", str(mid), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert [(e["kind"], e["url"], e["detail"]) for e in shown["events"]] == [("click", None, {}), ("bounce", None, {})]


# --- the log ----------------------------------------------------------------------------------

def test_the_log_marks_bounces_complaints_and_clicks_with_one_query_and_filters_by_them(admin_env: AdminEnv) -> None:
    plain_one = add_message(admin_env, key="plain")
    bounced = add_message(admin_env, key="bounced")
    complained = add_message(admin_env, key="complained")
    clicked = add_message(admin_env, key="clicked")
    opened = add_message(admin_env, key="opened")
    record(admin_env, bounced, "bounce", at=T0, detail={"status": "5.1.1"})
    record(admin_env, complained, "complaint", at=T0)
    record(admin_env, complained, "click", at=T0, url="https://shop.example.ru/")
    record(admin_env, clicked, "click", at=T0, url="https://shop.example.ru/a")
    record(admin_env, clicked, "click", at=T0 + dt.timedelta(seconds=1), url="https://shop.example.ru/b")
    record(admin_env, opened, "open", at=T0)
    for n in range(10):
        extra = add_message(admin_env, key=f"more-{n}")
        record(admin_env, extra, "click", at=T0, url=f"https://shop.example.ru/{n}")

    statements: list[str] = []

    def seen(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements.append(sql)

    event.listen(admin_env.engine, "before_cursor_execute", seen)
    try:
        page = client_as(admin_env, "viewer").get("/messages/")
    finally:
        event.remove(admin_env.engine, "before_cursor_execute", seen)
    assert page.status_code == 200
    assert len([s for s in statements if "message_events" in s]) == 1  # one query for the page, not per row
    raw = text(page)

    def marks(message_id: int) -> list[str]:
        row = re.search(rf'<tr data-id="{message_id}".*?</tr>', raw, re.S)
        assert row
        return re.findall(r'data-heard="([a-z_]+)">([^<]+)<', row.group(0))

    assert marks(bounced) == [("bounce", "отказ")]
    assert marks(complained) == [("complaint", "жалоба"), ("click", "клик")]
    assert marks(clicked) == [("click", "клик")]
    assert marks(opened) == [] and marks(plain_one) == []

    client = client_as(admin_env, "viewer")
    assert ids_on(client.get("/messages/?heard=bounce")) == [bounced]
    assert ids_on(client.get("/messages/?heard=complaint")) == [complained]
    with_clicks = client.get("/messages/?heard=click")
    assert total_on(with_clicks) == 12 and bounced not in ids_on(with_clicks)
    assert 'value="click" selected' in text(with_clicks)
    assert ids_on(client.get(f"/messages/?heard=click&contact={admin_env.ids['anna']}&status=sent&channel=email"
                             )).count(clicked) == 1


@pytest.mark.parametrize("value", ["<script>alert(1)</script>", "open", "delivered", "x" * 500])
def test_a_forged_filter_gets_a_russian_explanation(admin_env: AdminEnv, value: str) -> None:
    add_message(admin_env)
    page = client_as(admin_env, "viewer").get("/messages/", query_string={"heard": value})
    assert page.status_code == 400
    shown = plain(page)
    assert "Отклик: " in shown and "не одно из: с отказом, с жалобой" in shown
    assert "<script>alert(1)" not in text(page) and "Traceback" not in shown


# --- the command line ---------------------------------------------------------------------------

def cli() -> Any:
    import plugins.mailing
    from tests.support.cli import cli as root

    plugins.mailing.register_commands(root)
    return root


def test_hub_messages_show_and_list_tell_what_came_back(admin_env: AdminEnv, mailbox: Any) -> None:
    mid = sent_letter(admin_env, mailbox)
    sms = add_message(admin_env, channel="sms", key="sms")
    with admin_env.engine.begin() as conn:
        conn.execute(update(Message.__table__).where(Message.__table__.c.id == sms).values(cost=Decimal("3.45")))
    record(admin_env, mid, "click", at=T0, url="https://shop.example.ru/sale")
    record(admin_env, mid, "bounce", at=T0 + dt.timedelta(minutes=1), detail={"status": "5.1.1"})
    run = CliRunner()
    shown = run.invoke(cli(), ["messages", "show", str(mid), "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["cost"] is None
    assert data["events"] == [
        {"kind": "bounce", "at": (T0 + dt.timedelta(minutes=1)).isoformat(), "url": None,
         "detail": {"status": "5.1.1"}},
        {"kind": "click", "at": T0.isoformat(), "url": "https://shop.example.ru/sale", "detail": {}},
    ]
    assert json.loads(run.invoke(cli(), ["messages", "show", str(sms), "--json"]).output)["cost"] == "3.45"
    human = run.invoke(cli(), ["messages", "show", str(mid)])
    assert human.exit_code == 0, human.output
    assert "Что пришло в ответ" in human.output
    assert "Отказ: адрес не существует (5.1.1)" in human.output
    assert "Переход по ссылке https://shop.example.ru/sale" in human.output
    assert human.output.index("Отказ:") < human.output.index("Переход по ссылке")
    assert re.search(r"Стоимость: 3,45\s₽", run.invoke(cli(), ["messages", "show", str(sms)]).output)

    listed = run.invoke(cli(), ["messages", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    feedback_of = {m["id"]: m["feedback"] for m in json.loads(listed.output)}
    assert feedback_of == {sms: [], mid: ["click", "bounce"]}
    only = run.invoke(cli(), ["messages", "list", "--heard", "bounce", "--json"])
    assert [m["id"] for m in json.loads(only.output)] == [mid]
    table = run.invoke(cli(), ["messages", "list"], env={"COLUMNS": "200"})
    assert "отказ, клик" in table.output
    wrong = run.invoke(cli(), ["messages", "list", "--heard", "<b>"])
    assert wrong.exit_code == 2 and "--heard" in wrong.output and "Traceback" not in wrong.output
