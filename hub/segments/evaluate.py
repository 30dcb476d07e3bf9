"""Asking a segment who is in it right now.

`count`, `members` and `hub contacts list --segment` evaluate the rule against
the data as it is at this moment, so they always say what the data says, even
before the first refresh. What was recorded at the last refresh (and since
when each contact has been in) lives in segment_members; see membership.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pluggy
from sqlalchemy import Connection, func, select

from hub import contacts
from hub.config import Settings
from hub.db import chunks, utcnow
from hub.models import Contact, SegmentMember
from hub.segments import fields, store
from hub.segments.compile import Compiler, compiler_for
from hub.segments.lifecycle import Thresholds
from hub.segments.rules import SegmentDefinition

contacts_t = Contact.__table__
members_t = SegmentMember.__table__


class Segments:
    """Everything needed to evaluate segments on one connection at one moment.

    The field registry (with plugins' fields), every segment definition, and
    one `now` that every relative time in every rule is measured from.
    """

    def __init__(self, conn: Connection, settings: Settings, *, now: dt.datetime | None = None,
                 pm: pluggy.PluginManager | None = None) -> None:
        self.conn = conn
        self.settings = settings
        self.now = now or utcnow()
        self.registry = fields.build(settings, pm)
        self.catalog = store.load(conn, self.registry)
        self.compiler: Compiler = compiler_for(conn, self.registry, now=self.now, segments=self.catalog.definitions)

    def get(self, name: str) -> SegmentDefinition:
        return self.catalog.get(name)

    def count(self, name: str) -> int:
        ids = self.compiler.members(self.get(name).rule).subquery()
        return self.conn.execute(select(func.count()).select_from(ids)).scalar_one()

    def member_ids(self, name: str) -> list[int]:
        """Ids of the contacts in the segment now, in id order."""
        return list(self.conn.execute(self.compiler.members(self.get(name).rule).order_by(contacts_t.c.id))
                    .scalars())

    def members(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Who is in the segment now, with when the last refresh recorded them entering (or None)."""
        definition = self.get(name)
        c = contacts_t.c
        ids = self.compiler.members(definition.rule).subquery()
        recorded = (select(members_t.c.contact_id, members_t.c.entered_at)
                    .join(store.segments_t, store.segments_t.c.id == members_t.c.segment_id)
                    .where(store.segments_t.c.name == name).subquery())
        query = (select(c.id, c.first_name, c.last_name, recorded.c.entered_at)
                 .join(ids, ids.c.id == c.id).outerjoin(recorded, recorded.c.contact_id == c.id).order_by(c.id))
        if limit is not None:
            query = query.limit(limit)
        return [{"id": r.id, "first_name": r.first_name, "last_name": r.last_name,
                 "entered_at": r.entered_at.isoformat() if r.entered_at else None}
                for r in self.conn.execute(query)]

    def contacts(self, name: str) -> Iterator[dict[str, Any]]:
        """The segment's contacts in the shape of `hub contacts list --json`, a page at a time."""
        thresholds = Thresholds.from_settings(self.settings.extra)
        for page in chunks(self.member_ids(name), contacts.PAGE):
            yield from contacts.iter_contacts(self.conn, ids=list(page), thresholds=thresholds)
