"""Phones and emails as people type them, turned into values that can be matched.

"8 (916) 123-45-67", "+7 916 1234567" and "9161234567" are one number: all
become +79161234567. A cell may hold two numbers, an extension, or a note
("звонить после 18"); what cannot be parsed is kept as typed and flagged
invalid, never dropped and never used for matching.

Parsing goes through phonenumbers. Because a base of a million rows is mostly
plain Russian numbers, those take a fast path that checks the number against
phonenumbers' own metadata patterns; a test holds the two paths equal.

A cell may also say what each number is ("тел. +7 916 555-66-77, моб. 8 926
555-66-88"): the word before a number becomes its `label` (one of
hub.records.LABELS), looked for only in cells that hold letters, so the plain
path pays nothing for it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import PhoneMetadata

PHONE = "phone"
EMAIL = "email"
MAX_VALUE = 320


class Identifier(NamedTuple):
    """A phone or email: `value` is E.164 / lowercased when valid, the raw text otherwise.

    A named tuple, because an import makes one or two per row and sends them
    between processes: it is the cheapest immutable record Python has.
    """

    kind: str
    value: str
    raw: str
    valid: bool
    label: str | None = None  # the type the source gave it (hub.records.LABELS), if any


# An extension is not part of the person's identity: "доб. 123", "ext. 5", "x12", "#3".
_EXTENSION = re.compile(r"(?:доб(?:авочный)?\.?|вн(?:утр)?\.?|ext(?:ension)?\.?|\bx|#)\s*\d{1,6}", re.IGNORECASE)
# Separators between several numbers in one cell. A plain space is not one:
# people put spaces inside numbers.
_SEPARATORS = re.compile(r"[,;/\\|\n]+|\s+(?:или|and|or)\s+", re.IGNORECASE)
_PHONE_CHARS = re.compile(r"^[\d\s()+\-.]+$")
# Words people put next to a number to say what it is; None: "a phone", no type.
_LABEL_WORDS: dict[str, str | None] = {
    "моб": "mobile", "мобильный": "mobile", "мобил": "mobile", "сот": "mobile", "сотовый": "mobile",
    "mob": "mobile", "mobile": "mobile", "cell": "mobile",
    "раб": "work", "рабочий": "work", "офис": "work", "work": "work", "office": "work",
    "дом": "home", "домашний": "home", "home": "home",
    "факс": "fax", "fax": "fax",
    "тел": None, "телефон": None, "tel": None, "phone": None,
}
_LABEL_WORD = re.compile(
    r"\b(" + "|".join(sorted(_LABEL_WORDS, key=len, reverse=True)) + r")\b\.?:?", re.IGNORECASE
)
_NON_DIGITS = re.compile(r"\D+")
# A number Excel kept as a number and a CSV then wrote as one: "79161234567.0", "7,9161234567E+10".
_EXCEL_NUMBER = re.compile(r"(\d{6,15})[.,]0+|(\d)[.,](\d{5,14})e\+?(\d{1,2})", re.IGNORECASE)


def _excel_number(text: str) -> str:
    """The digits of a phone Excel wrote as a number, or the text as it was.

    A float keeps every digit of a phone ("79161234567.0"); so does the
    scientific form when all the digits are shown ("7,9161234567E+10"). A
    rounded one ("7,92E+10") has lost digits and is left alone, to be
    flagged, rather than read as somebody else's number.
    """
    match = _EXCEL_NUMBER.fullmatch(text)
    if match is None:
        return text
    if match.group(1):
        return match.group(1)
    digits, exponent = match.group(2) + match.group(3), int(match.group(4))
    if len(digits) < 10 or len(digits) - 1 > exponent:
        return text
    return digits + "0" * (exponent - len(digits) + 1)


def _ru_patterns() -> tuple[re.Pattern[str], ...]:
    meta = PhoneMetadata.metadata_for_region("RU")
    assert meta is not None, "phonenumbers ships metadata for RU"
    descs = (meta.mobile, meta.fixed_line, meta.toll_free, meta.premium_rate, meta.voip, meta.uan)
    return tuple(re.compile(d.national_number_pattern) for d in descs if d and d.national_number_pattern)


_RU_TYPES = _ru_patterns()


def _fast_ru(piece: str) -> str | None:
    """E.164 for a plainly written Russian number, or None to ask phonenumbers."""
    if not _PHONE_CHARS.match(piece):
        return None
    digits = _NON_DIGITS.sub("", piece)
    stripped = piece.lstrip()
    if len(digits) == 11 and (digits[0] == "7" or (digits[0] == "8" and not stripped.startswith("+"))):
        national = digits[1:]
    elif len(digits) == 10 and not stripped.startswith("+"):
        national = digits
    else:
        return None
    if national[0] not in "3489":  # +7 7xx and +7 6xx belong to Kazakhstan
        return None
    for pattern in _RU_TYPES:
        if pattern.fullmatch(national):
            return "+7" + national
    return None


def _parse_one(piece: str, region: str) -> str | None:
    if region == "RU":
        fast = _fast_ru(piece)
        if fast is not None:
            return fast
    found = _parse_valid(piece, region)
    if found is None and _PHONE_CHARS.match(piece) and not piece.lstrip().startswith("+"):
        digits = _NON_DIGITS.sub("", piece)
        if len(digits) >= 11 and digits[0] not in "78":
            # "375 29 123-45-67": a foreign number written without its "+".
            found = _parse_valid("+" + digits, region)
    return found


def _parse_valid(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _split_run(piece: str, region: str) -> list[str]:
    """"8 916 123 45 67 8 495 111 22 33": take words until they form a valid number, then start again.

    Returns nothing unless every word ends up in a valid number, so a long
    run of digits is never half-read.
    """
    found: list[str] = []
    words: list[str] = []
    for word in piece.split():
        words.append(word)
        value = _parse_one(" ".join(words), region)
        if value:
            found.append(value)
            words = []
    return found if found and not words else []


def _find_in_text(text: str, region: str) -> list[str]:
    """Numbers inside free text ("Иван: 8 916 123 45 67 (моб)")."""
    found = []
    for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
        found.append(phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164))
    return found


def phones(cell: str | None, region: str = "RU", label: str | None = None) -> list[Identifier]:
    """Every number in a cell; an unparsable cell comes back once, flagged invalid.

    label: the type the column gives the cell (a «Мобильный телефон» column);
    a word in the cell itself ("моб. 8 926 ...") says more and wins.
    """
    if cell is None:
        return []
    text = str(cell).strip()
    if not text:
        return []
    if text[-1] == "0" or "e" in text or "E" in text:
        text = _excel_number(text)
    out: list[Identifier] = []
    seen: set[str] = set()
    bad: list[str] = []
    for typed in _SEPARATORS.split(text):
        whole = _EXTENSION.sub(" ", typed)
        # A number with an extension is an office's switchboard, whatever the column says.
        own = "work" if label is None and len(whole) != len(typed) else label
        whole = whole.strip(" \t.:-")
        if not whole:
            continue
        pieces: tuple[tuple[str, str | None, bool], ...]
        if _PHONE_CHARS.match(whole):
            pieces = ((whole, own, True),)
        else:
            # Only a piece with letters may hold words saying what a number is.
            pieces = tuple((part, said, _PHONE_CHARS.match(part) is not None)
                           for text, said in _labelled(whole, own) if (part := text.strip(" \t.:-")))
        # The extension is not the person's number, but it is how to reach them through the switchboard:
        # what was typed keeps it («+7 495 111-22-33 доб. 101», shown on the card as typed).
        typed_with_extension = typed.strip(" \t,;") if _EXTENSION.search(typed) else None
        for piece, piece_label, plain in pieces:
            value = _parse_one(piece, region)
            if value:
                values = [value]
            elif plain and len(_NON_DIGITS.sub("", piece)) > 15:
                # Several numbers side by side, separated only by spaces.
                values = _split_run(piece, region) or _find_in_text(piece, region)
            elif not plain:
                # Free text around a number.
                values = _find_in_text(piece, region)
            else:
                values = []
            if not values:
                bad.append(piece)
            raw = typed_with_extension if typed_with_extension and len(pieces) == 1 and len(values) == 1 else piece
            for v in values:
                if v not in seen:
                    seen.add(v)
                    out.append(Identifier(PHONE, v, raw[:MAX_VALUE], True, piece_label))
    if bad and not out:
        # Nothing usable: keep the whole cell as the person typed it.
        out.append(Identifier(PHONE, text[:MAX_VALUE], text, False, label))
    elif bad:
        for piece in bad:
            if any(ch.isdigit() for ch in piece):
                out.append(Identifier(PHONE, piece[:MAX_VALUE], piece, False, label))
    return out


def _labelled(piece: str, label: str | None) -> list[tuple[str, str | None]]:
    """A piece of a cell cut at the words that say what a number is: [(text, label)].

    "моб. 8 926 555-66-88 раб. 8 495 111-22-33" gives two parts, mobile and
    work; "8 916 555-66-77 (моб.)", where no number follows the word, gives
    one, mobile. A piece of only digits and punctuation (nearly every cell)
    returns at once, untouched.
    """
    if not _LABEL_WORD.search(piece):
        return [(piece, label)]
    parts: list[tuple[str, str | None]] = []
    said_before: list[bool] = []  # whether a word in the cell gave the part its label
    word: str | None = None
    has_word = False
    start = 0
    for match in _LABEL_WORD.finditer(piece):
        text = piece[start:match.start()]
        if any(ch.isdigit() for ch in text):
            parts.append((text, word if has_word and word else label))
            said_before.append(has_word and word is not None)
        elif has_word and word and parts and not said_before[-1]:
            # A word with no number after it tells about the number before it.
            parts[-1] = (parts[-1][0], word)
            said_before[-1] = True
        word, has_word, start = _LABEL_WORDS[match.group(1).lower()], True, match.end()
    text = piece[start:]
    if any(ch.isdigit() for ch in text):
        parts.append((text, word if word else label))
    elif word and parts and not said_before[-1]:
        parts[-1] = (parts[-1][0], word)
    # "(моб.)" after a number leaves its brackets behind.
    return [(text.rstrip(" (").lstrip(") "), said) for text, said in parts] or [(piece, label)]


# The common shape of an address, checked first; anything else goes to
# email-validator, which has the last word on what is valid.
_PLAIN_EMAIL = re.compile(
    r"^[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}$"
)
# Special-use names email-validator refuses; the fast path leaves them to it.
_SPECIAL_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


def email(raw: str | None, label: str | None = None) -> Identifier | None:
    """A trimmed, lowercased, syntax-checked address (no DNS lookups).

    "mailto:ivan@mail.ru" and "<mailto:ivan@mail.ru>" (what a copied link
    gives) are the address itself. An internationalized domain is valid and
    kept in Unicode: "Ivan@ПОЧТА.РФ" and "ivan@xn--80a1acny.xn--p1ai" both
    become "ivan@почта.рф", so the two spellings are one value, readable as
    people typed it (mail servers take the Unicode form through SMTPUTF8,
    email-validator gives the ASCII one when it is needed).
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    lowered = text.lower().strip("<>").strip()
    if lowered.startswith("mailto:"):
        lowered = lowered[7:].strip().strip("<>").strip()
        if not lowered:
            return Identifier(EMAIL, text[:MAX_VALUE], text, False, label)
    if (_PLAIN_EMAIL.match(lowered) and lowered.rsplit(".", 1)[1] not in _SPECIAL_TLDS
            and len(lowered.split("@")[0]) <= 64 and "--" not in lowered.split("@")[1]):
        return Identifier(EMAIL, lowered, text, True, label)
    try:
        result = validate_email(lowered, check_deliverability=False)
    except EmailNotValidError:
        return Identifier(EMAIL, text[:MAX_VALUE], text, False, label)
    return Identifier(EMAIL, result.normalized.lower(), text, True, label)


