"""Who is in a segment: the member list with search, sorting and paging, its export, and its size over time.

The list reads segment_members, the members recorded by the segment's last
refresh, joined with the live contacts: the same people a workflow started
from that segment would reach, not a fresh evaluation of the rule on every
page view. The page says when that refresh was and lets a marketer start
another. The total is counted, never capped, so "1 234 контакта" is what an
export would hold, and it is the count the size chart keeps (sizes.live_count).
A segment not refreshed yet (just saved, its refresh waiting for a worker)
shows that it is being counted and offers no export, not an empty list. The
search is the contacts search (hub.admin.contact_search) kept to the members,
so a name, phone, email or promo code finds people the same way everywhere.

Exports stream: CSV is written row by row as the response goes out, XLSX
through openpyxl's write-only workbook into a temporary file, so a segment
of a million people never sits in memory. A name typed as a formula reaches
the spreadsheet as text either way: CSV through hub.csvsafe's apostrophe,
XLSX by typing every text cell as text (there an apostrophe would show). Each
export is written to the audit log with its segment, format and row count.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterator

from flask import Blueprint, Response, flash, redirect, render_template, request, send_file, stream_with_context, \
    url_for
from sqlalchemy import Connection, false, select
from sqlalchemy.sql.elements import ColumnElement

from hub import csvsafe, formats, i18n, queue
from hub.admin import audit, contact_search, filters
from hub.admin.access import actor, allow, engine
from hub.admin.app import current_settings
from hub.admin.contacts import search_matchers
from hub.admin.forms import ActionForm
from hub.config import Settings
from hub.db import utcnow
from hub.i18n import N_, ngettext
from hub.i18n import gettext as _
from hub.models import Contact, ContactIdentity, Segment, SegmentMember
from hub.segments import sizes
from hub.segments.evaluate import Segments

bp = Blueprint("segment_members", __name__, url_prefix="/segments")
contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
members_t = SegmentMember.__table__
segments_t = Segment.__table__

PAGE_SIZES = (25, 50, 100, 200)
PAGE_SIZE = 50
MAX_SEARCH = contact_search.MAX_QUERY
CHUNK = 1000  # rows an export reads at a time
XLSX_MAX_ROWS = 1_048_575  # a sheet holds 1 048 576 rows, the headings take one
EXPORTED = "segment_exported"
AUDIT_ACTIONS = {EXPORTED: N_("segment members exported"),
                 "segment_refresh_requested": N_("segment refresh requested")}
_WHOLE = re.compile(r"0*[1-9][0-9]{0,8}")  # ASCII digits only ("²" is a digit to str.isdigit, not to int)

# How the list can be ordered: the parameter → the column (ties go by contact number).
SORTS = {"name": contacts_t.c.name_key, "entered": members_t.c.entered_at, "orders": contacts_t.c.orders_count,
         "revenue": contacts_t.c.revenue, "last_order": contacts_t.c.last_order_at}
DEFAULT_SORT = ("name", "asc")
SORT_TITLES = {"name": N_("Name"), "entered": N_("Entered the segment"), "orders": N_("Orders"),
               "revenue": N_("Revenue"), "last_order": N_("Last order")}
# The export's columns: key → heading (a message of the catalog, in the language asked for).
COLUMNS = (("id", N_("Contact number")), ("name", N_("Name")), ("phone_e164", N_("Phone (E.164)")),
           ("phone", N_("Phone")), ("email", N_("Email")), ("city", N_("City")),
           ("entered_at", N_("Entered the segment")), ("orders_count", N_("Orders")), ("revenue", N_("Revenue")),
           ("last_order_at", N_("Last order")))
FORMATS = ("csv", "xlsx")
# XLSX column widths in characters, so names and emails show whole when the file opens.
XLSX_WIDTHS = {"id": 12, "name": 40, "phone_e164": 16, "phone": 20, "email": 34, "city": 20, "entered_at": 18,
               "orders_count": 10, "revenue": 14, "last_order_at": 18}


@dataclass
class ListQuery:
    """The list as the query string asks for it, with every problem found in it said in the reader's words."""

    search: str = ""
    sort: str = DEFAULT_SORT[0]
    direction: str = DEFAULT_SORT[1]
    page: int = 1
    per: int = PAGE_SIZE
    problems: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, args: Any) -> ListQuery:
        out = cls()
        raw = " ".join(str(args.get("q", "")).split())
        search = contact_search.typed(raw)
        if len(raw) > MAX_SEARCH:
            out.problems.append(_("The search is too long: at most %(limit)s characters, you sent %(num)s.",
                                  limit=formats.number(MAX_SEARCH), num=formats.number(len(raw))))
        else:
            out.search = search
        sort = str(args.get("sort", "") or DEFAULT_SORT[0])
        if sort in SORTS:
            out.sort = sort
            out.direction = "asc" if sort == "name" else "desc"
        else:
            out.problems.append(_("Cannot sort by '%(value)s'; the list is sorted by name.", value=sort[:60]))
        direction = str(args.get("dir", "") or out.direction)
        if direction in ("asc", "desc"):
            out.direction = direction
        else:
            out.problems.append(_("There is no order '%(value)s': the list sorts ascending or descending.",
                                  value=direction[:60]))
        out.page = _whole(args.get("page"), 1, out.problems,
                          N_("The page number must be a whole number from 1, not '%(value)s'."))
        per = _whole(args.get("per"), PAGE_SIZE, out.problems,
                     N_("The page size must be a whole number from 1, not '%(value)s'."))
        if per not in PAGE_SIZES:
            out.problems.append(_("A page shows %(choices)s contacts, not %(value)s; showing %(default)s.",
                                  choices=", ".join(str(n) for n in PAGE_SIZES), value=formats.number(per),
                                  default=PAGE_SIZE))
            per = PAGE_SIZE
        out.per = per
        return out

    def args(self, **changes: Any) -> dict[str, Any]:
        """The query string of this list with some values changed (for links: sorting, pages, exports)."""
        values = {"q": self.search or None, "sort": self.sort, "dir": self.direction,
                  "per": self.per if self.per != PAGE_SIZE else None, "page": self.page if self.page > 1 else None}
        values.update(changes)
        return {k: v for k, v in values.items() if v is not None}


