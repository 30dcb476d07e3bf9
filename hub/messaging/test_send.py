"""A test letter: one message to a staff member's own address, to see a template as a customer will.

It goes straight to the channel, never through the outbox: it is nobody's
message, so no report counts it, no send rule or cap holds it, and no retry
or bounce touches a contact's addresses or consent. Its links are the
preview links (hub.message_templates.preview_links): they still render and
lead somewhere, but a click on them is no customer's unsubscribe. The
subject (the text, on channels without one) starts with a marker, so
nobody mistakes it for a real letter. The messaging layer keeps no audit:
each caller (the template editor, a campaign) writes its own entry.

A channel that writes files instead of sending (the mailing plugin's file
channel, the default while no mail server is set) answers with the provider
id ``file:<path>``; the result then carries that path as "file", and
`sent_text` says where the letter went, so nobody waits for mail that never comes.
"""

from __future__ import annotations

import secrets
from typing import Any, Mapping

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Engine

from hub import consent, message_templates, normalize, template_variables
from hub.config import Settings, SettingsError
from hub.i18n import gettext as _
from hub.messaging.channels import ChannelUnavailable, Outgoing, channel_factories
from hub.messaging.compose import contact_contexts
from hub.messaging.outbox import TRANSACTIONAL, MessagingError

MAX_ADDRESS = 320  # the longest an email address can be (RFC 3696 errata)
MAX_ID = 2**31 - 1  # no contact id is larger; a larger number is nobody, not a database error
FILE_PREFIX = "file:"  # the provider id of a letter written to a file, not sent


def marker() -> str:
    """What starts a test letter's subject, in the reader's language."""
    return _("[Test]")


def check_address(channel: str, to: str) -> str:
    """The address as the channel takes it (an email normalized, a phone in E.164); MessagingError names a bad one."""
    text = str(to or "").strip()
    if not text:
        raise MessagingError(_("Give an address to send the test to."))
    if len(text) > MAX_ADDRESS:
        raise MessagingError(_("The address is too long (at most %(max)s characters).", max=MAX_ADDRESS))
    if consent.kind_for_channel(channel) == normalize.EMAIL:
        try:
            return validate_email(text, check_deliverability=False).normalized
        except EmailNotValidError:
            raise MessagingError(_("%(address)s is not an email address.", address=text)) from None
    try:
        number = phonenumbers.parse(text, "RU")
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise MessagingError(_("%(address)s is not a phone number.", address=text))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _template(engine: Engine, settings: Settings, template: str | message_templates.Template, channel: str,
              contact_id: int | None) -> tuple[message_templates.Template, dict[str, Any] | None]:
    with engine.connect() as conn:
        try:
            found = message_templates.get(conn, settings, template) if isinstance(template, str) else template
        except message_templates.TemplateError as exc:
            raise MessagingError(str(exc)) from None
        contact = None
        if contact_id is not None:
            contact = contact_contexts(conn, settings, [contact_id]).get(contact_id) if 0 < contact_id <= MAX_ID \
                else None
            if contact is None:
                raise MessagingError(_("no contact with id %(id)s", id=contact_id))
    if (channel == message_templates.EMAIL) != found.is_email:
        raise MessagingError(_("template %(name)r is a %(kind)s template; it cannot go by %(channel)s",
                               name=found.name, kind=found.channel, channel=channel))
    return found, contact


def send_test(engine: Engine, settings: Settings, *, template: str | message_templates.Template, channel: str,
              to: str, contact_id: int | None, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Render `template` for a contact (the sample one when None) and send it once to `to`.

    `context` adds what the real send would add (a campaign's promo code).
    Returns {"address", "subject", "provider_id", "file"} ("file": the path
    the letter was written to, or None when a server took it); raises MessagingError in
    the reader's words when the address, the channel or the template is wrong,
    or the channel refuses.
    """
    factories = channel_factories()
    if channel not in factories:
        raise MessagingError(_("no channel %(name)r; registered: %(known)s", name=channel,
                               known=", ".join(sorted(factories)) or _("none")))
    address = check_address(channel, to)
    found, contact = _template(engine, settings, template, channel, contact_id)
    render_context = (message_templates.preview_context(settings, contact) | template_variables.samples(settings)
                      | dict(context or {}))
    render_context |= message_templates.preview_links(settings)  # never a signed link, whatever the caller gave
    try:
        if found.is_email and not (found.subject or "").strip():
            raise message_templates.TemplateError(message_templates.needs_subject(found.name))
        rendered = message_templates.render(found, render_context)
    except message_templates.TemplateError as exc:
        raise MessagingError(str(exc)) from None
    subject = f"{marker()} {rendered.subject}" if rendered.subject is not None else None
    text = rendered.text if subject is not None else f"{marker()} {rendered.text}"
    outgoing = Outgoing(id=0, channel=channel, contact_id=None, address=address, purpose=TRANSACTIONAL,
                        template=found.name, subject=subject, text=text, html=rendered.html,
                        key=f"test:{secrets.token_hex(8)}", meta={})
    try:
        sender = factories[channel](settings)
        sender.open()
        try:
            delivery = sender.send(outgoing)
        finally:
            sender.close()
    except (ChannelUnavailable, SettingsError) as exc:
        raise MessagingError(_("The test was not sent: %(reason)s", reason=str(exc))) from None
    if delivery.status != "sent":
        raise MessagingError(_("The test was not sent: %(reason)s",
                               reason=delivery.error or delivery.status))
    provider_id = delivery.provider_id
    written = provider_id[len(FILE_PREFIX):] if provider_id and provider_id.startswith(FILE_PREFIX) else None
    return {"address": address, "subject": subject, "provider_id": provider_id, "file": written}


def sent_text(sent: Mapping[str, Any]) -> str:
    """What a person is told after a test: the address it went to, or the file it was written to."""
    if sent.get("file"):
        return _("No mail server is set up: the letter was written to the file %(path)s.", path=sent["file"])
    return _("Test letter sent to %(address)s.", address=sent["address"])
