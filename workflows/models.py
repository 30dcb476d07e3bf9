"""The workflows plugin's tables: which workflows exist, who is going through them, and what each step did.

They are the plugin's own: declared on a metadata of their own and created
by the plugin's migrations (workflows/migrations, registered through
``register_migrations``), so the core neither knows nor creates them. Foreign
keys to core tables name the core's columns (``Contact.id``), which works
across the two metadatas. ``WorkflowRow`` is a row of the ``workflows``
table; ``workflows.definition.Workflow`` is the parsed definition a row holds.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Boolean, ForeignKey, Index, Integer, MetaData, Numeric, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hub.api import NAMING_CONVENTION, TYPE_ANNOTATION_MAP, Contact, Message, Order, utcnow


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP

    if TYPE_CHECKING:
        # Every model maps one plain Table, which Core statements (insert, update, delete) take;
        # SQLAlchemy types it as the wider FromClause because a model may also map a join or subquery.
        __table__: ClassVar[Table]


class WorkflowRow(Base):
    """A campaign definition users enable: shipped (workflows/library) or added from a file.

    `definition` is the current document; every version a run may still follow
    is kept in workflow_versions, so editing a workflow never moves runs that
    are half-way through it. `state` holds the trigger's cursors (when a
    schedule last fired, which orders and contacts were already seen).
    """

    __tablename__ = "workflows"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str | None] = mapped_column(String(300))
    origin: Mapped[str] = mapped_column(String(16))  # library | file | admin | campaign
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled_at: Mapped[dt.datetime | None]
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WorkflowVersion(Base):
    """One version of a workflow's definition, as runs started on it follow it."""

    __tablename__ = "workflow_versions"

    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Who saved it ("admin:anna@shop.example", "cli"); None for shipped versions and those saved before it was kept.
    created_by: Mapped[str | None] = mapped_column(String(200))


class WorkflowRun(Base):
    """One contact going through one workflow once (a cycle); the database is the only record of progress.

    `step` is the next step to run and `next_at` when; RQ jobs carry only run
    ids. A worker claims a run by setting `lease_token` and `lease_until`, so a
    run is worked on by one worker at a time and a dead worker's runs are
    taken over when the lease ends. Statuses: running (due), waiting, done,
    exited, parked (failed for good: `error` says why), cancelled, holdout.
    """

    __tablename__ = "workflow_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    contact_id: Mapped[int] = mapped_column(ForeignKey(Contact.id, ondelete="CASCADE"), index=True)
    cycle: Mapped[int] = mapped_column(Integer, default=1)
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(100))
    # What started it, when an event did ("order.won:123"): an event starts one run at most.
    trigger_key: Mapped[str | None] = mapped_column(String(200))
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None]
    job_id: Mapped[str | None] = mapped_column(String(64))
    enqueued_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("workflow_id", "contact_id", "cycle"),
        UniqueConstraint("workflow_id", "trigger_key"),
        Index(None, "status", "next_at"),
        {"sqlite_autoincrement": True},
    )


class StepResult(Base):
    """What one step did for one run: written in the same transaction that moves the run on.

    Unique per (run, step), so a step that finished is never done again. A step
    that calls another system and cannot be repeated safely (a CRM task) is
    written `started` before the call; finding it `started` later means the
    worker died mid-call, and the run is parked for a person to check.
    """

    __tablename__ = "step_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # started | done | skipped | failed
    message_id: Mapped[int | None] = mapped_column(ForeignKey(Message.id, ondelete="SET NULL"), index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # How often the step was held back (quiet hours, frequency cap) before it ran.
    deferrals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (UniqueConstraint("run_id", "step"),)


class PromoCode(Base):
    """A personal promo code: issued once per (run, step), redeemed by an order that carries it."""

    __tablename__ = "promo_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    prefix: Mapped[str | None] = mapped_column(String(16))
    discount: Mapped[Decimal] = mapped_column(Numeric(5, 2))  # per cent
    contact_id: Mapped[int | None] = mapped_column(ForeignKey(Contact.id, ondelete="SET NULL"), index=True)
    workflow_id: Mapped[int | None] = mapped_column(ForeignKey("workflows.id", ondelete="SET NULL"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_runs.id", ondelete="SET NULL"))
    step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    redeemed_at: Mapped[dt.datetime | None]
    order_id: Mapped[int | None] = mapped_column(ForeignKey(Order.id, ondelete="SET NULL"))
    redeemed_by: Mapped[str | None] = mapped_column(String(100))
    # The CRM field the code is written to (None: not configured), and how that went.
    crm_field: Mapped[str | None] = mapped_column(String(100))
    written_back_at: Mapped[dt.datetime | None]
    writeback_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("run_id", "step"),)


class Interaction(Base):
    """Something a contact did that a campaign measures: an NPS score from a survey link."""

    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey(Contact.id, ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # nps
    value: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_runs.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(100))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    # One answer per survey: a later click on the same survey replaces the earlier one.
    __table_args__ = (UniqueConstraint("run_id", "kind"),)


class WorkflowState(Base):
    """Small named records of the scheduler: its lock (holder, expiry) and the promo redemption cursor."""

    __tablename__ = "workflow_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime | None]
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Campaign(Base):
    """A one-off send ("рассылка") to a segment: a workflow of its own that everyone in the segment enters once.

    The campaign's rows in `workflows` (origin "campaign", named after the
    campaign) and `workflow_runs` carry the sending, so a campaign has the
    workflows' guarantees: one run per contact, one outbox message per run
    and step, consent, caps and quiet hours asked at send time, a holdout.
    Statuses: draft → scheduled → sending → done; paused while sending;
    cancelled before it starts.
    """

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    segment: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    template: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(64))
    # A personal promo code before the send: {"discount": 15, "valid": "14d", "prefix": "BACK"}; None: no code.
    promo: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    holdout: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # per cent
    status: Mapped[str] = mapped_column(String(16), default="draft")
    scheduled_at: Mapped[dt.datetime | None]
    workflow_id: Mapped[int | None] = mapped_column(ForeignKey("workflows.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None]
    paused_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (Index(None, "status", "scheduled_at"),)
