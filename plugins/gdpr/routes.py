"""The public pages customers reach from their email and from website forms.

    GET  /u/TOKEN            a page with one button: unsubscribe from this topic
    POST /u/TOKEN            List-Unsubscribe=One-Click (RFC 8058): unsubscribes at once,
                             no page, no cookie, no CSRF token; the page's button posts here too
    GET  /preferences/TOKEN  every channel × topic with its answer, and "unsubscribe from everything"
    POST /preferences/TOKEN
    GET  /confirm/TOKEN      double opt-in: a page with the confirm button (mail scanners open
    POST /confirm/TOKEN      links by themselves, so only the button grants)
    GET  /consent/form       a signup form Hub hosts itself (?form=NAME)
    POST /consent/form       signups from that form or from a site listed in [gdpr] form_origins
    POST /api/consent        signups as JSON from a site's backend, with the API key

Pages are plain HTML in the shop's language (HUB_LANGUAGE: Russian unless the
shop chose English; autoescaped templates, one small stylesheet, readable on a
phone). A bad, expired or used link gets a page that says so,
never a traceback. The work behind each page lives in capture.py and
preferences.py; this module only reads requests and picks pages.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

# not in hub.api on purpose: the plugin serves the signed links' routes, so it reads the tokens the core makes
from hub import links
from hub.api import (SettingsError, company, current_language, current_settings, enqueue, get_engine, gettext as _,
                     lazy_gettext, use_language)
# not in hub.api on purpose: the double opt-in letter, and previews of the public pages
from hub.message_templates import PREVIEW_TOKEN
from plugins.gdpr import capture, config, csrf, preferences
from plugins.gdpr.topics import PROCESSING, Topic, TopicError, channel_label, label, parse, purpose_label

log = logging.getLogger(__name__)
bp = Blueprint("gdpr_public", __name__, template_folder="templates", static_folder="static",
               static_url_path="/gdpr-static")
bp.after_request(csrf.set_cookie)

ONE_CLICK = "One-Click"
# What the HTML form says about each field the signup check can complain about.
FIELD_MESSAGES = {
    "email": lazy_gettext("Enter the whole email address, for example anna@example.ru."),
    "phone": lazy_gettext("The phone number could not be read; check it or leave the field empty."),
    "topics": lazy_gettext("Choose at least one mailing."),
    "form_id": lazy_gettext("This form is not set up; please tell the site's owner."),
    "channel": lazy_gettext("This form can only subscribe an email address: consent to SMS and calls is not "
                            "taken this way."),
}


def _engine() -> Any:
    return get_engine(current_settings().database_url)


def _client() -> dict[str, str | None]:
    return {"ip": request.remote_addr, "user_agent": request.user_agent.string or None}


def _page(name: str, status: int = 200, **context: Any) -> tuple[str, int]:
    settings = current_settings()
    return render_template(f"gdpr_public/{name}.html", company=company(settings), lang=current_language(),
                           **context), status


def _message(title: str, text: str, status: int, **context: Any) -> tuple[str, int]:
    return _page("message", status, title=title, text=text, **context)


def _bad_link(exc: links.LinkError) -> tuple[str, int]:
    if isinstance(exc, links.LinkExpired):
        return _message(_("The link has expired"),
                        _("A confirmation link works for 7 days. Sign up again and we will send a new one."), 410)
    return _broken_link()


def _broken_link() -> tuple[str, int]:
    return _message(_("The link does not work"),
                    _("It looks like the link was not copied whole. Open it from the email again."), 404)


def _gone() -> tuple[str, int]:
    # A link to someone erased (or merged into someone erased): nothing is held, so nothing can change.
    return _message(_("The link no longer works"),
                    _("We hold no data about you: your data is no longer with us, and we will not write to you."),
                    410)


def _person(target: links.LinkTarget) -> links.LinkTarget | None:
    """The link's target as the person is now (the survivor of any merge), or None when nothing is held."""
    with _engine().connect() as conn:
        return links.current(conn, target)


