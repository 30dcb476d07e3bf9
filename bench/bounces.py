"""Benchmark: read 100,000 bounce reports and spam complaints from a real IMAP server.

    .venv/bin/python bench/bounces.py [--messages N] [--seed S] [--workdir DIR] [--keep] [--profile FILE]

Sets up a SQLite Hub database with N sent email messages (one contact each,
marketing consent granted, each sent with its VERP return path and a
Message-ID as provider_id, as the SMTP channel leaves them), starts a
throwaway dovecot (tests/servers.py, the test suite's own), and fills its
mailbox with N real-shaped reports about those messages: RFC 3464 DSNs as
Postfix, Exim, Exchange and Mail.ru's MTA write them (hard 5.x.x and soft
4.x.x, some "delayed"), RFC 5965 ARF complaints, Mail.ru's and a Yandex-like
feedback-loop shape, auto-replies, junk, and a share of exact repeats
(a report delivered twice). The files are written straight into the maildir
(APPENDing 100,000 letters would measure the benchmark, not Hub) and
dovecot indexes them before anything is timed.

Then it measures, in this process, one after the other:

1. the floor: the same letters fetched over IMAP in batches of 500 with
   imaplib and parsed with `email.message_from_bytes` alone (no Hub, no
   database): no reader of this mailbox can be much faster here now;
2. Hub: `plugins.mailing.bounces.process.run`, the pass `hub mail bounces`
   and the schedule make: fetch, parse, match, record every event (suppress
   bounced addresses, withdraw complainers' consent), move the letters.

Prints ONE JSON document on stdout; progress goes to stderr. The goal:
at least 1,000 messages/s (see bench/README.md), reported with Hub's rate as
a share of the floor's.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import email
import email.utils
import imaplib
import io
import os
import pstats
import random
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

from harness import in_workdir, log, serve_imap  # noqa: E402  (bench/ is on sys.path when run as a script)

GOAL_MESSAGES_PER_S = 1_000
SECRET = "bench-secret-key-0123456789"
RETURN_PATH = "bounces@shop.example.ru"
SENDER = "Цветочная лавка <shop@shop.example.ru>"
IMAP_USER = "bounces"
BATCH = 500
DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "bk.ru", "list.ru", "inbox.ru", "rambler.ru", "outlook.com")
# Shares of the mailbox (the rest: exact repeats of earlier reports).
MIX = (
    ("postfix_hard", 0.22), ("exim_hard", 0.10), ("exchange_hard", 0.08), ("mailru_hard", 0.06),
    ("postfix_delayed", 0.08), ("mailbox_full", 0.08), ("arf", 0.12), ("mailru_fbl", 0.06),
    ("yandex_fbl", 0.04), ("auto_reply", 0.07), ("junk", 0.04),
)
REPEATS = 0.05
EXPECTED = {  # what each shape should come out as (bench/README.md)
    "postfix_hard": "bounces", "exim_hard": "bounces", "exchange_hard": "bounces", "mailru_hard": "bounces",
    "postfix_delayed": "soft_bounces", "mailbox_full": "soft_bounces", "arf": "complaints",
    "mailru_fbl": "complaints", "yandex_fbl": "complaints", "auto_reply": "auto_replies", "junk": "unreadable",
}
LETTER = ("Здравствуйте, {name}!\r\n\r\nДарим промокод BENCH-15 на скидку 15 % до 31 декабря.\r\n"
          "Букеты к Новому году: https://lavka.example.ru/ny\r\n\r\n-- \r\nЦветочная лавка, ИП Иванова А. А., "
          "ИНН 770123456789\r\nОтписаться: https://hub.example.ru/u/{token}\r\n")


@dataclass(frozen=True)
class Sent:
    """One message as the SMTP channel left it: what a report about it quotes."""

    id: int
    address: str
    message_id: str
    return_path: str
    sent_at: dt.datetime


def settings_for(url: str, imap_extra: dict[str, Any], workdir: Path) -> Any:
    from hub.config import load_settings

    base = load_settings(environ={}, config_path=str(workdir / "no-such-hub.toml"))
    extra = {"mail_from": SENDER, "mail_return_path": RETURN_PATH, "public_url": "https://hub.example.ru",
             **imap_extra}
    return replace(base, database_url=url, secret_key=SECRET, plugins=None, extra=extra)


# --------------------------------------------------------------------------- the base


def make_base(settings: Any, count: int) -> list[Sent]:
    """`count` contacts with email consent, and one sent marketing letter to each."""
    from hub import consent, migrations, plugins, sync
    from hub.db import bulk_insert, dispose_engines, get_engine, utcnow
    from hub.models import ConsentEvent, Message
    from hub.records import ContactRecord
    from plugins.mailing import verp

    plugins.configure(settings)
    engine = get_engine(settings.database_url)
    migrations.upgrade(engine)
    now = utcnow()
    sent_at = now - dt.timedelta(hours=2)
    names = ["Анна", "Олег", "Мария", "Иван", "Елена", "Пётр", "Ольга", "Сергей"]
    out: list[Sent] = []
    for start in range(0, count, 5_000):
        stop = min(count, start + 5_000)
        addresses = [f"client{i}@{DOMAINS[i % len(DOMAINS)]}" for i in range(start, stop)]
        records = [ContactRecord(source="bench", external_id=str(i), first_name=names[i % len(names)],
                                 emails=[addresses[i - start]]) for i in range(start, stop)]
        with engine.begin() as conn:
            ids = sync.write_contacts(conn, records, settings, sync.Counts()).contact_ids
            bulk_insert(conn, ConsentEvent.__table__, [
                {"contact_id": cid, "channel": "email", "purpose": "marketing", "status": "granted",
                 "source": "bench", "evidence": {}, "at": now} for cid in ids])
            consent.restate(conn, [cid for cid in ids if cid is not None])  # written past hub.consent.record
            rows = []
            for offset, contact_id in enumerate(ids):
                message_id = start + offset + 1
                sent = Sent(message_id, addresses[offset],
                            f"<{1796500000 + message_id}.{4242 + message_id % 97}.{message_id * 7919 % 10**12}"
                            f".hub{message_id}@mail.shop.example.ru>",
                            verp.return_path(settings, message_id) or "", sent_at)
                out.append(sent)
                rows.append({"id": message_id, "idempotency_key": f"bench:{message_id}", "contact_id": contact_id,
                             "channel": "email", "template": "reactivation_email", "purpose": "marketing",
                             "address": sent.address, "subject": "Дарим 15 % к Новому году",
                             "body_text": LETTER.format(name=names[offset % len(names)], token="x"),
                             "body_html": None, "status": "sent", "attempts": 1, "due_at": sent_at,
                             "provider_id": sent.message_id, "meta": {}, "origin": "bench",
                             "created_at": sent_at, "updated_at": sent_at, "sent_at": sent_at})
            bulk_insert(conn, Message.__table__, rows)
        log(f"  base: {stop:,} contacts and sent letters")
    dispose_engines()
    return out


# --------------------------------------------------------------------------- the reports


def _date(when: dt.datetime) -> str:
    return email.utils.format_datetime(when.replace(tzinfo=dt.timezone.utc))


def _original_headers(sent: Sent) -> str:
    return (f"Return-Path: <{sent.return_path}>\r\n"
            f"Received: from mail.shop.example.ru (mail.shop.example.ru [203.0.113.25])\r\n"
            f"\tby mx.{sent.address.split('@')[1]} with ESMTPS id {sent.id:08x}; {_date(sent.sent_at)}\r\n"
            f"Message-ID: {sent.message_id}\r\n"
            f"Date: {_date(sent.sent_at)}\r\n"
            f"From: =?utf-8?b?0KbQstC10YLQvtGH0L3QsNGPINC70LDQstC60LA=?= <shop@shop.example.ru>\r\n"
            f"To: {sent.address}\r\n"
            f"Subject: =?utf-8?b?0JTQsNGA0LjQvCAxNSAlINC6INCd0L7QstC+0LzRgyDQs9C+0LTRgw==?=\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n"
            f"List-Unsubscribe: <https://hub.example.ru/u/{sent.id}>\r\n"
            f"X-Hub-Message-Id: {sent.id}\r\n")


def _original(sent: Sent) -> str:
    return _original_headers(sent) + "\r\n" + LETTER.format(name="Анна", token=sent.id)


def _envelope(sent: Sent, n: int, when: dt.datetime, *, to: str | None = None) -> str:
    """What the receiving server adds when it delivers a report into the bounce mailbox."""
    to = to or sent.return_path
    return (f"Return-Path: <>\r\nDelivered-To: {to}\r\n"
            f"Received: from mx{n % 7}.relay.example.net (mx{n % 7}.relay.example.net [198.51.100.{n % 250}])\r\n"
            f"\tby imap.shop.example.ru with ESMTPS id r{n:09d}; {_date(when)}\r\n")


def _report(kind: str, sent: Sent, n: int, rng: random.Random) -> bytes:
    when = sent.sent_at + dt.timedelta(minutes=5 + n % 90)
    boundary = f"=_{n:x}_{rng.getrandbits(48):x}"
    host = sent.address.split("@")[1]
    report_id = f"<{n}.{rng.getrandbits(40):x}@mx{n % 7}.relay.example.net>"
    head = _envelope(sent, n, when)
    if kind in ("postfix_hard", "postfix_delayed", "mailbox_full"):
        status, action, said = {
            "postfix_hard": ("5.1.1", "failed", "550 5.1.1 <{a}>: Recipient address rejected: User unknown"),
            "postfix_delayed": ("4.4.1", "delayed", "421 4.4.1 Connection timed out"),
            "mailbox_full": ("4.2.2", "failed", "452 4.2.2 <{a}>: Mailbox is full / Ящик переполнен"),
        }[kind]
        said = said.format(a=sent.address)
        subject = "Delayed Mail (still being retried)" if action == "delayed" else "Undelivered Mail Returned to Sender"
        text = ("This is the mail system at host mail.shop.example.ru.\r\n\r\n"
                + ("####################################################################\r\n"
                   "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
                   "####################################################################\r\n\r\n"
                   "Your message could not be delivered for 4.0 hours.\r\nIt will be retried until it is 5.0 days old."
                   if action == "delayed" else
                   "I'm sorry to have to inform you that your message could not\r\n"
                   "be delivered to one or more recipients. It's attached below.")
                + f"\r\n\r\n<{sent.address}>: host mx.{host}[94.100.180.31] said: {said}\r\n"
                "    (in reply to RCPT TO command)\r\n")
        return (head + f"Date: {_date(when)}\r\nFrom: MAILER-DAEMON@mail.shop.example.ru (Mail Delivery System)\r\n"
                f"Subject: {subject}\r\nTo: {sent.return_path}\r\nAuto-Submitted: auto-replied\r\n"
                f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
                f"\tboundary=\"{boundary}\"\r\nContent-Transfer-Encoding: 8bit\r\nMessage-Id: {report_id}\r\n\r\n"
                f"This is a MIME-encapsulated message.\r\n\r\n--{boundary}\r\nContent-Description: Notification\r\n"
                f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n--{boundary}\r\n"
                f"Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
                f"Reporting-MTA: dns; mail.shop.example.ru\r\nX-Postfix-Queue-ID: 4Q{n:08X}\r\n"
                f"X-Postfix-Sender: rfc822; {sent.return_path}\r\nArrival-Date: {_date(sent.sent_at)}\r\n\r\n"
                f"Final-Recipient: rfc822; {sent.address}\r\nOriginal-Recipient: rfc822;{sent.address}\r\n"
                f"Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; mx.{host}\r\n"
                f"Diagnostic-Code: smtp; {said}\r\n" + (f"Will-Retry-Until: {_date(when + dt.timedelta(days=5))}\r\n"
                                                        if action == "delayed" else "")
                + f"\r\n--{boundary}\r\nContent-Description: Undelivered Message Headers\r\n"
                f"Content-Type: text/rfc822-headers\r\n\r\n{_original_headers(sent)}\r\n--{boundary}--\r\n"
                ).encode("utf-8")
    if kind == "exim_hard":
        return (head + f"Date: {_date(when)}\r\n"
                f"From: Mail Delivery System <Mailer-Daemon@mx{n % 7}.relay.example.net>\r\n"
                f"To: {sent.return_path}\r\nSubject: Mail delivery failed: returning message to sender\r\n"
                f"Message-Id: {report_id}\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: multipart/report; report-type=delivery-status; boundary={boundary}\r\n\r\n"
                f"--{boundary}\r\nContent-type: text/plain; charset=us-ascii\r\n\r\n"
                f"This message was created automatically by mail delivery software.\r\n\r\n"
                f"A message that you sent could not be delivered to one or more of its\r\n"
                f"recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
                f"  {sent.address}\r\n    host mx.{host} [217.69.139.150]\r\n"
                f"    SMTP error from remote mail server after RCPT TO:<{sent.address}>:\r\n"
                f"    550 5.1.1 No such user\r\n\r\n--{boundary}\r\nContent-type: message/delivery-status\r\n\r\n"
                f"Reporting-MTA: dns; mx{n % 7}.relay.example.net\r\n\r\nAction: failed\r\n"
                f"Final-Recipient: rfc822;{sent.address}\r\nStatus: 5.0.0\r\nRemote-MTA: dns; mx.{host}\r\n"
                f"Diagnostic-Code: smtp; 550 5.1.1 No such user\r\n\r\n--{boundary}\r\n"
                f"Content-type: message/rfc822\r\n\r\n{_original(sent)}\r\n--{boundary}--\r\n").encode("utf-8")
    if kind == "exchange_hard":
        # Exchange Online's NDR, delivered to the plain mailbox (no VERP): matched by the quoted Message-ID.
        head = _envelope(sent, n, when, to=RETURN_PATH)
        return (head + f"From: postmaster@outlook.com\r\nTo: {RETURN_PATH}\r\nDate: {_date(when)}\r\n"
                f"Subject: Undeliverable: =?utf-8?b?0JTQsNGA0LjQvCAxNSAlINC6INCd0L7QstC+0LzRgyDQs9C+0LTRgw==?=\r\n"
                f"Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
                f"MIME-Version: 1.0\r\nMessage-ID: {report_id}\r\nIn-Reply-To: {sent.message_id}\r\n"
                f"References: {sent.message_id}\r\nThread-Topic: Undeliverable\r\nAuto-Submitted: auto-replied\r\n"
                f"X-MS-Exchange-Message-Is-Ndr:\r\n\r\n--{boundary}\r\n"
                f"Content-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                f"Your message to {sent.address} couldn't be delivered.\r\n"
                f"{sent.address.split('@')[0]} wasn't found at {host}.\r\n\r\nAction Required\r\n"
                f"Unknown To address\r\n\r\nDiagnostic information for administrators:\r\n\r\n"
                f"Generating server: AM0PR01MB1234.eurprd01.prod.exchangelabs.com\r\n\r\n{sent.address}\r\n"
                f"Remote server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
                f"address lookup'\r\n\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
                f"Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com\r\n"
                f"Received-From-MTA: dns;mail.shop.example.ru\r\nArrival-Date: {_date(sent.sent_at)}\r\n\r\n"
                f"Final-Recipient: rfc822;{sent.address}\r\nAction: failed\r\nStatus: 5.1.10\r\n"
                f"Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
                f"address lookup\r\n\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
                f"{_original_headers(sent).replace('Return-Path: <' + sent.return_path + '>', 'Return-Path: <>')}"
                f"\r\n--{boundary}--\r\n").encode("utf-8")
    if kind == "mailru_hard":
        return (head + f"From: Mail Delivery System <mailer-daemon@corp.mail.ru>\r\nTo: {sent.return_path}\r\n"
                f"Date: {_date(when)}\r\n"
                "Subject: =?utf-8?b?0KHQvtC+0LHRidC10L3QuNC1INC90LUg0LTQvtGB0YLQsNCy0LvQtdC90L4=?=\r\n"
                f"Message-Id: {report_id}\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n"
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                f"Сообщение не доставлено.\r\n\r\nПисьмо не может быть доставлено по адресу {sent.address}:\r\n"
                f"такого ящика нет (550 Message was not accepted -- invalid mailbox).\r\n\r\n--{boundary}\r\n"
                f"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.corp.mail.ru\r\n\r\n"
                f"Final-Recipient: rfc822; {sent.address}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                f"Diagnostic-Code: smtp; 550 Message was not accepted -- invalid mailbox. Local mailbox "
                f"{sent.address} is unavailable: account is disabled\r\n\r\n--{boundary}\r\n"
                f"Content-Type: text/rfc822-headers\r\n\r\n{_original_headers(sent)}\r\n--{boundary}--\r\n"
                ).encode("utf-8")
    if kind in ("arf", "mailru_fbl"):
        reporter, agent = (("fbl@corp.mail.ru", "Mail.Ru FBL/1.0") if kind == "mailru_fbl"
                           else (f"feedback@{host}", "ReportGenerator/2.1"))
        head = _envelope(sent, n, when, to=RETURN_PATH)
        return (head + f"From: <{reporter}>\r\nTo: <{RETURN_PATH}>\r\nDate: {_date(when)}\r\n"
                f"Subject: Abuse report\r\nMessage-ID: {report_id}\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: multipart/report; report-type=feedback-report;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
                f"--{boundary}\r\nContent-Type: text/plain; charset=\"US-ASCII\"\r\n"
                "Content-Transfer-Encoding: 7bit\r\n\r\n"
                f"This is an email abuse report for an email message received from IP 203.0.113.25 on "
                f"{_date(sent.sent_at)}.\r\nFor more information about this format please see "
                f"http://www.mipassoc.org/arf/.\r\n\r\n--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
                f"Feedback-Type: abuse\r\nUser-Agent: {agent}\r\nVersion: 1\r\n"
                f"Original-Mail-From: <{sent.return_path}>\r\nOriginal-Rcpt-To: <{sent.address}>\r\n"
                f"Arrival-Date: {_date(sent.sent_at)}\r\nReporting-MTA: dns; mx.{host}\r\n"
                f"Source-IP: 203.0.113.25\r\nAuthentication-Results: mx.{host}; dkim=pass header.d=shop.example.ru\r\n"
                f"Reported-Domain: shop.example.ru\r\n\r\n--{boundary}\r\n"
                f"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n{_original(sent)}\r\n"
                f"--{boundary}--\r\n").encode("utf-8")
    if kind == "yandex_fbl":
        head = _envelope(sent, n, when, to=RETURN_PATH)
        return (head + f"From: Yandex FBL <fbl-report@yandex.ru>\r\nTo: {RETURN_PATH}\r\nDate: {_date(when)}\r\n"
                f"Subject: =?utf-8?b?0JbQsNC70L7QsdCwINC90LAg0YHQv9Cw0Lw=?=\r\nMessage-Id: {report_id}\r\n"
                f"X-Yandex-FBL: shop.example.ru\r\nX-Yandex-FBL-Rcpt: {sent.address}\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\n\r\nПолучатель отметил письмо как спам.\r\n\r\n"
                f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{_original_headers(sent)}\r\n"
                f"--{boundary}--\r\n").encode("utf-8")
    if kind == "auto_reply":
        return (head + f"From: {sent.address}\r\nTo: {sent.return_path}\r\nDate: {_date(when)}\r\n"
                f"Subject: =?utf-8?b?0JDQstGC0L7QvtGC0LLQtdGCOiDQlNCw0YDQuNC8IDE1ICU=?=\r\n"
                f"Message-ID: {report_id}\r\nIn-Reply-To: {sent.message_id}\r\nAuto-Submitted: auto-replied\r\n"
                f"X-Autoreply: yes\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: 8bit\r\n\r\nЯ в отпуске до 10 января, отвечу после.\r\n").encode("utf-8")
    # junk: mail that lands in any published mailbox, and letters broken on the way
    shape = n % 3
    if shape == 0:
        return (f"Return-Path: <promo@spam.example.net>\r\nFrom: promo@spam.example.net\r\nTo: {RETURN_PATH}\r\n"
                f"Date: {_date(when)}\r\nSubject: =?koi8-r?b?8NLPxMHWwQ==?=\r\nMessage-ID: {report_id}\r\n"
                "Content-Type: text/plain; charset=koi8-r\r\n\r\n").encode("ascii") + (
                    "Купите базу клиентов!\r\n".encode("koi8-r"))
    if shape == 1:
        return (f"From: someone@example.org\r\nSubject: broken\r\nMessage-ID: {report_id}\r\n"
                f"Content-Type: multipart/report; report-type=delivery-status; boundary=\"missing\"\r\n\r\n"
                f"--other\r\n\xff\xfe garbage \x00\r\n").encode("latin-1")
    return b"\r\n".join(b"X-Noise-%d: %s" % (i, bytes(rng.getrandbits(8) | 0x80 for _ in range(40))) for i in range(20))


def write_reports(maildir: Path, sent: list[Sent], total: int, seed: int, uid: int, gid: int) -> dict[str, int]:
    """`total` report files straight into the maildir's cur/; returns how many of each shape."""
    rng = random.Random(seed)
    kinds = [kind for kind, _share in MIX]
    weights = [share for _kind, share in MIX]
    written: dict[str, int] = {kind: 0 for kind in kinds} | {"repeats": 0}
    recent: list[bytes] = []
    reported = 0  # each original gets at most one report of its own (repeats aside)
    cur = maildir / "cur"
    stamp = 1796500000
    as_root = os.geteuid() == 0
    for n in range(total):
        if recent and rng.random() < REPEATS:
            raw = recent[rng.randrange(len(recent))]
            written["repeats"] += 1
        else:
            kind = rng.choices(kinds, weights)[0]
            raw = _report(kind, sent[reported], n, rng)
            reported += 1
            written[kind] += 1
            if kind != "junk":
                recent = recent[-999:] + [raw]
        path = cur / f"{stamp + n}.M{n}P1.bench,S={len(raw)}:2,"
        path.write_bytes(raw)
        if as_root:
            os.chown(path, uid, gid)
        if (n + 1) % 20_000 == 0:
            log(f"  reports: {n + 1:,}")
    return written


