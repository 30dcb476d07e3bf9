"""`hub templates …` and `hub messages …`."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

# not in hub.api on purpose: `hub messages` reports a broken signed link like the routes do; `hub templates` is this
# plugin's command line over the template store; `hub messages` is this plugin's command line over the outbox
from hub import links, message_templates, messaging, template_versions
from hub.messaging import feedback_log  # what came back about a message, in the same words as the admin's log
from hub.api import sms_cost_text, sms_estimate, sms_price, sms_size_text
from hub.api import (N_, App, Contact, SettingsError, TemplateError, emit_json, enqueue, format_moment, format_money,
                     format_number, format_phone, gettext as _, ngettext, pass_app, progress_bar, reason_text, stderr,
                     translated_title, utcnow)


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Template, outbox and link mistakes end in one `Error:` line, like every other Hub command."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (TemplateError, messaging.MessagingError, links.LinkError, SettingsError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _vars(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise click.BadParameter(_("%(item)r is not NAME=VALUE", item=item), param_hint="--var")
        out[key.strip()] = value
    return out


# --- hub templates ------------------------------------------------------------------------

@click.group("templates")
def templates_group() -> None:
    """Message templates: list, add, preview, export."""


@templates_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
@user_errors
def templates_list(app: App, as_json: bool) -> None:
    """Every template: edited ones from the database, shipped ones from their folders."""
    with app.ready_engine().connect() as conn:
        found = message_templates.all_templates(conn, app.settings)
    rows = [{"name": t.name, "title": t.title, "channel": t.channel, "source": t.origin,
             "subject": t.subject, "html": t.html is not None} for t in found]
    if as_json:
        emit_json(rows)
        return
    # The name is what commands take, so it is never cut short; the title says what the template is for.
    table = Table()
    table.add_column(_("name"), no_wrap=True, min_width=max((len(t.name) for t in found), default=4))
    for header in (_("title"), _("channel"), _("parts"), _("source")):
        table.add_column(header)
    for t in found:
        parts = ", ".join(p for p, v in ((_("subject"), t.subject), (_("text"), t.text), ("HTML", t.html)) if v)
        # A shipped template's title is a message of the catalogs; a marketer's own shows as written.
        table.add_row(t.name, translated_title(t.title), t.channel, parts,
                      _("database") if t.origin == "database" else t.origin)
    Console().print(table)


@templates_group.command("add")
@click.argument("name")
@click.option("--from", "from_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A template folder (subject.txt, body.txt, body.html), e.g. one `hub templates export` wrote.")
@click.option("--subject", help="The subject line (makes it an email template).")
@click.option("--text", "text_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file with the text part (for SMS: the message).")
@click.option("--html", "html_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file with the HTML part.")
@click.option("--channel", help="email, sms, …  (default: email when there is a subject, else sms).")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="An extra variable the template uses, for the check before saving. Repeatable.")
@pass_app
@user_errors
def templates_add(app: App, name: str, from_dir: Path | None, subject: str | None, text_file: Path | None,
                  html_file: Path | None, channel: str | None, variables: tuple[str, ...]) -> None:
    """Check a template against a sample contact and save it (replacing one of the same name)."""
    if from_dir is not None:
        base = replace(message_templates.read_dir(from_dir), name=name)
    elif text_file is None:
        raise click.UsageError(_("give --from DIR or --text FILE"))
    else:
        base = message_templates.Template(name=name, channel="sms", text="")
    text = text_file.read_text(encoding="utf-8") if text_file else base.text
    html = html_file.read_text(encoding="utf-8") if html_file else base.html
    subject = subject if subject is not None else base.subject
    kind = channel or (message_templates.EMAIL if subject is not None or html is not None else base.channel)
    template = message_templates.Template(name=name, channel=kind, subject=subject, text=text, html=html)
    with app.ready_engine().begin() as conn:
        template_versions.save(conn, app.settings, template, "cli", _vars(variables))  # a version, as admin saves
    click.echo(_("Saved %(channel)s template %(name)r; it renders against the sample contact.", channel=kind,
                 name=name))


@templates_group.command("remove")
@click.argument("name")
@pass_app
def templates_remove(app: App, name: str) -> None:
    """Delete the database copy of a template (a shipped one of that name shows again)."""
    with app.ready_engine().begin() as conn:
        if not message_templates.remove(conn, name):
            raise click.ClickException(_("no template named %(name)r in the database", name=name))
    click.echo(_("Removed %(name)r from the database.", name=name))


@templates_group.command("preview")
@click.argument("name")
@click.option("--contact", "contact_id", type=int, help="Render for this contact instead of the sample one.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="Set a variable. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the rendered message as JSON.")
@pass_app
@user_errors
def templates_preview(app: App, name: str, contact_id: int | None, variables: tuple[str, ...],
                      as_json: bool) -> None:
    """Show what a template renders to: subject, text and HTML."""
    settings = app.settings
    with app.ready_engine().connect() as conn:
        template = message_templates.get(conn, settings, name)
        contact = None
        if contact_id is not None:
            contact = messaging.contact_contexts(conn, settings, [contact_id]).get(contact_id)
            if contact is None:
                raise click.ClickException(_("no contact with id %(id)s", id=contact_id))
        # The contact's data, but never their signed links: a preview is not a send to them.
        context = message_templates.preview_context(settings, contact)
        rendered = message_templates.render(template, context | _vars(variables))
    data: dict[str, Any] = {"name": template.name, "channel": template.channel, "source": template.origin,
            "subject": rendered.subject, "text": rendered.text, "html": rendered.html}
    if template.channel == "sms":
        data["sms_parts"] = messaging.text_parts(rendered.text)
        cost = sms_estimate(data["sms_parts"], sms_price(settings))
        data["sms_cost"] = None if cost is None else str(cost)
    if as_json:
        emit_json(data)
        return
    if rendered.subject is not None:
        click.echo(_("Subject: %(subject)s", subject=rendered.subject) + "\n")
    click.echo(rendered.text.rstrip("\n"))
    if template.channel == "sms":
        characters = ngettext("%(num)s character", "%(num)s characters", len(rendered.text),
                              num=format_number(len(rendered.text)))
        click.echo("\n" + _("(%(characters)s, %(parts)s SMS)", characters=characters, parts=data["sms_parts"]))
        click.echo(", ".join(t for t in (sms_size_text(rendered.text),
                                         sms_cost_text(data["sms_parts"], sms_price(settings))) if t))
    if rendered.html:
        click.echo("\n--- HTML ---")
        click.echo(rendered.html.rstrip("\n"))


@templates_group.command("export")
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@pass_app
@user_errors
def templates_export(app: App, name: str, directory: Path) -> None:
    """Write a template as a folder to edit; load it back with `hub templates add NAME --from DIR`."""
    with app.ready_engine().connect() as conn:
        template = message_templates.get(conn, app.settings, name)
    for path in message_templates.write_dir(template, directory):
        click.echo(_("Wrote %(path)s", path=path))


# --- hub messages -------------------------------------------------------------------------

@click.group("messages")
def messages_group() -> None:
    """The outbox: send a campaign, dispatch, list, review messages in doubt."""


def _promo(code: str | None, discount: float | None, expires: str | None) -> dict[str, Any] | None:
    if code is None:
        if discount is not None or expires is not None:
            raise click.UsageError(_("--promo-discount and --promo-expires need --promo-code"))
        return None
    promo: dict[str, Any] = {"code": code, "discount": int(discount) if discount and discount.is_integer()
                             else discount}
    if expires:
        try:
            promo["expires_at"] = dt.date.fromisoformat(expires)
        except ValueError:
            raise click.BadParameter(_("%(value)r is not a date like 2025-12-31", value=expires),
                                     param_hint="--promo-expires") from None
    return promo


@messages_group.command("send")
@click.argument("template_name", metavar="TEMPLATE")
@click.option("--contact", "contact_ids", type=int, multiple=True, help="A contact to send to. Repeatable.")
@click.option("--segment", help="Everyone in this segment now (see `hub segments list`).")
@click.option("--all", "everyone", is_flag=True, help="Every contact (consent is still checked for each).")
@click.option("--channel", help="email or sms (default: the template's channel).")
@click.option("--purpose", default="marketing", show_default=True,
              help="marketing (or another consent topic) or transactional.")
@click.option("--campaign", help="A name for this send; the same name never sends twice to one contact "
                                 "(default: TEMPLATE-YYYY-MM-DD).")
@click.option("--promo-code", help="promo.code in the template.")
@click.option("--promo-discount", type=float, help="promo.discount (per cent).")
@click.option("--promo-expires", metavar="YYYY-MM-DD", help="promo.expires_at.")
@click.option("--dispatch/--no-dispatch", "do_dispatch", default=True, show_default=True,
              help="Send right away, or only put the messages in the outbox.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
@user_errors
def messages_send(app: App, template_name: str, contact_ids: tuple[int, ...], segment: str | None, everyone: bool,
                  channel: str | None,
                  purpose: str, campaign: str | None, promo_code: str | None, promo_discount: float | None,
                  promo_expires: str | None, do_dispatch: bool, as_json: bool) -> None:
    """Render TEMPLATE for each contact into the outbox, then dispatch (consent is asked at send time)."""
    if sum((bool(contact_ids), bool(segment), everyone)) != 1:
        raise click.UsageError(_("give one of --contact ID (repeatable), --segment NAME or --all"))
    engine, settings = app.ready_engine(), app.settings
    context = {}
    promo = _promo(promo_code, promo_discount, promo_expires)
    if promo is not None:
        context["promo"] = promo
    with engine.connect() as conn:
        template = message_templates.get(conn, settings, template_name)
        if segment:
            ids = _segment_members(conn, app, segment)
        else:
            ids = list(contact_ids) if contact_ids else list(conn.execute(
                select(Contact.id).where(Contact.deleted_at.is_(None)).order_by(Contact.id)).scalars())
    channel = channel or (message_templates.EMAIL if template.is_email else "sms")
    campaign = campaign or f"{template_name}-{utcnow().astimezone(settings.tz).date().isoformat()}"
    with progress_bar(enabled=not as_json) as bar:
        task = bar.add_task(_("Rendering"), total=len(ids))
        created = messaging.create_many(engine, settings, ids, channel=channel, template=template,
                                        key_prefix=f"campaign:{campaign}:{channel}", purpose=purpose,
                                        context=context, meta={"campaign": campaign},
                                        progress=lambda n: bar.advance(task, n))
    result: dict[str, Any] = {"campaign": campaign, "channel": channel, **created.as_dict()}
    if do_dispatch:
        result["dispatch"] = _dispatch(engine, settings, [channel], messaging.DEFAULT_BATCH, None, as_json)
    if as_json:
        emit_json(result)
    else:
        queued = ngettext("%(num)s message queued", "%(num)s messages queued", created.created,
                          num=format_number(created.created))
        existing = ngettext("%(num)s already there from an earlier run", "%(num)s already there from an earlier run",
                            created.existing, num=format_number(created.existing))
        missing = len(created.missing_contacts)
        parts = [queued, existing] + ([ngettext("%(num)s contact not found", "%(num)s contacts not found", missing,
                                                num=format_number(missing))] if missing else [])
        click.echo(_("Campaign %(campaign)r: %(counts)s.", campaign=campaign, counts=", ".join(parts)))
        if do_dispatch:
            _print_dispatch(result["dispatch"])
    if do_dispatch and result["dispatch"]["errors"]:
        raise SystemExit(1)


def _segment_members(conn: Any, app: App, name: str) -> list[int]:
    # not in hub.api on purpose: `hub messages send --segment` picks recipients by a segment
    from hub.segments.evaluate import Segments
    # not in hub.api on purpose: `hub messages send --segment` reports a segment's errors
    from hub.segments.rules import SegmentError

    try:
        return Segments(conn, app.settings).member_ids(name)
    except SegmentError as exc:
        raise click.ClickException(str(exc)) from None


def _dispatch(engine: Any, settings: Any, channels: list[str] | None, batch_size: int, limit: int | None,
              quiet: bool) -> dict[str, Any]:
    with engine.connect() as conn:
        ready = sum(n for status, n in messaging.counts(conn).items()
                    if status in (messaging.QUEUED, messaging.DEFERRED))
    with progress_bar(enabled=not quiet) as bar:
        task = bar.add_task(_("Sending"), total=min(ready, limit) if limit else ready)
        report = messaging.dispatch(engine, settings, channels=channels, batch_size=batch_size, limit=limit,
                                    progress=lambda n: bar.advance(task, n))
    return report.as_dict()


# What happened to the messages not sent, by dispatch report key, counted in the reader's language.
_NOT_SENT: tuple[tuple[str, Callable[[int], str]], ...] = (
    ("suppressed", lambda n: ngettext("%(num)s refused at send time (no consent, or a suppressed address)",
                                      "%(num)s refused at send time (no consent, or a suppressed address)", n,
                                      num=format_number(n))),
    ("deferred", lambda n: ngettext("%(num)s deferred for a retry", "%(num)s deferred for a retry", n,
                                    num=format_number(n))),
    ("failed", lambda n: ngettext("%(num)s failed", "%(num)s failed", n, num=format_number(n))),
    ("bounced", lambda n: ngettext("%(num)s bounced (address now suppressed)",
                                   "%(num)s bounced (addresses now suppressed)", n, num=format_number(n))),
    ("unknown", lambda n: ngettext("%(num)s in doubt (see `hub messages review`)",
                                   "%(num)s in doubt (see `hub messages review`)", n, num=format_number(n))),
    ("held", lambda n: ngettext("%(num)s held for later", "%(num)s held for later", n, num=format_number(n))),
    ("released", lambda n: ngettext("%(num)s left queued (channel not available)",
                                    "%(num)s left queued (channel not available)", n, num=format_number(n))),
)


def _print_dispatch(r: dict[str, Any]) -> None:
    others = [label(r[key]) for key, label in _NOT_SENT if r[key]]
    sent = _("Sent %(num)s", num=format_number(r["sent"]))
    if others:
        sent = "; ".join([sent, ", ".join(others)])
    click.echo(_("%(sent)s in %(seconds)s s.", sent=sent, seconds=format_number(round(r["duration_s"], 1))))
    if r["recovered_unknown"]:
        click.echo(ngettext("%(num)s message left `sending` by a stopped worker is now `unknown`: see "
                            "`hub messages review`.",
                            "%(num)s messages left `sending` by a stopped worker are now `unknown`: see "
                            "`hub messages review`.", r["recovered_unknown"],
                            num=format_number(r["recovered_unknown"])))
    prefix = _("Not sent now:")
    for error in r["errors"]:
        stderr.print(f"[yellow]{prefix}[/] {error}", markup=True, highlight=False)


@messages_group.command("dispatch")
@click.option("--channel", "channels", multiple=True, help="Only this channel. Repeatable.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=messaging.DEFAULT_BATCH, show_default=True,
              help="Messages taken from the queue at a time.")
@click.option("--limit", type=click.IntRange(1), help="At most this many messages.")
@click.option("--queue", "on_queue", is_flag=True,
              help="Hand the work to `hub worker` processes (needs HUB_REDIS_URL).")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --queue: this many dispatch jobs, for that many workers.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
@user_errors
def messages_dispatch(app: App, channels: tuple[str, ...], batch_size: int, limit: int | None, on_queue: bool,
                      jobs: int, as_json: bool) -> None:
    """Send what is due in the outbox; safe to run in several processes at once."""
    engine, settings = app.ready_engine(), app.settings
    if on_queue:
        if not settings.redis_url:
            raise click.ClickException(_("--queue needs HUB_REDIS_URL; without it, run `hub messages dispatch`"))
        ids = [enqueue(settings, messaging.dispatch_job, list(channels) or None, batch_size, limit).id
               for _ in range(jobs)]
        if as_json:
            emit_json({"enqueued": ids})
        else:
            click.echo(ngettext("Enqueued %(num)s dispatch job for `hub worker`.",
                                "Enqueued %(num)s dispatch jobs for `hub worker`.", len(ids),
                                num=format_number(len(ids))))
        return
    report = _dispatch(engine, settings, list(channels) or None, batch_size, limit, as_json)
    if as_json:
        emit_json(report)
    else:
        _print_dispatch(report)
    if report["errors"]:
        raise SystemExit(1)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _day_start(day: dt.date, tz: Any, option: str) -> dt.datetime:
    """The UTC instant a local day starts at; a year no message can have is refused, not overflowed."""
    if not 1900 <= day.year <= 9999:
        raise click.BadParameter(_("%(value)s is not a date a message can have", value=day.isoformat()),
                                 param_hint=option)
    return dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.timezone.utc)


@messages_group.command("list")
@click.option("--status", type=click.Choice(messaging.STATUSES), help="Only messages in this status.")
@click.option("--channel", help="Only this channel (email, sms, …).")
@click.option("--contact", "contact_id", type=int, help="Only this contact's messages.")
@click.option("--origin", help="Only messages this workflow or campaign wrote; - for those sent by hand.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="Only messages written on this local day or later (Hub's time zone).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="Only messages written on this local day or earlier (Hub's time zone).")
@click.option("--heard", type=click.Choice(feedback_log.MARKED),
              help="Only messages with this back: a bounce, a complaint, a click, an undelivered SMS.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="At most this many messages.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
@user_errors
def messages_list(app: App, status: str | None, channel: str | None, contact_id: int | None, origin: str | None,
                  since: dt.datetime | None, until: dt.datetime | None, heard: str | None, limit: int,
                  as_json: bool) -> None:
    """The latest messages, newest first, and how many there are in each status."""
    tz = app.settings.tz
    # Local days, as the admin's message log takes them: from the start of `since` to the end of `until`.
    first = _day_start(since.date(), tz, "--since") if since else None
    end = _day_start(until.date() + dt.timedelta(days=1), tz, "--until") if until and until.year < 9999 else None
    with app.ready_engine().connect() as conn:
        rows = messaging.find(conn, status=status, channel=channel, contact_id=contact_id, origin=origin,
                              since=first, until=end, limit=limit, heard=heard)
        totals = messaging.counts(conn)
        kinds = feedback_log.kinds(conn, [r["id"] for r in rows])  # one query for all the rows listed
    if as_json:
        emit_json([{**{k: _iso(v) for k, v in r.items()}, "cost": feedback_log.cost_text(r.get("cost")),
                    "feedback": kinds.get(r["id"], [])} for r in rows])
        return
    table = Table("id", _("status"), _("channel"), _("to"), _("template"), _("contact"),
                  _("updated"), _("error"))
    for r in rows:
        marks = ", ".join(word for _kind, word in feedback_log.markers(kinds.get(r["id"], ())))
        shown_status = messaging.status_title(r["status"]) + (f" ({marks})" if marks else "")
        table.add_row(str(r["id"]), shown_status, r["channel"], _address(r["address"] or ""),
                      r["template"] or "",
                      str(r["contact_id"] or ""), format_moment(r["updated_at"], tz, zone=True),
                      reason_text(r["error"])[:60])
    Console().print(table)
    click.echo(", ".join(f"{messaging.status_title(s)} {format_number(totals[s])}" for s in messaging.STATUSES
                         if s in totals)
               or _("The outbox is empty."))


# `hub messages show`'s lines, in this order; --json keeps the columns' own names.
_MESSAGE_LABELS = {
    "id": N_("Message"), "status": N_("Status"), "channel": N_("Channel"), "purpose": N_("Purpose"),
    "template": N_("Template"), "contact_id": N_("Contact"), "address": N_("To"), "attempts": N_("Attempts"),
    "provider_id": N_("Provider's id"), "error": N_("Error"), "created_at": N_("Created"), "sent_at": N_("Sent"),
    "idempotency_key": N_("Idempotency key"), "subject": N_("Subject"),
}


def _address(address: str) -> str:
    """A phone as people read it (+7 916 123-45-67); an email as it is."""
    return format_phone(address) if address.startswith("+") else address


@messages_group.command("show")
@click.argument("message_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the message as JSON.")
@pass_app
def messages_show(app: App, message_id: int, as_json: bool) -> None:
    """One message with its rendered subject and text, and what came back about it (bounces, clicks, reports)."""
    with app.ready_engine().connect() as conn:
        row = messaging.get(conn, message_id)
        events = feedback_log.events(conn, message_id) if row is not None else []
        erased = row is not None and feedback_log.erased(conn, row["contact_id"])
    if row is None:
        raise click.ClickException(_("no message with id %(id)s", id=message_id))
    if as_json:
        emit_json({**{k: _iso(v) for k, v in row.items()}, "cost": feedback_log.cost_text(row.get("cost")),
                   "events": [feedback_log.as_json(e, erased=erased) for e in events]})
        return
    tz = app.settings.tz
    for key, label in _MESSAGE_LABELS.items():
        value = row[key]
        if value is None or value == "":
            continue
        if key == "status":
            value = messaging.status_title(value)
        elif key == "error":  # --json keeps the stored English
            value = reason_text(value)
        elif key == "address":
            value = _address(value)
        elif isinstance(value, dt.datetime):
            value = format_moment(value, tz, zone=True)
        click.echo(f"{_(label)}: {value}")
    if row.get("cost") is not None:
        click.echo(_("Cost: %(amount)s", amount=format_money(row["cost"])))
    if events:
        click.echo(_("What came back (newest first):"))
        for e in events:
            said = feedback_log.describe(e["kind"], e["url"], e["detail"], erased=erased)
            click.echo(f"  {format_moment(e['at'], tz, zone=True)}  {said}")
    click.echo("")
    click.echo(row["body_text"].rstrip("\n"))


@messages_group.command("review")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def messages_review(app: App, as_json: bool) -> None:
    """Messages that may or may not have gone out, for a person to settle."""
    engine = app.ready_engine()
    messaging.recover_stale(engine)
    with engine.connect() as conn:
        rows = messaging.find(conn, status=messaging.UNKNOWN, limit=None)
    if as_json:
        emit_json([{k: _iso(v) for k, v in r.items()} for r in rows])
        return
    if not rows:
        click.echo(_("Nothing to review: no message is in doubt."))
        return
    tz = app.settings.tz
    for r in rows:
        click.echo(_("#%(id)s %(channel)s to %(address)s (%(template)s), claimed %(when)s: %(error)s", id=r["id"],
                     channel=r["channel"], address=_address(r["address"] or ""), template=r["template"],
                     when=format_moment(r["claimed_at"], tz, zone=True), error=reason_text(r["error"])))
    click.echo(_("Check the server's log, then: hub messages resolve ID sent|failed|requeue"))


@messages_group.command("resolve")
@click.argument("message_id", type=int)
@click.argument("outcome", type=click.Choice(messaging.RESOLUTIONS))
@pass_app
@user_errors
def messages_resolve(app: App, message_id: int, outcome: str) -> None:
    """Settle a message in doubt (sent, failed), or send one again on purpose (requeue)."""
    row = messaging.resolve(app.ready_engine(), message_id, outcome)
    click.echo(_("Message %(id)s is now %(status)s.", id=message_id, status=messaging.status_title(row["status"])))
