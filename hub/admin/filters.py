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

from hub import consent, dedupe, formats, i18n, identity, spreadsheet, sync, users
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.segments import lifecycle
from hub.admin import access, audit, registry

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_E164 = re.compile(r"^\+\d{10,15}$")


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


# The states Hub's own records go through, as people call them; the technical value stays in the page (a
# badge's class and title) and in every rule, command and JSON. Each other set of values is titled by the module
# that owns it: roles (hub.users), consent (hub.consent), sync runs (hub.sync), identities (hub.identity),
# look-alikes' evidence (hub.dedupe).
STATUS_TITLES = {
    "won": N_("won"), "lost": N_("lost"), "open": N_("open"),
    "queued": N_("queued"), "sending": N_("sending"), "sent": N_("sent"), "failed": N_("error"),
    "suppressed": N_("suppressed"), "deferred": N_("deferred"), "unknown": N_("unknown"), "bounced": N_("bounced"),
    "running": N_("running"), "ok": N_("ok"), "interrupted": N_("interrupted"),
}
# Keys of the small JSON records people read (consent evidence, audit details), in the reader's words.
DETAIL_KEYS = {
    "file": N_("file"), "line": N_("line"), "phone": N_("phone"), "email": N_("email"), "address": N_("address"),
    "ip": N_("IP address"), "user_agent": N_("browser"), "form_id": N_("form"), "text_version": N_("text version"),
    "source": N_("data source"), "channel": N_("channel"), "purpose": N_("purpose"), "status": N_("status"),
    "note": N_("note"), "by": N_("entered as"), "staff_user": N_("entered by"), "via": N_("via"),
    "confirmed_by_person": N_("confirmed by the person"), "user": N_("user"), "role": N_("role"),
    "full": N_("full sync"), "merged": N_("merged"), "merged_contact": N_("merged contact"), "rule": N_("rule"),
    "reply": N_("reply"), "message_id": N_("message"), "typed": N_("typed"), "first_name": N_("first name"),
    "last_name": N_("last name"), "name": N_("name"), "language": N_("language"), "removed": N_("removed"),
    "already_erased": N_("already erased"), "reason": N_("reason"), "segment": N_("segment"),
    "template": N_("template"), "contacts": N_("contacts"),
    "version": N_("version"), "restored": N_("restored version"), "campaign": N_("campaign"), "title": N_("title"),
    "to": N_("to"), "at": N_("at"),
}
# Languages named in the reader's words ("английский"), not by their codes.
LANGUAGE_TITLES = {"ru": N_("Russian"), "en": N_("English")}
# A contact's own fields (and where the record was first seen), as the card's provenance lists them.
FIELD_TITLES = {
    "first_name": N_("first name"), "last_name": N_("last name"), "middle_name": N_("patronymic"),
    "birthday": N_("birthday"), "city": N_("city"), "gender": N_("gender"), "company": N_("company"),
    "created_from": N_("created from"), "tags": N_("tags"),
}


def language_title(code: Any) -> str:
    """A language by its name in the reader's words; an unknown code as it is."""
    return _(LANGUAGE_TITLES[code]) if code in LANGUAGE_TITLES else str(code)


def field_title(name: Any) -> str:
    """A contact field in the reader's words ("отчество"); a plugin's attribute as it is named."""
    return _(FIELD_TITLES[name]) if name in FIELD_TITLES else str(name)


def source_title(name: Any) -> str:
    """A data source by its product name (Битрикс24), from the admin page its plugin registers for it.

    Sources without a page (a file import, a plugin's own) are shown by their technical name.
    """
    for page in current_app.config.get(access.ADMIN_BLUEPRINTS, {}).values():
        if page.source is not None and page.source == name:
            return page.title_in(language())
    return str(name) if name is not None else ""


_VALUE_TITLES: dict[str, Any] = {"channel": consent.channel_title, "purpose": consent.purpose_title,
                                 "status": consent.status_title, "role": users.role_title,
                                 "kind": sync.kind_title, "language": language_title, "source": source_title}


def role_title(role: Any) -> str:
    """A role as people call it ("Маркетолог"); an unknown one as it is."""
    return users.role_title(role)


def status_title(status: Any) -> str:
    """A state as people call it ("отправлено"); one Hub does not know (a plugin's own) as it is."""
    return _(STATUS_TITLES[status]) if status in STATUS_TITLES else consent.status_title(status)


def sync_kind(kind: Any) -> str:
    """A sync run's kind as people call it ("полная синхронизация")."""
    return sync.kind_title(kind)


def evidence(reasons: Any) -> str:
    """Why two people may be one, in the reader's words: "то же ФИО, тот же город"."""
    return ", ".join(dedupe.evidence_title(r) for r in reasons or ())


def identity_kind(kind: Any) -> str:
    """A phone or an email, in the reader's words."""
    return identity.kind_title(kind)


def _detail_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, dict):
        return "(" + details(value) + ")"
    if isinstance(value, (list, tuple)):
        return ", ".join(_detail_value(key, v) for v in value)
    if key in _VALUE_TITLES:
        return str(_VALUE_TITLES[key](value))
    text = str(value)
    if key == "phone" or _E164.match(text):
        return formats.phone(text)
    return text


def details(value: Any) -> str:
    """A small JSON record as a line people read: «файл: согласия.csv, строка: 3, телефон: +7 963 404-42-44».

    Known keys in the reader's words, phones as people write them, consent
    values by their titles; an unknown key is shown as it is, empty values
    are left out. The result is text, so the page escapes it like any other.
    """
    if value is None or value == "" or value == {}:
        return ""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if not isinstance(value, dict):
        return _detail_value("", value)
    parts = []
    for key, item in value.items():
        if item is None or item == "" or item == {} or item == []:
            continue
        name = _(DETAIL_KEYS[key]) if key in DETAIL_KEYS else str(key)
        parts.append(f"{name}: {_detail_value(str(key), item)}")
    return ", ".join(parts)


def as_json(value: Any, compact: bool = False) -> str:
    """JSON as people read it: Cyrillic as letters, not \\u escapes (autoescaped like any text)."""
    return json.dumps(value, ensure_ascii=False, default=str, indent=None if compact else 2)


def install(app: Flask) -> None:
    app.jinja_env.filters.update(when=when, moment=moment, date=date, number=number, money=money,
                                 percent=percent, phone=phone, phone_link=phone_link, as_json=as_json,
                                 evidence=evidence, details=details)
    app.jinja_env.globals.update(can=access.can, current_user=access.current_user, admin_menu=admin_menu,
                                 admin_language=language, languages=languages, time_zone=zone,
                                 role_title=role_title, status_title=status_title, stage_title=lifecycle.title,
                                 stage_description=lifecycle.description, sync_kind=sync_kind,
                                 identity_kind=identity_kind, catalog_title=i18n.title,
                                 channel_title=consent.channel_title, purpose_title=consent.purpose_title,
                                 action_title=audit.action_title, actor_title=audit.actor_title,
                                 audit_details=audit.details_text,
                                 source_title=source_title, field_title=field_title, language_title=language_title,
                                 attribute_title=spreadsheet.attribute_title)


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