# --------------------------------------------------------------------------- the runs


def _imap(url: str) -> imaplib.IMAP4:
    parts = urlsplit(url)
    imap = imaplib.IMAP4(parts.hostname or "127.0.0.1", parts.port or 143, timeout=300)
    imap.login(IMAP_USER, parts.password or "")
    return imap


def floor(url: str) -> dict[str, Any]:
    """The same letters over IMAP in batches of BATCH, each parsed by the standard library alone."""
    imap = _imap(url)
    start, cpu = time.perf_counter(), time.process_time()
    imap.select("INBOX", readonly=True)
    found = re.search(rb"UIDNEXT (\d+)", b" ".join(x for x in imap.status("INBOX", "(UIDNEXT)")[1]
                                                             if isinstance(x, bytes)))
    uid_next = int(found[1]) if found else 1
    count = parsed_bytes = 0
    for low in range(1, uid_next, BATCH):
        _status, data = imap.uid("FETCH", f"{low}:{min(low + BATCH, uid_next) - 1}", "(BODY.PEEK[])")
        for item in data:
            if isinstance(item, tuple):
                email.message_from_bytes(item[1])
                count += 1
                parsed_bytes += len(item[1])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    imap.logout()
    return {"messages": count, "megabytes": round(parsed_bytes / 2**20, 1), "seconds": round(seconds, 2),
            "messages_per_s": round(count / seconds) if seconds else None,
            "cpu_ms_per_message": round(cpu * 1000 / count, 3) if count else None}


