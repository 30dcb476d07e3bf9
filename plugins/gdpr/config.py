"""The plugin's settings: the `[gdpr]` table of hub.toml, or `HUB_GDPR_*` variables.

A value is looked up in the table first (`[gdpr] api_key`), then in the
environment (`HUB_GDPR_API_KEY`, which Hub hands to plugins as
`gdpr_api_key`). Every mistake is reported with the setting's name, so a typo
stops a command or a request with a message instead of half-working.
Nested tables (`[gdpr.forms.NAME]`, `[gdpr.retention]`, `[gdpr.crm_consent]`)
are read by the modules that use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from hub.api import Settings, SettingsError, gettext as _
from plugins.gdpr import topics
from plugins.gdpr.topics import Topic, TopicError

DEFAULT_FORM = "default"
DEFAULT_TEXT_VERSION = "1"
CONFIRMATION_TEMPLATE = "double_opt_in_email"


def table(settings: Settings, *path: str) -> Mapping[str, Any]:
    """A table under [gdpr] (the [gdpr] table itself with no path); empty when absent."""
    found: Any = settings.extra.get("gdpr")
    for name in path:
        found = found.get(name) if isinstance(found, Mapping) else None
    if found is None:
        return {}
    if not isinstance(found, Mapping):
        raise SettingsError(_("[%(table)s] in hub.toml must be a table", table=".".join(("gdpr",) + path)))
    return found


def value(settings: Settings, key: str, default: Any = None) -> Any:
    """[gdpr] KEY from hub.toml, else HUB_GDPR_KEY from the environment, else `default`."""
    own = table(settings)
    if key in own:
        return own[key]
    return settings.extra.get(f"gdpr_{key}", default)


def names(raw: Any, setting: str) -> tuple[str, ...]:
    """A list setting given as a TOML list or comma-separated text."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        items = raw.split(",")
    elif isinstance(raw, (list, tuple)):
        items = [str(i) for i in raw]
    else:
        raise SettingsError(_('%(setting)s: give a list, e.g. ["https://shop.example.ru"]', setting=setting))
    return tuple(i.strip() for i in items if i.strip())


def api_key(settings: Settings) -> str | None:
    """The key the JSON consent API expects (None: the API is off)."""
    key = value(settings, "api_key")
    if key is None or str(key).strip() == "":
        return None
    key = str(key).strip()
    if len(key) < 16:
        raise SettingsError(_("[gdpr] api_key (HUB_GDPR_API_KEY): too short; use at least 16 characters"))
    return key


def form_origins(settings: Settings) -> tuple[str, ...]:
    """Sites whose own HTML forms may post to /consent/form (scheme://host[:port])."""
    out = []
    for origin in names(value(settings, "form_origins"), "[gdpr] form_origins (HUB_GDPR_FORM_ORIGINS)"):
        origin = origin.rstrip("/").lower()
        if not origin.startswith(("http://", "https://")) or "/" in origin.split("://", 1)[1]:
            raise SettingsError(_("[gdpr] form_origins: %(origin)r is not an origin like https://shop.example.ru",
                                  origin=origin))
        out.append(origin)
    return tuple(out)


def text_version(settings: Settings) -> str:
    """The version of the consent text people agree to, recorded with every consent they give."""
    return str(value(settings, "text_version", DEFAULT_TEXT_VERSION)).strip() or DEFAULT_TEXT_VERSION


@dataclass(frozen=True)
class Form:
    """A signup form: which topics it offers and which consent text it shows."""

    name: str
    topics: tuple[Topic, ...]
    text_version: str
    title: str | None = None
    thanks_url: str | None = None
    template: str = CONFIRMATION_TEMPLATE


SIGNUP_CHANNEL = "email"


def _provable(offered: list[Topic] | tuple[Topic, ...]) -> tuple[Topic, ...]:
    # A form proves one thing, by its confirmation letter: the email address. It offers nothing else.
    return tuple(t for t in offered if t.channel == SIGNUP_CHANNEL)


def forms(settings: Settings) -> dict[str, Form]:
    """Every configured form ([gdpr.forms.NAME]) plus `default`, which offers every email topic.

    Only email topics are offered: the double opt-in letter proves the
    address and nothing else, so SMS and call topics listed for a form are left out.
    """
    out = {DEFAULT_FORM: Form(DEFAULT_FORM, _provable(topics.every(settings)), text_version(settings))}
    for name, raw in table(settings, "forms").items():
        where = f"[gdpr.forms.{name}]"
        if not isinstance(raw, Mapping):
            raise SettingsError(_("%(where)s in hub.toml must be a table", where=where))
        try:
            offered = _provable(topics.parse_many(settings, names(raw.get("topics"), f"{where} topics")))
        except TopicError as exc:
            raise SettingsError(f"{where} topics: {exc}") from None
        thanks = raw.get("thanks_url")
        if thanks is not None and not str(thanks).startswith(("http://", "https://")):
            raise SettingsError(_("%(where)s thanks_url: %(url)r is not an http(s) URL", where=where, url=thanks))
        out[str(name)] = Form(
            name=str(name),
            topics=offered or _provable(topics.every(settings)),
            text_version=str(raw.get("text_version") or text_version(settings)),
            title=str(raw["title"]) if raw.get("title") else None,
            thanks_url=str(thanks) if thanks else None,
            template=str(raw.get("template") or CONFIRMATION_TEMPLATE),
        )
    return out
