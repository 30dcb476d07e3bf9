"""`hub mail check` against a real (tiny) DNS server on loopback, through the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dns import message as dns_message, rcode, rdataclass, rdatatype, rrset

import plugins.mailing
from plugins.mailing import dkim
from tests.support.cli import cli
from tests.support.dns import DnsServer, closed_port, dns_server

GOOD = {
    "HUB_MAIL_FROM": "Цветочная лавка <news@lavka.ru>",
    "HUB_MAIL_REPLY_TO": "care@lavka.ru",
    "HUB_SMTP_URL": "smtps://news%40lavka.ru:app-password@smtp.yandex.ru:465",
    "HUB_MAIL_RETURN_PATH": "bounces@lavka.ru",
    "HUB_BOUNCE_IMAP_HOST": "imap.yandex.ru", "HUB_BOUNCE_IMAP_USER": "bounces@lavka.ru",
    "HUB_BOUNCE_IMAP_PASSWORD": "app-password",
    "HUB_COMPANY_NAME": "Цветочная лавка", "HUB_COMPANY_LEGAL_NAME": "ООО «Цветочная лавка»",
    "HUB_COMPANY_INN": "7701234567", "HUB_COMPANY_OGRN": "1027700132195",
    "HUB_COMPANY_ADDRESS": "Москва, ул. Садовая, 1",
}
YANDEX_RECORDS = {
    "lavka.ru": ["v=spf1 include:_spf.yandex.net ~all", "yandex-verification: 1234"],
    "mail._domainkey.lavka.ru": ["v=DKIM1; k=rsa; t=s; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC" + "A" * 300],
    "_dmarc.lavka.ru": ["v=DMARC1; p=quarantine; rua=mailto:dmarc@lavka.ru"],
}


@pytest.fixture
def commands(plugin_manager):
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.hook.register_commands(cli=cli)
    return plugin_manager


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with dns_server() as server:
        yield server


def run(dns: DnsServer | None, *args: str, **env: str) -> Result:
    settings = {**GOOD, "HUB_DNS_SERVER": dns.address if dns else "", **env}
    return CliRunner().invoke(cli, ["mail", "check", *args], env={k: v or None for k, v in settings.items()})


def shown(result: Result) -> str:
    """The output with the status marks unpadded: "[ ошибка  ]" reads as "[ошибка]"."""
    assert "Traceback" not in result.output
    return re.sub(r"(?m)^\[\s*(.*?)\s*\]", r"[\1]", result.output)


def as_json(result: Result) -> dict[str, Any]:
    assert "Traceback" not in result.output
    return json.loads(result.output)


def statuses(result: Result) -> dict[str, str]:
    return {item["key"]: item["status"] for item in as_json(result)["items"]}


def test_a_shop_on_yandex_360_with_every_record_passes(commands, dns: DnsServer) -> None:
    dns.txt.update(YANDEX_RECORDS)
    result = run(dns)
    assert result.exit_code == 0, result.output
    assert "[в порядке] Запись SPF домена lavka.ru: v=spf1 include:_spf.yandex.net ~all" in result.output
    assert "Запись DKIM mail._domainkey.lavka.ru: ключ опубликован (k=rsa)" in result.output
    assert "ООО «Цветочная лавка», ИНН 7701234567, ОГРН 1027700132195, Москва, ул. Садовая, 1" in result.output
    assert "Всё настроено." in result.output
    assert {"lavka.ru", "mail._domainkey.lavka.ru", "_dmarc.lavka.ru"} <= set(dns.queries)  # real packets came

    report = as_json(run(dns, "--json"))
    assert report["ok"] is True and report["domain"] == "lavka.ru"
    assert set(report["items"][0]) == {"key", "status", "title", "detail", "fix"}
    assert set(statuses(run(dns, "--json")).values()) == {"ok"}


def test_what_is_missing_is_listed_with_what_to_do(commands, dns: DnsServer) -> None:
    result = run(dns, HUB_MAIL_RETURN_PATH="", HUB_COMPANY_INN="", HUB_COMPANY_ADDRESS="", HUB_MAIL_REPLY_TO="")
    assert result.exit_code == 1, result.output
    out = shown(result)
    assert "[нет] Адрес для возвратов (HUB_MAIL_RETURN_PATH)" in out
    assert "→ заведите ящик, например bounces@shop.ru, и укажите его в HUB_MAIL_RETURN_PATH" in out
    assert "[нет] Запись SPF домена lavka.ru: нет TXT-записи, начинающейся с v=spf1" in out
    assert "→ добавьте TXT-запись для lavka.ru: v=spf1 include:_spf.yandex.net ~all" in out
    assert "→ добавьте TXT-запись _dmarc.lavka.ru: v=DMARC1; p=none; rua=mailto:dmarc@lavka.ru" in out
    assert "не заданы: inn, address" in out
    assert "Адрес для ответов (HUB_MAIL_REPLY_TO): не задан: ответы придут на адрес отправителя" in out
    assert "Исправьте отмеченное выше" in out
    found = statuses(run(dns, "--json", HUB_MAIL_RETURN_PATH=""))
    assert found["mail_return_path"] == "missing" and found["spf"] == "missing" and found["dkim"] == "missing"
    assert found["dmarc"] == "missing" and "bounce_imap" not in found

    english = run(dns, HUB_MAIL_RETURN_PATH="", HUB_LANGUAGE="en")
    assert "[missing] Bounce address (HUB_MAIL_RETURN_PATH)" in shown(english)


def test_nothing_set_at_all_says_so_without_a_traceback(commands) -> None:
    result = CliRunner().invoke(cli, ["mail", "check", "--json"], env={k: None for k in GOOD})
    assert result.exit_code == 1
    found = statuses(result)
    assert found["mail_from"] == "missing" and found["dns"] == "skipped"


@pytest.mark.parametrize(("records", "words"), [
    ({"lavka.ru": ["v=spf1 include:_spf.yandex.net ~all", "v=spf1 a mx -all"]},
     "записей SPF: 2; при нескольких записях почтовые службы не учитывают ни одной"),
    ({"lavka.ru": ["v=spf1 include:_spf.yandex.net +all"]}, "закончите запись на ~all или -all"),
    ({"lavka.ru": ["v=spf1 include:_spf.yandex.net"]}, "закончите запись на ~all или -all"),
    ({"lavka.ru": ["v=spf1 include:_spf.mail.ru ~all"]},
     "в записи нет серверов вашего почтового сервиса: добавьте include:_spf.yandex.net перед all"),
    ({"mail._domainkey.lavka.ru": ["v=DKIM1; k=rsa; p="]}, "ключ пустой (p=): ключ отозван"),
    ({"_dmarc.lavka.ru": ["v=DMARC1; p=none"]}, "добавьте rua=mailto:dmarc@lavka.ru"),
    ({"_dmarc.lavka.ru": ["v=DMARC1; p=maybe; rua=mailto:d@lavka.ru"]}, "укажите политику: p=none"),
])
def test_wrong_records_are_named_with_the_fix(commands, dns: DnsServer, records: dict[str, list[str]],
                                              words: str) -> None:
    dns.txt.update({**YANDEX_RECORDS, **records})
    result = run(dns)
    assert result.exit_code == 1, result.output
    assert "[ошибка]" in shown(result) and words in result.output


def test_mail_ru_relay_wants_its_own_include_and_selector(commands, dns: DnsServer) -> None:
    dns.txt.update({"lavka.ru": ["v=spf1 redirect=_spf.mail.ru"],
                    "mailru._domainkey.lavka.ru": ["v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEB"],
                    "_dmarc.lavka.ru": ["v=DMARC1; p=none; rua=mailto:dmarc@lavka.ru"]})
    result = run(dns, "--json", HUB_SMTP_URL="smtps://news%40lavka.ru:x@smtp.mail.ru:465")
    assert result.exit_code == 0, result.output
    assert "mailru._domainkey.lavka.ru" in dns.queries


def test_an_unknown_relay_needs_the_selector_named(commands, dns: DnsServer) -> None:
    dns.txt.update({"lavka.ru": ["v=spf1 include:spf.unisender.com ~all"],
                    "us._domainkey.lavka.ru": ["v=DKIM1; k=rsa; p=MIGfMA0G"],
                    "_dmarc.lavka.ru": ["v=DMARC1; p=reject; rua=mailto:dmarc@lavka.ru"]})
    unknown = run(dns, HUB_SMTP_URL="smtp://smtp.unisender.com:587")
    assert "[пропущено] Запись DKIM: селектор неизвестен" in shown(unknown)
    assert "→ запустите проверку снова с --selector" in unknown.output
    named = statuses(run(dns, "--json", "--selector", "us", HUB_SMTP_URL="smtp://smtp.unisender.com:587"))
    assert named["dkim"] == "ok" and named["spf"] == "ok"


def test_hubs_own_key_must_be_the_published_one(commands, dns: DnsServer, tmp_path: Path) -> None:
    key_file = tmp_path / "dkim.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    signer = dkim.load_key(key_file)
    own = {"HUB_DKIM_SELECTOR": "hub", "HUB_DKIM_PRIVATE_KEY_FILE": str(key_file), "HUB_SMTP_URL": ""}
    dns.txt.update({"lavka.ru": ["v=spf1 ip4:203.0.113.7 -all"],
                    "hub._domainkey.lavka.ru": ["v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCother"],
                    "_dmarc.lavka.ru": ["v=DMARC1; p=none; rua=mailto:dmarc@lavka.ru"]})
    stale = run(dns, **own)
    assert stale.exit_code == 1
    assert "опубликован не тот ключ, что в HUB_DKIM_PRIVATE_KEY_FILE" in stale.output
    assert f"замените запись на: v=DKIM1; k=rsa; p={signer[2]}" in stale.output

    # A 2048-bit key is longer than one TXT string: the DNS host splits it, the check joins it.
    dns.txt["hub._domainkey.lavka.ru"] = [f"v=DKIM1; k=rsa; p={signer[2]}"]
    fresh = run(dns, **own)
    assert fresh.exit_code == 0, fresh.output
    assert "Подпись DKIM (HUB_DKIM_*): ключ rsa, селектор hub, домен lavka.ru" in fresh.output

    broken = run(dns, "--json", **{**own, "HUB_DKIM_PRIVATE_KEY_FILE": str(tmp_path / "missing.pem")})
    assert statuses(broken)["dkim_key"] == "wrong"


class AddressDns(DnsServer):
    """The test name server, answering A and AAAA questions too (the SMTP host's addresses)."""

    def __init__(self) -> None:
        super().__init__()
        self.addresses: dict[str, list[str]] = {}

    def _answer(self, wire: bytes) -> bytes:
        query = dns_message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        if question.rdtype not in (rdatatype.A, rdatatype.AAAA):
            return super()._answer(wire)
        self.queries.append(name)
        response = dns_message.make_response(query)
        wanted = [a for a in self.addresses.get(name, [])
                  if (":" in a) == (question.rdtype == rdatatype.AAAA)]
        if name not in self.addresses:
            response.set_rcode(rcode.NXDOMAIN)
        elif wanted:
            response.answer.append(rrset.from_text_list(question.name, 300, rdataclass.IN,
                                                            question.rdtype, wanted))
        return response.to_wire()


@pytest.fixture
def address_dns() -> Iterator[AddressDns]:
    server = AddressDns()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def spf_fix(dns: DnsServer, smtp_url: str) -> str:
    result = run(dns, "--json", HUB_SMTP_URL=smtp_url)
    (item,) = [i for i in as_json(result)["items"] if i["key"] == "spf"]
    assert item["status"] == "missing"
    return str(item["fix"])


def test_an_unknown_relay_gets_an_spf_record_naming_its_address(commands, address_dns: AddressDns) -> None:
    """Never «v=spf1 ~all»: a record without a mechanism authorizes nobody and every letter fails SPF."""
    address_dns.addresses.update({"smtp.unisender.com": ["95.163.10.20", "95.163.10.21", "2a00:1148::25"],
                                  "relay.lan": ["192.168.1.5"]})
    assert spf_fix(address_dns, "smtp://smtp.unisender.com:587") == (
        "добавьте TXT-запись для lavka.ru: v=spf1 ip4:95.163.10.20 ip4:95.163.10.21 ip6:2a00:1148::25 ~all")
    assert spf_fix(address_dns, "smtp://95.163.10.30:587").endswith(": v=spf1 ip4:95.163.10.30 ~all")
    assert "smtp.unisender.com" in address_dns.queries
    # Not resolved (no such name, or only a private address): the provider's include, no record without it.
    for unresolved in ("smtp://nowhere.example.net:587", "smtp://relay.lan:25", "smtp://127.0.0.1:25"):
        fix = spf_fix(address_dns, unresolved)
        assert "include:" in fix and "v=spf1 ~all" not in fix and "документации" in fix, fix
    english = run(address_dns, "--json", HUB_SMTP_URL="smtp://nowhere.example.net:587", HUB_LANGUAGE="en")
    (item,) = [i for i in as_json(english)["items"] if i["key"] == "spf"]
    assert "include:" in item["fix"] and "v=spf1 ~all" not in item["fix"]


def test_unreachable_dns_is_said_in_one_line(commands) -> None:
    result = run(None, HUB_DNS_SERVER=f"127.0.0.1:{closed_port()}")
    assert "Traceback" not in result.output
    assert "[пропущено] Записи DNS (SPF, DKIM, DMARC): DNS недоступен, проверка записей пропущена" in result.output
    assert result.exit_code == 0, result.output  # the settings are all there; the records could not be read


@pytest.mark.parametrize(("args", "env", "key", "words"), [
    (["--domain", "lavka .ru"], {}, "domain", "--domain: 'lavka .ru' — не доменное имя"),
    (["--domain", "-" * 300], {}, "domain", "не доменное имя"),
    (["--selector", "a.b c"], {}, "dkim", "--selector: 'a.b c' — не селектор"),
    ([], {"HUB_MAIL_FROM": "Shop <news@lavka.ru>\nBcc: all@x.ru"}, "mail_from", "перевод строки"),
    ([], {"HUB_MAIL_REPLY_TO": "care@lavka.ru\r\nX: 1"}, "mail_reply_to", "перевод строки"),
    ([], {"HUB_MAIL_RETURN_PATH": "bounces+1@lavka.ru"}, "mail_return_path", "HUB_MAIL_RETURN_PATH"),
    ([], {"HUB_COMPANY_INN": "77-01"}, "company_inn", "'77-01' — не 10 и не 12 цифр"),
    ([], {"HUB_COMPANY_OGRN": "123"}, "company_ogrn", "'123' — не 13 и не 15 цифр"),
    ([], {"HUB_MAIL_REASON": "<script>\x07"}, "mail_reason", "управляющие символы"),
])
def test_hostile_input_gets_a_russian_line_not_a_traceback(commands, dns: DnsServer, args: list[str],
                                                            env: dict[str, str], key: str, words: str) -> None:
    dns.txt.update(YANDEX_RECORDS)
    result = run(dns, *args, **env)
    assert result.exit_code == 1 and "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit)
    assert words in result.output
    item = next(i for i in as_json(run(dns, "--json", *args, **env))["items"] if i["key"] == key)
    assert item["status"] == "wrong"


def test_help_is_in_russian(commands) -> None:
    result = CliRunner().invoke(cli, ["mail", "check", "--help"])
    assert result.exit_code == 0
    assert "Проверить настройки отправителя" in result.output and "--selector" in result.output
