"""The GDPR page of the admin: the consent log, and one person's data export and erasure.

The consent log reads the append-only ledger (hub.consent) newest first.
Export and erasure are this plugin's (export.export, erasure.erase), offered
to admins only, here and on the contact's card (``contact_section``). Erasure
cannot be undone, so the admin types ERASE to confirm it; both are recorded
in the audit log, naming the admin. Registered through register_admin_pages
like any plugin's page.
"""

from __future__ import annotations

import json
from typing import Any, cast

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import Connection, select
from wtforms import BooleanField, StringField
from wtforms.validators import DataRequired

# not in hub.api on purpose: the ledger's other side: suppressions, address hashes, history, counts; erasure and public
# sign-up work on identities, placeholders and merges
from hub import consent, identity
from hub.api import whole_number
from hub.api import (N_, ActionForm, AdminPage, Contact, ExternalRef, actor, allow, consent_status_title, contact_card,
                     current_settings, current_user, engine, format_number, gettext as _, lazy_gettext, ngettext)
# not in hub.api on purpose: export and erasure reach every core table that holds personal data
from hub.models import ConsentEvent
from plugins.gdpr import erasure, export
from plugins.gdpr.audit_details import AUDIT_DETAILS
from plugins.gdpr.topics import channel_label, purpose_label

bp = Blueprint("gdpr", __name__, url_prefix="/gdpr", template_folder="admin_templates")

# What this plugin writes to the audit log (plugins.gdpr.audit), as the audit page names it.
AUDIT_ACTIONS = {
    "consent.granted": N_("consent granted"), "consent.withdrawn": N_("consent withdrawn"),
    "consent.pending": N_("consent awaiting confirmation"), "gdpr.export": N_("personal data exported"),
    "gdpr.erase": N_("contact erased"), "gdpr.erase.sources": N_("erasure sent to the sources"),
    "gdpr.anonymize": N_("contact anonymized"), "gdpr.retention": N_("retention run"),
}


def contact_section(conn: Connection, contact_id: int) -> Markup | None:
    """Export and erase on the contact's card, for admins only (the routes refuse everyone else too)."""
    user = current_user()
    if user is None or not user.can("admin"):
        return None
    return Markup(render_template("gdpr/contact_actions.html", contact_id=contact_id, erase_form=ConfirmForm(),
                                  word=CONFIRM_WORD, erased=identity.is_erased(conn, contact_id),
                                  crms=crms_of(conn, contact_id)))


PAGE = AdminPage(bp, "gdpr.index", N_("GDPR and consent"), order=70, read_role="viewer",
                 write_role="admin", audit_actions=AUDIT_ACTIONS, audit_details=AUDIT_DETAILS,
                 contact_section=contact_section)

events_t = ConsentEvent.__table__
contacts_t = Contact.__table__
LIMIT = 200
CONFIRM_WORD = "ERASE"

class ConfirmForm(FlaskForm):
    """For what cannot be undone: the person types a word to confirm."""

    # Translated when the form is shown, in the reader's language.
    confirm = StringField(cast(str, lazy_gettext("Type %(word)s to confirm", word=CONFIRM_WORD)),
                          validators=[DataRequired(cast(str, lazy_gettext("Type %(word)s to confirm.",
                                                                          word=CONFIRM_WORD)))])
    # Unticked by default: a CRM deletion cannot be undone either, and some shops keep the CRM's copy.
    # "0", "no", "off" are a script's way of saying no, not yes (WTForms counts any other value as ticked).
    in_crm = BooleanField(cast(str, lazy_gettext("Also erase in the CRM")),
                          false_values=(False, "false", "False", "0", "no", "off", ""))


def crms_of(conn: Connection, contact_id: int) -> list[str]:
    """The CRMs holding the person, as people know them, for the "also erase in the CRM" choice."""
    refs_t = ExternalRef.__table__
    names = conn.execute(select(refs_t.c.source).where(refs_t.c.contact_id == contact_id)
                         .distinct().order_by(refs_t.c.source)).scalars()
    return [erasure.product(name) for name in names]


def consent_log(conn: Connection, *, contact_id: int | None = None, channel: str | None = None,
                status: str | None = None, limit: int = LIMIT) -> list[dict[str, Any]]:
    q = (select(events_t, contacts_t.c.first_name, contacts_t.c.last_name)
         .outerjoin(contacts_t, contacts_t.c.id == events_t.c.contact_id).order_by(events_t.c.id.desc()).limit(limit))
    if contact_id is not None:
        q = q.where(events_t.c.contact_id == contact_id)
    if channel:
        q = q.where(events_t.c.channel == channel)
    if status:
        q = q.where(events_t.c.status == status)
    return [dict(r._mapping) for r in conn.execute(q)]


