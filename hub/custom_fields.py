"""Custom fields as each CRM defines them: code, name there, type, options.

Values live in the `attributes` of contacts, companies and orders under the
field's code; the definitions let a segment rule or the builder name a field
as the CRM's users know it ("Источник") and type its values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from sqlalchemy import Connection

from hub.records import FieldDefinition

if TYPE_CHECKING:
    from hub.sync import Counts


def write_definitions(conn: Connection, definitions: Sequence[FieldDefinition], counts: Counts) -> None:
    """Upsert field definitions by (source, entity, code)."""
    raise NotImplementedError
