"""Why a message was held, skipped or not sent: stored in English, read in the reader's words.

The outbox's `error` column, a workflow step's detail and every `--json`
keep the English text a verdict was given in: monitoring and scripts match
on it (a paused campaign finds its held letters by theirs), and a worker
writes it in whatever language it runs in. People read it through
`reason_text`, which recognises the shapes Hub words its reasons in and
says them again in the reader's language, channels and purposes by their
titles. A text no shape fits (an SMTP server's answer, a plugin's own
words) is shown as it is.

A reason is worded through a `ReasonShape` declared once, at import time:
the shape is both how the English is written and how it is read back, so
the two cannot drift apart. Plugins declare theirs the same way (hub.api);
a shape's people's wording is a msgid, translated from the plugin's catalog.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from hub.i18n import N_, ngettext
from hub.db import whole_number
from hub.i18n import gettext as _

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_SHAPES: list[ReasonShape] = []
# Reasons given together (hub.messaging.rules.combine) are joined with this.
JOINER = "; "
_VALUE = r"(?:(?!; ).)+?"
# Longer than any reason Hub words; a longer text is an answer to show as it is, not to parse.
_LONGEST = 2000


class ReasonShape:
    """One way of wording a reason: `stored` is the English kept in the database and JSON.

    `shown` (default: `stored`) is the msgid people read, with the same
    placeholders; `words` turn a stored value into the reader's words (a
    channel into its title); `say` words the whole reason where one
    msgid is not enough (plural forms). A value holds no "; " (reasons
    given together are joined by it) unless it is named in `anything` (a
    server's answer, a reason inside a reason). Declare a shape once, at import time.
    """

    def __init__(self, stored: str, shown: str | None = None, *, anything: tuple[str, ...] = (),
                 say: Callable[[Mapping[str, str]], str] | None = None,
                 **words: Callable[[str], str]) -> None:
        self.stored = stored
        self.shown = shown or stored
        self.say = say
        self.words = words
        parts = _PLACEHOLDER.split(stored)
        pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{'.+?' if p in anything else _VALUE})"
                          for i, p in enumerate(parts))
        self.pattern = re.compile(rf"\A{pattern}\Z", re.DOTALL)
        _SHAPES.append(self)

    def __call__(self, **values: Any) -> str:
        """The reason as stored: English, whoever gives it and in whatever language they work."""
        return self.stored % {k: str(v) for k, v in values.items()} if values else self.stored

    def read(self, text: str) -> str | None:
        """`text` in the reader's words if it has this shape; None if it does not."""
        m = self.pattern.match(text)
        if m is None:
            return None
        values = {k: self.words.get(k, str)(v) for k, v in m.groupdict().items()}
        if self.say is not None:
            return self.say(values)
        return _(self.shown, **values) if values else _(self.shown)


def reason_text(stored: str | None) -> str:
    """A stored reason as the current reader says it; a text Hub did not word comes back as it is.

    Reasons given together are read one by one, so a plugin's own text next
    to the core's keeps its words while the core's are translated.
    """
    if not stored:
        return ""
    text = str(stored)
    if len(text) > _LONGEST:
        return text
    read = _read_one(text)
    if read is not None:
        return read
    if JOINER in text:
        parts = text.split(JOINER)
        return JOINER.join(_read_one(p) or p for p in parts)
    return text


def _read_one(text: str) -> str | None:
    for shape in _SHAPES:
        read = shape.read(text)
        if read is not None:
            return read
    return None


# --- how stored values read ---------------------------------------------------------------------

def _channel(value: str) -> str:
    from hub import consent  # hub.consent words its verdicts with the shapes below

    return consent.channel_title(value)


def _purpose(value: str) -> str:
    from hub import consent

    return consent.purpose_title(value)


def _status(value: str) -> str:
    from hub import consent

    return _("not given") if value == "none" else consent.status_title(value)


def _zone(value: str) -> str:
    from hub import formats

    try:
        return formats.zone_name(value)
    except (ValueError, LookupError, OSError):  # not a zone this machine knows: as it was written
        return value


def _cap(values: Mapping[str, str]) -> str:
    """"2/7d" → «не больше 2 сообщений за 7 дней»."""
    from hub import formats, localtime

    limit, period = values["limit"], values["period"]
    try:
        length = formats.duration(localtime.parse_duration(period))
    except (ValueError, TypeError):
        length = period
    number = whole_number(limit, least=0)
    if number is None:
        return FREQUENCY_CAP(**values)
    return ngettext("frequency cap reached: at most %(num)s message per %(period)s",
                    "frequency cap reached: at most %(num)s messages per %(period)s", number, period=length)


def _attempts(values: Mapping[str, str]) -> str:
    count = values["num"]
    number = whole_number(count, least=0)
    if number is None:
        return GAVE_UP(**values)
    return ngettext("gave up after %(num)s attempt: %(error)s", "gave up after %(num)s attempts: %(error)s",
                    number, error=values["error"])


# --- the core's reasons -------------------------------------------------------------------------
# Declared most specific first: the first shape a text fits is the one it is read by.

# The consent ledger (hub.consent.ledger_verdict) and the consent rule (hub.outbox_hooks).
NO_EMAIL = ReasonShape("no valid email for this contact", N_("the contact has no valid email"))
NO_PHONE = ReasonShape("no valid phone for this contact", N_("the contact has no valid phone number"))
NO_ADDRESS = ReasonShape("no valid %(kind)s for this contact", N_("the contact has no valid %(kind)s"))
EMAIL_SUPPRESSED = ReasonShape("email is suppressed", N_("the address is on the block list"))
PHONE_SUPPRESSED = ReasonShape("phone is suppressed", N_("the phone number is on the block list"))
SUPPRESSED = ReasonShape("%(kind)s is suppressed", N_("%(kind)s is on the block list"))
NO_CONSENT = ReasonShape("no granted consent for %(channel)s/%(purpose)s (current: %(status)s)",
                         N_("no consent to %(channel)s for “%(purpose)s” (now: %(status)s)"),
                         channel=_channel, purpose=_purpose, status=_status)
CONTACT_GONE = ReasonShape("the contact no longer exists", N_("the contact no longer exists"))
# A workflow's send step words the same checks shorter (workflows.send).
SHORT_NO_EMAIL = ReasonShape("no valid email", N_("no valid email"))
SHORT_NO_PHONE = ReasonShape("no valid phone", N_("no valid phone number"))

# The send limits (hub.send_limits, workflows.send).
QUIET_HOURS = ReasonShape("quiet hours %(start)s-%(end)s in %(zone)s",
                          N_("quiet hours from %(start)s to %(end)s (%(zone)s)"), zone=_zone)
FREQUENCY_CAP = ReasonShape("frequency cap %(limit)s/%(period)s reached", say=_cap)

# The dispatcher (hub.messaging.dispatcher) and the claims (hub.messaging.claims).
HELD = ReasonShape("held: %(reason)s", N_("held: %(reason)s"), anything=("reason",),
                   reason=reason_text)
NOT_SENT_YET = ReasonShape("not sent yet: %(reason)s", N_("not sent yet: %(reason)s"),
                           anything=("reason",), reason=reason_text)
GAVE_UP = ReasonShape("gave up after %(num)s attempts: %(error)s", anything=("error",), say=_attempts)
BOUNCED = ReasonShape("bounced: %(error)s", N_("bounced, the address is blocked: %(error)s"),
                      anything=("error",))
CHANNEL_ERROR = ReasonShape("%(name)s channel error: %(error)s", N_("error in the %(name)s channel: %(error)s"),
                            anything=("error",))
NO_ANSWER = ReasonShape("the channel could not tell whether it was sent",
                        N_("the channel could not tell whether the message went out"))
STOPPED_WHILE_SENDING = ReasonShape("dispatch stopped while sending (%(error)s)",
                                    N_("sending was interrupted while the channel had the message (%(error)s)"),
                                    anything=("error",))
STOPPED = ReasonShape("dispatch stopped (%(error)s)", N_("sending was interrupted (%(error)s)"), anything=("error",))
WORKER_STOPPED = ReasonShape("the worker stopped before sending it",
                             N_("the worker stopped before sending the message"))
A_WORKER_LOST = ReasonShape("a worker stopped while sending; the message may or may not have gone out",
                            N_("a worker stopped while sending; the message may or may not have gone out"))
WORKER_LOST = ReasonShape("%(worker)s stopped while sending; the message may or may not have gone out",
                          N_("worker %(worker)s stopped while sending; the message may or may not have gone out"))

# Settled by a person (hub.messaging.outbox.resolve).
MARKED_SENT = ReasonShape("marked sent by %(who)s", N_("marked sent by %(who)s"))
MARKED_FAILED = ReasonShape("marked failed by %(who)s", N_("marked not sent by %(who)s"))
REQUEUED = ReasonShape("requeued by %(who)s", N_("queued again by %(who)s"))


def no_address(kind: str) -> str:
    """The contact has no valid address of this kind (email, phone)."""
    return {"email": NO_EMAIL, "phone": NO_PHONE}.get(kind, NO_ADDRESS)(kind=kind)


def suppressed(kind: str) -> str:
    """Every address of this kind the send could go to is on the block list."""
    return {"email": EMAIL_SUPPRESSED, "phone": PHONE_SUPPRESSED}.get(kind, SUPPRESSED)(kind=kind)


def no_consent(channel: str, purpose: str, status: str | None) -> str:
    """The current answer for (channel, purpose) is not "granted" (None: never asked)."""
    return NO_CONSENT(channel=channel, purpose=purpose, status=status or "none")


def quiet_hours(window: Any, zone: str) -> str:
    """Held for the contact's quiet hours (`window` prints as "21:00-09:00")."""
    start, _sep, end = str(window).partition("-")
    return QUIET_HOURS(start=start, end=end, zone=zone)


def frequency_cap(cap: Any) -> str:
    """Held or skipped on the frequency cap (`cap` prints as "2/7d")."""
    limit, _sep, period = str(cap).partition("/")
    return FREQUENCY_CAP(limit=limit, period=period)


def held(reason: str) -> str:
    """A send rule's hold, as the dispatcher writes it (until when is kept in the row's due_at)."""
    return HELD(reason=reason)
