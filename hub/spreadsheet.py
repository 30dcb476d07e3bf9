"""Customer spreadsheets (CSV and XLSX) as Russian offices export them.

Small businesses keep their customers in Excel or in CSV files saved from
1C, a CRM or a bank. Those files differ in everything a parser cares about:
encoding (UTF-8, UTF-8 with BOM, Windows-1251), delimiter (``;`` from Russian
Excel, ``,`` or tab elsewhere) and header wording ("ФИО", "Клиент",
"Full name"...). This module hides those differences and hands the import a
stream of plain :class:`ContactRecord` objects, one :class:`Row` per
spreadsheet row, so a bad row is reported by its Excel row number instead of
stopping the whole import.

Phones and emails are passed on as raw cell text: the identity module owns
their normalization, so every source is cleaned the same way.

Files are streamed (csv reader over an open file, openpyxl in read-only
mode), so a million-row export never sits in memory at once.

Before the first row is handed out, the whole file is checked (a fast pass
over its bytes and its CSV structure, or the sizes and checksums of the
workbook's parts): a file that is not a customer table at all (binary junk,
a picture, a workbook bomb), or one broken in a way found only at its end
(an unclosed quote, a cell of megabytes, a second encoding), is refused
whole, so an import never commits half of a file it then gives up on.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import itertools
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hub import formats, names, normalize
from hub.models import CONTACT_TEXT_LENGTHS, ExternalRef, text_length
from hub.i18n import N_, ngettext
from hub.i18n import gettext as _
from hub.records import ContactRecord, Gender

FIELDS: tuple[str, ...] = (
    "full_name",
    "first_name",
    "last_name",
    "middle_name",
    "phone",
    "email",
    "birthday",
    "city",
    "source",
    "gender",
    "company",
    "tags",
    "external_id",
)

# An override may drop a column entirely instead of keeping it as an attribute.
IGNORE = "ignore"

# Fields several columns may feed at once ("Телефон", "Моб. телефон", ...).
_MULTI_FIELDS = frozenset({"phone", "email", "tags"})

# Without one of these a file cannot yield a single usable contact.
_KEY_FIELDS = frozenset({"full_name", "first_name", "last_name", "phone", "email"})

_CSV_EXTENSIONS = frozenset({".csv", ".txt"})
_XLSX_EXTENSIONS = frozenset({".xlsx", ".xlsm"})

# Enough text to see the header line and to tell UTF-8 from Windows-1251.
_SNIFF_BYTES = 64 * 1024

_SYNONYMS: dict[str, tuple[str, ...]] = {
    "full_name": (
        "ФИО", "Ф.И.О.", "ФИО клиента", "Фамилия Имя Отчество", "Фамилия Имя",
        "Клиент", "Контакт", "Контактное лицо", "Покупатель", "Имя клиента",
        "Полное имя", "Полное имя контакта", "Основной контакт", "Имя, Фамилия", "Name", "Full name", "Customer",
        "Customer name", "Client", "Client name", "Contact", "Contact name",
    ),
    "first_name": ("Имя", "First name", "Firstname", "Given name"),
    "last_name": ("Фамилия", "Last name", "Surname", "Family name"),
    "middle_name": ("Отчество", "Middle name", "Patronymic"),
    "phone": (
        "Телефон", "Телефоны", "Тел.", "Тел", "Контактный телефон", "Доп. телефон",
        "Номер телефона", "Phone", "Phones", "Tel", "Telephone", "Phone number",
    ),
    "email": (
        "E-mail", "Email", "Emails", "Email address", "Эл. почта",
        "Электронная почта", "Адрес электронной почты", "Почта", "Mail",
        "Емейл", "Имейл",
    ),
    "birthday": (
        "Дата рождения", "ДР", "День рождения", "Birthday", "Birth date",
        "Date of birth", "DOB",
    ),
    "city": ("Город", "City", "Town", "Населенный пункт"),
    "source": (
        "Источник", "Источник клиента", "Source", "Lead source", "Канал",
        "Откуда пришел", "Откуда пришла", "Откуда узнал",
    ),
    "gender": ("Пол", "Gender", "Sex"),
    "company": (
        "Компания", "Организация", "Название компании", "Компания контакта", "Company",
        "Company name", "Organization", "Organisation",
    ),
    "tags": ("Теги", "Тег", "Метки", "Метка", "Tags", "Tag"),
    "external_id": (
        "ID", "ИД", "Код", "Код клиента", "ID клиента", "Номер клиента",
        "Customer ID", "Client ID", "External ID",
    ),
}

# Phone and email columns that say what their values are (hub.records.LABELS):
# the ones of Bitrix24's contact export («Рабочий телефон», «Номер пейджера»,
# «Частный e-mail»...), of amoCRM's («Рабочий прямой телефон», «Личный email»...)
# and of hand-made sheets. A pager number is nobody's own line any more: "other".
_TYPED: dict[str, dict[str, tuple[str, ...]]] = {
    "phone": {
        "work": ("Рабочий телефон", "Телефон рабочий", "Рабочий прямой телефон", "Раб. телефон",
                 "Work phone", "Office phone", "Business phone"),
        "mobile": ("Мобильный телефон", "Телефон мобильный", "Мобильный", "Моб. телефон", "Сотовый",
                   "Сотовый телефон", "Mobile", "Mobile phone", "Cell", "Cell phone"),
        "home": ("Домашний телефон", "Телефон домашний", "Home phone"),
        "fax": ("Номер факса", "Факс", "Fax"),
        "mailing": ("Телефон для рассылок",),
        "other": ("Другой телефон", "Номер пейджера", "Пейджер", "Other phone"),
    },
    "email": {
        "work": ("Рабочий e-mail", "Рабочий email", "Рабочая почта", "Work email", "Work e-mail"),
        "private": ("Частный e-mail", "Личный email", "Личный e-mail", "Личная почта", "Personal email",
                    "Personal e-mail", "Private email"),
        "mailing": ("E-mail для рассылок", "Email для рассылок"),
        "other": ("Другой e-mail", "Другой email", "Other email"),
    },
}

# Columns CRM exports carry that are not the person's identity but worth
# keeping: they go to the contact's attributes under these keys
# (documented in docs/import.md).
_ATTRIBUTE_COLUMNS: dict[str, tuple[str, ...]] = {
    "responsible": ("Ответственный", "Ответственный за контакт", "Ответственный менеджер", "Менеджер",
                    "Responsible", "Owner", "Manager"),
    "position": ("Должность", "Должность (контакт)", "Position", "Job title", "Title"),
    "salutation": ("Обращение", "Salutation"),
    "contact_type": ("Тип контакта", "Contact type"),
    "source_details": ("Дополнительно об источнике",),
}
# Those keys as people read them on a card; any other attribute key is the column header as typed.
_ATTRIBUTE_TITLES = {"responsible": N_("Responsible"), "position": N_("Position"), "salutation": N_("Salutation"),
                     "contact_type": N_("Contact type"), "source_details": N_("About the source"),
                     "lead_source": N_("Lead source")}


def attribute_title(key: str) -> str:
    """A kept column's name on a card: «Должность» for position, a header as it was typed otherwise."""
    return _(_ATTRIBUTE_TITLES[key]) if key in _ATTRIBUTE_TITLES else key


