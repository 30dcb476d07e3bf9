"""How long an SMS is: the number of parts a gateway bills, known before anything is sent."""

from __future__ import annotations

# GSM 03.38: the basic alphabet (one septet each) and the extension table (two).
_GSM_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def text_parts(text: str) -> int:
    """How many SMS parts a text takes: GSM-7 160 (153 when split), else UCS-2 70 (67).

    Cyrillic needs UCS-2; a character outside the Basic Multilingual Plane
    (an emoji) takes two UCS-2 units; GSM extension characters take two septets.
    """
    if is_gsm(text):
        units, single, multi = sum(2 if c in _GSM_EXTENDED else 1 for c in text), 160, 153
    else:
        units, single, multi = sum(2 if ord(c) > 0xFFFF else 1 for c in text), 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def is_gsm(text: str) -> bool:
    """Whether the text fits the GSM-7 alphabet (160 characters a part) rather than UCS-2 (70: Cyrillic)."""
    return all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text)
