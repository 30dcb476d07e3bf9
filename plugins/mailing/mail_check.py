"""`hub mail check`: what a shop's mail setup still lacks, item by item, with what to do.

Letters that Gmail, Yandex and Mail.ru accept need a sender they can
identify (a valid From, SPF, a DKIM signature, a DMARC policy), a footer
naming the company, and somewhere for bounces to go. Each item is `ok`,
`missing`, `wrong` or `skipped` (could not be checked: no DNS, no
selector); the command exits 1 while anything is missing or wrong.

DNS is read with dnspython from the system's resolver, or from HUB_DNS_SERVER
(host or host:port) on sites that must use their own; when no server answers
the records are skipped with one line saying so.

The SPF record suggested names the servers that really send: the known
relay's ``include:``, else ``ip4:``/``ip6:`` of the SMTP host (its literal
address, or what its name resolves to). When neither is known the advice is
to take the provider's ``include:`` from its documentation: a record with no
mechanism before ``~all`` authorizes nobody, and letters fail SPF.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import asdict, dataclass
from typing import Callable, Sequence
from urllib.parse import urlsplit

import click
import dns.exception
import dns.resolver
from cryptography.hazmat.primitives import serialization

from hub.api import App, Settings, SettingsError, company, emit_json, gettext as _, pass_app, pgettext
from plugins.mailing import dkim, footer, verp
from plugins.mailing.email import parse_address

OK, MISSING, WRONG, SKIPPED = "ok", "missing", "wrong", "skipped"
DNS_TIMEOUT = 3.0

# Relays whose SPF include and DKIM selector are published by the provider.
RELAYS = {
    "smtp.yandex.ru": ("include:_spf.yandex.net", "mail"),
    "smtp.yandex.com": ("include:_spf.yandex.net", "mail"),
    "smtp.mail.ru": ("include:_spf.mail.ru", "mailru"),
    "smtp.gmail.com": ("include:_spf.google.com", "google"),
}


@dataclass(frozen=True)
class Item:
    key: str
    status: str
    title: str
    detail: str
    fix: str = ""


class DnsUnavailable(Exception):
    """No name server answered: the records cannot be checked from here."""


TxtLookup = Callable[[str], list[str]]
AddressLookup = Callable[[str], list[str]]
MAX_SPF_ADDRESSES = 4  # addresses of one SMTP host named in the suggested record


def _resolver(settings: Settings) -> dns.resolver.Resolver:
    server = str(settings.extra.get("dns_server") or "").strip()
    try:
        if server:
            host, _colon, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host or server]
            resolver.port = int(port) if port else 53
        else:
            resolver = dns.resolver.Resolver()
    except (dns.resolver.NoResolverConfiguration, OSError, ValueError) as exc:
        raise DnsUnavailable(str(exc)) from None
    resolver.lifetime = DNS_TIMEOUT
    return resolver


def resolver_lookup(settings: Settings) -> TxtLookup:
    """TXT records of a name, each one string (its pieces joined); [] when there are none."""
    resolver = _resolver(settings)

    def lookup(name: str) -> list[str]:
        try:
            answer = resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsUnavailable(str(exc)) from None
        return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]

    return lookup


def resolver_addresses(settings: Settings) -> AddressLookup:
    """The IPv4 and IPv6 addresses a host name resolves to; [] when it resolves to none or DNS does not answer."""
    resolver = _resolver(settings)

    def addresses(name: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                found.extend(record.to_text() for record in resolver.resolve(name, rdtype))
            except (dns.exception.DNSException, OSError):
                continue
        return found

    return addresses


def sending_mechanism(settings: Settings, addresses: AddressLookup | None) -> str | None:
    """What the SPF record must name for HUB_SMTP_URL's host: the relay's include, its ip4:/ip6:, or None (unknown)."""
    known = relay(settings)
    if known is not None:
        return known[0]
    host = (urlsplit(str(settings.extra.get("smtp_url") or "")).hostname or "").strip().lower()
    if not host:
        return None
    try:
        found = [ipaddress.ip_address(host)]
    except ValueError:
        if addresses is None:
            return None
        try:
            found = [ipaddress.ip_address(a) for a in addresses(host)]
        except (DnsUnavailable, ValueError):
            return None
    # A private or loopback address (a relay on the shop's own network) says nothing about the public sender.
    public = [a for a in found if not (a.is_private or a.is_loopback or a.is_link_local or a.is_unspecified
                                       or a.is_multicast or a.is_reserved)]
    unique = sorted(set(public), key=lambda a: (a.version, int(a)))[:MAX_SPF_ADDRESSES]  # DNS answers in any order
    return " ".join(f"ip{a.version}:{a}" for a in unique) or None


# --- settings -----------------------------------------------------------------------------

def _from(settings: Settings) -> tuple[Item, str | None]:
    raw = str(settings.extra.get("mail_from") or "").strip()
    title = _("Sender address (HUB_MAIL_FROM)")
    if not raw:
        return Item("mail_from", MISSING, title, _("not set"),
                    _("set HUB_MAIL_FROM to the shop's name and address, e.g. 'Лавка <news@shop.ru>'")), None
    try:
        name, address = parse_address("HUB_MAIL_FROM", raw)
    except SettingsError as exc:
        return Item("mail_from", WRONG, title, str(exc), _("write one address on one line")), None
    if not name:
        return Item("mail_from", WRONG, title, _("%(address)s has no name; readers see a bare address",
                                                  address=address),
                    _("add the shop's name: 'Лавка <%(address)s>'", address=address)), address
    return Item("mail_from", OK, title, f"{name} <{address}>"), address


def _reply_to(settings: Settings) -> Item:
    raw = str(settings.extra.get("mail_reply_to") or "").strip()
    title = _("Where replies go (HUB_MAIL_REPLY_TO)")
    if not raw:
        return Item("mail_reply_to", OK, title, _("not set: replies go to the sender address"))
    try:
        parse_address("HUB_MAIL_REPLY_TO", raw)
    except SettingsError as exc:
        return Item("mail_reply_to", WRONG, title, str(exc), _("write one address on one line"))
    return Item("mail_reply_to", OK, title, raw)


def _return_path(settings: Settings) -> list[Item]:
    title = _("Bounce address (HUB_MAIL_RETURN_PATH)")
    try:
        base = verp.base_address(settings)
    except SettingsError as exc:
        return [Item("mail_return_path", WRONG, title, str(exc), _("use a plain address like bounces@shop.ru"))]
    if base is None:
        return [Item("mail_return_path", MISSING, title, _("not set: bounces go to the sender address and Hub "
                                                           "does not learn which addresses are dead"),
                     _("create a mailbox such as bounces@shop.ru and set HUB_MAIL_RETURN_PATH to it"))]
    items = [Item("mail_return_path", OK, title, base)]
    missing = [name for name in ("bounce_imap_host", "bounce_imap_user", "bounce_imap_password")
               if not str(settings.extra.get(name) or "").strip()]
    imap_title = _("Bounce mailbox over IMAP (HUB_BOUNCE_IMAP_*)")
    if missing:
        items.append(Item("bounce_imap", MISSING, imap_title,
                          _("not set: %(names)s", names=", ".join(f"HUB_{n.upper()}" for n in missing)),
                          _("give Hub the IMAP server, login and (app) password of %(address)s", address=base)))
    else:
        items.append(Item("bounce_imap", OK, imap_title, str(settings.extra.get("bounce_imap_host"))))
    return items


def _company(settings: Settings) -> list[Item]:
    details = company(settings)
    title = _("Company details in the footer ([company] in hub.toml, HUB_COMPANY_*)")
    lacking = [label for key, label in (("inn", "inn"), ("address", "address")) if not details.get(key, "").strip()]
    if not (details.get("legal_name") or details.get("name") or "").strip():
        lacking.insert(0, "legal_name")
    items = []
    if lacking:
        items.append(Item("company", MISSING, title, _("not set: %(names)s", names=", ".join(lacking)),
                          _("the advertising law wants the sender identifiable: set legal_name (ООО «…» or "
                            "ИП …), inn, ogrn and address")))
    else:
        items.append(Item("company", OK, title, footer.legal_line(details)))
    inn, ogrn = details.get("inn", "").strip(), details.get("ogrn", "").strip()
    if inn and not (inn.isdigit() and len(inn) in (10, 12)):
        items.append(Item("company_inn", WRONG, _("INN"), _("%(value)r is not 10 or 12 digits", value=inn),
                          _("copy the INN from the registration certificate")))
    if ogrn and not (ogrn.isdigit() and len(ogrn) in (13, 15)):
        items.append(Item("company_ogrn", WRONG, _("OGRN"), _("%(value)r is not 13 or 15 digits", value=ogrn),
                          _("copy the OGRN (OGRNIP for a sole trader) from the registration certificate")))
    title = _("Why the reader gets the letters (HUB_MAIL_REASON)")
    try:
        reason = footer.from_settings(settings).reasons[""]
    except SettingsError as exc:
        items.append(Item("mail_reason", WRONG, title, str(exc), _("write one short paragraph of plain text")))
    else:
        items.append(Item("mail_reason", OK, title, reason))
    return items


def _dkim_settings(settings: Settings, from_domain: str | None) -> tuple[Item | None, dkim.Signer | None]:
    if not dkim.configured(settings):
        return None, None
    title = _("DKIM signing (HUB_DKIM_*)")
    try:
        signer = dkim.from_settings(settings, from_domain or "")
    except SettingsError as exc:
        return Item("dkim_key", WRONG, title, str(exc), _("fix the setting, or unset HUB_DKIM_SELECTOR and "
                                                           "HUB_DKIM_PRIVATE_KEY_FILE when a relay signs")), None
    assert signer is not None
    return Item("dkim_key", OK, title, _("%(kind)s key, selector %(selector)s, domain %(domain)s",
                                         kind=signer.key_type, selector=signer.selector, domain=signer.domain)), signer


def relay(settings: Settings) -> tuple[str, str] | None:
    """(SPF include, DKIM selector) of the known relay in HUB_SMTP_URL, if it is one."""
    host = (urlsplit(str(settings.extra.get("smtp_url") or "")).hostname or "").lower()
    return RELAYS.get(host)


# --- DNS ----------------------------------------------------------------------------------

def _spf(domain: str, records: Sequence[str], include: str | None, mechanism: str | None = None) -> Item:
    """`include`: the known relay's, which the record must hold; `mechanism`: what to suggest (include or ip4:)."""
    title = _("SPF record of %(domain)s", domain=domain)
    spf = [r for r in records if r.lower().startswith("v=spf1")]
    mechanism = mechanism or include
    if not spf:
        if mechanism is None:
            return Item("spf", MISSING, title, _("no TXT record starting with v=spf1"),
                        _("add a TXT record at %(domain)s: v=spf1, your mail provider's include: (from its "
                          "documentation on SPF), then ~all", domain=domain))
        return Item("spf", MISSING, title, _("no TXT record starting with v=spf1"),
                    _("add a TXT record at %(domain)s: %(record)s", domain=domain,
                      record=f"v=spf1 {mechanism} ~all"))
    if len(spf) > 1:
        return Item("spf", WRONG, title, _("%(count)s SPF records; receivers then ignore them all", count=len(spf)),
                    _("merge them into one TXT record"))
    record = " ".join(spf[0].split())
    terms = record.lower().split()
    if not (terms[-1] in ("~all", "-all") or any(t.startswith("redirect=") for t in terms)):
        return Item("spf", WRONG, title, record,
                    _("end the record with ~all or -all; anything else lets anyone send as %(domain)s",
                      domain=domain))
    if include and include not in terms and not any(t.startswith("redirect=") for t in terms):
        return Item("spf", WRONG, title, record,
                    _("the relay's servers are not in it: add %(include)s before the all", include=include))
    return Item("spf", OK, title, record)


