"""GET /api/v1/segments and /segments/{name}/members: who is in a segment, for systems outside Hub.

Members are evaluated now, like `hub segments count` (not as of the last
refresh), and paged by contact id, so a page never skips or repeats anyone
who stays in the segment while the pages are read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from hub import contacts, i18n
from hub.hookspecs import hookimpl
from hub.i18n import gettext
from hub.models import Contact, Segment, SegmentMember
from hub.segments.evaluate import Segments
from hub.segments.lifecycle import Thresholds
from hub.webapi import problems
from hub.webapi.endpoints import JSON, Call, Endpoint, cursor_after, read_cursor
from hub.webapi.schemas import COMPONENTS, CONTACT_REF, CURSOR_PARAMS, NULLABLE_STRING, items_of, page_of

contacts_t = Contact.__table__
segments_t = Segment.__table__
members_t = SegmentMember.__table__
DEFAULT_LIMIT = 100

SEGMENT: JSON = {
    "type": "object", "required": ["name", "title", "builtin", "members_at_refresh", "refreshed_at"],
    "properties": {"name": {"type": "string"}, "title": {"type": "string"}, "builtin": {"type": "boolean"},
                   "members_at_refresh": {"type": "integer", "description": "How many were in it at its last "
                                          "refresh (refreshed_at); /members says who is in it now"},
                   "refreshed_at": NULLABLE_STRING},
}


def list_segments(call: Call) -> JSON:
    """Every segment with its size as of its last refresh."""
    chosen = Segments(call.conn, call.settings)
    counts: dict[str, int] = dict(call.conn.execute(select(segments_t.c.name, func.count(members_t.c.contact_id))
                                    .outerjoin(members_t, members_t.c.segment_id == segments_t.c.id)
                                    .group_by(segments_t.c.name)).all())
    refreshed = dict(call.conn.execute(select(segments_t.c.name, segments_t.c.refreshed_at)).all())
    items = []
    for definition in chosen.catalog.definitions.values():
        at = refreshed.get(definition.name)
        items.append({"name": definition.name, "title": i18n.title(definition.title) or definition.name,
                      "builtin": bool(definition.builtin), "members_at_refresh": int(counts.get(definition.name, 0)),
                      "refreshed_at": at.isoformat() if at else None})
    return {"items": sorted(items, key=lambda s: s["name"])}


def segment_members(call: Call) -> JSON:
    """A page of the segment's contacts, in the shape of `hub contacts list --json`."""
    name = call.path["name"]
    chosen = Segments(call.conn, call.settings)
    if name not in chosen.catalog.definitions:
        raise problems.error(404, gettext("There is no segment %(name)s; GET /api/v1/segments lists them",
                                          name=name[:64]))
    after = read_cursor(call.query.get("cursor"))
    limit = int(call.query.get("limit") or DEFAULT_LIMIT)
    ids_q = chosen.compiler.members(chosen.get(name).rule).subquery()
    ids = list(call.conn.execute(select(ids_q.c.id).where(ids_q.c.id > after).order_by(ids_q.c.id)
                                 .limit(limit + 1)).scalars())
    more = len(ids) > limit
    ids = ids[:limit]
    thresholds = Thresholds.from_settings(call.settings.extra)
    items: list[dict[str, Any]] = list(contacts.iter_contacts(call.conn, ids=ids, thresholds=thresholds)) if ids \
        else []
    return {"items": items, "next_cursor": cursor_after(ids[-1]) if more else None}


@hookimpl
def register_api_endpoints(register: Any) -> None:
    register(Endpoint("GET", "/segments", list_segments, "segments:read", "List segments", "segments",
                      answer=items_of(SEGMENT)))
    register(Endpoint("GET", "/segments/{name}/members", segment_members, "segments:read",
                      "A segment's members, a page at a time", "segments",
                      params=({"name": "name", "in": "path", "required": True,
                               "schema": {"type": "string", "maxLength": 64}}, *CURSOR_PARAMS),
                      answer=page_of(CONTACT_REF), errors=(404,), schemas=COMPONENTS))
