"""Message templates: the list, an editor with a live preview, test letters and versions.

Templates render in hub.message_templates' sandbox whatever the admin does.
An email's HTML is never put into the admin's own page: the preview is kept
for a few minutes under a random token, for the person who asked for it
only, and served by `frame` as a page of its own (hub.admin.letter_frame:
its own policy, so the letter's inline styles show as a mail client shows
them, and a sandbox, so it can never act on the admin). The preview renders
what is typed, before it is saved; so does a test letter.

Saving checks the template against the sample contact, as `hub templates
add` does, and a failure names the part and line; every save is a version
(hub.template_versions) that can be compared with the one before and
restored.
"""

from __future__ import annotations

import re
from typing import Any, cast

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from markupsafe import escape
from wtforms import TextAreaField
from wtforms.validators import Length, Optional

from hub import i18n, message_templates, messaging, template_variables, template_versions
from hub.admin import audit, letter_previews
from hub.admin.access import actor, allow, current_user, engine
from hub.admin.app import current_settings
from hub.admin.forms import ActionForm, TemplateForm
from hub.admin.letter_frame import letter_response
from hub.config import Settings, SettingsError
from hub.i18n import gettext as _, lazy_gettext, ngettext
from hub.db import whole_number
from hub.message_templates import TemplateError
from hub.messaging import sms_cost
from hub.messaging.test_send import MAX_ID, send_test, sent_text

bp = Blueprint("message_templates", __name__, url_prefix="/templates")

MAX_PART = 200_000  # characters in the text or HTML part: far beyond any letter, far below a flood
RESTORED = "template_restored"
TEST_SENT = "template_test_sent"
AUDIT_ACTIONS = {RESTORED: i18n.N_("template version restored"), TEST_SENT: i18n.N_("test letter sent")}


def _l(message: str) -> str:
    """A label or message translated when it is shown (a str to WTForms)."""
    return cast(str, lazy_gettext(message))


_TOO_LONG = _l("too long: at most 200,000 characters")


class EditorForm(TemplateForm):
    """The template form of the editor: an email may leave its text empty (it is written from the HTML)."""

    text = TextAreaField(_l("Text"), validators=[Optional(), Length(max=MAX_PART, message=_TOO_LONG)])
    html = TextAreaField("HTML", validators=[Optional(), Length(max=MAX_PART, message=_TOO_LONG)])


# --- previews kept for their frame --------------------------------------------------------

def _owner() -> str:
    user = current_user()
    return f"user:{user.id}" if user else ""


def keep_frame(html: str) -> str:
    """Keep a rendered letter for its frame; the URL that shows it to the person who asked, for a few minutes."""
    token = letter_previews.keep(current_settings(), _owner(), html)
    return url_for("message_templates.frame", token=token)


@bp.get("/frame/<token>")
@allow(read="viewer")
def frame(token: str) -> Any:
    """A kept preview as its own page, for its frame; anyone else gets 404, as does an expired one."""
    html = letter_previews.read(current_settings(), token, _owner())
    if html is None:
        abort(404)
    return letter_response(html)


# --- preview ------------------------------------------------------------------------------

def _context(conn: Any, settings: Settings, contact_id: int | None) -> tuple[dict[str, Any] | None, str]:
    if contact_id is None:
        return {}, _("the sample contact")
    contact = messaging.contact_contexts(conn, settings, [contact_id]).get(contact_id) if contact_id <= MAX_ID \
        else None
    if contact is None:
        return None, _("no contact with id %(id)s", id=contact_id)
    return {"contact": contact}, _("contact #%(id)s", id=contact_id)