# amoCRM's deal export names the deal's contact's columns «Рабочий телефон (контакт)», «Полное имя (контакт)»:
# the same columns as its contact export. Its «… (компания)» columns are the company's, not the person's.
_CONTACT_SUFFIX = re.compile(r"\s*\((?:контакт|contact)\)\s*$", re.IGNORECASE)
_COMPANY_SUFFIX = re.compile(r"\s*\((?:компания|company)\)\s*$", re.IGNORECASE)


def is_company_column(header: str) -> bool:
    """A deal export's column of the deal's company («Рабочий телефон (компания)»), never the person's."""
    return bool(_COMPANY_SUFFIX.search(header))


# Columns only a CRM's deal export has: its rows are deals, each naming its contact.
_DEAL_COLUMNS = frozenset({"названиесделки", "этапсделки", "бюджет", "воронка", "основнойконтакт", "сделка"})


def _header_key(text: str) -> str:
    """Fold a header so that "Ф.И.О.", "фио" and " Ф И О " compare equal.

    Case, ё/е, punctuation and spaces vary between exports of the same
    template; none of them changes what the column means. Nor does the
    «(контакт)» amoCRM's deal export adds to its contact's columns.
    """
    folded = _CONTACT_SUFFIX.sub("", text).casefold().replace("ё", "е")
    return "".join(ch for ch in folded if ch.isalnum())


_HEADER_FIELDS: dict[str, str] = {
    _header_key(synonym): name for name, synonyms in _SYNONYMS.items() for synonym in synonyms
}
_HEADER_LABELS: dict[str, str] = {}
for _field, _labels in _TYPED.items():
    for _label, _headers in _labels.items():
        for _header in _headers:
            _HEADER_FIELDS[_header_key(_header)] = _field
            _HEADER_LABELS[_header_key(_header)] = _label
_HEADER_ATTRIBUTES: dict[str, str] = {
    _header_key(header): key for key, headers in _ATTRIBUTE_COLUMNS.items() for header in headers
}
del _field, _labels, _label, _headers, _header

# Title rows above the header ("Контакты — выгрузка от 01.12.2026") are looked
# for among this many non-empty rows at the top of a file.
HEADER_SCAN_ROWS = 20


@dataclass(slots=True)
class Row:
    """One spreadsheet row: the contact it holds, or why it was skipped.

    ``line`` is the row number Excel shows for this row (the header usually
    is 1, the first data row 2). A CSV cell spanning several physical lines
    still counts as one row, exactly as Excel displays it, so users find the
    row they are told about. ``warnings`` carries problems that did not cost
    the contact (a birthday that is not a date, an unknown gender); ``error``
    is set only when ``record`` is None.
    """

    line: int
    record: ContactRecord | None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


class SpreadsheetError(Exception):
    """The file as a whole cannot be imported; the message says what to fix."""


@dataclass(slots=True)
class Layout:
    """How a file's columns were read, told back to the person importing it.

    A column Hub does not understand used to vanish from their view; here it
    is named, so a phone column under an unexpected header is noticed before
    the base is used. ``header_row`` is the row Excel shows the headers on
    (title rows above them are skipped); ``columns`` the columns Hub uses, as
    {"column", "field", "label"}; ``attributes`` known CRM columns kept as
    contact attributes (header -> attribute key); ``unused`` the headers of
    columns Hub does not recognise, kept as attributes under their header;
    ``ignored`` those dropped with ``--map COLUMN=ignore``; ``sheet`` the
    workbook sheet read.
    """

    header_row: int | None = None
    sheet: str | None = None
    columns: list[dict[str, str | None]] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def read_rows(
    path: str | os.PathLike[str], *, source: str, mapping: dict[str, str] | None = None,
    header_row: int | None = None, sheet: str | None = None, layout: Layout | None = None,
    checked: bool = False,
) -> Iterator[Row]:
    """Stream a CSV/XLSX customer file as rows, one per non-empty data row.

    source: the system the file came from; goes to ``ContactRecord.source``.
    mapping: explicit COLUMN=FIELD overrides (header text -> field name, or
    field name 'ignore'), for headers the automatic recognition misses.
    header_row: the row the headers are on, as Excel numbers it; by default
    the first of the top rows that names a name, phone or email column, so
    a title row or two above the table ("Контакты — выгрузка от ...") is
    skipped. sheet: the workbook sheet to read (default: the active one).
    layout: filled in once the header is read (see :class:`Layout`).
    checked: the caller has run :func:`check_file` on the file itself (the
    importer does, while a second process reads), so it is not checked again.

    Whole-file problems raise :class:`SpreadsheetError` when iteration
    starts; per-row problems never stop the import and are reported in the
    yielded rows instead. Completely empty rows are not yielded.
    """
    name = os.fspath(path)
    extension = os.path.splitext(name)[1].lower()
    label = os.path.basename(name)
    layout = layout if layout is not None else Layout()
    with ExitStack() as stack:
        other_sheets: Callable[[], list[str]] = list
        formulas = False
        if extension in _CSV_EXTENSIONS:
            if sheet is not None:
                raise SpreadsheetError(_("%(file)s: --sheet is for Excel workbooks; a CSV file has one table",
                                         file=label))
            rows = _open_csv(name, stack, checked)
        elif extension in _XLSX_EXTENSIONS:
            rows, layout.sheet, other_sheets, formulas = _open_xlsx(name, stack, sheet, checked)
        else:
            shown = f"'{extension}'" if extension else _("(no extension)")
            raise SpreadsheetError(
                _("%(file)s: unsupported file type %(type)s; save it as .xlsx or .csv", file=label, type=shown)
            )
        line = 0
        try:
            numbered = enumerate(rows, start=1)
            found = _find_header(numbered, header_row, mapping, label)
            if found is None:
                with_data = other_sheets()
                if with_data:
                    raise SpreadsheetError(
                        ngettext("%(file)s: the sheet «%(sheet)s» is empty; the data is on the sheet %(sheets)s: "
                                 "choose it with --sheet '%(first)s'",
                                 "%(file)s: the sheet «%(sheet)s» is empty; data is on the sheets %(sheets)s: "
                                 "choose one with --sheet, e.g. --sheet '%(first)s'", len(with_data), file=label,
                                 sheet=layout.sheet, sheets=", ".join(f"«{title}»" for title in with_data),
                                 first=with_data[0])
                    )
                raise SpreadsheetError(_("%(file)s: no header row, the file is empty", file=label))
            line, headers, replay = found
            plan = _RowPlan(headers, detect_columns(headers, mapping), source, formulas)
            layout.header_row = line
            layout.columns, layout.attributes, layout.unused, layout.ignored = plan.describe(headers)
            for line, cells in itertools.chain(replay, numbered):
                row = plan.build(cells, line)
                if row is not None:
                    yield row
        except csv.Error as exc:
            raise SpreadsheetError(
                _("%(file)s: broken CSV after row %(line)s (%(error)s); look for an unclosed quote", file=label,
                  line=line, error=exc)
            ) from exc
        except UnicodeDecodeError as exc:
            raise SpreadsheetError(
                _("%(file)s: text after row %(line)s is not UTF-8 although the start of the file is; re-save the "
                  "whole file in one encoding", file=label, line=line)
            ) from exc


