"""What sources hand to the core.

Every way data enters Hub (a CRM sync, a spreadsheet import, a consent import)
speaks in these plain records, so the identity path is written once and every
source gets the same normalization, matching and provenance.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypeVar

OrderStatus = Literal["won", "lost", "open"]
Gender = Literal["m", "f"]
# The types a source gives a phone or an email (Bitrix24's WORK/MOBILE/HOME/FAX, amoCRM's WORK/MOB/PRIV,
# an export's «Рабочий телефон»). A type weighs in when Hub decides whether a value is one person's.
LABELS = ("work", "mobile", "home", "fax", "mailing", "private", "other")


@dataclass(slots=True)
class ContactRecord:
    """One person as a source sees them.

    Phones and emails are raw cells exactly as the source holds them: a cell
    may contain several numbers or an extension; the identity module splits
    and normalizes them, keeping what it cannot parse as flagged raw text.
    `labels` gives a cell's type where the source says it (raw cell -> one of
    LABELS): a work phone or a fax is weaker evidence of one person than a
    mobile, and Hub weighs it so.
    """

    source: str
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    middle_name: str | None = None
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    birthday: dt.date | None = None
    city: str | None = None
    gender: Gender | None = None
    company: str | None = None
    # The source's ids of the companies the person works at (CompanyRecord.external_id).
    company_external_ids: list[str] = field(default_factory=list)
    # The CRM user responsible for the person (kept, so a task for the manager needs no extra request).
    responsible_id: str | None = None
    tags: list[str] = field(default_factory=list)
    attributes: dict[str, object] = field(default_factory=dict)
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@dataclass(slots=True)
class OrderRecord:
    """A deal, lead or purchase; linked to its contact by the source's contact id."""

    source: str
    external_id: str
    contact_external_id: str | None
    amount: Decimal = Decimal(0)
    currency: str = "RUB"
    status: OrderStatus = "open"
    closed_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    promo_code: str | None = None
    title: str | None = None
    company_external_id: str | None = None
    # Where an open deal stands: funnel, stage and since when it has been in that stage
    # (from the CRM's stage history; None when the source cannot tell).
    pipeline: str | None = None
    stage: str | None = None
    stage_entered_at: dt.datetime | None = None
    responsible_id: str | None = None
    # Custom fields by their code in the CRM; values already typed (see FieldDefinition).
    attributes: dict[str, object] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CompanyRecord:
    """A company as a source sees it (B2B): requisites, main lines and mailboxes.

    Phones and emails are raw cells like a contact's; they identify the company
    and never make two of its people one.
    """

    source: str
    external_id: str
    name: str | None = None
    inn: str | None = None
    city: str | None = None
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    responsible_id: str | None = None
    attributes: dict[str, object] = field(default_factory=dict)
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


ActivityKind = Literal["call", "meeting", "email", "task", "note"]
ACTIVITY_KINDS = ("call", "meeting", "email", "task", "note")


@dataclass(slots=True)
class ActivityRecord:
    """A call, meeting, e-mail, task or note a manager logged; linked by the source's contact id.

    `direction` is "in" (the customer called or wrote) or "out"; `missed` marks an
    incoming call nobody answered; `done` is False for a planned meeting or an open task.
    `order_external_id` names the deal (lead) it was logged on: without a contact of its
    own (or one Hub does not know) it reaches the contact that deal belongs to.
    `call_id` names the call itself where the CRM logs one call more than once (amoCRM
    notes the same call on the contact and on its lead): counts take each call once.
    """

    source: str
    external_id: str
    kind: ActivityKind
    at: dt.datetime
    contact_external_id: str | None = None
    company_external_id: str | None = None
    direction: Literal["in", "out"] | None = None
    missed: bool = False
    done: bool = True
    duration_s: int | None = None
    subject: str | None = None
    responsible_id: str | None = None
    order_external_id: str | None = None
    call_id: str | None = None


FieldType = Literal["string", "number", "date", "datetime", "list", "boolean"]
FIELD_TYPES = ("string", "number", "date", "datetime", "list", "boolean")


@dataclass(slots=True)
class FieldDefinition:
    """A custom field as the CRM defines it; a source yields these before the records that use them.

    `options` for a list: [{"id": "44", "value": "Выставка"}]; the records then carry the
    option's text (not its id) under `code` in `attributes`, a list of them when `multiple`.
    """

    source: str
    entity: Literal["contact", "company", "order"]
    code: str
    name: str
    type: FieldType
    multiple: bool = False
    options: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Deletion:
    """The source removed this record; Hub marks it, never silently drops history."""

    source: str
    entity: Literal["contact", "order", "company", "activity"]
    external_id: str


def clean_text(text: str) -> str:
    """Text without NUL characters, which PostgreSQL refuses in text columns (CRMs store them as sent)."""
    return text.replace("\x00", "") if "\x00" in text else text


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    return value


R = TypeVar("R")


def _holds_nul(value: Any) -> bool:
    """Whether `_scrubbed` would change anything in `value`: almost no record holds a NUL, and looking
    costs far less than rebuilding every list and dict of every record a sync reads."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(map(_holds_nul, value))
    if isinstance(value, dict):
        return any(map(_holds_nul, value)) or any(map(_holds_nul, value.values()))
    return False


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(item.name for item in dataclasses.fields(kind))


def without_nul(record: R) -> R:
    """The record with NUL removed from every text in it (names, subjects, custom field values, labels).

    A text that held nothing but NULs becomes None (an external id stays as it is: it names the record).
    Values without a NUL are left as they are (the same objects).
    """
    for name in _field_names(type(record)):  # type: ignore[arg-type]
        value = getattr(record, name)
        if not _holds_nul(value):
            continue
        scrubbed = _scrubbed(value)
        if isinstance(value, str) and not scrubbed.strip() and name != "external_id":
            scrubbed = None
        setattr(record, name, scrubbed)
    return record