def _whole(given: Any, default: int, problems: list[str], refusal: str) -> int:
    raw = str(given or "").strip()
    if not raw:
        return default
    if _WHOLE.fullmatch(raw):
        return int(raw)
    problems.append(_(refusal, value=raw[:60]))
    return default


# --- what is read ------------------------------------------------------------------------------

def search_condition(conn: Connection, settings: Settings, text: str) -> ColumnElement[bool] | None:
    """Members matching what a person typed, read exactly as the contacts search reads it (hub.admin.contact_search).

    A name in any order with patronymic and initials, ё as е, a phone in any
    format or its end, a piece of an email, "#id", and what plugins find (a
    promo code), so one search behaves the same on every page. None when
    nothing was typed; a condition nobody meets when what was typed can match
    no one.
    """
    if not text:
        return None
    condition, _exact = contact_search.matching(conn, settings, text, matchers=search_matchers())
    return condition if condition is not None else false()


def members_select(segment_id: int, condition: ColumnElement[bool] | None) -> Any:
    """The segment's live members (sizes.live_members: the ones its size chart counts), with what the list shows."""
    c, m = contacts_t.c, members_t.c
    query = sizes.live_members(segment_id).with_only_columns(
        c.id, c.first_name, c.last_name, c.middle_name, c.city, c.orders_count, c.revenue, c.last_order_at,
        m.entered_at)
    return query.where(condition) if condition is not None else query


def ordered(query: Any, sort: str, direction: str) -> Any:
    column = SORTS[sort]
    key = column.asc() if direction == "asc" else column.desc()
    tie = contacts_t.c.id.asc() if direction == "asc" else contacts_t.c.id.desc()
    return query.order_by(key.nulls_last(), tie)


