"""hub-shop: a web shop for Hub, written against Hub's public plugin API only.

What it adds (each in its own module beside this one):

- the source `shop` (source.py): customers and orders over the shop's JSON API
  (client.py), full, incremental, by id, and every id for reconciling;
- `hub connect shop` and `hub sandbox shop` (commands.py);
- the emulator `shop` for `hub demo` and tests (emulator.py);
- the segment field `shop.promo_orders` (fields.py);
- the workflow step `shop_coupon` (coupons.py), which records every coupon it
  made in the plugin's own table `shop_coupons` (models.py), created by the
  plugin's own migrations (migrations/versions, run by `hub init`), so a
  retried step never makes a second coupon;
- the channel `shop_telegram`, through the shop's bot to the chats the shop
  knows (telegram.py; Hub's own `telegram` channel links chats by deep link
  instead), and the text template `promo_telegram` for it (message_templates/);
- the Shop page in the admin: the connection, the last orders and the last
  coupons issued (admin.py, admin_templates/);
- its words in Russian: a gettext catalog (translations/) registered through
  register_translations, like Hub's own.

Imports here are deferred to the hooks, so loading the plugin costs nothing
until Hub asks for one of its parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from hub.api import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_translations(register: Callable[[Path], None]) -> None:
    """Its admin page, commands and messages in Russian (translations/ru/LC_MESSAGES/hub_shop.po)."""
    register(Path(__file__).parent / "translations")


@hookimpl
def register_sources(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from hub_shop.source import ShopSource

    register("shop", ShopSource)


@hookimpl
def register_sandboxes(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from hub_shop.emulator import start_connected

    register("shop", start_connected)


@hookimpl
def register_commands(cli: Any) -> None:
    from hub_shop import commands

    for group, command in (("connect", commands.connect), ("sandbox", commands.sandbox)):
        if group in cli.commands:
            cli.commands[group].add_command(command, "shop")


@hookimpl
def register_segment_fields(register: Callable[[str, Any], None]) -> None:
    from hub_shop.fields import FIELDS

    for name, field in FIELDS.items():
        register(name, field)


@hookimpl
def register_migrations(register: Callable[[str, Any], None]) -> None:
    """The table of issued coupons (models.py) comes from the plugin's own migrations."""
    register("shop", Path(__file__).parent / "migrations" / "versions")


@hookimpl
def contact_merged(conn: Any, survivor_id: int, merged_id: int) -> None:
    """A merged contact's coupons belong to the survivor (otherwise the contact's deletion would drop them)."""
    from hub_shop.coupons import follow_merge

    follow_merge(conn, survivor_id, merged_id)


@hookimpl
def contact_unmerged(conn: Any, survivor_id: int, restored_id: int) -> None:
    """Coupons bound to the restored contact's own shop account go back to it; the others stay."""
    from sqlalchemy import select, update

    from hub.api import ExternalRef
    from hub_shop.client import NAME
    from hub_shop.coupons import COUPONS

    refs = ExternalRef.__table__.c
    accounts = [int(i) for i in conn.execute(select(refs.external_id).where(
        refs.contact_id == restored_id, refs.source == NAME)).scalars() if str(i).isdigit()]
    if accounts:
        conn.execute(update(COUPONS).where(COUPONS.c.contact_id == survivor_id, COUPONS.c.customer_id.in_(accounts))
                     .values(contact_id=restored_id))


@hookimpl
def contact_erased(conn: Any, contact_id: int) -> None:
    """An erased person's coupons are forgotten here; the shop keeps its own records under its own rules."""
    from hub_shop.coupons import forget

    forget(conn, contact_id)


@hookimpl
def register_workflow_steps(register: Callable[[str, Any], None]) -> None:
    from hub_shop.coupons import ShopCoupon

    register(ShopCoupon.name, ShopCoupon)


@hookimpl
def register_channels(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from hub_shop.telegram import TelegramChannel

    register(TelegramChannel.name, TelegramChannel)


@hookimpl
def register_template_dirs(register: Callable[[Any], None]) -> None:
    register(Path(__file__).parent / "message_templates")


@hookimpl
def register_admin_pages(register: Callable[[Any], None]) -> None:
    from hub_shop.admin import PAGE

    register(PAGE)


@hookimpl
def can_contact(conn: Any, settings: Any, contact_id: int, channel: str) -> str | None:
    """Telegram reaches a person only in a chat they opened with the shop's bot."""
    if channel != "shop_telegram":
        return None
    from hub_shop.telegram import chat_id_of

    if chat_id_of(conn, settings, contact_id) is None:
        return "no Telegram chat with the shop's bot"  # kept with the message, like Hub's own reasons
    return None
