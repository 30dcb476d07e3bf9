"""The core tables, as typed SQLAlchemy models.

Changing a model means adding an Alembic migration in hub/migrations/versions;
a test compares the migrated schema with these models so the two never drift.
A plugin's tables live in the plugin (its own models and migrations, see the
``register_migrations`` hook), declared with the same naming convention and
column types, which hub.api hands out as NAMING_CONVENTION and TYPE_ANNOTATION_MAP.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from hub.db import UTCDateTime, utcnow

JSONType = JSON().with_variant(JSONB(), "postgresql")
Money = Numeric(14, 2)

# Named constraints, so migrations can refer to them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# How annotations become column types: timezone-aware UTC times, JSONB on PostgreSQL, money.
TYPE_ANNOTATION_MAP: dict[Any, Any] = {dt.datetime: UTCDateTime, dict[str, Any]: JSONType, Decimal: Money}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP

    if TYPE_CHECKING:
        # Every model maps one plain Table, which Core statements (insert, update, delete) take;
        # SQLAlchemy types it as the wider FromClause because a model may also map a join or subquery.
        __table__: ClassVar[Table]


class Contact(Base):
    """One person. Order statistics live on the row so segments never scan orders."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    middle_name: Mapped[str | None] = mapped_column(String(200))
    birthday: Mapped[dt.date | None] = mapped_column(Date)
    city: Mapped[str | None] = mapped_column(String(200))
    gender: Mapped[str | None] = mapped_column(String(1))
    company: Mapped[str | None] = mapped_column(String(300))
    # "фамилия имя" lowercased with ё→е: SQLite's lower() knows only ASCII, so
    # namesake grouping and search use this key, kept current on every write.
    name_key: Mapped[str | None] = mapped_column(String(400), index=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # field name -> where its current value came from ("bitrix24", "import:clients.csv", ...)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    orders_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    revenue: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default="0")
    first_order_at: Mapped[dt.datetime | None]
    last_order_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Set when every source that held the person has deleted them.
    deleted_at: Mapped[dt.datetime | None]

    identities: Mapped[list[ContactIdentity]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactIdentity.id"
    )
    external_refs: Mapped[list[ExternalRef]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ExternalRef.id"
    )

    # AUTOINCREMENT on SQLite: a merged-away id is never given to a new person.
    __table_args__ = (Index(None, "last_order_at"), {"sqlite_autoincrement": True})

    @property
    def display_name(self) -> str:
        parts = [self.last_name, self.first_name, self.middle_name]
        return " ".join(p for p in parts if p) or f"#{self.id}"


class ContactIdentity(Base):
    """A phone or email of a contact: normalized for matching, raw for the record.

    A valid personal value belongs to exactly one contact (a partial unique
    index enforces it), which is the identity rule made into a constraint.
    A shared value (an office switchboard, a household landline, info@, an
    8-800 line) stands for a place, not a person: it stays on every contact
    that has it, `shared` saying why (hub.identity.SHARED_REASONS), and joins
    two records only when their names agree. Invalid values are kept as
    typed, flagged, and never used for matching.
    """

    __tablename__ = "contact_identities"

    id: Mapped[int] = mapped_column(primary_key=True)
    # No index of its own: UNIQUE(contact_id, kind, value) serves lookups by contact.
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # phone | email
    value: Mapped[str] = mapped_column(String(320))
    raw: Mapped[str] = mapped_column(Text)
    valid: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    label: Mapped[str | None] = mapped_column(String(16))  # work | mobile | home | fax | … (hub.records.LABELS)
    shared: Mapped[str | None] = mapped_column(String(16))  # NULL: one person's; else why it is shared

    contact: Mapped[Contact] = relationship(back_populates="identities")

    __table_args__ = (
        UniqueConstraint("contact_id", "kind", "value"),
        Index(
            "uq_contact_identities_valid_value",
            "kind",
            "value",
            unique=True,
            sqlite_where=text("valid = 1 AND shared IS NULL"),
            postgresql_where=text("valid AND shared IS NULL"),
        ),
        # Shared values are few; their own small index finds every contact holding one.
        Index(
            "ix_contact_identities_shared_value",
            "kind",
            "value",
            sqlite_where=text("shared IS NOT NULL"),
            postgresql_where=text("shared IS NOT NULL"),
        ),
    )


class ExternalRef(Base):
    """Where a contact lives in a source system: (source, external id) is unique."""

    __tablename__ = "external_refs"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(200))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[dt.datetime | None]
    # The CRM user responsible for the record, as the last sync read it: a task for "the manager"
    # goes to them without another request to the CRM.
    responsible_id: Mapped[str | None] = mapped_column(String(64))
    # What Hub last wrote to the record's fields ({"lead_score": 42, "lifecycle": "regular"}), so a
    # push sends only what changed since.
    pushed: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")

    contact: Mapped[Contact] = relationship(back_populates="external_refs")

    __table_args__ = (UniqueConstraint("source", "external_id"),)


