"""Calls, meetings, e-mails, tasks and notes managers log in a CRM: interactions on the contact.

They arrive with the sync like orders (upserted by (source, external id),
linked by the source's contact id as soon as the contact is known) and feed
segment fields and lead-score inputs: last call, calls in 30 days, missed
incoming calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from sqlalchemy import Connection

from hub.records import ActivityRecord

if TYPE_CHECKING:
    from hub.sync import Counts


def write_activities(conn: Connection, records: Sequence[ActivityRecord], counts: Counts) -> None:
    """Upsert activities by (source, external id) and link each to its contact and company."""
    raise NotImplementedError
