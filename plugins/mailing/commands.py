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
from hub import links, message_templates, messaging
from hub.api import (App, Contact, SettingsError, TemplateError, emit_json, enqueue, pass_app, progress_bar, stderr,
                     utcnow)


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
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--var")
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
    rows = [{"name": t.name, "channel": t.channel, "source": t.origin, "subject": t.subject,
             "html": t.html is not None} for t in found]
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "channel", "parts", "source")
    for t in found:
        parts = ", ".join(p for p, v in (("subject", t.subject), ("text", t.text), ("html", t.html)) if v)
        table.add_row(t.name, t.channel, parts, t.origin)
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
        raise click.UsageError("give --from DIR or --text FILE")
    else:
        base = message_templates.Template(name=name, channel="sms", text="")
    text = text_file.read_text(encoding="utf-8") if text_file else base.text
    html = html_file.read_text(encoding="utf-8") if html_file else base.html
    subject = subject if subject is not None else base.subject
    kind = channel or (message_templates.EMAIL if subject is not None or html is not None else base.channel)
    template = message_templates.Template(name=name, channel=kind, subject=subject, text=text, html=html)
    with app.ready_engine().begin() as conn:
        message_templates.save(conn, app.settings, template, _vars(variables))
    click.echo(f"Saved {kind} template {name!r}; it renders against the sample contact.")


@templates_group.command("remove")
@click.argument("name")
@pass_app
def templates_remove(app: App, name: str) -> None:
    """Delete the database copy of a template (a shipped one of that name shows again)."""
    with app.ready_engine().begin() as conn:
        if not message_templates.remove(conn, name):
            raise click.ClickException(f"no template named {name!r} in the database")
    click.echo(f"Removed {name!r} from the database.")


