"""Contacts: search, the card, and duplicate suggestions a person can merge.

The card shows everything Hub knows about a person and where each piece came
from: identities with their source, CRM references, orders, consent history,
messages, segments, what plugins add (the workflows' runs, say: an admin
page's ``contact_section``) and the merges that made the contact. From the
CRMs it shows the companies the person works at, open deals with how long
each has stood in its stage, and the calls and meetings managers logged;
the latest NPS answer comes from the plugin that runs the surveys (the
contact_card_facts hook). A phone or
email several people use (a switchboard, info@) is marked shared, with why,
so nobody takes it for this person's own; a merge that joined two people can
be undone from the card (hub.unmerge), by marketers and admins.

Staff may record a consent answer the person gave them (a paper form, a
call, a request to stop): marketers and admins only, with the evidence of
how the person said it (required: «по телефону 5 декабря», a form's number),
written to the ledger as a staff entry naming who entered it
(hub.consent.record_staff), never as the person's own confirmation. A double
opt-in waiting for the person's click cannot be confirmed from here: only
the link sent to them does that; nor can a "yes" be recorded for a channel
the person has no address on in the base (they could not have given it for
an address Hub does not know).

Marketers add notes to the card (hub.contact_notes). The card also lists the
person's last messages (the message log has them all), their promo codes and
workflow runs (the workflows plugin's section) and links to their records in
the CRMs: each source plugin says the address of its records (the
``record_url`` hook), so the core knows no CRM's addresses.

The search (hub.admin.contact_search) asks plugins too: an admin page's
``contact_search`` finds people by what the plugin holds (a promo code), for
those who may read that page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from hub import consent, contact_notes, contacts, dedupe, identity, messaging, normalize
from hub.admin import access, audit, contact_search
from hub.admin.access import actor, allow, current_user, engine, local_path
from hub.admin.app import current_settings
from hub.admin.filters import status_title
from hub.admin.forms import ActionForm, MergeForm
from hub.admin.registry import stricter
from hub.i18n import N_
from hub.db import whole_number
from hub.i18n import gettext as _
from hub.messaging.outbox import count_found
from hub.models import Segment, SegmentMember
from hub.segments import scoring
from hub.segments.evaluate import Segments
from hub.segments.lifecycle import Thresholds
from hub.segments.rules import SegmentError

bp = Blueprint("contacts", __name__, url_prefix="/contacts")
PAGE_SIZE = 20  # newest contacts a page, before anything is searched
FOUND_PAGE_SIZE = 50  # matches a page
CARD_MESSAGES = 20  # the card's last messages; the message log has them all
MAX_EVIDENCE = 500  # how the person said it: a sentence, a form's number
MAX_PAGE = 10**6
# contacts.id is a 32-bit integer on PostgreSQL: a bigger id in an address names nobody.
MAX_CONTACT_ID = 2**31 - 1
# What these pages write to the audit log beyond the core's own titles (hub.admin.audit), as people call it.
AUDIT_ACTIONS = {"contact_note_added": N_("note added to a contact")}


def _page_number() -> int:
    """The page asked for; a page that is no number (or a forged one) is the first."""
    raw = request.args.get("page", "1")
    return min(whole_number(raw) or 1, MAX_PAGE)


def search_matchers() -> list[Any]:
    """Plugins' searches (AdminPage.contact_search), each asked only for those who may read its page."""
    out = []
    for page in current_app.config[access.ADMIN_BLUEPRINTS].values():
        if page.contact_search is None:
            continue
        policy = access.policy_of(current_app, page.endpoint)
        role = stricter(page.read_role, policy.read if policy else None)
        if role is not None and access.can(role):
            out.append(page.contact_search)
    return out


