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
from hub.cli import ROW_ID, App, emit_json, pass_app
from hub.i18n import gettext as _
from hub.i18n import N_, ngettext
from hub.models import Contact
from hub.segments import lifecycle
from hub.segments.evaluate import Segments
from hub.segments.lifecycle import Thresholds

PAGE_SIZE = 50  # contacts the table shows when no --limit is given
CLI_ACTIVITIES = 10  # the latest calls and meetings `show` prints (--json has the card's 20)
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
            shared = {(i["kind"], i["value"]) for i in c["identities"] if i["shared"]}
            phones = [_marked(formats.phone(p), ("phone", p) in shared) for p in c["phones"]] + c["invalid_phones"]
            emails = [_marked(e, ("email", e) in shared) for e in c["emails"]] + c["invalid_emails"]
            table.add_row(str(c["id"]), _full_name(c), "\n".join(phones), "\n".join(emails),
                          formats.number(c["orders_count"]), lifecycle.title(c["lifecycle"]))
    if count:
        Console().print(table)
    click.echo(_page_line(total, offset, count, limit, segment))


def _marked(value: str, shared: bool) -> str:
    """A shared value (a switchboard, info@) says so, so nobody takes it for the person's own."""
    return f"{value} ({_('shared')})" if shared else value


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
@click.argument("contact_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
@pass_app
def contacts_show(app: App, contact_id: int, as_json: bool) -> None:
    """One contact's card: identities and where each came from, orders, merges, companies, calls, NPS."""
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
    fields = card.pop("custom_fields", [])
    card["custom_fields"] = [{k: f[k] for k in ("source", "code", "name", "value")} for f in fields]
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
    if card.get("company"):
        click.echo("  " + _("company: %(company)s", company=card["company"]))
    for f in fields:
        click.echo(f"  {_clip(f['name'], 100)}: {_clip(f['text'], contacts.FIELD_TEXT)}")
    for ident in card["identities"]:
        value = formats.phone(ident["value"]) if ident["kind"] == "phone" and ident["valid"] else ident["value"]
        note = contacts.value_note(ident.get("label"), ident.get("shared"))
        value = f"{value} — {note};" if note else value  # "+7 495 111-22-33 — рабочий, общий: …; из bitrix24"
        flag = "" if ident["valid"] else "  " + _("[invalid, kept as typed]")
        kind = identity.kind_title(ident["kind"])
        click.echo(f"  {kind:8} {value:28} "
                   + _("from %(source)s  (typed: %(raw)s)", source=ident["source"], raw=ident["raw"]) + flag)
    for ref in card["external_refs"]:
        label = _("ref")
        click.echo(f"  {label:8} {ref['source']}:{ref['id']}")
    for m in card["merges"]:
        line = _("merged #%(id)s at %(at)s: %(reason)s", id=m["merged_id"],
                 at=formats.moment(m["at"], tz, zone=True), reason=_merge_reason(m["reason"]))
        if m.get("undone_at"):
            line += "; " + _("undone at %(at)s by %(who)s", at=formats.moment(m["undone_at"], tz, zone=True),
                             who=m["undone_by"] or "—")
        else:
            line += "; " + _("to undo: %(command)s", command=f"hub contacts unmerge {m['id']}")
        click.echo(f"  №{m['id']} " + line)
    for c in card["consent"]:
        click.echo("  " + _("consent %(channel)s/%(purpose)s: %(status)s", channel=consent.channel_title(c["channel"]),
                            purpose=consent.purpose_title(c["purpose"]), status=consent.status_title(c["status"])))
    _echo_crm(card, tz)


def _clip(text: Any, length: int = 120) -> str:
    """A CRM's text on one terminal line: control characters out, a long one cut (a subject can be a letter)."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in str(text or "")).split())
    return flat if len(flat) <= length else flat[:length - 1] + "…"


def _echo_crm(card: dict[str, Any], tz: Any) -> None:
    """Companies, deals in progress, calls and meetings, the NPS answer: what the CRMs and surveys add."""
    for co in card.get("companies") or []:
        details = [_("INN %(inn)s", inn=co["inn"]) if co.get("inn") else "", _clip(co.get("city"), 60),
                   ngettext("%(num)s won deal", "%(num)s won deals", co["orders_count"],
                            num=formats.number(co["orders_count"]))]
        click.echo("  " + _("works at %(name)s (%(details)s), from %(source)s", name=_clip(co.get("name")) or "—",
                            details=", ".join(d for d in details if d), source=co["source"]))
    for d in card.get("open_deals") or []:
        where = " / ".join(_clip(x, 60) for x in (d.get("pipeline"), d.get("stage")) if x) or "—"
        line = _("deal %(title)s: %(where)s", title=_clip(d.get("title") or d["id"], 80), where=where)
        if d.get("days_in_stage") is not None:
            line += ", " + ngettext("in the stage for %(num)s day", "in the stage for %(num)s days",
                                    d["days_in_stage"], num=formats.number(d["days_in_stage"]))
        click.echo("  " + line)
    act = card.get("activities") or {}
    if act.get("recent") or act.get("last_call_at"):
        last = formats.moment(act["last_call_at"], tz) if act.get("last_call_at") else "—"
        click.echo("  " + _("calls in 30 days: %(calls)s, missed incoming: %(missed)s; last call: %(last)s",
                            calls=formats.number(act.get("calls_30d", 0)),
                            missed=formats.number(act.get("missed_incoming_30d", 0)), last=last))
        for a in (act.get("recent") or [])[:CLI_ACTIVITIES]:
            words = [contacts.activity_title(a["kind"]), contacts.direction_title(a.get("direction"))]
            if a.get("missed"):
                words.append(_("missed"))
            parts = [" ".join(w for w in words if w), formats.moment(a["at"], tz),
                     contacts.call_length(a.get("duration_s") or None)]
            line = ", ".join(p for p in parts if p)
            subject = _clip(a.get("subject"))
            click.echo("    " + (f"{line} — {subject}" if subject else line))
    nps = card.get("nps")
    if nps:
        line = _("NPS answer: %(score)s of 10", score=nps["score"])
        if nps.get("at"):
            line += f" ({formats.moment(nps['at'], tz)})"
        if nps.get("comment"):
            line += f": «{_clip(nps['comment'], 200)}»"
        click.echo("  " + line)


def _merge_reason(reason: Any) -> str:
    if not isinstance(reason, dict):
        return str(reason)
    rule = str(reason.get("rule", ""))
    shown = _(MERGE_RULES[rule]) if rule in MERGE_RULES else rule
    keys = ", ".join(contacts.key_title(k) for k in reason.get("keys") or [])
    return f"{shown} ({keys})" if keys else shown


@contacts_group.command("unmerge")
@click.argument("merge_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="Print what came back as JSON.")
@pass_app
def contacts_unmerge(app: App, merge_id: int, as_json: bool) -> None:
    """Undo a wrong merge: the merged contact comes back with its own values, orders and consent.

    MERGE_ID is the merge's number, as `hub contacts show ID` lists it. A value
    both contacts held stays on both, marked shared, and the two are not joined
    again by it.
    """
    from hub import unmerge

    try:
        result = unmerge.unmerge(app.ready_engine(), app.settings, merge_id, actor="cli")
    except unmerge.UnmergeRefused as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json(result)
        return
    with app.ready_engine().connect() as conn:
        held: dict[str, int] = dict(conn.execute(select(identity.identities_t.c.kind, func.count())
                                 .where(identity.identities_t.c.contact_id == result["restored"])
                                 .group_by(identity.identities_t.c.kind)).all())
    parts = [ngettext("%(num)s phone", "%(num)s phones", held.get("phone", 0),
                      num=formats.number(held.get("phone", 0))),
             ngettext("%(num)s email", "%(num)s emails", held.get("email", 0),
                      num=formats.number(held.get("email", 0))),
             ngettext("%(num)s order or deal (won or not)", "%(num)s orders and deals (won or not)", result["orders"],
                      num=formats.number(result["orders"]))]
    if not result["shared"]:
        click.echo(_("Merge №%(id)s undone: contact #%(contact)s is back (%(held)s).", id=merge_id,
                     contact=result["restored"], held=", ".join(parts)))
        return
    values = ", ".join(formats.phone(v) if k == "phone" else v for k, v in result["shared"])
    click.echo(_("Merge №%(id)s undone: contact #%(contact)s is back (%(held)s); shared by both now: %(values)s.",
                 id=merge_id, contact=result["restored"], held=", ".join(parts), values=values))
