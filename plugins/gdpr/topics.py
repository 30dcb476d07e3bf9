"""What a person can agree to: a topic is one purpose on one channel ("email/news").

The consent ledger keys every answer by (channel, purpose); forms, the
preference centre and the CRM mapping all speak of topics written
"channel/purpose", and a bare purpose means email ("news" is "email/news"),
the channel a signup is confirmed by. Labels are the core's (hub.api's
consent_channel_title, consent_purpose_title), shown in the reader's language
(Russian by default, since the people reading the public pages are Russian
customers); `[gdpr.labels]` renames any channel or purpose (or names one the
defaults do not know), in the shop's own words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from hub.api import (Settings, consent_channel_title, consent_channels, consent_purpose_title, consent_purposes,
                     gettext)

PROCESSING = "processing"
DEFAULT_CHANNEL = "email"


class TopicError(ValueError):
    """A topic that is not "channel/purpose" with a known channel and purpose."""


@dataclass(frozen=True, order=True, slots=True)
class Topic:
    channel: str
    purpose: str

    def __str__(self) -> str:
        return f"{self.channel}/{self.purpose}"


def parse(settings: Settings, text: str) -> Topic:
    """A topic from "channel/purpose" (or a bare purpose, meaning email), checked against the settings."""
    raw = str(text).strip().lower()
    channel, slash, purpose = raw.partition("/")
    if not slash:
        channel, purpose = DEFAULT_CHANNEL, raw
    channels, purposes = consent_channels(settings), consent_purposes(settings)
    if channel not in channels:
        raise TopicError(gettext("topic %(topic)r: channel %(channel)r is not one of: %(known)s",
                                 topic=text, channel=channel, known=", ".join(channels)))
    if purpose not in purposes:
        raise TopicError(gettext("topic %(topic)r: purpose %(purpose)r is not one of: %(known)s",
                                 topic=text, purpose=purpose, known=", ".join(purposes)))
    return Topic(channel, purpose)


def parse_many(settings: Settings, texts: Iterable[str]) -> list[Topic]:
    """Several topics, each checked; duplicates dropped, order kept."""
    return list(dict.fromkeys(parse(settings, t) for t in texts if str(t).strip()))


def every(settings: Settings) -> list[Topic]:
    """Every topic the settings allow: each channel with each purpose."""
    return [Topic(c, p) for c in consent_channels(settings) for p in consent_purposes(settings)]


def _labels(settings: Settings) -> dict[str, str]:
    table = settings.extra.get("gdpr")
    own = table.get("labels") if isinstance(table, dict) else None
    return {str(k): str(v) for k, v in own.items()} if isinstance(own, dict) else {}


def channel_label(settings: Settings, channel: str) -> str:
    """A channel's name in the reader's language (the shop's own from [gdpr.labels] as written)."""
    return _labels(settings).get(channel) or consent_channel_title(channel)


def purpose_label(settings: Settings, purpose: str) -> str:
    """A purpose's name in the reader's language (the shop's own from [gdpr.labels] as written)."""
    return _labels(settings).get(purpose) or consent_purpose_title(purpose)


def label(settings: Settings, topic: Topic) -> str:
    """How a page names a topic: «Новости» (Email), “News” (Email) in English."""
    return gettext("“%(purpose)s” (%(channel)s)", purpose=purpose_label(settings, topic.purpose),
                   channel=channel_label(settings, topic.channel))
