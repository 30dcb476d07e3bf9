"""What every admin template can use: the signed-in user, role checks, the menu, and formatting.

Times are stored in UTC and shown in the company's time zone (HUB_TIMEZONE),
because that is the clock the people using the admin live by.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from flask import Flask, current_app

from hub import i18n
from hub.admin import access, registry


def when(value: Any, fmt: str = "%d.%m.%Y %H:%M") -> str:
    """A stored time in the company's time zone; text (ISO) is read first."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(current_app.config["HUB_SETTINGS"].tz).strftime(fmt)
    if isinstance(value, dt.date):
        return value.strftime("%d.%m.%Y")
    return str(value)


def number(value: Any) -> str:
    """12 345 — grouped the Russian way, with a narrow no-break space."""
    if value is None:
        return ""
    if isinstance(value, (float, Decimal)) and value != int(value):
        return f"{value:,.2f}".replace(",", "\u202f").replace(".", ",")
    return f"{int(value):,}".replace(",", "\u202f")


def as_json(value: Any, compact: bool = False) -> str:
    """JSON as people read it: Cyrillic as letters, not \\u escapes (autoescaped like any text)."""
    return json.dumps(value, ensure_ascii=False, default=str, indent=None if compact else 2)


def install(app: Flask) -> None:
    app.jinja_env.filters.update(when=when, number=number, as_json=as_json)
    app.jinja_env.globals.update(can=access.can, current_user=access.current_user, admin_menu=admin_menu,
                                 admin_language=language)


def language() -> str:
    """The language of this request's reader (hub.admin.language chose it)."""
    return i18n.current_language()


def admin_menu() -> list[registry.MenuEntry]:
    """The menu: every registered page that asks for an entry, each with the role it needs to be seen."""
    def read_role(endpoint: str) -> str | None:
        policy = access.policy_of(current_app, endpoint)
        return policy.read if policy else None

    return registry.menu(current_app.config[access.ADMIN_BLUEPRINTS], language(), read_role)