def _stale_form() -> tuple[str, int]:
    return _message(_("The form is out of date"), _("Open the link from the email again and repeat the action."),
                    400)


# --- links from a preview, and paths that are no link at all --------------------------------

@bp.get(f"/u/{PREVIEW_TOKEN}")
@bp.get(f"/preferences/{PREVIEW_TOKEN}")
@bp.get(f"/confirm/{PREVIEW_TOKEN}")
def preview_link() -> Any:
    # Previews carry these instead of a person's signed link, so nothing can be changed through them.
    return _message(_("This is a link from a preview"),
                    _("Such a link only appears in a preview of a letter. In a real letter, the recipient's own "
                      "link will be here."), 200)


@bp.route("/u/", methods=["GET", "POST"])
@bp.route("/u/<path:rest>", methods=["GET", "POST"])
@bp.route("/preferences/", methods=["GET", "POST"])
@bp.route("/preferences/<path:rest>", methods=["GET", "POST"])
@bp.route("/confirm/", methods=["GET", "POST"])
@bp.route("/confirm/<path:rest>", methods=["GET", "POST"])
@bp.route("/consent/", methods=["GET", "POST"])
@bp.route("/consent/<path:rest>", methods=["GET", "POST"])
def no_such_link(rest: str = "") -> Any:
    # A link cut short or with a stray slash: the customer's page in the shop's language, not the admin's 404.
    return _broken_link()


# --- one-click unsubscribe ------------------------------------------------------------------

@bp.get("/u/<token>")
def unsubscribe_page(token: str) -> Any:
    settings = current_settings()
    try:
        target = links.read_unsubscribe(settings, token)
    except links.LinkError as exc:
        return _bad_link(exc)
    topic = Topic(target.channel or "email", target.purpose or "marketing")
    person = _person(target)
    if person is None:
        return _gone()
    done = preferences.status_of(_engine(), person.contact_id, topic.channel, topic.purpose) == "withdrawn"
    return _page("unsubscribe", topic=label(settings, topic), done=done, csrf_token=csrf.token(f"u:{token}"),
                 preferences_url=links.preferences_url(settings, person.contact_id))


@bp.post("/u/<token>")
def unsubscribe(token: str) -> Any:
    settings = current_settings()
    one_click = request.form.get("List-Unsubscribe") == ONE_CLICK
    try:
        target = links.read_unsubscribe(settings, token)
    except links.LinkError as exc:
        return ("This unsubscribe link is not valid.\n", 404, {"Content-Type": "text/plain; charset=utf-8"}) \
            if one_click else _bad_link(exc)
    if not one_click and not csrf.valid(f"u:{token}"):
        return _stale_form()
    channel, purpose = target.channel or "email", target.purpose or "marketing"
    person = _person(target)
    if person is None:
        if one_click:  # RFC 8058 wants a 2xx; there is nobody left to unsubscribe
            return ("Nothing is held about this person.\n", 200, {"Content-Type": "text/plain; charset=utf-8"})
        return _gone()
    # Resolved again inside the write: a merge between the two readings still lands on the survivor.
    preferences.unsubscribe(_engine(), person.contact_id, channel, purpose,
                            method="one-click" if one_click else "page", **_client())
    if one_click:
        # RFC 8058: the provider wants a 2xx and nothing else; no redirect, no page.
        return ("Unsubscribed.\n", 200, {"Content-Type": "text/plain; charset=utf-8"})
    return _page("unsubscribe", topic=label(settings, Topic(channel, purpose)), done=True, just_now=True,
                 preferences_url=links.preferences_url(settings, person.contact_id))


# --- the preference centre ------------------------------------------------------------------

