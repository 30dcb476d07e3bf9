"""The workflows' settings: the `[workflows]` table of hub.toml, or `HUB_WORKFLOWS_*` variables.

A value is looked up in the table first (`[workflows] frequency_cap`), then in
the environment (`HUB_WORKFLOWS_FREQUENCY_CAP`, which Hub hands to plugins as
`workflows_frequency_cap`). Quiet hours are per channel:
`[workflows.quiet_hours] sms = "21:00-09:00"` or `HUB_WORKFLOWS_QUIET_HOURS_SMS`.
Every mistake names the setting, so a typo stops the scheduler at start-up
instead of letting a campaign run without its limits.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from hub.config import Settings, SettingsError
from workflows import clock
from workflows.clock import QuietHours

# SMS wake people up; email waits in the inbox. Other channels: none unless set.
DEFAULT_QUIET_HOURS = {"sms": "21:00-09:00"}
DEFAULT_FREQUENCY_CAP = "2/7d"
DEFAULT_BATCH = 500
DEFAULT_LEASE_S = 120
DEFAULT_INTERVAL_S = 30
_CAP = re.compile(r"^\s*(\d{1,4})\s*/\s*(\S+)\s*$")


@dataclass(frozen=True)
class FrequencyCap:
    """At most `limit` non-transactional messages per contact in any `period`, across all workflows."""

    limit: int
    period: dt.timedelta

    def __str__(self) -> str:
        return f"{self.limit}/{clock.format_duration(self.period)}"


@dataclass(frozen=True)
class WorkflowSettings:
    quiet_hours: Mapping[str, QuietHours | None] = field(default_factory=dict)
    frequency_cap: FrequencyCap | None = None
    promo_crm_field: str | None = None
    batch_size: int = DEFAULT_BATCH
    lease: dt.timedelta = dt.timedelta(seconds=DEFAULT_LEASE_S)
    interval: float = DEFAULT_INTERVAL_S

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


def parse_cap(raw: Any) -> FrequencyCap | None:
    """"2/7d" → at most 2 per 7 days; "none" → no cap."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "off")):
        return None
    m = _CAP.match(raw) if isinstance(raw, str) else None
    if m is None:
        raise ValueError(f"{raw!r} is not a cap; write messages/period, e.g. \"2/7d\", or \"none\"")
    limit = int(m.group(1))
    if limit < 1:
        raise ValueError(f"{raw!r}: the number of messages must be at least 1")
    return FrequencyCap(limit, clock.parse_duration(m.group(2)))


def load(settings: Settings) -> WorkflowSettings:
    """The workflows' settings, checked; raises SettingsError naming the setting at fault."""
    quiet: dict[str, QuietHours | None] = {}
    table = _table(settings).get("quiet_hours", {})
    if not isinstance(table, Mapping):
        raise SettingsError("[workflows.quiet_hours] in hub.toml must be a table, e.g. sms = \"21:00-09:00\"")
    flat = {k[len("workflows_quiet_hours_"):]: v for k, v in settings.extra.items()
            if k.startswith("workflows_quiet_hours_")}
    for channel, raw in {**DEFAULT_QUIET_HOURS, **flat, **table}.items():
        try:
            quiet[str(channel)] = clock.parse_quiet_hours(raw)
        except ValueError as exc:
            raise SettingsError(f"[workflows.quiet_hours] {channel} (HUB_WORKFLOWS_QUIET_HOURS_{str(channel).upper()}): "
                                f"{exc}") from None
    try:
        cap = parse_cap(_value(settings, "frequency_cap", DEFAULT_FREQUENCY_CAP))
    except ValueError as exc:
        raise SettingsError(f"{_name('frequency_cap')}: {exc}") from None
    field_name = _value(settings, "promo_crm_field")
    return WorkflowSettings(
        quiet_hours=quiet, frequency_cap=cap,
        promo_crm_field=str(field_name).strip() or None if field_name is not None else None,
        batch_size=_positive(settings, "batch_size", DEFAULT_BATCH),
        lease=dt.timedelta(seconds=_positive(settings, "lease_s", DEFAULT_LEASE_S, float)),
        interval=_positive(settings, "interval_s", DEFAULT_INTERVAL_S, float),
    )
