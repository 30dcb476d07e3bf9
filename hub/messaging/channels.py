"""What a channel plugin sees and answers: the protocol between the outbox and email, SMS, and the rest.

Channels are plugins (the register_channels hook); hub.api re-exports these
names for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Mapping, Protocol

from hub.config import Settings
from hub.messaging.outbox import TRANSACTIONAL


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A rendered message on its way to a channel."""

    id: int
    channel: str
    contact_id: int | None
    address: str | None
    purpose: str
    template: str | None
    subject: str | None
    text: str
    html: str | None
    key: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_marketing(self) -> bool:
        """Anything not transactional carries unsubscribe links and needs consent."""
        return self.purpose != TRANSACTIONAL

    @property
    def to_name(self) -> str | None:
        return self.meta.get("to_name")

    @property
    def unsubscribe_url(self) -> str | None:
        return self.meta.get("unsubscribe_url")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A channel's answer for one message.

    status: "sent"; "deferred" (temporary: try again later); "bounced" (the
    address is dead: suppress it); "failed" (permanent, but not the address's
    fault, e.g. a message too large); "unknown" (it may or may not have gone
    out, e.g. the connection dropped after the whole message was transmitted).

    retry_after: for "deferred", the seconds the provider asked to wait (a
    429's Retry-After, Telegram's retry_after); the message waits that long
    (at least a second) instead of Hub's own backoff. cost: what the
    provider says it charged, in rubles.
    """

    status: str
    provider_id: str | None = None
    error: str | None = None
    parts: int | None = None
    retry_after: float | None = None
    cost: Decimal | None = None


DELIVERY_STATUSES = ("sent", "deferred", "bounced", "failed", "unknown")


class ChannelUnavailable(RuntimeError):
    """The channel cannot send anything now (server unreachable, login refused).

    Raised by open() or send() only when the message was certainly not
    handed over; the dispatcher puts the batch back and tries later.
    """


class Channel(Protocol):
    """What a channel plugin implements.

    open() is called once before a batch and close() after it, so a channel
    can keep one connection for many messages; send() may be called many
    times in between and must reopen a connection the server dropped.

    A channel may also offer start(message) -> a function returning the
    Delivery: send() in two halves, the message handed over now and the
    provider's answer read when the function is called. The dispatcher then
    checks the next message's send rules while the provider works, and
    always reads the answer before handing the channel anything else (the
    email channel does this; a channel without start() is simply sent to).

    With start(), a channel may also offer prepare(message): called for the
    next message once its send rules allowed it, before the answer about the
    message before is read and before this one is committed as `sending`.
    It may compose the message and let the provider get ready for it (the
    email channel writes the SMTP envelope behind the letter before), but
    must hand over nothing that could be delivered: start() for the same
    message follows only after the commit, and a prepared message that is
    never started (its hand-over did not happen) must come to nothing.
    """

    name: str

    def open(self) -> None: ...

    def close(self) -> None: ...

    def send(self, message: Outgoing) -> Delivery: ...


def channel_factories(pm: Any = None) -> dict[str, Callable[[Settings], Channel]]:
    """Every registered channel: name → factory(settings)."""
    from hub import plugins

    return plugins.registry("register_channels", pm)