def index(url: str) -> float:
    """Have dovecot index the maildir (the first SELECT of 100,000 new files), untimed by the runs."""
    imap = _imap(url)
    start = time.perf_counter()
    imap.select("INBOX", readonly=True)
    imap.uid("FETCH", "1:*", "(UID RFC822.SIZE)")  # builds the index and its cache
    imap.logout()
    return time.perf_counter() - start


def hub(settings: Any, profile: str | None) -> dict[str, Any]:
    from hub import plugins
    from hub.db import dispose_engines, get_engine
    from plugins.mailing.bounces import process
    from plugins.mailing.bounces.imap import ImapSettings

    plugins.configure(settings)
    engine = get_engine(settings.database_url)
    config = ImapSettings.from_settings(settings)
    assert config is not None
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        before, done = done, done + n
        if before // 20_000 != done // 20_000:
            log(f"  hub: {done:,} read")

    profiler = cProfile.Profile() if profile else None
    start, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    summary = process.run(engine, settings, config, progress=progress)
    if profiler is not None:
        profiler.disable()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if profiler is not None and profile:
        profiler.dump_stats(profile)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        log(f"profile written to {profile}; the top by cumulative time:\n{out.getvalue()}")
    dispose_engines()
    counts = summary.as_dict()
    return {"seconds": round(seconds, 2), "messages_per_s": round(counts["read"] / seconds) if seconds else None,
            "cpu_ms_per_message": round(cpu * 1000 / counts["read"], 3) if counts["read"] else None,
            "counts": counts}


