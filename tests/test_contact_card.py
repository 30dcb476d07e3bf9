"""The contact card's actions through the admin, as a viewer, a marketer and an admin.

Consent recorded by staff with its evidence, notes (and how they follow
merges, unmerges, erasure and the export), the person's messages and promo
codes, links to their records in the CRMs, and export and erasure for
admins. Driven with Flask's test client over the sample people of
tests/support/admin.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from hub import consent, contact_notes, credentials, dedupe, formats, sync, unmerge
from hub.db import utcnow
from hub.models import AuditEntry, ContactMerge, ContactNote, Message
from hub.plugins import get_pm
from hub.records import ContactRecord
from plugins.gdpr import erasure, export
from tests.support.admin import AdminEnv, client_as, plain, post, text
from workflows.models import PromoCode

EVIDENCE = "по телефону 5 декабря"


def history(env: AdminEnv, contact_id: int) -> list[dict[str, Any]]:
    with env.engine.connect() as conn:
        return consent.history(conn, contact_id)


def notes_of(env: AdminEnv, contact_id: int) -> list[str]:
    with env.engine.connect() as conn:
        return [n["body"] for n in contact_notes.for_contact(conn, contact_id)]


def record_consent(client: Any, contact_id: int, **form: str) -> Any:
    data = {"channel": "sms", "purpose": "marketing", "status": "granted", "note": EVIDENCE, **form}
    return post(client, f"/contacts/{contact_id}/consent", data, token_from=f"/contacts/{contact_id}",
                follow_redirects=True)


def add_note(client: Any, contact_id: int, body: str) -> Any:
    return post(client, f"/contacts/{contact_id}/notes", {"body": body}, token_from="/contacts/",
                follow_redirects=True)


# --- consent with its evidence -----------------------------------------------------------------

@pytest.mark.both_databases  # the ledger's evidence is JSON on each dialect
def test_a_marketer_records_consent_with_its_evidence_in_the_ledger(admin_env: AdminEnv) -> None:
    petrov = admin_env.ids["petrov_1"]
    done = record_consent(client_as(admin_env, "marketer"), petrov)
    assert done.status_code == 200 and "внёс marketer@shop.example" in text(done)
    (event,) = history(admin_env, petrov)
    assert (event["channel"], event["purpose"], event["status"]) == ("sms", "marketing", "granted")
    assert event["evidence"]["note"] == EVIDENCE and event["evidence"]["staff_user"] == "marketer@shop.example"
    assert event["evidence"]["confirmed_by_person"] is False
    assert event["source"] == "staff:marketer@shop.example"
    assert EVIDENCE in text(client_as(admin_env, "viewer").get(f"/contacts/{petrov}"))


@pytest.mark.both_databases
def test_consent_without_evidence_with_too_much_of_it_or_pending_is_refused_in_russian(admin_env: AdminEnv) -> None:
    petrov = admin_env.ids["petrov_1"]
    marketer = client_as(admin_env, "marketer")
    empty = plain(record_consent(marketer, petrov, note="   "))
    assert "Согласие не записано" in empty and "как человек дал этот ответ" in empty
    huge = plain(record_consent(marketer, petrov, note="а" * 501))
    assert "Согласие не записано" in huge and "501" in huge and "500" in huge
    pending = plain(record_consent(marketer, petrov, status="pending"))
    assert "Согласие не записано" in pending
    forged = plain(record_consent(marketer, petrov, channel="pigeon"))
    assert "Согласие не записано" in forged and "pigeon" in forged
    assert history(admin_env, petrov) == []
    # Exactly the limit is kept whole.
    record_consent(marketer, petrov, note="б" * 500)
    assert history(admin_env, petrov)[-1]["evidence"]["note"] == "б" * 500


def test_staff_cannot_say_yes_for_a_channel_the_person_has_no_address_on(admin_env: AdminEnv) -> None:
    petrov = admin_env.ids["petrov_1"]  # a phone, no email
    marketer = client_as(admin_env, "marketer")
    refused = plain(record_consent(marketer, petrov, channel="email"))
    assert "Согласие не записано" in refused and "нет действующего адреса электронной почты" in refused
    assert history(admin_env, petrov) == []
    # A "no" is always taken: the person may ask to stop on any channel.
    record_consent(marketer, petrov, channel="email", status="withdrawn", note="просил не писать, звонок 6.12")
    assert [(e["channel"], e["status"]) for e in history(admin_env, petrov)] == [("email", "withdrawn")]


def test_staff_cannot_confirm_a_pending_double_opt_in_even_with_evidence(admin_env: AdminEnv) -> None:
    anna = admin_env.ids["anna"]
    with admin_env.engine.begin() as conn:
        consent.record(conn, anna, "email", "news", "pending", source="form", settings=admin_env.settings)
    answer = plain(record_consent(client_as(admin_env, "marketer"), anna, channel="email", purpose="news"))
    assert "подтвердить может только он" in answer
    assert [e["status"] for e in history(admin_env, anna) if e["purpose"] == "news"] == ["pending"]


# --- notes ------------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_notes_are_added_by_a_marketer_and_shown_newest_first_with_author_and_local_time(admin_env: AdminEnv) -> None:
    anna = admin_env.ids["anna"]
    marketer = client_as(admin_env, "marketer")
    assert "Заметка добавлена" in text(add_note(marketer, anna, "Позвонила, просит перезвонить в мае"))
    add_note(marketer, anna, "Перезвонили: купит после праздников")
    assert notes_of(admin_env, anna) == ["Перезвонили: купит после праздников", "Позвонила, просит перезвонить в мае"]
    page = text(client_as(admin_env, "viewer").get(f"/contacts/{anna}"))
    assert page.index("купит после праздников") < page.index("перезвонить в мае")
    with admin_env.engine.connect() as conn:
        at = conn.execute(select(ContactNote.created_at).order_by(ContactNote.id.desc())).scalars().first()
    assert formats.moment(at, admin_env.settings.tz) in page and "marketer@shop.example" in page
    with admin_env.engine.connect() as conn:
        actions = [(a, c) for a, c in conn.execute(select(AuditEntry.action, AuditEntry.contact_id))]
    assert ("contact_note_added", anna) in actions
    assert "заметка добавлена к контакту" in text(client_as(admin_env, "admin").get("/users/audit"))


def test_an_empty_or_huge_note_is_refused_and_markup_in_a_note_is_shown_as_text(admin_env: AdminEnv) -> None:
    anna = admin_env.ids["anna"]
    marketer = client_as(admin_env, "marketer")
    empty = plain(add_note(marketer, anna, " \n "))
    assert "Заметка не добавлена" in empty and "заметка пуста" in empty
    huge = plain(add_note(marketer, anna, "я" * (contact_notes.MAX_LENGTH + 1)))
    assert "Заметка не добавлена" in huge and "2001" in huge and "2000" in huge
    assert notes_of(admin_env, anna) == []
    add_note(marketer, anna, '<script>alert("note")</script><img src=x onerror=alert(1)>')
    page = text(client_as(admin_env, "viewer").get(f"/contacts/{anna}"))
    assert '<script>alert("note")' not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;note&#34;)&lt;/script&gt;" in page


def test_a_viewer_sees_no_forms_and_every_post_of_the_card_is_refused(admin_env: AdminEnv) -> None:
    anna, petrov = admin_env.ids["anna"], admin_env.ids["petrov_1"]
    viewer = client_as(admin_env, "viewer")
    page = text(viewer.get(f"/contacts/{anna}"))
    for form in ('id="add-note"', 'id="staff-consent"', 'id="merge-into"', 'id="card-export"', 'id="card-erase"'):
        assert form not in page, form
    for path, data in ((f"/contacts/{anna}/notes", {"body": "тайком"}),
                       (f"/contacts/{anna}/consent", {"channel": "sms", "purpose": "marketing", "status": "granted",
                                                      "note": EVIDENCE}),
                       ("/contacts/merge", {"survivor": anna, "other": petrov}),
                       ("/contacts/merges/1/undo", {}),
                       (f"/gdpr/person/{anna}/export", {}),
                       (f"/gdpr/person/{anna}/erase", {"confirm": "ERASE"})):
        assert post(viewer, path, data, token_from="/contacts/").status_code == 403, path
    assert notes_of(admin_env, anna) == [] and len(history(admin_env, anna)) == 1  # the seed's paper form


# --- notes follow the person ------------------------------------------------------------------

@pytest.mark.both_databases  # merges and unmerges move rows by id on each dialect
def test_notes_move_with_a_merge_and_come_back_with_its_undo(admin_env: AdminEnv) -> None:
    one, two = admin_env.ids["petrov_1"], admin_env.ids["petrov_2"]
    marketer = client_as(admin_env, "marketer")
    add_note(marketer, one, "Пётр: заказывает на дачу")
    add_note(marketer, two, "Петр с сайта: просил счёт")
    dedupe.merge_by_hand(admin_env.engine, one, two, actor="marketer@shop.example", settings=admin_env.settings)
    with admin_env.engine.connect() as conn:
        merge_id = conn.execute(select(ContactMerge.id).where(ContactMerge.merged_id == two)).scalar_one()
    assert set(notes_of(admin_env, one)) == {"Пётр: заказывает на дачу", "Петр с сайта: просил счёт"}
    # The merged-away id still takes a note: it goes to the survivor.
    add_note(marketer, two, "после слияния")
    assert "после слияния" in notes_of(admin_env, one)
    redirect = marketer.get(f"/contacts/{two}")
    assert redirect.status_code == 302 and redirect.location.endswith(f"/contacts/{one}")

    unmerge.unmerge(admin_env.engine, admin_env.settings, merge_id, actor="marketer@shop.example")
    assert notes_of(admin_env, two) == ["Петр с сайта: просил счёт"]
    assert set(notes_of(admin_env, one)) == {"Пётр: заказывает на дачу", "после слияния"}


@pytest.mark.both_databases
def test_erasure_deletes_the_notes_and_the_export_includes_them(admin_env: AdminEnv) -> None:
    anna = admin_env.ids["anna"]
    marketer = client_as(admin_env, "marketer")
    add_note(marketer, anna, "Любит синие куртки")
    with admin_env.engine.connect() as conn:
        data = export.collect(conn, anna)
    assert [n["body"] for n in data["notes"]] == ["Любит синие куртки"] and "contact_notes" not in data
    report = erasure.erase(admin_env.engine, admin_env.settings, anna, actor="admin:admin@shop.example")
    assert report.removed["notes"] == 1
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(ContactNote.id)).first() is None
    # An erased person takes no note, and the card says why.
    refused = plain(add_note(marketer, anna, "ещё одна"))
    assert "Заметка не добавлена" in refused and "удалён" in refused
    assert notes_of(admin_env, anna) == []
    refused = plain(record_consent(marketer, anna, channel="email"))
    assert "Согласие не записано" in refused and "удалён" in refused


# --- what the card shows ----------------------------------------------------------------------

def _messages(env: AdminEnv, contact_id: int, n: int) -> None:
    now = utcnow()
    with env.engine.begin() as conn:
        conn.execute(Message.__table__.insert(), [
            {"idempotency_key": f"card-{contact_id}-{i}", "contact_id": contact_id, "channel": "email",
             "template": "reactivation_email", "purpose": "marketing", "address": "anna@example.ru",
             "subject": f"Письмо {i}", "body_text": "", "status": "failed" if i == n - 1 else "sent",
             "error": "mailbox full" if i == n - 1 else None, "origin": "reactivation_90d",
             "created_at": now - dt.timedelta(minutes=n - i), "updated_at": now}
            for i in range(n)])


def test_the_card_shows_the_last_messages_with_a_link_to_all_of_them(admin_env: AdminEnv) -> None:
    anna = admin_env.ids["anna"]
    _messages(admin_env, anna, 22)
    page = text(client_as(admin_env, "viewer").get(f"/contacts/{anna}"))
    table = re.search(r'<table id="messages">.*?</table>', page, re.S).group(0)  # type: ignore[union-attr]
    assert table.count("<tr>") == 1 + 20  # the header and the last 20
    assert "Последние 20 из 22." in page
    assert f'href="/messages/?contact={anna}"' in page
    assert 'data-status="failed">ошибка<' in table and 'data-status="sent">отправлено<' in table


def test_the_card_shows_promo_codes_redeemed_or_not(admin_env: AdminEnv) -> None:
    anna = admin_env.ids["anna"]
    now = utcnow()
    with admin_env.engine.begin() as conn:
        conn.execute(PromoCode.__table__.insert(), [
            {"code": "BACK-7KX3QZ", "prefix": "BACK", "discount": Decimal("15.00"), "contact_id": anna,
             "created_at": now - dt.timedelta(days=3), "expires_at": now + dt.timedelta(days=11),
             "redeemed_at": None, "redeemed_by": None},
            {"code": "BACK-2MN8PR", "prefix": "BACK", "discount": Decimal("10"), "contact_id": anna,
             "created_at": now - dt.timedelta(days=40), "expires_at": now - dt.timedelta(days=26),
             "redeemed_at": now - dt.timedelta(days=30), "redeemed_by": "order"},
            {"code": "OLD-4TT5WW", "prefix": "OLD", "discount": Decimal("5"), "contact_id": anna,
             "created_at": now - dt.timedelta(days=90), "expires_at": now - dt.timedelta(days=60),
             "redeemed_at": None, "redeemed_by": None}])
    page = text(client_as(admin_env, "viewer").get(f"/contacts/{anna}"))
    codes = re.search(r'<table id="promo-codes">.*?</table>', page, re.S).group(0)  # type: ignore[union-attr]
    assert re.search(r'data-code="BACK-7KX3QZ" data-state="active">.*?15 %.*?ещё нет: действует', codes, re.S)
    assert re.search(r'data-code="BACK-2MN8PR" data-state="redeemed">.*?10 %.*?использован', codes, re.S)
    assert re.search(r'data-code="OLD-4TT5WW" data-state="expired">.*?истёк', codes, re.S)
    assert formats.moment(now + dt.timedelta(days=11), admin_env.settings.tz) in codes


def connect_both_crms(env: AdminEnv) -> int:
    """Anna is in Bitrix24 (seeded); a second person is in amoCRM; both CRMs connected as `hub connect` stores them."""
    key = env.settings.require_secret_key()
    with env.engine.begin() as conn:
        credentials.save(conn, "bitrix24", {"kind": "webhook", "url": "https://shop.bitrix24.ru/rest/1/abc123/"}, key)
        credentials.save(conn, "amocrm", {"kind": "long_lived", "base_url": "https://shop.amocrm.ru",
                                          "access_token": "t"}, key)
        sync.write_page(conn, [ContactRecord(source="amocrm", external_id="5501", first_name="Олег",
                                             last_name="Смирнов", phones=["+7 903 555-01-02"])],
                        env.settings, sync.Counts())
        from hub.models import ExternalRef

        return conn.execute(select(ExternalRef.contact_id).where(ExternalRef.source == "amocrm")).scalar_one()


def test_the_card_links_each_crm_record_in_a_new_tab(admin_env: AdminEnv) -> None:
    oleg = connect_both_crms(admin_env)
    viewer = client_as(admin_env, "viewer")
    anna = text(viewer.get(f"/contacts/{admin_env.ids['anna']}"))
    assert re.search(r'<a class="badge crm-link" href="https://shop\.bitrix24\.ru/crm/contact/details/101/" '
                     r'target="_blank" rel="noopener noreferrer"', anna)
    assert 'href="https://shop.bitrix24.ru/crm/deal/details/o1/"' not in anna  # "o1" is no portal id
    page = text(viewer.get(f"/contacts/{oleg}"))
    assert 'href="https://shop.amocrm.ru/contacts/detail/5501" target="_blank" rel="noopener noreferrer"' in page
    # An imported contact is in no CRM: no link.
    assert "crm-link" not in text(viewer.get(f"/contacts/{admin_env.ids['petrov_1']}"))


def test_record_url_answers_for_its_own_source_only(admin_env: AdminEnv) -> None:  # hook:record_url
    hook = get_pm().hook.record_url
    with admin_env.engine.connect() as conn:
        def url(source: str, kind: str, external_id: str) -> Any:
            return hook(conn=conn, settings=admin_env.settings, source=source, kind=kind, external_id=external_id)

        assert url("bitrix24", "contact", "101") is None  # not connected yet: no address to give
    connect_both_crms(admin_env)
    with admin_env.engine.connect() as conn:
        assert url("bitrix24", "contact", "101") == "https://shop.bitrix24.ru/crm/contact/details/101/"
        assert url("bitrix24", "order", "77") == "https://shop.bitrix24.ru/crm/deal/details/77/"
        assert url("amocrm", "contact", "5501") == "https://shop.amocrm.ru/contacts/detail/5501"
        assert url("amocrm", "order", "9") == "https://shop.amocrm.ru/leads/detail/9"
        assert url("amocrm", "order", "tx-9") is None  # a Customers purchase has no page of its own
        assert url("bitrix24", "contact", "../../admin") is None
        assert url("import:clients.csv", "contact", "1") is None
        assert url("bitrix24", "company", "1") is None


# --- export and erase, for admins ------------------------------------------------------------

def test_export_and_erase_are_on_the_card_for_admins_only(admin_env: AdminEnv) -> None:
    anna = admin_env.ids["anna"]
    for role in ("viewer", "marketer"):
        page = text(client_as(admin_env, role).get(f"/contacts/{anna}"))
        assert 'id="card-export"' not in page and 'id="card-erase"' not in page, role
    marketer = client_as(admin_env, "marketer")
    assert post(marketer, f"/gdpr/person/{anna}/export", token_from="/contacts/").status_code == 403
    assert post(marketer, f"/gdpr/person/{anna}/erase", {"confirm": "ERASE"},
                token_from="/contacts/").status_code == 403

    admin = client_as(admin_env, "admin")
    page = text(admin.get(f"/contacts/{anna}"))
    assert f'action="/gdpr/person/{anna}/export"' in page and f'action="/gdpr/person/{anna}/erase"' in page
    assert "Удалить этого человека навсегда?" in page  # the erase button asks first
    add_note(admin, anna, "для выгрузки")
    exported = post(admin, f"/gdpr/person/{anna}/export", token_from=f"/contacts/{anna}")
    assert exported.status_code == 200
    assert [n["body"] for n in json.loads(exported.get_data(as_text=True))["notes"]] == ["для выгрузки"]
    wrong = post(admin, f"/gdpr/person/{anna}/erase", {"confirm": "erase"}, token_from=f"/contacts/{anna}",
                 follow_redirects=True)
    assert "Не удалено" in plain(wrong) and notes_of(admin_env, anna) == ["для выгрузки"]
    done = post(admin, f"/gdpr/person/{anna}/erase", {"confirm": "ERASE"}, token_from=f"/contacts/{anna}",
                follow_redirects=True)
    assert f"Контакт №{anna} удалён" in plain(done) and notes_of(admin_env, anna) == []
    card = text(admin.get(f"/contacts/{anna}"))
    assert 'id="card-erase"' not in card and 'id="add-note"' not in card


# --- hostile addresses ------------------------------------------------------------------------

@pytest.mark.both_databases  # contacts.id is 32-bit on PostgreSQL
@pytest.mark.parametrize("contact_id", ["2147483648", "99999999999999999999999"])
def test_ids_no_contact_can_have_are_not_found_not_errors(admin_env: AdminEnv, contact_id: str) -> None:
    marketer = client_as(admin_env, "marketer")
    assert marketer.get(f"/contacts/{contact_id}").status_code == 404
    answer = post(marketer, f"/contacts/{contact_id}/notes", {"body": "x"}, token_from="/contacts/")
    assert answer.status_code == 404
    answer = post(marketer, f"/contacts/{contact_id}/consent", {"channel": "sms", "purpose": "marketing",
                                                                "status": "granted", "note": EVIDENCE},
                  token_from="/contacts/")
    assert answer.status_code == 404


def test_a_note_without_its_form_token_is_refused(admin_env: AdminEnv) -> None:
    anna = admin_env.ids["anna"]
    answer = client_as(admin_env, "marketer").post(f"/contacts/{anna}/notes", data={"body": "без токена"})
    assert answer.status_code in (302, 400) and notes_of(admin_env, anna) == []