def _preferences_page(token: str, contact_id: int, notice: str | None = None) -> tuple[str, int]:
    settings = current_settings()
    from hub.plugins import get_pm  # not in hub.api: the page asks other plugins, as erasure does

    with _engine().connect() as conn:
        page = preferences.load(conn, settings, contact_id)
        # Other plugins' ways to subscribe (the preference_links hook: "Подключить Telegram").
        offered = [] if page is None else [
            link for answer in get_pm().hook.preference_links(conn=conn, settings=settings, contact_id=contact_id)
            for link in answer or [] if isinstance(link, dict) and str(link.get("url", "")).startswith("https://")]
    if page is None:
        return _gone()
    return _page("preferences", page=page, notice=notice, csrf_token=csrf.token(f"p:{token}"), offered=offered,
                 answer=lambda channel, purpose: page.status.get(Topic(channel, purpose)),
                 channel_label=lambda c: channel_label(settings, c),
                 purpose_label=lambda p: purpose_label(settings, p), company_email=company(settings)["email"])


@bp.get("/preferences/<token>")
def preferences_page(token: str) -> Any:
    try:
        target = links.read_preferences(current_settings(), token)
    except links.LinkError as exc:
        return _bad_link(exc)
    return _preferences_page(token, target.contact_id)


@bp.post("/preferences/<token>")
def preferences_save(token: str) -> Any:
    settings = current_settings()
    try:
        target = links.read_preferences(settings, token)
    except links.LinkError as exc:
        return _bad_link(exc)
    if not csrf.valid(f"p:{token}"):
        return _stale_form()
    if request.form.get("action") == "unsubscribe_all":
        changes = preferences.unsubscribe_all(_engine(), settings, target.contact_id, **_client())
        notice = _("You are unsubscribed from all mailings.") if changes else _("You were not receiving any "
                                                                                "mailings anyway.")
        return _preferences_page(token, target.contact_id, notice)
    chosen = set()
    for value in request.form.getlist("topic"):
        try:
            chosen.add(parse(settings, value))
        except TopicError:
            continue  # a topic removed from the settings since the page was shown
    changes = preferences.save(_engine(), settings, target.contact_id, chosen, **_client())
    return _preferences_page(token, target.contact_id, _("Settings saved.") if changes else _("Nothing changed."))


# --- double opt-in confirmation -------------------------------------------------------------

@bp.get("/confirm/<token>")
def confirm_page(token: str) -> Any:
    settings = current_settings()
    try:
        found = capture.pending(_engine(), settings, token)
    except links.LinkError as exc:
        return _bad_link(exc)
    return _confirm_result(found, button=found.status == "confirmed", token=token)


@bp.post("/confirm/<token>")
def confirm(token: str) -> Any:
    settings = current_settings()
    try:
        links.read_confirm(settings, token)
    except links.LinkError as exc:
        return _bad_link(exc)
    if not csrf.valid(f"c:{token}"):
        return _stale_form()
    try:
        done = capture.confirm(_engine(), settings, token, **_client())
    except links.LinkError as exc:  # expired between the two readings
        return _bad_link(exc)
    return _confirm_result(done, button=False, token=token, just_now=done.status == "confirmed")


def _confirm_result(result: capture.Confirmation, *, button: bool, token: str, just_now: bool = False) -> Any:
    settings = current_settings()
    if result.status == "gone":
        return _gone()
    if result.status == "unsent":
        # Made somewhere other than a letter to the person (e.g. a preview): only the person's own link confirms.
        return _message(_("The link does not work"),
                        _("This link was not sent to you in an email, so it cannot confirm a subscription. A "
                          "subscription can only be confirmed by the link from the email that came to your address."),
                        404)
    names, processing = [], False
    for text in result.topics:
        try:
            topic = parse(settings, text)
        except TopicError:  # a topic removed from the settings since the signup
            names.append(text)
            continue
        if topic.purpose == PROCESSING:
            processing = True
        else:
            names.append(label(settings, topic))
    prefs = links.preferences_url(settings, result.contact_id) if result.contact_id else None
    return _page("confirm", topics=names, processing=processing, button=button, already=result.status == "already",
                 just_now=just_now, csrf_token=csrf.token(f"c:{token}") if button else None, preferences_url=prefs)


