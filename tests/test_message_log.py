"""The message log in the admin: filters, paging, one message as sent, hostile addresses, and the review of doubt.

Messages are outbox rows written as the engine writes them; the resend goes
through the queue and the dispatcher to a real SMTP server on loopback.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import insert, select

from hub import messaging, queue
from hub.admin.letter_frame import LETTER_CSP, letter_policy
from hub.models import AuditEntry, Message
from plugins.gdpr import erasure
from tests.support.admin import AdminEnv, client_as, plain, post, text

pytestmark = pytest.mark.both_databases  # the filters are SQL over dates, ids and NULLs

UTC = dt.timezone.utc
LETTER = ('<html><body><p id="hello" style="color: rgb(200, 0, 0); font-size: 22px">Здравствуйте, Анна!</p>'
          '<script>parent.alert(1)</script></body></html>')


def add_message(env: AdminEnv, *, contact: str | None = "anna", channel: str = "email", status: str = "sent",
                origin: str | None = None, created: dt.datetime | None = None, html: str | None = None,
                subject: str | None = "Скидка 15%", error: str | None = None, provider_id: str | None = None,
                address: str | None = None, template: str = "reactivation_email", key: str | None = None) -> int:
    created = created or dt.datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    contact_id = env.ids[contact] if contact else None
    meta: dict[str, Any] = {"workflow": origin, "run": 7, "step": 2} if origin else {}
    row = {"idempotency_key": key or f"t:{origin}:{contact}:{channel}:{created.isoformat()}:{status}:{subject}",
           "contact_id": contact_id, "channel": channel, "template": template, "purpose": "marketing",
           "address": address or ("anna@example.ru" if channel == "email" else "+79161234567"),
           "subject": subject if channel == "email" else None, "body_text": "Здравствуйте, Анна! Ваш промокод BACK-15.",
           "body_html": html, "status": status, "attempts": 1, "due_at": created, "provider_id": provider_id,
           "error": error, "meta": meta, "origin": origin, "created_at": created, "updated_at": created,
           "sent_at": created if status == "sent" else None}
    with env.engine.begin() as conn:
        return int(conn.execute(insert(Message.__table__).values(**row).returning(Message.__table__.c.id))
                   .scalar_one())


def ids_on(page: Any) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', text(page))]


def link(page: Any, rel: str) -> str:
    found = re.search(rf'rel="{rel}" href="([^"]+)"', text(page))
    assert found, rel
    return found.group(1).replace("&amp;", "&")


def total_on(page: Any) -> int:
    found = re.search(r'id="paging" data-total="(\d+)"', text(page))
    assert found, text(page)[:2000]
    return int(found.group(1))


@pytest.fixture
def log(admin_env: AdminEnv) -> dict[str, int]:
    """A small outbox: two workflows, a hand-sent one, two channels, several statuses, two local days."""
    moscow_late = dt.datetime(2026, 12, 1, 21, 30, tzinfo=UTC)  # 2 December 00:30 in Moscow
    return {
        "react_sent": add_message(admin_env, origin="reactivation_90d", created=dt.datetime(2026, 12, 1, 8, tzinfo=UTC),
                                  provider_id="<abc@hub>", html=LETTER),
        "react_failed": add_message(admin_env, origin="reactivation_90d", status="failed",
                                    error="bounced: 550 no such user", created=moscow_late),
        "react_sms": add_message(admin_env, origin="reactivation_90d", channel="sms", status="queued",
                                 created=dt.datetime(2026, 12, 2, 9, tzinfo=UTC)),
        "birthday": add_message(admin_env, origin="birthday", contact="petrov_1", status="unknown",
                                error="connection lost after DATA", address="petrov@example.ru",
                                created=dt.datetime(2026, 12, 3, 9, tzinfo=UTC)),
        "by_hand": add_message(admin_env, origin=None, contact="markup", subject="<b>Привет</b>",
                               address="hacker@example.ru", created=dt.datetime(2026, 12, 3, 10, tzinfo=UTC)),
    }


# --- filters and paging ------------------------------------------------------------------------

def test_each_filter_alone_and_combined(admin_env: AdminEnv, log: dict[str, int]) -> None:
    client = client_as(admin_env, "viewer")
    everything = client.get("/messages/")
    assert everything.status_code == 200
    assert ids_on(everything) == sorted(log.values(), reverse=True) and total_on(everything) == 5
    assert "Журнал сообщений" in plain(everything) and "Все сообщения, которые Hub отправил" in plain(everything)
    cases = {
        "origin=reactivation_90d": {"react_sent", "react_failed", "react_sms"},
        "origin=-": {"by_hand"},
        "origin=birthday": {"birthday"},
        "origin=nobody": set(),
        "channel=sms": {"react_sms"},
        "status=failed": {"react_failed"},
        "status=unknown": {"birthday"},
        f"contact={admin_env.ids['anna']}": {"react_sent", "react_failed", "react_sms"},
        "since=2026-12-02": {"react_failed", "react_sms", "birthday", "by_hand"},  # 00:30 Moscow is the 2nd
        "until=2026-12-01": {"react_sent"},
        "since=2026-12-02&until=2026-12-02": {"react_failed", "react_sms"},
        "origin=reactivation_90d&channel=email&since=2026-12-02": {"react_failed"},
        f"origin=reactivation_90d&status=sent&contact={admin_env.ids['anna']}": {"react_sent"},
        "channel=email&status=queued": set(),
    }
    for query, names in cases.items():
        page = client.get(f"/messages/?{query}")
        assert page.status_code == 200, (query, text(page)[:500])
        assert set(ids_on(page)) == {log[n] for n in names}, query
        assert total_on(page) == len(names), query
    assert "отправлено" in plain(client.get("/messages/?status=sent"))  # a status in words
    raw = text(client.get("/messages/?origin=-"))
    assert "&lt;b&gt;Привет&lt;/b&gt;" in raw and "<b>Привет</b>" not in raw  # a subject is text, never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw  # so is a name that is markup


def test_paging_by_id_keeps_the_true_count(admin_env: AdminEnv) -> None:
    start = dt.datetime(2026, 11, 1, 9, tzinfo=UTC)
    made = [add_message(admin_env, origin="welcome", created=start + dt.timedelta(minutes=i), key=f"p{i}")
            for i in range(120)]
    add_message(admin_env, origin="other", key="other")
    client = client_as(admin_env, "viewer")
    first = client.get("/messages/?origin=welcome")
    assert total_on(first) == 120 and ids_on(first) == made[::-1][:50]
    assert "1–50 из 120" in plain(first)
    older = re.search(r'rel="next" href="([^"]+)"', text(first))
    assert older
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert ids_on(second) == made[::-1][50:100] and total_on(second) == 120
    assert "51–100 из 120" in plain(second)
    third = client.get(link(second, "next"))
    assert ids_on(third) == made[::-1][100:] and "101–120 из 120" in plain(third)
    assert 'rel="next"' not in text(third)
    back = client.get(link(third, "prev"))
    assert ids_on(back) == made[::-1][50:100] and "51–100 из 120" in plain(back)
    top = client.get(link(back, "prev"))
    assert ids_on(top) == made[::-1][:50] and "1–50 из 120" in plain(top) and 'rel="prev"' not in text(top)
    forged = client.get(link(second, "next").replace("at=101", "at=999999999"))
    assert forged.status_code == 200 and "101–120 из 120" in plain(forged)  # the last page is exact whatever `at` says
    middle = client.get(link(first, "next").replace("at=51", "at=999999999"))
    assert middle.status_code == 200 and "70–119 из 120" in plain(middle)  # never past the end while older ones exist
    wrong = client.get(link(first, "next").replace("at=51", "at=abc"))
    assert wrong.status_code == 400 and "Страница: 'abc'" in plain(wrong)


# --- one message -------------------------------------------------------------------------------

def test_a_message_page_shows_it_as_sent_and_the_html_only_through_the_frame(admin_env: AdminEnv,
                                                                              log: dict[str, int]) -> None:
    client = client_as(admin_env, "viewer")
    page = client.get(f"/messages/{log['react_sent']}")
    assert page.status_code == 200
    body = text(page)
    assert "Здравствуйте, Анна! Ваш промокод BACK-15." in body and "Скидка 15%" in body
    assert f'sandbox src="/messages/{log["react_sent"]}/letter"' in body and "allow-popups" not in body
    assert "font-size: 22px" not in body and "parent.alert" not in body  # the HTML itself is only in the frame
    assert "&lt;abc@hub&gt;" in body and "/workflows/reactivation_90d" in body and "#7" in body
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    letter = client.get(f"/messages/{log['react_sent']}/letter")
    assert letter.status_code == 200 and letter.headers["Content-Security-Policy"] == letter_policy(
        links=False, images=False)
    assert "font-size: 22px" in text(letter) and letter.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "script-src" not in LETTER_CSP and "default-src 'none'" in LETTER_CSP  # the letter's script never runs
    no_html = client.get(f"/messages/{log['react_sms']}/letter")
    assert no_html.status_code == 404 and "нет HTML-части" in plain(no_html)


def test_a_message_page_names_who_wrote_it_and_keeps_the_technical_rows_folded(admin_env: AdminEnv,
                                                                                log: dict[str, int]) -> None:
    """A campaign's letter names the campaign, a workflow's the workflow and step; one without origin is by hand."""
    from workflows.models import Campaign

    with admin_env.engine.begin() as conn:
        conn.execute(insert(Campaign.__table__).values(
            name="proverka_zhurnala", title="Проверка журнала", segment="all", channel="email",
            template="reactivation_email", purpose="marketing", status="done",
            created_by="admin:marketer@shop.example"))
    campaign = add_message(admin_env, origin="campaign_proverka_zhurnala", key="workflow:38:1")
    with admin_env.engine.begin() as conn:
        conn.execute(Message.__table__.update().where(Message.__table__.c.id == campaign).values(
            meta={"workflow": "campaign_proverka_zhurnala", "run": 38, "step": 1, "campaign": "proverka_zhurnala"},
            worker="vm:7610", claimed_at=dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc)))
    client = client_as(admin_env, "marketer")
    page = client.get(f"/messages/{campaign}")
    assert page.status_code == 200
    origin = re.search(r'<td id="origin" data-kind="(\w+)">(.*?)</td>', text(page), re.S)
    assert origin and origin.group(1) == "campaign"
    assert "Рассылка" in plain(page) and "Проверка журнала" in origin.group(2) and "/campaigns/proverka_zhurnala" in \
        origin.group(2)
    assert "вручную" not in plain(page) and "шаг" not in origin.group(2)
    facts, technical = text(page).split('<details id="technical">')
    assert "workflow:38:1" not in facts and "vm:7610" not in facts and "#38" not in facts  # folded away
    assert "workflow:38:1" in technical and "vm:7610" in technical and "Технические подробности" in technical
    workflow = plain(client.get(f"/messages/{log['react_sent']}"))
    assert "Сценарий" in workflow and "шаг 2" in workflow and "вручную" not in workflow
    by_hand = client.get(f"/messages/{log['by_hand']}")
    assert 'data-kind="hand"' in text(by_hand) and "отправлено вручную" in plain(by_hand)
    assert post(client, "/language", {"language": "en", "next": "/messages/"}, token_from="/messages/").status_code \
        == 302
    english = plain(client.get(f"/messages/{campaign}"))
    assert "Sent by the campaign" in english and "Technical details" in english


def test_the_log_reads_in_english(admin_env: AdminEnv, log: dict[str, int]) -> None:
    client = client_as(admin_env, "marketer")
    assert post(client, "/language", {"language": "en", "next": "/messages/"}, token_from="/messages/").status_code \
        in (302, 303)
    page = plain(client.get("/messages/"))
    assert "Message log" in page and "Channel's answer" in page and "sent by hand" in page
    one = plain(client.get(f"/messages/{log['birthday']}"))
    assert "Send again" in one and "Not sent" in one
    assert "Messages in doubt" in plain(client.get("/messages/review"))


@pytest.mark.parametrize("query, says", [
    ("status=<script>alert(1)</script>", "Статус: '<script>alert(1)</script>'"),
    ("contact=abc", "Контакт: 'abc' — это не номер контакта"),
    ("contact=99999999999999999999999", "не номер контакта"),
    ("since=99999-01-01", "Период с: '99999-01-01' — не дата"),
    ("until=2026-13-45", "по: '2026-13-45' — не дата"),
    ("since=0001-01-01", "не дата"),
    ("since=2026-12-05&until=2026-12-01", "позже последнего"),
    ("channel=e mail", "Канал: 'e mail'"),
    ("before=-1", "Страница"),
    ("origin=" + "x" * 300, "Рассылка или сценарий"),
])
def test_hostile_addresses_get_a_russian_explanation(admin_env: AdminEnv, log: dict[str, int], query: str,
                                                    says: str) -> None:
    page = client_as(admin_env, "viewer").get(f"/messages/?{query}")
    assert page.status_code == 400, query
    shown = plain(page)
    assert says in shown, shown[:3000]
    assert "<script>alert(1)" not in text(page) and "Traceback" not in shown


def test_a_message_that_does_not_exist_is_a_russian_404(admin_env: AdminEnv) -> None:
    client = client_as(admin_env, "viewer")
    for path in ("/messages/424242", "/messages/424242/letter", "/messages/99999999999999999999999"):
        page = client.get(path)
        assert page.status_code == 404, path
        assert "Не найдено" in plain(page)
    assert "Сообщения #424242 нет." in plain(client.get("/messages/424242"))
    refused = post(client_as(admin_env, "marketer"), "/messages/424242/resolve", {"outcome": "sent"},
                   token_from="/messages/")
    assert refused.status_code == 404


# --- review ------------------------------------------------------------------------------------

def audit_entries(env: AdminEnv) -> list[Any]:
    with env.engine.connect() as conn:
        return list(conn.execute(select(AuditEntry).where(AuditEntry.action.like("message_%"))
                                 .order_by(AuditEntry.id)))


def status_of(env: AdminEnv, message_id: int) -> str:
    with env.engine.connect() as conn:
        return conn.execute(select(Message.status).where(Message.id == message_id)).scalar_one()


def test_a_marketer_settles_messages_in_doubt_and_each_decision_is_audited(admin_env: AdminEnv,
                                                                            log: dict[str, int]) -> None:
    second = add_message(admin_env, origin="birthday", status="unknown", key="second", contact="petrov_2")
    client = client_as(admin_env, "marketer")
    page = client.get("/messages/review")
    body = plain(page)
    assert page.status_code == 200 and "Сообщения под вопросом" in body
    assert f'data-id="{log["birthday"]}"' in body and f'data-id="{log["react_failed"]}"' in body
    assert "Отправлено" in body and "Не отправлено" in body and "Отправить снова" in body
    assert "может получить его дважды" in body  # the resend asks first
    done = post(client, f"/messages/{log['birthday']}/resolve", {"outcome": "sent", "next": "/messages/review"},
                token_from="/messages/review")
    assert done.status_code == 302 and done.headers["Location"].endswith("/messages/review")
    assert status_of(admin_env, log["birthday"]) == "sent"
    assert post(client, f"/messages/{second}/resolve", {"outcome": "failed"}, token_from="/messages/review") \
        .status_code == 302
    assert status_of(admin_env, second) == "failed"
    again = post(client, f"/messages/{log['birthday']}/resolve", {"outcome": "failed"}, token_from="/messages/review")
    assert again.status_code == 302 and status_of(admin_env, log["birthday"]) == "sent"
    assert "нельзя" in plain(client.get("/messages/review"))  # the flash says it was settled already
    assert post(client, f"/messages/{second}/resolve", {"outcome": "<b>maybe</b>"},
                token_from="/messages/review").status_code == 302
    entries = audit_entries(admin_env)
    assert [(e.action, e.actor, e.details["message_id"]) for e in entries] == [
        ("message_marked_sent", "admin:marketer@shop.example", log["birthday"]),
        ("message_marked_failed", "admin:marketer@shop.example", second)]
    assert entries[0].contact_id == admin_env.ids["petrov_1"]
    audit_page = plain(client_as(admin_env, "admin").get("/users/audit"))
    assert "сообщение отмечено отправленным" in audit_page
    forged = client.post(f"/messages/{log['react_failed']}/resolve", data={"outcome": "requeue"})
    assert forged.status_code == 400 and status_of(admin_env, log["react_failed"]) == "failed"  # no CSRF token


def test_a_viewer_sees_the_review_without_buttons_and_cannot_post(admin_env: AdminEnv, log: dict[str, int]) -> None:
    client = client_as(admin_env, "viewer")
    for path in ("/messages/review", f"/messages/{log['birthday']}"):
        page = plain(client.get(path))
        assert "/resolve" not in page and "Отправить снова" not in page, path
    refused = post(client, f"/messages/{log['birthday']}/resolve", {"outcome": "sent"}, token_from="/messages/")
    assert refused.status_code == 403 and status_of(admin_env, log["birthday"]) == "unknown"
    assert audit_entries(admin_env) == []


def test_send_again_goes_through_the_dispatcher_to_a_real_smtp_server(admin_env: AdminEnv, mailbox: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    box, port = mailbox
    monkeypatch.setenv("HUB_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("HUB_MAIL_FROM", "Лавка <shop@example.ru>")
    doubt = add_message(admin_env, status="unknown", origin="reactivation_90d", html=LETTER,
                        created=dt.datetime.now(UTC) - dt.timedelta(hours=1), error="connection lost after DATA")
    client = client_as(admin_env, "marketer")
    done = post(client, f"/messages/{doubt}/resolve", {"outcome": "requeue"}, token_from="/messages/review")
    assert done.status_code == 302
    queue.drain(timeout=60)
    assert status_of(admin_env, doubt) == "sent"
    assert [r.rcpt_tos for r in box.received] == [["anna@example.ru"]]
    assert "BACK-15" in box.received[0].message.get_body(("plain",)).get_content()
    assert [e.action for e in audit_entries(admin_env)] == ["message_requeued"]
    assert f"Сообщение #{doubt} снова в очереди" in plain(client.get("/messages/review"))
    with admin_env.engine.connect() as conn:
        assert (messaging.get(conn, doubt) or {})["attempts"] == 2  # the doubtful attempt and the one that went


# --- an erased person --------------------------------------------------------------------------

def test_an_erased_persons_messages_show_no_personal_data(admin_env: AdminEnv, log: dict[str, int]) -> None:
    erasure.erase(admin_env.engine, admin_env.settings, admin_env.ids["anna"], actor="test")
    client = client_as(admin_env, "viewer")
    page = plain(client.get(f"/messages/?contact={admin_env.ids['anna']}"))
    assert total_on(client.get(f"/messages/?contact={admin_env.ids['anna']}")) == 3  # statuses stay
    assert "anna@example.ru" not in page and "Иванова" not in page and "Скидка" not in page
    assert "данные стёрты" in page
    one = plain(client.get(f"/messages/{log['react_sent']}"))
    assert "стёрты по запросу" in one and "Здравствуйте" not in one and "anna@example.ru" not in one
    assert client.get(f"/messages/{log['react_sent']}/letter").status_code == 404
    everything = plain(client.get("/messages/"))
    assert "anna@example.ru" not in everything and "petrov@example.ru" in everything


# --- the command line finds what the page finds ------------------------------------------------

def test_hub_messages_list_takes_the_same_filters(admin_env: AdminEnv, log: dict[str, int]) -> None:
    import json

    import plugins.mailing
    from click.testing import CliRunner

    from hub import plugins as hub_plugins
    from tests.support.cli import cli

    plugins.mailing.register_commands(cli)
    assert hub_plugins.get_pm().has_plugin("mailing")

    def listed(*args: str) -> list[int]:
        result = CliRunner().invoke(cli, ["messages", "list", *args, "--json"])
        assert result.exit_code == 0, result.output
        return [m["id"] for m in json.loads(result.output)]

    assert listed("--origin", "reactivation_90d", "--since", "2026-12-02") == [log["react_sms"], log["react_failed"]]
    assert listed("--origin", "-") == [log["by_hand"]]
    assert listed("--until", "2026-12-01") == [log["react_sent"]]
    assert listed("--origin", "birthday", "--status", "unknown") == [log["birthday"]]
    page = client_as(admin_env, "viewer").get("/messages/?origin=reactivation_90d&since=2026-12-02")
    assert ids_on(page) == [log["react_sms"], log["react_failed"]]
    wrong = CliRunner().invoke(cli, ["messages", "list", "--since", "0001-01-01"])
    assert wrong.exit_code == 2 and "--since" in wrong.output and "Traceback" not in wrong.output
    assert "--origin" in CliRunner().invoke(cli, ["messages", "list", "--help"]).output


def test_a_merged_contacts_messages_are_the_survivors(admin_env: AdminEnv) -> None:
    from hub import identity

    older = add_message(admin_env, contact="petrov_2", origin="birthday", key="before-merge",
                        address="petr@example.ru", created=dt.datetime(2026, 11, 1, 9, tzinfo=UTC))
    own = add_message(admin_env, contact="petrov_1", origin="birthday", key="own", address="petrov@example.ru")
    with admin_env.engine.begin() as conn:
        identity.merge_contacts(conn, admin_env.ids["petrov_1"], admin_env.ids["petrov_2"], reason={"rule": "test"},
                                settings=admin_env.settings, actor="test")
    client = client_as(admin_env, "viewer")
    survivor = client.get(f"/messages/?contact={admin_env.ids['petrov_1']}")
    assert ids_on(survivor) == [own, older] and total_on(survivor) == 2
    merged = client.get(f"/messages/?contact={admin_env.ids['petrov_2']}")
    assert ids_on(merged) == []  # the merge moved them to the survivor; the page says where to look
    assert f"объединён с №{admin_env.ids['petrov_1']}" in plain(merged)
    nobody = client.get("/messages/?contact=777777")
    assert nobody.status_code == 200 and ids_on(nobody) == [] and "Контакта #777777 нет." in plain(nobody)