def _find_header(
    numbered: Iterator[tuple[int, list[str]]], header_row: int | None, mapping: dict[str, str] | None, label: str,
) -> tuple[int, list[str], list[tuple[int, list[str]]]] | None:
    """(header line, headers, rows read past the header to hand out again), or None for an empty sheet.

    Offices put a title, a date or an empty row above the table. Of the
    first HEADER_SCAN_ROWS non-empty rows, the first naming at least two
    known columns, one of them a name, phone or email, is the header; else
    the first naming one such column; else the first non-empty row (whose
    headers the error then lists).
    """
    if header_row is not None:
        last = 0
        for last, cells in numbered:
            if last == header_row:
                headers = [cell.strip() for cell in cells]
                if not any(headers):
                    raise SpreadsheetError(_("%(file)s: row %(row)s (--header-row) is empty", file=label,
                                             row=header_row))
                return last, headers, []
        raise SpreadsheetError(_("%(file)s: --header-row %(row)s is past the end of the file (%(count)s rows)",
                                 file=label, row=header_row, count=formats.number(last)))
    scanned: list[tuple[int, list[str]]] = []
    weak: tuple[int, list[str]] | None = None
    chosen: tuple[int, list[str]] | None = None
    for line, cells in numbered:
        headers = [cell.strip() for cell in cells]
        if not any(headers):
            continue
        scanned.append((line, cells))
        score = _header_score(headers, mapping)
        if score >= 2:
            chosen = (line, headers)
            break
        if score and weak is None:
            weak = (line, headers)
        if len(scanned) >= HEADER_SCAN_ROWS:
            break
    if not scanned:
        return None
    if chosen is None:
        chosen = weak or (scanned[0][0], [cell.strip() for cell in scanned[0][1]])
    return chosen[0], chosen[1], [(line, cells) for line, cells in scanned if line > chosen[0]]


def _header_score(headers: list[str], mapping: dict[str, str] | None) -> int:
    """How many known columns a row names; 0 unless one is a name, phone or email."""
    names: set[str] = set()
    wanted = {_header_key(column): target.strip().lower() for column, target in (mapping or {}).items()
              if target.strip().lower() != IGNORE}
    for header in headers:
        if not header:
            continue
        key = _header_key(header)
        name = wanted.get(key) or _recognise(header)
        if name is None and key in _HEADER_ATTRIBUTES:
            name = "attribute:" + _HEADER_ATTRIBUTES[key]
        if name is not None:
            names.add(name)
    return len(names) if names & _KEY_FIELDS else 0


def detect_columns(headers: list[str], mapping: dict[str, str] | None = None) -> dict[int, str]:
    """column index -> field, from automatic header recognition plus overrides

    Columns left out of the result are kept as record attributes under their
    header; columns mapped to ``'ignore'`` are dropped. Overrides win: when
    one assigns a single-value field (say ``full_name``), an automatically
    recognised column of the same field falls back to an attribute. Of two
    automatically recognised columns for one single-value field the first
    wins; phone, email and tags take every matching column.

    Raises :class:`SpreadsheetError` for an override naming a column that is
    not there or a field that does not exist, and when no column yields a
    name, phone or email, because such a file cannot produce any contact.
    """
    explicit = _apply_mapping(headers, mapping or {})
    taken = {name for name in explicit.values() if name not in _MULTI_FIELDS}
    # In amoCRM's deal export (one row a deal) the plain «ID» is the deal's, which would make whoever a
    # deal names next time the same person as whoever it named before.
    deal_export = any(_header_key(header) in _DEAL_COLUMNS for header in headers if header)
    columns: dict[int, str] = {}
    for index, header in enumerate(headers):
        if index in explicit:
            columns[index] = explicit[index]
            continue
        name = _recognise(header)
        if name is None or name in taken or (name == "external_id" and deal_export
                                             and not _CONTACT_SUFFIX.search(header)):
            continue
        if name not in _MULTI_FIELDS:
            taken.add(name)
        columns[index] = name
    if not _KEY_FIELDS.intersection(columns.values()):
        found = ", ".join(repr(header) for header in headers if header) or _("none")
        raise SpreadsheetError(
            _("no column was recognised as a name, phone or email (headers in the file: %(found)s); name the "
              "columns with --map, e.g. --map 'Моб=phone'; the file was not imported, the base is unchanged",
              found=found)
        )
    return columns


def _recognise(header: str) -> str | None:
    """Field for a header, also for numbered copies such as "Телефон 2"."""
    key = _header_key(header)
    name = _HEADER_FIELDS.get(key)
    if name is None:
        name = _HEADER_FIELDS.get(key.rstrip("0123456789"))
    return name


def _apply_mapping(headers: list[str], mapping: dict[str, str]) -> dict[int, str]:
    """Resolve COLUMN=FIELD overrides to column indexes, rejecting typos loudly.

    A silently ignored override would import phones as attributes, so an
    unknown column or field stops the import before any row is read.
    """
    stripped = [header.strip() for header in headers]
    keys = [_header_key(header) for header in headers]
    resolved: dict[int, str] = {}
    for column, target in mapping.items():
        name = target.strip().lower()
        if name not in FIELDS and name != IGNORE:
            raise SpreadsheetError(
                _("--map %(column)s=%(target)s: unknown field %(field)r; use one of: %(fields)s", column=column,
                  target=target, field=target, fields=", ".join([*FIELDS, IGNORE]))
            )
        wanted = column.strip()
        indexes = [i for i, header in enumerate(stripped) if header == wanted]
        if not indexes:
            wanted_key = _header_key(wanted)
            indexes = [i for i, key in enumerate(keys) if wanted_key and key == wanted_key]
        if not indexes:
            found = ", ".join(repr(header) for header in stripped if header) or _("none")
            raise SpreadsheetError(
                _("--map %(column)s=%(target)s: no column %(name)r in the file; headers found: %(found)s",
                  column=column, target=target, name=column, found=found)
            )
        for index in indexes:
            resolved[index] = name
    return resolved


