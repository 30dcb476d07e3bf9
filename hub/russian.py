"""Numbers in Russian text: digit groups and the plural form a count takes.

Messages say "1 символ", "3 символа", "5 символов"; a fixed "символов" reads
wrong for two counts in three. Babel knows these rules too, but is not a
dependency, and three forms of one language need no more than this.
"""

from __future__ import annotations


def number(count: int) -> str:
    """A count as Russian text writes it: 131 072 (non-breaking spaces between groups)."""
    return f"{count:,}".replace(",", "\u00a0")


def plural(count: int, one: str, few: str, many: str) -> str:
    """The form of a noun after `count`: plural(21, "символ", "символа", "символов") → "символ"."""
    tail, tail2 = abs(count) % 10, abs(count) % 100
    if tail == 1 and tail2 != 11:
        return one
    if 2 <= tail <= 4 and not 12 <= tail2 <= 14:
        return few
    return many


def count(value: int, one: str, few: str, many: str) -> str:
    """`value` and its noun: count(400_000_001, "символ", "символа", "символов") → "400 000 001 символ"."""
    return f"{number(value)} {plural(value, one, few, many)}"
