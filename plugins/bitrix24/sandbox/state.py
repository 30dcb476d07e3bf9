"""What every part of the portal shares: the state `Portal.__init__` sets up, declared once.

Each part (credentials, limits, reading, writing, events) is a class of the
portal's methods on one subject; they read and change the same state and
call one another through `self`. Declaring that state and the few methods
one part calls on another here lets each part be read, and type-checked, on
its own.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plugins.bitrix24.sandbox.credentials import OAuthApp, Webhook, _Call, _Token
    from plugins.bitrix24.sandbox.events import EventDelivery, _EventSender
    from plugins.bitrix24.sandbox.limits import _Bucket, _OperatingMeter
    from plugins.bitrix24.sandbox.protocol import _Answer
    from plugins.bitrix24.sandbox.tables import _Table


class PortalState:
    """The portal's settings and state; `Portal.__init__` gives each its value."""

    tz: dt.tzinfo
    clock: Callable[[], float]
    rate: float
    burst: int
    count_cost_per_row: float
    count_sleep_scale: float
    latency: float
    token_lifetime: int
    legacy_auth_errors: bool
    domain: str
    base_url: str
    member_id: str
    webhooks: dict[tuple[int, str], Webhook]
    webhook: Webhook
    app: OAuthApp
    contact_person: dict[int, int]
    deal_order: dict[int, int]

    _lock: threading.RLock
    _rng: random.Random
    _secret_rng: random.Random
    _contacts: _Table
    _deals: _Table
    _companies: _Table
    _requisites: _Table
    _activity_rows: _Table  # crm.activity.list: logged calls, meetings, e-mails, tasks (and Hub's to-dos)
    _stage_history: list[tuple[int, int, int, int, str, str, int]]
    _next_multifield: int
    _codes: dict[str, tuple[int, float]]
    _tokens: dict[str, _Token]
    _refresh: dict[str, _Token]
    _buckets: dict[str, _Bucket]
    _meter: _OperatingMeter
    _handlers: list[dict[str, Any]]
    _outgoing: list[dict[str, Any]]
    _next_handler_id: int
    _comments: list[dict[str, Any]]
    _activities: list[dict[str, Any]]
    _events: _EventSender
    _cuts: list[tuple[str | None, str]]
    _stats: dict[str, Any]

    if TYPE_CHECKING:  # one part's methods that another part calls; defined where their subject is
        @staticmethod
        def _id_param(params: dict[str, Any]) -> int: ...  # reading

        @property
        def event_deliveries(self) -> list[EventDelivery]: ...  # events

        def _raise_event(self, entity: str, action: str, row_id: int, call: _Call | None) -> None: ...  # events

        def _invoke(self, call: _Call, method: str, params: dict[str, Any]) -> _Answer: ...  # portal

        def _time_block(self, method: str, started: float, cost: float, *,
                        record: bool) -> dict[str, Any]: ...  # portal
