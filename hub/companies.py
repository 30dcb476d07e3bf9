"""Companies from the CRMs (B2B): stored, linked to the people who work there and to their deals.

A company's phones and emails identify the company: they are kept on the
company row and never make two of its employees one person. Who works where
(contact_companies) is evidence the identity rules use: two people at one
company who share its switchboard are colleagues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from sqlalchemy import Connection

from hub.config import Settings
from hub.records import CompanyRecord

if TYPE_CHECKING:
    from hub.sync import Counts


def write_companies(conn: Connection, records: Sequence[CompanyRecord], settings: Settings, counts: Counts) -> None:
    """Upsert companies by (source, external id); link the contacts and orders already waiting for them."""
    raise NotImplementedError
