"""A segment's members in headless Chromium: a marketer opens, searches, sorts, refreshes and downloads them;
a viewer sees the list and the chart but has nothing to press."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest

from hub import sync
from hub.db import utcnow
from hub.records import ContactRecord
from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in
from tests.test_segment_members import HYPERLINK, add_tula

pytestmark = pytest.mark.both_databases  # what a marketer sees must not depend on the database


def shown_ids(browser: Browser) -> list[int]:
    return [int(row.get_attribute("data-contact")) for row in browser.find_all("#members tbody tr[data-contact]")]


def test_a_marketer_finds_sorts_refreshes_and_downloads_a_segments_members(
        live: str, browser: Browser, admin_env: AdminEnv) -> None:
    made = add_tula(admin_env, extra=5)  # 8 people in Tula, one of them named like a formula
    sign_in(browser, live, "marketer", "/segments/")
    browser.click("a.members-link[href='/segments/tula/members']")
    browser.wait_text("#members-total", "8 контактов")
    assert "Из Тулы" in browser.text("h1")
    drawn = browser.wait(lambda: browser.find("#size-chart").get_attribute("data-rendered"),
                         "Chart.js to draw the size chart")
    assert drawn == "1"  # one day measured so far

    browser.fill("#q", "+7 495 111-00-00")  # stored as +74951110000, typed another way
    browser.click("form.search button")
    browser.wait_text("#members-total", "1 контакт")
    assert shown_ids(browser) == [admin_env.ids["petrov_1"]]
    browser.fill("#q", "")
    browser.click("form.search button")
    browser.wait_text("#members-total", "8 контактов")

    browser.click("a[data-sort='revenue']")
    browser.wait(lambda: browser.find("a[data-sort='revenue']").get_attribute("aria-sort") == "descending",
                 "the list sorted by revenue")
    assert shown_ids(browser)[0] == made["top"]

    stamp = utcnow().astimezone(admin_env.settings.tz).strftime("%Y-%m-%d")
    browser.click("#export-csv")
    body = browser.downloaded(f"segment-tula-{stamp}.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(body), delimiter=";"))
    assert rows[0][:4] == ["Номер контакта", "Имя", "Телефон (E.164)", "Телефон"] and len(rows) == 9
    assert rows[1][0] == str(made["top"])  # in the order the list was sorted
    assert ["'" + HYPERLINK] == [r[1] for r in rows if r[0] == str(made["evil"])]

    browser.select("#export-lang", "en")
    browser.click("#export-xlsx")
    sheet = openpyxl.load_workbook(browser.downloaded(f"segment-tula-{stamp}.xlsx")).worksheets[0]
    table = list(sheet.iter_rows(values_only=True))
    assert table[0][:3] == ("Contact number", "Name", "Phone (E.164)") and len(table) == 9

    with admin_env.engine.begin() as conn:
        sync.write_page(conn, [ContactRecord(source="import:late.csv", external_id="late", first_name="Поздний",
                                             last_name="Туляк", city="Тула")], admin_env.settings, sync.Counts())
    browser.click("#members-facts form button")
    browser.wait_text(".flash", "обновляется в фоне")

    def refreshed() -> bool:
        browser.open(live + "/segments/tula/members")
        return "9 контактов" in browser.text("#members-total")

    browser.wait(refreshed, "the refreshed list to hold the new person")


def test_a_viewer_sees_the_members_and_the_chart_but_cannot_export_or_refresh(
        live: str, browser: Browser, admin_env: AdminEnv) -> None:
    add_tula(admin_env, extra=2)
    sign_in(browser, live, "viewer", "/segments/tula/members")
    browser.wait_text("#members-total", "5 контактов")
    assert browser.wait(lambda: browser.find("#size-chart").get_attribute("data-rendered"), "the size chart") == "1"
    assert not browser.exists("#export-csv") and not browser.exists("#export-xlsx")
    assert not browser.exists("#members-facts form")
    browser.open(live + "/segments/tula/members/export?format=csv")
    assert "Ваша роль этого не позволяет" in browser.text()
