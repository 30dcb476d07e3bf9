"""Custom fields as each CRM defines them: code, name there, type, options.

Values live in the `attributes` of contacts, companies and orders under the
field's code; the definitions let a segment rule or the builder name a field
as the CRM's users know it ("Источник") and type its values.

Readers for the rest of Hub: `definitions` (every field a source or entity
has, as records) and `find` (the fields a person means by a name or a code,
matched as people type it: any case, ё as е).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Sequence

from sqlalchemy import Connection, select

from hub.db import insert_for, utcnow
from hub.models import CustomField
from hub.records import FIELD_TYPES, FieldDefinition

if TYPE_CHECKING:
    from hub.sync import Counts

fields_t = CustomField.__table__
ENTITIES = ("contact", "company", "order")
MAX_OPTIONS = 5000  # a list field with more options than this is a CRM's data, not a list


def write_definitions(conn: Connection, definitions: Sequence[FieldDefinition], counts: Counts) -> None:
    """Upsert field definitions by (source, entity, code).

    A definition Hub cannot type (an unknown type or entity, no code) is an
    error entry naming the field, never an exception: one odd field must not
    stop a sync of everything else. A field removed in the CRM keeps its row
    (values already stored still read by its name).
    """
    now = utcnow()
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for d in definitions:
        problem = _problem(d)
        if problem:
            counts.errors.append({"entity": "field", "id": str(d.code)[:100], "error": problem})
            continue
        code = str(d.code).strip()
        name = (str(d.name or "").replace("\x00", "").strip() or code)[:300]
        given = d.options if isinstance(d.options, (list, tuple)) else []
        options = [{"id": str(o.get("id", ""))[:100], "value": str(o.get("value", "")).replace("\x00", "")[:300]}
                   for o in given[:MAX_OPTIONS] if isinstance(o, dict)]
        rows[(d.source, d.entity, code)] = {"source": d.source[:100], "entity": d.entity, "code": code,
                                            "name": name, "type": d.type, "multiple": bool(d.multiple),
                                            "options": options, "updated_at": now}
    if not rows:
        return
    ins = insert_for(conn, fields_t)
    changing = ("name", "type", "multiple", "options", "updated_at")
    conn.execute(ins.on_conflict_do_update(index_elements=["source", "entity", "code"],
                                           set_={c: ins.excluded[c] for c in changing}),
                 [rows[key] for key in sorted(rows)])
    counts.fields += len(rows)


def _problem(d: FieldDefinition) -> str | None:
    if not isinstance(d.source, str) or not d.source.strip():
        return "the field has no source"
    code = str(d.code or "").strip()
    if not code:
        return "the field has no code"
    if "\x00" in code:
        return "the field's code holds a NUL character"
    if len(code) > 100:
        return f"field code {code[:40]!r}… is longer than 100 characters"
    if d.entity not in ENTITIES:
        return f"field {code!r}: entity {d.entity!r} is not one of {', '.join(ENTITIES)}"
    if d.type not in FIELD_TYPES:
        return f"field {code!r} ({d.name!r}): type {d.type!r} is not one of {', '.join(FIELD_TYPES)}"
    return None


def definitions(conn: Connection, source: str | None = None, entity: str | None = None) -> list[FieldDefinition]:
    """The custom fields Hub knows, of one source and/or entity, ordered by source, entity and name."""
    c = fields_t.c
    q = select(c.source, c.entity, c.code, c.name, c.type, c.multiple, c.options)
    if source is not None:
        q = q.where(c.source == source)
    if entity is not None:
        q = q.where(c.entity == entity)
    return [FieldDefinition(source=r.source, entity=r.entity, code=r.code, name=r.name, type=r.type,
                            multiple=bool(r.multiple), options=list(r.options or []))
            for r in conn.execute(q.order_by(c.source, c.entity, c.name, c.code))]


def fold(text: str) -> str:
    """A field's name as people type it: case, ё/е and runs of spaces do not matter."""
    return " ".join(str(text).lower().replace("ё", "е").split())


def find(conn: Connection, name_or_code: str, entity: str) -> list[FieldDefinition]:
    """The fields of `entity` a person means by a name in the CRM ("источник") or a code (UF_CRM_17…).

    A list: two CRMs may each define "Источник", under different codes, and a
    rule on it reads both. Fields whose code matches come first (a code is
    exact); an empty list means no CRM defines such a field.
    """
    wanted = fold(name_or_code)
    if not wanted:
        return []
    known = definitions(conn, entity=entity)
    by_code = [d for d in known if fold(d.code) == wanted]
    by_name = [d for d in known if fold(d.name) == wanted and d not in by_code]
    return by_code + by_name


def plain(attributes: Any) -> dict[str, Any]:
    """Custom field values as JSON holds them: a Decimal as a number, a date as its ISO text.

    Sources hand values already typed (FieldDefinition); the JSON columns take
    only JSON's own types, and one odd value must not fail a page: NaN and
    infinities become nothing, a whole number too big for a database's JSON
    becomes its text, NUL characters (which PostgreSQL refuses) go, and
    nesting deeper than a CRM's field can hold is cut off.
    """
    if not isinstance(attributes, dict) or not attributes:
        return {}
    out: dict[str, Any] = {}
    for key, value in attributes.items():  # a page has thousands: plain text and small numbers skip _plain
        if type(key) is not str or len(key) > 100 or "\x00" in key:
            key = str(key).replace("\x00", "")[:100]
        kind = type(value)
        as_is = (kind is str and "\x00" not in value) or (kind is int and -_BIG < value < _BIG) \
            or kind is bool or value is None
        out[key] = value if as_is else _plain(value, 0)
    return out


_BIG = 10 ** 18  # past this a whole number is kept as its text: JSON readers lose precision, SQL casts overflow
_DEPTH = 20  # lists in lists deeper than this are no field's value


def _plain(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, int):
        if -_BIG < value < _BIG:
            return value
        return str(value) if value.bit_length() < 10_000 else None  # Python refuses to write longer ones
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN or infinity
    if isinstance(value, Decimal):
        if not value.is_finite() or abs(value.adjusted()) > 30:
            return None
        return _plain(int(value), depth) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if depth >= _DEPTH:
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k).replace("\x00", "")[:100]: _plain(v, depth + 1) for k, v in value.items()}
    return str(value).replace("\x00", "")