def identities_of(conn: Connection, ids: list[int]) -> dict[int, dict[str, list[str]]]:
    """Each contact's valid phones and emails, oldest first (the first is the one the list shows)."""
    found: dict[int, dict[str, list[str]]] = {i: {"phone": [], "email": []} for i in ids}
    if not ids:
        return found
    rows = conn.execute(select(identities_t.c.contact_id, identities_t.c.kind, identities_t.c.value)
                        .where(identities_t.c.contact_id.in_(ids), identities_t.c.valid)
                        .order_by(identities_t.c.id))
    for contact_id, kind, value in rows:
        found[contact_id].setdefault(kind, []).append(value)
    return found


def display_name(row: Any) -> str:
    return " ".join(p for p in (row.last_name, row.first_name, row.middle_name) if p) or f"#{row.id}"


def shaped(rows: list[Any], found: dict[int, dict[str, list[str]]], region: str) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        phones, emails = found.get(r.id, {}).get("phone", []), found.get(r.id, {}).get("email", [])
        out.append({"id": r.id, "name": display_name(r), "phone_e164": phones[0] if phones else "",
                    "phone": formats.national_phone(phones[0], region) if phones else "",
                    "email": emails[0] if emails else "",
                    "city": r.city or "", "entered_at": r.entered_at, "orders_count": r.orders_count,
                    "revenue": r.revenue, "last_order_at": r.last_order_at})
    return out


@dataclass
class Found:
    """The segment a URL names, as far as the list needs it."""

    name: str
    id: int | None
    refreshed_at: dt.datetime | None
    title: str
    description: str
    definition: Any


def find(conn: Connection, settings: Settings, name: str) -> Found | None:
    """The segment called `name` (built-in, saved, or saved but broken since), or None when there is none."""
    from hub.admin.segments import titles

    if len(name) > 64:
        return None
    catalog = Segments(conn, settings).catalog
    definition = catalog.definitions.get(name)
    row = conn.execute(select(segments_t.c.id, segments_t.c.refreshed_at).where(segments_t.c.name == name)).first()
    if definition is None and row is None:
        return None
    return Found(name, row.id if row else None, row.refreshed_at if row else None, **titles(definition),
                 definition=definition)


def not_found(name: str) -> Any:
    return render_template("error.html", code=404, title=_("Not found"),
                           message=_("There is no segment named '%(name)s'.", name=name[:64])), 404


# --- the page ----------------------------------------------------------------------------------