def _tags(record: str) -> dict[str, str]:
    out = {}
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            out[name.strip().lower()] = "".join(value.split())
    return out


def _public_keys(signer: dkim.Signer) -> set[str]:
    """The p= values that hold the signer's key: SubjectPublicKeyInfo, or the bare RSA key some hosts publish."""
    keys = {signer.public_key}
    if signer.key_type == "rsa":
        public = serialization.load_der_public_key(base64.b64decode(signer.public_key))
        keys.add(base64.b64encode(public.public_bytes(serialization.Encoding.DER,
                                                      serialization.PublicFormat.PKCS1)).decode("ascii"))
    return keys


def _dkim_record(name: str, records: Sequence[str], signer: dkim.Signer | None) -> Item:
    title = _("DKIM record %(name)s", name=name)
    dkim_records = [r for r in records if "p=" in r]
    if not dkim_records:
        fix = (_("add a TXT record at %(name)s: %(record)s", name=name, record=signer.record) if signer
               else _("copy the DKIM record your mail provider shows into a TXT record at %(name)s", name=name))
        return Item("dkim", MISSING, title, _("no DKIM record"), fix)
    tags = _tags(dkim_records[0])
    if not tags.get("p"):
        return Item("dkim", WRONG, title, _("the key is empty (p=): the key was revoked"),
                    _("publish the current key"))
    if signer is not None and tags["p"] not in _public_keys(signer):
        return Item("dkim", WRONG, title, _("the published key is not the one in HUB_DKIM_PRIVATE_KEY_FILE; "
                                            "receivers will reject the signatures"),
                    _("replace the record with: %(record)s", record=signer.record))
    return Item("dkim", OK, title, _("key published (k=%(kind)s)", kind=tags.get("k", "rsa")))


