"""The message log: every message Hub sent or will send, one message as it went out, and the ones in doubt.

The log reads the outbox (hub.messaging.outbox) with the filters people ask
by: the workflow or campaign that wrote a message (`messages.origin`), its
channel, status, contact and the local days it was written on. Pages go by
id (keyset), so a page does not shift while messages keep arriving, and the
total for the filters is counted, never guessed.

A letter's HTML is shown only through its own route (hub.admin.letter_frame):
the admin's policy would strip its inline styles, and the letter's policy
keeps whatever it holds away from the admin. It carries the person's own
signed links and maybe a tracking pixel, so there its links are inert and
remote images load only when someone asks. Workflows and campaigns appear
by the titles their plugin gives them (AdminPage.origin_links). What was heard of a message later
(a bounce, a complaint, a click, an SMS delivery report: hub.messaging.feedback_log) is listed on its
page and marked beside its status in the log, read for a whole page in one query. An erased person's messages keep
their statuses (a campaign must not send to them again) but nothing they said
or where they went: the page says so instead of showing blanks.

Messages in doubt (`unknown`: the channel may or may not have taken them) and
failed ones are settled here by marketers, as `hub messages resolve` does:
marked sent, marked failed, or queued again on purpose. Each decision is
written to the audit log with who made it, in the same transaction as the
decision; "send again" puts the message back in the queue and asks a
dispatcher to take it, through the queue like any other job.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, NoReturn

from flask import Blueprint, abort, current_app, flash, make_response, redirect, render_template, request, url_for
from sqlalchemy import Connection, select

from hub import consent, messaging, queue, send_reasons
from hub.admin import audit
from hub.admin import access
from hub.admin.access import actor, allow, engine, local_path
from hub.admin.app import current_settings
from hub.admin.letter_frame import letter_response
from hub.admin.registry import stricter
from hub.db import MAX_ROW_ID
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.messaging import feedback_log, outbox
from hub.models import Contact, Erasure

bp = Blueprint("messages", __name__, url_prefix="/messages")
# Why a message was held or not sent, in the reader's words, on every admin page (the card, workflow pages):
# the database keeps the English (hub.send_reasons).
bp.add_app_template_filter(send_reasons.reason_text, "reason")

PAGE_SIZE = 50
REVIEW_LIMIT = 200  # messages in doubt listed at once; the count above the table is the true one
# What the review page writes to the audit log, as the audit page names it.
AUDIT_ACTIONS = {"message_marked_sent": N_("message marked sent"),
                 "message_marked_failed": N_("message marked not sent"),
                 "message_requeued": N_("message queued again")}
_ACTION_OF = {"sent": "message_marked_sent", "failed": "message_marked_failed", "requeue": "message_requeued"}
# Statuses a person may settle on the review page, and which decisions each allows (hub.messaging.outbox.resolve).
REVIEWED = (outbox.UNKNOWN, outbox.FAILED)
DECISIONS = {outbox.UNKNOWN: ("sent", "failed", "requeue"), outbox.FAILED: ("requeue",),
             outbox.DEFERRED: ("requeue",)}
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_MAX_ORIGIN = 64
# Dates a person can mean: a wider range is a typo (or a probe) and says so instead of reaching the database.
FIRST_YEAR, LAST_YEAR = 2000, 2999


contacts_t = Contact.__table__
erasures_t = Erasure.__table__


def _whole(raw: str) -> int | None:
    """A row id as typed: digits only, within what a database row can have; None otherwise."""
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ROW_ID else None


def _day(raw: str, what: str, problems: list[str]) -> dt.date | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw[:20]) if len(raw) <= 20 else None
    except ValueError:
        day = None
    if day is None or not FIRST_YEAR <= day.year <= LAST_YEAR:
        problems.append(_("%(what)s: %(value)s is not a date from %(first)s to %(last)s, like 2026-12-07.",
                          what=_(what), value=repr(raw[:40]), first=FIRST_YEAR, last=LAST_YEAR))
        return None
    return day


def read_filters(args: Any) -> tuple[dict[str, Any], list[str]]:
    """The log's filters from a query string, and what is wrong with any of them (in the reader's words).

    A filter that cannot be read is dropped and named in the problems, so a
    forged or mistyped address shows the page with an explanation, not an error.
    """
    problems: list[str] = []
    shown: dict[str, Any] = {"status": "", "channel": "", "origin": "", "contact": "", "since": "", "until": "",
                             "heard": ""}
    status = args.get("status", "").strip()
    if status:
        if status in outbox.STATUSES:
            shown["status"] = status
        else:
            problems.append(_("Status: %(value)s is not one of: %(allowed)s.", value=repr(status[:40]),
                              allowed=", ".join(outbox.status_title(s) for s in outbox.STATUSES)))
    heard = args.get("heard", "").strip()
    if heard:
        if heard in feedback_log.MARKED:
            shown["heard"] = heard
        else:
            problems.append(_("Heard back: %(value)s is not one of: %(allowed)s.", value=repr(heard[:40]),
                              allowed=", ".join(_(feedback_log.FILTER_TITLES[k]) for k in feedback_log.MARKED)))
    channel = args.get("channel", "").strip()
    if channel:
        if _CHANNEL.match(channel):
            shown["channel"] = channel
        else:
            problems.append(_("Channel: %(value)s is not a channel name (email, sms, …).", value=repr(channel[:40])))
    origin = args.get("origin", "").strip()
    if origin:
        if origin == outbox.BY_HAND or (len(origin) <= _MAX_ORIGIN and origin.isprintable()):
            shown["origin"] = origin
        else:
            problems.append(_("Workflow or campaign: %(value)s is not a name of one.", value=repr(origin[:40])))
    contact = args.get("contact", "").strip()
    if contact:
        if _whole(contact) is not None:
            shown["contact"] = str(_whole(contact))
        else:
            problems.append(_("Contact: %(value)s is not a contact number.", value=repr(contact[:40])))
    since = _day(args.get("since", ""), N_("Date from"), problems)
    until = _day(args.get("until", ""), N_("Date to"), problems)
    if since and until and since > until:
        problems.append(_("The first day (%(since)s) is after the last one (%(until)s).", since=since.isoformat(),
                          until=until.isoformat()))
        since = until = None
    shown["since"] = since.isoformat() if since else ""
    shown["until"] = until.isoformat() if until else ""
    return shown, problems


def _query(shown: dict[str, Any]) -> dict[str, Any]:
    """The outbox filters (hub.messaging.outbox.find) for what the page shows."""
    tz = current_settings().tz
    since = until = None
    if shown["since"]:
        since = dt.datetime.combine(dt.date.fromisoformat(shown["since"]), dt.time(), tzinfo=tz)
    if shown["until"]:
        until = dt.datetime.combine(dt.date.fromisoformat(shown["until"]) + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    # A merge moves the merged contact's messages to the survivor (hub.outbox_hooks), so one id finds them all.
    contact_id = int(shown["contact"]) if shown["contact"] else None
    return {"status": shown["status"] or None, "channel": shown["channel"] or None,
            "origin": shown["origin"] or None, "contact_id": contact_id, "heard": shown["heard"] or None,
            "since": since.astimezone(dt.timezone.utc) if since else None,
            "until": until.astimezone(dt.timezone.utc) if until else None}


def people(conn: Connection, contact_ids: set[int]) -> dict[int, dict[str, Any]]:
    """Who each contact is, for the log's "to whom": a name, or that they were erased."""
    if not contact_ids:
        return {}
    c = contacts_t.c
    rows = conn.execute(select(c.id, c.first_name, c.last_name, c.middle_name, c.deleted_at)
                        .where(c.id.in_(sorted(contact_ids))))
    erased = set(conn.execute(select(erasures_t.c.contact_id).where(
        erasures_t.c.contact_id.in_(sorted(contact_ids)))).scalars())
    out = {}
    for r in rows:
        name = " ".join(p for p in (r.last_name, r.first_name, r.middle_name) if p)
        out[r.id] = {"name": name, "erased": r.id in erased, "deleted": r.deleted_at is not None}
    return out


