"""`hub sample`: messy sample data to try Hub on."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from hub import formats
from hub.i18n import gettext as _
from hub.i18n import ngettext


@click.group("sample")
def sample_group() -> None:
    """Generate realistic messy sample data to try Hub on."""


@sample_group.command("contacts")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--people", type=int, default=1000, show_default=True, help="How many people to invent.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Starting point of the randomness: the same seed writes the same file.")
@click.option("--encoding", type=click.Choice(["utf-8-sig", "utf-8", "cp1251"]), default="cp1251", show_default=True,
              help="The file's encoding.")
@click.option("--delimiter", type=click.Choice([";", ","]), default=";", show_default=True,
              help="Column separator (CSV).")
@click.option("--duplicate-rate", type=float, default=0.15, show_default=True,
              help="Share of people who appear again in a later row.")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="YYYY-MM-DD the dates are counted back from; default: the current date.")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write line,person_id here: who each row really is.")
@click.option("--b2b", is_flag=True, default=False,
              help="A Bitrix24 export of a B2B base instead: companies with a shared switchboard and "
                   "info@ mailboxes, households sharing a home phone, 8-800 hotlines, people written several ways.")
def sample_contacts(out: Path, people: int, seed: int, encoding: str, delimiter: str, duplicate_rate: float,
                    today: datetime | None, truth: Path | None, b2b: bool) -> None:
    """Write a messy customer spreadsheet (CSV, or XLSX by extension) as offices export them."""
    from hub import sampledata

    n = sampledata.write_sample(out, people_count=people, seed=seed, encoding=encoding, delimiter=delimiter,
                                duplicate_rate=duplicate_rate, today=today.date() if today else None,
                                truth_path=truth, b2b=b2b)
    click.echo(_("Wrote %(rows)s for %(people)s to %(file)s",
                 rows=ngettext("%(num)s row", "%(num)s rows", n, num=formats.number(n)),
                 people=ngettext("%(num)s person", "%(num)s people", people, num=formats.number(people)), file=out))
