"""What a letter in the bounce mailbox says: a bounce, a complaint, an auto-reply, or nothing Hub understands.

Shapes read, most reliable first:

- RFC 3464 delivery status notifications (``multipart/report;
  report-type=delivery-status``): Postfix, Exim, Exchange/Outlook, Gmail,
  Yandex and Mail.ru all send them. Per recipient: Action, Status (the
  enhanced code, RFC 3463), Diagnostic-Code, Final-Recipient.
- RFC 5965 feedback reports (ARF, ``report-type=feedback-report``): a person
  pressed «Это спам». Mail.ru's feedback loop sends ARF with the original
  letter attached. Yandex's feedback loop (for DKIM-signed mail with a
  Feedback-ID header) is not documented in detail in public; what is known
  is that its reports carry the complained letter's headers, so a report
  marked with an ``X-Yandex-FBL`` header, or sent from a Yandex FBL
  address, that carries the original's headers is read as a complaint, and
  one in ARF shape is read as ARF.
- Plain-text bounces without a delivery-status part (Exim/qmail "This
  message was created automatically by mail delivery software", Mail.ru's
  «Сообщение не доставлено»): classified by their enhanced status code, SMTP
  reply code and wording, in English and Russian.
  Only a letter a mail server wrote is read this way (an empty return
  path, MAILER-DAEMON or postmaster, multipart/report): a customer's reply
  that quotes «ошибка 550 user unknown» is a person's letter.
- Success notices (RFC 3464 with Action: delivered, relayed or expanded,
  status 2.x.x): kind "delivered"; filed away like handled mail.
- Auto-replies (RFC 3834 Auto-Submitted, X-Autoreply, «Автоответ», "Out of
  Office"): never a bounce; they are simply filed away.

Hard or soft: a 5.x.x status or permanent wording is a hard bounce; 4.x.x,
"delayed" and a full mailbox are soft. A permanent refusal of the letter
rather than the address (5.7.x policy codes, spam filters, block lists, the
sender's DMARC/SPF/DKIM; plugins.mailing.refusals) is neither: it is kind
"refused", left for a person (the shop's sending needs looking at, not the
customer's address). 5.2.2 (mailbox full) is a permanent
code by the letter of RFC 3463, but a full mailbox is usually emptied
again, so Hub counts it as soft (HUB_SOFT_BOUNCE_LIMIT of them suppress).

`parse` never raises: whatever it cannot read comes back as kind "unknown",
which the run leaves in the mailbox for a person. It uses the standard
library's compat32 parser, which is several times faster than the modern
policy's header objects, and looks at no more than MAX_BYTES of a letter.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import quopri
import re
from dataclasses import dataclass
from typing import Any, Iterator

from plugins.mailing.refusals import letter_refused

BOUNCE, SOFT_BOUNCE, COMPLAINT, AUTO_REPLY, UNKNOWN = "bounce", "soft_bounce", "complaint", "auto_reply", "unknown"
DELIVERED = "delivered"  # a success notice (Action: delivered, relayed, expanded; status 2.x.x)
REFUSED = "refused"  # the letter, not the address, was refused (spam filter, block list, sender checks)
KINDS = (BOUNCE, SOFT_BOUNCE, COMPLAINT, AUTO_REPLY, DELIVERED, REFUSED, UNKNOWN)
SUCCESS_ACTIONS = ("delivered", "relayed", "expanded")

MAX_BYTES = 2_000_000  # a bounce with the whole original attached; the verdict is in the first part
MAX_PARTS = 200  # parts looked at in one letter (a report nested in reports in reports)
MAX_DEPTH = 8  # message/rfc822 inside message/rfc822 ...
MAX_TEXT = 20_000  # characters of text searched for wording and codes
MAX_DIAGNOSTIC = 300
COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other", "opt-out", "unsubscribe"}
FALLBACK_CHARSETS = ("utf-8", "windows-1251", "koi8-r")

Part = tuple[email.message.Message, int, str]  # a part, how deep in nested letters, its content type

_PARSER = email.parser.BytesParser()  # compat32: fast, and never raises on malformed input
_HEADERS = email.parser.HeaderParser()
_POLICY = email.policy.compat32
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY_CODE = re.compile(r"(?<!\d)([45]\d\d)[ -](?=\D)")
# The top-level domain in letters, or in IDNA ASCII form (xn--p1ai is .рф, the form reports name it in).
_ADDRESS = re.compile(r"[A-Za-z0-9._%+=!#$&'*/?^`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}"
                      r"\.(?:xn--[A-Za-z0-9-]{1,59}|[A-Za-z]{2,63})")
_MESSAGE_ID_LINE = re.compile(r"^message-id:[ \t]*(<[^<>\s]{1,250}>)", re.I | re.M)
_RETURN_PATH_LINE = re.compile(r"^return-path:[ \t]*<?([^<>\s]{3,320})>?", re.I | re.M)
_HUB_ID_LINE = re.compile(r"^x-hub-message-id:[ \t]*(\d{1,18})", re.I | re.M)

# Who writes bounces: the envelope is empty, so the From says it.
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery|maildelivery|mail-daemon|mail administrator|"
                     r"почтов(ый|ая) (робот|служба|систем)", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status )?notification|delivery (has )?failed|failure notice|"
    r"returned mail|mail delivery (failed|failure|system)|could not be delivered|delivery failure|"
    r"не ?доставлен|недоставленн|не удалось доставить|ошибка доставки|возврат письма|delayed mail|"
    r"delivery (is )?delayed|warning: message", re.I)
_BOUNCE_BODY = re.compile(
    r"created automatically by mail delivery software|could not be delivered|delivery to the following|"
    r"permanent(ly)? (error|fatal|failure)|undeliverable|delivery has failed|address(es)? failed|"
    r"не удалось доставить|не может быть доставлено|не был[оа]? доставлен|сообщение не доставлено|"
    r"письмо не доставлено|i'm sorry to have to inform you|unable to deliver", re.I)
_SOFT_WORDS = re.compile(
    r"mailbox (is )?full|over ?quota|quota exceeded|exceeded (storage|the storage|quota)|insufficient storage|"
    r"mailbox size limit|ящик переполнен|превышен (размер|объ[её]м|лимит)|переполнен|нет места|"
    r"temporar(y|ily)|try again later|will (be )?retr|still trying|delayed|deferred|not yet been delivered|"
    r"временн|отложен|повторн(ая|ые) попытк", re.I)
_HARD_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address)|does not exist|doesn't exist|"
    r"recipient (address )?rejected|address rejected|mailbox unavailable|mailbox not found|invalid (mailbox|"
    r"recipient|address)|account (has been )?(disabled|deleted|blocked)|no mailbox here|not our customer|"
    r"нет такого (пользователя|адреса|ящика)|пользовател[ья] не (найден|существует)|адрес не существует|"
    r"ящик не существует|не существует|заблокирован|удал[её]н|permanent|постоянн|unrout(e)?able address", re.I)
_AUTO_SUBJECT = re.compile(
    r"автоответ|автоматический ответ|auto[- ]?reply|auto[- ]?response|automatic reply|autosvar|"
    r"out of (the )?office|vacation|away from (the )?office|отпуск|нет на месте|отсутству|^auto:", re.I)
_YANDEX_FBL_FROM = re.compile(r"fbl[^@]*@[^>]*yandex", re.I)


@dataclass(frozen=True)
class Report:
    """One letter from the bounce mailbox, read.

    `recipient` is whom the report is about (None when it does not say);
    `return_paths` the addresses that may be Hub's VERP return paths (the
    report's own To and delivery headers, the original's Return-Path);
    `original_message_id` the Message-ID of the letter it is about;
    `original_hub_id` what its X-Hub-Message-Id said (anyone can write it:
    shown to people, never used to match); `uid` the report's own
    Message-ID, or a hash of its bytes, so reading it again changes nothing.
    """

    kind: str
    recipient: str | None = None
    status: str | None = None
    action: str | None = None
    diagnostic: str | None = None
    reported_at: dt.datetime | None = None
    uid: str = ""
    return_paths: tuple[str, ...] = ()
    original_message_id: str | None = None
    original_hub_id: int | None = None
    feedback_type: str | None = None
    reporter: str | None = None


def parse(raw: bytes) -> Report:
    """Read one letter; never raises (what cannot be read is kind "unknown")."""
    return _parse(raw, fast=True)


def _parse(raw: bytes, *, fast: bool) -> Report:
    """`parse`, with the quick reader of usual letters (`fast`) or the standard parser alone (tests compare them)."""
    uid = "sha256:" + hashlib.sha256(raw).hexdigest()
    try:
        data = _common_boundaries(raw[:MAX_BYTES])
        msg = (_quick_tree(data) if fast else None) or _PARSER.parsebytes(data)
    except Exception:  # noqa: BLE001 - hostile input: a letter nobody can read goes to a person
        return Report(UNKNOWN, uid=uid)
    try:
        return _read(msg, uid)
    except Exception:  # noqa: BLE001 - recursion, odd charsets, anything: the letter goes to a person
        own_id = _header(msg, "message-id")
        return Report(UNKNOWN, uid=_uid(own_id, uid))


_BOUNDARY_PARAM = re.compile(rb'(boundary\s*=\s*)(?:"([^"\r\n]{10,200})"|([^\s;"]{10,200}))', re.I)
MAX_BOUNDARIES = 20


def _common_boundaries(raw: bytes) -> bytes:
    """The letter with its MIME boundaries renamed to the same few names in every letter.

    The standard parser compiles a regular expression for each boundary it
    meets, and every letter has boundaries of its own: a third of the time
    spent parsing a report went there. With the same names in every letter
    the compiled expressions are reused. Only boundaries of 10 characters or
    more are renamed (a shorter one could also occur in the text), and only
    where they stand as a boundary: in the parameter and after "--".
    """
    found: dict[bytes, bytes] = {}
    for match in _BOUNDARY_PARAM.finditer(raw):
        boundary = match.group(2) or match.group(3)
        if boundary not in found:
            if len(found) >= MAX_BOUNDARIES:
                return raw
            found[boundary] = b"=_hub_part_%d_=" % len(found)
    if not found or any(name in raw for name in found.values()):
        return raw
    for boundary in sorted(found, key=len, reverse=True):  # the longest first: one may begin another
        raw = raw.replace(b"--" + boundary, b"--" + found[boundary])
    return _BOUNDARY_PARAM.sub(lambda m: m.group(1) + b'"' + found[m.group(2) or m.group(3)] + b'"', raw)


def _read(msg: email.message.Message, fallback_uid: str) -> Report:
    uid = _uid(_header(msg, "message-id"), fallback_uid)
    reported_at = _date(_header(msg, "date"))
    subject = _header(msg, "subject") or ""
    sender = _header(msg, "from") or ""
    paths = _report_paths(msg)
    parts = list(_walk(msg))
    report_type = (msg.get_param("report-type", header="content-type") or "") if msg.is_multipart() else ""
    report_type = str(report_type).lower()
    types = {ctype for _, _, ctype in parts}
    base: dict[str, Any] = {"uid": uid, "reported_at": reported_at}

    if report_type == "feedback-report" or "message/feedback-report" in types:
        return _feedback(parts, paths, base, sender)
    if report_type == "delivery-status" or "message/delivery-status" in types \
            or "message/global-delivery-status" in types:
        found = _delivery_status(parts, paths, base, sender, subject)
        if found is not None:
            return found
    if msg.get("x-yandex-fbl") is not None or _YANDEX_FBL_FROM.search(sender):
        found = _yandex_fbl(msg, parts, paths, base, sender)
        if found is not None:
            return found
    text = _text(parts)
    if _from_mailer(msg, sender, subject) and (_DAEMON.search(sender) or _BOUNCE_SUBJECT.search(subject)
                                               or _BOUNCE_BODY.search(text)):
        found = _text_bounce(text, parts, paths, base, sender)
        if found is not None:
            return found
    if _auto_reply(msg, subject):
        return Report(AUTO_REPLY, reporter=_domain(sender), return_paths=paths, **base)
    return Report(UNKNOWN, return_paths=paths, reporter=_domain(sender), **base)


def _from_mailer(msg: email.message.Message, sender: str, subject: str) -> bool:
    """Whether a letter without a delivery-status part was written by a mail server, not by a person.

    Only then is its wording read as a bounce: a customer's reply quoting
    «ошибка 550 user unknown» is a person's letter, left for a person. A
    mailer's bounce comes with an empty return path (``Return-Path: <>``),
    from MAILER-DAEMON, postmaster or a "Mail Delivery System", as a
    multipart/report, or marked Auto-Submitted with a bounce's subject.
    """
    return_path = msg.get("return-path")
    if return_path is not None and str(return_path).strip() in ("<>", ""):
        return True
    if _DAEMON.search(sender):
        return True
    if msg.get_content_type() == "multipart/report":
        return True
    auto = str(msg.get("auto-submitted") or "").strip().lower()
    return auto.startswith(("auto-replied", "auto-generated")) and _BOUNCE_SUBJECT.search(subject) is not None


# --- the three shapes ---------------------------------------------------------------------------

def _delivery_status(parts: list[Part], paths: tuple[str, ...], base: dict[str, Any],
                     sender: str, subject: str) -> Report | None:
    blocks: list[email.message.Message] = []
    for part, _, ctype in parts:
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            blocks.extend(_status_blocks(part))
    recipients = [b for b in blocks if b.get("action") or b.get("status") or b.get("final-recipient")]
    if not recipients:
        return None
    # The worst news first: a failure outranks a delay, which outranks a success for another recipient.
    rank = {"failed": 0, "delayed": 1}
    chosen = min(recipients, key=lambda b: rank.get(str(b.get("action") or "").strip().lower(), 2))
    action = str(chosen.get("action") or "").strip().lower() or None
    status_field = str(chosen.get("status") or "")
    diagnostic = _clean(_decoded(chosen.get("diagnostic-code")))
    found = _ENHANCED.search(status_field) or _ENHANCED.search(diagnostic or "")
    status = ".".join(found.groups()) if found else None
    recipient = _address_field(chosen.get("original-recipient")) or _address_field(chosen.get("final-recipient"))
    kind = _severity(status, action, diagnostic or "", default=None)
    if kind is None:
        if action in SUCCESS_ACTIONS or (action is None and status is not None and status.startswith("2")):
            kind = DELIVERED  # a success notice: some servers send one unasked; it harms nobody
        else:
            kind = BOUNCE if action == "failed" else UNKNOWN
    original = _original(parts)
    extra_paths = tuple(p for p in (_address_field(chosen.get("x-original-to")),) if p)
    return Report(kind, recipient=recipient, status=status, action=action, diagnostic=_short(diagnostic),
                  return_paths=_unique(paths + extra_paths + original["return_paths"]),
                  original_message_id=original["message_id"], original_hub_id=original["hub_id"],
                  reporter=_reporting_mta(blocks) or _domain(sender), **base)


def _feedback(parts: list[Part], paths: tuple[str, ...], base: dict[str, Any],
              sender: str) -> Report:
    fields: email.message.Message | None = None
    for part, _, ctype in parts:
        if ctype == "message/feedback-report":
            fields = _fields_of(part)
            break
    feedback_type = str((fields.get("feedback-type") if fields is not None else None) or "abuse").strip().lower()
    recipient = None
    reporter = None
    if fields is not None:
        recipient = _address_field(fields.get("original-rcpt-to")) or _address_field(fields.get("removal-recipient"))
        mta = str(fields.get("reporting-mta") or "").split(";", 1)[-1]
        reporter = _clean(str(fields.get("user-agent") or mta))
        if fields.get("reported-domain"):
            reporter = reporter or _clean(str(fields.get("reported-domain")))
    original = _original(parts)
    from_original = original["return_paths"]
    extra = tuple(a for a in (_address_field(fields.get("original-mail-from")) if fields is not None else None,) if a)
    kind = COMPLAINT if feedback_type in COMPLAINT_TYPES else UNKNOWN
    return Report(kind, recipient=recipient, return_paths=_unique(paths + extra + from_original),
                  original_message_id=original["message_id"], original_hub_id=original["hub_id"],
                  feedback_type=feedback_type[:40], reporter=_short(reporter) or _domain(sender), **base)


def _yandex_fbl(msg: email.message.Message, parts: list[Part], paths: tuple[str, ...],
                base: dict[str, Any], sender: str) -> Report | None:
    original = _original(parts)
    if original["message_id"] is None and not original["return_paths"]:
        return None
    recipient = _address_field(msg.get("x-yandex-fbl-rcpt") or msg.get("original-rcpt-to")) or original["to"]
    return Report(COMPLAINT, recipient=recipient, return_paths=_unique(paths + original["return_paths"]),
                  original_message_id=original["message_id"], original_hub_id=original["hub_id"],
                  feedback_type="abuse", reporter=_domain(sender) or "yandex", **base)


def _text_bounce(text: str, parts: list[Part], paths: tuple[str, ...],
                 base: dict[str, Any], sender: str) -> Report | None:
    head = _before_original(text)
    found = _ENHANCED.search(head)
    status = ".".join(found.groups()) if found else None
    kind = _severity(status, None, head, default=None)
    if kind is None:
        return None
    original = _original(parts, text)
    recipient = _text_recipient(head, paths)
    return Report(kind, recipient=recipient, status=status, diagnostic=_short(_diagnostic_line(head)),
                  return_paths=_unique(paths + original["return_paths"]),
                  original_message_id=original["message_id"], original_hub_id=original["hub_id"],
                  reporter=_domain(sender), **base)


def _severity(status: str | None, action: str | None, words: str, *, default: str | None) -> str | None:
    """Hard or soft from the enhanced code, the action and the wording (see the module docstring)."""
    if status is not None:
        if status.startswith("4"):
            return SOFT_BOUNCE
        if status.startswith("5"):
            if status == "5.2.2" or _full_mailbox(words):
                return SOFT_BOUNCE
            return REFUSED if letter_refused(words, status) else BOUNCE
        if status.startswith("2"):
            return default
    if action == "delayed":
        return SOFT_BOUNCE
    code = _REPLY_CODE.search(words)
    if code is not None:
        if code.group(1).startswith("4") or code.group(1) == "552" or _full_mailbox(words):
            return SOFT_BOUNCE
        return REFUSED if letter_refused(words) else BOUNCE
    if _full_mailbox(words) or (_SOFT_WORDS.search(words) and not _HARD_WORDS.search(words)):
        return SOFT_BOUNCE
    if _HARD_WORDS.search(words) or _BOUNCE_BODY.search(words) or action == "failed":
        return BOUNCE
    return default


_FULL = re.compile(r"mailbox (is )?full|over ?quota|quota exceeded|exceeded (storage|the storage|quota)|"
                   r"insufficient storage|ящик переполнен|превышен (размер|объ[её]м|лимит)|переполнен", re.I)


def _full_mailbox(words: str) -> bool:
    return _FULL.search(words) is not None


def _auto_reply(msg: email.message.Message, subject: str) -> bool:
    auto = str(msg.get("auto-submitted") or "").strip().lower()
    if auto and auto != "no":
        return True
    if any(msg.get(h) is not None for h in ("x-autoreply", "x-autorespond", "x-auto-response-suppress")):
        return True
    if str(msg.get("precedence") or "").strip().lower() == "auto_reply":
        return True
    return _AUTO_SUBJECT.search(subject) is not None


# --- parts --------------------------------------------------------------------------------------

def _walk(msg: email.message.Message) -> Iterator[Part]:
    """Every part with its depth in nested letters and its content type, bounded however the letter is built."""
    stack: list[tuple[email.message.Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop(0)
        seen += 1
        ctype = part.get_content_type()
        yield part, depth, ctype
        if ctype == "message/delivery-status":
            continue  # its payload is a list of field blocks, not parts
        payload = part.get_payload()
        if isinstance(payload, list):
            inner = depth + (1 if ctype == "message/rfc822" else 0)
            if inner <= MAX_DEPTH:
                stack.extend((p, inner) for p in payload if isinstance(p, email.message.Message))


def _status_blocks(part: email.message.Message) -> list[email.message.Message]:
    payload = part.get_payload()
    encoding = str(part.get("content-transfer-encoding") or "").strip().lower()
    if isinstance(payload, list) and encoding in ("base64", "quoted-printable"):
        # The parser read the encoded text as if it were fields: undo that, then decode it.
        encoded = "\n".join(b.as_string() for b in payload if isinstance(b, email.message.Message))
        try:
            data = (base64.b64decode(re.sub(r"[^A-Za-z0-9+/=]", "", encoded) + "===") if encoding == "base64"
                    else quopri.decodestring(encoded.encode("ascii", "replace")))
        except ValueError:
            return []
        text = _bytes_text(data[:MAX_BYTES], part.get_content_charset())
        return [_headers_of(block) for block in re.split(r"\r?\n\r?\n", text.strip()) if block.strip()]
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, email.message.Message)]
    text = _decode_part(part)  # base64- or quoted-printable-encoded status: read the fields ourselves
    return [_headers_of(block) for block in re.split(r"\r?\n\r?\n", text.strip()) if block.strip()]


def _fields_of(part: email.message.Message) -> email.message.Message:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
        return payload[0]
    return _headers_of(_decode_part(part))


def _original(parts: list[Part], text: str = "") -> dict[str, Any]:
    """The letter the report is about: its Message-ID, Return-Path, To and the X-Hub-Message-Id it claimed."""
    headers: email.message.Message | None = None
    for part, _, kind in parts:
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            encoding = str(part.get("content-transfer-encoding") or "").strip().lower()
            if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message) \
                    and encoding not in ("base64", "quoted-printable"):
                headers = payload[0]
            elif isinstance(payload, list) and encoding in ("base64", "quoted-printable"):
                headers = _headers_of(_encoded_letter(payload, encoding))
            else:
                headers = _headers_of(_decode_part(part))
            break
        if kind in ("text/rfc822-headers", "message/rfc822-headers", "text/global-headers",
                    "message/global-headers"):
            headers = _headers_of(_decode_part(part))
            break
    if headers is not None:
        message_id = _message_id(_header(headers, "message-id"))
        hub = _digits(headers.get("x-hub-message-id"))
        return_path = _address_field(headers.get("return-path"))
        return {"message_id": message_id, "hub_id": hub, "return_paths": (return_path,) if return_path else (),
                "to": _address_field(headers.get("to"))}
    # A plain-text bounce quotes the original's headers in its body, after the explanation.
    quoted = _after_explanation(text)
    found = _MESSAGE_ID_LINE.search(quoted)
    path = _RETURN_PATH_LINE.search(quoted)
    hub_line = _HUB_ID_LINE.search(quoted)
    return {"message_id": found.group(1) if found else None,
            "hub_id": int(hub_line.group(1)) if hub_line else None,
            "return_paths": (path.group(1),) if path and "@" in path.group(1) else (), "to": None}


def _encoded_letter(payload: list[Any], encoding: str) -> str:
    """An attached letter sent base64- or quoted-printable-encoded, as text.

    RFC 2046 allows only 7bit, 8bit or binary for message/rfc822, yet some
    feedback loops (Yandex's among them) encode the complained letter in
    base64; the parser then reads the encoded lines as the body of a letter
    without headers. Undo that, then decode it.
    """
    encoded = "\n".join(p.as_string() for p in payload if isinstance(p, email.message.Message))
    try:
        data = (base64.b64decode(re.sub(r"[^A-Za-z0-9+/=]", "", encoded) + "===") if encoding == "base64"
                else quopri.decodestring(encoded.encode("ascii", "replace")))
    except ValueError:
        return ""
    return _bytes_text(data[:MAX_BYTES], None)


def _text(parts: list[Part]) -> str:
    """The readable text of the report itself (not of the letters inside it), decoded whatever the charset."""
    out: list[str] = []
    size = 0
    for part, depth, ctype in parts:
        if depth > 0 or not ctype.startswith("text/"):
            continue
        if ctype == "text/rfc822-headers":
            continue
        chunk = _decode_part(part)
        if part.get_content_subtype() == "html":
            chunk = re.sub(r"<[^>]{0,2000}>", " ", chunk)
        out.append(chunk)
        size += len(chunk)
        if size > MAX_TEXT:
            break
    # Exim and qmail put the quoted original inline ("------ This is a copy of the message"): keep it.
    return "\n".join(out)[: MAX_TEXT * 2]


def _decode_part(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        inner = part.get_payload()
        if isinstance(inner, list):
            return "\n".join(str(p) for p in inner if isinstance(p, email.message.Message))[:MAX_TEXT]
        return str(inner or "")[:MAX_BYTES]
    return _bytes_text(payload[:MAX_BYTES], part.get_content_charset())


def _bytes_text(data: bytes, charset: str | None) -> str:
    for name in ((charset,) if charset else ()) + FALLBACK_CHARSETS:
        try:
            return data.decode(name)
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return data.decode("utf-8", "replace")


_SPLIT = re.compile(r"^-{2,}\s*(this is a copy of|original message|the original message|below this line|"
                    r"undelivered message|копия (исходного )?(сообщения|письма)|исходное (сообщение|письмо))"
                    r"|^received: ", re.I | re.M)


def _before_original(text: str) -> str:
    """The explanation part of a plain-text bounce: the quoted original may say anything."""
    cut = _SPLIT.search(text)
    return (text[: cut.start()] if cut else text)[:MAX_TEXT]


def _after_explanation(text: str) -> str:
    cut = _SPLIT.search(text)
    return text[cut.start():] if cut else text


_FAILED_BLOCK = re.compile(r"(?:failed|recipients?|адрес(?:ат)?[а-я]*|получател[а-я]*)[^\n]{0,80}:\s*\n+\s*<?("
                           + _ADDRESS.pattern + r")>?", re.I)
_ANGLE_COLON = re.compile(r"<(" + _ADDRESS.pattern + r")>\s*:")


def _text_recipient(head: str, paths: tuple[str, ...]) -> str | None:
    """Whom a plain-text bounce is about: the address it lists as failed, not the bounce mailbox or a daemon."""
    for pattern in (_ANGLE_COLON, _FAILED_BLOCK):
        found = pattern.search(head)
        if found:
            return found.group(1)
    ours = {p.lower() for p in paths}
    for found in _ADDRESS.finditer(head):
        address = found.group(0)
        low = address.lower()
        if low in ours or "+" in low.split("@")[0] or _DAEMON.search(low):
            continue
        return address
    return None


def _diagnostic_line(head: str) -> str | None:
    """The line of a plain-text bounce that gives the reason (the one with a code, else with the wording)."""
    lines = [line.strip() for line in head.splitlines() if line.strip()]
    for line in lines:
        if _ENHANCED.search(line) or _REPLY_CODE.search(line + " x"):
            return line
    for line in lines:  # the reason itself before the boilerplate around it ("This is a permanent error")
        if (_HARD_WORDS.search(line) or _SOFT_WORDS.search(line)) and not _BOUNCE_BODY.search(line):
            return line
    for line in lines:
        if _HARD_WORDS.search(line) or _SOFT_WORDS.search(line):
            return line
    return None


# --- fields -------------------------------------------------------------------------------------

def _header(msg: email.message.Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    return _decoded(value)


def _decoded(value: Any) -> str | None:
    """A header's text, RFC 2047 encoded words decoded, whatever charset they claim."""
    if value is None:
        return None
    if isinstance(value, email.header.Header):  # 8-bit bytes in a header, without RFC 2047: guess the charset
        try:
            return "".join(_bytes_text(chunk, None if charset in (None, "unknown-8bit") else charset)
                           if isinstance(chunk, bytes) else chunk
                           for chunk, charset in email.header.decode_header(value))
        except Exception:  # noqa: BLE001 - what cannot be decoded is read as nothing
            return ""
    raw = str(value)
    if "=?" not in raw:
        return raw
    try:
        return "".join(_bytes_text(chunk, charset) if isinstance(chunk, bytes) else chunk
                       for chunk, charset in email.header.decode_header(raw))
    except Exception:  # noqa: BLE001 - a malformed encoded word: keep the raw text
        return raw


MAX_UID = 200  # message_events.uid


def _uid(own_id: str | None, fallback: str) -> str:
    """The report's Message-ID as the event's uid; one too long for the column is hashed, never cut (two would meet)."""
    message_id = _message_id(own_id)
    if not message_id:
        return fallback
    uid = f"mid:{message_id}"
    if len(uid) > MAX_UID:
        uid = "mid-sha256:" + hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()
    return uid


def _message_id(value: str | None) -> str | None:
    if not value:
        return None
    found = re.search(r"<[^<>\s]{1,998}>", value)
    return found.group(0) if found else None


def _digits(value: Any) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) <= 18 else None


