"""Reading bounce-mailbox letters: the shapes real servers send (tests/data/bounces), and hostile ones."""

from __future__ import annotations

import base64
import email.message
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from plugins.mailing.bounces import dsn

CORPUS = Path(__file__).parent / "data" / "bounces"
VERP = "bounces+1234-0123456789@shop.example.ru"
ORIGINAL = "<176483250012.4242.1111111111111111111.hub1234@shop.example.ru>"

# file: (kind, recipient, status)
EXPECTED = {
    "postfix_hard.eml": ("bounce", "nobody.here@mail.ru", "5.1.1"),
    "postfix_delayed.eml": ("soft_bounce", "pavel@flowers-client.ru", "4.4.1"),
    "exim_text.eml": ("bounce", "sergey.k@rambler.ru", "5.1.1"),
    "exim_delayed.eml": ("soft_bounce", "marina@old-domain.example.com", "4.3.0"),
    "exchange_ndr.eml": ("bounce", "i.sokolov@corp.example.com", "5.1.10"),
    "gmail_dsn.eml": ("bounce", "no.such.person.2026@gmail.com", "5.1.1"),
    "yandex_dsn_full.eml": ("soft_bounce", "elena.smirnova@yandex.ru", "5.2.2"),
    "mailru_text.eml": ("bounce", "nikolay.ivanov1987@mail.ru", None),
    "qmail_text.eml": ("bounce", "oleg@tinyhost.example.org", "5.1.1"),
    "koi8r_dsn.eml": ("bounce", "dmitry@oldhost.ru", "5.1.1"),
    "cp1251_full.eml": ("soft_bounce", "irina@smallbiz.ru", None),
    "mailru_fbl.eml": ("complaint", "tatiana.v@mail.ru", None),
    "yandex_fbl.eml": ("complaint", "maxim.orlov@yandex.ru", None),
    "arf_headers.eml": ("complaint", "anna.k@outlook.com", None),
    "autoreply_ru.eml": ("auto_reply", None, None),
    "autoreply_en.eml": ("auto_reply", None, None),
    "human_reply.eml": ("unknown", None, None),
    "garbage.eml": ("unknown", None, None),
}


