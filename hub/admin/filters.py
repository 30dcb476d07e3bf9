"""What every admin template can use: the signed-in user, role checks, the menu, and formatting.

Values are shown as the reader writes them (hub.formats, in the request's
language): instants are stored in UTC and shown in the company's time zone
(HUB_TIMEZONE), because that is the clock the people using the admin live
by; a date without a time (a birthday, a deal's close date) is shown as a
date and never put through a time zone; money in the currency it was synced
in; phones as people read them, while tel: links and JSON keep E.164.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from flask import Flask, current_app
from markupsafe import Markup, escape

from hub import formats, i18n
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.segments import lifecycle
from hub.admin import access, registry

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _tz() -> Any:
    return current_app.config["HUB_SETTINGS"].tz


def _read(value: Any) -> Any:
    """A value as stored or as ISO text: a date stays a date, an instant becomes an aware datetime."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if _DATE_ONLY.match(text):
                return dt.date.fromisoformat(text)
            return dt.datetime.fromisoformat(text)
        except ValueError:
            return value
    return value


def date(value: Any) -> str:
    """A calendar date: 30.03.1992. A birthday is shown as it is; an instant as its day in the shop's zone.

    CRMs keep date-only fields as UTC midnight (a Bitrix24 close date arrives
    as 03:00 Moscow time); such a value is read as the date it names, so it
    never slides to the day before west of Greenwich.
    """
    value = _read(value)
    if value is None or value == "":
        return ""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        utc = aware.astimezone(dt.timezone.utc)
        value = utc.date() if utc.time() == dt.time() else aware.astimezone(_tz()).date()
    if isinstance(value, dt.date):
        return formats.date(value)
    return str(value)


def moment(value: Any, zone: bool = False) -> str:
    """An instant in the company's time zone (06.12.2026 14:05), with the zone's name if `zone`.

    A date without a time is shown as a date (`date`), never as its midnight
    moved to 03:00.
    """
    value = _read(value)
    if value is None or value == "":
        return ""
    if isinstance(value, dt.datetime):
        return formats.moment(value, _tz(), zone=zone)
    if isinstance(value, dt.date):
        return formats.date(value)
    return str(value)


def when(value: Any, fmt: str | None = None) -> str:
    """The older name of `moment`, kept for the pages that use it; `fmt` (strftime) is still honoured."""
    if fmt is None:
        return moment(value)
    value = _read(value)
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        return aware.astimezone(_tz()).strftime(fmt)
    return moment(value)


def zone() -> str:
    """The company's time zone as its readers name it (МСК), for table headers and titles."""
    return formats.zone_name(_tz())


def number(value: Any) -> str:
    """12 345 in Russian, 12,345 in English."""
    if value is None or value == "":
        return ""
    return formats.number(value)


def money(value: Any, currency: str | None = None) -> str:
    """639 660,00 ₽: an amount in the currency it was synced in (roubles when none was given)."""
    if value is None or value == "":
        return ""
    try:
        return formats.money(value, currency or "RUB")
    except (ValueError, ArithmeticError):  # a currency code Babel does not know: the amount and the code
        return f"{formats.number(value)} {currency}"


def percent(value: Any) -> str:
    """12,5 %: a share (0.125) as a percentage."""
    if value is None or value == "":
        return ""
    return formats.percent(float(value))


def phone(value: Any) -> str:
    """+7 916 123-45-67: a stored phone as people read it (what cannot be read is shown as stored)."""
    return formats.phone(str(value)) if value else ""


def phone_link(value: Any) -> Markup:
    """A phone to read and to call: the readable form, linked to tel: with the stored E.164."""
    if not value:
        return Markup("")
    return Markup('<a href="tel:{0}">{1}</a>').format(escape(str(value)), phone(value))


# Roles and the states Hub's own records go through, as people call them; the technical value stays in
# the page (a badge's class and title) and in every rule, command and JSON.
ROLE_TITLES = {"admin": N_("Administrator"), "marketer": N_("Marketer"), "viewer": N_("Viewer")}
STATUS_TITLES = {
    "won": N_("won"), "lost": N_("lost"), "open": N_("open"),
    "granted": N_("granted"), "withdrawn": N_("withdrawn"), "pending": N_("pending"),
    "queued": N_("queued"), "sending": N_("sending"), "sent": N_("sent"), "failed": N_("error"),
    "suppressed": N_("suppressed"), "deferred": N_("deferred"), "unknown": N_("unknown"), "bounced": N_("bounced"),
    "running": N_("running"), "ok": N_("ok"), "interrupted": N_("interrupted"),
}
# Why hub.dedupe suggests a pair (its JSON keeps these English words).
EVIDENCE = {"same full name": N_("same full name"), "same city": N_("same city"),
            "same birthday": N_("same birthday")}
IDENTITY_KINDS = {"phone": N_("phone"), "email": N_("email")}
SYNC_KINDS = {"full": N_("full sync"), "incremental": N_("incremental sync"), "import": N_("import")}


def role_title(role: str) -> str:
    """A role as people call it ("Маркетолог"); an unknown one as it is."""
    return _(ROLE_TITLES[role]) if role in ROLE_TITLES else str(role)


def status_title(status: Any) -> str:
    """A state as people call it ("отправлено"); one Hub does not know (a plugin's own) as it is."""
    return _(STATUS_TITLES[status]) if status in STATUS_TITLES else str(status)


def sync_kind(kind: Any) -> str:
    """A sync run's kind as people call it ("полная синхронизация")."""
    return _(SYNC_KINDS[kind]) if kind in SYNC_KINDS else str(kind)


def evidence(reasons: Any) -> str:
    """Why two people may be one, in the reader's words: "то же ФИО, тот же город"."""
    return ", ".join(_(EVIDENCE[r]) if r in EVIDENCE else str(r) for r in reasons or ())


def identity_kind(kind: Any) -> str:
    """A phone or an email, in the reader's words."""
    return _(IDENTITY_KINDS[kind]) if kind in IDENTITY_KINDS else str(kind)


def as_json(value: Any, compact: bool = False) -> str:
    """JSON as people read it: Cyrillic as letters, not \\u escapes (autoescaped like any text)."""
    return json.dumps(value, ensure_ascii=False, default=str, indent=None if compact else 2)


def install(app: Flask) -> None:
    app.jinja_env.filters.update(when=when, moment=moment, date=date, number=number, money=money,
                                 percent=percent, phone=phone, phone_link=phone_link, as_json=as_json,
                                 evidence=evidence)
    app.jinja_env.globals.update(can=access.can, current_user=access.current_user, admin_menu=admin_menu,
                                 admin_language=language, languages=languages, time_zone=zone,
                                 role_title=role_title, status_title=status_title, stage_title=lifecycle.title,
                                 stage_description=lifecycle.description, sync_kind=sync_kind,
                                 identity_kind=identity_kind, catalog_title=i18n.title)


def language() -> str:
    """The language of this request's reader (hub.admin.language chose it)."""
    return i18n.current_language()


def languages() -> dict[str, str]:
    """The languages a user can choose, each named in its own words (Русский, English)."""
    return {code: i18n.LANGUAGE_NAMES[code] for code in i18n.LANGUAGES}


def admin_menu() -> list[registry.MenuEntry]:
    """The menu: every registered page that asks for an entry, each with the role it needs to be seen."""
    def read_role(endpoint: str) -> str | None:
        policy = access.policy_of(current_app, endpoint)
        return policy.read if policy else None

    return registry.menu(current_app.config[access.ADMIN_BLUEPRINTS], language(), read_role)
