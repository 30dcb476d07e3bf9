"""The plugin's tables: which chat belongs to which contact, and where reading updates stopped.

A chat is not an address Hub keeps among a contact's phones and emails: it
is known only because the person opened the bot with a signed link, so it
lives here, one chat per contact and one contact per chat (the latest link
wins). Created by the plugin's own migrations (register_migrations).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import BigInteger, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hub.api import NAMING_CONVENTION, TYPE_ANNOTATION_MAP, Contact, utcnow


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP

    if TYPE_CHECKING:
        __table__: ClassVar[Table]


class TelegramChat(Base):
    """A chat linked to a contact by a deep link; `merge_id` names the merge that moved it here, if one did."""

    __tablename__ = "telegram_chats"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey(Contact.id, ondelete="CASCADE"), unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    username: Mapped[str | None] = mapped_column(String(64))
    linked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    update_id: Mapped[int | None] = mapped_column(BigInteger)
    merge_id: Mapped[int | None] = mapped_column(Integer)
    previous_contact_id: Mapped[int | None] = mapped_column(Integer)


class TelegramState(Base):
    """Small values the plugin keeps between runs: the getUpdates offset."""

    __tablename__ = "telegram_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