class _RowPlan:
    """Which cell feeds which record field, worked out once per file.

    Building a record then costs a few list lookups per row, which is what
    keeps a million-row import fast.
    """

    __slots__ = ("source", "today", "width", "single", "phones", "emails", "tags", "attributes", "labelled",
                 "formulas", "columns", "known")

    def __init__(self, headers: list[str], columns: dict[int, str], source: str, formulas: bool = False) -> None:
        self.source = source
        self.columns = columns
        self.formulas = formulas  # formula text, not values, may come in cells (a workbook saved without them)
        self.today = dt.date.today()
        self.width = len(headers)
        single: dict[str, list[int]] = {}
        for index, name in columns.items():
            if name not in _MULTI_FIELDS and name != IGNORE:
                single.setdefault(name, []).append(index)
        self.single = tuple((name, tuple(indexes)) for name, indexes in single.items())
        self.phones = tuple(i for i, name in columns.items() if name == "phone")
        self.emails = tuple(i for i, name in columns.items() if name == "email")
        self.tags = tuple(i for i, name in columns.items() if name == "tags")
        self.labelled = tuple((i, _HEADER_LABELS[key]) for i, name in columns.items()
                              if name in ("phone", "email")
                              and (key := _label_key(headers[i])) in _HEADER_LABELS)
        attributes: list[tuple[int, str]] = []
        used: set[str] = set()
        self.known: dict[int, str] = {}  # known CRM columns kept as attributes: index -> key
        for index, header in enumerate(headers):
            if index in columns:
                continue
            known = _HEADER_ATTRIBUTES.get(_header_key(header)) if header else None
            key = known or header or f"column {index + 1}"
            if key in used:
                key = f"{key} (column {index + 1})"
            used.add(key)
            attributes.append((index, key))
            if known:
                self.known[index] = key
        self.attributes = tuple(attributes)

    def describe(
        self, headers: list[str],
    ) -> tuple[list[dict[str, str | None]], dict[str, str], list[str], list[str]]:
        """(used columns, known columns kept as attributes, unused columns, ignored columns) for :class:`Layout`."""
        labels = dict(self.labelled)
        used = [{"column": headers[i], "field": name, "label": labels.get(i)}
                for i, name in sorted(self.columns.items()) if name != IGNORE]
        known = {headers[i]: key for i, key in self.known.items()}
        # A column without a header is usually one Excel merely formatted; its
        # cells, if any, are still kept (as "column N").
        unused = [header for i, header in enumerate(headers)
                  if header and i not in self.columns and i not in self.known]
        ignored = [header for i, header in enumerate(headers) if header and self.columns.get(i) == IGNORE]
        return used, known, unused, ignored

    def build(self, raw: list[str], line: int) -> Row | None:
        """The row's record, or None for a row with nothing in it."""
        cells = [cell.strip() for cell in raw]
        if not any(cells):
            return None
        width = self.width
        attributes: dict[str, object] = {}
        if len(cells) < width:
            cells.extend([""] * (width - len(cells)))
        elif len(cells) > width:
            for index in range(width, len(cells)):
                if cells[index]:
                    attributes[f"column {index + 1}"] = cells[index]

        values: dict[str, str] = {}
        for name, indexes in self.single:
            for index in indexes:
                if cells[index]:
                    values[name] = cells[index]
                    break
        warnings: list[str] = []
        phones = [cells[i] for i in self.phones if cells[i]]
        emails = [cells[i] for i in self.emails if cells[i]]
        for cell in phones:  # a plain loop: this runs for every row of a million-row file
            if cell[0] == "=":
                phones = self._without_formulas(phones, self.phones, cells, line, warnings, "phone")
                break
        for cell in emails:
            if cell[0] == "=":
                emails = self._without_formulas(emails, self.emails, cells, line, warnings, "email")
                break
        if self.formulas:
            for name in [name for name, value in values.items() if value[0] == "="]:
                index = next(i for i in dict(self.single)[name] if cells[i] == values[name])
                warnings.append(_("%(cell)s: the formula %(formula)s was not imported (save the file from Excel so "
                                  "that it keeps the values of its formulas, or paste the values instead)",
                                  cell=_cell_name(index, line), formula=values.pop(name)))

        first = last = middle = None
        if "full_name" in values:
            first, last, middle = split_full_name(values["full_name"])
        if "first_name" in values:
            first = _clean_name(values["first_name"])
        if "last_name" in values:
            last = _clean_name(values["last_name"])
        if "middle_name" in values:
            middle = _clean_name(values["middle_name"])
        if "full_name" not in values and not middle and bool(first) != bool(last):
            first, last, middle = _whole_name_in_one_field(first, last)
        if not (first or last or middle or phones or emails):
            return Row(line, None, _("no name, phone or email"), warnings)
        external_id = values.get("external_id")
        if external_id is not None and len(external_id) > MAX_ID:
            return Row(line, None, _("the ID is longer than %(max)s characters", max=MAX_ID), warnings)
        first, last, middle = (_cut(first, NAME_FIELDS["first_name"], warnings),
                               _cut(last, NAME_FIELDS["last_name"], warnings),
                               _cut(middle, NAME_FIELDS["middle_name"], warnings))
        city, company = _cut(values.get("city"), CITY, warnings), _cut(values.get("company"), COMPANY, warnings)

        birthday = None
        if "birthday" in values:
            birthday, problem = _parse_birthday(values["birthday"], self.today)
            if problem:
                warnings.append(problem)
        gender: Gender | None = None
        if "gender" in values:
            text = values["gender"]
            gender = _GENDERS.get(text.lower().rstrip("."))
            if gender is None:
                warnings.append(_("gender: %(value)r is not recognised", value=text))
        tags: list[str] = []
        for index in self.tags:
            if cells[index]:
                tags.extend(_split_tags(cells[index]))
        if "source" in values:
            attributes["lead_source"] = values["source"]
        for index, key in self.attributes:
            if cells[index]:
                attributes[key] = cells[index]

        labels: dict[str, str] = {}
        for index, label in self.labelled:
            if cells[index] and cells[index][0] != "=":
                labels[cells[index]] = label
            elif cells[index] and (literal := _TEXT_FORMULA.fullmatch(cells[index])):
                labels[literal.group(1).replace('""', '"')] = label

        record = ContactRecord(
            source=self.source,
            external_id=external_id,
            first_name=first,
            last_name=last,
            middle_name=middle,
            phones=phones,
            emails=emails,
            labels=labels,
            birthday=birthday,
            city=city,
            gender=gender,
            company=company,
            tags=tags,
            attributes=attributes,
        )
        return Row(line, record, None, warnings)

    @staticmethod
    def _without_formulas(found: list[str], indexes: tuple[int, ...], cells: list[str], line: int,
                          warnings: list[str], kind: str) -> list[str]:
        """The cells but formulas, each formula told as a warning naming its cell ("C5").

        A workbook saved by a program that does not compute formulas holds
        "=A2&B2" where Excel would show a number; imported, that text would
        be a phone no one can call. A formula that is one quoted text
        (="89161234567", how exports keep Excel from turning a phone into a
        number) is that text.
        """
        literals: dict[str, str] = {}
        for index in indexes:
            cell = cells[index]
            if cell and cell[0] == "=" and (literal := _TEXT_FORMULA.fullmatch(cell)):
                literals[cell] = literal.group(1).replace('""', '"')
            elif cell and cell[0] == "=":
                if kind == "phone":
                    warnings.append(_("%(cell)s: the formula %(formula)s is not a phone number and was not "
                                      "imported (save the file from Excel so that it keeps the values of its "
                                      "formulas, or paste the values instead)", cell=_cell_name(index, line),
                                      formula=cell))
                else:
                    warnings.append(_("%(cell)s: the formula %(formula)s is not an email address and was not "
                                      "imported (save the file from Excel so that it keeps the values of its "
                                      "formulas, or paste the values instead)", cell=_cell_name(index, line),
                                      formula=cell))
        return [literals.get(cell, cell) for cell in found if cell[0] != "=" or cell in literals]


# A formula that is one quoted text: ="89161234567".
_TEXT_FORMULA = re.compile(r'=\s*"((?:[^"]|"")*)"\s*')

# What a contact's fields hold at most (the columns' lengths), and what the cut says they are.
MAX_ID = text_length(ExternalRef.__table__.c.external_id)
_FIELD_TITLES = {"first_name": N_("first name"), "last_name": N_("last name"), "middle_name": N_("patronymic"),
                 "city": N_("city"), "company": N_("company")}
NAME_FIELDS = {name: (CONTACT_TEXT_LENGTHS[name], _FIELD_TITLES[name]) for name in ("first_name", "last_name",
                                                                                     "middle_name")}
CITY = (CONTACT_TEXT_LENGTHS["city"], _FIELD_TITLES["city"])
COMPANY = (CONTACT_TEXT_LENGTHS["company"], _FIELD_TITLES["company"])


def _cut(value: str | None, limit: tuple[int, str], warnings: list[str]) -> str | None:
    """The value, cut to what its field holds, saying so: a whole page pasted into «Имя» must not
    stop the file (PostgreSQL refuses a longer text) nor fill every letter's greeting."""
    most, what = limit
    if value is None or len(value) <= most:
        return value
    warnings.append(_("%(field)s is %(length)s characters long: the first %(max)s were kept",
                      field=_(what), length=_n(len(value)), max=most))
    return value[:most].rstrip()


