"""Writing back to the CRMs a contact lives in: a field, a comment, a task for the manager.

Workflows say what to write ("store the promo code", "ask the manager to
call") in CRM-neutral terms; each source plugin that holds the contact turns
it into its own calls. A source opts in by having the methods of `WriteBack`;
field names are logical ("promo_code") and each plugin maps them to its own
fields through its settings.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from sqlalchemy import Connection, select

from hub.config import Settings
from hub.models import ExternalRef
from hub.plugins import sources

refs_t = ExternalRef.__table__


@runtime_checkable
class WriteBack(Protocol):
    """What a source implements to accept writes; each returns the CRM's id of what it made, if any."""

    def set_field(self, external_id: str, name: str, value: Any) -> str | None: ...

    def add_comment(self, external_id: str, text: str) -> str | None: ...

    def add_task(self, external_id: str, title: str, *, due_at: dt.datetime, description: str = "",
                 responsible_id: str | None = None) -> str | None:
        """`responsible_id`: the record's manager as the last sync read it (external_refs.responsible_id);
        None when unknown, and the source may then look it up itself."""


@runtime_checkable
class FieldBatches(Protocol):
    """A source that writes many records' fields in few requests (scores and stages pushed on change).

    `values` are (external id, logical field name, value); returns the external ids written. A
    logical name the connection maps to no CRM field is skipped, not an error.
    """

    def set_fields(self, values: Sequence[tuple[str, str, Any]]) -> list[str]: ...


@runtime_checkable
class Erasing(Protocol):
    """A source that can erase a person in its CRM on a GDPR/152-FZ request.

    Returns what happened there, in English for the audit log: "deleted" (Bitrix24's
    crm.contact.delete), "anonymised" (amoCRM, whose API cannot delete a contact: personal
    fields overwritten, phones and emails removed, call notes cleared, a tag added),
    "anonymised; call notes kept" (some notes could not be edited: asked again next time), or
    "gone" (the CRM no longer had the contact). Raises on failure; a raised error's text is
    not stored (it may echo the person), only its kind.
    """

    def erase_contact(self, external_id: str) -> str: ...


class WriteBackError(RuntimeError):
    """Nowhere to write, or the CRM refused; the message says which and why."""


class NoCrmHolds(WriteBackError):
    """No CRM that accepts writes holds the contact: not a failure of the CRM, nothing to retry."""


@dataclass(frozen=True)
class Written:
    source: str
    external_id: str
    result: str | None


def targets(conn: Connection, contact_id: int, only: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(source, external id) of every live CRM record behind this contact, oldest link first."""
    return [(s, e) for s, e, _r in _refs(conn, contact_id, only)]


def _refs(conn: Connection, contact_id: int, only: Sequence[str] | None) -> list[tuple[str, str, str | None]]:
    q = (select(refs_t.c.source, refs_t.c.external_id, refs_t.c.responsible_id)
         .where(refs_t.c.contact_id == contact_id, refs_t.c.deleted_at.is_(None)).order_by(refs_t.c.id))
    return [(s, e, r) for s, e, r in conn.execute(q) if only is None or s in only]


@functools.lru_cache(maxsize=64)
def takes_responsible(kind: type) -> bool:
    """Whether a source's add_task accepts `responsible_id` (plugins written before it was added do not).

    Asked of the signature once per class, not by catching TypeError: a TypeError
    raised inside the plugin must stay a failure, not turn into a second call.
    """
    try:
        params = inspect.signature(kind.add_task).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False
    return "responsible_id" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def apply(conn: Connection, settings: Settings, contact_id: int, action: str, *, only: Sequence[str] | None = None,
          first_only: bool = False, **kwargs: Any) -> list[Written]:
    """Run `action` ("set_field", "add_comment" or "add_task") in every CRM holding the contact.

    `first_only` writes to one CRM (a call task belongs with one manager, not
    with one per CRM). Sources that cannot write back are passed over; when no
    CRM can take the write, that is an error the caller reports. A task goes
    to the record's manager as the last sync read it (external_refs.responsible_id),
    so the source needs no extra request to find them, unless the caller
    names another (a deal's own manager) with `responsible_id`.
    """
    if action not in ("set_field", "add_comment", "add_task"):
        raise WriteBackError(f"unknown write-back action {action!r}")
    factories = sources()
    done: list[Written] = []
    for source_name, external_id, responsible_id in _refs(conn, contact_id, only):
        factory = factories.get(source_name)
        if factory is None:
            continue
        source = factory(settings)
        if not isinstance(source, WriteBack):
            continue
        extra = dict(kwargs)
        if action == "add_task" and takes_responsible(type(source)):
            extra["responsible_id"] = extra.get("responsible_id") or responsible_id
        else:
            extra.pop("responsible_id", None)  # a plugin written before tasks had a manager
        done.append(Written(source_name, external_id, getattr(source, action)(external_id, **extra)))
        if first_only:
            break
    if not done:
        where = f" among {', '.join(only)}" if only else ""
        raise NoCrmHolds(f"contact #{contact_id} is in no CRM that accepts write-back{where}")
    return done