def _contact_number(raw: str) -> int | None:
    text = raw.strip().lstrip("#")
    return whole_number(text)


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    settings = current_settings()
    raw = request.args.get("contact", "")
    contact_id = _contact_number(raw)
    channel = request.args.get("channel") or None
    status = request.args.get("status") or None
    error = None
    if raw.strip() and contact_id is None:
        error = _("%(text)r is not a contact number", text=raw.strip())
    if channel and channel not in consent.channels(settings):
        error, channel = _("channel %(channel)r is not one of: %(known)s", channel=channel,
                           known=", ".join(consent.channels(settings))), None
    if status and status not in consent.STATUSES:
        error, status = _("status %(status)r is not one of: %(known)s", status=status,
                          known=", ".join(consent.STATUSES)), None
    with engine().connect() as conn:
        rows = consent_log(conn, contact_id=contact_id, channel=channel, status=status)
        totals = consent.counts_by_status(conn)
    return render_template("gdpr/index.html", rows=rows, totals=totals, contact=raw.strip(), channel=channel or "",
                           status=status or "", channels=consent.channels(settings), statuses=consent.STATUSES,
                           error=error, channel_label=lambda c: channel_label(settings, c),
                           purpose_label=lambda p: purpose_label(settings, p),
                           status_label=consent_status_title)


@bp.get("/person")
@allow(read="admin")
def person() -> Any:
    """One person's GDPR page: what Hub holds in short, export, erase."""
    raw = request.args.get("contact", "")
    contact_id = _contact_number(raw)
    if contact_id is None:
        flash(_("%(text)r is not a contact number.", text=raw.strip()) if raw.strip() else _("Enter a contact number."),
              "error")
        return redirect(url_for("gdpr.index"))
    with engine().connect() as conn:
        card = contact_card(conn, contact_id)
        erased = identity.is_erased(conn, contact_id)
        crms = crms_of(conn, contact_id)
    if card is None and not erased:  # told on this page, not flashed onto whichever page comes next
        return render_template("error.html", code=404, title=_("Not found"),
                               message=_("No contact with id %(id)s.", id=contact_id)), 404
    return render_template("gdpr/person.html", contact_id=contact_id, c=card, erased=erased,
                           export_form=ActionForm(), erase_form=ConfirmForm(), word=CONFIRM_WORD, crms=crms)


@bp.post("/person/<int:contact_id>/export")
@allow(read=None, write="admin")
def export_file(contact_id: int) -> Any:
    """The whole export as a JSON file to hand to the person (a POST: making one is audited)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        data = export.export(engine(), current_settings(), contact_id, actor=actor())
    except ValueError as exc:
        flash(_("Export refused: %(reason)s", reason=exc), "error")
        return redirect(url_for("gdpr.index"))
    body = json.dumps(data, ensure_ascii=False, default=str, indent=2)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="contact-{contact_id}-export.json"'})


@bp.post("/person/<int:contact_id>/erase")
@allow(read=None, write="admin")
def erase(contact_id: int) -> Any:
    form = ConfirmForm()
    back = redirect(url_for("gdpr.person", contact=contact_id))
    if not form.validate() or (form.confirm.data or "").strip() != CONFIRM_WORD:
        flash(_("Not erased: type %(word)s in capitals to confirm.", word=CONFIRM_WORD), "error")
        return back
    try:
        report = erasure.erase(engine(), current_settings(), contact_id, actor=actor(),
                               delete_in_sources=bool(form.in_crm.data), in_background=True)
    except ValueError as exc:
        flash(_("Not erased: %(reason)s", reason=exc), "error")
        return back
    if report.already_erased:
        flash(_("Contact #%(id)s was erased already; nothing more to remove.", id=contact_id), "ok")
    else:
        removed = sum(report.removed.values())
        records = ngettext("%(num)s record removed or blanked", "%(num)s records removed or blanked", removed,
                           num=format_number(removed))
        addresses = ngettext("%(num)s address suppressed", "%(num)s addresses suppressed", report.suppressed,
                             num=format_number(report.suppressed))
        flash(_("Erased contact #%(id)s: %(records)s, %(addresses)s so the person is never contacted again.",
                id=contact_id, records=records, addresses=addresses), "ok")
    for item in report.sources:  # each CRM's answer, and a refusal as an error to act on
        flash(_("In the CRM: %(answer)s.", answer=erasure.describe(item)),
              "ok" if item["result"] in erasure.CONFIRMED else "error")
    said = erasure.describe_crm(report)  # the CRMs are asked by a worker: a CRM that is down keeps no one waiting
    if said:
        flash(said, "ok")
    return back
