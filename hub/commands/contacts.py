"""`hub contacts list|show`: the base as a table, a JSON stream or one person's card.

The table is for a person at a terminal, so it shows a page (PAGE_SIZE
contacts) and says how many there are and how to see the rest; --json is for
scripts, which expect every contact unless they ask for fewer.
"""

from __future__ import annotations

import itertools
import json
import shlex
import sys
from typing import Any, Iterable

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from hub import consent, contacts, formats, identity
from hub.cli import App, emit_json, pass_app
from hub.i18n import gettext as _
from hub.i18n import N_, ngettext
from hub.models import Contact
from hub.segments import lifecycle
from hub.segments.evaluate import Segments
from hub.segments.lifecycle import Thresholds

PAGE_SIZE = 50  # contacts the table shows when no --limit is given
# Why two contacts became one, as the merge log records it (the log keeps the English word).
MERGE_RULES = {"shared identifier": N_("shared identifier"), "merged by hand": N_("merged by hand"),
               "signup confirmed": N_("signup confirmed")}


@click.group("contacts")
def contacts_group() -> None:
    """List and show contacts."""


@contacts_group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most this many contacts (the table shows 50 by default; --json shows all).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many contacts first.")
@click.option("--page", type=click.IntRange(min=1), default=None,
              help="Show page N of the table (pages of --limit contacts, 50 by default).")
@click.option("--all", "show_all", is_flag=True, help="Show every contact, however many there are.")
@click.option("--segment", metavar="NAME", help="Only the contacts in this segment now (see `hub segments list`).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def contacts_list(app: App, limit: int | None, offset: int, page: int | None, show_all: bool, segment: str | None,
                  as_json: bool) -> None:
    """List contacts with their normalized phones and emails, a page at a time."""
    if show_all:
        limit = None
    elif limit is None and (page is not None or not as_json):
        limit = PAGE_SIZE
    if page is not None and limit is not None:
        offset += (page - 1) * limit
    engine = app.ready_engine()
    with engine.connect() as conn:
        if segment:
            chosen = Segments(conn, app.settings)
            total = chosen.count(segment)
            rows: Iterable[dict[str, Any]] = chosen.contacts(segment)
        else:
            total = conn.execute(select(func.count()).select_from(Contact)
                                 .where(Contact.deleted_at.is_(None))).scalar_one()
            rows = contacts.iter_contacts(conn, thresholds=Thresholds.from_settings(app.settings.extra))
        shown = itertools.islice(rows, offset, None if limit is None else offset + limit)
        if as_json:
            _stream_json_array(shown)
            return
        table = Table(_("ID"), _("Name"))
        table.add_column(_("Phones"), no_wrap=True)  # one per line: a number broken over two lines misreads
        table.add_column(_("Emails"), overflow="fold")
        table.add_column(_("Orders"), justify="right")
        table.add_column(_("Stage"))
        count = 0
        for c in shown:
            count += 1
            phones = [formats.phone(p) for p in c["phones"]] + c["invalid_phones"]
            table.add_row(str(c["id"]), _full_name(c), "\n".join(phones), "\n".join(c["emails"] + c["invalid_emails"]),
                          formats.number(c["orders_count"]), lifecycle.title(c["lifecycle"]))
    if count:
        Console().print(table)
    click.echo(_page_line(total, offset, count, limit, segment))


def _full_name(c: dict[str, Any]) -> str:
    return " ".join(p for p in (c["last_name"], c["first_name"], c["middle_name"]) if p)


