"""What an SMS will cost before it is sent: its parts, and the price per part the shop pays (HUB_SMS_PRICE).

Providers bill by the part: 70 Cyrillic characters fit one SMS, and a longer
text goes in parts of 67; Latin text fits 160, in parts of 153. The template
preview and the forecasts say how many parts and, when HUB_SMS_PRICE is set
(rubles per part, "3.50"), about how much: a marketer sees that one more
sentence doubles the bill before the campaign goes out. Without the price
only the parts are shown.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from hub.config import Settings, SettingsError
from hub.formats import money, number
from hub.i18n import gettext as _
from hub.i18n import ngettext
from hub.messaging.sms_parts import is_gsm, text_parts

MAX_PRICE = Decimal("1000")


def price(settings: Settings) -> Decimal | None:
    """Rubles per SMS part (HUB_SMS_PRICE), or None when not set."""
    raw = settings.extra.get("sms_price")
    if raw in (None, ""):
        return None
    try:
        value = Decimal(str(raw).strip().replace(",", "."))
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or not 0 <= value <= MAX_PRICE:
        raise SettingsError(_("HUB_SMS_PRICE: %(value)r is not a price in rubles per SMS part, like 3.50",
                              value=raw))
    return value


def estimate(parts: int, per_part: Decimal | None) -> Decimal | None:
    """What `parts` parts cost at the price, to the kopeck; None without a price."""
    if per_part is None:
        return None
    return (per_part * parts).quantize(Decimal("0.01"))


def size_text(text: str) -> str:
    """«1 SMS (до 70 символов кириллицей)», «3 части по 67 символов кириллицей»: how a text is billed."""
    parts = text_parts(text)
    if is_gsm(text):
        if parts == 1:
            return _("1 SMS (up to 160 Latin characters)")
        return ngettext("%(num)s part of 153 Latin characters", "%(num)s parts of 153 Latin characters each",
                        parts, num=number(parts))
    if parts == 1:
        return _("1 SMS (up to 70 Cyrillic characters)")
    return ngettext("%(num)s part of 67 Cyrillic characters", "%(num)s parts of 67 Cyrillic characters each",
                    parts, num=number(parts))


def cost_text(parts: int, per_part: Decimal | None) -> str:
    """«≈ 7,00 ₽ за сообщение», or "" without a price."""
    cost = estimate(parts, per_part)
    return "" if cost is None else _("≈ %(money)s per message", money=money(cost))


def total_text(messages: int, parts: int, cost: Decimal | None) -> str:
    """«120 SMS (180 частей), ≈ 630,00 ₽»: a forecast's SMS, counted as they are billed (cost: see `estimate`)."""
    if parts == messages:  # one part each: «3 SMS», as the forecast has always said
        text = _("%(num)s SMS", num=number(messages))
    else:
        text = _("%(num)s SMS (%(parts)s)", num=number(messages),
                 parts=ngettext("%(num)s part", "%(num)s parts", parts, num=number(parts)))
    return text if cost is None else f"{text}, ≈ {money(cost)}"
