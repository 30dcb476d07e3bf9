"""The error for a document a person wrote (a segment, a workflow) that has several problems.

Reporting every problem at once, each with its path, saves a round of
fix-one-and-retry; the message itself shows the first few so it stays one line.
"""

from __future__ import annotations

from hub.i18n import ngettext

SHOWN = 5


class ProblemList(ValueError):
    """`problems` lists every problem, each starting with its path; `origin` names the document."""

    def __init__(self, problems: list[str], origin: str | None = None) -> None:
        self.problems = list(problems)
        self.origin = origin
        shown = "; ".join(problems[:SHOWN])
        if len(problems) > SHOWN:
            more = len(problems) - SHOWN
            shown += "; " + ngettext("and %(num)s more", "and %(num)s more", more)
        super().__init__(f"{origin}: {shown}" if origin else shown)
