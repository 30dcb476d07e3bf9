"""Clicks and opens: a marketing letter's links go through Hub, and an open pixel when asked.

Setting (settings.extra): ``mail_tracking`` (HUB_MAIL_TRACKING) is ``clicks``
(the default), ``clicks,opens`` or ``off``. When clicks are on, every http(s)
link of a marketing email, in its HTML (``<a href>``) and its text part, is
sent as ``{public_url}/c/{token}``; with opens, a 1×1 picture
``{public_url}/o/{token}.gif`` is added at the end of the HTML.

A click token names the message and the link's place in it (its index) and
carries a short keyed signature (HMAC-SHA256 with HUB_SECRET_KEY): letters
carry many links, so it is some 25 characters, not a signed blob holding the
address. The address is not in the token at all: the redirect reads the stored
letter again and finds the links with the same function (`targets`), so it can
only lead where the letter itself pointed, and an erased person's letter
(its bodies blanked) leads nowhere.

The links are numbered the same way whatever is rewritten: every http(s)
link of the HTML in order (outside <head> and comments), then the text part's
links the HTML does not have. Which of them are rewritten does not change the
numbering, so the unsubscribe and preference-centre links (never rewritten:
mail clients and the law want them to work as they are) cannot shift the
others. A text link with the same address as an HTML link shares its number;
one that differs (a text-only letter's, or one without the HTML's utm tags)
has a number of its own. A text link written inside the reader's own name
(what a person typed into a form) is left as it is: Hub's signed redirect
leads only where the shop's template pointed. Transactional mail is never
tracked.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import html as html_lib
import re
from dataclasses import dataclass

from hub.api import ChannelUnavailable, Outgoing, Settings, SettingsError, gettext, public_url

SETTING = "mail_tracking"
CLICKS, OPENS, OFF = "clicks", "opens", "off"
DEFAULT = CLICKS
SIGNATURE_CHARS = 16  # base64url characters of the HMAC: 96 bits
MAX_TOKEN = 200
MAX_MESSAGE_ID = 2**31 - 1  # messages.id is a 32-bit integer on PostgreSQL: a larger one is no message of ours
# Paths under the public address that must reach the reader untouched (gdpr's pages) or are tracking already.
KEPT_PATHS = ("/u/", "/preferences/", "/confirm/", "/c/", "/o/")

# One pass over the HTML: <head>…</head> and comments are passed over; an <a …> tag's href is the link.
# Every branch starts with "<", so the engine jumps from one "<" to the next.
_HTML = re.compile(
    r"<(?:(?P<skip>head\b.*?</head\s*>|!--.*?-->)"
    r"|(?P<pre>a\s(?:[^>\"']|\"[^\"]*\"|'[^']*')*?\bhref\s*=\s*)"
    r"(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<bare>[^\s>\"'`]+)))",
    re.I | re.S)
# Links in the text part as people write them (lower-case scheme): a literal start the engine finds fast.
_TEXT = re.compile(r"https?://[^\s<>\"'`]+")
_TRAILING = ".,;:!?»)]}'\""
_CLICK_TOKEN = re.compile(r"^(\d{1,10})-(\d{1,5})-([A-Za-z0-9_-]{%d})$" % SIGNATURE_CHARS)
_OPEN_TOKEN = re.compile(r"^(\d{1,10})-([A-Za-z0-9_-]{%d})$" % SIGNATURE_CHARS)
_BODY_END = re.compile(r"</body\s*>", re.I)


@dataclass(frozen=True)
class Tracking:
    clicks: bool
    opens: bool

    @property
    def on(self) -> bool:
        return self.clicks or self.opens


def mode(settings: Settings) -> Tracking:
    """What HUB_MAIL_TRACKING asks for; SettingsError for a value that is not one of the three."""
    return _parse(str(settings.extra.get(SETTING) or DEFAULT))


@functools.lru_cache(maxsize=16)
def _parse(raw: str) -> Tracking:
    words = {w.strip().lower() for w in raw.split(",") if w.strip()}
    if words == {OFF}:
        return Tracking(False, False)
    if not words or not words <= {CLICKS, OPENS}:
        raise SettingsError(gettext("HUB_MAIL_TRACKING: %(value)r; use clicks, clicks,opens or off", value=raw))
    return Tracking(CLICKS in words, OPENS in words)


# --- tokens --------------------------------------------------------------------------------

def _signature(key: bytes, what: str) -> str:
    mac = _keyed(key).copy()  # the key's padding is hashed once, not once per link
    mac.update(what.encode("ascii"))
    return base64.urlsafe_b64encode(mac.digest()).decode("ascii")[:SIGNATURE_CHARS]


@functools.lru_cache(maxsize=4)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def click_token(key: bytes, message_id: int, index: int) -> str:
    return f"{message_id}-{index}-{_signature(key, f'c:{message_id}:{index}')}"


def open_token(key: bytes, message_id: int) -> str:
    return f"{message_id}-{_signature(key, f'o:{message_id}')}"


def _key(settings: Settings) -> bytes:
    return settings.require_secret_key().encode("utf-8")


def read_click(settings: Settings, token: str) -> tuple[int, int] | None:
    """(message id, link index) of a click token, or None: malformed, too long or not signed by us."""
    found = _CLICK_TOKEN.match(token) if len(token) <= MAX_TOKEN and token.isascii() else None
    if found is None:
        return None
    message_id, index = int(found[1]), int(found[2])
    expected = _signature(_key(settings), f"c:{message_id}:{index}")
    if message_id > MAX_MESSAGE_ID or not hmac.compare_digest(found[3], expected):
        return None
    return message_id, index


def read_open(settings: Settings, token: str) -> int | None:
    """The message id of an open token, or None."""
    found = _OPEN_TOKEN.match(token) if len(token) <= MAX_TOKEN and token.isascii() else None
    if found is None:
        return None
    message_id = int(found[1])
    if message_id > MAX_MESSAGE_ID or not hmac.compare_digest(found[2], _signature(_key(settings), f"o:{message_id}")):
        return None
    return message_id


# --- the links of a letter -----------------------------------------------------------------

def _web(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def _text_link(found: str) -> str:
    return found.rstrip(_TRAILING)


def targets(html: str | None, text: str | None) -> list[str]:
    """Every http(s) link of a letter, numbered as its click tokens number them.

    The HTML's links in order (entities decoded: the address a browser would
    open), then each link of the text part the HTML does not have, in the
    order of their first appearance. The same letter always gives the same
    list; the redirect relies on that. A number in this list is only
    reachable through a token `track` signed, so a link it left as it was
    (one inside the reader's name) leads nowhere through Hub.
    """
    links: list[str] = []
    for m in _HTML.finditer(html or ""):
        if m["skip"] is None:
            url = html_lib.unescape(_attribute(m)).strip()
            if _web(url):
                links.append(url)
    known = set(links)
    for m in _TEXT.finditer(text or ""):
        url = _text_link(m[0])
        if url not in known:
            known.add(url)
            links.append(url)
    return links


def _attribute(m: re.Match[str]) -> str:
    return m["dq"] if m["dq"] is not None else m["sq"] if m["sq"] is not None else m["bare"]


def _kept(url: str, base: str, unsubscribe: str | None) -> bool:
    """Links that go out as they are: the unsubscribe and preference links, and our own tracking links."""
    if url == unsubscribe:
        return True
    if url.startswith(base):
        rest = url[len(base):]
        return rest.startswith(KEPT_PATHS)
    return False


def track(settings: Settings, message: Outgoing) -> Outgoing:
    """The letter as it is sent: links through Hub, the pixel added; unchanged when it is not tracked.

    Only marketing email with a message behind it (a test letter has id 0).
    A setting Hub cannot use stops the channel (ChannelUnavailable: the
    letters wait, nothing is marked as perhaps sent) with the setting's error.
    """
    if message.channel != "email" or not message.is_marketing or not message.id:
        return message
    try:
        wanted = mode(settings)
        if not wanted.on:
            return message
        base = public_url(settings)
        key = _key(settings)
    except SettingsError as exc:
        raise ChannelUnavailable(str(exc)) from None
    html, text = message.html, message.text
    if wanted.clicks:
        html, text = _rewrite(message, base, key)
    if wanted.opens and html:
        pixel = (f'<img src="{base}/o/{open_token(key, message.id)}.gif" width="1" height="1" alt="" '
                 f'style="display:block;border:0">')
        ends = list(_BODY_END.finditer(html))
        html = html[:ends[-1].start()] + pixel + html[ends[-1].start():] if ends else html + pixel
    return dataclasses.replace(message, html=html, text=text)


def _rewrite(message: Outgoing, base: str, key: bytes) -> tuple[str | None, str]:
    unsubscribe = message.unsubscribe_url
    index_of: dict[str, int] = {}
    # The tracking address of each link number, signed the first time it is written (a kept link's
    # never is) and once however often it appears.
    links: list[str | None] = []

    def number(url: str) -> int:
        links.append(None)
        return len(links) - 1

    def address(index: int) -> str:
        found = links[index]
        if found is None:
            found = links[index] = f"{base}/c/{click_token(key, message.id, index)}"
        return found

    def html_link(m: re.Match[str]) -> str:
        if m["skip"] is not None:
            return m[0]
        url = html_lib.unescape(_attribute(m)).strip()
        if not _web(url):
            return m[0]
        index = number(url)
        index_of.setdefault(url, index)
        if _kept(url, base, unsubscribe):
            return m[0]
        quote = '"' if m["dq"] is not None or m["bare"] is not None else "'"
        return f"<{m['pre']}{quote}{address(index)}{quote}"

    html = _HTML.sub(html_link, message.html) if message.html else message.html

    name = str(message.to_name or "")
    in_html = set(index_of)

    def text_link(m: re.Match[str]) -> str:
        url = _text_link(m[0])
        index = index_of.get(url)
        if index is None:  # a link only the text part has: a number of its own, as `targets` gives it
            index = index_of[url] = number(url)
        if _kept(url, base, unsubscribe) or (url not in in_html and url in name):
            return m[0]  # a link inside the reader's own name is their words, not the shop's: no redirect
        return f"{address(index)}{m[0][len(url):]}"

    text = _TEXT.sub(text_link, message.text) if message.text else message.text
    return html, text
