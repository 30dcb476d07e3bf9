"""What every part of the account shares: the state `Account.__init__` sets up, declared once.

Each part (credentials, limits, reading, writing, notes, events) is a class
of the account's methods on one subject; they read and change the same state
and call one another through `self`. Declaring that state and the few
methods one part calls on another here lets each part be read, and
type-checked, on its own.
"""

from __future__ import annotations

import queue
import random
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plugins.amocrm.sandbox.credentials import Integration, _AccessToken, _AuthCode, _RefreshToken
    from plugins.amocrm.sandbox.data import TagRegistry
    from plugins.amocrm.sandbox.events import _Notification, _Webhook
    from plugins.amocrm.sandbox.round_trip import CallRow
    from plugins.amocrm.sandbox.protocol import Response


class AccountState:
    """The account's settings and state; `Account.__init__` gives each its value."""

    integration: Integration
    subdomain: str
    clock: Callable[[], float]
    latency: float
    access_token_ttl: float
    refresh_token_ttl: float
    auth_code_ttl: float
    long_lived_token_ttl: float
    rate_limit: int | None
    abuse_threshold: int | None
    abuse_window: float
    block_seconds: float
    customers_enabled: bool
    max_batch: int
    oversize_limit: str
    next_on_full_last_page: bool
    webhook_duplicate_rate: float
    webhook_drop_rate: float
    webhook_timeout: float
    base_url: str

    _lock: threading.RLock
    _tags: dict[str, TagRegistry]
    _stores: dict[str, dict[int, Any]]
    _next_ids: dict[str, int]
    _versions: Counter[str]
    _order_cache: dict[tuple[str, str], tuple[int, list[int], list[int]]]

    _access_tokens: dict[str, _AccessToken]
    _refresh_tokens: dict[str, _RefreshToken]
    _codes: dict[str, _AuthCode]

    _events: list[dict[str, Any]]
    _calls: dict[str, list[CallRow]]          # seeded call notes by entity, oldest first (round_trip)
    _call_time_cache: dict[str, list[int]]
    _seeded_tasks: list[dict[str, Any]]
    _event_counter: int
    _notes: list[dict[str, Any]]
    _call_edits: dict[int, dict[str, Any]]   # seeded call note id -> its params and updated_at as edited (notes)
    _locked_notes: set[int]                  # notes the token's user may not edit (notes.lock_note)
    _tasks: list[dict[str, Any]]
    _writes: list[dict[str, Any]]
    _next_note_id: int
    _next_task_id: int

    _admitted: dict[str, deque[float]]
    _rejections: deque[float]
    _blocked_until: float

    _stats_lock: threading.Lock
    _stats: Counter[str]
    _by_path: Counter[str]
    _by_status: Counter[str]
    _in_flight: int

    _webhooks: list[_Webhook]
    _webhook_queue: queue.Queue[tuple[str, str] | None]
    _webhook_rng: random.Random
    _webhook_thread: threading.Thread | None
    _webhook_idle: threading.Condition
    _webhook_pending: int
    _deliveries: list[dict[str, Any]]
    _cuts: list[tuple[str | None, str]]

    def now(self) -> int:
        return int(self.clock())

    if TYPE_CHECKING:  # one part's methods that another part calls; defined where their subject is
        @property
        def contacts_count(self) -> int: ...  # reading

        @property
        def leads_count(self) -> int: ...  # reading

        def _page_params(self, params: dict[str, Any], maximum: int) -> tuple[int, int]: ...  # reading

        def _batch_refused(self, payload: Any, *, empty: str = "InvalidType") -> Response | None: ...  # writing

        def _items_refused(self, payload: list[Any],
                           errors_of: Callable[[Any], list[dict[str, str]]]) -> Response | None: ...  # writing

        def _event(self, kind: str, entity: str, entity_id: int,
                   before: list[Any] | None = None, after: list[Any] | None = None) -> None: ...  # events

        def _webhook_fields(self, entity: str, row: Any) -> list[tuple[str, str]]: ...  # events

        def _notify(self, notifications: list[_Notification]) -> None: ...  # events