def read(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_the_corpus_is_all_covered() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_real_shape_is_classified(name: str) -> None:
    kind, recipient, status = EXPECTED[name]
    report = dsn.parse(read(name))
    assert (report.kind, report.recipient, report.status) == (kind, recipient, status)
    if kind in ("bounce", "soft_bounce", "complaint"):
        # Everything that acts can be tied to the message both ways: the VERP path and the exact Message-ID.
        assert VERP in report.return_paths
        assert report.original_message_id is not None and report.original_message_id.endswith(
            "1111111111111111111.hub1234@shop.example.ru>")
        assert report.reported_at is not None and report.reported_at.tzinfo is not None


def test_a_dsn_reads_the_status_action_and_diagnostic() -> None:
    report = dsn.parse(read("postfix_hard.eml"))
    assert report.action == "failed" and report.reporter == "relay.shop.example.ru"
    assert report.original_hub_id == 1234  # shown to people, never used to match (see test_bounce_processing)
    assert report.reported_at == dt.datetime(2026, 12, 4, 7, 15, 3, tzinfo=dt.timezone.utc)
    assert report.uid == "mid:<20261204071503.4QZ1x20Yq3z9sWm@relay.shop.example.ru>"
    # The diagnostic is kept short and names nobody: the recipient's address is taken out.
    assert report.diagnostic is not None and "user not found" in report.diagnostic
    assert "nobody.here@mail.ru" not in report.diagnostic and "<address>" in report.diagnostic


def test_mailbox_full_is_soft_even_with_a_permanent_code() -> None:
    report = dsn.parse(read("yandex_dsn_full.eml"))
    assert report.kind == "soft_bounce" and report.status == "5.2.2" and report.action == "failed"
    assert report.diagnostic == "smtp; 552 5.2.2 Mailbox size limit exceeded"


def test_russian_plain_text_bounces_are_read_in_any_charset() -> None:
    mailru = dsn.parse(read("mailru_text.eml"))
    assert mailru.kind == "bounce" and mailru.original_message_id == ORIGINAL
    assert mailru.diagnostic is not None and "user not found" in mailru.diagnostic
    full = dsn.parse(read("cp1251_full.eml"))
    assert full.kind == "soft_bounce" and full.diagnostic is not None and "Превышен размер ящика" in full.diagnostic
    koi = dsn.parse(read("koi8r_dsn.eml"))
    assert koi.kind == "bounce" and koi.reporter == "oldhost.ru"


def test_complaints_carry_their_type_and_reporter() -> None:
    mailru = dsn.parse(read("mailru_fbl.eml"))
    assert (mailru.feedback_type, mailru.reporter) == ("abuse", "Mail.Ru FBL/1.0")
    assert mailru.original_hub_id == 1234
    yandex = dsn.parse(read("yandex_fbl.eml"))
    assert (yandex.feedback_type, yandex.reporter) == ("abuse", "yandex.ru")
    generic = dsn.parse(read("arf_headers.eml"))
    assert generic.feedback_type == "abuse" and generic.reporter == "Hotmail FBL"


def test_a_not_spam_report_is_no_complaint() -> None:
    raw = read("arf_headers.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    assert dsn.parse(raw).kind == "unknown"


def test_auto_replies_are_never_bounces() -> None:
    # An out-of-office that quotes "user unknown" and is marked as auto-submitted is still an auto-reply.
    raw = (f"From: a@b.ru\nTo: {VERP}\nSubject: Re: Sale\nAuto-Submitted: auto-replied\n"
           "Message-ID: <y@b.ru>\n\n550 5.1.1 user unknown\n").encode()
    assert dsn.parse(raw).kind == "auto_reply"
    for subject in ("Автоответ: Re: скидка", "Out of Office: Sale", "Automatic reply: Sale"):
        letter = (f"From: a@b.ru\nTo: {VERP}\nSubject: {subject}\nMessage-ID: <x@b.ru>\n\nНет на месте.\n")
        assert dsn.parse(letter.encode()).kind == "auto_reply", subject


HUMAN_REPLY = ("From: zhanna@list.ru\nTo: " + VERP + "\nSubject: Re: Распродажа\n"
               "Date: Mon, 07 Dec 2026 09:11:00 +0300\nMessage-ID: <h1@list.ru>\n"
               "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
               "У меня ошибка 550 5.1.1 user unknown при оплате, и письмо не доставлено курьером! "
               "Address not found на сайте.\n")


def test_a_persons_reply_quoting_bounce_wording_is_left_for_a_person() -> None:
    report = dsn.parse(HUMAN_REPLY.encode())
    assert report.kind == "unknown" and report.status is None
    # Even with a bounce-like subject: a person wrote it.
    assert dsn.parse(HUMAN_REPLY.replace("Re: Распродажа", "Re: Undelivered Mail Returned to Sender").encode()
                     ).kind == "unknown"


@pytest.mark.parametrize("mark", [
    "Return-Path: <>\n", "From: MAILER-DAEMON@mx.list.ru\n", "From: Mail Delivery System <robot@mx.list.ru>\n",
    "From: postmaster@list.ru\n", "Auto-Submitted: auto-generated\nSubject: Undelivered Mail\n"])
def test_the_same_words_from_a_mailer_are_a_bounce(mark: str) -> None:
    lines = [line for line in HUMAN_REPLY.split("\n")
             if not (mark.startswith("From") and line.startswith("From:"))
             and not (mark.startswith("Auto") and line.startswith("Subject:"))]
    report = dsn.parse((mark + "\n".join(lines)).encode())
    assert (report.kind, report.status) == ("bounce", "5.1.1")


def test_a_text_bounce_as_multipart_report_without_a_status_part_is_a_bounce() -> None:
    raw = (f"From: robot@mx.list.ru\nTo: {VERP}\nSubject: Re: x\nMessage-ID: <m1@list.ru>\n"
           "Content-Type: multipart/report; report-type=delivery-status; boundary=\"BOUNDARY-0001\"\n\n"
           "--BOUNDARY-0001\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
           "<anna@list.ru>: 550 5.1.1 user unknown\n--BOUNDARY-0001--\n").encode()
    assert dsn.parse(raw).kind == "bounce"


@pytest.mark.parametrize("action", ["delivered", "relayed", "expanded"])
def test_a_success_notice_is_a_delivery_notice(action: str) -> None:
    raw = (f"Return-Path: <>\nFrom: mailer-daemon@list.ru\nTo: {VERP}\nSubject: Successful Mail Delivery Report\n"
           "Message-ID: <dsn.1@mx.list.ru>\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n"
           "Content-Type: multipart/report; report-type=delivery-status; boundary=\"BOUNDARY-0001\"\n\n"
           "--BOUNDARY-0001\nContent-Type: text/plain\n\n<zhanna@list.ru>: 250 2.0.0 OK\n\n"
           "--BOUNDARY-0001\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.list.ru\n\n"
           f"Final-Recipient: rfc822; zhanna@list.ru\nAction: {action}\nStatus: 2.0.0\n"
           "Diagnostic-Code: smtp; 250 2.0.0 OK\n\n"
           "--BOUNDARY-0001\nContent-Type: text/rfc822-headers\n\n"
           f"Return-Path: <{VERP}>\nMessage-ID: {ORIGINAL}\n\n--BOUNDARY-0001--\n").encode()
    report = dsn.parse(raw)
    assert (report.kind, report.action, report.status) == ("delivered", action, "2.0.0")
    assert report.original_message_id == ORIGINAL and VERP in report.return_paths


def test_the_uid_is_the_reports_own_message_id_or_a_hash() -> None:
    with_id = read("gmail_dsn.eml")
    assert dsn.parse(with_id).uid == dsn.parse(with_id).uid == "mid:<674c4522.050a0220.1b2c3d.abcdGMR@mx.google.com>"
    without = with_id.replace(b"Message-ID: <674c4522.050a0220.1b2c3d.abcdGMR@mx.google.com>\n", b"")
    first = dsn.parse(without)
    assert first.kind == "bounce" and first.uid.startswith("sha256:") and first.uid == dsn.parse(without).uid


def test_the_original_hub_header_is_only_information() -> None:
    raw = read("postfix_hard.eml").replace(b"X-Hub-Message-Id: 1234", b"X-Hub-Message-Id: 99999999999999999999999")
    report = dsn.parse(raw)
    assert report.kind == "bounce" and report.original_hub_id is None


# --- hostile input ---------------------------------------------------------------------------

def nested(depth: int) -> bytes:
    raw = b"Message-ID: <inner@x.ru>\n\nhello\n"
    for _ in range(depth):
        raw = b"Content-Type: message/rfc822\n\n" + raw
    return raw


HOSTILE = {
    "empty": b"",
    "only headers": b"From: MAILER-DAEMON@x.ru\nSubject: Undelivered Mail",
    "nul bytes": b"\x00" * 5000,
    "nested rfc822": nested(3000),
    "nested multiparts": b"Content-Type: multipart/mixed; boundary=a\n\n"
                        + b"--a\nContent-Type: multipart/mixed; boundary=a\n\n" * 3000,
    "report without parts": b"Content-Type: multipart/report; report-type=delivery-status; boundary=z\n\n--z--\n",
    "base64 garbage status": b"Content-Type: multipart/report; report-type=delivery-status; boundary=z\n\n--z\n"
                             b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
                             b"%%%!!!***\n--z--\n",
    "unknown charset": b"From: MAILER-DAEMON@x.ru\nSubject: =?x-nope?B?!!!?=\n"
                       b"Content-Type: text/plain; charset=x-no-such-charset\n\n\xff\xfe\xfd 550 5.1.1 <a@b.ru>:\n",
    "bad date": b"Date: Mon, 99 Foo 99999 99:99:99 +9999\nMessage-ID: <d@x.ru>\n\nhi\n",
    "enormous": read("postfix_hard.eml") + b"A" * 30_000_000,
    "truncated": read("exchange_ndr.eml")[:900],
    "huge header": b"Subject: " + b"x" * 3_000_000 + b"\n\nbody\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_letters_never_raise(name: str) -> None:
    report = dsn.parse(HOSTILE[name])
    assert report.kind in dsn.KINDS and report.uid
    assert report.diagnostic is None or len(report.diagnostic) <= dsn.MAX_DIAGNOSTIC


def test_a_report_in_base64_is_still_read() -> None:
    status = (b"Reporting-MTA: dns; x.ru\n\nFinal-Recipient: rfc822; a@b.ru\nAction: failed\nStatus: 5.1.1\n")
    raw = (b"From: MAILER-DAEMON@x.ru\nMessage-ID: <b64@x.ru>\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=z\n\n--z\n"
           b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
           + base64.encodebytes(status) + b"--z--\n")
    report = dsn.parse(raw)
    assert (report.kind, report.recipient, report.status) == ("bounce", "a@b.ru", "5.1.1")


def test_a_future_or_missing_date_is_none_or_kept_as_said() -> None:
    assert dsn.parse(b"Message-ID: <a@x.ru>\n\nhi\n").reported_at is None
    assert dsn.parse(HOSTILE["bad date"]).reported_at is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_renaming_the_boundaries_changes_nothing_read(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = read(name)
    fast = dsn.parse(raw)
    monkeypatch.setattr(dsn, "_common_boundaries", lambda data: data)
    assert dsn.parse(raw) == fast


def test_only_long_boundaries_where_they_stand_are_renamed() -> None:
    raw = (b'Content-Type: multipart/mixed; boundary="0123456789abc"\n\n--0123456789abc\n\n'
           b"text naming 0123456789abc inside\n--0123456789abc--\n")
    renamed = dsn._common_boundaries(raw)
    assert renamed.count(b"=_hub_part_0_=") == 3 and b"naming 0123456789abc inside" in renamed
    short = b"Content-Type: multipart/mixed; boundary=z\n\n--z\nzzz\n--z--\n"
    assert dsn._common_boundaries(short) == short


# --- the quick reader gives what the standard parser gives -------------------------------------

def bench_reports(total: int = 600) -> list[bytes]:
    """Every shape bench/bounces.py puts in the mailbox, from its own generator."""
    import datetime as dt
    import importlib.util
    import random
    import sys

    folder = Path(__file__).parent.parent / "bench"
    sys.path.insert(0, str(folder))  # bench/bounces.py imports its harness as a sibling
    try:
        spec = importlib.util.spec_from_file_location("bench_bounces_shapes", folder / "bounces.py")
        assert spec is not None and spec.loader is not None
        bench = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = bench
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(folder))
    rng = random.Random(22)
    at = dt.datetime(2026, 12, 1, 10, 0)
    out = []
    for n in range(total):
        kind = bench.MIX[n % len(bench.MIX)][0]
        sent = bench.Sent(n + 1, f"client{n}@{bench.DOMAINS[n % len(bench.DOMAINS)]}",
                          f"<{1796500000 + n}.{4242 + n % 97}.{n * 7919}.hub{n + 1}@mail.shop.example.ru>",
                          f"bounces+{n + 1}-0123456789@shop.example.ru", at)
        out.append(bench._report(kind, sent, n, rng))
    return out


def variants(raw: bytes) -> list[bytes]:
    """The letter as sent, with bare line feeds, with mixed line ends, and cut short."""
    unix = raw.replace(b"\r\n", b"\n")
    return [raw, unix, unix.replace(b"\n", b"\r\n", 3), raw[: len(raw) * 2 // 3], unix + b"\n\n"]


def same_tree(quick: email.message.Message, full: email.message.Message) -> None:
    assert type(quick) is not type(full)  # the quick reader did read it
    stack = [(quick, full)]
    while stack:
        a, b = stack.pop()
        assert a._headers == b._headers  # type: ignore[attr-defined]
        assert (a.preamble, a.epilogue, a.get_content_type()) == (b.preamble, b.epilogue, b.get_content_type())
        for name, _ in b._headers:  # type: ignore[attr-defined]
            assert str(a.get(name)) == str(b.get(name))
            assert len(a.get_all(name) or ()) == len(b.get_all(name) or ())
        pa: Any = a.get_payload()
        pb: Any = b.get_payload()
        if isinstance(pb, list):
            assert isinstance(pa, list) and len(pa) == len(pb)
            stack.extend(zip(pa, pb, strict=True))
        else:
            assert pa == pb


@pytest.mark.parametrize("source", ["corpus", "bench", "hostile"])
def test_the_quick_reader_reads_every_letter_as_the_standard_parser(source: str) -> None:
    letters = {"corpus": [read(name) for name in sorted(EXPECTED)], "bench": bench_reports(),
               "hostile": [raw for name, raw in sorted(HOSTILE.items()) if name != "enormous"]}[source]
    quick = 0
    for letter in letters:
        for raw in variants(letter):
            assert dsn._parse(raw, fast=True) == dsn._parse(raw, fast=False)
            data = dsn._common_boundaries(raw[: dsn.MAX_BYTES])
            tree = dsn._quick_tree(data)
            if tree is not None:
                quick += 1
                same_tree(tree, dsn._PARSER.parsebytes(data))
    assert quick > len(letters)  # the usual letters do take the quick way


def test_every_bench_shape_but_junk_takes_the_quick_way() -> None:
    for raw in bench_reports(60):
        if b"X-Noise-" in raw or b'boundary="missing"' in raw:
            continue
        assert dsn._quick_tree(dsn._common_boundaries(raw)) is not None


def test_header_blocks_read_quickly_are_read_the_same() -> None:
    blocks = ["Return-Path: <a@b.ru>\r\nSubject: one\r\n\ttwo\r\n  three\r\nTo:\r\n\tx@y.ru\r\nTo: second@y.ru\r\n",
              "Name:   \r\nEmpty:\r\n\r\nbody\r\n", "X: 1\nY: Привет\n\nbody", "X: 1\n\tcont",
              " first continued\nX: 1\n",
              "From nobody\nX: 1\n", "Not a header\nX: 1\n", "X: 1\r\nY: 2\n", "Bad name: 1\n", ": empty\n", "",
              "X: a\x0bb\x1cc\u2028d\nY: 2\n\nbody\x85\u2028x\n"]
    for text in blocks:
        quick, full = dsn._headers_of(text), dsn._HEADERS.parsestr(text)
        assert quick._headers == full._headers and quick.get_payload() == full.get_payload()  # type: ignore[attr-defined]
        for name in ("x", "to", "subject", "y", "name", "empty"):
            assert quick.get(name) == full.get(name) and quick.get_all(name) == full.get_all(name)