def _cell_name(index: int, line: int) -> str:
    """A cell as Excel names it: column 2 of row 5 is "B5"."""
    letters = ""
    number = index + 1
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{line}"


def _label_key(header: str) -> str:
    """The header's key in _HEADER_LABELS, also for numbered copies ("Рабочий телефон 2")."""
    key = _header_key(header)
    return key if key in _HEADER_LABELS else key.rstrip("0123456789")


# --- reading files -----------------------------------------------------------


def _open_csv(path: str, stack: ExitStack, checked: bool = False) -> Iterator[list[str]]:
    """A csv reader over the file, with encoding and delimiter worked out."""
    encoding, delimiter, sep_line = _sniff_csv(path)
    if not checked:
        check_csv(path, encoding, delimiter, sep_line)
    # Windows-1251 leaves one byte undefined; one odd character is better
    # than refusing a file that is otherwise readable.
    errors = "replace" if encoding == "cp1251" else "strict"
    try:
        handle = stack.enter_context(open(path, encoding=encoding, errors=errors, newline=""))
    except OSError as exc:
        raise SpreadsheetError(_("%(file)s: cannot open: %(error)s", file=os.path.basename(path),
                                 error=exc.strerror)) from exc
    reader = csv.reader(handle, delimiter=delimiter)
    if sep_line:
        # Excel's "sep=;" hint line is not shown as a row, so it is not counted.
        next(reader, None)
    return reader


def _sniff_csv(path: str) -> tuple[str, str, bool]:
    """(encoding, delimiter, has Excel "sep=" line) from the start of the file.

    Russian offices still produce Windows-1251 files next to UTF-8 ones. Text
    in Windows-1251 with any Cyrillic letter practically never decodes as
    UTF-8, so a strict UTF-8 decode of the first 64 KiB tells them apart.
    """
    try:
        with open(path, "rb") as handle:
            sample = handle.read(_SNIFF_BYTES)
            at_end = not handle.read(1)
    except OSError as exc:
        raise SpreadsheetError(_("%(file)s: cannot open: %(error)s", file=os.path.basename(path),
                                 error=exc.strerror)) from exc
    if sample.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
        text = sample[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    elif sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export: UTF-16 with a BOM, tab-separated.
        encoding = "utf-16"
        text = sample[: len(sample) // 2 * 2].decode("utf-16", errors="replace")
    else:
        try:
            # Not final unless the whole file is in the sample: the 64 KiB cut
            # may split a multi-byte letter, which is not an encoding error.
            text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=at_end)
            encoding = "utf-8"
        except UnicodeDecodeError:
            text = sample.decode("cp1251", errors="replace")
            encoding = "cp1251"

    first_line = text.lstrip("\r\n").split("\n", 1)[0].strip()
    if len(first_line) == 5 and first_line.lower().startswith("sep="):
        return encoding, first_line[4], True
    return encoding, _sniff_delimiter(text), False


def _sniff_delimiter(text: str) -> str:
    """The delimiter used most on the header line, counting outside quotes.

    csv.Sniffer guesses from data rows and is easily fooled by commas inside
    addresses; the header line is short and reliable. Lines holding only
    delimiters (empty rows Excel wrote before the header) are skipped. With a
    single-column header any choice reads the file the same way; ';' is what
    Russian Excel writes.
    """
    counts = {";": 0, ",": 0, "\t": 0}
    in_quotes = False
    has_text = False
    for char in text:
        if char == '"':
            in_quotes = not in_quotes
            has_text = True
        elif in_quotes:
            continue
        elif char in counts:
            counts[char] += 1
        elif char == "\n" or char == "\r":
            if has_text:
                break
            counts = dict.fromkeys(counts, 0)
        elif not char.isspace():
            has_text = True
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ";"


def _open_xlsx(
    path: str, stack: ExitStack, sheet: str | None = None, checked: bool = False,
) -> tuple[Iterator[list[str]], str, Callable[[], list[str]], bool]:
    """(rows of the sheet as text, its title, the other sheets holding data, whether cells may hold formula text).

    The values Excel computed for formulas are read. A workbook written by a
    program that computes nothing (a script, some web exports) has formulas
    without values; it is read for the formula text, so that a phone made by
    a formula is reported instead of silently coming out empty.
    """
    if not checked:
        check_xlsx(path)
    workbook = _load_workbook(path, data_only=True)
    stack.callback(workbook.close)
    if sheet is not None:
        if sheet not in workbook.sheetnames:
            raise SpreadsheetError(_("%(file)s: no sheet %(sheet)r; the workbook has: %(sheets)s",
                                     file=os.path.basename(path), sheet=sheet,
                                     sheets=", ".join(repr(title) for title in workbook.sheetnames)))
        chosen = workbook[sheet]
    else:
        chosen = workbook.active or workbook.worksheets[0]
    formulas = _has_formulas_without_values(path, getattr(chosen, "_worksheet_path", ""))
    if formulas:
        workbook = _load_workbook(path, data_only=False)
        stack.callback(workbook.close)
        chosen = workbook[chosen.title]

    def other_sheets() -> list[str]:
        found = []
        for other in workbook.worksheets:
            if other.title == chosen.title:
                continue
            other.reset_dimensions()
            if any(any(_cell_text(value) for value in values) for values in other.iter_rows(values_only=True)):
                found.append(other.title)
        return found

    # Some programs write a wrong sheet size; without it openpyxl reads the
    # rows that are really there instead of cutting them off.
    chosen.reset_dimensions()
    rows = chosen.iter_rows(min_row=1, values_only=True)
    return ([_cell_text(value) for value in values] for values in rows), chosen.title, other_sheets, formulas


def _load_workbook(path: str, *, data_only: bool) -> Any:
    import openpyxl  # imported here: CSV imports should not pay for it

    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=data_only)
    except OSError as exc:
        raise SpreadsheetError(_("%(file)s: cannot open: %(error)s", file=os.path.basename(path),
                                 error=exc.strerror)) from exc
    except Exception as exc:  # openpyxl raises zip, XML and key errors alike
        raise SpreadsheetError(
            _("%(file)s: not a readable Excel workbook (%(error)s)", file=os.path.basename(path), error=exc)
        ) from exc


# A formula cell without the value Excel would have stored next to it.
_FORMULA_WITHOUT_VALUE = re.compile(rb"(?:</f>|<f\b[^>]*/>)\s*(?:<v\s*/>|<v>\s*</v>)?\s*</c>")


def _has_formulas_without_values(path: str, part: str) -> bool:
    """Whether the sheet's XML holds a formula with no stored value (streamed, a block at a time)."""
    if not part:
        return False
    with zipfile.ZipFile(path) as archive:
        try:
            handle = archive.open(part.lstrip("/"))
        except KeyError:
            return False
        with handle:
            tail = b""
            while block := handle.read(_CHECK_BLOCK):
                text = tail + block
                if b"<f" in text and _FORMULA_WITHOUT_VALUE.search(text):
                    return True
                tail = text[-256:]
    return False