class Order(Base):
    """A deal, lead or purchase. Only won orders count toward a contact's stats."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(200))
    # The source's id for the contact; kept so an order that arrives before
    # its contact is linked as soon as the contact is synced.
    contact_external_id: Mapped[str | None] = mapped_column(String(200))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    amount: Mapped[Decimal] = mapped_column(default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    status: Mapped[str] = mapped_column(String(8))  # won | lost | open
    title: Mapped[str | None] = mapped_column(String(300))
    promo_code: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The company the deal is with (B2B), linked like the contact: by the source's id, as soon as both are synced.
    company_external_id: Mapped[str | None] = mapped_column(String(200))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"))
    # Where an open deal stands: its funnel, its stage, and since when it has been in that stage.
    pipeline: Mapped[str | None] = mapped_column(String(200))
    stage: Mapped[str | None] = mapped_column(String(200))
    stage_entered_at: Mapped[dt.datetime | None]
    responsible_id: Mapped[str | None] = mapped_column(String(64))
    # The deal's custom fields by their code in the CRM (see CustomField for their names and types).
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")

    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index(None, "source", "contact_external_id"),
        Index(None, "status", "stage_entered_at"),
        # The open deals alone, by when they entered their stage ("stuck for 14 days"): migration 0014.
        Index("ix_orders_open_stage", "stage_entered_at", "contact_id", sqlite_where=text("status = 'open'"),
              postgresql_where=text("status = 'open'")),
        # Only the deals that have one (migration 0020): most deals carry no promo code and no company,
        # and a full sync paid an index entry for each of them. Lookups compare the column, which
        # excludes NULL, so both databases use these; so do the foreign key's ON DELETE SET NULL.
        Index("ix_orders_promo_code", "promo_code", sqlite_where=text("promo_code IS NOT NULL"),
              postgresql_where=text("promo_code IS NOT NULL")),
        Index("ix_orders_company_id", "company_id", sqlite_where=text("company_id IS NOT NULL"),
              postgresql_where=text("company_id IS NOT NULL")),
    )


class Company(Base):
    """A company from a CRM (B2B): its requisites, main lines and mailboxes, and its people.

    Unique by (source, external_id); the same firm in two CRMs is two rows, told apart from
    a person: a company's phones and emails identify the company, never one of its employees.
    `phones` are E.164 where they parse (raw text otherwise), `emails` lowercased. Won deals
    are counted on the row (kept current by the sync) so segments never scan orders for them.
    """

    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(300))
    inn: Mapped[str | None] = mapped_column(String(12), index=True)
    city: Mapped[str | None] = mapped_column(String(200))
    phones: Mapped[list[str]] = mapped_column(JSONType, default=list)
    emails: Mapped[list[str]] = mapped_column(JSONType, default=list)
    responsible_id: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    orders_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # won deals
    revenue: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None]

    __table_args__ = (UniqueConstraint("source", "external_id"),)


class CompanyValue(Base):
    """A company's phone or email, normalized, one a row: the index identity resolution asks.

    A contact's value found here is the company's line (a switchboard, an
    office@ mailbox): it never joins two people by itself. Kept by
    hub.companies beside the JSON lists on Company, which are what people read.
    """

    __tablename__ = "company_values"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # phone | email
    value: Mapped[str] = mapped_column(String(320))

    __table_args__ = (UniqueConstraint("company_id", "kind", "value"), Index(None, "kind", "value"))


class CompanyMembership(Base):
    """A source says its contact works at its company, by the source's own ids.

    Kept whatever order the two arrive in: contact_companies is made from these
    as soon as both are synced, and an unmerge gives each person back the links
    their own references brought.
    """

    __tablename__ = "company_memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    contact_external_id: Mapped[str] = mapped_column(String(200))
    company_external_id: Mapped[str] = mapped_column(String(200))

    __table_args__ = (UniqueConstraint("source", "contact_external_id", "company_external_id",
                                       name="uq_company_memberships_link"),
                      Index(None, "source", "company_external_id"))


class ContactCompany(Base):
    """A person works at a company (many-to-many where the CRM allows it), as a source says."""

    __tablename__ = "contact_companies"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("contact_id", "company_id"),)


class Activity(Base):
    """A call, meeting, e-mail, task or note a manager logged in a CRM: an interaction with the contact.

    Unique by (source, external_id), so a re-read activity is updated, never doubled. Linked to its
    contact like an order (by the source's contact id, as soon as the contact is synced), or, logged
    on a deal without a contact of its own, to the deal's contact (hub.activities.follow_orders).
    """

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(200))
    contact_external_id: Mapped[str | None] = mapped_column(String(200))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    # Kept like contact_external_id: an activity read before its company is linked when the company arrives.
    company_external_id: Mapped[str | None] = mapped_column(String(200))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"))
    # The deal (lead) it was logged on: it reaches the deal's contact, and follows the deal when that changes.
    order_external_id: Mapped[str | None] = mapped_column(String(200))
    # The call itself where the CRM notes one call twice (on the contact and on its lead): counted once.
    call_id: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # call | meeting | email | task | note (hub.records.ACTIVITY_KINDS)
    direction: Mapped[str | None] = mapped_column(String(8))  # in | out
    missed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    done: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    at: Mapped[dt.datetime]
    duration_s: Mapped[int | None] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(String(300))
    responsible_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[dt.datetime | None]

    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index(None, "contact_id", "kind", "at"),
        # Segment conditions ("a call within 30 days") range over one kind and a time window first.
        Index(None, "kind", "at"),
        # Only the activities waiting for their contact, which link_orphans looks for (migration 0022).
        Index("ix_activities_source_contact_external_id", "source", "contact_external_id",
              sqlite_where=text("contact_id IS NULL"), postgresql_where=text("contact_id IS NULL")),
        # Only the activities that have one (migration 0020, as for orders): most calls are logged on
        # no deal and no company.
        Index("ix_activities_source_order_external_id", "source", "order_external_id",
              sqlite_where=text("order_external_id IS NOT NULL"),
              postgresql_where=text("order_external_id IS NOT NULL")),
        Index("ix_activities_company_id", "company_id", sqlite_where=text("company_id IS NOT NULL"),
              postgresql_where=text("company_id IS NOT NULL")),
    )


class CustomField(Base):
    """A custom field as a CRM defines it: its code, its name there, its type and its options.

    Values live in `attributes` of contacts, companies and orders under `code`; this table is
    what lets a segment rule or the builder say "Источник" instead of UF_CRM_1712345 and know
    that it is a list with these options.
    """

    __tablename__ = "custom_fields"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    entity: Mapped[str] = mapped_column(String(16))  # contact | company | order
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    type: Mapped[str] = mapped_column(String(16))  # hub.records.FIELD_TYPES
    multiple: Mapped[bool] = mapped_column(Boolean, default=False)
    # list fields: [{"id": "44", "value": "Выставка"}, …]; a value stored in attributes is the option's text
    options: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("source", "entity", "code"),)


class ContactMerge(Base):
    """A merge, with what the merged contact held and where each value came from."""

    __tablename__ = "contact_merges"

    id: Mapped[int] = mapped_column(primary_key=True)
    survivor_id: Mapped[int] = mapped_column(Integer, index=True)
    merged_id: Mapped[int] = mapped_column(Integer, index=True)
    reason: Mapped[dict[str, Any]] = mapped_column(default=dict)
    snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(200), default="system")
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Set when the merge was undone (hub contacts unmerge): the merged contact lives again.
    undone_at: Mapped[dt.datetime | None]
    undone_by: Mapped[str | None] = mapped_column(String(200))


class ContactsApart(Base):
    """Two contacts a person said are two people (by undoing their merge).

    Neither a shared value nor the values that joined them before join them
    again; only new evidence does: another personal phone or email both of
    them turn out to hold.
    """

    __tablename__ = "contacts_apart"

    id: Mapped[int] = mapped_column(primary_key=True)
    low_id: Mapped[int] = mapped_column(Integer)
    high_id: Mapped[int] = mapped_column(Integer, index=True)
    merge_id: Mapped[int | None] = mapped_column(Integer)
    # The values ("phone:+7…") that joined them once: read again, they are old evidence and join nothing.
    keys: Mapped[list[str]] = mapped_column(JSONType, default=list)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("low_id", "high_id"),)


class ConsentEvent(Base):
    """Append-only: the current consent is the latest event per (contact, channel, purpose)."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # granted | withdrawn | pending
    source: Mapped[str] = mapped_column(String(100))
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index(None, "contact_id", "channel", "purpose", "id"),)