def _address_field(value: Any) -> str | None:
    """The address in "rfc822; a@b.ru", "<a@b.ru>" or "Anna <a@b.ru>"."""
    if value is None:
        return None
    text = str(value)
    if ";" in text:
        text = text.split(";", 1)[1]
    found = _ADDRESS.search(text)
    return found.group(0) if found else None


def _report_paths(msg: email.message.Message) -> tuple[str, ...]:
    """Where the report was delivered: a VERP return path, when Hub sent the letter with one."""
    found: list[str] = []
    for name in ("to", "delivered-to", "x-original-to", "original-recipient", "envelope-to", "x-envelope-to"):
        for value in msg.get_all(name) or ():
            found.extend(_ADDRESS.findall(str(value))[:5])
    return _unique(tuple(found))


def _reporting_mta(blocks: list[email.message.Message]) -> str | None:
    for block in blocks:
        mta = block.get("reporting-mta")
        if mta:
            return _short(_address_field(mta) or str(mta).split(";", 1)[-1].strip())
    return None


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        if item:
            seen.setdefault(item.strip().strip("<>"), None)
    return tuple(seen)[:10]


def _date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def _domain(sender: str) -> str | None:
    found = _ADDRESS.search(sender or "")
    return found.group(0).rsplit("@", 1)[1].lower()[:100] if found else None


