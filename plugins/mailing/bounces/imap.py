"""The bounce mailbox, read over IMAP: what is waiting, and where it goes once handled.

Settings (settings.extra; HUB_* variables or hub.toml):

    bounce_imap_host         HUB_BOUNCE_IMAP_HOST         the IMAP server (unset: bounces are not read)
    bounce_imap_port         HUB_BOUNCE_IMAP_PORT         993 with ssl, 143 otherwise
    bounce_imap_user         HUB_BOUNCE_IMAP_USER         the mailbox's login, usually its address
    bounce_imap_password     HUB_BOUNCE_IMAP_PASSWORD     its password (an app password at Yandex and Mail.ru)
    bounce_imap_folder       HUB_BOUNCE_IMAP_FOLDER       where reports arrive (INBOX)
    bounce_imap_security     HUB_BOUNCE_IMAP_SECURITY     ssl (default) | starttls | none
    bounce_imap_done_folder  HUB_BOUNCE_IMAP_DONE_FOLDER  where handled reports are moved (Hub-Processed)
    bounce_imap_timeout      HUB_BOUNCE_IMAP_TIMEOUT      seconds to wait for the server (30)

Nothing is ever deleted: a handled report is moved to the done folder (a
person can look back at why an address was suppressed), and one Hub cannot
read stays where it is, flagged, so a person finds it and the next run does
not read it again. Reports are fetched in batches, so a mailbox that filled
up over a holiday is read in constant memory.
"""

from __future__ import annotations

import base64
import imaplib
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from hub.api import Settings, SettingsError, gettext

SECURITY = ("ssl", "starttls", "none")
REVIEW_KEYWORD = "HubReview"
# UIDs listed (flags and size) per command: keeps each answer small however many reports wait.
LIST_WINDOW = 5_000
# A batch of letters held in memory at once stops at this many bytes (and at `batch` letters).
BATCH_BYTES = 32 * 2**20

_UID = re.compile(rb"\bUID (\d+)", re.I)
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)", re.I)
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)", re.I)
_REVIEW = REVIEW_KEYWORD.lower().encode("ascii")


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    security: str = "ssl"  # ssl | starttls | none
    done_folder: str = "Hub-Processed"
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ImapSettings | None:
        """The mailbox to read, or None when HUB_BOUNCE_IMAP_HOST is not set (bounces arrive some other way)."""
        extra = settings.extra
        host = _text(extra.get("bounce_imap_host"))
        if not host:
            return None
        if any(c.isspace() or c in "/@:" for c in host):
            raise SettingsError(gettext("HUB_BOUNCE_IMAP_HOST: %(value)r is not a host name (e.g. imap.yandex.ru)",
                                        value=host))
        security = (_text(extra.get("bounce_imap_security")) or "ssl").lower()
        if security not in SECURITY:
            raise SettingsError(gettext("HUB_BOUNCE_IMAP_SECURITY: %(value)r is not one of ssl, starttls, none",
                                        value=security))
        port = _port(extra.get("bounce_imap_port"), 993 if security == "ssl" else 143)
        user = _text(extra.get("bounce_imap_user"))
        if not user:
            raise SettingsError(gettext("HUB_BOUNCE_IMAP_USER: not set; the bounce mailbox at %(host)s "
                                        "needs its login (usually the mailbox's address)", host=host))
        password = extra.get("bounce_imap_password")
        if password is None or str(password) == "":
            raise SettingsError(gettext("HUB_BOUNCE_IMAP_PASSWORD: not set; the bounce mailbox at %(host)s "
                                        "needs a password (an app password at Yandex 360 and Mail.ru)", host=host))
        folder = _text(extra.get("bounce_imap_folder")) or "INBOX"
        done_folder = _text(extra.get("bounce_imap_done_folder")) or "Hub-Processed"
        for name, value in (("HUB_BOUNCE_IMAP_FOLDER", folder), ("HUB_BOUNCE_IMAP_DONE_FOLDER", done_folder)):
            if len(value) > 200 or any(ord(c) < 32 or c in "*%" for c in value):
                raise SettingsError(gettext("%(name)s: %(value)r is not a folder name", name=name, value=value))
        if done_folder.casefold() == folder.casefold():
            raise SettingsError(gettext("HUB_BOUNCE_IMAP_DONE_FOLDER: must differ from the folder reports "
                                        "arrive in (%(folder)s), or handled reports would be read again",
                                        folder=folder))
        return cls(host=host, port=port, user=user, password=str(password), folder=folder, security=security,
                   done_folder=done_folder, timeout=_timeout(extra.get("bounce_imap_timeout")))


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _port(value: Any, default: int) -> int:
    if value is None or _text(value) == "":
        return default
    try:
        port = int(_text(value))
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise SettingsError(gettext("HUB_BOUNCE_IMAP_PORT: %(value)r is not a port number (1 to 65535)",
                                    value=value))
    return port


