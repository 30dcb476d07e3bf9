"""POST /api/v1/consent: the public form's consent capture, for a website's backend holding a key.

A Tilda form or a shop's site posts what the visitor typed, and Hub does
exactly what its own signup form does (plugins.gdpr.capture): the signup
touches nobody in the base and sends one confirmation letter; only the
person's click grants. A key proves which system is calling, not who the
person is, so a key can never grant consent (DESIGN.md, "Public edges"):
such a request is refused and pointed at double opt-in. Withdrawing is
always safe, so a key may record a withdrawal for a known contact.
"""

from __future__ import annotations

from typing import Any, Mapping

# not in hub.api on purpose: public sign-up normalizes and finds addresses as sync does
from hub.api import (MAX_ROW_ID, N_, ApiCall, ApiEndpoint, ApiError, ContactKey, consent_channels, consent_purposes,
                     current_consent, enqueue, find_contacts, gettext, normalize_email, normalize_phones,
                     record_consent)
from plugins.gdpr import capture, config

# The titles of the problems this endpoint answers itself (RFC 9457: the same for every error of a kind).
TITLES = {400: N_("Bad request"), 403: N_("Forbidden"), 404: N_("Not found"), 409: N_("Conflict"),
          429: N_("Too many requests"), 503: N_("Service unavailable")}
WITHDRAWN = "withdrawn"
TEXT = 200  # the longest name a request may carry
# A name with markup in it is someone testing the form, not a person's name.
NO_MARKUP = "^[^<>\\x00-\\x1f\\x7f]*$"


LINE = "^[^\\x00-\\x1f\\x7f]*$"  # one line of text: no control characters (PostgreSQL stores no NUL)


def _text(limit: int) -> dict[str, Any]:
    return {"type": ["string", "null"], "maxLength": limit, "pattern": LINE}


BODY: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "A signup for double opt-in (no status, or status pending) or a withdrawal (status withdrawn).",
    "properties": {
        "status": {"enum": ["pending", WITHDRAWN, "granted"],
                   "description": "pending: a signup, confirmed by the person's click; withdrawn: the person "
                                  "withdrew; granted is refused (only the person's click grants)"},
        "email": {**_text(320), "description": "The person's address (a signup's confirmation is sent there)"},
        "phone": {**_text(50), "description": "Kept with the signup as typed; never matched or attached"},
        "first_name": {**_text(TEXT), "pattern": NO_MARKUP},
        "last_name": {**_text(TEXT), "pattern": NO_MARKUP},
        "topics": {"type": ["array", "null"], "maxItems": 20,
                   "items": {"type": "string", "maxLength": 100, "pattern": LINE},
                   "description": "channel/purpose, e.g. email/news; a signup takes email topics only"},
        "form_id": {**_text(100), "description": "The form's name in [gdpr.forms] (default: the default form)"},
        "text_version": {**_text(100), "description": "The version of the consent text the person saw"},
        "ip": {**_text(64), "description": "The visitor's IP address (evidence)"},
        "user_agent": {**_text(500), "description": "The visitor's browser (evidence)"},
        "contact_id": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_ROW_ID,
                       "description": "A withdrawal's contact (or give email or phone)"},
        "channel": {**_text(50), "description": "A withdrawal's channel: email, sms, phone"},
        "purpose": {**_text(50), "description": "A withdrawal's purpose: marketing, news, …"},
        "source": {**_text(100), "description": "Where a withdrawal was made (default: api)"},
    },
}

ANSWER: dict[str, Any] = {
    "type": "object", "required": ["status", "letter", "request_id", "contact_id", "topics"],
    "properties": {
        "status": {"enum": ["pending", "granted", WITHDRAWN],
                   "description": "pending: waiting for the person's click; granted: the holder of the address "
                                  "had granted every topic already; withdrawn: recorded"},
        "letter": {"enum": ["queued", "already_sent", "none"],
                   "description": "The confirmation letter: queued now, sent a moment ago (a repeat), or none"},
        "request_id": {"type": ["integer", "null"]},
        "contact_id": {"type": ["integer", "null"], "description": "null while a signup waits for its click"},
        "topics": {"type": "array", "items": {"type": "string"}},
        "changed": {"type": "boolean", "description": "For a withdrawal: false if it was withdrawn already"},
    },
}


