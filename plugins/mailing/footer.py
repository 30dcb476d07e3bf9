"""The footer every letter ends with: who sends it, why the reader gets it, how to stop.

Russian advertising law (38-ФЗ, art. 18) lets a shop mail advertising only to
people who agreed and must stop at their first request; 152-ФЗ wants the
operator of personal data identifiable; Gmail's and Yandex's bulk-sender
rules want the sender named and unsubscribing easy. So the footer is not
left to each template: the channel appends it to every letter as it
composes it, the shipped templates and the ones a marketer writes in the
admin alike, and no template can forget it.

- every letter: the company's legal details ([company] legal_name or name,
  inn, ogrn, address), when any are set;
- marketing letters also: the reason the reader gets them and an
  unsubscribe link, unless the template already shows that same link. The
  reason is HUB_MAIL_REASON_<PURPOSE> (e.g. HUB_MAIL_REASON_SURVEYS) for
  letters of that consent purpose, else HUB_MAIL_REASON, else a sentence in
  the shop's language that fits the purpose.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass
from typing import Mapping

from hub.api import Outgoing, Settings, SettingsError, company, gettext

MAX_REASON = 500
_BODY_END = re.compile(r"</body\s*>", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_STYLE = "margin:16px 0 0;font-size:12px;line-height:1.4;color:#888888;font-family:Arial,Helvetica,sans-serif;"


@dataclass(frozen=True, slots=True)
class Footer:
    legal: str  # one line, empty when no details are set
    reasons: Mapping[str, str]  # by consent purpose; "" is every other purpose
    unsubscribe: str  # the link's words

    def reason(self, message: Outgoing) -> str:
        if not message.is_marketing:
            return ""
        return self.reasons.get(message.purpose) or self.reasons.get("", "")

    def text(self, message: Outgoing) -> str:
        reason = self.reason(message)
        lines = [reason] if reason else []
        url = message.unsubscribe_url if message.is_marketing else None
        if url and url not in message.text:
            lines.append(f"{self.unsubscribe}: {url}")
        if self.legal:
            lines.append(self.legal)
        return "\n".join(lines)

    def html(self, message: Outgoing) -> str:
        assert message.html is not None
        reason = self.reason(message)
        parts = [_escaped(reason)] if reason else []
        url = message.unsubscribe_url if message.is_marketing else None
        if url:
            shown = html.escape(url)
            if shown not in message.html and url not in message.html:
                parts.append(f'<a href="{shown}" style="color:#888888;">{_escaped(self.unsubscribe)}</a>')
        if self.legal:
            parts.append(_escaped(self.legal))
        if not parts:
            return ""
        return f'<p style="{_STYLE}">' + "<br>\n".join(parts) + "</p>\n"

    def apply(self, message: Outgoing) -> tuple[str, str | None]:
        """The text and HTML of the letter with the footer added (the HTML's before its </body>)."""
        tail = self.text(message)
        text = f"{message.text.rstrip()}\n\n{tail}\n" if tail else message.text
        if message.html is None:
            return text, None
        block = self.html(message)
        if not block:
            return text, message.html
        at = body_end(message.html)
        if at is not None:
            return text, message.html[:at] + block + message.html[at:]
        return text, message.html + "\n" + block


_TAGS_FROM_END = 4  # closing tags tried from the end of a letter before it is scanned whole


def body_end(page: str) -> int | None:
    """Where the HTML's last </body> starts; None when it has none.

    A letter ends with </body></html>: the last few "</" from the end are
    tried first, where a scan of the whole letter with a case-blind pattern
    would read every character; a page that has none of them there is scanned whole.
    """
    end = len(page)
    for _ in range(_TAGS_FROM_END):
        at = page.rfind("</", 0, end)
        if at < 0:
            return None
        if _BODY_END.match(page, at):
            return at
        end = at
    found = list(_BODY_END.finditer(page, 0, end))
    return found[-1].start() if found else None


@functools.lru_cache(maxsize=64)
def _escaped(text: str) -> str:
    """The footer's own words (reason, legal line, the link's words) escaped once, not once a letter."""
    return html.escape(text)


def legal_line(details: dict[str, str]) -> str:
    """«ООО «Лавка», ИНН 7701234567, ОГРН 1027700000000, Москва, ул. Ленина, 1»: who sends the letter."""
    parts = []
    name = (details.get("legal_name") or details.get("name") or "").strip()
    if name:
        parts.append(name)
    inn = (details.get("inn") or "").strip()
    if inn:
        parts.append(gettext("INN %(number)s", number=inn))
    ogrn = (details.get("ogrn") or "").strip()
    if ogrn:
        # A sole trader's number is the 15-digit ОГРНИП.
        parts.append(gettext("OGRNIP %(number)s", number=ogrn) if len(ogrn) == 15
                     else gettext("OGRN %(number)s", number=ogrn))
    address = (details.get("address") or "").strip()
    if address:
        parts.append(address)
    return " ".join(", ".join(parts).split())


def default_reason(details: dict[str, str], purpose: str = "") -> str:
    if purpose == "surveys":
        return gettext("You received this letter because you agreed to take part in our surveys.")
    name = (details.get("name") or "").strip()
    if name:
        return gettext("You received this letter because you subscribed to the news of %(shop)s.", shop=name)
    return gettext("You received this letter because you subscribed to our news.")


def reason(settings: Settings, purpose: str = "") -> str:
    """The reason for letters of a purpose, checked: one paragraph of plain text, or the default sentence."""
    key = f"mail_reason_{purpose}" if purpose else "mail_reason"
    raw = settings.extra.get(key)
    if raw is None or not str(raw).strip():
        if purpose:
            general = settings.extra.get("mail_reason")
            return reason(settings) if general is not None and str(general).strip() else \
                default_reason(company(settings), purpose)
        return default_reason(company(settings))
    setting = f"HUB_{key.upper()}"
    value = " ".join(str(raw).split())
    if _CONTROL.search(str(raw).replace("\n", " ").replace("\r", " ").replace("\t", " ")):
        raise SettingsError(gettext("%(setting)s: contains control characters; write plain text", setting=setting))
    if len(value) > MAX_REASON:
        raise SettingsError(gettext("%(setting)s: %(count)s characters; keep it under %(limit)s", setting=setting,
                                    count=len(value), limit=MAX_REASON))
    return value


def purposes(settings: Settings) -> list[str]:
    """The purposes with a reason of their own: the shipped ones, and any HUB_MAIL_REASON_<PURPOSE> set."""
    named = [k[len("mail_reason_"):] for k in settings.extra if k.startswith("mail_reason_")]
    return sorted({"marketing", "news", "surveys", *named})


def from_settings(settings: Settings) -> Footer:
    reasons = {"": reason(settings)} | {p: reason(settings, p) for p in purposes(settings)}
    return Footer(legal=legal_line(company(settings)), reasons=reasons,
                  unsubscribe=gettext("Unsubscribe from these letters"))