def _timeout(value: Any) -> float:
    if value is None or _text(value) == "":
        return 30.0
    try:
        seconds = float(_text(value))
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise SettingsError(gettext("HUB_BOUNCE_IMAP_TIMEOUT: %(value)r is not a number of seconds "
                                    "(more than 0, at most 3600)", value=value))
    return seconds


class MailboxError(RuntimeError):
    """The bounce mailbox cannot be read or changed; the message names the server and what failed."""


def encode_folder(name: str) -> str:
    """A folder name as IMAP writes it (modified UTF-7, RFC 3501 5.1.3), quoted: «Отказы» is "&BB4EQgQ6BDAENwRL-"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    quoted = "".join(out).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'


def _uid_set(uids: Sequence[str]) -> str:
    """UIDs as a compact IMAP sequence set: 1,2,3,7 -> 1:3,7."""
    numbers = sorted({int(uid) for uid in uids})
    parts: list[str] = []
    start = prev = numbers[0]
    for number in numbers[1:]:
        if number != prev + 1:
            parts.append(str(start) if start == prev else f"{start}:{prev}")
            start = number
        prev = number
    parts.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(parts)


class BounceMailbox:
    """One session with the bounce mailbox: connected, logged in and in the folder while in a `with` block."""

    def __init__(self, config: ImapSettings) -> None:
        self.config = config
        self._imap: imaplib.IMAP4 | None = None
        self._can_move = False
        self._can_uid_expunge = False

    # ------------------------------------------------------------------ session

    def __enter__(self) -> BounceMailbox:
        config = self.config
        imap = self._connect()
        self._imap = imap
        try:
            self._login(imap)
            capabilities = self._capabilities(imap)
            self._can_move = "MOVE" in capabilities
            self._can_uid_expunge = "UIDPLUS" in capabilities
            self._ensure_done_folder(imap)
            status, data = self._call("SELECT", imap.select, encode_folder(config.folder))
            if status != "OK":
                raise MailboxError(gettext("The bounce mailbox %(user)s at %(host)s has no folder %(folder)r "
                                           "(check HUB_BOUNCE_IMAP_FOLDER): %(error)s", user=config.user,
                                           host=config.host, folder=config.folder, error=self._said(data)))
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()

    def _connect(self) -> imaplib.IMAP4:
        config = self.config
        try:
            if config.security == "ssl":
                return imaplib.IMAP4_SSL(config.host, config.port, ssl_context=ssl.create_default_context(),
                                         timeout=config.timeout)
            imap = imaplib.IMAP4(config.host, config.port, timeout=config.timeout)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(gettext("Cannot connect to the bounce mailbox at %(host)s:%(port)s: %(error)s",
                                       host=config.host, port=config.port, error=self._scrub(exc))) from None
        if config.security == "starttls":
            try:
                imap.starttls(ssl.create_default_context())
            except (OSError, imaplib.IMAP4.error) as exc:
                _shutdown(imap)
                raise MailboxError(gettext(
                    "The bounce mailbox at %(host)s:%(port)s did not start an encrypted connection (STARTTLS): "
                    "%(error)s; check HUB_BOUNCE_IMAP_SECURITY and HUB_BOUNCE_IMAP_PORT",
                    host=config.host, port=config.port, error=self._scrub(exc))) from None
        return imap

    def _login(self, imap: imaplib.IMAP4) -> None:
        config = self.config
        try:
            if config.user.isascii() and config.password.isascii():
                imap.login(config.user, config.password)
            else:  # LOGIN is ASCII only; AUTHENTICATE PLAIN carries UTF-8
                secret = f"\0{config.user}\0{config.password}".encode()
                imap.authenticate("PLAIN", lambda _challenge: secret)
        except imaplib.IMAP4.abort as exc:
            raise self._lost(exc) from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(gettext("The bounce mailbox at %(host)s refused the login of %(user)s: %(error)s "
                                       "(check HUB_BOUNCE_IMAP_USER and HUB_BOUNCE_IMAP_PASSWORD)",
                                       host=config.host, user=config.user, error=self._scrub(exc))) from None

    def _capabilities(self, imap: imaplib.IMAP4) -> set[str]:
        # Asked again after login: servers announce MOVE and UIDPLUS to logged-in users only.
        status, data = self._call("CAPABILITY", imap.capability)
        words = b" ".join(item for item in data if isinstance(item, bytes)).decode("ascii", "replace")
        return {word.upper() for word in words.split()} if status == "OK" else set()

    def _ensure_done_folder(self, imap: imaplib.IMAP4) -> None:
        config = self.config
        status, data = self._call("LIST", imap.list, '""', encode_folder(config.done_folder))
        if status == "OK" and any(item for item in data if item):
            return
        status, data = self._call("CREATE", imap.create, encode_folder(config.done_folder))
        if status != "OK":
            raise MailboxError(gettext("Could not create the folder %(folder)r in the bounce mailbox at %(host)s "
                                       "(check HUB_BOUNCE_IMAP_DONE_FOLDER): %(error)s", folder=config.done_folder,
                                       host=config.host, error=self._said(data)))
        self._call("SUBSCRIBE", imap.subscribe, encode_folder(config.done_folder))  # so webmail lists it too

    def _close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            imap.logout()  # not CLOSE: that would expunge whatever a person marked deleted in the folder
        except (OSError, imaplib.IMAP4.error):
            _shutdown(imap)

    # ------------------------------------------------------------------ reading

    def waiting(self, batch: int = 500) -> Iterator[list[tuple[str, bytes]]]:
        """Batches of (uid, raw message bytes) not yet handled: every message in the folder except those
        flagged for a person (keyword HubReview), oldest uid first; fetched with UID FETCH (BODY.PEEK[]) in
        batches so 100,000 messages never sit in memory at once."""
        imap = self._session()
        pending: list[str] = []
        pending_bytes = 0
        for listed in self._waiting_uids(imap):
            for uid, size in listed:
                # A batch also stops at BATCH_BYTES: 500 letters with big attachments are not 500 small reports.
                if pending and (len(pending) >= batch or pending_bytes + size > BATCH_BYTES):
                    found = self._fetch(imap, pending)
                    if found:
                        yield found
                    pending, pending_bytes = [], 0
                pending.append(uid)
                pending_bytes += size
        if pending:
            found = self._fetch(imap, pending)
            if found:
                yield found

    def _waiting_uids(self, imap: imaplib.IMAP4) -> Iterator[list[tuple[str, int]]]:
        """(uid, size) of the waiting letters, listed window by window of UIDs up to the newest letter now
        (later arrivals wait for the next run): small answers however many letters wait."""
        lowest, highest = self._uid_of(imap, "1"), self._uid_of(imap, "*")
        if lowest is None or highest is None:
            return  # an empty folder
        start = lowest
        while start <= highest:
            end = min(start + LIST_WINDOW - 1, highest)
            status, data = self._call("FETCH", imap.uid, "FETCH", f"{start}:{end}", "(UID FLAGS RFC822.SIZE)")
            self._check("UID FETCH", status, data)
            listed: list[tuple[int, int]] = []
            for item in data:
                line = item[0] if isinstance(item, tuple) else item
                if not isinstance(line, bytes):
                    continue
                uid, flags, size = _UID.search(line), _FLAGS.search(line), _SIZE.search(line)
                if uid is None:
                    continue
                words = {word.lower() for word in flags[1].split()} if flags else set()
                if _REVIEW in words or b"\\deleted" in words:
                    continue
                listed.append((int(uid[1]), int(size[1]) if size else 0))
            listed.sort()
            yield [(str(uid), size) for uid, size in listed]
            start = end + 1

    def _uid_of(self, imap: imaplib.IMAP4, sequence: str) -> int | None:
        """The UID of message number `sequence` ("1": the oldest, "*": the newest), None in an empty folder."""
        status, data = self._call("FETCH", imap.fetch, sequence, "(UID)")
        if status != "OK":
            return None  # BAD "invalid messageset": nothing there
        found = _UID.search(b" ".join(item for item in data if isinstance(item, bytes)))
        return int(found[1]) if found else None

    def _fetch(self, imap: imaplib.IMAP4, uids: Sequence[str]) -> list[tuple[str, bytes]]:
        status, data = self._call("FETCH", imap.uid, "FETCH", _uid_set(uids), "(BODY.PEEK[])")
        self._check("UID FETCH", status, data)
        found: list[tuple[str, bytes]] = []
        for index, item in enumerate(data):
            if not isinstance(item, tuple):
                continue
            head, raw = item
            uid = _UID.search(head)
            if uid is None:  # the server put UID after the body: "* 3 FETCH (BODY[] {n}...  UID 7)"
                tail = data[index + 1] if index + 1 < len(data) else b""
                uid = _UID.search(tail) if isinstance(tail, bytes) else None
            if uid is not None:
                found.append((uid[1].decode("ascii"), raw))
        found.sort(key=lambda pair: int(pair[0]))
        return found

    def count_for_person(self) -> int:
        """Reports left for a person to read (the keyword HubReview), e.g. for a status page."""
        imap = self._session()
        status, data = self._call("SEARCH", imap.uid, "SEARCH", "KEYWORD", REVIEW_KEYWORD, "NOT", "DELETED")
        self._check("UID SEARCH", status, data)
        return len((data[0] or b"").split())

    # ------------------------------------------------------------------ changing

    def done(self, uids: Sequence[str]) -> None:
        """Move handled messages to done_folder (UID MOVE when the server offers MOVE; else UID COPY + \\Deleted +
        UID EXPUNGE): never lost."""
        if not uids:
            return
        imap = self._session()
        target = encode_folder(self.config.done_folder)
        for chunk in _chunks(uids, 1000):
            uid_set = _uid_set(chunk)
            if self._can_move:
                status, data = self._call("MOVE", imap.uid, "MOVE", uid_set, target)
                self._check("UID MOVE", status, data)
                continue
            # Copied first: should anything fail after, the report is in both folders, never in neither.
            status, data = self._call("COPY", imap.uid, "COPY", uid_set, target)
            self._check("UID COPY", status, data)
            status, data = self._call("STORE", imap.uid, "STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)")
            self._check("UID STORE", status, data)
            if self._can_uid_expunge:
                status, data = self._call("EXPUNGE", imap.uid, "EXPUNGE", uid_set)
            else:
                status, data = self._call("EXPUNGE", imap.expunge)
            self._check("EXPUNGE", status, data)

    def leave_for_person(self, uids: Sequence[str]) -> None:
        """Keep in place, flagged (\\Flagged and keyword HubReview) so a person finds them and the next run
        skips them."""
        if not uids:
            return
        imap = self._session()
        for chunk in _chunks(uids, 1000):
            status, data = self._call("STORE", imap.uid, "STORE", _uid_set(chunk), "+FLAGS.SILENT",
                                      f"(\\Flagged {REVIEW_KEYWORD})")
            self._check("UID STORE", status, data)

    # ------------------------------------------------------------------ plumbing

    def _session(self) -> imaplib.IMAP4:
        if self._imap is None:
            raise RuntimeError("BounceMailbox is used outside its `with` block")
        return self._imap

    def _call(self, command: str, method: Any, *args: Any) -> tuple[str, list[Any]]:
        try:
            status, data = method(*args)
        except imaplib.IMAP4.abort as exc:
            raise self._lost(exc) from None
        except OSError as exc:  # a timeout included
            raise self._lost(exc) from None
        except imaplib.IMAP4.error as exc:  # a NO or BAD answer
            return "NO", [str(exc).encode("utf-8", "replace")]
        return status, list(data or [])

    def _check(self, command: str, status: str, data: list[Any]) -> None:
        if status != "OK":
            raise MailboxError(gettext("The bounce mailbox at %(host)s refused %(command)s: %(error)s",
                                       host=self.config.host, command=command, error=self._said(data)))

    def _lost(self, exc: BaseException) -> MailboxError:
        return MailboxError(gettext("Lost the connection to the bounce mailbox at %(host)s:%(port)s: %(error)s",
                                    host=self.config.host, port=self.config.port, error=self._scrub(exc)))

    def _said(self, data: list[Any]) -> str:
        text = b" ".join(item for item in data if isinstance(item, bytes)).decode("utf-8", "replace")
        return self._scrub(text[:300])

    def _scrub(self, error: object) -> str:
        """The server's or the library's words, never with the password in them (some echo the command).

        imaplib raises a server's NO with the answer as bytes: shown as text, not as b'[AUTHENTICATIONFAILED]…'.
        """
        args: tuple[object, ...] = getattr(error, "args", ())
        if isinstance(error, BaseException) and len(args) == 1 and isinstance(args[0], bytes):
            text = args[0].decode("utf-8", "replace")
        else:
            text = str(error) or type(error).__name__
        password = self.config.password
        return text.replace(password, "***") if password else text


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _shutdown(imap: imaplib.IMAP4) -> None:
    """Drop a connection that cannot be closed politely (it may be gone already)."""
    try:
        imap.shutdown()
    except OSError:
        pass
