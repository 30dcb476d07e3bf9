"""`hub campaigns …`: one-off campaigns from the command line (workflows.campaigns does the work).

Reporting commands take --json and then print one JSON document with English
keys; everything else is written for people, in their language. A mistake (an
unknown campaign, a draft that does not check, a move its state does not
allow) ends in one `Error:` line naming the field.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

# not in hub.api on purpose: the campaign engine writes outbox rows and dispatches them
from hub import messaging
from hub.api import (N_, App, Settings, emit_json, format_moment, format_number, gettext, pass_app, translated_title)
from workflows import campaigns, engagement, sms_estimate
from workflows.campaigns import CampaignError, Draft
from workflows.commands import user_errors

ACTOR = "cli"
HELD_TITLES = {"holdout": N_("control group (gets nothing, measured)"), "no_address": N_("no address for the channel"),
               "no_consent": N_("no consent"), "suppressed": N_("address suppressed"),
               "capped": N_("frequency cap reached")}
MOVED = N_("Campaign %(name)s is %(state)s.")


# Fields whose option is named otherwise.
OPTIONS = {"scheduled_at": "at", "contact_id": "contact"}


def _said(problem: dict[str, str]) -> str:
    """A problem named by the option that set the field (--promo-discount), as the command line calls it."""
    field = OPTIONS.get(problem["field"], problem["field"])
    if field in ("", "campaign", "status", "name"):
        return problem["detail"]
    return f"--{field.replace('.', '-').replace('_', '-')}: {problem['detail']}"


def campaign_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """A campaign's problems end in one `Error:` line, each naming its field."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CampaignError as exc:
            raise click.ClickException("; ".join(_said(p) for p in exc.problems)) from None
        except messaging.MessagingError as exc:
            raise click.ClickException(str(exc)) from None

    return user_errors(wrapper)


def parse_at(settings: Settings, text: str) -> dt.datetime:
    """"2026-12-07 10:00" in Hub's time zone (HUB_TIMEZONE), or an ISO time with its offset."""
    raw = text.strip()
    try:
        value = dt.datetime.fromisoformat(raw.replace(" ", "T", 1) if len(raw) > 10 else raw)
    except ValueError:
        raise CampaignError(gettext("%(value)s is not a time; write it like \"2026-12-07 10:00\" (in %(zone)s) or "
                                    "with its offset, like 2026-12-07T10:00+03:00", value=repr(text),
                                    zone=settings.tz.key), "at") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=settings.tz)
    campaigns.check_time(settings, value)  # a year ahead at most, and a moment that exists in its zone
    return value


def _moment(settings: Settings, value: Any) -> str:
    return format_moment(value, settings.tz, zone=True) if value else "-"


def _status(status: str) -> str:
    return gettext(campaigns.STATUS_TITLES.get(status, status))


@click.group("campaigns")
def campaigns_group() -> None:
    """One-off campaigns: a letter to a segment, now or at a set time, each person once. See docs/campaigns.md."""


@campaigns_group.command("create")
@click.option("--title", required=True, help="What people see: \"Black Friday\".")
@click.option("--segment", required=True, help="Who gets it: a segment's name.")
@click.option("--channel", required=True, help="email or sms.")
@click.option("--template", required=True, help="The message template's name.")
@click.option("--purpose", default="marketing", show_default=True, help="The consent purpose the letter is sent under.")
@click.option("--promo-discount", type=int, help="Give each person a promo code with this discount, in per cent.")
@click.option("--promo-valid", help="How long the code is valid, like 14d.")
@click.option("--promo-prefix", help="The code's prefix, like SALE.")
@click.option("--holdout", type=click.IntRange(0, 50), default=0, show_default=True,
              help="Per cent of those the letter would reach kept as a control group that gets nothing.")
@click.option("--name", help="The technical name (made from the title when not given).")
@click.option("--json", "as_json", is_flag=True, help="Print the campaign as JSON.")
@pass_app
@campaign_errors
def create_cmd(app: App, title: str, segment: str, channel: str, template: str, purpose: str,
               promo_discount: int | None, promo_valid: str | None, promo_prefix: str | None, holdout: int,
               name: str | None, as_json: bool) -> None:
    """Save a campaign as a draft; check it with `preview`, send it with `send` or `schedule`."""
    promo = None
    if promo_discount is not None or promo_valid or promo_prefix:
        promo = {k: v for k, v in (("discount", promo_discount), ("valid", promo_valid), ("prefix", promo_prefix))
                 if v is not None}
    draft = Draft(title=title, segment=segment, channel=channel, template=template, purpose=purpose, promo=promo,
                  holdout=holdout)
    shown = campaigns.create(app.ready_engine(), app.settings, draft, actor=ACTOR, name=name)
    if as_json:
        emit_json(shown)
        return
    click.echo(gettext("Saved the draft campaign %(name)s. Check it: hub campaigns preview %(name)s",
                       name=shown["name"]))


