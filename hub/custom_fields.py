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
        name = (str(d.name or "").strip() or code)[:300]
        options = [{"id": str(o.get("id", ""))[:100], "value": str(o.get("value", ""))[:300]}
                   for o in (d.options or [])[:MAX_OPTIONS] if isinstance(o, dict)]
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
    code = str(d.code or "").strip()
    if not code:
        return "the field has no code"
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
    only JSON's own types, and one odd value must not fail a page.
    """
    if not isinstance(attributes, dict):
        return {}
    return {str(key)[:100]: _plain(value) for key, value in attributes.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)
