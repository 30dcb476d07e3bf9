"""Refusals read as correct Russian: counts agree with their nouns, sizes never contradict their limits."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import openpyxl
import pytest

from hub import message_templates, spreadsheet
from hub.spreadsheet import SpreadsheetError, read_rows
from hub.message_templates import Template, TemplateError


@pytest.mark.parametrize("count, word", [
    (0, "символов"), (1, "символ"), (2, "символа"), (4, "символа"), (5, "символов"), (11, "символов"),
    (12, "символов"), (14, "символов"), (21, "символ"), (22, "символа"), (111, "символов"), (101, "символ"),
    (400_000_001, "символ"), (400_000_002, "символа"), (400_000_000, "символов"),
])
def test_a_count_takes_the_right_russian_form(count: int, word: str) -> None:
    template = Template(name="plural", channel="sms", subject=None,
                        text="{{ n|plural('символ', 'символа', 'символов') }}", html=None)
    assert message_templates.render(template, {"n": count}).text == f"{count} {word}"


@pytest.mark.parametrize("size, shown", [
    (400_000_001, "400\u00a0000\u00a0001 символ "), (400_000_003, "400\u00a0000\u00a0003 символа "),
    (400_000_000, "400\u00a0000\u00a0000 символов "),
])
def test_the_template_length_limit_agrees_with_its_count(size: int, shown: str) -> None:
    template = Template(name="hostile", channel="sms", subject=None, text=f"{{{{ 'a' * {size} }}}}", html=None)
    with pytest.raises(TemplateError) as caught:
        message_templates.render(template, {})
    assert f"длиной {shown}(" in str(caught.value)


def _zip(path: Path, parts: dict[str, int]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, size in parts.items():
            archive.writestr(name, b"0" * size)
    return path


def _sizes(message: str) -> list[int]:
    return [int(n.replace("\u00a0", "")) for n in re.findall(r"(\d[\d\u00a0]*) МБ", message)]


def test_a_workbook_just_over_the_limit_is_not_said_to_be_within_it(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mb = 1024 * 1024
    monkeypatch.setattr(spreadsheet, "MAX_XLSX_PART", 2 * mb)
    with pytest.raises(SpreadsheetError) as caught:
        spreadsheet.check_xlsx(str(_zip(tmp_path / "part.xlsx", {"xl/worksheets/sheet1.xml": 2 * mb + 10})))
    shown, limit = _sizes(str(caught.value))
    assert shown > limit == 2, str(caught.value)

    monkeypatch.setattr(spreadsheet, "MAX_XLSX_TOTAL", 2 * mb)
    with pytest.raises(SpreadsheetError) as caught:
        spreadsheet.check_xlsx(str(_zip(tmp_path / "total.xlsx", {"a.xml": mb, "b.xml": mb + 1})))
    shown, limit = _sizes(str(caught.value))
    assert "книга распаковывается" in str(caught.value) and shown > limit == 2, str(caught.value)


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_a_file_without_a_name_phone_or_email_column_is_refused_in_russian(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"notes{suffix}"
    if suffix == ".xlsx":
        workbook = openpyxl.Workbook()
        workbook.active.append(["Заметка", "Сумма"])
        workbook.active.append(["позвонить", "100"])
        workbook.save(path)
    else:
        path.write_text("Заметка;Сумма\nпозвонить;100\n", encoding="utf-8")
    with pytest.raises(SpreadsheetError) as caught:
        list(read_rows(path, source="import:notes"))
    message = str(caught.value)
    assert "ни один столбец не распознан как имя, телефон или email" in message
    assert "'Заметка', 'Сумма'" in message and "--map" in message
    assert "recognised" not in message and "headers found" not in message
