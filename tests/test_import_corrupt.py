"""A file that cannot be imported whole is refused whole: nothing of it reaches the database.

Each test first imports a real base, then offers a broken file that names the
same people, and checks that every table the import writes is exactly as it
was, on SQLite and PostgreSQL, through the library and through `hub import`.
"""

from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, select

from hub import importer
from hub.spreadsheet import SpreadsheetError
from hub.models import Contact
from tests.conftest import HubDB
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # the importer's all-or-nothing bulk writes

HEADER = "ФИО;Телефон;E-mail\n"
TABLES = ("contacts", "contact_identities", "external_refs", "contact_merges", "sync_runs")


def people(count: int, start: int = 0) -> str:
    return "".join(f"Иванов Пётр {i};+7916{i:07d};p{i}@example.ru\n" for i in range(start, start + count))


def snapshot(hub_db: HubDB) -> dict[str, list[tuple]]:
    meta = MetaData()
    meta.reflect(hub_db.engine, only=TABLES)
    with hub_db.engine.connect() as conn:
        return {name: sorted(map(tuple, conn.execute(select(meta.tables[name]))), key=repr) for name in TABLES}


@pytest.fixture
def base(hub_db: HubDB, tmp_path: Path) -> HubDB:
    """A database holding 120 people, so a bad import would have something to overwrite."""
    path = tmp_path / "base.csv"
    path.write_text(HEADER + people(120), encoding="utf-8")
    report = importer.import_contacts(hub_db.engine, hub_db.settings, path)
    assert report.created == 120
    return hub_db


def refused(db: HubDB, path: Path, match: str, *, parallel: bool = False, chunk: int | None = None,
            monkeypatch: pytest.MonkeyPatch | None = None) -> str:
    """Import `path`; it must be refused with one line and leave every table as it was."""
    before = snapshot(db)
    if chunk is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(importer, "CHUNK", chunk)
    with pytest.raises(SpreadsheetError, match=match) as caught:
        importer.import_contacts(db.engine, db.settings, path, parallel=parallel)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(path.name)
    result = CliRunner().invoke(cli, ["import", "contacts", str(path)])
    assert result.exit_code == 1 and result.output.startswith("Ошибка: ") and "Traceback" not in result.output
    assert snapshot(db) == before
    return message


def test_random_bytes_are_refused(base: HubDB, tmp_path: Path) -> None:
    path = tmp_path / "junk.csv"
    path.write_bytes(HEADER.encode() + random.Random(1).randbytes(300_000))
    refused(base, path, "двоичные данные")


def test_a_damaged_workbook_is_refused_in_russian_words_only(base: HubDB, tmp_path: Path) -> None:
    path = tmp_path / "клиенты.xlsx"
    path.write_bytes(random.Random(2).randbytes(5_000))
    message = refused(base, path, "это не книга Excel")
    assert "zip" not in message.lower()  # the library's English words stay out of it


def test_random_bytes_without_a_nul_are_refused(base: HubDB, tmp_path: Path) -> None:
    junk = bytes(b for b in random.Random(2).randbytes(400_000) if b)
    path = tmp_path / "junk.csv"
    path.write_bytes(HEADER.encode("cp1251") + junk)
    refused(base, path, "двоичные данные")


