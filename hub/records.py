"""What sources hand to the core.

Every way data enters Hub (a CRM sync, a spreadsheet import, a consent import)
speaks in these plain records, so the identity path is written once and every
source gets the same normalization, matching and provenance.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

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


@dataclass(slots=True)
class Deletion:
    """The source removed this record; Hub marks it, never silently drops history."""

    source: str
    entity: Literal["contact", "order"]
    external_id: str