def _clean(text: str | None) -> str | None:
    if not text:
        return None
    return " ".join(text.split()) or None


def _short(text: str | None) -> str | None:
    """A diagnostic as kept: one line, no longer than MAX_DIAGNOSTIC, with nobody's address in it."""
    text = _clean(text)
    if text is None:
        return None
    return _BRACKETED_ADDRESS.sub("<address>", text)[:MAX_DIAGNOSTIC]


_BRACKETED_ADDRESS = re.compile(r"<?" + _ADDRESS.pattern + r">?")



# --- the quick reader ---------------------------------------------------------------------------
#
# The standard parser spent more than half of a bounce run: a generator per part, a line buffer
# fed and read line by line, and Message.get scanning every header on each of ~50 look-ups. Bounce
# reports are line-oriented and nearly always the same few shapes, so `_quick_tree` builds the very
# tree the standard compat32 parser builds (same headers, payloads, preamble and epilogue, following
# email.feedparser step by step) with string searches over the whole letter, and gives up (None) on
# anything unusual, which the standard parser then reads: mixed line endings, a Unix "From " line,
# a line in a header block that is not a header, a multipart without its boundary or with two
# boundary lines in a row, multipart/digest, a letter inside a letter inside a letter. Its
# messages look their headers up in a dictionary (they are never changed once built).