@campaigns_group.command("list")
@click.option("--status", type=click.Choice(campaigns.STATUSES), help="Only campaigns in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
@campaign_errors
def list_cmd(app: App, status: str | None, as_json: bool) -> None:
    """Campaigns, newest first: their state, when they start, and how many letters went."""
    with app.ready_engine().connect() as conn:
        items = campaigns.listing(conn, status=status)
    if as_json:
        emit_json(items)
        return
    if not items:
        click.echo(gettext("No campaigns yet. Create one: hub campaigns create --help"))
        return
    table = Table(gettext("campaign"), gettext("name"), gettext("state"), gettext("segment"), gettext("starts"),
                  gettext("sent"))
    for item in items:
        table.add_row(Text(translated_title(item["title"]) or item["name"]), item["name"], _status(item["status"]),
                      item["segment"], _moment(app.settings, item["started_at"] or item["scheduled_at"]),
                      format_number(item["sent"]))
    Console().print(table)


@campaigns_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the campaign as JSON.")
@pass_app
@campaign_errors
def show_cmd(app: App, name: str, as_json: bool) -> None:
    """One campaign: what it sends to whom, its state, and its results so far."""
    item = campaigns.show(app.ready_engine(), app.settings, name)
    if as_json:
        emit_json(item)
        return
    _print(app.settings, item)


def _print(settings: Settings, item: dict[str, Any]) -> None:
    console = Console()
    console.print(Text.assemble((item["title"], "bold"), f" ({item['name']})"))
    lines = [gettext("State: %(state)s", state=_status(item["status"])),
             gettext("Segment: %(segment)s; channel: %(channel)s; template: %(template)s; purpose: %(purpose)s",
                     segment=item["segment"], channel=item["channel"], template=item["template"],
                     purpose=item["purpose"])]
    if item["promo"]:
        promo = item["promo"]
        lines.append(gettext("Promo code: %(discount)s%% for %(valid)s, prefix %(prefix)s",
                             discount=promo.get("discount"), valid=promo.get("valid"),
                             prefix=promo.get("prefix") or "-"))
    if item["holdout"]:
        lines.append(gettext("Control group: %(percent)s%%", percent=item["holdout"]))
    if item["scheduled_at"]:
        lines.append(gettext("Scheduled for %(at)s", at=_moment(settings, item["scheduled_at"])))
    if item["started_at"]:
        lines.append(gettext("Started %(at)s", at=_moment(settings, item["started_at"])))
    if item["finished_at"]:
        lines.append(gettext("Finished %(at)s", at=_moment(settings, item["finished_at"])))
    counts = item["counts"]
    if counts["runs"]:
        lines.append(gettext("Entered: %(runs)s (control group %(holdout)s)", runs=format_number(counts["runs"]),
                             holdout=format_number(counts["holdout"])))
        messages = ", ".join(f"{messaging.status_title(k)} {format_number(v)}"
                             for k, v in sorted(counts["messages"].items())) or "-"
        lines.append(gettext("Messages: %(messages)s", messages=messages))
        lines.extend(line[:1].upper() + line[1:] for line in engagement.describe(item.get("engagement")))
        if counts["promo_issued"]:
            lines.append(gettext("Promo codes: %(issued)s issued, %(redeemed)s redeemed",
                                 issued=format_number(counts["promo_issued"]),
                                 redeemed=format_number(counts["promo_redeemed"])))
    for line in lines:
        console.print(line, markup=False, highlight=False)


@campaigns_group.command("preview")
@click.argument("name")
@click.option("--sample", type=click.IntRange(0, campaigns.MAX_SAMPLE), default=10, show_default=True,
              help="How many recipients to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the preview as JSON.")
@pass_app
@campaign_errors
def preview_cmd(app: App, name: str, sample: int, as_json: bool) -> None:
    """Who would get the campaign if it started now, and who would not, and why. Nothing is sent."""
    report = campaigns.preview(app.ready_engine(), app.settings, name, sample=sample)
    if as_json:
        emit_json(report)
        return
    click.echo(gettext("In the segment now: %(members)s; would receive: %(will)s.",
                       members=format_number(report["members"]), will=format_number(report["will_receive"])))
    for key, n in report["held_back"].items():
        if n:
            click.echo(f"  {gettext(HELD_TITLES[key])}: {format_number(n)}")
    if report["quiet_hours"]:
        click.echo(gettext("Quiet hours now: %(num)s would get it in the morning.",
                           num=format_number(report["quiet_hours"])))
    if report.get("sms"):
        click.echo(sms_estimate.text(report["sms"]))
    if report["sample"]:
        table = Table(gettext("contact"), gettext("name"), gettext("address"))
        for row in report["sample"]:
            table.add_row(str(row["contact_id"]), Text(row["name"]), Text(row["address"] or ""))
        Console().print(table)


@campaigns_group.command("test")
@click.argument("name")
@click.option("--to", "to", required=True, help="Your own address: the test goes there only.")
@click.option("--contact", "contact_id", type=int, help="Render it for this contact (by default, the first recipient).")
@click.option("--json", "as_json", is_flag=True, help="Print the campaign as JSON, the test letter under \"test\".")
@pass_app
@campaign_errors
def test_cmd(app: App, name: str, to: str, contact_id: int | None, as_json: bool) -> None:
    """Send one test letter of the campaign to your own address; it never counts in the results."""
    sent = campaigns.send_test(app.ready_engine(), app.settings, name, to=to, contact_id=contact_id, actor=ACTOR)
    if as_json:
        emit_json({**campaigns.show(app.ready_engine(), app.settings, name), "test": sent})
        return
    click.echo(gettext("Sent a test to %(address)s: %(subject)s", address=sent["address"],
                       subject=sent["subject"] or "-"))


@campaigns_group.command("schedule")
@click.argument("name")
@click.option("--at", "at", required=True,
              help="When: \"2026-12-07 10:00\" in Hub's time zone (HUB_TIMEZONE), or ISO with an offset.")
@click.option("--json", "as_json", is_flag=True, help="Print the campaign as JSON.")
@pass_app
@campaign_errors
def schedule_cmd(app: App, name: str, at: str, as_json: bool) -> None:
    """Start the campaign at a set time; the scheduler (hub scheduler) starts it then."""
    item = campaigns.schedule(app.ready_engine(), app.settings, name, parse_at(app.settings, at), actor=ACTOR)
    if as_json:
        emit_json(item)
        return
    click.echo(gettext("Campaign %(name)s starts %(at)s.", name=item["name"],
                       at=_moment(app.settings, item["scheduled_at"])))


@campaigns_group.command("send")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the campaign as JSON.")
@pass_app
@campaign_errors
def send_cmd(app: App, name: str, as_json: bool) -> None:
    """Start the campaign now: everyone in its segment enters once; sending it again sends nobody twice."""
    engine, settings = app.ready_engine(), app.settings
    item = campaigns.start(engine, settings, name, actor=ACTOR)  # without Redis, this process does the sending
    if as_json:
        emit_json(item)
        return
    counts = item["counts"]
    click.echo(gettext("Campaign %(name)s is %(state)s: %(runs)s entered, %(sent)s sent.", name=item["name"],
                       state=_status(item["status"]), runs=format_number(counts["runs"]),
                       sent=format_number(counts["messages"].get("sent", 0))))
    if settings.redis_url and item["status"] == "sending":
        click.echo(gettext("The letters are handed to `hub worker`."))


def _moved(verb: Callable[..., dict[str, Any]], message: str) -> Callable[..., None]:
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print the campaign as JSON.")
    @pass_app
    @campaign_errors
    def command(app: App, name: str, as_json: bool) -> None:
        item = verb(app.ready_engine(), name, actor=ACTOR)
        if as_json:
            emit_json(campaigns.show(app.ready_engine(), app.settings, item["name"]))
            return
        click.echo(gettext(message, name=item["name"], state=_status(item["status"])))

    return command


campaigns_group.command("pause", help="Stop sending: who has not got it yet waits until `resume`.")(
    _moved(campaigns.pause, MOVED))
campaigns_group.command("resume", help="Go on sending a paused campaign.")(_moved(campaigns.resume, MOVED))
campaigns_group.command("cancel", help="Call off a campaign that has not started.")(_moved(campaigns.cancel, MOVED))
