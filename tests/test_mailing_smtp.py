"""Email through a real SMTP server on loopback (aiosmtpd), read back as a mail client would."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import os
import re
import ssl
import subprocess
import threading
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import select

import plugins.mailing
from hub import consent, links, messaging, queue, sync
from hub.i18n import use_language
from hub.models import Message
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.processes import hub_process
from tests.support.cli import cli
from tests.support.smtp import Mailbox, free_port, smtp_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mailing(plugin_manager):
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.hook.register_commands(cli=cli)
    return plugin_manager


def smtp_settings(db: HubDB, port: int, **extra: Any):
    return replace(db.settings, extra={**db.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
                                       "mail_from": "Цветочная лавка <shop@example.ru>",
                                       "public_url": "https://hub.example.ru", **extra})


def person(db: HubDB, first: str, address: str, *, granted: bool = True) -> int:
    with db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name=first, last_name="Иванова",
                                                       emails=[address])], db.settings, sync.Counts()).contact_ids[0]
        if granted:
            consent.record(conn, cid, "email", "marketing", "granted", source="form")
    return cid


PROMO = {"promo": {"code": "LAVKA-15", "discount": 15, "expires_at": dt.date(2026, 12, 31)}}


def queue_reactivation(db: HubDB, settings, contact_ids: list[int], prefix: str = "c") -> None:
    messaging.create_many(db.engine, settings, contact_ids, channel="email", template="reactivation_email",
                          key_prefix=prefix, context=PROMO)


def statuses(db: HubDB) -> dict[str, str]:
    with db.engine.connect() as conn:
        return {a: s for a, s in conn.execute(select(Message.address, Message.status))}


# --- what arrives -------------------------------------------------------------------------

def test_marketing_mail_arrives_whole_and_readable(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    cid = person(hub_db, "Анна", "anna@example.ru")
    queue_reactivation(hub_db, settings, [cid])
    report = messaging.dispatch(hub_db.engine, settings)
    assert report.sent == 1 and len(box.received) == 1

    got = box.received[0]
    msg = got.message
    assert got.mail_from == "shop@example.ru" and got.rcpt_tos == ["anna@example.ru"]
    assert msg["Subject"] == "Анна, мы скучаем: скидка 15% до 31.12.2026"
    raw_subject = got.data.split(b"\r\nSubject: ", 1)[1].split(b"\r\n")[0]
    assert raw_subject.startswith(b"=?utf-8?b?")  # Cyrillic travels as RFC 2047 encoded words
    assert msg["From"].addresses[0].display_name == "Цветочная лавка"
    assert msg["From"].addresses[0].addr_spec == "shop@example.ru"
    assert str(msg["To"]) == "Анна Иванова <anna@example.ru>"
    assert msg["Message-ID"].endswith("@example.ru>") and msg["Date"].datetime.tzinfo is not None
    with hub_db.engine.connect() as conn:
        row = conn.execute(select(Message.__table__)).one()
    assert int(msg["X-Hub-Message-Id"]) == row.id and row.provider_id == msg["Message-ID"]
    assert msg.get_content_type() == "multipart/alternative"

    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Здравствуйте, Анна!" in text and "LAVKA-15" in text and "31.12.2026" in text
    assert "<p>Здравствуйте, Анна!</p>" in html and "LAVKA-15" in html
    assert text.replace("\r\n", "\n").startswith(row.body_text)  # exactly what was rendered, then the footer

    https, mailto = [part.strip(" <>") for part in msg["List-Unsubscribe"].split(",")]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert https.startswith("https://hub.example.ru/u/") and https in text and https in html
    assert links.read_unsubscribe(settings, https.rsplit("/", 1)[1]) == links.LinkTarget(cid, "email", "marketing")
    assert mailto.startswith("mailto:shop@example.ru?subject=unsubscribe%20")
    token = mailto.split("%20", 1)[1]
    assert links.read_unsubscribe(settings, token).contact_id == cid


def test_transactional_mail_has_no_unsubscribe_header_and_needs_no_consent(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    cid = person(hub_db, "Анна", "anna@example.ru", granted=False)
    done = messaging.send(hub_db.engine, settings, contact_id=cid, channel="email", template="double_opt_in_email",
                          key="doi:1", purpose="transactional")
    assert done["status"] == "sent"
    msg = box.received[0].message
    assert msg["List-Unsubscribe"] is None
    confirm = msg.get_body(("plain",)).get_content().split("https://hub.example.ru/confirm/")[1].split()[0]
    assert links.read_confirm(settings, confirm) == links.LinkTarget(cid, "email", "marketing")


def test_only_consenting_recipients_get_one_message_each(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    yes = [person(hub_db, f"Имя{i}", f"yes{i}@example.ru") for i in range(4)]
    no = person(hub_db, "Нет", "no@example.ru", granted=False)
    queue_reactivation(hub_db, settings, yes + [no])
    queue_reactivation(hub_db, settings, yes + [no])  # the same campaign again adds nothing
    messaging.dispatch(hub_db.engine, settings, batch_size=3)
    messaging.dispatch(hub_db.engine, settings)
    assert sorted(r.rcpt_tos[0] for r in box.received) == [f"yes{i}@example.ru" for i in range(4)]
    assert statuses(hub_db)["no@example.ru"] == "suppressed"


def test_the_file_channel_writes_the_same_message_without_a_server(hub_db: HubDB, mailing, tmp_path: Path) -> None:
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "outbox_dir": str(tmp_path / "out"),
                                               "mail_from": "shop@example.ru"})
    cid = person(hub_db, "Анна", "anna@example.ru")
    queue_reactivation(hub_db, settings, [cid])
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["00000001-email.eml"]
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Анна, мы скучаем: скидка 15% до 31.12.2026"
    assert "LAVKA-15" in msg.get_body(("plain",)).get_content()
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Message.provider_id)).scalar_one() == f"file:{files[0]}"


def test_bodies_go_8bit_unless_a_line_is_too_long_for_smtp(hub_db: HubDB, mailing, mailbox) -> None:
    from hub.message_templates import Template

    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    cid = person(hub_db, "Анна", "anna@example.ru")
    long_html = "<p>" + "Очень длинная строка без переносов. " * 60 + "</p>"  # > 998 octets on one line
    t = Template(name="long", channel="email", subject="Тема", text="Короткий текст.\n.точка в начале строки\n",
                 html=long_html)
    with hub_db.engine.begin() as conn:
        messaging.create(conn, settings, contact_id=cid, channel="email", template=t, key="long")
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    msg = box.received[0].message
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain["Content-Transfer-Encoding"] == "8bit" and html["Content-Transfer-Encoding"] == "base64"
    # The parser keeps the wire's CRLF line ends; a mail program shows them as line breaks.
    assert plain.get_content().replace("\r\n", "\n").startswith("Короткий текст.\n.точка в начале строки\n")
    assert html.get_content().startswith(long_html)  # then the footer (plugins.mailing.footer)
    data = box.received[0].data  # a leading dot was doubled on the wire and undoubled by the server
    assert "\r\n.точка".encode() in data and "..точка".encode() not in data


# --- what the server says -----------------------------------------------------------------

def test_451_defers_and_the_retry_delivers(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    busy, fine = person(hub_db, "Олег", "busy@example.ru"), person(hub_db, "Анна", "anna@example.ru")
    queue_reactivation(hub_db, settings, [busy, fine])
    box.rcpt_replies["busy@example.ru"] = "451 4.7.1 Greylisted, try again later"
    report = messaging.dispatch(hub_db.engine, settings)
    assert (report.sent, report.deferred) == (1, 1)
    with hub_db.engine.connect() as conn:
        row = conn.execute(select(Message.__table__).where(Message.address == "busy@example.ru")).one()
    assert row.status == "deferred" and row.error == "RCPT TO: 451 4.7.1 Greylisted, try again later"
    with hub_db.engine.begin() as conn:
        consent_ok = not consent.is_suppressed(conn, "email", "busy@example.ru", settings.secret_key)
        conn.execute(Message.__table__.update().values(due_at=row.created_at))  # the backoff has passed
    assert consent_ok
    del box.rcpt_replies["busy@example.ru"]
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    assert sorted(r.rcpt_tos[0] for r in box.received) == ["anna@example.ru", "busy@example.ru"]


def test_451_after_the_data_defers_too(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    queue_reactivation(hub_db, settings, [person(hub_db, "Анна", "anna@example.ru")])
    box.data_replies["anna@example.ru"] = "452 4.3.1 Insufficient system storage"
    assert messaging.dispatch(hub_db.engine, settings).deferred == 1


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_550_fails_suppresses_and_records_the_bounce(hub_db: HubDB, mailing, mailbox, stage: str) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    dead = person(hub_db, "Пётр", "gone@example.ru")
    queue_reactivation(hub_db, settings, [dead])
    replies = box.rcpt_replies if stage == "rcpt" else box.data_replies
    replies["gone@example.ru"] = "550 5.1.1 <gone@example.ru>: Recipient address rejected: User unknown"
    report = messaging.dispatch(hub_db.engine, settings)
    assert report.bounced == 1 and box.received == []
    assert statuses(hub_db) == {"gone@example.ru": "failed"}
    with hub_db.engine.connect() as conn:
        assert consent.is_suppressed(conn, "email", "gone@example.ru", settings.secret_key)
        bounce = consent.history(conn, dead)[-1]
    assert bounce["source"] == "bounce" and "550 5.1.1" in bounce["evidence"]["reply"]
    # A new campaign to the same person does not reach the dead address.
    queue_reactivation(hub_db, settings, [dead], prefix="next")
    assert messaging.dispatch(hub_db.engine, settings).suppressed == 1


def test_a_dropped_connection_is_reopened_and_nothing_is_sent_twice(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    ids = [person(hub_db, f"Имя{i}", f"p{i}@example.ru") for i in range(4)]
    queue_reactivation(hub_db, settings, ids)
    box.drop_at_mail = {1}  # the server hangs up on the first message
    box.reply_421_at_mail = {3}  # and answers 421 to the second one's first try
    report = messaging.dispatch(hub_db.engine, settings)
    assert report.sent == 4 and report.errors == []
    assert sorted(len(v) for v in box.by_tracking_id().values()) == [1, 1, 1, 1]
    # Six MAIL commands on three connections; the first hung up before delivering anything.
    assert box.mail_commands == 6 and len({r.session for r in box.received}) == 2


def test_a_connection_lost_after_the_data_is_unknown_not_resent(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    ids = [person(hub_db, "Анна", "anna@example.ru"), person(hub_db, "Олег", "oleg@example.ru")]
    queue_reactivation(hub_db, settings, ids)
    box.lose_after_data.add("anna@example.ru")
    report = messaging.dispatch(hub_db.engine, settings)
    assert (report.unknown, report.sent) == (1, 1)
    assert statuses(hub_db) == {"anna@example.ru": "unknown", "oleg@example.ru": "sent"}
    assert messaging.dispatch(hub_db.engine, settings).claimed == 0
    assert [r.rcpt_tos[0] for r in box.received] == ["anna@example.ru", "oleg@example.ru"]


def test_a_server_that_is_down_leaves_the_messages_queued(hub_db: HubDB, mailing) -> None:
    settings = smtp_settings(hub_db, free_port())
    queue_reactivation(hub_db, settings, [person(hub_db, "Анна", "anna@example.ru")])
    report = messaging.dispatch(hub_db.engine, settings)
    assert report.released == 1 and report.errors[0].startswith("email: не удаётся связаться с smtp://127.0.0.1:")
    assert statuses(hub_db) == {"anna@example.ru": "queued"}


# --- TLS and login ------------------------------------------------------------------------

def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def check_login(server, session, envelope, mechanism, auth_data):
    ok = (auth_data.login, auth_data.password) == (b"shop", b"p@ss:word")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def test_starttls_and_login_then_delivery(hub_db: HubDB, mailing, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    box = Mailbox()
    with smtp_server(box, tls_context=tls, require_starttls=True, authenticator=check_login,
                     auth_required=True) as port:
        url = f"smtp://shop:p%40ss%3Aword@localhost:{port}?starttls=required"
        settings = smtp_settings(hub_db, port, smtp_url=url, smtp_ca_file=str(cert))
        queue_reactivation(hub_db, settings, [person(hub_db, "Анна", "anna@example.ru")])
        assert messaging.dispatch(hub_db.engine, settings).sent == 1
        assert len(box.received) == 1

        wrong = replace(settings, extra={**settings.extra, "smtp_url": url.replace("p%40ss", "nope")})
        queue_reactivation(hub_db, wrong, [person(hub_db, "Олег", "oleg@example.ru")], prefix="c2")
        with use_language("en"):
            report = messaging.dispatch(hub_db.engine, wrong)
    assert report.released == 1 and len(report.errors) == 1
    assert f"smtp://shop@localhost:{port} refused the login: 535" in report.errors[0]
    assert "word" not in report.errors[0]  # the password never appears in an error


def test_starttls_required_but_not_offered_sends_nothing(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port, smtp_url=f"smtp://127.0.0.1:{port}?starttls=required")
    queue_reactivation(hub_db, settings, [person(hub_db, "Анна", "anna@example.ru")])
    report = messaging.dispatch(hub_db.engine, settings)
    assert report.errors == [f"email: smtp://127.0.0.1:{port} не предлагает STARTTLS, а адрес его требует"]
    assert box.received == []


@pytest.mark.parametrize("url, error", [
    ("mail.example.ru:25", "HUB_SMTP_URL: 'mail.example.ru:25' is not an smtp:// or smtps:// URL"),
    ("smtp://u:secret@mail.example.ru:x", "HUB_SMTP_URL: 'smtp://u:***@mail.example.ru:x' has a port"),
    ("smtp://mail.example.ru?starttls=maybe", "HUB_SMTP_URL: starttls='maybe'; use auto, required or never"),
])
def test_a_wrong_smtp_url_is_named_without_its_password(hub_db: HubDB, mailing, url: str, error: str) -> None:
    from hub.config import SettingsError
    from plugins.mailing.email import SMTPConfig

    with pytest.raises(SettingsError) as err, use_language("en"):
        SMTPConfig.from_settings(replace(hub_db.settings, extra={**hub_db.settings.extra, "smtp_url": url}))
    assert str(err.value).startswith(error) and "secret" not in str(err.value)


# --- the command line, as a new user runs it ----------------------------------------------

def test_a_campaign_from_the_command_line(hub_db: HubDB, mailing, mailbox, monkeypatch, tmp_path: Path) -> None:
    box, port = mailbox
    monkeypatch.setenv("HUB_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("HUB_MAIL_FROM", "Лавка <shop@example.ru>")
    monkeypatch.setenv("HUB_PUBLIC_URL", "https://hub.example.ru")
    yes = [person(hub_db, "Анна", "anna@example.ru"), person(hub_db, "Олег", "oleg@example.ru")]
    person(hub_db, "Без согласия", "no@example.ru", granted=False)
    box.rcpt_replies["oleg@example.ru"] = "550 5.1.1 User unknown"
    runner = CliRunner()
    args = ["messages", "send", "reactivation_email", "--all", "--promo-code", "LAVKA-15", "--promo-discount", "15",
            "--promo-expires", "2026-12-31", "--campaign", "winter"]
    out = runner.invoke(cli, args + ["--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["created"] == 3 and result["dispatch"]["sent"] == 1
    assert result["dispatch"]["bounced"] == 1 and result["dispatch"]["suppressed"] == 1
    assert [r.rcpt_tos for r in box.received] == [["anna@example.ru"]]

    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "0 сообщений поставлено в очередь, 3 уже были там с прошлого запуска" in again.output
    english = runner.invoke(cli, args, env={"HUB_LANGUAGE": "en"})
    assert "0 messages queued, 3 already there from an earlier run" in english.output
    assert len(box.received) == 1

    listed = json.loads(runner.invoke(cli, ["messages", "list", "--json"]).output)
    assert {m["address"]: m["status"] for m in listed} == {
        "anna@example.ru": "sent", "oleg@example.ru": "failed", "no@example.ru": "suppressed"}
    table = runner.invoke(cli, ["messages", "list"], env={"COLUMNS": "200"}).output
    assert "отправлено" in table and "ошибка" in table and "заблокировано" in table
    assert all(f"│ {raw} " not in table for raw in ("sent", "failed", "suppressed"))  # no technical status
    assert "отправлено 1, ошибка 1, заблокировано 1" in table  # the totals line
    english = runner.invoke(cli, ["messages", "list"], env={"COLUMNS": "200", "HUB_LANGUAGE": "en"}).output
    assert "sent 1, error 1, suppressed 1" in english
    shown = runner.invoke(cli, ["messages", "show", str(listed[-1]["id"])])
    assert "LAVKA-15" in shown.output and "Тема: Анна, мы скучаем" in shown.output
    assert "Статус: " in shown.output and "Кому: " in shown.output and "Создано: " in shown.output
    assert "status:" not in shown.output and not re.search(r"\d{4}-\d\d-\d\dT\d", shown.output)  # no raw UTC ISO
    assert re.search(r"Создано: \d\d\.\d\d\.\d{4} \d\d:\d\d \S+", shown.output)
    shown_en = runner.invoke(cli, ["messages", "show", str(listed[-1]["id"])], env={"HUB_LANGUAGE": "en"}).output
    assert "Subject: Анна, мы скучаем" in shown_en and "Status: " in shown_en
    assert json.loads(runner.invoke(cli, ["messages", "show", str(listed[-1]["id"]), "--json"]).output)["created_at"]
    assert runner.invoke(cli, ["messages", "review"]).output.startswith("Проверять нечего")
    assert yes


def test_a_campaign_to_a_segment(hub_db: HubDB, mailing, mailbox, monkeypatch) -> None:
    from hub.segments import fields, store

    box, port = mailbox
    monkeypatch.setenv("HUB_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("HUB_MAIL_FROM", "shop@example.ru")
    person(hub_db, "Анна", "anna@example.ru")
    person(hub_db, "Олег", "oleg@example.ru", granted=False)
    with hub_db.engine.begin() as conn:
        store.add(conn, fields.build(hub_db.settings), {"name": "subscribers", "rule": {
            "field": "consent.email.marketing", "op": "eq", "value": "granted"}})
    runner = CliRunner()
    out = runner.invoke(cli, ["messages", "send", "welcome_email", "--segment", "subscribers", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["created"] == 1
    assert [r.rcpt_tos for r in box.received] == [["anna@example.ru"]]
    wrong = runner.invoke(cli, ["messages", "send", "welcome_email", "--segment", "subscriber"],
                          env={"HUB_LANGUAGE": "en"})
    assert wrong.exit_code == 1
    assert wrong.output.strip() == ("Error: no segment named 'subscriber'; did you mean 'subscribers'? "
                                    "(see `hub segments list`)")
    both = runner.invoke(cli, ["messages", "send", "welcome_email", "--segment", "subscribers", "--all"])
    assert both.exit_code == 2 and "укажите одно из: --contact ID (можно несколько раз), --segment ИМЯ или --all" \
        in both.output


def test_dispatch_command_reports_a_server_that_is_down(hub_db: HubDB, mailing, monkeypatch) -> None:
    port = free_port()
    monkeypatch.setenv("HUB_SMTP_URL", f"smtp://user:hunter22@127.0.0.1:{port}")
    monkeypatch.setenv("HUB_MAIL_FROM", "shop@example.ru")
    settings = smtp_settings(hub_db, port)
    queue_reactivation(hub_db, settings, [person(hub_db, "Анна", "anna@example.ru")])
    out = CliRunner().invoke(cli, ["messages", "dispatch", "--json"])
    assert out.exit_code == 1
    report = json.loads(out.stdout)
    assert report["released"] == 1 and "не удаётся связаться с smtp://user@127.0.0.1" in report["errors"][0]
    assert "hunter22" not in out.output


def test_a_setting_missing_at_send_time_is_one_error_and_the_messages_wait(hub_db: HubDB, mailing,
                                                                          monkeypatch) -> None:
    monkeypatch.setenv("HUB_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    queue_reactivation(hub_db, hub_db.settings, [person(hub_db, "Анна", "anna@example.ru")])
    out = CliRunner().invoke(cli, ["messages", "dispatch"])
    assert out.exit_code == 1
    assert out.output.strip().splitlines()[-1] == ("Ошибка: HUB_MAIL_FROM: не задан; это адрес, с которого приходят "
                                                   "письма, например 'Shop <shop@example.ru>'")
    assert statuses(hub_db) == {"anna@example.ru": "queued"}  # put back, not stuck in `sending`


# --- two workers, one outbox --------------------------------------------------------------

def test_two_rq_workers_on_one_batch_deliver_each_message_exactly_once(hub_db: HubDB, mailing, redis_url: str,
                                                                       tmp_path: Path, monkeypatch) -> None:
    Redis.from_url(redis_url).flushdb()
    box = Mailbox()
    box.wait_for_sessions = 2  # no delivery completes until both workers are connected
    with smtp_server(box) as port:
        settings = replace(smtp_settings(hub_db, port, email_rate="2000"), redis_url=redis_url)
        ids = [person(hub_db, f"Имя{i}", f"p{i}@example.ru") for i in range(60)]
        queue_reactivation(hub_db, settings, ids)
        monkeypatch.setenv("HUB_REDIS_URL", redis_url)
        enqueued = CliRunner().invoke(cli, ["messages", "dispatch", "--queue", "--jobs", "2", "--batch-size", "5",
                                            "--json"])
        assert enqueued.exit_code == 0, enqueued.output
        assert len(json.loads(enqueued.output)["enqueued"]) == 2
        assert queue.health(settings)["queues"]["default"]["queued"] == 2
        env = {**os.environ, "HUB_DATABASE_URL": hub_db.url, "HUB_REDIS_URL": redis_url,
               "HUB_SECRET_KEY": settings.secret_key, "HUB_PLUGINS": "mailing",
               "HUB_SMTP_URL": f"smtp://127.0.0.1:{port}", "HUB_MAIL_FROM": "shop@example.ru",
               "HUB_EMAIL_RATE": "2000", "PYTHONPATH": str(ROOT)}
        with ExitStack() as stack:  # whatever happens, no worker outlives the test
            workers = [stack.enter_context(hub_process(["worker", "--burst"], env=env, cwd=tmp_path,
                                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
                       for _ in range(2)]
            logs = [w.communicate(timeout=600)[0].decode(errors="replace") for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    delivered = box.by_tracking_id()
    with hub_db.engine.connect() as conn:
        rows = conn.execute(select(Message.id, Message.status, Message.worker)).all()
    assert sorted(delivered) == sorted(r.id for r in rows) and len(rows) == 60
    assert all(len(copies) == 1 for copies in delivered.values())
    assert {r.status for r in rows} == {"sent"}
    assert len({r.session for r in box.received}) >= 2  # both workers delivered
    assert len({r.worker for r in rows}) == 2


def test_the_rate_limit_is_shared_through_redis_when_configured(hub_db: HubDB, mailing, redis_url: str) -> None:
    from hub import ratelimit

    settings = replace(hub_db.settings, redis_url=redis_url, extra={**hub_db.settings.extra, "email_rate": "5"})
    limiter = messaging.Dispatcher(hub_db.engine, settings)._limiter("email")
    assert isinstance(limiter, ratelimit.RedisBucket) and limiter.rate == 5.0 and limiter.burst == 5
    local = messaging.Dispatcher(hub_db.engine, replace(settings, redis_url=None))._limiter("email")
    assert isinstance(local, ratelimit.LocalBucket)


def test_smtp_server_fixture_sanity() -> None:
    """The test server itself speaks SMTP (guards the other tests against a silent fixture)."""
    import smtplib

    handler = Mailbox()
    with smtp_server(handler) as port:
        with smtplib.SMTP("127.0.0.1", port) as s:
            s.sendmail("a@b.ru", ["c@d.ru"], b"Subject: x\r\nX-Hub-Message-Id: 7\r\n\r\nhi\r\n")
    assert list(handler.by_tracking_id()) == [7]
    assert threading.active_count() >= 1


def test_a_name_with_line_breaks_never_adds_a_header(hub_db: HubDB, mailing, mailbox) -> None:
    """A signup form's name «Eve\\r\\nBcc: …» stays in the To line; no header of its own reaches the server."""
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    cid = person(hub_db, "Eve\r\nBcc: victim@example.ru\r\nX-Injected: yes", "eve@example.ru")
    queue_reactivation(hub_db, settings, [cid], prefix="inject")
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    got = box.received[0]
    head = got.data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Injected:" not in head and b"\r\nBcc:" not in head and got.rcpt_tos == ["eve@example.ru"]
    assert got.message["X-Injected"] is None and "Eve" in str(got.message["To"])