class _Unusual(Exception):
    """A letter the quick reader leaves to the standard parser."""


_NO_PARAMS = object()


class _Indexed(email.message.Message):
    """A compat32 message whose header look-ups are a dictionary."""

    _headers: list[tuple[str, str]]
    _payload: Any
    _index: dict[str, list[Any]]
    _params: dict[str, Any]
    _ctype: str | None = None

    def get(self, name: str, failobj: Any = None) -> Any:
        values = self._index.get(name.lower())
        return values[0] if values else failobj

    def get_all(self, name: str, failobj: Any = None) -> Any:
        values = self._index.get(name.lower())
        return list(values) if values else failobj

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def get_payload(self, i: Any = None, decode: bool = False) -> Any:
        payload = self._payload
        if i is None and not decode and (isinstance(payload, list) or (isinstance(payload, str)
                                                                      and payload.isascii())):
            return payload  # what compat32 returns for parts and for text without 8-bit bytes
        return super().get_payload(i, decode)  # type: ignore[call-overload]

    def get_content_type(self) -> str:
        ctype = self._ctype
        if ctype is None:
            ctype = self._ctype = super().get_content_type()
        return ctype

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        found = self._params.get(header, _NO_PARAMS)
        if found is _NO_PARAMS:
            found = self._params[header] = super()._get_params_preserve(_NO_PARAMS, header)  # type: ignore[misc]
        return failobj if found is _NO_PARAMS else found