@templates_group.command("preview")
@click.argument("name")
@click.option("--contact", "contact_id", type=int, help="Render for this contact instead of the sample one.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="Set a variable. Repeatable.")
@click.option("--json", "as_json", is_flag=True)
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
                raise click.ClickException(f"no contact with id {contact_id}")
        # The contact's data, but never their signed links: a preview is not a send to them.
        context = message_templates.preview_context(settings, contact)
        rendered = message_templates.render(template, context | _vars(variables))
    data: dict[str, Any] = {"name": template.name, "channel": template.channel, "source": template.origin,
            "subject": rendered.subject, "text": rendered.text, "html": rendered.html}
    if template.channel == "sms":
        data["sms_parts"] = messaging.text_parts(rendered.text)
    if as_json:
        emit_json(data)
        return
    if rendered.subject is not None:
        click.echo(f"Subject: {rendered.subject}\n")
    click.echo(rendered.text.rstrip("\n"))
    if template.channel == "sms":
        click.echo(f"\n({len(rendered.text)} characters, {data['sms_parts']} SMS)")
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
        click.echo(f"Wrote {path}")


# --- hub messages -------------------------------------------------------------------------

@click.group("messages")
def messages_group() -> None:
    """The outbox: send a campaign, dispatch, list, review messages in doubt."""


def _promo(code: str | None, discount: float | None, expires: str | None) -> dict[str, Any] | None:
    if code is None:
        if discount is not None or expires is not None:
            raise click.UsageError("--promo-discount and --promo-expires need --promo-code")
        return None
    promo: dict[str, Any] = {"code": code, "discount": int(discount) if discount and discount.is_integer()
                             else discount}
    if expires:
        try:
            promo["expires_at"] = dt.date.fromisoformat(expires)
        except ValueError:
            raise click.BadParameter(f"{expires!r} is not a date like 2025-12-31",
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
@click.option("--json", "as_json", is_flag=True)
@pass_app
@user_errors
def messages_send(app: App, template_name: str, contact_ids: tuple[int, ...], segment: str | None, everyone: bool,
                  channel: str | None,
                  purpose: str, campaign: str | None, promo_code: str | None, promo_discount: float | None,
                  promo_expires: str | None, do_dispatch: bool, as_json: bool) -> None:
    """Render TEMPLATE for each contact into the outbox, then dispatch (consent is asked at send time)."""
    if sum((bool(contact_ids), bool(segment), everyone)) != 1:
        raise click.UsageError("give one of --contact ID (repeatable), --segment NAME or --all")
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
        task = bar.add_task("Rendering", total=len(ids))
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
        click.echo(f"Campaign {campaign!r}: {created.created} messages queued, {created.existing} already "
                   f"there from an earlier run" + (f", {len(created.missing_contacts)} contacts not found"
                                                   if created.missing_contacts else "") + ".")
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
        task = bar.add_task("Sending", total=min(ready, limit) if limit else ready)
        report = messaging.dispatch(engine, settings, channels=channels, batch_size=batch_size, limit=limit,
                                    progress=lambda n: bar.advance(task, n))
    return report.as_dict()


_NOT_SENT = (("suppressed", "refused at send time (no consent, or a suppressed address)"),
             ("deferred", "deferred for a retry"), ("failed", "failed"),
             ("bounced", "bounced (address now suppressed)"), ("unknown", "in doubt (see `hub messages review`)"),
             ("held", "held for later"), ("released", "left queued (channel not available)"))


def _print_dispatch(r: dict[str, Any]) -> None:
    others = [f"{r[key]} {label}" for key, label in _NOT_SENT if r[key]]
    click.echo(f"Sent {r['sent']}" + (f"; {', '.join(others)}" if others else "") + f" in {r['duration_s']:.1f} s.")
    if r["recovered_unknown"]:
        click.echo(f"{r['recovered_unknown']} messages left `sending` by a stopped worker are now `unknown`: "
                   "see `hub messages review`.")
    for error in r["errors"]:
        stderr.print(f"[yellow]Not sent now:[/] {error}", markup=True, highlight=False)


@messages_group.command("dispatch")
@click.option("--channel", "channels", multiple=True, help="Only this channel. Repeatable.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=messaging.DEFAULT_BATCH, show_default=True)
@click.option("--limit", type=click.IntRange(1), help="At most this many messages.")
@click.option("--queue", "on_queue", is_flag=True,
              help="Hand the work to `hub worker` processes (needs HUB_REDIS_URL).")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --queue: this many dispatch jobs, for that many workers.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
@user_errors
def messages_dispatch(app: App, channels: tuple[str, ...], batch_size: int, limit: int | None, on_queue: bool,
                      jobs: int, as_json: bool) -> None:
    """Send what is due in the outbox; safe to run in several processes at once."""
    engine, settings = app.ready_engine(), app.settings
    if on_queue:
        if not settings.redis_url:
            raise click.ClickException("--queue needs HUB_REDIS_URL; without it, run `hub messages dispatch`")
        ids = [enqueue(settings, messaging.dispatch_job, list(channels) or None, batch_size, limit).id
               for _ in range(jobs)]
        if as_json:
            emit_json({"enqueued": ids})
        else:
            click.echo(f"Enqueued {len(ids)} dispatch jobs for `hub worker`.")
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


@messages_group.command("list")
@click.option("--status", type=click.Choice(messaging.STATUSES))
@click.option("--channel")
@click.option("--contact", "contact_id", type=int)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
@user_errors
def messages_list(app: App, status: str | None, channel: str | None, contact_id: int | None, limit: int,
                  as_json: bool) -> None:
    """The latest messages, newest first, and how many there are in each status."""
    with app.ready_engine().connect() as conn:
        rows = messaging.find(conn, status=status, channel=channel, contact_id=contact_id, limit=limit)
        totals = messaging.counts(conn)
    if as_json:
        emit_json([{k: _iso(v) for k, v in r.items()} for r in rows])
        return
    table = Table("id", "status", "channel", "to", "template", "contact", "updated", "error")
    for r in rows:
        table.add_row(str(r["id"]), r["status"], r["channel"], r["address"] or "", r["template"] or "",
                      str(r["contact_id"] or ""), r["updated_at"].strftime("%Y-%m-%d %H:%M"),
                      (r["error"] or "")[:60])
    Console().print(table)
    click.echo(", ".join(f"{s} {totals[s]}" for s in messaging.STATUSES if s in totals) or "The outbox is empty.")


@messages_group.command("show")
@click.argument("message_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def messages_show(app: App, message_id: int, as_json: bool) -> None:
    """One message with its rendered subject and text."""
    with app.ready_engine().connect() as conn:
        row = messaging.get(conn, message_id)
    if row is None:
        raise click.ClickException(f"no message with id {message_id}")
    if as_json:
        emit_json({k: _iso(v) for k, v in row.items()})
        return
    for key in ("id", "status", "channel", "purpose", "template", "contact_id", "address", "attempts",
                "provider_id", "error", "created_at", "sent_at", "idempotency_key"):
        if row[key] is not None:
            click.echo(f"{key}: {_iso(row[key])}")
    if row["subject"]:
        click.echo(f"subject: {row['subject']}")
    click.echo("")
    click.echo(row["body_text"].rstrip("\n"))


@messages_group.command("review")
@click.option("--json", "as_json", is_flag=True)
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
        click.echo("Nothing to review: no message is in doubt.")
        return
    for r in rows:
        click.echo(f"#{r['id']} {r['channel']} to {r['address']} ({r['template']}), "
                   f"claimed {_iso(r['claimed_at'])}: {r['error']}")
    click.echo("Check the server's log, then: hub messages resolve ID sent|failed|requeue")


@messages_group.command("resolve")
@click.argument("message_id", type=int)
@click.argument("outcome", type=click.Choice(messaging.RESOLUTIONS))
@pass_app
@user_errors
def messages_resolve(app: App, message_id: int, outcome: str) -> None:
    """Settle a message in doubt (sent, failed), or send one again on purpose (requeue)."""
    row = messaging.resolve(app.ready_engine(), message_id, outcome)
    click.echo(f"Message {message_id} is now {row['status']}.")
