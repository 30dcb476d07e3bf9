"""Everything Hub holds about one person, for a data subject access request.

The export is one JSON document: the contact row, every phone and email with
where it came from, references in sources, orders, the consent ledger with its
evidence, signups waiting for confirmation, messages with what they said,
staff's notes on the card, merges, segments, audit entries, and the rows of any other table that names
the contact (workflow runs, promo codes: whatever plugins add), under that
table's name. The same sections can be written as a CSV bundle, one file per
section, for people who read spreadsheets.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping

from sqlalchemy import Column, Connection, Engine, MetaData, PrimaryKeyConstraint, Table, inspect, or_, select

# not in hub.api on purpose: the ledger's other side: suppressions, address hashes, history, counts; the export writes
# spreadsheet-safe CSV like the core's exports
from hub import consent, csvsafe
from hub.api import (N_, Contact, ContactIdentity, ExternalRef, Message, Order, Settings, gettext,
                     utcnow)
# not in hub.api on purpose: export and erasure reach every core table that holds personal data
from hub.models import ContactMerge, ContactNote, Erasure, LeadScore, Segment, SegmentMember
from plugins.gdpr import audit
from plugins.gdpr.models import ConsentRequest

# Tables the export reads by name; any other table with a contact_id column is added as it is.
_OWN_TABLES = {t.__tablename__ for t in (Contact, ContactIdentity, ExternalRef, Order, ConsentRequest, Message,
                                         ContactMerge, Erasure, LeadScore, SegmentMember, Segment, ContactNote)} | {
    "consent_events", "audit_log", "alembic_version"}


class ExportError(ValueError):
    """An export that cannot be made; the message says why."""


def export(engine: Engine, settings: Settings, contact_id: int, *, actor: str = "cli") -> dict[str, Any]:
    """Collect the export and record in the audit log that it was made (and by whom)."""
    with engine.connect() as conn:
        data = collect(conn, contact_id)
    with engine.begin() as conn:
        audit.record(conn, actor, "gdpr.export", contact_id,
                     sections={k: len(v) for k, v in data.items() if isinstance(v, list)})
    return data


def collect(conn: Connection, contact_id: int) -> dict[str, Any]:
    """The export as a JSON-ready dict (reading only)."""
    contact = conn.execute(select(Contact.__table__).where(Contact.id == contact_id)).first()
    if contact is None:
        raise ExportError(gettext("no contact with id %(id)s", id=contact_id))
    erased = conn.execute(select(Erasure.__table__).where(Erasure.contact_id == contact_id)).first()
    segments = conn.execute(select(Segment.name, SegmentMember.entered_at)
                            .join(SegmentMember, SegmentMember.segment_id == Segment.id)
                            .where(SegmentMember.contact_id == contact_id).order_by(Segment.name))
    score = conn.execute(select(LeadScore.score).where(LeadScore.contact_id == contact_id)).scalar()
    current = consent.latest(conn, contact_id)
    data: dict[str, Any] = {
        "exported_at": utcnow(),
        "contact_id": contact_id,
        "erased": _row(erased) if erased is not None else None,
        "contact": _row(contact),
        "identities": _rows(conn, ContactIdentity.__table__, ContactIdentity.contact_id == contact_id),
        "external_refs": _rows(conn, ExternalRef.__table__, ExternalRef.contact_id == contact_id),
        "orders": _rows(conn, Order.__table__, Order.contact_id == contact_id),
        "consent": [{"channel": ch, "purpose": p, "status": status, "source": source}
                    for (ch, p), (status, source) in sorted(current.items())],
        "consent_history": consent.history(conn, contact_id),
        "consent_requests": _rows(conn, ConsentRequest.__table__, ConsentRequest.contact_id == contact_id),
        "messages": _rows(conn, Message.__table__, Message.contact_id == contact_id),
        "notes": _rows(conn, ContactNote.__table__, ContactNote.contact_id == contact_id),
        "merges": _rows(conn, ContactMerge.__table__, or_(ContactMerge.survivor_id == contact_id,
                                                          ContactMerge.merged_id == contact_id)),
        "segments": [{"segment": name, "entered_at": at} for name, at in segments],
        "lead_score": score,
        "audit": audit.entries(conn, contact_id),
    }
    data.update(_other_tables(conn, contact_id))
    return _plain(data)


# The export's sections as people call them, for the command's summary; the JSON and the CSV files keep the keys.
SECTION_TITLES = {
    "identities": N_("emails and phones"), "external_refs": N_("records in the CRMs"), "orders": N_("orders"),
    "consent": N_("consent now"), "consent_history": N_("consent history"),
    "consent_requests": N_("consent requests"), "messages": N_("messages"), "notes": N_("notes on the card"),
    "merges": N_("merges"),
    "segments": N_("segments"), "audit": N_("actions in the log"),
    # tables other modules add that name a contact (found by their contact_id column)
    "interactions": N_("interactions"), "promo_codes": N_("promo codes"), "workflow_runs": N_("workflow runs"),
}


def section_title(name: str) -> str:
    """A section of the export in the reader's words; a table another module added is named as a table."""
    return gettext(SECTION_TITLES[name]) if name in SECTION_TITLES else gettext("table %(name)s", name=name)