_BOUNDARY_LINES: dict[str, re.Pattern[str]] = {}


def _quick_tree(data: bytes) -> email.message.Message | None:
    """The message the standard parser would make of `data`, or None when the letter is unusual."""
    text = data.decode("ascii", "surrogateescape")
    try:
        eol = _line_end(text)
        msg, _last = _quick_message(text, 0, len(text), eol, None)
    except (_Unusual, RecursionError):
        return None
    return msg


def _line_end(text: str) -> str:
    """The letter's one kind of line end (the parser breaks lines at CR LF, CR and LF only); mixed ends are unusual."""
    if "\r" in text:
        pairs = text.count("\r\n")
        if pairs != text.count("\r") or pairs != text.count("\n"):
            raise _Unusual
        eol = "\r\n"
    else:
        eol = "\n"
    return eol


def _headers_of(text: str) -> email.message.Message:
    """email.parser.HeaderParser().parsestr(text), quicker for the usual header blocks."""
    try:
        eol = _line_end(text)
        msg, body = _quick_headers(text, 0, len(text), eol)
    except _Unusual:
        return _HEADERS.parsestr(text)
    msg._payload = text[body:]
    return msg


def _quick_headers(text: str, start: int, end: int, eol: str) -> tuple[_Indexed, int]:
    """The header block at `start` as a message, and where its body begins (after the blank line)."""
    if start >= end:
        block_end = body = end
    elif text.startswith(eol, start):
        block_end, body = start, start + len(eol)
    else:
        blank = text.find(eol + eol, start, end)
        if blank < 0:
            block_end = body = end
        else:
            block_end = blank + len(eol)
            body = block_end + len(eol)
    pairs: list[tuple[str, str]] = []
    index: dict[str, list[Any]] = {}
    block = text[start:block_end]
    lines = block.split(eol)
    if lines[-1] == "":
        lines.pop()  # what follows the last line end
    if lines and block[0] not in " \t" and eol + " " not in block and eol + "\t" not in block:
        # No header continues on another line (the usual block): checked and read all at once.
        split = [line.partition(":") for line in lines]
        names = "".join([name for name, _, _ in split])
        if not all([name and colon for name, colon, _ in split]) or not names.isascii() \
                or not names.isprintable() or " " in names:
            raise _Unusual  # no header (the body's start to the standard parser), "From " or an empty name
        plain = block.isascii()
        for name, _, first in split:
            field = first.lstrip(" \t")
            pairs.append((name, field))
            read = field if plain or field.isascii() else _POLICY.header_fetch_parse(name, field)
            key = name.lower()
            if key in index:
                index[key].append(read)
            else:
                index[key] = [read]
        lines = []
    name = ""
    value: list[str] = []
    for line in lines + ["x:"] if lines else ():  # the sentinel closes the last header
        if line and line[0] in " \t":
            if not name:
                raise _Unusual  # a continuation line first
            value.append(line)
            continue
        if name:
            joined = (eol.join(value) if len(value) > 1 else value[0]).rstrip("\r\n")
            pairs.append((name, joined))
            read = joined if joined.isascii() else _POLICY.header_fetch_parse(name, joined)
            key = name.lower()
            if key in index:
                index[key].append(read)
            else:
                index[key] = [read]
        name, colon, first = line.partition(":")
        if not colon or not name.isascii() or not name.isprintable() or " " in name or not name:
            raise _Unusual  # no header (the body's start to the standard parser), "From " or an empty name
        value = [first.lstrip(" \t")]
    msg = _Indexed()
    msg._headers = pairs
    msg._index = index
    msg._params = {}
    return msg, body


