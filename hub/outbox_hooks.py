"""The core's own hooks around the outbox, registered like any plugin (DEFAULT_PLUGINS).

Consent is a send rule like quiet hours or a business's own veto: the
dispatcher asks every ``check_send`` implementation, this one included, so
no sender can skip it. The outbox is a core table, so the core moves its
messages when two contacts merge (and back when a merge is undone), through the same
hooks plugins use.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, select, update

from hub import consent
from hub.messaging import feedback
from hub.config import Settings
from hub.hookspecs import hookimpl
from hub.messaging.channels import Outgoing
from hub.messaging.outbox import messages_t
from hub.messaging.rules import Verdict
from hub.models import ContactIdentity

identities_t = ContactIdentity.__table__


@hookimpl
def check_send(conn: Connection, settings: Settings, message: Outgoing, now: dt.datetime) -> Verdict | None:
    """Skip unless every can_contact implementation agrees, asked now, for this address."""
    if message.contact_id is None:
        return Verdict.skip("the contact no longer exists")
    decision = consent.can_contact(conn, settings, message.contact_id, message.channel, message.purpose,
                                   message.address)
    return None if decision.allowed else Verdict.skip("; ".join(decision.reasons))


@hookimpl(tryfirst=True)
def contact_merged(conn: Connection, survivor_id: int, merged_id: int) -> None:
    """A merged contact's messages belong to the survivor (the frequency cap counts them all).

    First of all implementations, so plugins find the messages on the survivor, as the hook promises.
    """
    conn.execute(update(messages_t).where(messages_t.c.contact_id == merged_id).values(contact_id=survivor_id))


@hookimpl
def contact_unmerged(conn: Connection, survivor_id: int, restored_id: int) -> None:
    """Messages to the restored contact's own addresses are its own again.

    The merge moved them all to the survivor; the address a message went to
    tells whose it was. Messages to a value both hold stay with the survivor.
    """
    c = identities_t.c
    own = select(c.value).where(c.contact_id == restored_id, c.valid, c.shared.is_(None))
    conn.execute(update(messages_t).where(messages_t.c.contact_id == survivor_id,
                                          messages_t.c.address.in_(own.scalar_subquery()))
                 .values(contact_id=restored_id))


@hookimpl(tryfirst=True)
def contact_erased(conn: Connection, contact_id: int) -> None:
    """What was heard about an erased person's messages keeps its kind and time, not their address or links.

    First of all implementations: other plugins' erasure steps blank the messages this finds the events by.
    """
    feedback.forget_contact(conn, contact_id)
