"""The GDPR plugin's tables: signups waiting for their double opt-in click, and erased people's tombstone keys.

They are the plugin's own (its metadata, its migrations in
plugins/gdpr/migrations, registered through ``register_migrations``). The
record of an erasure itself (``erasures``) stays in the core, because
identity reads it: an erased id acts on nobody, with or without this plugin.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import JSON, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hub.api import NAMING_CONVENTION, TYPE_ANNOTATION_MAP, Contact, utcnow
# not in hub.api on purpose: export and erasure reach every core table that holds personal data
from hub.models import Erasure  # not in hub.api: the core's record of who was erased


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP

    if TYPE_CHECKING:
        # Every model maps one plain Table, which Core statements (insert, update, delete) take;
        # SQLAlchemy types it as the wider FromClause because a model may also map a join or subquery.
        __table__: ClassVar[Table]


class ConsentRequest(Base):
    """A signup waiting for its double opt-in click, and when the click came.

    Until the click it belongs to a placeholder contact that holds nothing
    (a public form changes nobody in the base), and token_digest marks the
    one open signup of its address; confirming sets confirmed_at with one
    conditional UPDATE, so a link clicked twice grants once. A
    confirmation link sent without a signup (by hand) gets a row at its first
    click, keyed by the link's digest, for the same reason.
    """

    __tablename__ = "consent_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey(Contact.id, ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))  # the channel the confirmation goes by
    # "channel/purpose"
    topics: Mapped[list[str]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"), default=list)
    source: Mapped[str] = mapped_column(String(100))  # form | api | link
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    token_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    message_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    confirmed_at: Mapped[dt.datetime | None]


class ErasedKey(Base):
    """A keyed hash of an erased person's phone, email or source reference.

    A sync or import record carrying one is refused, so a CRM that still holds
    the person cannot bring them back.
    """

    __tablename__ = "erased_keys"

    value_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # phone | email | ref | order (a deal of theirs)
    erasure_id: Mapped[int] = mapped_column(ForeignKey(Erasure.id, ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
