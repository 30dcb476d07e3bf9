"""The campaigns' pages through the test client: who may do what, the form, the preview and the letter, hostile input.

The browser flows (a marketer building, test-sending, scheduling and sending a
campaign in Chromium) are in tests/test_campaigns_browser.py.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub import message_templates, users
from hub.api import format_moment
from hub.admin.audit import audit_t
from hub.segments import store
from hub.segments.evaluate import Segments
from hub.models import Message, ScheduleState
from tests.support.admin import AdminEnv, admin_env, client_as, csrf_token, plain, post, text  # noqa: F401
from workflows.models import Campaign, PromoCode

pytestmark = pytest.mark.both_databases

LETTER_HTML = ('<div style="color: rgb(200, 0, 0); font-size: 22px" id="hello">Здравствуйте, '
               '{{ contact.first_name }}!</div><p>Весна пришла: скидки на всё.</p>')


def seed_campaign_world(env: AdminEnv) -> None:
    """A Moscow segment (Anna, who agreed to marketing email) and a letter with inline styles."""
    with env.engine.begin() as conn:
        registry = Segments(conn, env.settings).registry
        store.add(conn, registry, {"name": "moscow", "title": "Москвичи",
                                   "rule": {"field": "contact.city", "op": "eq", "value": "Москва"}})
        message_templates.save(conn, env.settings, message_templates.Template(
            name="spring_letter", channel="email", subject="Весна, {{ contact.first_name }}",
            text="Здравствуйте, {{ contact.first_name }}! Весна пришла: скидки на всё.", html=LETTER_HTML))


@pytest.fixture
def env(admin_env: AdminEnv) -> AdminEnv:  # noqa: F811
    seed_campaign_world(admin_env)
    return admin_env


FORM = {"title": "Весенняя распродажа", "segment": "moscow", "channel": "email", "template": "spring_letter",
        "purpose": "marketing", "holdout": "0"}


def create(env: AdminEnv, **changes: Any) -> Any:
    client = client_as(env, "marketer")
    return post(client, "/campaigns/new", {**FORM, **changes}, token_from="/campaigns/new")


def made(env: AdminEnv, **changes: Any) -> str:
    response = create(env, **changes)
    assert response.status_code == 302, plain(response)
    return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]


def status_of(env: AdminEnv, name: str) -> str:
    with env.engine.connect() as conn:
        return conn.execute(select(Campaign.status).where(Campaign.name == name)).scalar_one()


# --- who may do what -------------------------------------------------------------------------

POSTS = ("new", "{name}/edit", "{name}/test", "{name}/schedule", "{name}/send", "{name}/cancel", "{name}/pause",
         "{name}/resume")


def test_anonymous_is_sent_to_sign_in_and_cannot_post(env: AdminEnv) -> None:
    name = made(env)
    client = client_as(env, None)
    for path in ("/campaigns/", f"/campaigns/{name}", "/campaigns/new", f"/campaigns/{name}/edit",
                 f"/campaigns/{name}/letter/{env.ids['anna']}"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
    token = csrf_token(client, "/login")
    for path in POSTS:
        response = client.post("/campaigns/" + path.format(name=name), data={"csrf_token": token, **FORM})
        assert response.status_code in (401, 403), path
    assert status_of(env, name) == "draft"


def test_viewer_sees_everything_and_changes_nothing(env: AdminEnv) -> None:
    name = made(env)
    client = client_as(env, "viewer")
    index = client.get("/campaigns/")
    assert index.status_code == 200 and "Весенняя распродажа" in plain(index)
    assert 'id="new-campaign"' not in text(index)
    page = client.get(f"/campaigns/{name}")
    assert page.status_code == 200
    body = text(page)
    assert 'id="will-receive"' in body and 'id="letter-frame"' in body
    for button in ("send-now", "schedule-campaign", "cancel-campaign", "edit-campaign", "send-test", "test-form"):
        assert f'id="{button}"' not in body, button
    assert client.get(f"/campaigns/{name}/letter/{env.ids['anna']}").status_code == 200
    assert client.get("/campaigns/new").status_code == 403
    assert client.get(f"/campaigns/{name}/edit").status_code == 403
    for path in POSTS:
        response = post(client, "/campaigns/" + path.format(name=name), {**FORM, "date": "2027-01-01",
                                                                           "time": "10:00", "to": "v@shop.example"},
                        token_from="/campaigns/")
        assert response.status_code == 403, path
    assert status_of(env, name) == "draft"
    with env.engine.connect() as conn:
        assert len(conn.execute(select(Campaign.id)).all()) == 1


def test_the_menu_names_campaigns_after_segments(env: AdminEnv) -> None:
    page = text(client_as(env, "viewer").get("/"))
    nav = page[page.index("<nav"):page.index("</nav>")]
    assert nav.index("Сегменты") < nav.index("Рассылки")
    assert 'href="/campaigns/"' in nav


# --- the form ------------------------------------------------------------------------------

def test_a_marketer_creates_a_campaign_and_sees_its_preview(env: AdminEnv) -> None:
    client = client_as(env, "marketer")
    form = client.get("/campaigns/new")
    assert form.status_code == 200
    shown = plain(form)
    assert "Москвичи — 1 контакт" in shown  # the segment with its title and size
    assert 'data-channel="email"' in text(form)
    name = made(env, promo="1", discount="15", valid="14", prefix="SPRING")
    page = client.get(f"/campaigns/{name}")
    body = plain(page)
    assert re.search(r'id="members">1<', text(page)) and re.search(r'id="will-receive">1<', text(page))
    assert 'data-status="draft"' in body and "черновик" in body
    assert "Анна Иванова" in body and "anna@example.ru" in body
    assert "Весна, Анна" in body  # the subject for the first person in the sample
    assert f'/campaigns/{name}/letter/{env.ids["anna"]}' in text(page)
    assert "Отправить 1 получателю?" in body
    assert "скидка 15 %, действует 14 дней" in body
    with env.engine.connect() as conn:
        actions = list(conn.execute(select(audit_t.c.action, audit_t.c.actor)))
    assert ("campaign_created", "admin:marketer@shop.example") in actions


def test_the_letter_frame_has_its_own_policy_and_the_text_part_is_on_the_page(env: AdminEnv) -> None:
    name = made(env)
    client = client_as(env, "viewer")
    frame = client.get(f"/campaigns/{name}/letter/{env.ids['anna']}")
    assert frame.status_code == 200
    assert "style-src 'unsafe-inline'" in frame.headers["Content-Security-Policy"]
    assert "sandbox" in frame.headers["Content-Security-Policy"]
    assert 'style="color: rgb(200, 0, 0)' in text(frame) and "Здравствуйте, Анна!" in text(frame)
    page = plain(client.get(f"/campaigns/{name}?contact={env.ids['anna']}"))
    assert "Здравствуйте, Анна! Весна пришла" in page
    assert 'sandbox="allow-popups"' in page


def test_an_sms_campaign_shows_its_text(env: AdminEnv) -> None:
    with env.engine.begin() as conn:
        message_templates.save(conn, env.settings, message_templates.Template(
            name="spring_sms", channel="sms", subject=None, text="Анна, весна! Скидки до 30 %.", html=None))
    name = made(env, channel="sms", template="spring_sms", purpose="transactional")
    page = plain(client_as(env, "marketer").get(f"/campaigns/{name}?contact={env.ids['petrov_1']}"))
    assert "Анна, весна! Скидки до 30 %." in page
    assert 'id="test-email-only"' in page and 'id="test-form"' not in page  # a test goes to one's own email
    client = client_as(env, "marketer")
    post(client, f"/campaigns/{name}/test", {}, token_from=f"/campaigns/{name}")
    assert "можно проверить только рассылки по почте" in plain(client.get(f"/campaigns/{name}"))
    frame = client_as(env, "marketer").get(f"/campaigns/{name}/letter/{env.ids['petrov_1']}")
    assert frame.status_code == 200 and "Скидки до 30 %." in plain(frame)


def test_editing_keeps_what_was_typed_and_saves(env: AdminEnv) -> None:
    name = made(env)
    client = client_as(env, "marketer")
    form = plain(client.get(f"/campaigns/{name}/edit"))
    assert 'value="Весенняя распродажа"' in form
    response = post(client, f"/campaigns/{name}/edit", {**FORM, "title": "Весна-2027", "holdout": "10"},
                    token_from=f"/campaigns/{name}/edit")
    assert response.status_code == 302
    page = plain(client.get(f"/campaigns/{name}"))
    assert "Весна-2027" in page and "10%" in page


# --- hostile input -------------------------------------------------------------------------

@pytest.mark.parametrize("changes, field, words", [
    ({"segment": "no_such_segment"}, "segment", "no_such_segment"),
    ({"channel": "pigeon"}, "channel", "pigeon"),
    ({"template": "nope"}, "template", "nope"),
    ({"purpose": "spying"}, "purpose", "spying"),
    ({"promo": "1", "discount": "500", "valid": "14"}, "promo.discount", "500"),
    ({"promo": "1", "discount": "пятнадцать", "valid": "14"}, "promo.discount", "пятнадцать"),
    ({"holdout": "abc"}, "holdout", "abc"),
    ({"holdout": "90"}, "holdout", "90"),
    ({"title": ""}, "title", ""),
    ({"title": "Я" * 5000}, "title", "300"),
    ({"segment": "s" * 100_000}, "segment", "300"),
])
def test_a_tampered_form_comes_back_with_the_problem_named(env: AdminEnv, changes: dict[str, str], field: str,
                                                            words: str) -> None:
    response = create(env, **changes)
    assert response.status_code == 400
    page = plain(response)
    errors = re.findall(r'<p class="error field-error" data-field="([^"]+)" role="alert">([^<]*)</p>', page)
    assert any(f == field and words in e for f, e in errors), (field, errors)
    assert "Traceback" not in page
    if len(changes.get("title", "")) < 400:
        assert f'value="{changes.get("title", FORM["title"])}"' in page  # nothing typed is lost
    with env.engine.connect() as conn:
        assert conn.execute(select(Campaign.id)).first() is None


def test_markup_in_a_title_is_shown_as_text(env: AdminEnv) -> None:
    name = made(env, title='<script>alert("x")</script><b>Весна</b>')
    page = text(client_as(env, "viewer").get(f"/campaigns/{name}"))
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "<b>Весна</b>" not in text(client_as(env, "viewer").get("/campaigns/"))


def test_unknown_campaigns_and_contacts_are_named_not_crashed_on(env: AdminEnv) -> None:
    name = made(env)
    client = client_as(env, "marketer")
    for path in ("/campaigns/nope", "/campaigns/nope/edit", "/campaigns/" + "x" * 5000,
                 "/campaigns/nope/letter/1", "/campaigns/%3Cscript%3E"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Не найдено" in plain(response)
    for path in ("nope/send", "nope/cancel", "nope/test", "nope/schedule"):
        assert post(client, "/campaigns/" + path, {}, token_from="/campaigns/").status_code == 404
    frame = client.get(f"/campaigns/{name}/letter/999999")
    assert frame.status_code == 404 and "999999" in plain(frame)
    page = plain(client.get(f"/campaigns/{name}?contact=abc"))
    assert "Показать письмо для: 'abc' — это не номер контакта." in page
    page = plain(client.get(f"/campaigns/{name}?contact=99999999"))
    assert 'id="letter-error"' in page and "99999999" in page
    listing = client.get("/campaigns/?status=<b>bogus</b>")
    assert listing.status_code == 200 and "<b>bogus</b>" not in text(listing)


def test_an_erased_or_merged_contact(env: AdminEnv) -> None:
    """A merged contact's letter is their survivor's; an erased one has none, and the page says so."""
    from hub import identity
    from plugins.gdpr import erasure

    name = made(env)
    client = client_as(env, "marketer")
    with env.engine.begin() as conn:
        identity.merge_contacts(conn, env.ids["petrov_1"], env.ids["petrov_2"], reason={"rule": "by hand"},
                                settings=env.settings)
    merged = client.get(f"/campaigns/{name}/letter/{env.ids['petrov_2']}")
    assert merged.status_code == 200 and "Пётр" in plain(merged)
    erasure.erase(env.engine, env.settings, env.ids["markup"], actor="test")
    page = client.get(f"/campaigns/{name}?contact={env.ids['markup']}")
    assert page.status_code == 200 and 'id="letter-error"' in text(page)
    frame = client.get(f"/campaigns/{name}/letter/{env.ids['markup']}")
    assert frame.status_code == 404 and str(env.ids["markup"]) in plain(frame)


def test_schedule_needs_a_real_moment_in_the_future(env: AdminEnv) -> None:
    name = made(env)
    client = client_as(env, "marketer")
    soon = (dt.datetime.now(env.settings.tz).date() + dt.timedelta(days=30))
    past = format_moment(dt.datetime(2020, 1, 1, 10, tzinfo=env.settings.tz), env.settings.tz, "ru")  # as the page
    for data, words in (({"date": "вчера", "time": "10:00"}, "вчера"),
                        ({"date": "2020-01-01", "time": "10:00"}, f"{past} уже прошло"),
                        ({"date": "2030-02-30", "time": "10:00"}, "2030-02-30"),
                        ({"date": soon.isoformat(), "time": "25:99"}, "25:99"), ({}, ""),
                        ({"date": "9999-12-31", "time": "23:59"}, "9999-12-31"),
                        ({"date": "0001-01-01", "time": "00:00"}, "0001-01-01"),
                        ({"date": "2099-01-01", "time": "10:00"}, "не больше чем на год вперёд"),
                        ({"date": "1" * 5000, "time": "10:00"}, "1111"),
                        ({"date": "<b>завтра</b>", "time": "10:00"}, "'<b>завтра</b>'")):
        response = post(client, f"/campaigns/{name}/schedule", data, token_from=f"/campaigns/{name}")
        assert response.status_code == 400, data  # the reason at the form, not a 500
        shown = re.search(r'<p class="error field-error" id="schedule-error" role="alert">([^<]*)</p>', text(response))
        assert shown and words in html.unescape(shown.group(1)), (data, shown)
        assert "<b>завтра</b>" not in text(response) and "Traceback" not in text(response), data
        assert status_of(env, name) == "draft"
    response = post(client, f"/campaigns/{name}/schedule", {"date": soon.isoformat(), "time": "10:00"},
                    token_from=f"/campaigns/{name}")
    page = plain(client.get(response.headers["Location"]))
    assert status_of(env, name) == "scheduled"
    assert soon.strftime("%d.%m.%Y") in page and "10:00" in page
    with env.engine.connect() as conn:
        at = conn.execute(select(Campaign.scheduled_at).where(Campaign.name == name)).scalar_one()
    assert at is not None and (at.hour, at.minute) == (7, 0)  # 10:00 in Moscow is 07:00 UTC


def test_a_form_without_its_token_is_refused(env: AdminEnv) -> None:
    name = made(env)
    client = client_as(env, "marketer")
    response = client.post(f"/campaigns/{name}/send", data={})
    assert response.status_code == 400
    assert status_of(env, name) == "draft"


def test_send_now_cancel_and_moves_that_do_not_fit(env: AdminEnv) -> None:
    name = made(env)
    client = client_as(env, "marketer")
    assert post(client, f"/campaigns/{name}/pause", token_from="/campaigns/").status_code == 302
    page = plain(client.get(f"/campaigns/{name}"))
    assert 'class="flash error"' in page and status_of(env, name) == "draft"
    post(client, f"/campaigns/{name}/send", token_from="/campaigns/")
    assert status_of(env, name) in ("sending", "done")
    page = plain(client.get(f"/campaigns/{name}"))
    assert 'id="message-counts"' in page and "/messages/?origin=campaign_" in page
    assert 'id="daily-chart-data"' in page and 'id="revenue-chart-data"' in page
    assert 'id="send-now"' not in page
    assert client.get(f"/campaigns/{name}/edit").status_code == 302
    other = made(env, title="Вторая")
    post(client, f"/campaigns/{other}/cancel", token_from="/campaigns/")
    assert status_of(env, other) == "cancelled"
    listing = plain(client.get("/campaigns/?status=cancelled"))
    assert "Вторая" in listing and "Весенняя распродажа" not in listing


def test_the_pages_speak_english_to_who_chose_it(env: AdminEnv) -> None:
    name = made(env)
    with env.engine.begin() as conn:
        users.set_language(conn, env.users["marketer"].id, "en")
    client = client_as(env, "marketer")
    page = plain(client.get(f"/campaigns/{name}"))
    assert "Who will get it" in page and "Send now" in page and "draft" in page
    page = plain(client.get("/campaigns/new"))
    assert "New campaign" in page


# --- a test letter goes to the marketer only ---------------------------------------------

def test_a_test_letter_goes_only_to_the_signed_in_persons_own_address(env: AdminEnv, mailbox: Any) -> None:
    box, port = mailbox
    env.settings = replace(env.settings, extra={**env.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
                                                "mail_from": "Лавка <shop@example.ru>"})
    env.app.config["HUB_SETTINGS"] = env.settings
    name = made(env)
    client = client_as(env, "marketer")
    page = text(client.get(f"/campaigns/{name}"))
    assert 'id="test-to"' in page and "marketer@shop.example" in page
    assert not re.search(r'<input[^>]*name="to"', page)  # the address is shown, not asked for
    for forged in ("boss@competitor.example", "MARKETER@shop.example.evil.ru", "<b>x</b>@y.ru", "a" * 5000):
        response = post(client, f"/campaigns/{name}/test", {"to": forged, "contact": env.ids["anna"]},
                        token_from=f"/campaigns/{name}")
        assert response.status_code == 302
        shown = plain(client.get(f"/campaigns/{name}"))
        assert "Тестовое письмо уходит только на ваш адрес, marketer@shop.example" in shown, forged
        assert "<b>x</b>" not in text(client.get(f"/campaigns/{name}"))
    assert box.received == []
    response = post(client, f"/campaigns/{name}/test", {"contact": env.ids["anna"]}, token_from=f"/campaigns/{name}")
    assert response.status_code == 302
    assert [r.rcpt_tos for r in box.received] == [["marketer@shop.example"]]
    assert "Тестовое письмо отправлено на marketer@shop.example." in text(client.get(f"/campaigns/{name}"))
    admin = client_as(env, "admin")
    post(admin, f"/campaigns/{name}/test", {"to": "admin@shop.example"}, token_from=f"/campaigns/{name}")
    assert [r.rcpt_tos for r in box.received] == [["marketer@shop.example"], ["admin@shop.example"]]


# --- send now goes to the queue ----------------------------------------------------------

def test_send_now_leaves_the_entering_to_a_queue_job(env: AdminEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.api
    from workflows import campaign_admin

    queued: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(hub.api, "enqueue", lambda settings, func, *args, **kwargs: queued.append(
        (func, args, kwargs)))
    name = made(env)
    client = client_as(env, "marketer")
    response = post(client, f"/campaigns/{name}/send", token_from=f"/campaigns/{name}")
    assert response.status_code == 302
    assert "Рассылка запускается…" in plain(client.get(f"/campaigns/{name}"))
    [(func, args, kwargs)] = queued
    assert func is campaign_admin.start_job and args[:2] == (name, "admin:marketer@shop.example")
    assert kwargs["job_id"] == f"campaign-start-{name}"
    assert status_of(env, name) == "draft"  # nothing was entered inside the request
    func(*args)  # what the job does without Redis: enter, then send through the file channel
    assert status_of(env, name) == "done"
    page = plain(client.get(f"/campaigns/{name}"))
    assert 'id="runs">1<' in page and 'data-status="sent"' in page
    with env.engine.connect() as conn:
        assert conn.execute(select(Message.status).where(Message.origin == f"campaign_{name}")).all() == [("sent",)]
    assert len(list(Path("outbox").glob("*-email.eml"))) == 1  # the file channel's letter (the test's own folder)


def use_smtp(env: AdminEnv, port: int) -> None:
    env.settings = replace(env.settings, extra={**env.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
                                                "mail_from": "Лавка <shop@example.ru>"})
    env.app.config["HUB_SETTINGS"] = env.settings


def test_send_now_without_redis_sends_the_letters_with_no_scheduler_running(env: AdminEnv, mailbox: Any) -> None:
    """No `hub scheduler`, no `hub worker`: «send now» itself gets the letter to the SMTP server, once."""
    box, port = mailbox
    use_smtp(env, port)
    assert not env.settings.redis_url
    name = made(env)
    client = client_as(env, "marketer")
    response = post(client, f"/campaigns/{name}/send", token_from=f"/campaigns/{name}")
    assert response.status_code == 302
    assert status_of(env, name) == "done"
    with env.engine.connect() as conn:
        sent = conn.execute(select(Message.status, Message.address).where(Message.origin == f"campaign_{name}"))
        assert [tuple(r) for r in sent] == [("sent", "anna@example.ru")]
        assert conn.execute(select(ScheduleState.name)).first() is None  # no scheduler ever ran
    assert [r.rcpt_tos for r in box.received] == [["anna@example.ru"]]
    page = plain(client.get(f"/campaigns/{name}"))
    assert re.search(r'data-status="sent"><td>отправлено</td><td class="num">1<', page)
    assert "Писем пока нет" not in page and 'id="scheduler-warning"' not in page  # done: nothing waits
    post(client, f"/campaigns/{name}/send", token_from=f"/campaigns/{name}")  # pressed again: nobody twice
    assert len(box.received) == 1


def test_the_page_says_the_scheduler_sends_and_warns_when_it_has_not_run(env: AdminEnv, hub_clock: Any) -> None:
    from workflows import campaigns

    now = hub_clock.set(dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    name = made(env)
    page = plain(client_as(env, "viewer").get(f"/campaigns/{name}"))
    assert 'id="scheduler-note"' not in page  # a draft waits for nobody
    campaigns.schedule(env.engine, env.settings, name, now + dt.timedelta(days=1), actor="admin:m")

    def shown() -> str:
        return plain(client_as(env, "viewer").get(f"/campaigns/{name}"))

    page = shown()
    assert "только если тогда работает планировщик Hub (hub scheduler)" in page
    assert "Планировщик Hub не запущен: с этой базой он ещё ни разу не работал" in page
    with env.engine.begin() as conn:
        conn.execute(ScheduleState.__table__.insert().values(name="workflows", last_started_at=now - dt.timedelta(
            seconds=50), updated_at=now))
    page = shown()
    assert 'id="scheduler-needed"' in page and 'id="scheduler-warning"' not in page  # 50 s: within 2 minutes
    hub_clock.advance(seconds=71)  # 121 s: past twice the 30-second tick and past the least window of 2 minutes
    page = shown()
    assert "Планировщик Hub не запущен: последний раз он работал" in page and "каждые 30 секунд" in page
    assert format_moment(now - dt.timedelta(seconds=50), env.settings.tz) in page
    health = campaigns.scheduler_health(env.engine, env.settings, now=now)
    assert health["running"] and health["every"] == dt.timedelta(seconds=30)
    assert not campaigns.scheduler_health(env.engine, env.settings, now=now + dt.timedelta(minutes=2))["running"]


PROMO_TEXT = "Ваш промокод: {{ promo.code }}"


def test_the_preview_shows_one_sample_code_for_one_person_in_the_frame_and_the_text(env: AdminEnv) -> None:
    from workflows import campaigns

    with env.engine.begin() as conn:
        message_templates.save(conn, env.settings, message_templates.Template(
            name="promo_letter", channel="email", subject="Скидка", text=PROMO_TEXT,
            html='<p>Ваш промокод: <b id="code">{{ promo.code }}</b></p>'))
    name = made(env, template="promo_letter", promo="1", discount="15", valid="14", prefix="SPRING")
    anna, other = env.ids["anna"], env.ids["petrov_1"]
    client = client_as(env, "viewer")
    frame = text(client.get(f"/campaigns/{name}/letter/{anna}"))
    page = plain(client.get(f"/campaigns/{name}?contact={anna}"))
    [in_frame] = re.findall(r'<b id="code">(SPRING-[A-Z0-9]+)</b>', frame)
    [in_text] = re.findall(r"Ваш промокод: (SPRING-[A-Z0-9]+)", page)
    assert in_frame == in_text
    again = campaigns.render_for(env.engine, env.settings, name, anna)
    assert in_frame in again["text"] and in_frame in (again["html"] or "")
    assert campaigns.sample_code(name, anna, "SPRING") == in_frame
    assert campaigns.sample_code(name, other, "SPRING") != in_frame  # each person a code of their own
    assert campaigns.sample_code(name + "_2", anna, "SPRING") != in_frame
    with env.engine.connect() as conn:  # a sample is never stored, so it redeems nothing
        assert conn.execute(select(PromoCode.id)).first() is None


def test_the_contact_card_shows_a_campaign_and_its_code_as_a_campaign(env: AdminEnv) -> None:
    name = made(env, title="Весна <b>для</b> всех", promo="1", discount="15", valid="14", prefix="SPRING")
    client = client_as(env, "marketer")
    post(client, f"/campaigns/{name}/send", token_from=f"/campaigns/{name}")
    assert status_of(env, name) == "done"
    page = text(client_as(env, "viewer").get(f"/contacts/{env.ids['anna']}"))
    shown = html.unescape(page)
    runs = re.search(r'<table id="campaign-runs">.*?</table>', page, re.S).group(0)  # type: ignore[union-attr]
    assert "Рассылки" in shown and f'href="/campaigns/{name}"' in runs
    assert "Рассылка:" in runs and "Весна &lt;b&gt;для&lt;/b&gt; всех" in runs and "<b>для</b>" not in page
    workflow_runs = re.search(r'<table id="workflow-runs">.*?</table>', page, re.S).group(0)  # type: ignore[union-attr]
    assert f"campaign_{name}" not in workflow_runs and "Весна" not in workflow_runs
    codes = re.search(r'<table id="promo-codes">.*?</table>', page, re.S).group(0)  # type: ignore[union-attr]
    assert re.search(r'data-code="SPRING-[A-Z0-9]+"', codes)
    assert "Рассылка:" in codes and f'href="/campaigns/{name}"' in codes and "Откуда" in html.unescape(codes)
    assert "Выдан сценарием" not in shown and f"campaign_{name}" not in codes


def test_the_holdout_is_said_to_be_a_share_of_those_the_letter_reaches(env: AdminEnv) -> None:
    page = plain(client_as(env, "marketer").get("/campaigns/new"))
    assert "доля тех, до кого письмо дошло бы" in page and "доля сегмента" not in page


def test_send_now_says_at_once_what_stops_the_campaign(env: AdminEnv) -> None:
    name = made(env)
    other = made(env, title="Другая")
    with env.engine.begin() as conn:
        message_templates.remove(conn, "spring_letter")
    client = client_as(env, "marketer")
    post(client, f"/campaigns/{name}/send", token_from=f"/campaigns/{name}")
    page = plain(client.get(f"/campaigns/{name}"))
    assert 'class="flash error"' in page and "spring_letter" in page and "Рассылка запускается" not in page
    assert status_of(env, name) == "draft"
    post(client, f"/campaigns/{other}/cancel", token_from="/campaigns/")
    post(client, f"/campaigns/{other}/send", token_from="/campaigns/")
    assert "отправить её уже нельзя" in plain(client.get(f"/campaigns/{other}"))
    assert status_of(env, other) == "cancelled"


# --- why a scheduled campaign went back to draft ---------------------------------------------

def test_the_page_says_why_the_scheduler_put_a_campaign_back_to_draft(env: AdminEnv) -> None:
    from workflows import campaigns

    name = made(env)
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    campaigns.schedule(env.engine, env.settings, name, at, actor="admin:marketer@shop.example")
    with env.engine.begin() as conn:
        message_templates.remove(conn, "spring_letter")
    campaigns.start_due(env.engine, env.settings, now=at + dt.timedelta(minutes=1))
    assert status_of(env, name) == "draft"
    page = text(client_as(env, "viewer").get(f"/campaigns/{name}"))
    found = re.search(r'<p class="error campaign-problem" id="campaign-problem" role="alert">(.*?)</p>', page, re.S)
    assert found and "Почему рассылка вернулась в черновики" in found.group(1) and "spring_letter" in found.group(1)


def test_the_promo_prefix_is_called_a_prefix(env: AdminEnv) -> None:
    page = plain(client_as(env, "marketer").get("/campaigns/new"))
    assert "Префикс кода" in page and "Начало кода" not in page