def preview(conn: Any, settings: Settings, template: message_templates.Template,
            contact_id: int | None) -> dict[str, Any]:
    """What `template` renders to for a contact (or the sample one); {"error": ...} when it cannot."""
    found, who = _context(conn, settings, contact_id)
    if found is None:
        return {"error": who}
    # The contact's data, but never their signed links: a preview is not a send to them.
    context = message_templates.preview_context(settings, found.get("contact"))
    context |= template_variables.samples(settings)
    context |= message_templates.preview_links(settings)
    try:
        if template.is_email and not (template.subject or "").strip():
            raise TemplateError(message_templates.needs_subject(template.name))
        rendered = message_templates.render(template, context)
    except TemplateError as exc:
        return {"error": str(exc)}
    out: dict[str, Any] = {"for": who, "subject": rendered.subject, "text": rendered.text, "html": rendered.html,
                           "text_generated": not message_templates.writes_text(template)}
    if rendered.html is not None:
        out["frame_url"] = keep_frame(rendered.html)
    if not template.is_email:
        out["sms_parts"] = messaging.text_parts(rendered.text)
        out["characters"] = len(rendered.text)
        out["parts_text"] = sms_size(out["characters"], out["sms_parts"])
        # how it is billed, and about what it costs when HUB_SMS_PRICE is set
        try:
            cost = sms_cost.cost_text(out["sms_parts"], sms_cost.price(settings))
        except SettingsError as exc:  # a mistyped price is said where the price would be
            cost = str(exc)
        out["sms_cost_text"] = ", ".join(t for t in (sms_cost.size_text(rendered.text), cost) if t)
    return out


def sms_size(characters: int, parts: int) -> str:
    """"160 characters, 1 SMS" in the reader's language (the preview script shows the same text)."""
    return ", ".join((ngettext("%(num)s character", "%(num)s characters", characters),
                      ngettext("%(num)s SMS", "%(num)s SMS", parts)))


def titles(template: message_templates.Template | None) -> dict[str, str]:
    """The title and description its meta.yaml gives, in the reader's language (shipped ones are translated)."""
    if template is None:
        return {"title": "", "description": ""}
    return {"title": i18n.title(template.title), "description": i18n.title(template.description)}


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def lines_title(header: str) -> str:
    """A diff's hunk header ("@@ -1,3 +1,4 @@") as people read it: the lines of the newer version it shows."""
    found = _HUNK.match(header)
    if not found:
        return ""
    old_start, old_count, new_start, new_count = (int(g) if g is not None else 1 for g in found.groups())
    start, count = (new_start, new_count) if new_count else (old_start, old_count)
    if count <= 1:
        return _("Line %(line)s", line=max(start, 1))
    return _("Lines %(first)s–%(last)s", first=start, last=start + count - 1)


def _contact_arg(raw: Any) -> int | None:
    text = str(raw or "").strip().lstrip("#")
    return whole_number(text)


def _from_form(form: TemplateForm) -> message_templates.Template:
    channel = form.channel.data or "email"
    email = channel == message_templates.EMAIL
    return message_templates.Template(name=(form.name.data or "").strip(), channel=channel,
                                      subject=(form.subject.data or None) if email else None,
                                      text=form.text.data or "", html=(form.html.data or None) if email else None)


def _form_error(form: TemplateForm) -> str:
    return "; ".join(f"{form[f].label.text}: {e}" if f != "csrf_token" else str(e)
                     for f, errors in form.errors.items() for e in errors)


def own_address() -> str:
    """Where a test letter goes: the signed-in person's own email, never an address typed in a form.

    A test renders a real contact's letter when one is chosen for the
    preview; sent to any address, it would hand their data to whoever typed it.
    """
    user = current_user()
    return user.email if user else ""


def _test_address(channel: str) -> str:
    """The address for a test letter; MessagingError when the form asks for another one or the channel has none."""
    own = own_address()
    typed = str(request.form.get("to") or "").strip()
    if typed and typed.casefold() != own.casefold():
        raise messaging.MessagingError(_("A test letter goes only to your own address, %(own)s; %(typed)s is "
                                         "refused.", own=own, typed=typed[:80]))
    if channel != message_templates.EMAIL:
        raise messaging.MessagingError(_("A test goes to your own email address, so only email templates can be "
                                         "tested here."))
    return own


BUTTON_STYLE = ("display:inline-block;padding:12px 24px;background-color:#2b6cb0;color:#ffffff;"
                "text-decoration:none;border-radius:6px;font-weight:bold")


def blocks() -> dict[str, str]:
    """Ready HTML for the picker's "Insert" group, so a button needs no HTML written by hand.

    Styles are inline: mail clients drop a letter's <style> blocks, not its style attributes.
    """
    shop, discount = escape(_("Go to the shop")), escape(_("Your promo code for a %(discount)s%% discount:",
                                                                 discount="{{ promo.discount }}"))
    until = escape(_("Valid until %(date)s", date="{{ promo.expires_at|date }}"))
    button = f'<p><a href="https://example.ru/" style="{BUTTON_STYLE}">{shop}</a></p>'
    promo = ('<div style="border:2px dashed #2b6cb0;padding:16px;margin:16px 0;text-align:center">'
             f'<p style="margin:0 0 8px">{discount}</p>'
             '<p style="margin:0;font-size:24px;font-weight:bold;letter-spacing:2px">{{ promo.code }}</p>'
             f'<p style="margin:8px 0 0;font-size:13px;color:#555555">{until}</p></div>')
    return {"button_snippet": button, "promo_snippet": promo}


