"""The workflows' settings: the `[workflows]` table of hub.toml, or `HUB_WORKFLOWS_*` variables.

A value is looked up in the table first (`[workflows] batch_size`), then in
the environment (`HUB_WORKFLOWS_BATCH_SIZE`, which Hub hands to plugins as
`workflows_batch_size`). Quiet hours and the frequency cap are the core's
send limits (hub.send_limits: `[quiet_hours]`, `frequency_cap`), which every
message keeps; a workflow plans its steps with the same values. Every mistake
names the setting, so a typo stops the scheduler at start-up instead of
letting a campaign run without its limits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from hub.api import FrequencyCap, QuietHours, Settings, SettingsError, load_send_limits

DEFAULT_BATCH = 500
DEFAULT_LEASE_S = 120
DEFAULT_INTERVAL_S = 30
# Switching on a workflow whose first look would message more people than this takes the admin role.
DEFAULT_CONFIRM_ADMIN_OVER = 1000
# Where quiet hours and the frequency cap were set before they became the core's send limits.
@dataclass(frozen=True)
class WorkflowSettings:
    quiet_hours: Mapping[str, QuietHours | None] = field(default_factory=dict)
    frequency_cap: FrequencyCap | None = None
    promo_crm_field: str | None = None
    batch_size: int = DEFAULT_BATCH
    lease: dt.timedelta = dt.timedelta(seconds=DEFAULT_LEASE_S)
    interval: float = DEFAULT_INTERVAL_S
    confirm_admin_over: int = DEFAULT_CONFIRM_ADMIN_OVER

    def quiet(self, channel: str) -> QuietHours | None:
        return self.quiet_hours.get(channel)


def _table(settings: Settings) -> Mapping[str, Any]:
    found = settings.extra.get("workflows")
    if found is None:
        return {}
    if not isinstance(found, Mapping):
        raise SettingsError("[workflows] in hub.toml must be a table")
    return found


def _value(settings: Settings, key: str, default: Any = None) -> Any:
    own = _table(settings)
    if key in own:
        return own[key]
    return settings.extra.get(f"workflows_{key}", default)


def _name(key: str) -> str:
    return f"[workflows] {key} (HUB_WORKFLOWS_{key.upper()})"


def _positive(settings: Settings, key: str, default: float, kind: type = int) -> Any:
    raw = _value(settings, key, default)
    try:
        number = kind(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{_name(key)}: {raw!r} is not a number") from None
    if number <= 0:
        raise SettingsError(f"{_name(key)}: must be more than 0")
    return number


def _count(settings: Settings, key: str, default: int) -> int:
    raw = _value(settings, key, default)
    try:
        number = int(str(raw).strip()) if not isinstance(raw, bool) else None
    except ValueError:
        number = None
    if number is None:
        raise SettingsError(f"{_name(key)}: {raw!r} is not a whole number")
    if number < 0:
        raise SettingsError(f"{_name(key)}: must be 0 or more")
    return number


def load(settings: Settings) -> WorkflowSettings:
    """The workflows' settings, checked; raises SettingsError naming the setting at fault."""
    limits = load_send_limits(settings)  # refuses the old [workflows] quiet_hours and frequency_cap by name
    field_name = _value(settings, "promo_crm_field")
    return WorkflowSettings(
        quiet_hours=limits.quiet_hours, frequency_cap=limits.frequency_cap,
        promo_crm_field=str(field_name).strip() or None if field_name is not None else None,
        batch_size=_positive(settings, "batch_size", DEFAULT_BATCH),
        lease=dt.timedelta(seconds=_positive(settings, "lease_s", DEFAULT_LEASE_S, float)),
        interval=_positive(settings, "interval_s", DEFAULT_INTERVAL_S, float),
        confirm_admin_over=_count(settings, "confirm_admin_over", DEFAULT_CONFIRM_ADMIN_OVER),
    )