def _channels(conn: Connection) -> list[str]:
    """The channels a message can go by: registered ones and any the outbox holds."""
    return sorted(set(messaging.channel_factories()) | set(outbox.channels(conn)))


def origin_links(conn: Connection, names: Any) -> dict[str, tuple[str, str | None]]:
    """Each origin's title and page, from the admin pages that know them (AdminPage.origin_links).

    The core does not know what a workflow or a campaign is: the plugin whose
    page shows it names it, for those who may read that page. A name no page
    knows (a workflow since deleted, a plugin not installed) stays as it is.
    """
    wanted = sorted({str(n) for n in names if n})
    found: dict[str, tuple[str, str | None]] = {}
    for page in current_app.config[access.ADMIN_BLUEPRINTS].values():
        rest = [n for n in wanted if n not in found]
        if page.origin_links is None or not rest:
            continue
        policy = access.policy_of(current_app, page.endpoint)
        role = stricter(page.read_role, policy.read if policy else None)
        if role is None or not access.can(role):
            continue
        for name, (title, url) in (page.origin_links(conn, rest) or {}).items():
            if name in rest and title:
                found[name] = (str(title), url)
    return {n: found.get(n, (n, None)) for n in wanted}


def _helpers(links: dict[str, tuple[str, str | None]]) -> dict[str, Any]:
    return {"channel_title": consent.channel_title, "purpose_title": consent.purpose_title,
            "origin_title": lambda name: links.get(name, (name, None))[0],
            "origin_url": lambda name: links.get(name, (name, None))[1], "by_hand": outbox.BY_HAND,
            "decisions": DECISIONS}


