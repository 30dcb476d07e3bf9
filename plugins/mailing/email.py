"""Email over SMTP: one connection per batch, every reply code classified.

Settings (settings.extra, i.e. HUB_* variables or hub.toml keys):

    smtp_url      HUB_SMTP_URL      smtp://user:password@host:587 (STARTTLS when offered),
                                    smtps://user:password@host:465 (TLS from the start);
                                    ?starttls=required refuses to send in the clear
    mail_from     HUB_MAIL_FROM     "Shop name <shop@example.ru>" (required with SMTP)
    smtp_timeout  HUB_SMTP_TIMEOUT  seconds per network operation (default 30)
    smtp_ca_file  HUB_SMTP_CA_FILE  a CA bundle for a relay with a private certificate
    mail_unsubscribe_to             the mailto: address in List-Unsubscribe (default: the From address)
    mail_reply_to HUB_MAIL_REPLY_TO where replies go, when not to the From address
    mail_return_path HUB_MAIL_RETURN_PATH  the bounce mailbox: each message's envelope sender (MAIL FROM)
                                    is its own address there (plugins.mailing.verp); else the From address
    mail_reason   HUB_MAIL_REASON   why the reader gets marketing letters, in the footer (plugins.mailing.footer)
    dkim_*        HUB_DKIM_*        DKIM signing when sending directly (plugins.mailing.dkim)

The message is written with the standard library's encoders (RFC 2047 headers,
base64 bodies) directly rather than through email.message.EmailMessage, whose
header objects cost over a millisecond a message; tests parse what arrives with
the standard parser to hold this to the same result.

With a server that offers PIPELINING (RFC 2920; most relays do), a letter's
MAIL, RCPT and DATA go in one write and their replies are read in order: two
round trips a letter instead of four, each reply judged as below. In a
dispatch the next letter's envelope goes right behind the letter before
(`prepare`: the RFC lets the next commands follow the end of the data), so
its replies are there by the time the dispatcher has committed it as
`sending` and its data can go: the worker waits for the server about once a
letter. No letter's data go before that commit.

What an answer means (RFC 5321): 4xx is temporary (deferred, retried later;
552 at RCPT counts as 452, as the RFC advises); 5xx to RCPT, and 550/551/553
after the data, mean the address is dead (bounced: suppressed); other 5xx
after the data fail this message only, and so does a 5xx that refuses the
letter rather than the address (spam, a block list, 5.7.x policy:
plugins.mailing.refusals). A connection lost before the data was
sent is reopened and the message tried again; lost after the data was sent,
the message is `unknown`, because the server may have accepted it.
"""

from __future__ import annotations

import base64
import functools
import itertools
import os
import re
import secrets
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate, getaddresses, make_msgid, parseaddr
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

from hub.api import ChannelUnavailable, Delivery, Outgoing, Settings, SettingsError, gettext, unsubscribe_mailto
from plugins.mailing import dkim as dkim_signing, footer as footers, verp
from plugins.mailing.refusals import letter_refused
from plugins.mailing.tracking import track

DEFAULT_TIMEOUT = 30.0
TRACKING_HEADER = "X-Hub-Message-Id"
BOUNCE_AFTER_DATA = {550, 551, 553}
_T = TypeVar("_T")
_CRLF = "\r\n"


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool  # TLS from the first byte (smtps://)
    starttls: str  # auto | required | never
    timeout: float
    ca_file: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> SMTPConfig:
        url = str(settings.extra.get("smtp_url") or "").strip()
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise SettingsError(gettext("HUB_SMTP_URL: %(url)r is not an smtp:// or smtps:// URL "
                                        "(e.g. smtp://user:password@smtp.example.ru:587)", url=_safe(url)))
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        starttls = query.get("starttls", "auto")
        if starttls not in ("auto", "required", "never"):
            raise SettingsError(gettext("HUB_SMTP_URL: starttls=%(value)r; use auto, required or never",
                                        value=starttls))
        try:
            port = parts.port or (465 if parts.scheme == "smtps" else 25)
        except ValueError:
            raise SettingsError(gettext("HUB_SMTP_URL: %(url)r has a port that is not a number",
                                        url=_safe(url))) from None
        raw_timeout = settings.extra.get("smtp_timeout") or DEFAULT_TIMEOUT
        try:
            timeout = float(raw_timeout)
        except (TypeError, ValueError):
            raise SettingsError(gettext("HUB_SMTP_TIMEOUT: %(value)r is not a number of seconds",
                                        value=raw_timeout)) from None
        return cls(host=parts.hostname, port=port,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   tls=parts.scheme == "smtps", starttls=starttls, timeout=timeout,
                   ca_file=str(settings.extra["smtp_ca_file"]) if settings.extra.get("smtp_ca_file") else None)

    def describe(self) -> str:
        """The server as it may be printed: never the password."""
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        return f"{'smtps' if self.tls else 'smtp'}://{user}{self.host}:{self.port}"