def post_consent(call: ApiCall) -> dict[str, Any]:
    """A signup for double opt-in, or a withdrawal; a grant by key is refused."""
    body: Mapping[str, Any] = call.body
    status = body.get("status") or "pending"
    if status == "granted":
        raise _invalid("/status", gettext(
            "a key cannot grant consent: only the person can, by the link in the confirmation letter. Send the "
            "signup without status (double opt-in), or with status withdrawn to record a withdrawal"), status=403)
    if status == WITHDRAWN:
        return _withdraw(call, body)
    return _sign_up(call, body)


def _error(status: int, detail: str, **kwargs: Any) -> ApiError:
    return ApiError(status, gettext(TITLES[status]), detail, **kwargs)


def _invalid(field: str, detail: str, more: list[dict[str, Any]] | None = None, *, status: int = 400) -> ApiError:
    """A body the schema lets through but that means nothing here (an address nobody can have): 400."""
    errors = more or [{"field": field, "detail": detail}]
    return _error(status, f"{errors[0]['field']}: {errors[0]['detail']}", errors=errors)


def _sign_up(call: ApiCall, body: Mapping[str, Any]) -> dict[str, Any]:
    settings = call.settings
    data = {k: v for k, v in body.items() if v is not None}
    for name in ("contact_id", "channel", "purpose", "source"):
        if name in data:
            raise _invalid("/" + name, gettext("only a withdrawal takes %(field)s; a signup names the person by "
                                               "email", field=name))
    try:
        signup = capture.read_signup(settings, data, source=capture.API, ip=data.get("ip"),
                                     user_agent=data.get("user_agent"))
    except capture.SignupError as exc:
        errors = [{"field": _FIELDS.get(f, "/" + f), "detail": _problem(settings, data, f, m)}
                  for f, m in exc.problems]
        raise _invalid(errors[0]["field"], errors[0]["detail"], errors) from None
    try:
        # In the request's one transaction: the answer kept for its Idempotency-Key commits with the signup.
        # A refusal (the letters' rate limit) raises, and the whole request is undone, as sign_up undoes its own.
        result = capture.sign_up_in(call.conn, settings, signup)
    except capture.Limited:
        result = capture.SignupResult("limited")
    except capture.SignupUnavailable:
        raise _error(503, gettext("Hub cannot send confirmation letters now (no email channel or "
                                          "template); nothing was stored. Try again later.")) from None
    if result.status == "limited":
        raise _error(429, gettext("Too many confirmation letters to this address or from this visitor "
                                          "lately; try again in an hour."), headers={"Retry-After": "3600"})
    if result.status == "refused":
        raise _error(409, gettext("This person was erased on request; Hub does not store or contact "
                                          "them again."))
    if result.new_letter and result.message_id is not None:
        message_id = result.message_id

        def send() -> None:
            enqueue(settings, capture.send_confirmation, message_id, background=True,
                    job_id=f"consent-confirmation-{message_id}")

        call.after_commit.append(send)
    letter = "none" if result.status != "pending" else "queued" if result.new_letter else "already_sent"
    return {"status": result.status, "letter": letter, "request_id": result.request_id,
            "contact_id": result.contact_id, "topics": result.topics}


_FIELDS = {"channel": "/topics"}


def _problem(settings: Any, data: Mapping[str, Any], field: str, message: str) -> str:
    """A signup problem in the reader's language (capture's own words are for the log)."""
    if field == "email":
        return gettext("required: the confirmation letter is sent there") if not str(data.get("email") or "").strip() \
            else gettext("not a valid email address")
    if field == "phone":
        return gettext("not a phone number")
    if field == "form_id":
        return gettext("no such form; the forms are: %(forms)s", forms=", ".join(sorted(config.forms(settings))))
    if field == "channel":
        return gettext("a signup subscribes only the email address it confirms; consent to SMS and calls is not "
                       "taken this way")
    if message.startswith(("choose at least", "give a list")) or "is not offered by form" in message:
        return gettext("choose topics the form offers, e.g. %(topics)s",
                       topics=", ".join(str(t) for t in _offered(settings, data)))
    return message  # a topic's own problem, already in the reader's language