def _position(raw: str, problems: list[str]) -> int | None:
    """Where the page starts in the filtered list, as the link that led here says (1 on the first page)."""
    raw = raw.strip()
    if not raw:
        return None
    if _whole(raw) is None:
        problems.append(_("Page: %(value)s is not a message number.", value=repr(raw[:40])))
        return None
    return _whole(raw)


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    """One page of the log: one COUNT for the filters' true total; the rows and a probe each way tell the links.

    Where the page starts (`at`) comes with the link that led here, so the
    page needs no second count; at either end of the list it is exact.
    """
    shown, problems = read_filters(request.args)
    before = after = None
    for name in ("before", "after"):
        raw = request.args.get(name, "").strip()
        if raw:
            if _whole(raw) is None:
                problems.append(_("Page: %(value)s is not a message number.", value=repr(raw[:40])))
            elif name == "before":
                before = _whole(raw)
            else:
                after = _whole(raw)
    at = _position(request.args.get("at", ""), problems)
    with engine().connect() as conn:
        where = _query(shown)
        total = outbox.count_found(conn, **where)
        if after is not None and before is None:
            rows = outbox.find(conn, **where, after_id=after, newest_first=False, limit=PAGE_SIZE + 1)
            newer = len(rows) > PAGE_SIZE
            rows = list(reversed(rows[:PAGE_SIZE]))
            older = bool(rows) and bool(outbox.find(conn, **where, before_id=rows[-1]["id"], limit=1))
        else:
            rows = outbox.find(conn, **where, before_id=before, limit=PAGE_SIZE + 1)
            older = len(rows) > PAGE_SIZE
            rows = rows[:PAGE_SIZE]
            newer = before is not None and bool(rows) and bool(
                outbox.find(conn, **where, after_id=rows[0]["id"], newest_first=False, limit=1))
        who = people(conn, {r["contact_id"] for r in rows if r["contact_id"] is not None})
        heard = feedback_log.kinds(conn, [r["id"] for r in rows])  # one query for the page, not one per row
        channels = _channels(conn)
        known = outbox.origins(conn)
        links = origin_links(conn, set(known) | {r["origin"] for r in rows if r["origin"]} | {shown["origin"]})
        contact_note = _contact_note(conn, int(shown["contact"])) if shown["contact"] else None
    if not newer:
        first = 1
    elif not older:
        first = max(1, total - len(rows) + 1)
    else:
        first = min(max(at or 2, 2), max(2, total - len(rows)))  # some before it, some after it
    filters = {k: v for k, v in shown.items() if v}
    origins = sorted(known, key=lambda n: (links[n][0].casefold(), n))
    return render_template("messages/index.html", rows=rows, who=who, shown=shown, filters=filters,
                           problems=problems, total=total, first=first, last=first + len(rows) - 1,
                           newer=newer, older=older, origins=origins, channels=channels,
                           statuses=outbox.STATUSES, contact_note=contact_note, page_size=PAGE_SIZE,
                           heard=heard, markers=feedback_log.markers, heard_kinds=feedback_log.MARKED,
                           heard_titles=feedback_log.FILTER_TITLES, **_helpers(links)), \
        400 if problems else 200


def _contact_note(conn: Connection, contact_id: int) -> dict[str, Any] | None:
    """What the contact filter names: the person, one merged into another, erased, or nobody."""
    from hub import identity

    found = people(conn, {contact_id}).get(contact_id)
    if found is not None and found["erased"]:
        return {"kind": "erased", "id": contact_id}
    if found is None or found["deleted"]:
        survivor = identity.current_contact_id(conn, contact_id)  # a merged contact's row is gone; its log is not
        if survivor is not None and survivor != contact_id:
            return {"kind": "merged", "id": contact_id, "survivor": survivor}
    if found is None:
        return {"kind": "missing", "id": contact_id}
    return {"kind": "person", "id": contact_id, "name": found["name"]}


def _not_found(message: str) -> NoReturn:
    """A 404 that says what is missing (the admin's own 404 page says only that the address holds nothing)."""
    abort(make_response(render_template("error.html", code=404, title=_("Not found"), message=message), 404))