def _quick_message(text: str, start: int, end: int, eol: str,
                   parent: email.message.Message | None) -> tuple[email.message.Message, Any]:
    """The message in text[start:end], and the one whose payload ends it (what a multipart trims)."""
    if parent is not None and parent.get_content_type() == "multipart/digest":
        raise _Unusual  # its parts default to message/rfc822
    msg, body = _quick_headers(text, start, end, eol)
    if parent is not None:
        parent.attach(msg)
    ctype = msg.get_content_type()
    if ctype == "message/delivery-status":
        # Blocks of fields, one blank line apart (a second blank line makes an empty block).
        pos = body
        while True:
            block, after = _quick_headers(text, pos, end, eol)
            if block.get_content_maintype() in ("message", "multipart"):
                raise _Unusual
            block._payload = ""
            msg.attach(block)
            if after >= end:
                return msg, block
            pos = after
    maintype = msg.get_content_maintype()
    if maintype == "message":
        inner, _last = _quick_message(text, body, end, eol, msg)
        if inner.get_content_maintype() in ("message", "multipart"):
            raise _Unusual
        return msg, inner
    if maintype == "multipart":
        _quick_multipart(text, body, end, eol, msg)
        return msg, msg
    msg._payload = text[body:end]
    return msg, msg


def _quick_multipart(text: str, start: int, end: int, eol: str, msg: email.message.Message) -> None:
    boundary = msg.get_boundary()
    if boundary is None:
        raise _Unusual
    lines = _BOUNDARY_LINES.get(boundary)
    if lines is None:
        lines = re.compile("^" + re.escape("--" + boundary) + r"(--)?[ \t]*(\r?\n|\Z)", re.M)
        if len(_BOUNDARY_LINES) < 100:  # the renamed boundaries (_common_boundaries) repeat in every letter
            _BOUNDARY_LINES[boundary] = lines
    found = lines.search(text, start, end)
    if found is None or found.group(1):
        raise _Unusual  # no parts at all
    if found.start() > start:
        msg.preamble = _trim(text[start:found.start()], eol)
    pos = found.end()
    while True:
        if lines.match(text, pos, end):
            raise _Unusual  # boundary lines in a row
        found = lines.search(text, pos, end)
        part_end = found.start() if found else end
        _part, last = _quick_message(text, pos, part_end, eol, msg)
        if last.get_content_maintype() == "multipart":
            last.epilogue = None if last.epilogue == "" else (
                _trim(last.epilogue, eol) if last.epilogue is not None else None)
        elif isinstance(last._payload, str):
            last._payload = _trim(last._payload, eol)
        if found is None:
            return  # no closing boundary
        if found.group(1):
            msg.epilogue = text[found.end():end]
            return
        pos = found.end()


def _trim(text: str, eol: str) -> str:
    return text[:-len(eol)] if text.endswith(eol) else text