# An address with what people write around it: "Иван Петров <ivan@mail.ru>" (copied from a mail program),
# "e-mail: ivan@mail.ru", "ivan@mail.ru (личный)".
_DISPLAY_NAME = re.compile(r"[^<>@]*<\s*((?:mailto:)?[^<>\s@]+@[^<>\s@]+)\s*>\s*", re.IGNORECASE)
_EMAIL_WORD = re.compile(r"\s*(?:e-?mail|эл\.?\s*почта|почта|mail)\s*:\s*(\S+@\S+)\s*", re.IGNORECASE)
_EMAIL_COMMENT = re.compile(r"\s*(\S+@\S+?)\s*\([^()@]*\)\s*")
# "ivan @ mail.ru": one address typed with spaces around its @.
_SPACED_AT = re.compile(r"\s*@\s*")


def _around_address(text: str) -> str:
    """The one address in a cell that also holds a name, a word or a comment about it; else the cell."""
    for pattern in (_DISPLAY_NAME, _EMAIL_WORD, _EMAIL_COMMENT):
        match = pattern.fullmatch(text)
        if match is not None:
            return match.group(1)
    return text


def emails(cell: str | None, label: str | None = None) -> list[Identifier]:
    """A cell may list several addresses separated by commas, semicolons or spaces.

    label: the type the column gives the cell (a «Рабочий e-mail» column).
    """
    if cell is None:
        return []
    text = str(cell).strip()
    if not text:
        return []
    if "@ " in text or " @" in text:
        text = _SPACED_AT.sub("@", text)
    parts = [p for p in re.split(r"[,;\s]+", text) if p]
    if len(parts) > 1 and not all("@" in p for p in parts):
        parts = [_around_address(text)]  # "ivan petrov@mail.ru" is one bad address, not two
    out = []
    for part in parts:
        ident = email(part, label)
        if ident is not None:
            out.append(ident)
    return out


def person_name(value: str | None) -> str | None:
    """A name as people write it: single spaces, and one typed all in capitals or all in lower case
    ("ИВАНОВ", "иванов") in title case ("Иванов"); a name in mixed case ("McDonald", "де Голль") stays.

    CRMs and spreadsheets hold names as whoever typed them did, and a letter
    that opens "Здравствуйте, ИВАН!" reads as shouting. None and a blank name
    give None.
    """
    if value is None:
        return None
    text = " ".join(str(value).split())
    if not text:
        return None
    if text.isupper() or text.islower():
        return text.title()
    return text