class ConsentState(Base):
    """The current answer per (contact, channel, purpose): the ledger's latest event, kept beside it.

    Derived from consent_events, never evidence of its own: hub.consent writes it in the same
    transaction as every event, and rebuilds a contact's rows from the ledger wherever events move
    (a merge, its undo) or go (an erasure). Segments ask "whose current answer is granted" of millions
    of people; the ledger answers that only by comparing each answer with every later one (an
    anti-join over the ledger), this table by one range of its index. Decisions about one person (may
    this message go out) still read the ledger itself.
    """

    __tablename__ = "consent_states"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    # The event that is current, and its date: a later answer replaces it, an earlier one (an old paper
    # form imported today) does not.
    event_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column()

    __table_args__ = (Index(None, "channel", "purpose", "status", "contact_id"),)


class Suppression(Base):
    """An address that must never be contacted, stored only as a keyed hash.

    Erased people leave nothing readable behind, yet a later import of the same
    address is still recognised and kept out of marketing.
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # phone | email
    value_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(32))  # bounce | complaint | erasure | manual
    source: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SyncState(Base):
    """The cursor of one entity of one source, advanced only after its records are committed."""

    __tablename__ = "sync_state"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    # A full sync in progress keeps its own position, so a killed run resumes.
    full_cursor: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ScheduleState(Base):
    """One recurring job of `hub scheduler` (or its lock, the row named "scheduler"): when it last ran and how."""

    __tablename__ = "schedule_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime | None]
    last_started_at: Mapped[dt.datetime | None]
    last_finished_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_result: Mapped[dict[str, Any] | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# The kinds of sync run of which a source has at most one running at a time (see SyncRun).
EXCLUSIVE_RUN_KINDS = ("full", "incremental", "reconcile")


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # full | incremental | import
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | ok | failed | interrupted
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    errors: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    # Who runs it (host/pid/process token) and when it last showed progress: a run whose
    # process is gone, or silent past the lease, is marked interrupted (hub.sync).
    owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[dt.datetime | None]

    # One live sync per source, whichever process starts it (migration 0019): two would each pace
    # themselves alone against the CRM's rate limit. Event fetches and imports are not syncs here.
    __table_args__ = (
        Index("uq_sync_runs_live_source", "source", unique=True,
              sqlite_where=text(f"status = 'running' AND kind IN {EXCLUSIVE_RUN_KINDS!r}"),
              postgresql_where=text(f"status = 'running' AND kind IN {EXCLUSIVE_RUN_KINDS!r}")),
    )


class Credential(Base):
    """A source's secrets (tokens, webhook codes), encrypted with HUB_SECRET_KEY."""

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    # Incremented on every write, so a token refresh can detect a lost race.
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | marketer | viewer
    password_hash: Mapped[str] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    language: Mapped[str | None] = mapped_column(String(8))  # the admin's language they chose; None: HUB_LANGUAGE