def _safe(url: str) -> str:
    """A URL with any password blanked, for error messages."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


@dataclass(frozen=True)
class Sender:
    """Who a letter is from, as the settings say: headers, footer and signature, checked once per channel."""

    name: str
    address: str
    unsubscribe_to: str
    reply_to: str | None = None
    footer: footers.Footer | None = None
    signer: dkim_signing.Signer | None = None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "localhost"

    @classmethod
    def from_settings(cls, settings: Settings, *, required: bool) -> Sender:
        raw = str(settings.extra.get("mail_from") or "").strip()
        if not raw:
            if required:
                raise SettingsError(gettext("HUB_MAIL_FROM: not set; the address mail comes from, "
                                            "e.g. 'Shop <shop@example.ru>'"))
            raw = "Hub <hub@localhost>"
        name, address = parse_address("HUB_MAIL_FROM", raw)
        unsubscribe_to = str(settings.extra.get("mail_unsubscribe_to") or address)
        raw_reply = str(settings.extra.get("mail_reply_to") or "").strip()
        reply_to = formataddr(parse_address("HUB_MAIL_REPLY_TO", raw_reply)) if raw_reply else None
        verp.base_address(settings)  # a wrong HUB_MAIL_RETURN_PATH stops the channel now, not each letter
        return cls(name=name, address=address, unsubscribe_to=unsubscribe_to, reply_to=reply_to,
                   footer=footers.from_settings(settings),
                   signer=dkim_signing.from_settings(settings, address.rpartition("@")[2]))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")


def parse_address(setting: str, raw: str) -> tuple[str, str]:
    """(display name, address) of one mailbox in a setting; refuses what could forge a header."""
    if _CONTROL.search(raw):
        # A line break in a header value would start a header of the attacker's choosing (Bcc:, a second From:).
        raise SettingsError(gettext("%(setting)s: contains a line break or another control character; "
                                    "write one address on one line", setting=setting))
    found = getaddresses([raw])
    name, address = found[0] if len(found) == 1 else ("", "")
    domain = address.rpartition("@")[2]
    if not _ADDRESS.match(address) or ("." not in domain and domain != "localhost"):
        raise SettingsError(gettext("%(setting)s: %(value)r is not one email address like "
                                    "'Shop <shop@example.ru>'", setting=setting, value=raw))
    return name, address


def envelope_sender(settings: Settings, sender: Sender, message_id: int) -> str:
    """MAIL FROM for a message: its own VERP address when bounces are collected, else the From address.

    A test letter (id 0) belongs to no message, so it goes out from the From address.
    """
    return (verp.return_path(settings, message_id) if message_id else None) or sender.address


# --- the message --------------------------------------------------------------------------

def _ascii_address(address: str) -> str:
    """An address with an international domain in its ASCII (IDNA) form."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    return f"{local}@{domain.encode('idna').decode('ascii')}"


