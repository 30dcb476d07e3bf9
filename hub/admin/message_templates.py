"""Message templates: the list, an editor, and a preview for a chosen contact.

Templates render in hub.message_templates' sandbox whatever the admin does; the
preview shows an email's HTML inside a sandboxed frame (no scripts, no
access to the admin), so a template can never act on the page showing it.
Saving checks the template against the sample contact, as `hub templates
add` does, and a failure names the part and line.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from hub import i18n, message_templates, messaging
from hub.admin import audit
from hub.admin.access import actor, allow, engine
from hub.admin.app import current_settings
from hub.admin.forms import ActionForm, TemplateForm
from hub.config import Settings
from hub.i18n import gettext as _, ngettext
from hub.message_templates import TemplateError

bp = Blueprint("message_templates", __name__, url_prefix="/templates")


def preview(conn: Any, settings: Settings, template: message_templates.Template,
            contact_id: int | None) -> dict[str, Any]:
    """What `template` renders to for a contact (or the sample one); {"error": ...} when it cannot."""
    context = message_templates.preview_context(settings)
    who = _("the sample contact")
    if contact_id is not None:
        contact = messaging.contact_contexts(conn, settings, [contact_id]).get(contact_id)
        if contact is None:
            return {"error": _("no contact with id %(id)s", id=contact_id)}
        # The contact's data, but never their signed links: a preview is not a send to them.
        context = message_templates.preview_context(settings, contact)
        who = _("contact #%(id)s", id=contact_id)
    try:
        if template.is_email and not (template.subject or "").strip():
            raise TemplateError(message_templates.needs_subject(template.name))
        rendered = message_templates.render(template, context)
    except TemplateError as exc:
        return {"error": str(exc)}
    out: dict[str, Any] = {"for": who, "subject": rendered.subject, "text": rendered.text, "html": rendered.html}
    if not template.is_email:
        out["sms_parts"] = messaging.text_parts(rendered.text)
        out["characters"] = len(rendered.text)
        out["parts_text"] = sms_size(out["characters"], out["sms_parts"])
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


def _contact_arg(raw: Any) -> int | None:
    text = str(raw or "").strip().lstrip("#")
    return int(text) if text.isdigit() else None


def _from_form(form: TemplateForm) -> message_templates.Template:
    channel = form.channel.data or "email"
    email = channel == message_templates.EMAIL
    return message_templates.Template(name=(form.name.data or "").strip(), channel=channel,
                              subject=(form.subject.data or None) if email else None, text=form.text.data or "",
                              html=(form.html.data or None) if email else None)


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
    form = TemplateForm(channel="email")
    return render_template("message_templates/edit.html", form=form, template=None, result=None, **titles(None))


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
    form = TemplateForm(name=template.name, channel=template.channel, subject=template.subject, text=template.text,
                        html=template.html, contact=contact_id)
    return render_template("message_templates/edit.html", form=form, template=template, result=result,
                           **titles(template))


@bp.post("/preview")
@allow(read=None, write="marketer")
def preview_json() -> Any:
    """The preview of the text being edited, before it is saved."""
    form = TemplateForm()
    if not form.validate():
        return {"error": "; ".join(str(e) for errors in form.errors.values() for e in errors)}, 400
    with engine().connect() as conn:
        return preview(conn, current_settings(), _from_form(form), form.contact.data)


@bp.post("/save")
@allow(read=None, write="marketer")
def save() -> Any:
    form = TemplateForm()
    settings = current_settings()
    error = None
    if form.validate():
        template = _from_form(form)
        try:
            with engine().begin() as conn:
                message_templates.save(conn, settings, template)
                audit.record(conn, actor(), "template_saved", template=template.name, channel=template.channel)
        except TemplateError as exc:
            error = str(exc)
        else:
            flash(_("Saved template %(name)s; it renders against the sample contact.", name=template.name), "ok")
            return redirect(url_for("message_templates.edit", name=template.name, contact=form.contact.data or None))
    else:
        error = "; ".join(f"{form[f].label.text}: {e}" for f, errors in form.errors.items() for e in errors)
    # A refused edit of an existing template stays on its page, with the text as typed and the error next to it.
    editing = None
    name = str(request.form.get("editing") or "").strip()
    if name:
        with engine().connect() as conn:
            try:
                editing = message_templates.get(conn, settings, name)
            except TemplateError:
                editing = None
    return render_template("message_templates/edit.html", form=form, template=editing, result={"error": error},
                           **titles(editing)), 400


@bp.post("/<name>/remove")
@allow(read=None, write="marketer")
def remove(name: str) -> Any:
    if ActionForm().validate_on_submit():
        with engine().begin() as conn:
            removed = message_templates.remove(conn, name)
            if removed:
                audit.record(conn, actor(), "template_removed", template=name)
        flash(_("Removed the edited copy of %(name)s.", name=name) if removed
              else _("%(name)s has no edited copy to remove.", name=name), "ok" if removed else "error")
    return redirect(url_for("message_templates.index"))