def outcome(settings: Any, url: str) -> dict[str, Any]:
    """What Hub wrote and where the letters are now: checks the run did the work, not only read."""
    from sqlalchemy import func, select

    from hub.db import dispose_engines, get_engine
    from hub.models import MessageEvent, Suppression

    engine = get_engine(settings.database_url)
    with engine.connect() as conn:
        events = dict(conn.execute(select(MessageEvent.kind, func.count()).group_by(MessageEvent.kind)).all())
        suppressed = conn.execute(select(func.count()).select_from(Suppression)).scalar_one()
    dispose_engines()
    imap = _imap(url)
    folders = {}
    for folder in ("INBOX", "Hub-Processed"):
        status, data = imap.status(folder, "(MESSAGES)")
        found = re.search(rb"MESSAGES (\d+)", data[0] or b"") if status == "OK" else None
        folders[folder] = int(found[1]) if found else 0
    imap.logout()
    return {"message_events": events, "suppressions": suppressed, "mailbox": folders}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with serve_imap() as server:
        parts = urlsplit(server.url)
        imap_extra = {"bounce_imap_host": parts.hostname, "bounce_imap_port": str(parts.port),
                      "bounce_imap_user": IMAP_USER, "bounce_imap_password": parts.password,
                      "bounce_imap_security": "none"}
        settings = settings_for(f"sqlite:///{workdir / 'hub.db'}", imap_extra, workdir)
        log(f"base: {args.messages:,} contacts, each sent one letter")
        sent = make_base(settings, args.messages)
        log(f"mailbox: {args.messages:,} reports into dovecot's maildir")
        written = write_reports(server.maildir(IMAP_USER), sent, args.messages, args.seed, server.uid, server.gid)
        log("dovecot indexes the new letters")
        indexed = index(server.url)
        log("floor: fetch and parse with the standard library alone")
        floor_result = floor(server.url)
        log(f"  floor: {floor_result['messages_per_s']:,} messages/s")
        log("hub: process.run")
        hub_result = hub(settings, args.profile)
        log(f"  hub: {hub_result['messages_per_s']:,} messages/s")
        after = outcome(settings, server.url)
    expected: dict[str, int] = {}
    for kind, count in written.items():
        if kind != "repeats":
            expected[EXPECTED[kind]] = expected.get(EXPECTED[kind], 0) + count
    expected["duplicates_at_most"] = written["repeats"]
    rate = hub_result["messages_per_s"] or 0
    floor_rate = floor_result["messages_per_s"] or 0
    return {
        "benchmark": "bounces",
        "messages": args.messages,
        "seconds": hub_result["seconds"],
        "messages_per_s": rate,
        "goal_messages_per_s": GOAL_MESSAGES_PER_S,
        "goal_met": rate >= GOAL_MESSAGES_PER_S,
        "counts": hub_result["counts"],
        "floor": floor_result,
        "share_of_floor": round(rate / floor_rate, 3) if floor_rate else None,
        # This process's CPU per letter (the IMAP server's own work not included): steadier than rates on a
        # shared machine.
        "cpu_ms_per_message": hub_result["cpu_ms_per_message"],
        "written": written,
        "expected": expected,
        "after": after,
        "dovecot_index_seconds": round(indexed, 1),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "database": "sqlite",
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="reports in the mailbox (default 100,000)")
    parser.add_argument("--seed", type=int, default=22, help="seed of the mix of shapes (default 22)")
    parser.add_argument("--profile", metavar="FILE", help="profile Hub's run with cProfile into FILE")
    parser.add_argument("--workdir", type=Path, help="work directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return in_workdir(parser.parse_args(argv), run, prefix="hub-bench-bounces-")


if __name__ == "__main__":
    sys.exit(main())