# --- signups --------------------------------------------------------------------------------

def _origin() -> str | None:
    """The site a form was posted from: scheme, host and port only.

    Whatever else the header holds (a `user:password@` part, a path, a query) is the
    visitor's or the page's, not the site's: it is neither compared nor logged.
    """
    for header in ("Origin", "Referer"):
        value = request.headers.get(header)
        if value and value != "null":
            try:
                parts = urlsplit(value)
                host, port = parts.hostname, parts.port
            except ValueError:
                continue
            if parts.scheme not in ("http", "https") or not host or not _HOST.fullmatch(host):
                continue
            host = f"[{host}]" if ":" in host else host
            return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return None


_HOST = re.compile(r"[a-z0-9.-]{1,253}|[0-9a-f:.]{2,45}")


@bp.get("/consent/form")
def signup_page() -> Any:
    settings = current_settings()
    form_id = request.args.get("form") or config.DEFAULT_FORM
    form = config.forms(settings).get(form_id)
    if form is None:
        return _message(_("Form not found"), _("There is no such signup form. Check the page's address."), 404)
    return _signup_page(form, {})


def _signup_page(form: config.Form, values: dict[str, Any], problems: list[str] | None = None,
                 status: int = 200) -> tuple[str, int]:
    settings = current_settings()
    offered = [t for t in form.topics if t.purpose != PROCESSING]
    # Grouped like the preference centre: a topic per row, a checkbox per channel it is offered on.
    groups = [(purpose_label(settings, purpose), [(str(t), channel_label(settings, t.channel))
                                                  for t in offered if t.purpose == purpose])
              for purpose in dict.fromkeys(t.purpose for t in offered)]
    processing = next((str(t) for t in form.topics if t.purpose == PROCESSING and t.channel == "email"), None)
    return _page("signup", status, form=form, groups=groups, one_channel=len({t.channel for t in offered}) == 1,
                 processing=processing, values=values, chosen=set(values.get("topics") or []),
                 problems=problems or [], csrf_token=csrf.token(f"form:{form.name}"))


@bp.post("/consent/form")
def signup() -> Any:
    settings = current_settings()
    data: dict[str, Any] = {k: request.form.get(k) for k in ("email", "phone", "first_name", "last_name", "form_id",
                                                             "text_version")}
    data["topics"] = request.form.getlist("topic") + request.form.getlist("topics")
    form_id = data.get("form_id") or config.DEFAULT_FORM
    trusted = csrf.valid(f"form:{form_id}") or (_origin() or "") in config.form_origins(settings)
    if not trusted:
        origin = _origin()
        log.warning("signup refused: posted from %s, which is not in [gdpr] form_origins", origin or "no origin")
        if origin is None or origin == f"{request.scheme}://{request.host}":
            # Hub's own page without a valid token: open too long, or its cookie is gone. Nothing to distrust.
            return _message(_("The form is out of date"),
                            _("The form has expired or lacks its security token. Reload the page and send the form "
                              "again."), 403)
        return _message(_("Form not accepted"),
                        _("This form was sent from a site we do not trust. To the site's owner: add the site's "
                          "address to the [gdpr] form_origins setting."), 403)
    try:
        signup = capture.read_signup(settings, data, source=capture.FORM, **_client())
    except capture.SignupError as exc:
        form = config.forms(settings).get(form_id) or config.forms(settings)[config.DEFAULT_FORM]
        problems = list(dict.fromkeys(str(FIELD_MESSAGES.get(f, m)) for f, m in exc.problems))
        return _signup_page(form, data, problems, 400)
    return _after_signup(signup, html=True)


API_PATH = "/api/consent"