class ContactNote(Base):
    """A note a person of the shop wrote on a contact's card ("called, asked to ring back in May")."""

    __tablename__ = "contact_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who did what to whom; contact_id is a plain integer so entries outlive an erasure."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    contact_id: Mapped[int | None] = mapped_column(Integer, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- messaging ----------------------------------------------------------------------------

class MessageTemplateVersion(Base):
    """A template as someone saved it: every save adds one, so a change can be seen and undone.

    Keyed by the template's name, not its row: removing an override keeps its history.
    """

    __tablename__ = "message_template_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    saved_by: Mapped[str] = mapped_column(String(200))
    saved_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("name", "version"),)


class MessageTemplate(Base):
    """A template edited by a user; it overrides a shipped template of the same name."""

    __tablename__ = "message_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    channel: Mapped[str] = mapped_column(String(32))  # email | sms | any text channel
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Message(Base):
    """One message in the outbox, rendered when it was created.

    The unique idempotency key is what makes "at most once" hold: creating the
    same message again finds this row, and the row is committed as `sending`
    before a channel is called, so a crash in between leaves `unknown` for a
    person to review instead of a second send.
    """

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    template: Mapped[str | None] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(64))  # marketing | transactional | another consent purpose
    address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    parts: Mapped[int | None] = mapped_column(Integer)  # SMS parts the text takes
    # queued | sending | sent | failed | suppressed | deferred | unknown
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Not before this time: creation for new messages, the retry time for deferred ones.
    due_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    provider_id: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(100))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The workflow (a campaign is one too) that wrote the message, from meta["workflow"]: a column, so the
    # message log and the reports filter and count by it on both databases without reading JSON.
    origin: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    claimed_at: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    # What the provider charged for it (rubles), when its answer or delivery report says.
    cost: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))

    # AUTOINCREMENT on SQLite: a message id (in headers, file names) is never reused.
    # The claim query reads this index in order: ready rows of one channel, oldest due first.
    __table_args__ = (Index(None, "status", "channel", "due_at"), {"sqlite_autoincrement": True})