def _base(form_value: Any) -> tuple[int | None, str | None]:
    """The version the editor was opened at (-1: a new template; None: not given), or what is wrong with it."""
    text = str(form_value if form_value is not None else "").strip()
    if not text:
        return None, None
    if text == "-1":
        return -1, None
    version = whole_number(text, least=0, most=10**9 - 1)
    if version is None:
        return None, _("The version the editor was opened at, %(value)s, is not a number: reload the page.",
                       value=repr(text[:40]))
    return version, None


def _page(form: TemplateForm, template: message_templates.Template | None, result: dict[str, Any] | None,
          status: int = 200, sent: dict[str, Any] | None = None, *, base: int | None = None,
          conflict: template_versions.Version | None = None) -> Any:
    """The editor: the form, the preview, the variables and, for a saved template, its versions.

    `base` is the version the form carries back on save (by default the
    newest one shown); `conflict` the version someone else saved meanwhile.
    """
    settings = current_settings()
    versions: list[template_versions.Version] = []
    if template is not None:
        with engine().connect() as conn:
            versions = template_versions.history(conn, settings, template.name)
    if base is None:
        base = versions[0].number if versions else -1
    # A template made here from scratch has no shipped original to fall back to: removing it deletes it.
    original = template is not None and message_templates.shipped(settings, template.name) is not None
    return render_template("message_templates/edit.html", form=form, template=template, result=result,
                           variables=template_variables.variables(settings), versions=versions, sent=sent,
                           test_to=own_address(), base=base, conflict=conflict, has_original=original,
                           **blocks(), **titles(template)), status


# --- pages --------------------------------------------------------------------------------

@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    with engine().connect() as conn:
        found = message_templates.all_templates(conn, current_settings())
    rows = [{"template": t, **titles(t)} for t in found]
    return render_template("message_templates/list.html", templates=rows)


@bp.get("/new")
@allow(read="marketer")
def new() -> Any:
    return _page(EditorForm(channel="email"), None, None)


@bp.get("/<name>")
@allow(read="viewer")
def edit(name: str) -> Any:
    settings = current_settings()
    contact_id = _contact_arg(request.args.get("contact"))
    with engine().connect() as conn:
        try:
            template = message_templates.get(conn, settings, name)
        except TemplateError:
            abort(404)
        result = preview(conn, settings, template, contact_id)
    form = EditorForm(name=template.name, channel=template.channel, subject=template.subject, text=template.text,
                      html=template.html, contact=contact_id)
    return _page(form, template, result)


@bp.post("/preview")
@allow(read=None, write="marketer")
def preview_json() -> Any:
    """The preview of the text being edited, before it is saved."""
    form = EditorForm()
    if not form.validate():
        return {"error": _form_error(form)}, 400
    with engine().connect() as conn:
        return preview(conn, current_settings(), _from_form(form), form.contact.data)


def _editing(settings: Settings) -> message_templates.Template | None:
    """The saved template a refused form was editing, to keep the page it came from."""
    name = str(request.form.get("editing") or "").strip()
    if not name:
        return None
    with engine().connect() as conn:
        try:
            return message_templates.get(conn, settings, name)
        except TemplateError:
            return None


@bp.post("/test")
@allow(read=None, write="marketer")
def test_send() -> Any:
    """A test letter of the text being edited (saved or not), to the signed-in person's own address only."""
    form = EditorForm()
    wants_json = request.accept_mimetypes.best == "application/json"
    sent: dict[str, Any] | None = None
    if not form.validate():
        error = _form_error(form)
    else:
        template = _from_form(form)
        try:
            sent = send_test(engine(), current_settings(), template=template, channel=template.channel,
                             to=_test_address(template.channel), contact_id=form.contact.data)
            with engine().begin() as conn:  # the staff member's own address: kept whole
                audit.record(conn, actor(), TEST_SENT, template=template.name, channel=template.channel,
                             address=sent["address"])
            error = None
        except messaging.MessagingError as exc:
            error = str(exc)
    if wants_json:
        if error:
            return {"error": error}, 400
        assert sent is not None
        return {"ok": True, "message": sent_text(sent), **sent}
    if error:
        flash(error, "error")
    else:
        assert sent is not None
        flash(sent_text(sent), "ok")
    return _page(form, _editing(current_settings()), None, 400 if error else 200,
                 base=_base(request.form.get("base"))[0])


