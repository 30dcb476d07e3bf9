"""How many SMS parts a workflow's or campaign's messages would take, and about what they would cost.

The forecasts count messages; a provider bills parts. A template's parts are
measured on its text rendered for the sample contact (names and promo codes
of real people differ by a few characters, so this is an estimate, as the
forecast itself is), times the messages, priced at HUB_SMS_PRICE.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

# not in hub.api on purpose: the estimate renders the step's template like the send does
from hub import message_templates
from hub.api import Settings, SettingsError, TemplateError, sms_estimate, sms_price, sms_total_text, text_parts
from workflows import nps

SMS = "sms"


def template_parts(conn: Connection, settings: Settings, name: str) -> int:
    """The parts the template takes rendered for the sample contact (its raw text when that cannot render)."""
    try:
        template = message_templates.get(conn, settings, name)
    except (TemplateError, LookupError, ValueError):
        return 1
    context = message_templates.sample_context(settings, {"nps": nps.sample_links(settings)})
    try:
        return text_parts(message_templates.render(template, context).text)
    except TemplateError:
        return text_parts(template.text)


def summary(settings: Settings, messages: int, parts: int) -> dict[str, Any]:
    """{"messages", "parts", "cost"} with the cost in rubles as a string (None without HUB_SMS_PRICE)."""
    out: dict[str, Any] = {"messages": messages, "parts": parts, "cost": None}
    try:
        cost = sms_estimate(parts, sms_price(settings))
    except SettingsError as exc:  # a mistyped price must not hide the forecast: it is said beside it
        out["price_error"] = str(exc)
        return out
    out["cost"] = None if cost is None else str(cost)
    return out


def text(found: dict[str, Any] | None) -> str:
    """«120 SMS (180 частей), ≈ 630,00 ₽», or "" when no SMS would go."""
    if not found or not found.get("messages"):
        return ""
    cost = Decimal(found["cost"]) if found.get("cost") else None
    said = sms_total_text(int(found["messages"]), int(found["parts"]), cost)
    return f"{said} ({found['price_error']})" if found.get("price_error") else said