def test_binary_junk_after_good_rows_is_refused_in_a_second_process(base: HubDB, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader runs in another process: its refusal still comes before the first chunk is written."""
    path = tmp_path / "junk.csv"
    path.write_bytes((HEADER + people(3000)).encode() + random.Random(3).randbytes(200_000))
    refused(base, path, "двоичные данные", parallel=True, chunk=100, monkeypatch=monkeypatch)


def test_a_png_renamed_csv_is_refused(base: HubDB, tmp_path: Path) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(4).randbytes(5000))
    refused(base, path, "PNG")


def test_a_workbook_renamed_csv_is_refused_with_a_hint(base: HubDB, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    path = tmp_path / "clients.csv"
    path.write_bytes(buffer.getvalue())
    assert ".xlsx" in refused(base, path, "ZIP")


@pytest.mark.parametrize("parallel", [False, True], ids=["here", "reader-process"])
def test_an_unclosed_quote_near_the_end_of_a_multi_chunk_file_commits_nothing(
        base: HubDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool) -> None:
    # Names change for the known people, so a committed early chunk would show.
    text = HEADER + people(1000).replace("Иванов", "Сидоров") + 'Анна Котова;"+79030000001\n' + people(5, 2000)
    path = tmp_path / "clients.csv"
    path.write_text(text, encoding="utf-8")
    message = refused(base, path, "кавычка", parallel=parallel, chunk=100, monkeypatch=monkeypatch)
    assert "строке 1002" in message


def test_an_unclosed_quote_far_from_the_end_commits_nothing(base: HubDB, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Here the open quote swallows more than the csv module's field limit: found late, refused first."""
    text = HEADER + people(500).replace("Иванов", "Сидоров") + 'Анна Котова;"+79030000001\n' + people(5000, 2000)
    path = tmp_path / "clients.csv"
    path.write_text(text, encoding="utf-8")
    refused(base, path, "не закрыта кавычка", chunk=100, monkeypatch=monkeypatch)


def test_a_one_megabyte_cell_commits_nothing(base: HubDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = HEADER + people(800).replace("Иванов", "Сидоров") + "Анна Котова;+79030000001;" + "x" * 1_000_000 + "\n"
    path = tmp_path / "clients.csv"
    path.write_text(text, encoding="utf-8")
    assert "строке 802" in refused(base, path, "длиннее", chunk=100, monkeypatch=monkeypatch)


def test_utf8_then_windows_1251_commits_nothing(base: HubDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first 64 KiB decide the encoding; the switch comes well after them.
    start = (HEADER + people(2000).replace("Иванов", "Сидоров")).encode("utf-8")
    assert len(start) > 64 * 1024
    path = tmp_path / "clients.csv"
    path.write_bytes(start + people(10, 3000).encode("cp1251"))
    assert "строка 2002" in refused(base, path, "смешаны кодировки", chunk=100, monkeypatch=monkeypatch)


def test_windows_1251_then_utf8_commits_nothing(base: HubDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = (HEADER + people(2000).replace("Иванов", "Сидоров")).encode("cp1251")
    path = tmp_path / "clients.csv"
    path.write_bytes(start + people(10, 3000).encode("utf-8"))
    refused(base, path, "смешаны кодировки", chunk=100, monkeypatch=monkeypatch)


def test_absurdly_wide_rows_are_refused(base: HubDB, tmp_path: Path) -> None:
    path = tmp_path / "clients.csv"
    path.write_text(HEADER + people(10) + ";" * 5000 + "\n", encoding="utf-8")
    refused(base, path, "столбцов")


def test_bad_rows_are_still_reported_and_the_rest_goes_in(base: HubDB, tmp_path: Path) -> None:
    """Only whole-file problems refuse a file: a row without a contact, a stray quote mid-cell still pass."""
    path = tmp_path / "clients.csv"
    path.write_text(HEADER + people(3, 500) + ";;;заметка\n" + 'Ким "Олег";+79165550000;\n', encoding="utf-8")
    report = importer.import_contacts(base.engine, base.settings, path)
    assert report.created == 4
    assert [s["line"] for s in report.skipped] == [5]


def test_large_clean_files_pass_the_checks(base: HubDB, tmp_path: Path) -> None:
    """A large clean file in both encodings passes the checks and imports every row."""
    for encoding in ("utf-8-sig", "cp1251"):
        path = tmp_path / f"big-{encoding}.csv"
        path.write_bytes((HEADER + people(3000, 10_000)).encode(encoding))
        assert os.path.getsize(path) > 64 * 1024
        report = importer.import_contacts(base.engine, base.settings, path)
        assert report.rows == 3000 and report.skipped_count == 0


def test_a_consent_file_of_binary_junk_is_refused_before_any_row_is_recorded(base: HubDB, tmp_path: Path) -> None:
    path = tmp_path / "consent.csv"
    path.write_bytes("email;channel;purpose;status\np1@example.ru;email;marketing;granted\n".encode()
                     + random.Random(5).randbytes(50_000))
    meta = MetaData()
    meta.reflect(base.engine, only=("consent_events",))
    with base.engine.connect() as conn:
        before = conn.execute(select(meta.tables["consent_events"])).all()
    with pytest.raises(SpreadsheetError, match="двоичные данные"):
        importer.import_consent(base.engine, base.settings, path)
    with base.engine.connect() as conn:
        assert conn.execute(select(meta.tables["consent_events"])).all() == before


def test_a_name_longer_than_a_name_field_goes_in_cut_with_a_warning(base: HubDB, tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("Имя;Фамилия;Телефон\n" + "Я" * 10_000 + ";Длиннов;+7 916 400-11-22\n", encoding="utf-8")
    report = importer.import_contacts(base.engine, base.settings, path)
    assert report.created == 1 and report.skipped == []
    assert [w["warning"] for w in report.warnings] == [
        "имя: длина 10\xa0000 символов, сохранены первые 200"]
    with base.engine.connect() as conn:
        first = conn.execute(select(Contact.first_name).where(Contact.last_name == "Длиннов")).scalar_one()
    assert first is not None and 0 < len(first) <= 200
