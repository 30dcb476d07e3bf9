"""DKIM: letters signed with a key made here arrive through a real SMTP server and verify with dkimpy."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import plugins.mailing
from hub import consent, messaging, sync
from hub.config import SettingsError
from hub.message_templates import Template
from hub.records import ContactRecord
from plugins.mailing import dkim
from plugins.mailing.email import EmailChannel, Sender
from tests.conftest import HubDB

PROMO = {"promo": {"code": "LAVKA-15", "discount": 15, "expires_at": "2026-12-31"}}


@pytest.fixture
def mailing(plugin_manager):
    plugin_manager.register(plugins.mailing, name="mailing")
    return plugin_manager


def write_key(path: Path, kind: str) -> Path:
    key: Any = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
                else ed25519.Ed25519PrivateKey.generate())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def settings_for(db: HubDB, port: int, key_file: Path | str, **extra: Any):
    return replace(db.settings, extra={**db.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
                                       "mail_from": "Цветочная лавка <shop@example.ru>",
                                       "public_url": "https://hub.example.ru", "dkim_selector": "hub2026",
                                       "dkim_private_key_file": str(key_file), **extra})


def person(db: HubDB, address: str) -> int:
    with db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name="Анна", emails=[address])],
                                  db.settings, sync.Counts()).contact_ids[0]
        consent.record(conn, cid, "email", "marketing", "granted", source="form")
    return cid


def dns_for(signer: dkim.Signer):
    """dkimpy's dnsfunc: the TXT record the shop published, and nothing else."""
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return signer.record.encode("ascii") if name.decode().rstrip(".") == signer.record_name else None
    return lookup


def signed_headers(data: bytes) -> list[str]:
    header = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    found = re.search(r"DKIM-Signature:(.*?)(?=\r\n\S)", header, re.S)
    assert found is not None
    tags = dict(t.strip().split("=", 1) for t in "".join(found[1].split()).split(";") if t.strip())
    return [h.strip().lower() for h in tags["h"].split(":")]


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_marketing_letters_arrive_signed_and_verify(hub_db: HubDB, mailing, mailbox, tmp_path: Path,
                                                    kind: str) -> None:
    box, port = mailbox
    settings = settings_for(hub_db, port, write_key(tmp_path / "dkim.pem", kind),
                            mail_reply_to="care@example.ru")
    cid = person(hub_db, "anna@example.ru")
    messaging.create_many(hub_db.engine, settings, [cid], channel="email", template="reactivation_email",
                          key_prefix="r", context=PROMO)
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    data = box.received[0].data
    signer = EmailChannel(settings).sender.signer
    assert signer is not None and signer.domain == "example.ru"  # the From domain by default
    assert data.startswith(b"DKIM-Signature: v=1; a=" + signer.algorithm.encode())
    assert b"c=relaxed/relaxed" in data.split(b"\r\n\r\n")[0]
    assert dkimpy.verify(data, dnsfunc=dns_for(signer))
    assert set(signed_headers(data)) == {"from", "to", "subject", "date", "message-id", "mime-version",
                                         "content-type", "list-unsubscribe", "list-unsubscribe-post", "reply-to"}
    forged = data.replace(b"Subject: =?utf-8?b?", b"Subject: =?utf-8?b?QQ", 1)
    assert not dkimpy.verify(forged, dnsfunc=dns_for(signer))  # a changed subject breaks the signature


def test_transactional_letters_sign_only_the_headers_they_have(hub_db: HubDB, mailing, mailbox,
                                                              tmp_path: Path) -> None:
    box, port = mailbox
    settings = settings_for(hub_db, port, write_key(tmp_path / "dkim.pem", "rsa"), dkim_domain="mail.example.ru")
    cid = person(hub_db, "anna@example.ru")
    receipt = Template(name="receipt", channel="email", subject="Заказ принят", text="Заказ №15 принят.\n")
    with hub_db.engine.begin() as conn:
        messaging.create(conn, settings, contact_id=cid, channel="email", template=receipt, key="receipt",
                         purpose="transactional")
    messaging.dispatch(hub_db.engine, settings)
    data = box.received[0].data
    signer = EmailChannel(settings).sender.signer
    assert signer is not None and signer.record_name == "hub2026._domainkey.mail.example.ru"
    assert set(signed_headers(data)) == {"from", "to", "subject", "date", "message-id", "mime-version",
                                         "content-type"}
    assert dkimpy.verify(data, dnsfunc=dns_for(signer))


def test_the_file_channel_signs_too_and_its_return_path_stays_outside(hub_db: HubDB, mailing,
                                                                      tmp_path: Path) -> None:
    settings = settings_for(hub_db, 0, write_key(tmp_path / "dkim.pem", "ed25519"),
                            outbox_dir=str(tmp_path / "out"), mail_return_path="bounces@example.ru")
    settings = replace(settings, extra={k: v for k, v in settings.extra.items() if k != "smtp_url"})
    cid = person(hub_db, "anna@example.ru")
    messaging.create_many(hub_db.engine, settings, [cid], channel="email", template="welcome_email", key_prefix="w")
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    [path] = (tmp_path / "out").iterdir()
    data = path.read_bytes()
    assert data.startswith(b"Return-Path: <bounces+")
    signer = Sender.from_settings(settings, required=False).signer
    assert signer is not None and dkimpy.verify(data, dnsfunc=dns_for(signer))


def test_without_dkim_settings_nothing_is_signed(hub_db: HubDB, mailing) -> None:
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "mail_from": "shop@example.ru"})
    assert Sender.from_settings(settings, required=True).signer is None