def _rows(conn: Connection, table: Any, where: Any) -> list[dict[str, Any]]:
    return [_row(r) for r in conn.execute(select(table).where(where).order_by(*table.primary_key.columns))]


def _row(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def _other_tables(conn: Connection, contact_id: int) -> dict[str, list[dict[str, Any]]]:
    """Rows of tables other modules and plugins added that name this contact (workflow runs, …).

    Every table's columns and primary key come from two catalog queries for
    all tables at once: reflecting each table on its own (and the tables its
    foreign keys name) took seconds on PostgreSQL, more than reading the rows.
    """
    inspector = inspect(conn)
    names = sorted(n for n in inspector.get_table_names() if n not in _OWN_TABLES)
    if not names:
        return {}
    columns = {name: cols for (_schema, name), cols in inspector.get_multi_columns(filter_names=names).items()}
    keys = {name: pk for (_schema, name), pk in inspector.get_multi_pk_constraint(filter_names=names).items()}
    out: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        cols = columns.get(name) or []
        if "contact_id" not in {c["name"] for c in cols}:
            continue
        key = keys.get(name)
        primary = list(key["constrained_columns"]) if key else []
        table = Table(name, MetaData(), *[Column(c["name"], c["type"]) for c in cols],
                      *([PrimaryKeyConstraint(*primary)] if primary else []))
        out[name] = _rows(conn, table, table.c.contact_id == contact_id)
    return out


_AS_THEY_ARE = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """Dates as ISO 8601, money as exact text: JSON that any tool reads the same way."""
    if type(value) in _AS_THEY_ARE:  # most cells: answered before the slower isinstance checks
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return None  # nothing personal is stored as bytes; never dump raw binary
    return value


def write_csv_bundle(data: Mapping[str, Any], directory: str | Path) -> list[Path]:
    """One CSV per section (UTF-8 with BOM, `;`, as Russian Excel opens it) and export.json beside them.

    The CSV cells go through hub.csvsafe: a person's own data (a name typed as
    =HYPERLINK(...)) must not run as a formula on the machine that opens it.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "export.json"]
    written[0].write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    for name, section in data.items():
        if isinstance(section, Mapping):
            rows: list[Mapping[str, Any]] = [section]
        elif isinstance(section, list):
            rows = section
        else:
            continue
        path = folder / f"{name}.csv"
        _write_csv(path, rows)
        written.append(path)
    return written


def _write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    rows = list(rows)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csvsafe.writer(f, delimiter=";")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(r.get(c)) for c in columns])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