def _cell_text(value: object) -> str:
    """An Excel cell as the text a user sees in it.

    Phones typed into Excel become numbers (79161234567.0); they must come
    out as digits, without '.0' or an exponent. Dates become ISO text so the
    birthday parser has one path for CSV and Excel.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        text = repr(value)
        return format(Decimal(text), "f") if "e" in text else text
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    formula = getattr(value, "text", None)  # an array formula, read from a workbook saved without values
    if isinstance(formula, str):
        return formula.strip()
    return str(value).strip()


# --- checking a whole file first ---------------------------------------------

# Wider rows than this are not a customer list (Excel exports of one have tens
# of columns); they are what binary junk read as text looks like.
MAX_COLUMNS = 1000
# Text exports hold no control characters but tab, CR and LF. A few (a DOS
# end-of-file mark, vertical tabs some programs put in cells) are tolerated;
# more than this share of a block is binary (random bytes: about 11%).
_CONTROL_SHARE = 0.01
_CONTROL_BYTES = bytes([*range(0, 9), 11, 12, *range(14, 32), 127])
_CONTROL_CHAR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BYTE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CHECK_BLOCK = 1024 * 1024
# Common Russian letters (о, а, е, т, с, р) in UTF-8. Read as Windows-1251
# they spell "Р¾", "Р°", "Рµ", "С‚", "СЃ", "СЂ", which no one types, so in a
# Windows-1251 file a couple of them mean part of it was saved in UTF-8.
# (bytes.count is far faster than a regular expression over the whole file.)
_UTF8_COMMON_LETTERS = (b"\xd0\xbe", b"\xd0\xb0", b"\xd0\xb5", b"\xd1\x82", b"\xd1\x81", b"\xd1\x80")
_UTF8_LETTERS_ENOUGH = 2
# Files people save under .csv by mistake, by their first bytes.
_NOT_TEXT: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", N_("a ZIP archive (perhaps an Excel workbook: save it with the extension .xlsx)")),
    (b"\xd0\xcf\x11\xe0", N_("an old Excel .xls workbook or a Word document (save it as .xlsx or CSV)")),
    (b"\x89PNG", N_("a PNG picture")), (b"\xff\xd8\xff", N_("a JPEG picture")), (b"GIF8", N_("a GIF picture")),
    (b"%PDF", N_("a PDF document")), (b"\x1f\x8b", N_("a gzip archive")), (b"Rar!", N_("a RAR archive")),
    (b"7z\xbc\xaf", N_("a 7z archive")),
)

# Workbook limits, checked on the zip directory before anything is
# decompressed. openpyxl keeps the shared strings in memory (the sheet itself
# is streamed), so they get the tightest cap; the ratio catches a small file
# that expands enormously (real sheets compress 5-20 times).
MAX_XLSX_SHARED_STRINGS = 256 * 1024 * 1024
MAX_XLSX_PART = 2 * 1024 * 1024 * 1024
MAX_XLSX_TOTAL = 4 * 1024 * 1024 * 1024
MAX_XLSX_RATIO = 100
_RATIO_FROM = 16 * 1024 * 1024  # parts smaller than this may compress as well as they like


def _n(number: int) -> str:
    """A count as the reader writes it: 131 072 in Russian."""
    return formats.number(number)


def _mb(size: int) -> str:
    """A size over a limit in whole megabytes, rounded up: rounded down, a size just over
    2 048 МБ would read "2 048 МБ (допустимо до 2 048 МБ)"."""
    return _n(-(-size // (1024 * 1024)))


def _refused(path: str, why: str) -> SpreadsheetError:
    return SpreadsheetError(_("%(file)s: %(why)s; the file was not imported, the base is unchanged",
                              file=os.path.basename(path), why=why))


def check_csv(path: str, encoding: str, delimiter: str, sep_line: bool) -> None:
    """Refuse a CSV file that cannot be imported whole, before any row is read for import.

    Two cheap passes: the bytes (no NUL or other control bytes of binary
    data, one encoding throughout) and the CSV structure (every quote closed,
    no cell beyond the csv module's field limit, no absurd number of
    columns). Rows that are merely bad pass; the import reports them.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise SpreadsheetError(_("%(file)s: cannot open: %(error)s", file=os.path.basename(path),
                                 error=exc.strerror)) from exc
    for magic, what in _NOT_TEXT:
        if head.startswith(magic):
            raise _refused(path, _("this is not a text CSV but %(what)s", what=_(what)))
    if encoding != "utf-16":
        _check_bytes(path, encoding)
    _check_structure(path, encoding, delimiter, sep_line)


def _check_bytes(path: str, encoding: str) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")() if encoding.startswith("utf-8") else None
    lines = 0  # newlines before the current block
    with open(path, "rb") as handle:
        while block := handle.read(_CHECK_BLOCK):
            nul = block.find(b"\x00")
            if nul >= 0:
                line = lines + block.count(b"\n", 0, nul) + 1
                raise _refused(path, _("binary data in line %(line)s (a zero byte): this is not a text table",
                                       line=line))
            controls = len(block) - len(block.translate(None, _CONTROL_BYTES))
            if controls > max(8, len(block) * _CONTROL_SHARE):
                first = _CONTROL_BYTE.search(block)
                line = lines + block.count(b"\n", 0, first.start() if first else 0) + 1
                raise _refused(path, _("binary data from line %(line)s on (%(controls)s control characters in "
                                       "%(size)s bytes): this is not a text table", line=line,
                                       controls=_n(controls), size=_n(len(block))))
            if decoder is not None:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    line = lines + block.count(b"\n", 0, max(exc.start, 0)) + 1
                    raise _refused(path, _("line %(line)s is not UTF-8 although the start of the file is: the file "
                                           "mixes encodings, re-save the whole of it in one", line=line)) from None
            else:
                if sum(block.count(letter) for letter in _UTF8_COMMON_LETTERS) >= _UTF8_LETTERS_ENOUGH:
                    at = min(i for i in (block.find(letter) for letter in _UTF8_COMMON_LETTERS) if i >= 0)
                    line = lines + block.count(b"\n", 0, at) + 1
                    raise _refused(path, _("line %(line)s is UTF-8 but the start of the file is Windows-1251: the "
                                           "file mixes encodings, re-save the whole of it in one", line=line))
            lines += block.count(b"\n")
    if decoder is not None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise _refused(path, _("the file ends in the middle of a UTF-8 letter: it seems to be written only "
                                   "in part")) from None