@bp.get("/<name>/members")
@allow(read="viewer")
def members(name: str) -> Any:
    settings = current_settings()
    query = ListQuery.read(request.args)
    now = utcnow()
    with engine().connect() as conn:
        segment = find(conn, settings, name)
        if segment is None:
            return not_found(name)
        rows: list[dict[str, Any]] = []
        total = pages = entered_week = 0
        chart = None
        if segment.id is not None and segment.refreshed_at is not None:  # before its first refresh: being counted
            condition = search_condition(conn, settings, query.search)
            selected = members_select(segment.id, condition)
            total = sizes.live_count(conn, segment.id, condition)
            pages = max(1, -(-total // query.per))
            if query.page > pages:
                query.problems.append(_("There is no page %(page)s: the list has %(pages)s.",
                                        page=formats.number(query.page), pages=formats.number(pages)))
                query.page = pages
            page_rows = list(conn.execute(ordered(selected, query.sort, query.direction)
                                          .limit(query.per).offset((query.page - 1) * query.per)))
            rows = shaped(page_rows, identities_of(conn, [r.id for r in page_rows]), settings.default_region)
            entered_week = sizes.live_count(conn, segment.id, members_t.c.entered_at >= now - dt.timedelta(days=7))
            chart = size_chart(conn, segment.id, sizes.day_of(now, settings.tz))
    first = (query.page - 1) * query.per + 1
    return render_template("segments/members.html", segment=segment, rows=rows, total=total, pages=pages,
                           query=query, first=first, last=first + len(rows) - 1, entered_week=entered_week,
                           chart=chart, sort_titles={k: _(v) for k, v in SORT_TITLES.items()},
                           page_sizes=PAGE_SIZES, total_text=formats.contacts(total), action=ActionForm())


def size_chart(conn: Connection, segment_id: int, today: dt.date) -> dict[str, Any] | None:
    """The chart's data: a label per day of the last 90, a value where a refresh measured one (else a gap)."""
    points = sizes.history(conn, segment_id, sizes.DAYS, today=today)
    if not points:
        return None
    days, values = sizes.series(points, today)
    return {"labels": [filters.date(d) for d in days], "values": values, "points": len(points)}


@bp.post("/<name>/members/refresh")
@allow(read=None, write="marketer")
def refresh(name: str) -> Any:
    settings = current_settings()
    with engine().connect() as conn:
        segment = find(conn, settings, name)
    if segment is None:
        return not_found(name)
    if ActionForm().validate_on_submit():
        if segment.definition is None:
            flash(_("Segment %(name)s no longer checks; fix its rule before refreshing it.", name=name), "error")
        else:
            with engine().begin() as conn:
                audit.record(conn, actor(), "segment_refresh_requested", segment=name)
            queue.enqueue(settings, refresh_job, name, background=True, job_id=f"admin-segment-refresh-{name}")
            flash(_("Refreshing segment %(name)s in the background; reload this page in a minute.", name=name), "ok")
    return redirect(url_for("segment_members.members", name=name))


def refresh_job(name: str) -> dict[str, Any]:
    """Record one segment's members now (a queue job, as the segments page's own refresh of all of them)."""
    from hub.config import load_settings
    from hub.db import get_engine
    from hub.segments import membership

    settings = load_settings()
    return membership.refresh(get_engine(settings.database_url), settings, [name]).as_dict()


# --- exports -----------------------------------------------------------------------------------

def headings(language: str) -> list[str]:
    with i18n.use_language(language):
        return [_(title) for _key, title in COLUMNS]


def export_rows(conn: Connection, query: Any, region: str) -> Iterator[dict[str, Any]]:
    """Every row of the query, read CHUNK at a time from a server-side cursor, with its phones and emails."""
    result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
    for chunk in result.partitions(CHUNK):
        yield from shaped(list(chunk), identities_of(conn, [r.id for r in chunk]), region)


def local(moment: dt.datetime | None, tz: Any) -> dt.datetime | None:
    """An instant as the shop's wall clock shows it (spreadsheets know no time zones)."""
    return moment.astimezone(tz).replace(tzinfo=None, microsecond=0) if moment is not None else None


def csv_phone(readable: str) -> str:
    """The readable phone for a CSV cell, never starting with "+".

    A CSV cell starting with "+" is one a spreadsheet may run as a formula, so
    hub.csvsafe would put an apostrophe before it, and people see '+375 44 …
    in Excel. A home number is already "8 (916) 123-45-67"; a foreign one
    keeps its country code, in brackets: "(+375) 44 801-66-70" is what people
    write on business cards, stays unambiguous (the national form alone would
    lose the country) and starts with no formula character. The E.164 column
    keeps the digits for machines.
    """
    if not readable.startswith("+"):
        return readable
    code, _space, rest = readable.partition(" ")
    return f"({code}) {rest}" if rest else f"({code})"


def csv_values(row: dict[str, Any], tz: Any, language: str) -> list[Any]:
    """One row's cells: local times, and amounts with the decimal comma a Russian spreadsheet reads as a number."""
    out = []
    for key, _title in COLUMNS:
        value = row[key]
        if key == "phone" and isinstance(value, str):
            value = csv_phone(value)
        if isinstance(value, dt.datetime):
            value = local(value, tz).strftime("%d.%m.%Y %H:%M")  # type: ignore[union-attr]
        elif isinstance(value, Decimal) and language == "ru":
            value = str(value).replace(".", ",")
        out.append(value)
    return out


def csv_stream(settings: Settings, query: Any, language: str) -> Iterator[str]:
    """The CSV, a chunk of rows at a time: UTF-8 with a BOM and ';' as Excel in Russia opens it."""
    buffer = io.StringIO()
    writer = csvsafe.writer(buffer, delimiter=";")
    buffer.write("\ufeff")
    writer.writerow(headings(language))
    with engine().connect() as conn:
        for n, row in enumerate(export_rows(conn, query, settings.default_region), 1):
            writer.writerow(csv_values(row, settings.tz, language))
            if n % CHUNK == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


def xlsx_file(settings: Settings, query: Any, language: str) -> str:
    """The XLSX in a temporary file (openpyxl's write-only mode keeps one row in memory at a time)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    sheet = book.create_sheet(_("Members"))
    for index, (key, _title) in enumerate(COLUMNS, 1):  # set before the first row: write-only sheets allow no later
        sheet.column_dimensions[get_column_letter(index)].width = XLSX_WIDTHS.get(key, 14)
    sheet.append(headings(language))

    def cell(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            out = WriteOnlyCell(sheet, value=local(value, settings.tz))
            out.number_format = "DD.MM.YYYY HH:MM"
            return out
        if isinstance(value, Decimal):
            out = WriteOnlyCell(sheet, value=float(value))
            out.number_format = "#,##0.00"
            return out
        if isinstance(value, (int, float)):
            return WriteOnlyCell(sheet, value=value)
        # Typed as text, a cell never runs, whatever it starts with: no apostrophe is needed (unlike CSV),
        # so "+375 44 801-66-70" and a name typed as a formula show exactly as written. Characters XML
        # cannot hold (a control character pasted into a name) are dropped instead of failing the file.
        out = WriteOnlyCell(sheet, value=None)
        out.value = ILLEGAL_CHARACTERS_RE.sub("", "" if value is None else str(value))
        out.data_type = "s"
        return out

    with engine().connect() as conn:
        for row in export_rows(conn, query, settings.default_region):
            sheet.append([cell(row[key]) for key, _title in COLUMNS])
    handle, path = tempfile.mkstemp(prefix="hub-segment-", suffix=".xlsx")
    os.close(handle)
    try:
        book.save(path)
    except BaseException:
        os.unlink(path)
        raise
    return path


@bp.get("/<name>/members/export")
@allow(read="marketer")
def export(name: str) -> Any:
    settings = current_settings()
    fmt = str(request.args.get("format", ""))
    if fmt not in FORMATS:
        return _refused(name, _("Members can be exported as CSV or XLSX, not as '%(value)s'.", value=fmt[:20]))
    query = ListQuery.read(request.args)
    language = str(request.args.get("lang") or i18n.current_language())
    if language not in i18n.LANGUAGES:
        return _refused(name, _("The headings can be in %(choices)s, not '%(value)s'.",
                                choices=", ".join(i18n.LANGUAGES), value=language[:20]))
    if query.problems:
        return _refused(name, " ".join(query.problems))
    with engine().begin() as conn:
        segment = find(conn, settings, name)
        if segment is None:
            return not_found(name)
        if segment.id is None or segment.refreshed_at is None:  # an empty file would say nobody is in it
            return _refused(name, _("Segment %(name)s is still being counted: there is nothing to export yet.",
                                    name=name))
        condition = search_condition(conn, settings, query.search)
        selected = ordered(members_select(segment.id, condition), query.sort, query.direction)
        rows = sizes.live_count(conn, segment.id, condition)
        if fmt == "xlsx" and rows > XLSX_MAX_ROWS:
            return _refused(name, ngettext(
                "A spreadsheet holds at most %(limit)s rows, and the segment has %(num)s member: export it as CSV.",
                "A spreadsheet holds at most %(limit)s rows, and the segment has %(num)s members: export it as CSV.",
                rows, limit=formats.number(XLSX_MAX_ROWS), num=formats.number(rows)))
        audit.record(conn, actor(), EXPORTED, segment=name, format=fmt, rows=rows, search=query.search or None,
                     language=language)
    stamp = utcnow().astimezone(settings.tz).strftime("%Y-%m-%d")
    filename = f"segment-{name}-{stamp}.{fmt}"
    if fmt == "csv":
        body = stream_with_context(csv_stream(settings, selected, language))
        return Response(body, mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    path = xlsx_file(settings, selected, language)
    response = send_file(path, as_attachment=True, download_name=filename,
                         mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    response.call_on_close(lambda: _remove(path))
    return response


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


def _refused(name: str, message: str) -> Any:
    """Back to the list, saying why there is no file (a download link has no page of its own to say it on)."""
    flash(message, "error")
    kept: dict[str, Any] = {k: v for k, v in request.args.items() if k in ("q", "sort", "dir")}
    return redirect(url_for("segment_members.members", name=name, **kept))