class MessageEvent(Base):
    """Something heard about a sent message: a click, an open, a bounce, a complaint, a delivery report.

    Append-only, like the consent ledger. The contact is the message's (merges
    move messages, so events follow without a column of their own). `uid` is
    the reporter's id for what it reported (a bounce's own Message-ID, a
    provider's report id): reading the same report twice adds nothing.
    """

    __tablename__ = "message_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    # click | open | bounce | soft_bounce | complaint | delivered | undelivered
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    url: Mapped[str | None] = mapped_column(Text)  # the link clicked
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    uid: Mapped[str | None] = mapped_column(String(200), unique=True)

    # (message, kind) answers "did this message get clicked"; (kind, at) the reports and segment fields.
    __table_args__ = (Index(None, "message_id", "kind", "at"), Index(None, "kind", "at"))


# --- segments -----------------------------------------------------------------------------

class Segment(Base):
    """A named rule over contacts, and where its last refresh got to.

    User segments keep their rule in `definition`; built-in ones (hub/segments/library)
    are always read from the library, and their row carries only the refresh state.
    """

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str | None] = mapped_column(String(300))
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # When the last refresh started and the last consent event it had seen: an
    # incremental refresh looks only at what changed after them. NULL until the
    # first refresh, and again whenever the rule changes.
    refreshed_at: Mapped[dt.datetime | None]
    refreshed_event_id: Mapped[int | None] = mapped_column(Integer)


