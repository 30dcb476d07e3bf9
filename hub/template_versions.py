"""Every saved state of a message template, so a change can be seen and undone.

A letter that went out wrong has to be traced to the edit that broke it and
put back; so every save, from the admin or `hub templates add`, adds a
version (1, 2, …) with who saved it and when, kept by the template's name
(removing the edited copy keeps its history). A template shipped as files
counts as version 0, "shipped": the first edit can be compared with it and
it can be restored like any other. Restoring never rewrites history: it
saves the old text again as a new version.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from hub import message_templates
from hub.config import Settings
from hub.db import utcnow
from hub.i18n import gettext as _
from hub.message_templates import Template, TemplateError
from hub.models import MessageTemplateVersion

versions_t = MessageTemplateVersion.__table__

SHIPPED = 0  # the number of the version a template folder ships
PARTS = ("subject", "text", "html")


@dataclass(frozen=True)
class Version:
    name: str
    number: int
    channel: str
    subject: str | None
    text: str
    html: str | None
    saved_by: str | None  # None for the shipped version
    saved_at: dt.datetime | None

    @property
    def shipped(self) -> bool:
        return self.number == SHIPPED

    def template(self) -> Template:
        return Template(name=self.name, channel=self.channel, subject=self.subject, text=self.text, html=self.html)


def _from_row(row: Any) -> Version:
    return Version(name=row.name, number=row.version, channel=row.channel, subject=row.subject, text=row.body_text,
                   html=row.body_html, saved_by=row.saved_by, saved_at=row.saved_at)


def _shipped(settings: Settings, name: str) -> Version | None:
    found = message_templates.shipped(settings, name)
    if found is None:
        return None
    return Version(name=name, number=SHIPPED, channel=found.channel, subject=found.subject, text=found.text,
                   html=found.html, saved_by=None, saved_at=None)


class Conflict(TemplateError):
    """Someone saved the template after the editor was opened; `latest` is their version."""

    def __init__(self, latest: Version) -> None:
        self.latest = latest
        super().__init__(_("%(name)s was changed by %(who)s after you opened it (version %(version)s); "
                           "nothing was saved", name=latest.name, who=latest.saved_by or "", version=latest.number))


def _same(a: Template | Version, b: Template) -> bool:
    return (a.channel == b.channel and (a.subject or None) == (b.subject or None) and (a.text or "") == (b.text or "")
            and (a.html or None) == (b.html or None))


def latest(conn: Connection, settings: Settings, name: str) -> Version | None:
    """The newest version (the shipped one when nobody saved the template yet), or None for a new name."""
    row = conn.execute(select(versions_t).where(versions_t.c.name == name)
                       .order_by(versions_t.c.version.desc()).limit(1)).first()
    return _from_row(row) if row is not None else _shipped(settings, name)


def unchanged(conn: Connection, settings: Settings, template: Template) -> Version | None:
    """The current version when the template already reads exactly so (a save would change nothing), else None."""
    head = latest(conn, settings, template.name)
    if head is None or not _same(head, template):
        return None
    try:
        current = message_templates.get(conn, settings, template.name)
    except TemplateError:
        return None
    return head if _same(current, template) else None


def save(conn: Connection, settings: Settings, template: Template, actor: str,
         sample: Mapping[str, Any] | None = None, *, base: int | None = None) -> Version:
    """Validate and save the template (hub.message_templates.save), and record it as the next version.

    `base` is the version the person started from (-1: a new template); when
    someone saved after it, Conflict is raised and nothing is saved, so the
    later of two editors never silently overwrites the earlier. Content the
    same as the current version saves nothing and returns that version.
    Two saves at the very same moment both get a version: a number taken by
    the other is retried with the next one, inside a savepoint.
    """
    head = latest(conn, settings, template.name)
    if base is not None and head is not None and head.number != base:
        raise Conflict(head)
    same = unchanged(conn, settings, template)
    if same is not None:
        return same
    message_templates.save(conn, settings, template, sample)
    for _attempt in range(5):
        top = conn.execute(select(func.max(versions_t.c.version)).where(versions_t.c.name == template.name)
                           ).scalar()
        number = (top or 0) + 1
        now = utcnow()
        try:
            with conn.begin_nested():
                conn.execute(versions_t.insert().values(
                    name=template.name, version=number, channel=template.channel, subject=template.subject,
                    body_text=template.text, body_html=template.html, saved_by=actor, saved_at=now))
        except IntegrityError:
            if base is not None:  # the other save came first: this one was made on what it replaced
                newest = latest(conn, settings, template.name)
                if newest is not None:
                    raise Conflict(newest) from None
            continue
        return Version(name=template.name, number=number, channel=template.channel, subject=template.subject,
                       text=template.text, html=template.html, saved_by=actor, saved_at=now)
    raise TemplateError(_("%(name)s: saved by someone else at the same moment; save again", name=template.name))


def history(conn: Connection, settings: Settings, name: str) -> list[Version]:
    """Newest first; the shipped version (0) last, when a folder ships the template."""
    rows = conn.execute(select(versions_t).where(versions_t.c.name == name).order_by(versions_t.c.version.desc()))
    found = [_from_row(r) for r in rows]
    shipped = _shipped(settings, name)
    return found + ([shipped] if shipped is not None else [])


def get(conn: Connection, settings: Settings, name: str, number: int) -> Version | None:
    """One version of a template (0: as shipped), or None."""
    if number == SHIPPED:
        return _shipped(settings, name)
    row = conn.execute(select(versions_t).where(versions_t.c.name == name, versions_t.c.version == number)).first()
    return _from_row(row) if row is not None else None


def previous(conn: Connection, settings: Settings, version: Version) -> Version | None:
    """The version saved before this one (the shipped one before the first edit), or None."""
    if version.shipped:
        return None
    row = conn.execute(select(versions_t).where(versions_t.c.name == version.name,
                                                versions_t.c.version < version.number)
                       .order_by(versions_t.c.version.desc()).limit(1)).first()
    return _from_row(row) if row is not None else _shipped(settings, version.name)


@dataclass(frozen=True)
class Line:
    kind: str  # "same", "added", "removed", "gap" (unchanged lines left out)
    text: str


def diff(older: Version | None, newer: Version, context: int = 3) -> dict[str, list[Line]]:
    """What changed in each part (subject, text, html), as unified-diff lines; parts that did not change are left out.

    The lines are plain text: whoever shows them escapes them (a template's
    HTML is shown as its source, never rendered).
    """
    out: dict[str, list[Line]] = {}
    for part in PARTS:
        before = (getattr(older, part) or "") if older is not None else ""
        after = getattr(newer, part) or ""
        if before == after:
            continue
        lines: list[Line] = []
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=context):
            if line.startswith(("---", "+++")):
                continue
            if line.startswith("@@"):
                lines.append(Line("gap", line))
            elif line.startswith("+"):
                lines.append(Line("added", line[1:]))
            elif line.startswith("-"):
                lines.append(Line("removed", line[1:]))
            else:
                lines.append(Line("same", line[1:]))
        out[part] = lines
    return out


def restore(conn: Connection, settings: Settings, name: str, number: int, actor: str) -> Version:
    """Save version `number` again as the newest version (the current one when it reads the same already);
    raises TemplateError when there is none."""
    old = get(conn, settings, name, number)
    if old is None:
        raise TemplateError(_("%(name)s has no version %(version)s", name=name, version=number))
    return save(conn, settings, old.template(), actor)