def _page_line(total: int, offset: int, count: int, limit: int | None, segment: str | None) -> str:
    """How many contacts there are, which of them the table showed, and the command for the next page."""
    if total == 0:
        return _("No contacts in this segment.") if segment else _("No contacts yet: `hub import contacts FILE` "
                                                                  "or `hub sync SOURCE` brings them in.")
    if count == 0:
        return ngettext("Nothing from position %(offset)s: there is %(num)s contact.",
                        "Nothing from position %(offset)s: there are %(num)s contacts.", total,
                        num=formats.number(total), offset=formats.number(offset + 1))
    if offset == 0 and count >= total:
        return ngettext("%(num)s contact in all.", "%(num)s contacts in all.", total, num=formats.number(total))
    line = ngettext("Shown %(first)s–%(last)s of %(num)s contact.", "Shown %(first)s–%(last)s of %(num)s contacts.",
                    total, num=formats.number(total), first=formats.number(offset + 1),
                    last=formats.number(offset + count))
    if offset + count >= total or limit is None:
        return line
    base = ["hub", "contacts", "list"] + (["--segment", segment] if segment else [])
    following = shlex.join([*base, "--offset", str(offset + count)] + ([] if limit == PAGE_SIZE
                                                                       else ["--limit", str(limit)]))
    if offset % limit == 0:
        following = shlex.join([*base, "--page", str(offset // limit + 2)] + ([] if limit == PAGE_SIZE
                                                                             else ["--limit", str(limit)]))
    return line + " " + _("Next page: %(command)s; every contact: %(all)s.", command=following,
                          all=shlex.join([*base, "--all"]))


def _stream_json_array(rows: Iterable[dict[str, Any]]) -> None:
    out = sys.stdout
    out.write("[")
    for n, row in enumerate(rows):
        out.write(",\n" if n else "\n")
        out.write(json.dumps(row, ensure_ascii=False, default=str))
    out.write("\n]\n")


@contacts_group.command("show")
@click.argument("contact_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
@pass_app
def contacts_show(app: App, contact_id: int, as_json: bool) -> None:
    """One contact's card: identities and where each came from, orders, merges."""
    with app.ready_engine().connect() as conn:
        why = contacts.missing(conn, contact_id)
        if why is not None:
            raise click.ClickException(why)
        card = contacts.card(conn, contact_id, thresholds=Thresholds.from_settings(app.settings.extra))
        if card is not None:
            card["consent"] = [{"channel": ch, "purpose": p, "status": s}
                               for (ch, p), s in sorted(consent.current(conn, contact_id).items())]
    if card is None:
        raise click.ClickException(_("no contact with id %(id)s", id=contact_id))
    if as_json:
        emit_json(card)
        return
    tz = app.settings.tz
    orders = ngettext("%(num)s order", "%(num)s orders", card["orders_count"], num=formats.number(card["orders_count"]))
    click.echo(f"#{card['id']} {_full_name(card)}  ({lifecycle.title(card['lifecycle'])}, {orders}, "
               f"{formats.money(card['revenue'])})")
    if card["birthday"]:
        click.echo("  " + _("birthday: %(date)s", date=formats.date(card["birthday"])))
    if card["city"]:
        click.echo("  " + _("city: %(city)s", city=card["city"]))
    for ident in card["identities"]:
        value = formats.phone(ident["value"]) if ident["kind"] == "phone" and ident["valid"] else ident["value"]
        flag = "" if ident["valid"] else "  " + _("[invalid, kept as typed]")
        kind = identity.kind_title(ident["kind"])
        click.echo(f"  {kind:8} {value:28} "
                   + _("from %(source)s  (typed: %(raw)s)", source=ident["source"], raw=ident["raw"]) + flag)
    for ref in card["external_refs"]:
        label = _("ref")
        click.echo(f"  {label:8} {ref['source']}:{ref['id']}")
    for m in card["merges"]:
        click.echo("  " + _("merged #%(id)s at %(at)s: %(reason)s", id=m["merged_id"],
                            at=formats.moment(m["at"], tz, zone=True), reason=_merge_reason(m["reason"])))
    for c in card["consent"]:
        click.echo("  " + _("consent %(channel)s/%(purpose)s: %(status)s", channel=consent.channel_title(c["channel"]),
                            purpose=consent.purpose_title(c["purpose"]), status=consent.status_title(c["status"])))


def _merge_reason(reason: Any) -> str:
    if not isinstance(reason, dict):
        return str(reason)
    rule = str(reason.get("rule", ""))
    shown = _(MERGE_RULES[rule]) if rule in MERGE_RULES else rule
    return f"{shown} ({', '.join(reason['keys'])})" if reason.get("keys") else shown