class SegmentMember(Base):
    """A contact in a segment as of the last refresh, and since when.

    Derived state, rewritten by refreshes in bulk, so it has no foreign keys:
    a check per inserted row (PostgreSQL locks each referenced contact) would
    cost more than the refresh itself. Removing a segment deletes its rows; a
    contact that no longer exists leaves at the next refresh, like anyone else.
    """

    __tablename__ = "segment_members"

    segment_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    contact_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SegmentSize(Base):
    """How many members a segment had on a day (the last refresh of that day in Hub's time zone)."""

    __tablename__ = "segment_sizes"

    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    members: Mapped[int] = mapped_column(Integer)
    measured_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LeadScore(Base):
    """A contact's lead score as of the last refresh (derived state, no foreign key, as above)."""

    __tablename__ = "lead_scores"

    contact_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    score: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# Segments ask for the latest consent answer of one channel and purpose per
# contact; this index answers that from the index alone, newest first.
Index("ix_consent_events_latest", ConsentEvent.__table__.c.channel, ConsentEvent.__table__.c.purpose,
      ConsentEvent.__table__.c.contact_id, ConsentEvent.__table__.c.at, ConsentEvent.__table__.c.id,
      ConsentEvent.__table__.c.status)


# PostgreSQL only (migration 0014): on millions of answers, "whose latest answer is granted" reads the
# granted answers and the few others as two ranges of this index; on SQLite the one above serves.
Index("ix_consent_events_answers", ConsentEvent.__table__.c.channel, ConsentEvent.__table__.c.purpose,
      ConsentEvent.__table__.c.status, ConsentEvent.__table__.c.contact_id, ConsentEvent.__table__.c.at,
      ConsentEvent.__table__.c.id).ddl_if(dialect="postgresql")
# PostgreSQL only: live contacts by their last order with the count and the id, so dormant_90d's
# contacts come from the index alone (an index-only scan; SQLite has no INCLUDE).
Index("ix_contacts_live_last_order", Contact.__table__.c.last_order_at, postgresql_include=["orders_count", "id"],
      postgresql_where=text("deleted_at IS NULL")).ddl_if(dialect="postgresql")


# The admin's contact search finds a piece of a number, an email or a name (LIKE '%…%') through
# pg_trgm on PostgreSQL (migration 0014); SQLite has no such index and scans.
def _trigram_index(name: str, column: Any, where: str | None = None) -> None:
    Index(name, column, postgresql_using="gin", postgresql_ops={column.name: "gin_trgm_ops"},
          postgresql_where=text(where) if where else None).ddl_if(dialect="postgresql")


_trigram_index("ix_contact_identities_value_trgm", ContactIdentity.__table__.c.value)
_trigram_index("ix_contact_identities_raw_trgm", ContactIdentity.__table__.c.raw, "kind = 'phone'")
_trigram_index("ix_contacts_name_key_trgm", Contact.__table__.c.name_key)
_trigram_index("ix_contacts_middle_name_trgm", Contact.__table__.c.middle_name)

# The whole name as the search reads it, word by word: "фамилия имя отчество", lowercased with ё→е
# (name_key is kept so; the patronymic keeps what people typed and is folded here).
# (Constants as SQL text, the same in the index and in every query, so the planner matches the two;
# textcat() is `||` written as a call, which PostgreSQL reflects as written, so the schema check compares it.)
FOLDED_FULL_NAME = func.textcat(
    func.textcat(func.coalesce(Contact.__table__.c.name_key, text("''")), text("' '")),
    func.replace(func.lower(func.coalesce(Contact.__table__.c.middle_name, text("''"))), text("'ё'"), text("'е'")))
