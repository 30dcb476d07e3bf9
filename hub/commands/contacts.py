"""`hub contacts list|show`: the base as a table, a JSON stream or one person's card."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

import click
from rich.console import Console
from rich.table import Table

from hub import consent, contacts
from hub.cli import App, emit_json, pass_app
from hub.segments.evaluate import Segments
from hub.segments.lifecycle import Thresholds


@click.group("contacts")
def contacts_group() -> None:
    """List and show contacts."""


@contacts_group.command("list")
@click.option("--limit", type=int, default=None, help="At most this many contacts.")
@click.option("--segment", metavar="NAME", help="Only the contacts in this segment now (see `hub segments list`).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def contacts_list(app: App, limit: int | None, segment: str | None, as_json: bool) -> None:
    """List contacts with their normalized phones and emails."""
    engine = app.ready_engine()
    with engine.connect() as conn:
        rows = (Segments(conn, app.settings).contacts(segment) if segment else
                contacts.iter_contacts(conn, thresholds=Thresholds.from_settings(app.settings.extra)))
        if as_json:
            _stream_json_array(rows, limit)
            return
        table = Table("id", "name", "phones", "emails", "orders", "lifecycle")
        for n, c in enumerate(rows):
            if limit is not None and n >= limit:
                break
            name = " ".join(p for p in (c["last_name"], c["first_name"], c["middle_name"]) if p)
            table.add_row(str(c["id"]), name, ", ".join(c["phones"] + c["invalid_phones"]), ", ".join(c["emails"]),
                          str(c["orders_count"]), c["lifecycle"])
        Console().print(table)


def _stream_json_array(rows: Iterable[dict[str, Any]], limit: int | None) -> None:
    out = sys.stdout
    out.write("[")
    for n, row in enumerate(rows):
        if limit is not None and n >= limit:
            break
        out.write(",\n" if n else "\n")
        out.write(json.dumps(row, ensure_ascii=False, default=str))
    out.write("\n]\n")


@contacts_group.command("show")
@click.argument("contact_id", type=int)
@click.option("--json", "as_json", is_flag=True)
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
        raise click.ClickException(f"no contact with id {contact_id}")
    if as_json:
        emit_json(card)
        return
    name = " ".join(p for p in (card["last_name"], card["first_name"], card["middle_name"]) if p)
    click.echo(f"#{card['id']} {name}  ({card['lifecycle']}, {card['orders_count']} orders, {card['revenue']:.2f})")
    for ident in card["identities"]:
        flag = "" if ident["valid"] else "  [invalid, kept as typed]"
        click.echo(f"  {ident['kind']:5} {ident['value']:28} from {ident['source']}  (typed: {ident['raw']}){flag}")
    for ref in card["external_refs"]:
        click.echo(f"  ref   {ref['source']}:{ref['id']}")
    for m in card["merges"]:
        click.echo(f"  merged #{m['merged_id']} at {m['at']}: {m['reason']}")
    for c in card["consent"]:
        click.echo(f"  consent {c['channel']}/{c['purpose']}: {c['status']}")