def _offered(settings: Any, data: Mapping[str, Any]) -> list[Any]:
    forms = config.forms(settings)
    form = forms.get(str(data.get("form_id") or config.DEFAULT_FORM)) or forms.get(config.DEFAULT_FORM)
    return list(form.topics) if form is not None else []


def _withdraw(call: ApiCall, body: Mapping[str, Any]) -> dict[str, Any]:
    conn, settings = call.conn, call.settings
    errors = []
    channel, purpose = str(body.get("channel") or "").strip(), str(body.get("purpose") or "").strip()
    if channel not in consent_channels(settings):
        errors.append({"field": "/channel", "detail": gettext("must be one of: %(values)s",
                                                              values=", ".join(consent_channels(settings)))})
    if purpose not in consent_purposes(settings):
        errors.append({"field": "/purpose", "detail": gettext("must be one of: %(values)s",
                                                              values=", ".join(consent_purposes(settings)))})
    given = [f for f in ("contact_id", "email", "phone") if body.get(f) not in (None, "")]
    if not given:
        errors.append({"field": "/contact_id", "detail": gettext("name the person: contact_id, email or phone")})
    extra = [f for f in ("topics", "form_id", "first_name", "last_name") if body.get(f) not in (None, "", [])]
    for name in extra:
        errors.append({"field": "/" + name, "detail": gettext("a withdrawal names one channel and purpose; "
                                                              "%(field)s is for signups", field=name)})
    if errors:
        raise _invalid(errors[0]["field"], errors[0]["detail"], errors)
    contact_id = _person(conn, settings, body, given[0])
    topic = f"{channel}/{purpose}"
    if current_consent(conn, contact_id).get((channel, purpose)) == WITHDRAWN:
        return {"status": WITHDRAWN, "letter": "none", "request_id": None, "contact_id": contact_id,
                "topics": [topic], "changed": False}
    evidence = {"via": "api", "key": call.key.name, "ip": body.get("ip"), "user_agent": body.get("user_agent")}
    record_consent(conn, contact_id, channel, purpose, WITHDRAWN,
                   source=str(body.get("source") or "").strip() or "api", evidence=evidence, settings=settings)
    return {"status": WITHDRAWN, "letter": "none", "request_id": None, "contact_id": contact_id, "topics": [topic],
            "changed": True}


def _person(conn: Any, settings: Any, body: Mapping[str, Any], by: str) -> int:
    """The contact a withdrawal is for (as they are now, after merges); 404 naming the field if nobody."""
    key: ContactKey | None = None
    if by == "contact_id":
        key = int(body["contact_id"])
    elif by == "email":
        address = normalize_email(str(body["email"]))
        key = address.value if address and address.valid else None
    else:
        numbers = [p for p in normalize_phones(str(body["phone"]), settings.default_region) if p.valid]
        key = numbers[0].value if numbers else None
    # A live contact: not deleted, erased, or a signup's hidden placeholder (nobody yet).
    found = find_contacts(conn, [key])[0] if key is not None else None
    if found is None:
        raise _error(404, gettext("%(field)s: nobody in the base has it (a withdrawal needs a known "
                                          "contact)", field=by), errors=[{"field": "/" + by, "detail": gettext(
                                              "nobody in the base has it")}])
    return found


def register(register: Any) -> None:
    """POST /api/v1/consent (the gdpr plugin's register_api_endpoints)."""
    register(ApiEndpoint(
        "POST", "/consent", post_consent, "consent:write", "Sign a person up (double opt-in) or record a withdrawal",
        "consent", body=BODY, answer=ANSWER, status=202, errors=(400, 404, 409, 503),
        description="A signup keeps nothing about anyone in the base and sends one confirmation letter; only "
                    "the person's click grants, and only on the email channel. A key never grants consent: "
                    "status granted is refused. status withdrawn records a withdrawal for a known contact."))