# --- bad settings -------------------------------------------------------------------------

def test_a_bad_key_file_is_named_but_never_shown(hub_db: HubDB, mailing, tmp_path: Path) -> None:
    secret = tmp_path / "garbage.pem"
    secret.write_text("-----BEGIN PRIVATE KEY-----\nTOP-SECRET-PASSWORD\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SettingsError) as caught:
        Sender.from_settings(settings_for(hub_db, 0, secret), required=True)
    assert str(secret) in str(caught.value) and "TOP-SECRET" not in str(caught.value)
    assert "нет незашифрованного закрытого ключа PEM" in str(caught.value)

    with pytest.raises(SettingsError) as caught:
        Sender.from_settings(settings_for(hub_db, 0, tmp_path / "nowhere.pem"), required=True)
    assert f"не удаётся прочитать файл {tmp_path / 'nowhere.pem'}" in str(caught.value)

    encrypted = tmp_path / "encrypted.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"pass")))
    with pytest.raises(SettingsError, match="нет незашифрованного"):
        Sender.from_settings(settings_for(hub_db, 0, encrypted), required=True)

    weak = tmp_path / "weak.pem"  # the library refuses to make one this short; openssl still does
    subprocess.run(["openssl", "genrsa", "-out", str(weak), "512"], check=True, capture_output=True)
    with pytest.raises(SettingsError, match="ключ RSA длиной 512 бит"):
        Sender.from_settings(settings_for(hub_db, 0, weak), required=True)

    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"A" * (dkim.MAX_KEY_FILE + 1))
    with pytest.raises(SettingsError, match="слишком велик"):
        Sender.from_settings(settings_for(hub_db, 0, huge), required=True)


def test_a_key_file_that_cannot_be_read_is_refused(hub_db: HubDB, mailing, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="не удаётся прочитать файл"):
        Sender.from_settings(settings_for(hub_db, 0, tmp_path), required=True)


@pytest.mark.parametrize(("extra", "words"), [
    ({"dkim_selector": "hub.2026"}, "HUB_DKIM_SELECTOR: 'hub.2026' — не селектор"),
    ({"dkim_selector": "hub 2026"}, "HUB_DKIM_SELECTOR: 'hub 2026' — не селектор"),
    ({"dkim_selector": "hub\nX-Evil: 1"}, "не селектор"),
    ({"dkim_selector": ""}, "HUB_DKIM_SELECTOR не задан, а HUB_DKIM_PRIVATE_KEY_FILE задан"),
    ({"dkim_private_key_file": ""}, "HUB_DKIM_PRIVATE_KEY_FILE не задан, а HUB_DKIM_SELECTOR задан"),
    ({"dkim_domain": "not a domain"}, "HUB_DKIM_DOMAIN: 'not a domain' — не доменное имя"),
    ({"dkim_domain": "a..b"}, "не доменное имя"),
])
def test_hostile_dkim_settings_are_refused_in_russian(hub_db: HubDB, mailing, tmp_path: Path,
                                                      extra: dict[str, str], words: str) -> None:
    settings = settings_for(hub_db, 0, write_key(tmp_path / "dkim.pem", "ed25519"), **extra)
    with pytest.raises(SettingsError) as caught:
        EmailChannel(settings)
    assert words in str(caught.value)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
@pytest.mark.parametrize("body", [b"", b"\r\n\r\n", b"line  with \t spaces \r\n\r\n\r\n", b"no final newline",
                                  "Привет, Анна!\r\n".encode() * 3])
def test_the_canonical_forms_verify_with_an_independent_implementation(tmp_path: Path, kind: str,
                                                                       body: bytes) -> None:
    """Folded and repeated headers, odd spaces, empty and unterminated bodies: dkimpy agrees with every one."""
    settings_extra = {"dkim_selector": "hub", "dkim_private_key_file": str(write_key(tmp_path / "k.pem", kind))}
    from hub.config import Settings

    signer = dkim.from_settings(Settings(extra=settings_extra), "example.ru")
    assert signer is not None
    message = (b"From: Shop <shop@example.ru>\r\nTo:  anna@example.ru \r\nSubject: =?utf-8?b?0J/RgNC40LLQtdGC?=\r\n"
               b" folded\tpart\r\nSubject: the last one counts\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n"
               b"Message-ID: <1@example.ru>\r\n\r\n" + body)
    signed = signer.sign(message, dkim.SIGNED)
    assert dkimpy.verify(signed, dnsfunc=dns_for(signer))
    assert not dkimpy.verify(signed.replace(b"the last one counts", b"the last one changed"), dnsfunc=dns_for(signer))


def test_a_from_or_subject_added_after_signing_breaks_the_signature(tmp_path: Path) -> None:
    from hub.config import Settings

    extra = {"dkim_selector": "hub", "dkim_private_key_file": str(write_key(tmp_path / "k.pem", "rsa"))}
    signer = dkim.from_settings(Settings(extra=extra), "example.ru")
    assert signer is not None
    message = (b"From: shop@example.ru\r\nTo: anna@example.ru\r\nSubject: hi\r\nMessage-ID: <1@example.ru>\r\n\r\n"
               b"body\r\n")
    signed = signer.sign(message, dkim.SIGNED)
    assert dkimpy.verify(signed, dnsfunc=dns_for(signer))
    for added in (b"From: boss@bank.example\r\n", b"Subject: urgent\r\n"):
        head, body = signed.split(b"\r\n\r\n", 1)
        assert not dkimpy.verify(head + b"\r\n" + added.rstrip(b"\r\n") + b"\r\n\r\n" + body,
                                 dnsfunc=dns_for(signer))