def _encoded_words(text: str) -> str:
    """RFC 2047 base64 encoded words, split between characters, each line under 78 characters.

    email.header.Header does the same, about ten times slower; the result is
    checked against the standard parser in the tests.
    """
    data = text.encode("utf-8")
    words: list[bytes] = []
    start = 0
    while True:
        end = start + _WORD_BYTES
        if end >= len(data):
            words.append(data[start:])
            break
        while data[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte: the character started before `end`
            end -= 1
        words.append(data[start:end])
        start = end
    return f"{_CRLF} ".join(f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words)


_WORD_BYTES = 42  # 56 base64 characters: "Subject: " plus one encoded word stays within 78


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(value: str) -> str:
    """A header's text with line breaks and other control characters as spaces.

    Names and subjects are rendered from what people typed (a signup form's
    name): a CR LF in them must never start a header of its own.
    """
    return _CONTROL.sub(" ", value) if _CONTROL.search(value) else value


def _header(name: str, value: str) -> str:
    """One header line: RFC 2047 encoded words for non-ASCII, folded under 78 characters."""
    value = _one_line(value)
    if value.isascii():
        return f"{name}: {Header(value, header_name=name).encode(linesep=_CRLF)}"
    return f"{name}: {_encoded_words(value)}"


_MAX_LINE = 998  # octets in a line of an SMTP message (RFC 5321 4.5.3.1.6)


def _short_lines(text: str) -> bool:
    """Whether every line fits in an SMTP line as UTF-8; a character takes at most 4 bytes, so most need no encoding."""
    lines = text.split("\n")
    if max(map(len, lines)) * 4 <= _MAX_LINE:
        return True
    return all(len(line.encode("utf-8")) <= _MAX_LINE for line in lines)


def _part(content_type: str, text: str, eight_bit: bool) -> str:
    """One text part: 8bit UTF-8 when the server takes it (8BITMIME) and no line is too long, else base64."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
    if eight_bit and _short_lines(lines):
        # The CRLF before a boundary belongs to the boundary (RFC 2046), so one is always added.
        body = lines.replace("\n", _CRLF) + _CRLF
        encoding = "8bit"
    else:
        body = base64.encodebytes(lines.replace("\n", _CRLF).encode("utf-8")).decode("ascii").replace("\n", _CRLF)
        encoding = "base64"
    return (f'Content-Type: {content_type}; charset="utf-8"{_CRLF}'
            f"Content-Transfer-Encoding: {encoding}{_CRLF}{_CRLF}{body}")


def compose(message: Outgoing, sender: Sender, *, eight_bit: bool = False, utf8_recipient: bool = False,
            return_path: str | None = None) -> tuple[bytes, str]:
    """The message as it goes on the wire (CRLF lines), and its Message-ID.

    Text and HTML travel as multipart/alternative; marketing mail carries
    List-Unsubscribe with an https and a mailto link and List-Unsubscribe-Post
    (RFC 8058), so mail clients can offer one-click unsubscribe. Headers are
    always 7-bit; bodies are 8bit UTF-8 when `eight_bit` (the server offers
    8BITMIME), which is smaller and readable in a saved .eml. The sender's
    footer (plugins.mailing.footer) ends the text and the HTML, and with DKIM
    set the letter is signed last. `return_path` is written as the
    Return-Path header, which only a saved .eml should carry: over SMTP the
    receiving server writes it from MAIL FROM.
    """
    message_id = make_msgid(idstring=f"hub{message.id}", domain=sender.domain)
    to = message.address or ""
    lines = [
        _from_line(sender.name, sender.address),
        _header_addr("To", message.to_name or "", to if utf8_recipient else _ascii_address(to)),
        _subject(message.subject or ""),
        f"Date: {_date_now()}",
        f"Message-ID: {message_id}",
        f"{TRACKING_HEADER}: {message.id}",
        "MIME-Version: 1.0",
    ]
    if sender.reply_to:
        reply_name, reply_address = parseaddr(sender.reply_to)
        lines.insert(1, _header_addr("Reply-To", reply_name, reply_address))
    unsubscribe_url = message.unsubscribe_url if message.is_marketing else None
    listed = bool(unsubscribe_url)
    if unsubscribe_url:
        mailto = _mailto(sender.unsubscribe_to, unsubscribe_url)
        lines.append(f"List-Unsubscribe: <{unsubscribe_url}>,{_CRLF} <{mailto}>")
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    body_text, body_html = sender.footer.apply(message) if sender.footer else (message.text, message.html)
    if body_html:
        boundary = _boundaries.next()
        lines.append(f'Content-Type: multipart/alternative;{_CRLF} boundary="{boundary}"')
        body = (f"{_CRLF}--{boundary}{_CRLF}{_part('text/plain', body_text, eight_bit)}"
                f"--{boundary}{_CRLF}{_part('text/html', body_html, eight_bit)}--{boundary}--{_CRLF}")
        text = _CRLF.join(lines) + _CRLF + body
    else:
        text = _CRLF.join(lines) + _CRLF + _part("text/plain", body_text, eight_bit)
    data = text.encode("utf-8")
    if sender.signer is not None:
        signed = [h for h in dkim_signing.SIGNED if h not in _OPTIONAL_SIGNED
                  or (h == "Reply-To" and sender.reply_to) or (h.startswith("List-") and listed)]
        data = sender.signer.sign(data, signed)
    if return_path:
        data = f"Return-Path: <{return_path}>{_CRLF}".encode("ascii") + data
    return data, message_id


_OPTIONAL_SIGNED = frozenset({"Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post"})


class _Boundaries:
    """MIME boundaries: a random stem per process, then a number no other letter of the process has.

    A boundary must not occur in the letter it separates: 96 random bits per
    process and a counter are as safe for that as 96 random bits per letter,
    without asking the system for randomness every letter. A forked child
    draws a stem of its own.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._stem = secrets.token_hex(12)
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"=_hub_{self._stem}_{next(self._count):x}"


_boundaries = _Boundaries()
os.register_at_fork(after_in_child=_boundaries.reset)


def _mailto(address: str, unsubscribe_link: str) -> str:
    """`unsubscribe_mailto` (hub.links), with what comes before the token quoted once per address.

    Percent-encoding goes byte by byte, so the subject's words and the token
    quoted apart give the same text as quoted together; the words hold a
    space, which sends urllib's quote down its slow path for the whole
    subject, while a token (URL-safe base64) needs no quoting at all. A token
    that does, or a format that no longer ends with the token, goes the
    whole way through `unsubscribe_mailto`.
    """
    token = unsubscribe_link.rstrip("/").rpartition("/")[2]
    prefix = _mailto_prefix(address)
    if prefix is None or quote(token) != token:
        return unsubscribe_mailto(address, unsubscribe_link)
    return prefix + token


@functools.lru_cache(maxsize=16)
def _mailto_prefix(address: str) -> str | None:
    """What `unsubscribe_mailto` writes before the token for this address; None when the token does not end it."""
    whole = unsubscribe_mailto(address, "/x")
    return whole[:-1] if whole.endswith("%20x") else None


@functools.lru_cache(maxsize=256)
def _subject(subject: str) -> str:
    """The Subject header: a campaign's letters mostly share theirs, so each is encoded once."""
    return _header("Subject", subject)


@functools.lru_cache(maxsize=16)
def _from_line(name: str, address: str) -> str:
    """The From header: the same for every letter of a sender, so encoded once."""
    return _header_addr("From", name, address)


_date: list[Any] = [None, ""]  # the second the Date header was last written for, and the header's value


def _date_now() -> str:
    """The Date header's value (RFC 5322), written once a second rather than once a letter."""
    now = int(time.time())
    if _date[0] != now:
        _date[:] = [now, formatdate(now, usegmt=True)]
    return str(_date[1])


def _header_addr(name: str, display: str, address: str) -> str:
    display, address = _one_line(display), _one_line(address)
    if not display:
        return f"{name}: {address}"
    if display.isascii():
        return f"{name}: {formataddr((display, address))}"
    return f"{name}: {_encoded_words(display)} <{address}>"


# --- the channel --------------------------------------------------------------------------

class _Lost(Exception):
    """The connection broke before the message data was sent: safe to try again."""


class EmailChannel:
    """SMTP with one connection reused across a batch, reopened when the server drops it."""

    name = "email"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = SMTPConfig.from_settings(settings)
        self.sender = Sender.from_settings(settings, required=True)
        self._smtp: smtplib.SMTP | None = None
        self._ready: _Ready | None = None  # the letter `prepare` got ready, until start() takes it

    # connection

    def open(self) -> None:
        if self._smtp is None:
            self._smtp = self._connect()

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.ca_file)

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        where = c.describe()
        try:
            if c.tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
            _no_delay(smtp)
            smtp.ehlo()
            if not c.tls and c.starttls != "never":
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                elif c.starttls == "required":
                    smtp.close()
                    raise ChannelUnavailable(gettext("%(server)s does not offer STARTTLS and the URL requires it",
                                                     server=where))
            if c.username:
                smtp.login(c.username, c.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            reply = " ".join((str(exc.smtp_code), _text(exc.smtp_error)))
            raise ChannelUnavailable(gettext("%(server)s refused the login: %(reply)s", server=where,
                                             reply=reply)) from None
        except smtplib.SMTPNotSupportedError:
            raise ChannelUnavailable(gettext("%(server)s does not offer AUTH; remove the user from HUB_SMTP_URL",
                                             server=where)) from None
        except ssl.SSLError as exc:
            raise ChannelUnavailable(gettext("%(server)s: TLS failed (%(reason)s)", server=where,
                                             reason=exc.reason or exc)) from None
        except smtplib.SMTPException as exc:
            raise ChannelUnavailable(f"{where}: {exc}") from None
        except OSError as exc:
            raise ChannelUnavailable(gettext("cannot reach %(server)s: %(reason)s", server=where,
                                             reason=exc.strerror or exc)) from None
        return smtp

    def close(self) -> None:
        if self._announced():  # the server waits for data that must not come: end the session without it
            self._drop()
        self._ready = None
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    # sending

    def send(self, message: Outgoing) -> Delivery:
        return self._attempts(message, self._transaction)

    def prepare(self, message: Outgoing) -> None:
        """Get `message` ready while the server still reads the letter before it: composed, its envelope sent.

        The dispatcher calls this once the send rules allowed the letter and
        before it reads the answer about the letter before
        (hub.messaging.channels.Channel). Nothing that can be delivered goes
        out: MAIL, RCPT and DATA are written right behind the data before
        (RFC 2920 lets a transaction's commands follow the end of the data
        before it), and the letter's own data wait for start(), which comes
        only once it is committed as `sending`. Only on an open connection
        offering PIPELINING and for plain ASCII addresses; otherwise start()
        does it all. A letter prepared and never started (its hand-over did
        not happen) leaves the server waiting for data: the next start() or
        close() ends that session without sending any.
        """
        self._settle_ready()
        smtp = self._smtp
        if smtp is None or not smtp.has_extn("pipelining"):
            return
        try:
            message = track(self.settings, message)
        except Exception:  # noqa: BLE001 - as below: start() tracks it again and reports it
            return
        to = message.address
        if not to or not to.rpartition("@")[0].isascii():
            return
        mail_from = envelope_sender(self.settings, self.sender, message.id)
        rcpt_to = _ascii_address(to)
        if not (_plain(mail_from) and _plain(rcpt_to)):
            return
        eight_bit = smtp.has_extn("8bitmime")
        try:
            data, message_id = compose(message, self.sender, eight_bit=eight_bit)
        except Exception:  # noqa: BLE001 - start() composes it again and reports what is wrong as it always did
            return
        ready = self._ready = _Ready(message.id, smtp, data, message_id, eight_bit)
        try:
            self._write_envelope(smtp, mail_from, rcpt_to, _options(False, eight_bit))
        except (smtplib.SMTPServerDisconnected, OSError):
            ready.broken = True  # the answer before is still read as it comes; start() opens a new connection

    def _announced(self) -> bool:
        """Whether the open connection carries an envelope `prepare` wrote that start() has not taken."""
        return self._ready is not None and self._smtp is not None and self._ready.smtp is self._smtp

    def _settle_ready(self, message: Outgoing | None = None) -> _Ready | None:
        """The ready letter if it is `message` and still usable; any other is given up (its session ended)."""
        ready, self._ready = self._ready, None
        if ready is None:
            return None
        if message is not None and ready.id == message.id and not ready.broken:
            return ready
        if ready.smtp is self._smtp:
            self._drop()  # its envelope is on this connection: the server waits for data that must not come
        return None

    def start(self, message: Outgoing) -> Callable[[], Delivery]:
        """`send` in two halves: the letter goes on the wire now; the server's answer is read when called.

        The dispatcher checks the next letter's send rules while the server
        reads this one (hub.messaging.channels.Channel); it calls the answer
        before handing this channel anything else.
        """
        found = self._attempts(message, self._started)
        return (lambda: found) if isinstance(found, Delivery) else found

    def _attempts(self, message: Outgoing, transact: Callable[..., _T]) -> _T | Delivery:
        ready = self._settle_ready(message)  # what prepare() did for this letter, if it did
        if ready is None:
            message = track(self.settings, message)  # links through Hub: plugins.mailing.tracking
        if not message.address:
            return Delivery("failed", error="no email address")
        local = message.address.rpartition("@")[0]
        for attempt in (1, 2):
            if self._smtp is None:
                self._smtp = self._connect()
            utf8 = not local.isascii()
            if utf8 and not self._smtp.has_extn("smtputf8"):
                return Delivery("failed", error=f"{message.address} needs SMTPUTF8, which the server does not offer")
            eight_bit = self._smtp.has_extn("8bitmime")
            if ready is not None and ready.eight_bit == eight_bit:
                data, message_id = ready.data, ready.message_id
            else:
                data, message_id = compose(message, self.sender, eight_bit=eight_bit, utf8_recipient=utf8)
            # The envelope prepare() wrote stands on the connection it went on, for the first try only.
            announced = ready is not None and ready.smtp is self._smtp
            try:
                return transact(self._smtp, message.address, data, message_id, utf8, eight_bit,
                                envelope_sender(self.settings, self.sender, message.id), announced)
            except _Lost:
                self._drop()
                if attempt == 2:
                    raise ChannelUnavailable(gettext("%(server)s keeps closing the connection",
                                                     server=self.config.describe())) from None
        raise AssertionError("unreachable")

    def _transaction(self, smtp: smtplib.SMTP, to: str, data: bytes, message_id: str, utf8: bool,
                     eight_bit: bool, mail_from: str, announced: bool = False) -> Delivery:
        return self._started(smtp, to, data, message_id, utf8, eight_bit, mail_from, announced)()

    def _started(self, smtp: smtplib.SMTP, to: str, data: bytes, message_id: str, utf8: bool,
                 eight_bit: bool, mail_from: str, announced: bool = False) -> Callable[[], Delivery]:
        """The transaction up to the data on the wire (_Lost before it: safe to try again); then its answer.

        `announced`: prepare() wrote the envelope on this connection; only its replies are left to read.
        """
        options = _options(utf8, eight_bit)
        rcpt_to = to if utf8 else _ascii_address(to)
        try:
            if announced:
                refused = self._envelope_replies(smtp, mail_from)
            elif not utf8 and smtp.has_extn("pipelining") and _plain(mail_from) and _plain(rcpt_to):
                refused = self._envelope_pipelined(smtp, mail_from, rcpt_to, options)
            else:
                refused = self._envelope(smtp, mail_from, rcpt_to, options)
        except (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, OSError):
            raise _Lost() from None
        if refused is not None:
            return lambda: refused
        # From here on the server may have the message: no silent second try.
        try:
            smtp.send(_dot_stuffed(data))
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            lost = self._lost_after_data(message_id, exc)
            return lambda: lost
        return lambda: self._answer(smtp, message_id)

    def _lost_after_data(self, message_id: str, exc: Exception) -> Delivery:
        self._drop()
        return Delivery("unknown", provider_id=message_id,
                        error=f"connection lost after the message was sent ({type(exc).__name__})")

    def _answer(self, smtp: smtplib.SMTP, message_id: str) -> Delivery:
        """The server's reply to the end of the data, classified."""
        try:
            code, reply = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            return self._lost_after_data(message_id, exc)
        if code == 250:
            return Delivery("sent", provider_id=message_id)
        if code == 421:
            self._drop()
        if 400 <= code < 500:
            return Delivery("deferred", error=f"{code} {_text(reply)}")
        if code in BOUNCE_AFTER_DATA and not letter_refused(_text(reply)):
            return Delivery("bounced", error=f"{code} {_text(reply)}")
        return Delivery("failed", error=f"{code} {_text(reply)}")

    def _envelope(self, smtp: smtplib.SMTP, mail_from: str, rcpt_to: str, options: list[str]) -> Delivery | None:
        """MAIL, RCPT and DATA one at a time, each waiting for its reply; None: the server waits for the data."""
        code, reply = smtp.mail(mail_from, options)
        if code != 250:
            return self._refused("MAIL FROM", code, reply, sender_stage=True, mail_from=mail_from)
        code, reply = smtp.rcpt(rcpt_to)
        if code not in (250, 251):
            return self._refused_recipient(code, reply)
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            return self._refused("DATA", code, reply)
        return None

    def _envelope_pipelined(self, smtp: smtplib.SMTP, mail_from: str, rcpt_to: str, options: list[str]
                            ) -> Delivery | None:
        """MAIL, RCPT and DATA in one write, then their replies in order (PIPELINING, RFC 2920).

        Only with a server that offers PIPELINING, and only for plain ASCII
        addresses (anything else goes one command at a time). Two round trips
        a letter instead of four; the replies are judged exactly as the
        one-at-a-time dialogue judges them, the first refusal deciding. A
        refused MAIL or RCPT makes the server refuse the DATA too (no valid
        recipient); a server that accepts it all the same gets no data: the
        connection is closed, so nothing can be delivered, and the next
        letter opens a new one.
        """
        self._write_envelope(smtp, mail_from, rcpt_to, options)
        return self._envelope_replies(smtp, mail_from)

    @staticmethod
    def _write_envelope(smtp: smtplib.SMTP, mail_from: str, rcpt_to: str, options: list[str]) -> None:
        """MAIL, RCPT and DATA in one write (PIPELINING); plain addresses only (_plain)."""
        listed = f" {' '.join(options)}" if options else ""
        smtp.send(f"MAIL FROM:<{mail_from}>{listed}\r\nRCPT TO:<{rcpt_to}>\r\nDATA\r\n")

    def _envelope_replies(self, smtp: smtplib.SMTP, mail_from: str) -> Delivery | None:
        """The replies to a pipelined MAIL, RCPT and DATA, in order, judged; None: the server waits for the data."""
        replies = []
        for _stage in range(3):
            code, reply = smtp.getreply()
            if code == 421:  # the server is closing the connection: nothing was sent; reconnect, try again
                raise _Lost()
            replies.append((code, reply))
        (mail_code, mail_reply), (rcpt_code, rcpt_reply), (data_code, data_reply) = replies
        refused = None
        if mail_code != 250:
            refused = ("MAIL FROM", mail_code, mail_reply)
        elif rcpt_code not in (250, 251):
            refused = ("RCPT TO", rcpt_code, rcpt_reply)
        elif data_code != 354:
            refused = ("DATA", data_code, data_reply)
        if refused is None:
            return None
        if data_code == 354:  # waiting for data that must not come: end the session without it
            self._drop()
        stage, code, reply = refused
        if stage == "MAIL FROM":
            return self._refused(stage, code, reply, sender_stage=True, mail_from=mail_from)
        if stage == "RCPT TO":
            return self._refused_recipient(code, reply)
        return self._refused(stage, code, reply)

    def _refused_recipient(self, code: int, reply: bytes) -> Delivery:
        if code == 552:  # RFC 5321: 552 at RCPT is a full mailbox, temporary (452)
            code = 452
        return self._refused("RCPT TO", code, reply, bounce=code >= 500 and not letter_refused(_text(reply)))

    def _refused(self, stage: str, code: int, reply: bytes, *, bounce: bool = False,
                 sender_stage: bool = False, mail_from: str | None = None) -> Delivery:
        """A refusal before the data: reset the transaction, classify the code."""
        text = f"{code} {_text(reply)}"
        if code == 421:  # the server is closing the connection; nothing was sent: reconnect, try again
            raise _Lost()
        if code == -1:
            self._drop()
        else:
            try:
                self._smtp.rset() if self._smtp is not None else None
            except (smtplib.SMTPException, OSError):
                self._drop()
        if 400 <= code < 500 or code == -1:
            return Delivery("deferred", error=f"{stage}: {text}")
        if sender_stage:
            raise ChannelUnavailable(gettext("%(server)s refused the sender %(sender)s: %(reply)s",
                                             server=self.config.describe(), sender=mail_from or self.sender.address,
                                             reply=text))
        if bounce:
            return Delivery("bounced", error=f"{stage}: {text}")
        return Delivery("failed", error=f"{stage}: {text}")


# An address written into a pipelined command as it is: ASCII, no spaces, brackets, quotes or line breaks.
_PLAIN = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


def _plain(address: str) -> bool:
    return _PLAIN.fullmatch(address) is not None


def _no_delay(smtp: smtplib.SMTP) -> None:
    """Each write goes out at once (TCP_NODELAY): a pipelined envelope behind a letter's data, or a
    letter's data after the envelope's replies, would otherwise wait for the server to acknowledge
    what went before (Nagle's algorithm), a delay per letter the server spends idle."""
    if smtp.sock is None:
        return
    try:
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket: nothing to do
        pass


def _options(utf8: bool, eight_bit: bool) -> list[str]:
    """MAIL FROM's parameters for a letter."""
    options = ["SMTPUTF8"] if utf8 else []
    if eight_bit:
        options.append("BODY=8BITMIME")
    return options


@dataclass
class _Ready:
    """A letter prepare() composed, and the connection its envelope went on."""

    id: int
    smtp: smtplib.SMTP
    data: bytes
    message_id: str
    eight_bit: bool
    broken: bool = False  # writing the envelope failed: that connection is not to be used for it


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: leading dots doubled, ended by CRLF.CRLF (RFC 5321 4.5.2).

    A line starts at the first byte or after an LF, so a plain replace finds
    every leading dot, several times faster than a multi-line regular
    expression over the whole letter.
    """
    stuffed = data.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _text(reply: Any) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(str(reply).split())