def _message(conn: Connection, message_id: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    row = outbox.get(conn, message_id)
    if row is None:
        _not_found(_("There is no message #%(id)s.", id=message_id))
    person = people(conn, {row["contact_id"]}).get(row["contact_id"]) if row["contact_id"] is not None else None
    return row, person


# A letter that loads something from elsewhere: an image, a background, a web font.
_REMOTE = re.compile(r"""(?:src|background|srcset)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//""",
                     re.IGNORECASE)


@bp.get("/<int:message_id>")
@allow(read="viewer")
def show(message_id: int) -> Any:
    with engine().connect() as conn:
        row, person = _message(conn, message_id)
        meta = row.get("meta") or {}
        workflow = meta.get("workflow") or row.get("origin")
        links = origin_links(conn, [workflow]) if workflow else {}
        events = feedback_log.events(conn, message_id)
    erased = bool(person and person["erased"])
    heard = [{"kind": e["kind"], "at": e["at"], "text": feedback_log.describe(e["kind"], e["url"], e["detail"],
                                                                               erased=erased)} for e in events]
    images = request.args.get("images") == "1"
    remote = bool(row["body_html"]) and _REMOTE.search(row["body_html"]) is not None
    return render_template("messages/show.html", m=row, person=person, erased=erased, meta=meta,
                           workflow=workflow, images=images, remote=remote, heard=heard,
                           more_events=len(events) >= feedback_log.MAX_EVENTS, **_helpers(links))


@bp.get("/<int:message_id>/letter")
@allow(read="viewer")
def letter(message_id: int) -> Any:
    """The HTML part as it went out, for the message page's sandboxed frame (its own policy: inline styles work).

    It carries the person's own links (unsubscribe, survey answers) and may
    carry a tracking pixel: links stay inert, and remote images load only when
    someone asks (`?images=1`), so reading the log neither acts as the person
    nor counts as them opening the letter.
    """
    with engine().connect() as conn:
        row, person = _message(conn, message_id)
    if not row["body_html"] or (person and person["erased"]):
        _not_found(_("Message #%(id)s has no HTML part to show.", id=message_id))
    return letter_response(row["body_html"], links=False, images=request.args.get("images") == "1")


@bp.get("/review")
@allow(read="viewer")
def review() -> Any:
    # Reading changes nothing: a message a stopped worker left `sending` becomes `unknown` when the
    # next dispatch starts (hub.messaging.dispatcher runs recover_stale first), and `hub messages review` does it too.
    with engine().connect() as conn:
        doubtful = outbox.find(conn, status=outbox.UNKNOWN, limit=REVIEW_LIMIT)
        failed = outbox.find(conn, status=outbox.FAILED, limit=REVIEW_LIMIT)
        totals = {s: outbox.count_found(conn, status=s) for s in REVIEWED}
        who = people(conn, {r["contact_id"] for r in doubtful + failed if r["contact_id"] is not None})
    return render_template("messages/review.html", doubtful=doubtful, failed=failed, totals=totals, who=who,
                           **_helpers({}))


@bp.post("/<int:message_id>/resolve")
@allow(read=None, write="marketer")
def resolve(message_id: int) -> Any:
    back = local_path(request.form.get("next"), url_for("messages.review"))
    outcome = request.form.get("outcome", "")
    with engine().connect() as conn:
        exists = outbox.get(conn, message_id) is not None
    if not exists:
        _not_found(_("There is no message #%(id)s.", id=message_id))
    if outcome not in outbox.RESOLUTIONS:
        flash(_("%(value)s is not something a message can be marked as.", value=repr(outcome[:40])), "error")
        return redirect(back)
    who = actor()

    def record(conn: Connection, message: dict[str, Any], previous: str) -> None:
        audit.record(conn, who, _ACTION_OF[outcome], contact_id=message["contact_id"], message_id=message_id,
                     channel=message["channel"], status=previous)

    try:
        row = outbox.resolve(engine(), message_id, outcome, by=who, audit=record)
    except outbox.MessagingError:
        with engine().connect() as conn:  # what it is now, not what the page showed
            now = outbox.get(conn, message_id)
        status = outbox.status_title(now["status"]) if now else "—"
        flash(_("Message #%(id)s is %(status)s now: it cannot be marked that way (someone may have settled it "
                "already).", id=message_id, status=status), "error")
        return redirect(back)
    if outcome == "requeue":
        queue.enqueue(current_settings(), messaging.dispatch_job, [row["channel"]], background=True,
                      job_id=f"admin-resend-{message_id}")
        flash(_("Message #%(id)s is queued again and goes out with the next dispatch.", id=message_id), "ok")
    elif outcome == "sent":
        flash(_("Message #%(id)s is marked sent.", id=message_id), "ok")
    else:
        flash(_("Message #%(id)s is marked not sent.", id=message_id), "ok")
    return redirect(back)