# Every beginning (2 to NAME_PREFIX_MAX letters) of every word of that name, words split at spaces and
# hyphens: the search's "each typed word begins a word of the name" is one GIN condition for all the words
# typed (`@>`). PostgreSQL only: the function and the index come from migration 0018.
NAME_PREFIX_MAX = 32
NAME_PREFIXES = func.hub_name_prefixes(FOLDED_FULL_NAME, type_=postgresql.ARRAY(Text))
Index("ix_contacts_name_prefixes", NAME_PREFIXES, postgresql_using="gin").ddl_if(dialect="postgresql")


def text_length(column: Any) -> int:
    """How many characters a String column holds: what writers and the importer cut a longer text to
    (PostgreSQL refuses it), read here so that no second copy of the number can drift from the schema."""
    return int(column.type.length)


# A contact's text fields and what each holds: a CRM's or a file's longer value is cut to it.
CONTACT_TEXT_LENGTHS = {name: text_length(Contact.__table__.c[name])
                        for name in ("first_name", "last_name", "middle_name", "city", "company")}


# --- erasures (read by identity: an erased id acts on nobody) ----------------------------

class Erasure(Base):
    """A person whose data was erased: the id they had, why, when and on whose word; nothing else."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(Integer, unique=True)
    reason: Mapped[str] = mapped_column(String(32))  # request | retention
    actor: Mapped[str] = mapped_column(String(200))
    erased_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- the HTTP API and webhooks out -------------------------------------------------------

class ApiKey(Base):
    """A key another system uses on /api/v1; only its SHA-256 is kept (the key itself is shown once)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart in lists
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    rate: Mapped[int] = mapped_column(Integer, default=20)  # requests per second, with bursts of twice that
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class ApiRequest(Base):
    """The first answer to a POST with an Idempotency-Key, replayed for the same key and body for 24 hours.

    The row is claimed in the first request's own transaction, so a concurrent
    repeat waits for it to commit and then gets its answer instead of running twice.
    """

    __tablename__ = "api_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of method, path and body
    status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (UniqueConstraint("key_id", "idempotency_key"),)


class Event(Base):
    """Something a contact did that another system told Hub about (`cart_abandoned`, `page_viewed`, …).

    `uid` is the sender's id for the event: sending it again changes nothing.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str | None] = mapped_column(String(200), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    api_key: Mapped[str | None] = mapped_column(String(100))  # the name of the API key that sent it
    # Whose the event was before a merge moved it to the survivor (NULL: its contact's own), for an unmerge.
    origin_contact_id: Mapped[int | None] = mapped_column(Integer)

    # (contact, name, occurred_at) answers segment rules; (name, id) what workflow triggers page through.
    __table_args__ = (Index(None, "contact_id", "name", "occurred_at"), Index(None, "name", "id"))


class Webhook(Base):
    """Another system's address that hears chosen events, signed with its own secret."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted with HUB_SECRET_KEY (hub.credentials)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    failing_since: Mapped[dt.datetime | None]  # the first failure of the current run of failures
    disabled_at: Mapped[dt.datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """One event for one webhook, delivered at least once: retried with back-off for 24 hours."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(40), unique=True)  # the event id the receiver sees
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    contact_id: Mapped[int | None] = mapped_column(Integer, index=True)  # to strip personal data on erasure
    # The merges that moved it to today's contact_id, oldest first: [[merge_id, the contact it was about]].
    merged_from: Mapped[list[list[int]] | None] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]

    __table_args__ = (Index(None, "status", "next_attempt_at"), Index(None, "webhook_id", "id"),
                      Index(None, "created_at"))


class WebhookAttempt(Base):
    """Each try of a delivery: when, the receiver's status code or the error, how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