def _check_structure(path: str, encoding: str, delimiter: str, sep_line: bool) -> None:
    errors = "replace" if encoding == "cp1251" else "strict"
    with open(path, encoding=encoding, errors=errors, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        start = last_start = 1  # the physical line each row starts on
        try:
            if sep_line:
                next(reader, None)
            start = reader.line_num + 1
            for cells in reader:
                if len(cells) > MAX_COLUMNS:
                    raise _refused(path, _("line %(line)s has %(count)s columns (more than %(max)s): this is not a "
                                           "table of customers", line=start, count=_n(len(cells)),
                                           max=_n(MAX_COLUMNS)))
                if encoding == "utf-16" and _CONTROL_CHAR.search("".join(cells)):
                    raise _refused(path, _("binary data in line %(line)s: this is not a text table", line=start))
                last_start, start = start, reader.line_num + 1
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise _refused(path, _("a cell in line %(line)s is longer than %(max)s characters: probably a "
                                       "quote is not closed there", line=start,
                                       max=_n(csv.field_size_limit()))) from None
            raise _refused(path, _("the CSV is broken in line %(line)s (%(error)s)", line=start, error=exc)) from None
        except UnicodeDecodeError:
            raise _refused(path, _("the text after line %(line)s is not in the encoding %(encoding)s: the file mixes "
                                   "encodings, re-save the whole of it in one", line=start,
                                   encoding=encoding)) from None
        # Read leniently (as the import does), a quote left open swallows the
        # rest of the file into one cell; read strictly, the last row says so.
        handle.seek(0)
        tail = itertools.islice(handle, last_start - 1, None)
        try:
            for _row in csv.reader(tail, delimiter=delimiter, strict=True):
                pass
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise _refused(path, _("a quote opened in line %(line)s is not closed before the end of the file",
                                       line=last_start)) from None


def check_file(path: str | os.PathLike[str], sheet: str | None = None) -> None:
    """The whole-file check read_rows makes before its first row (check_csv or check_xlsx), on its own.

    A file read_rows refuses before checking it (another extension, a sheet
    named for a CSV) passes here: read_rows refuses it itself.
    """
    name = os.fspath(path)
    extension = os.path.splitext(name)[1].lower()
    if extension in _CSV_EXTENSIONS and sheet is None:
        check_csv(name, *_sniff_csv(name))
    elif extension in _XLSX_EXTENSIONS:
        check_xlsx(name)


def check_text_file(path: str | os.PathLike[str]) -> None:
    """check_csv for a text file whose encoding and delimiter are not known yet (other importers)."""
    name = os.fspath(path)
    check_csv(name, *_sniff_csv(name))


def check_xlsx(path: str) -> None:
    """Refuse a workbook whose parts would expand beyond what can be read safely, or that is corrupt.

    Sizes come from the zip directory (zipfile never inflates a part beyond
    the size declared there), so a bomb is refused before a byte of it is
    decompressed. Then every part's checksum is verified, streaming, so a
    workbook damaged near its end is refused before its first row is imported.
    """
    name = os.path.basename(path)
    try:
        archive = zipfile.ZipFile(path)
    except OSError as exc:
        raise SpreadsheetError(_("%(file)s: cannot open: %(error)s", file=name, error=exc.strerror)) from exc
    except (zipfile.BadZipFile, ValueError):
        # (zipfile's own words, "File is not a zip file", are English and say no more than this)
        raise _refused(path, _("this is not an Excel workbook (.xlsx): the file is damaged or of another "
                               "format")) from None
    with archive:
        parts = archive.infolist()
        total = sum(part.file_size for part in parts)
        mb = 1024 * 1024
        if total > MAX_XLSX_TOTAL:
            raise _refused(path, _("the workbook unpacks to %(size)s MB (up to %(max)s MB is allowed)",
                                   size=_mb(total), max=_n(MAX_XLSX_TOTAL // mb)))
        for part in parts:
            size = part.file_size
            if part.filename.lower().endswith("sharedstrings.xml") and size > MAX_XLSX_SHARED_STRINGS:
                raise _refused(path, _("the workbook's cell texts take %(size)s MB uncompressed (up to %(max)s MB "
                                       "is allowed); split it into several files", size=_mb(size),
                                       max=_n(MAX_XLSX_SHARED_STRINGS // mb)))
            if size > MAX_XLSX_PART:
                raise _refused(path, _("the workbook part %(part)s unpacks to %(size)s MB (up to %(max)s MB is "
                                       "allowed)", part=part.filename, size=_mb(size), max=_n(MAX_XLSX_PART // mb)))
            if size > _RATIO_FROM and size > MAX_XLSX_RATIO * max(part.compress_size, 1):
                raise _refused(path, _("the workbook part %(part)s is compressed %(ratio)s times (real tables: "
                                       "%(max)s at most): this is a zip bomb", part=part.filename,
                                       ratio=_n(size // max(part.compress_size, 1)), max=MAX_XLSX_RATIO))
        try:
            broken = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise _refused(path, _("the Excel workbook is damaged (%(error)s)", error=exc)) from None
        if broken is not None:
            raise _refused(path, _("the Excel workbook is damaged (the part %(part)s does not match its checksum)",
                                   part=broken))


# --- names -------------------------------------------------------------------

_CYRILLIC = re.compile("[\u0400-\u04ff]")

# Common first names. Knowing them settles most two-word cells whose surname
# has no telling ending ("Мельник Олег", "Ким Виктория"), and keeps names
# with a surname-like ending (Ирина, Константин) from passing as surnames.
_MALE_NAMES = frozenset(
    """
    александр алексей анатолий андрей антон аркадий арсений артем артур богдан
    борис вадим валентин валерий василий вениамин виктор виталий владимир
    владислав всеволод вячеслав геннадий георгий герман глеб григорий даниил
    данил данила демьян денис дмитрий евгений егор емельян захар иван игорь
    илья касьян кирилл константин лев леонид лукьян макар максим марк мартин
    матвей михаил никита николай олег павел петр платон родион роман
    ростислав руслан савелий семен сергей станислав степан тимофей тимур
    федор филипп эдуард юрий яков ян ярослав антонин арсен армен давид
    альберт эрик эмиль марат ренат ринат рамиль рустам тагир айдар эльдар
    азат нурлан магомед ахмед ибрагим али
    """.split()
)
_FEMALE_NAMES = frozenset(
    """
    александра алена алина алиса алла анастасия ангелина анжелика анна
    антонина арина валентина валерия варвара василиса вера вероника виктория
    галина дарья диана дина ева евгения екатерина елена елизавета есения
    жанна зарина зинаида злата зоя инна ирина камила карина кира кристина
    ксения лариса лидия лилия любовь людмила майя маргарита марина мария
    милана надежда наталья наталия нина оксана олеся ольга полина раиса
    регина светлана снежана софия софья таисия тамара татьяна ульяна
    эвелина элина эльвира эмилия юлия яна ярослава мадина альбина сабина
    фаина алевтина каролина анжелина дарина розалина мальвина гульнара лейла
    """.split()
)

# Endings that mark a Russian (or CIS) surname; the weak ones are also
# endings of first names (Полина, Валентин, Дмитрий), so they lose to a
# strong one.
_SURNAME_STRONG = (
    "ов", "ова", "ев", "ева", "ский", "ская", "цкий", "цкая", "ской", "цкой",
    "ых", "их", "енко", "ук", "юк", "дзе", "швили", "ян", "янц",
)
_SURNAME_WEAK = ("ин", "ина", "ын", "ына", "ой", "ый", "ий", "ая")
# An initial: "П", "П." or two of them run together, "П.И.".
_INITIAL = re.compile(r"[^\W\d_]\.?|(?:[^\W\d_]\.){2}")
_MALE_PATRONYMIC = ("вич", "ич", "оглы", "улы", "уулу")
_FEMALE_PATRONYMIC = ("вна", "ична", "кызы")
_PATRONYMIC_ENDINGS = _MALE_PATRONYMIC + _FEMALE_PATRONYMIC


def split_full_name(value: str) -> tuple[str | None, str | None, str | None]:
    """(first, last, middle) from one "ФИО" cell.

    Russian exports put the surname first ("Иванов Иван Иванович"). Two
    words are ordered by whichever is a known first name, else by surname
    endings, else read as first, last ("Иван Иванов", Latin "John Smith").
    A comma marks the surname explicitly ("Smith, John").
    """
    value = _clean_name(value)
    if "," in value:
        last, _comma, rest = value.partition(",")
        words = rest.split()
        first = words[0] if words else None
        middle = " ".join(words[1:]) or None
        return first, last.strip() or None, middle
    words = value.split()
    if not words:
        return None, None, None
    if value.isascii() or not _CYRILLIC.search(value):
        if len(words) == 1:
            return words[0], None, None
        if _INITIAL.fullmatch(words[-1]) and not _INITIAL.fullmatch(words[0]):
            # "Sokolov P.", "Sokolov P. I.": initials follow the surname, as Russians write them in Latin too
            return words[1], words[0], " ".join(words[2:]) or None
        if len(words) == 2 and names.full_names(words[1]) and not names.full_names(words[0]) \
                and names.looks_like_surname(words[0]):
            return words[1], words[0], None  # "Sokolov Pyotr": a Russian name in Latin, surname first
        return words[0], words[-1], " ".join(words[1:-1]) or None
    if len(words) > 2 and _INITIAL.fullmatch(words[0]) and _INITIAL.fullmatch(words[1]) \
            and not _INITIAL.fullmatch(words[-1]):
        # "П. И. Соколов": the initials before the surname, as letters and documents write it
        return words[0], " ".join(words[2:]), words[1]
    if len(words) == 1:
        if _first_name_gender(words[0]) is None and _surname_score(words[0]):
            return None, words[0], None
        return words[0], None, None
    if len(words) == 2:
        return _split_two_words(words[0], words[1])
    if _is_patronymic(words[1]) and (
        _first_name_gender(words[0]) or not _is_patronymic(words[-1])
    ):
        # "Иван Иванович Иванов", "Марина Алексеевна Станкевич"
        return words[0], " ".join(words[2:]), words[1]
    return words[1], words[0], " ".join(words[2:])


def _whole_name_in_one_field(first: str | None, last: str | None) -> tuple[str | None, str | None, str | None]:
    """(first, last, middle) when a whole name sits in «Имя» or «Фамилия» and the other field is empty.

    Bitrix24 users type «Смирнов Дмитрий» into «Имя» all the time; kept as
    it is, the contact is greeted as «Смирнов Дмитрий» and compared as a
    first name. Split like an «ФИО» cell, but only when the split finds a
    surname that is not itself a first name: «Анна Мария» stays a first name.
    """
    typed = first or last or ""
    if len(typed.split()) < 2 or "," in typed:
        return first, last, None
    split = split_full_name(typed)
    if not split[0] or not split[1] or _first_name_gender(split[1].split()[-1]):
        return first, last, None
    return split


def _split_two_words(one: str, two: str) -> tuple[str | None, str | None, str | None]:
    """(first, last, middle) for "Иван Иванов", "Иванов Иван" or "Иван Петрович"."""
    gender_one = _first_name_gender(one)
    gender_two = _first_name_gender(two)
    if gender_one and not gender_two:
        patronymic = _MALE_PATRONYMIC if gender_one == "m" else _FEMALE_PATRONYMIC
        if two.lower().endswith(patronymic):
            return one, None, two
        return one, two, None
    if gender_two and not gender_one:
        return two, one, None
    score_one = _surname_score(one)
    if _surname_score(two) > score_one:
        return one, two, None
    if score_one:
        return two, one, None
    if _is_patronymic(two):
        return one, None, two
    return one, two, None


def _first_name_gender(word: str) -> Gender | None:
    lowered = word.lower().replace("ё", "е")
    if lowered in _MALE_NAMES:
        return "m"
    if lowered in _FEMALE_NAMES:
        return "f"
    return None


def _surname_score(word: str) -> int:
    """2 for a clear surname ending, 1 for one shared with first names, else 0."""
    lowered = word.lower().replace("ё", "е")
    if len(lowered) < 4 or lowered in _MALE_NAMES or lowered in _FEMALE_NAMES:
        return 0
    if lowered.endswith(_SURNAME_STRONG):
        return 2
    if lowered.endswith(_SURNAME_WEAK):
        return 1
    return 0


def _is_patronymic(word: str) -> bool:
    return word.lower().endswith(_PATRONYMIC_ENDINGS)


def _clean_name(value: str) -> str:
    """Single spaces; "ИВАНОВ" and "иванов" become "Иванов", "McDonald" stays (normalize.person_name)."""
    return normalize.person_name(value) or ""


# --- other fields ------------------------------------------------------------

_GENDERS: dict[str, Gender] = {
    "м": "m", "муж": "m", "мужской": "m", "мужчина": "m", "male": "m", "m": "m", "man": "m",
    "ж": "f", "жен": "f", "женский": "f", "женщина": "f", "female": "f", "f": "f", "w": "f",
    "woman": "f",
}


def _split_tags(value: str) -> list[str]:
    parts = (part.strip() for part in value.replace(";", ",").split(","))
    return [part for part in parts if part]


# --- dates -------------------------------------------------------------------

_NUMERIC_DMY = re.compile(r"(\d{1,2})[./-](\d{1,2})[./-](\d{4}|\d{2})(?![\d./-])")
_NUMERIC_YMD = re.compile(r"(\d{4})[./-](\d{1,2})[./-](\d{1,2})(?![\d./-])")
_NUMERIC_DM = re.compile(r"(\d{1,2})[./-](\d{1,2})")
_WORDY_DMY = re.compile(r"(\d{1,2})\s+([^\W\d_]+)\.?,?\s+(\d{4}|\d{2})(?!\d)")

# Keyed by the first three letters, which covers genitive ("марта"),
# nominative ("март") and abbreviated ("мар.") forms alike.
_MONTHS: dict[str, int] = {
    "янв": 1, "фев": 2, "мар": 3, "апр": 4, "май": 5, "мая": 5, "июн": 6, "июл": 7,
    "авг": 8, "сен": 9, "окт": 10, "ноя": 11, "дек": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8,
    "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip


def _parse_birthday(value: str, today: dt.date) -> tuple[dt.date | None, str | None]:
    """(date, problem) from a birthday cell; a problem never loses the contact.

    Accepts 1985-03-14, 14.03.1985, 14.03.85, 14/03/1985, 14-03-1985 and
    "14 марта 1985"; a trailing time (Excel's "14.03.1985 0:00") is ignored.
    Two-digit years up to the current one are read as 20xx, the rest as 19xx.
    Dates in the future or before 1900 are reported as problems too: they are
    typos, and a wrong birthday would trigger a wrong greeting.
    """
    text = value.strip()
    day = month = year = None
    match = _NUMERIC_DMY.match(text) or _NUMERIC_YMD.match(text)
    if match is not None and _ends_cleanly(text, match.end()):
        first, second, third = match.groups()
        if len(first) == 4:
            year, month, day = int(first), int(second), int(third)
        else:
            day, month, year = int(first), int(second), _full_year(third, today)
    else:
        match = _WORDY_DMY.match(text)
        if match is not None and _ends_cleanly(text, match.end()):
            month = _MONTHS.get(match.group(2)[:3].lower())
            if month is not None:
                day, year = int(match.group(1)), _full_year(match.group(3), today)
    if year is None or month is None or day is None:
        short = _NUMERIC_DM.fullmatch(text)
        if short is not None:
            return None, _("birthday: %(value)r has no year", value=value)
        return None, _("birthday: %(value)r is not a date", value=value)
    try:
        birthday = dt.date(year, month, day)
    except ValueError:
        return None, _("birthday: %(value)r is not a date", value=value)
    if birthday > today:
        return None, _("birthday: %(value)r is in the future", value=value)
    if year < 1900:
        return None, _("birthday: %(value)r is before 1900", value=value)
    return birthday, None


def _ends_cleanly(text: str, end: int) -> bool:
    """A date may be followed by a time or "г." only after a space."""
    return end == len(text) or text[end] in " T"


def _full_year(digits: str, today: dt.date) -> int:
    if len(digits) == 4:
        return int(digits)
    short = int(digits)
    return 2000 + short if short <= today.year % 100 else 1900 + short