@bp.post("/save")
@allow(read=None, write="marketer")
def save() -> Any:
    form = EditorForm()
    settings = current_settings()
    base, error = _base(request.form.get("base"))
    if error is None and form.validate():
        template = _from_form(form)
        try:
            with engine().begin() as conn:
                same = template_versions.unchanged(conn, settings, template)
                if same is None:
                    version = template_versions.save(conn, settings, template, actor(), base=base)
                    audit.record(conn, actor(), "template_saved", template=template.name, channel=template.channel,
                                 version=version.number)
        except template_versions.Conflict as exc:
            # Their version stays; the form keeps what was typed and now carries their version, so saving
            # again (after reading what they changed) is a decision, not an accident.
            return _page(form, _editing(settings), None, 409, base=exc.latest.number, conflict=exc.latest)
        except TemplateError as exc:
            error = str(exc)
        else:
            if same is not None:
                flash(_("Nothing changed in %(name)s: version %(version)s stays the current one.",
                        name=template.name, version=same.number), "ok")
            else:
                flash(_("Saved template %(name)s; it renders against the sample contact.", name=template.name),
                      "ok")
            return redirect(url_for("message_templates.edit", name=template.name, contact=form.contact.data or None))
    elif error is None:
        error = _form_error(form)
    # A refused edit of an existing template stays on its page, with the text as typed and the error next to it.
    return _page(form, _editing(settings), {"error": error}, 400, base=base)


@bp.get("/<name>/versions/<int:number>")
@allow(read="viewer")
def version(name: str, number: int) -> Any:
    """One version, and what changed since the one before it."""
    settings = current_settings()
    with engine().connect() as conn:
        found = template_versions.get(conn, settings, name, number)
        if found is None:
            abort(404)
        before = template_versions.previous(conn, settings, found)
    return render_template("message_templates/version.html", version=found, before=before,
                           changes=template_versions.diff(before, found), form=ActionForm(),
                           lines_title=lines_title)


@bp.post("/<name>/versions/<int:number>/restore")
@allow(read=None, write="marketer")
def restore(name: str, number: int) -> Any:
    if not ActionForm().validate_on_submit():
        flash(_("The form's security token is missing or has expired. Reload the page and send it again."), "error")
        return redirect(url_for("message_templates.edit", name=name))
    settings = current_settings()
    try:
        with engine().begin() as conn:
            head = template_versions.latest(conn, settings, name)
            made = template_versions.restore(conn, settings, name, number, actor())
            if head is None or made.number != head.number:
                audit.record(conn, actor(), RESTORED, template=name, restored=number, version=made.number)
    except TemplateError as exc:
        flash(str(exc), "error")
        return redirect(url_for("message_templates.index"))
    if head is not None and made.number == head.number:
        flash(_("Nothing changed in %(name)s: version %(version)s stays the current one.", name=name,
                version=made.number), "ok")
    else:
        flash(_("Version %(old)s of %(name)s is restored as version %(new)s.", old=number, name=name,
                new=made.number), "ok")
    return redirect(url_for("message_templates.edit", name=name))


@bp.post("/<name>/remove")
@allow(read=None, write="marketer")
def remove(name: str) -> Any:
    if ActionForm().validate_on_submit():
        original = message_templates.shipped(current_settings(), name) is not None
        with engine().begin() as conn:
            removed = message_templates.remove(conn, name)
            if removed:
                audit.record(conn, actor(), "template_removed", template=name)
        if not removed:
            flash(_("%(name)s has no edited copy to remove.", name=name), "error")
        elif original:
            flash(_("Removed the edited copy of %(name)s.", name=name), "ok")
        else:
            flash(_("Removed the template %(name)s.", name=name), "ok")
    return redirect(url_for("message_templates.index"))
