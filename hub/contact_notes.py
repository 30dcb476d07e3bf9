"""Notes the shop's people write on a contact's card ("called, asked to ring back in May").

A note is the person's history as staff saw it, so it stays with the person:
a merge moves it to the survivor and an unmerge gives it back (hub.identity,
hub.unmerge), an erasure deletes it and an export includes it (the gdpr
plugin). Notes are plain text: whatever shows them escapes them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, select

from hub.db import utcnow
from hub.i18n import gettext as _
from hub.models import ContactNote

notes_t = ContactNote.__table__
MAX_LENGTH = 2000  # a note, not a document: long texts belong in the CRM
MAX_AUTHOR = 200


class NoteError(ValueError):
    """A note that cannot be kept; the message says what is wrong, in the reader's language."""


def clean(body: str | None) -> str:
    """The note as it is kept: trimmed, line ends made one kind; refused when empty or too long."""
    text = (body or "").replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()
    if not text:
        raise NoteError(_("the note is empty: write what happened"))
    if len(text) > MAX_LENGTH:
        raise NoteError(_("the note is %(length)s characters long; keep it within %(max)s", length=len(text),
                          max=MAX_LENGTH))
    return text


def add(conn: Connection, contact_id: int, body: str | None, *, author: str,
        at: dt.datetime | None = None) -> int:
    """Keep a note on a contact; returns its id. NoteError when the text is empty or too long."""
    text = clean(body)
    return int(conn.execute(notes_t.insert().returning(notes_t.c.id),
                            {"contact_id": contact_id, "author": (author.strip() or "unknown")[:MAX_AUTHOR],
                             "body": text, "created_at": at or utcnow()}).scalar_one())


def for_contact(conn: Connection, contact_id: int, *, limit: int = 100) -> list[dict[str, Any]]:
    """A contact's notes, newest first (the card shows what happened last at the top)."""
    rows = conn.execute(select(notes_t.c.id, notes_t.c.author, notes_t.c.body, notes_t.c.created_at)
                        .where(notes_t.c.contact_id == contact_id)
                        .order_by(notes_t.c.created_at.desc(), notes_t.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


def count(conn: Connection, contact_id: int) -> int:
    return int(conn.execute(select(func.count()).select_from(notes_t)
                            .where(notes_t.c.contact_id == contact_id)).scalar_one())


def ids_of(conn: Connection, contact_id: int) -> list[int]:
    """The ids of a contact's notes: what a merge's snapshot keeps so an unmerge can give them back."""
    return list(conn.execute(select(notes_t.c.id).where(notes_t.c.contact_id == contact_id)
                             .order_by(notes_t.c.id)).scalars())
