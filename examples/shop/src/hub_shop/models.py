"""The shop plugin's own table: every coupon the `shop_coupon` step made in the shop.

Declared on a metadata of the plugin's own with Hub's naming convention and
column types (from hub.api), so the schema its migrations create
(migrations/versions, registered through ``register_migrations``) is the one
this model describes. The contact's foreign key names the core's column
(``Contact.id``), which works across the two metadatas.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hub.api import NAMING_CONVENTION, TYPE_ANNOTATION_MAP, Contact, utcnow


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP

    if TYPE_CHECKING:
        # A model maps one plain Table, which Core statements take; SQLAlchemy types it as the wider FromClause.
        __table__: ClassVar[Table]


class IssuedCoupon(Base):
    """A coupon the shop made for a workflow run: found again by the run's step key, so it is made once.

    The shop keeps idempotency keys for a while only; this row is Hub's own
    memory of the coupon, so a run retried days later (a parked run resumed, a
    worker that died after the shop answered) takes the coupon from here
    instead of asking the shop for a code it already has.
    """

    __tablename__ = "shop_coupons"

    id: Mapped[int] = mapped_column(primary_key=True)
    step_key: Mapped[str] = mapped_column(String(200), unique=True)  # StepCall.key: one run at one step
    code: Mapped[str] = mapped_column(String(64), unique=True)  # the promo code, as the shop's checkout takes it
    contact_id: Mapped[int] = mapped_column(ForeignKey(Contact.id, ondelete="CASCADE"), index=True)
    coupon_id: Mapped[int | None] = mapped_column(Integer)  # the shop's id of the coupon
    customer_id: Mapped[int | None] = mapped_column(Integer)  # the shop customer it is bound to; None: anyone
    workflow: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