def _dmarc(domain: str, records: Sequence[str]) -> Item:
    name = f"_dmarc.{domain}"
    title = _("DMARC record %(name)s", name=name)
    found = [r for r in records if r.lower().replace(" ", "").startswith("v=dmarc1")]
    suggestion = f"v=DMARC1; p=none; rua=mailto:dmarc@{domain}"
    if not found:
        return Item("dmarc", MISSING, title, _("no TXT record starting with v=DMARC1"),
                    _("add a TXT record at %(name)s: %(record)s", name=name, record=suggestion))
    tags = _tags(found[0])
    if tags.get("p", "").lower() not in ("none", "quarantine", "reject"):
        return Item("dmarc", WRONG, title, found[0], _("give a policy: p=none, p=quarantine or p=reject"))
    if not tags.get("rua"):
        return Item("dmarc", WRONG, title, found[0],
                    _("add rua=mailto:dmarc@%(domain)s to receive the providers' reports", domain=domain))
    return Item("dmarc", OK, title, " ".join(found[0].split()))


def _dns_items(settings: Settings, domain: str, selector: str | None, signer: dkim.Signer | None,
               lookup: TxtLookup | None, addresses: AddressLookup | None = None) -> list[Item]:
    known = relay(settings)
    try:
        if lookup is None:
            lookup = resolver_lookup(settings)
            addresses = addresses or resolver_addresses(settings)
        records = lookup(domain)
        items = [_spf(domain, records, known[0] if known else None,
                      sending_mechanism(settings, addresses) if not [r for r in records
                                                                     if r.lower().startswith("v=spf1")] else None)]
        dkim_domain = signer.domain if signer else domain
        selector = selector or (signer.selector if signer else None) or (known[1] if known else None)
        if selector:
            name = f"{selector}._domainkey.{dkim_domain}"
            items.append(_dkim_record(name, lookup(name), signer))
        else:
            items.append(Item("dkim", SKIPPED, _("DKIM record"), _("the selector is not known"),
                              _("run again with --selector, the one your mail provider gave")))
        items.append(_dmarc(domain, lookup(f"_dmarc.{domain}")))
    except DnsUnavailable:
        return [Item("dns", SKIPPED, _("DNS records (SPF, DKIM, DMARC)"),
                     _("DNS is unreachable, the records were not checked"),
                     _("run the check where DNS works, or point HUB_DNS_SERVER at a name server"))]
    return items