def _api() -> bool:
    """Whether the request is for the JSON API: its answers are read by a developer's code, in English, as JSON."""
    return request.path.rstrip("/") == API_PATH


@bp.post(API_PATH)
def api_signup() -> Any:
    # Every answer of the API is English whatever the shop's language (the topic and form checks are
    # messages of the catalogs): a site's backend logs and matches them, and its developer reads them.
    with use_language("en"):
        return _api_signup()


@bp.route(API_PATH, methods=["GET", "PUT", "PATCH", "DELETE"])
def api_wrong_method() -> Any:
    return {"error": "send the signup with POST, as a JSON object"}, 405, {"Allow": "POST"}


def _api_signup() -> Any:
    settings = current_settings()
    expected = config.api_key(settings)
    if expected is None:
        return {"error": "the consent API is off; set api_key under [gdpr] in hub.toml (or HUB_GDPR_API_KEY)"}, 403
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("X-Api-Key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        log.warning("consent API: a request with a missing or wrong key refused")
        return {"error": "missing or wrong API key; send it as 'Authorization: Bearer KEY'"}, 401
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return {"error": "send a JSON object, e.g. {\"email\": \"anna@example.ru\", \"topics\": [\"email/news\"]}"}, 400
    client = _client()
    # The site's backend calls this; the person's own address and browser are what it forwards.
    client["ip"] = str(data.get("ip") or client["ip"] or "")[:64] or None
    client["user_agent"] = str(data.get("user_agent") or client["user_agent"] or "")[:500] or None
    try:
        signup = capture.read_signup(settings, data, source=capture.API, **client)
    except capture.SignupError as exc:
        return {"error": str(exc), "problems": [{"field": f, "error": m} for f, m in exc.problems]}, 400
    return _after_signup(signup, html=False)


def _after_signup(signup: capture.Signup, *, html: bool) -> Any:
    settings = current_settings()
    try:
        result = capture.sign_up(_engine(), settings, signup)
    except capture.SignupUnavailable as exc:
        log.error("signup from form %s failed: %s", signup.form.name, exc)
        if html:
            return _message(_("Signing up is unavailable for now"), _("Please try again later."), 503)
        return {"error": str(exc)}, 503
    if result.new_letter and result.message_id is not None:
        enqueue(settings, capture.send_confirmation, result.message_id, background=True,
                      job_id=f"consent-confirmation-{result.message_id}")
    if result.status == "limited":
        if html:
            return _message(_("The email is on its way"),
                            _("We recently sent a confirmation email to this address. Check your mail, including "
                              "the Spam folder, or try again in an hour."), 200)
        return {"status": "limited",
                "error": "too many confirmation letters for this address or client lately; try again later"}, 429
    if not html:
        if result.status == "refused":
            return {"status": "refused",
                    "error": "this person was erased on request; Hub does not store or contact them again"}, 409
        body = {"status": result.status, "contact_id": result.contact_id, "topics": result.topics}
        if result.status == "pending":
            body |= {"request": result.request_id, "message": result.message_id}
        return body, 202 if result.status == "pending" else 200
    if signup.form.thanks_url:
        return redirect(signup.form.thanks_url, code=303)
    # The same page whatever happened: a form must not tell strangers who is subscribed or erased.
    return _page("signup_sent", email=signup.email)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Any:
    if _api():
        return {"error": "the request is too large; send only the signup's fields"}, 413
    return _message(_("The form is too large"),
                    _("The data sent is too large. Check that the fields hold only what is needed, and send the "
                      "form again."), 413)


@bp.errorhandler(SettingsError)
def _settings_error(exc: SettingsError) -> Response | tuple[Any, int]:
    log.error("gdpr public page: %s", exc)
    if _api():
        return {"error": "the consent API is unavailable for now: Hub's settings have a problem (see its log)"}, 500
    return _message(_("The page is unavailable for now"), _("We already know about the problem. Please try again "
                                                              "later."), 500)