@bp.get("/")
@allow(read="viewer")
def search() -> Any:
    settings = current_settings()
    query = contact_search.typed(request.args.get("q", ""))
    asked = _page_number()
    size = FOUND_PAGE_SIZE if query else PAGE_SIZE
    more = False  # the search stopped counting: more than `total` match
    with engine().connect() as conn:
        if query:
            matchers = search_matchers()
            found = contact_search.find(conn, settings, query, limit=size, offset=(asked - 1) * size,
                                        matchers=matchers)
            total = found.total
            page = min(asked, max(1, -(-total // size)))
            if page != asked:  # past the last page (an old link, a forged number): the last one
                found = contact_search.find(conn, settings, query, limit=size, offset=(page - 1) * size,
                                            matchers=matchers)
            rows = found.rows
            more = found.more
        else:
            total = contact_search.live_count(conn)
            page = min(asked, max(1, -(-total // size)))
            rows = contact_search.recent(conn, settings, limit=size, offset=(page - 1) * size)
        pages = max(1, -(-total // size), page + 1 if more else 1)
    return render_template("contacts/search.html", query=query, rows=rows, page=page, pages=pages, total=total,
                           more=more, first=(page - 1) * size + 1, last=(page - 1) * size + len(rows))


def _segments_of(conn: Any, contact_id: int) -> list[dict[str, Any]]:
    s, m = Segment.__table__, SegmentMember.__table__
    rows = conn.execute(select(s.c.name, s.c.title, m.c.entered_at).join(m, m.c.segment_id == s.c.id)
                        .where(m.c.contact_id == contact_id).order_by(s.c.name))
    return [dict(r._mapping) for r in rows]


def _crm_links(conn: Any, settings: Any, data: dict[str, Any]) -> None:
    """Each CRM reference and order with the address of its record, as its source plugin says (record_url)."""
    from hub.plugins import get_pm

    hook = get_pm().hook.record_url
    # (the card's list, the kind of record the plugin links to, the key holding the CRM's id)
    for key, kind, id_key in (("external_refs", "contact", "id"), ("orders", "order", "id"),
                              ("open_deals", "order", "id"), ("companies", "company", "external_id")):
        for item in data.get(key) or []:
            item["url"] = _safe_url(hook(conn=conn, settings=settings, source=str(item["source"]), kind=kind,
                                         external_id=str(item[id_key])))


def _safe_url(url: Any) -> str | None:
    """Only a web address becomes a link: a plugin's "javascript:" (or anything else) is not followed."""
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


@bp.get("/<int:contact_id>")
@allow(read="viewer")
def card(contact_id: int) -> Any:
    settings = current_settings()
    if contact_id > MAX_CONTACT_ID:
        abort(404)
    with engine().connect() as conn:
        data = contacts.card(conn, contact_id, thresholds=Thresholds.from_settings(settings.extra))
        if data is not None and identity.is_placeholder(conn, contact_id):
            abort(404)  # a signup waiting for its click is nobody yet: it holds nothing to show
        if data is None:
            survivor = identity.current_contact_id(conn, contact_id)  # through any chain of merges
            if survivor is not None:
                flash(_("Contact #%(id)s was merged into #%(survivor)s.", id=contact_id, survivor=survivor), "ok")
                return redirect(url_for("contacts.card", contact_id=survivor))
            abort(404)
        data["stored_lead_score"] = data["lead_score"]
        live = _live_score(conn, settings, contact_id)
        data["lead_score"] = data["lead_score"] if live is None else live
        current = sorted(consent.latest(conn, contact_id).items())
        history = consent.history(conn, contact_id)
        messages = messaging.find(conn, contact_id=contact_id, limit=CARD_MESSAGES)
        messages_total = count_found(conn, contact_id=contact_id) if len(messages) >= CARD_MESSAGES else len(messages)
        segments = _segments_of(conn, contact_id)
        notes = contact_notes.for_contact(conn, contact_id)
        _crm_links(conn, settings, data)
        sections = _plugin_sections(conn, contact_id)
    return render_template("contacts/card.html", c=data, consent_now=current, consent_history=history,
                           messages=messages, messages_total=messages_total, segments=segments, notes=notes,
                           sections=sections, merge_form=MergeForm(), consent_form=ActionForm(),
                           channels=consent.channels(settings), purposes=consent.purposes(settings),
                           statuses=STAFF_STATUSES, max_evidence=MAX_EVIDENCE, max_note=contact_notes.MAX_LENGTH,
                           label_title=identity.label_title, shared_title=identity.shared_title,
                           key_title=contacts.key_title, activity_title=contacts.activity_title,
                           direction_title=contacts.direction_title, call_length=contacts.call_length,
                           activity_icons=contacts.ACTIVITY_ICONS)



def _live_score(conn: Any, settings: Any, contact_id: int) -> int | None:
    """The lead score as explain computes it: the stored one waits for the next refresh of the segments."""
    segments = Segments(conn, settings)
    try:
        model = scoring.load_model(segments.registry, segments.catalog.definitions)
    except (SegmentError, LookupError):  # a broken model file: the stored score, as the last refresh left it
        return None
    return scoring.score_of(conn, segments.compiler, model, contact_id)


def _plugin_sections(conn: Any, contact_id: int) -> list[Any]:
    """What admin pages add to the card, each shown only to those who may read its page."""
    out = []
    for page in current_app.config[access.ADMIN_BLUEPRINTS].values():
        if page.contact_section is None:
            continue
        policy = access.policy_of(current_app, page.endpoint)
        role = stricter(page.read_role, policy.read if policy else None)
        if role is not None and access.can(role):
            found = page.contact_section(conn, contact_id)
            if found:
                out.append(found)
    return out


# Staff record what a person told them; "pending" is a state only the person's own signup creates.
STAFF_STATUSES = ("granted", "withdrawn")
# Why a "yes" cannot be recorded for a channel, by the kind of address the channel needs.
NO_ADDRESS = {
    normalize.EMAIL: N_("Consent not recorded: the person has no valid email in the base, so they cannot have "
                        "agreed to %(channel)s by it; add their email first."),
    normalize.PHONE: N_("Consent not recorded: the person has no valid phone number in the base, so they cannot "
                        "have agreed to %(channel)s by it; add their phone first."),
}


def _evidence(raw: str | None) -> tuple[str | None, str | None]:
    """(the evidence as kept, None) or (None, what is wrong with it, for the person who typed it)."""
    text = " ".join((raw or "").replace("\x00", "").split())
    if not text:
        return None, _("say how the person gave this answer (e.g. «по телефону 5 декабря» or a form's number)")
    if len(text) > MAX_EVIDENCE:
        return None, _("the evidence is %(length)s characters long; keep it within %(max)s", length=len(text),
                       max=MAX_EVIDENCE)
    return text, None


def _back_to_card(contact_id: int) -> Any:
    return redirect(url_for("contacts.card", contact_id=min(contact_id, MAX_CONTACT_ID)))


@bp.post("/<int:contact_id>/consent")
@allow(read=None, write="marketer")
def set_consent(contact_id: int) -> Any:
    """Record a consent answer the person gave staff, with how they gave it; the ledger names who entered it."""
    settings = current_settings()
    if not ActionForm().validate_on_submit():
        flash(_("Consent not recorded: the form expired; open the card again."), "error")
        return _back_to_card(contact_id)
    channel = (request.form.get("channel") or "").strip()[:40]
    purpose = (request.form.get("purpose") or "").strip()[:40]
    status = (request.form.get("status") or "").strip()
    user = current_user()
    staff = user.email if user is not None else "admin"
    if status not in STAFF_STATUSES:
        flash(_("Consent not recorded: staff can record %(allowed)s, not %(status)r.",
                allowed=" / ".join(status_title(s) for s in STAFF_STATUSES), status=status[:40]), "error")
        return _back_to_card(contact_id)
    note, wrong = _evidence(request.form.get("note"))
    if wrong is not None:
        flash(_("Consent not recorded: %(reason)s.", reason=wrong), "error")
        return _back_to_card(contact_id)
    if contact_id > MAX_CONTACT_ID:
        abort(404)
    with engine().begin() as conn:
        if identity.is_erased(conn, contact_id):
            flash(_("Consent not recorded: contact #%(id)s was erased; nothing is kept about them.", id=contact_id),
                  "error")
            return redirect(url_for("contacts.search"))
        person = identity.current_contact_id(conn, contact_id)
        if person is None:
            abort(404)
        waiting = consent.current(conn, person).get((channel, purpose)) == "pending"
        kind = consent.kind_for_channel(channel)
        if (status == "granted" and not waiting and channel in consent.channels(settings)
                and not consent.addresses(conn, person, kind)):
            # Staff never say yes for the person on a channel they gave no address for.
            flash(_(NO_ADDRESS.get(kind, NO_ADDRESS[normalize.PHONE]), channel=consent.channel_title(channel)),
                  "error")
            return redirect(url_for("contacts.card", contact_id=person))
        try:
            consent.record_staff(conn, settings, person, channel, purpose, status, staff=staff, note=note)
        except consent.ConsentError as exc:
            flash(_("Consent not recorded: %(reason)s.", reason=str(exc)), "error")
            return redirect(url_for("contacts.card", contact_id=person))
        audit.record(conn, actor(), "consent_recorded_by_staff", contact_id=person, channel=channel,
                     purpose=purpose, status=status)
    flash(_("Recorded %(channel)s/%(purpose)s: %(status)s, entered by %(staff)s.",
            channel=consent.channel_title(channel), purpose=consent.purpose_title(purpose),
            status=status_title(status), staff=staff), "ok")
    return redirect(url_for("contacts.card", contact_id=person))


@bp.post("/<int:contact_id>/notes")
@allow(read=None, write="marketer")
def add_note(contact_id: int) -> Any:
    """Keep a note on the card, signed by who wrote it; a merged-away contact's note goes to the survivor."""
    if not ActionForm().validate_on_submit():
        flash(_("Note not added: the form expired; open the card again."), "error")
        return _back_to_card(contact_id)
    try:
        body = contact_notes.clean(request.form.get("body"))
    except contact_notes.NoteError as exc:
        flash(_("Note not added: %(reason)s.", reason=str(exc)), "error")
        return _back_to_card(contact_id)
    if contact_id > MAX_CONTACT_ID:
        abort(404)
    user = current_user()
    author = user.email if user is not None else "admin"
    with engine().begin() as conn:
        if identity.is_erased(conn, contact_id):
            flash(_("Note not added: contact #%(id)s was erased; nothing is kept about them.", id=contact_id),
                  "error")
            return redirect(url_for("contacts.search"))
        person = identity.current_contact_id(conn, contact_id)
        if person is None or identity.is_placeholder(conn, person):
            abort(404)
        contact_notes.add(conn, person, body, author=author)
        audit.record(conn, actor(), "contact_note_added", contact_id=person)
    flash(_("Note added."), "ok")
    return redirect(url_for("contacts.card", contact_id=person, _anchor="notes"))


@bp.get("/duplicates")
@allow(read="viewer")
def duplicates() -> Any:
    with engine().connect() as conn:
        groups = dedupe.suggestions(conn, limit=100)
        ids = sorted({i for g in groups for i in g["contact_ids"]})
        people = {c["id"]: c for c in contacts.iter_contacts(conn, ids=ids)} if ids else {}
        to_check = dedupe.review(conn, limit=100)
    return render_template("contacts/duplicates.html", groups=groups, people=people, form=MergeForm(),
                           review=to_check, review_title=dedupe.review_title, key_title=contacts.key_title)


@bp.post("/merge")
@allow(read=None, write="marketer")
def merge() -> Any:
    form = MergeForm()
    back = local_path(request.form.get("back"), url_for("contacts.duplicates"))
    if not form.validate():
        for errors in form.errors.values():
            for error in errors:
                flash(_("Merge refused: %(reason)s", reason=str(error)), "error")
        return redirect(back)
    survivor, other = form.survivor.data, form.other.data
    assert survivor is not None and other is not None  # InputRequired
    who = actor()
    try:
        result = dedupe.merge_by_hand(engine(), survivor, other, actor=who, settings=current_settings())
    except ValueError as exc:
        flash(_("Merge refused: %(reason)s", reason=str(exc)), "error")
        return redirect(back)
    with engine().begin() as conn:
        audit.record(conn, who, "contact_merged", contact_id=survivor, merged=other)
    flash(_("Merged #%(merged)s into #%(survivor)s.", merged=result["merged"], survivor=result["survivor"]), "ok")
    if result["kept_apart_before"]:
        flash(_("These two had been kept apart by an undone merge; your merge now wins."), "ok")
    return redirect(url_for("contacts.card", contact_id=survivor))


@bp.post("/merges/<int:merge_id>/undo")
@allow(read=None, write="marketer")
def unmerge(merge_id: int) -> Any:
    """Undo a merge a person found wrong: the merged contact comes back with what it brought (hub.unmerge)."""
    from hub import unmerge as unmerging  # the undo lives beside merge_contacts' log, not in the admin

    back = local_path(request.form.get("back"), url_for("contacts.duplicates"))
    if not ActionForm().validate_on_submit():
        flash(_("Merge not undone: the form expired; open the page again."), "error")
        return redirect(back)
    user = current_user()
    who = user.email if user is not None else "admin"
    try:
        result = unmerging.unmerge(engine(), current_settings(), merge_id, actor=who)
    except ValueError as exc:  # unmerging.UnmergeRefused, or a merge that is not there: one line
        flash(str(exc), "error")  # one sentence already: "Слияние №5 уже отменено."
        return redirect(back)
    restored, survivor = result["restored"], result["survivor"]  # hub.unmerge wrote the audit entry
    flash(_("Merge undone: #%(restored)s is a contact of its own again, apart from #%(survivor)s.",
            restored=restored, survivor=survivor), "ok")
    return redirect(url_for("contacts.card", contact_id=restored))