def check(settings: Settings, *, domain: str | None = None, selector: str | None = None,
          lookup: TxtLookup | None = None, addresses: AddressLookup | None = None) -> tuple[str | None, list[Item]]:
    """The domain checked and every item, in the order a person would fix them."""
    from_item, address = _from(settings)
    items = [from_item, _reply_to(settings), *_return_path(settings), *_company(settings)]
    from_domain = address.rpartition("@")[2] if address else None
    dkim_item, signer = _dkim_settings(settings, from_domain)
    if dkim_item is not None:
        items.append(dkim_item)
    if domain is not None:
        try:
            domain = dkim.check_domain(domain, "--domain")
        except SettingsError as exc:
            items.append(Item("domain", WRONG, _("Domain"), str(exc)))
            return None, items
    domain = domain or (dkim.check_domain(from_domain, "HUB_MAIL_FROM") if from_domain and "." in from_domain
                        else None)
    if domain is None:
        items.append(Item("dns", SKIPPED, _("DNS records (SPF, DKIM, DMARC)"), _("no sending domain"),
                          _("set HUB_MAIL_FROM or give --domain")))
        return None, items
    if selector is not None:
        try:
            dkim.check_selector(selector)
        except SettingsError as exc:
            items.append(Item("dkim", WRONG, _("DKIM record"), str(exc).replace("HUB_DKIM_SELECTOR", "--selector")))
            selector = None
    items.extend(_dns_items(settings, domain, selector, signer, lookup, addresses))
    return domain, items


_MARKS = {OK: "ok", MISSING: "missing", WRONG: "wrong", SKIPPED: "skipped"}


def _mark(status: str) -> str:
    return {OK: pgettext("mail check", "ok"), MISSING: pgettext("mail check", "missing"),
            WRONG: pgettext("mail check", "wrong"), SKIPPED: pgettext("mail check", "skipped")}[status]


@click.command("check")
@click.option("--domain", metavar="DOMAIN", help="The sending domain to check (default: the From address's).")
@click.option("--selector", metavar="SELECTOR",
              help="The DKIM selector your mail provider signs with (default: HUB_DKIM_SELECTOR, or the relay's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_app
def check_command(app: App, domain: str | None, selector: str | None, as_json: bool) -> None:
    """Check the sender's setup: From, Reply-To, bounces, company details, SPF, DKIM and DMARC.

    Exits 1 while anything is missing or wrong.
    """
    settings = app.settings
    checked, items = check(settings, domain=domain, selector=selector)
    ok = not any(item.status in (MISSING, WRONG) for item in items)
    if as_json:
        emit_json({"domain": checked, "ok": ok, "items": [asdict(item) for item in items]})
    else:
        width = max(len(_mark(s)) for s in _MARKS)
        for item in items:
            click.echo(f"[{_mark(item.status):^{width}}] {item.title}: {item.detail}")
            if item.fix and item.status != OK:
                click.echo(f"{'':{width + 3}}→ {item.fix}")
        click.echo(_("Everything is in place.") if ok else _("Fix the items above and run the check again."))
    raise SystemExit(0 if ok else 1)

