"""Quiet hours and the frequency cap: limits every message keeps, whoever dispatches it.

A core default plugin (hub.plugins.DEFAULT_PLUGINS) answering check_send, so
a campaign sent with `hub messages send`, a workflow's step, a worker's job
and a message retried by `hub messages dispatch` all keep the same limits.

- Quiet hours are per channel, in the contact's own local time
  (hub.localtime): SMS 21:00-09:00 unless set otherwise, other channels none.
  A message that falls in them is held until they end, never dropped.
- The frequency cap counts every non-transactional message a contact was
  sent or is about to be sent, from any campaign or workflow, in a sliding
  window (2 per 7 days unless set otherwise). At dispatch a message counts
  the contact's messages queued before it; over the cap it is held until a
  slot frees up.
- A transactional message may be exempt from the quiet hours (an order or
  pickup notice): its meta says `"quiet_hours": "ignore"`
  (`ignores_quiet_hours`); a marketing one never is.
- The two are asked together (`first_allowed`): a slot the cap frees at
  22:58 is in the night, so the message waits for the morning, and is
  asked about the cap again then.

Settings: `[quiet_hours] sms = "21:00-09:00"` in hub.toml or
HUB_QUIET_HOURS_SMS (any channel's name; "none" switches them off), and
`frequency_cap = "2/7d"` or HUB_FREQUENCY_CAP ("none": no cap). The workflows
plugin reads the same settings (`load`) to plan a step ahead: defer it to the
morning, or skip it on the cap when the step says so.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, select

from hub import consent, localtime, send_reasons
from hub.config import Settings, SettingsError
from hub.db import chunks
from hub.hookspecs import hookimpl
from hub.i18n import gettext as _
from hub.localtime import QuietHours
from hub.messaging.channels import Outgoing
from hub.messaging.outbox import messages_t
from hub.messaging import rules
from hub.messaging.rules import Verdict

# SMS wake people up; email waits in the inbox. Other channels: none unless set.
DEFAULT_QUIET_HOURS = {"sms": "21:00-09:00"}
DEFAULT_FREQUENCY_CAP = "2/7d"
# Messages that never reached anyone do not count toward the cap.
NOT_COUNTED = ("failed", "suppressed")
_CAP = re.compile(r"^\s*(\d{1,4})\s*/\s*(\S+)\s*$")


# --- settings ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrequencyCap:
    """At most `limit` non-transactional messages per contact in any `period`, across all senders."""

    limit: int
    period: dt.timedelta

    def __str__(self) -> str:
        return f"{self.limit}/{localtime.format_duration(self.period)}"


@dataclass(frozen=True)
class SendLimits:
    quiet_hours: Mapping[str, QuietHours | None] = field(default_factory=dict)
    frequency_cap: FrequencyCap | None = None

    def quiet(self, channel: str) -> QuietHours | None:
        return self.quiet_hours.get(channel)


def parse_cap(raw: Any) -> FrequencyCap | None:
    """"2/7d" → at most 2 per 7 days; "none" → no cap."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "off")):
        return None
    m = _CAP.match(raw) if isinstance(raw, str) else None
    if m is None:
        raise ValueError(_("%(value)r is not a cap; write messages/period, e.g. \"2/7d\", or \"none\"", value=raw))
    limit = int(m.group(1))
    if limit < 1:
        raise ValueError(_("%(value)r: the number of messages must be at least 1", value=raw))
    return FrequencyCap(limit, localtime.parse_duration(m.group(2)))


# Where these limits were set before they held every message: refused with the new name, never
# silently ignored (a cap switched off there would otherwise come back on without a word).
_MOVED = {"quiet_hours": "[quiet_hours] in hub.toml (HUB_QUIET_HOURS_<CHANNEL>)",
          "frequency_cap": "frequency_cap in hub.toml (HUB_FREQUENCY_CAP)"}


def _refuse_old_names(settings: Settings) -> None:
    workflows = settings.extra.get("workflows")
    old_table = workflows if isinstance(workflows, Mapping) else {}
    for key, where in _MOVED.items():
        if key in old_table or any(k.startswith(f"workflows_{key}") for k in settings.extra):
            raise SettingsError(_("[workflows] %(key)s (HUB_WORKFLOWS_%(env)s) is now set as %(where)s: "
                                  "it holds every message, not only the workflows'", key=key, env=key.upper(),
                                  where=where))


def _parse(settings: Settings) -> SendLimits:
    _refuse_old_names(settings)
    table = settings.extra.get("quiet_hours", {})
    if not isinstance(table, Mapping):
        raise SettingsError(_("[quiet_hours] in hub.toml must be a table, e.g. sms = \"21:00-09:00\""))
    flat = {k[len("quiet_hours_"):]: v for k, v in settings.extra.items() if k.startswith("quiet_hours_")}
    quiet: dict[str, QuietHours | None] = {}
    for channel, raw in {**DEFAULT_QUIET_HOURS, **flat, **table}.items():
        try:
            quiet[str(channel)] = localtime.parse_quiet_hours(raw)
        except ValueError as exc:
            raise SettingsError(f"[quiet_hours] {channel} (HUB_QUIET_HOURS_{str(channel).upper()}): {exc}") from None
    try:
        cap = parse_cap(settings.extra.get("frequency_cap", DEFAULT_FREQUENCY_CAP))
    except ValueError as exc:
        raise SettingsError(f"frequency_cap (HUB_FREQUENCY_CAP): {exc}") from None
    return SendLimits(quiet_hours=quiet, frequency_cap=cap)


_loaded: tuple[Settings, SendLimits] | None = None


def load(settings: Settings) -> SendLimits:
    """The limits in force, checked; raises SettingsError naming the setting at fault.

    Read once per Settings object: the rules run for every message a dispatch sends.
    """
    global _loaded
    found = _loaded
    if found is None or found[0] is not settings:
        found = _loaded = (settings, _parse(settings))
    return found[1]


# --- the arithmetic -------------------------------------------------------------------------

def cap_until(cap: FrequencyCap, times: list[dt.datetime], now: dt.datetime) -> dt.datetime | None:
    """None when one more message fits under the cap now; else when the next slot frees up."""
    window = [t for t in times if now - cap.period < t <= now]
    if len(window) < cap.limit:
        return None
    window.sort()
    return window[len(window) - cap.limit] + cap.period


# --- the first moment a message may go --------------------------------------------------------

QUIET_HOURS, FREQUENCY_CAP = "quiet_hours", "frequency_cap"


@dataclass(frozen=True)
class Move:
    """One limit moving a message later: which (`kind`), to when (`until`, UTC), in the stored English words."""

    kind: str
    until: dt.datetime
    reason: str


@dataclass(frozen=True)
class Slot:
    """When a message may go (`at`), and every move of the limits that took it there, in order."""

    at: dt.datetime
    moves: tuple[Move, ...] = ()

    def moved_by(self, kind: str) -> dt.datetime | None:
        """Where `kind` last moved the message to; None when it never did."""
        found = [m.until for m in self.moves if m.kind == kind]
        return found[-1] if found else None

    @property
    def reason(self) -> str:
        """The moves in the stored words, each once: "frequency cap 2/7d reached; quiet hours 21:00-09:00 in …"."""
        return send_reasons.JOINER.join(dict.fromkeys(m.reason for m in self.moves))


def first_allowed(moment: dt.datetime, *, quiet: QuietHours | None, zone: ZoneInfo, cap: FrequencyCap | None,
                  times: Sequence[dt.datetime]) -> Slot:
    """The first moment at or after `moment` outside the quiet hours (in `zone`) that the cap also allows.

    One limit's answer can land in the other: a cap that frees up at 22:58
    puts an SMS in the night, and the morning the quiet hours then move it
    to may still be under the cap. So both are asked again until neither
    moves it. The workflow step, the forecast, the trial and the dispatcher
    all ask this one function, so they agree on when a message goes.

    `times` are when the contact's counted messages were (or will be) queued.
    It ends: every move is strictly later; a cap move lands on one of the
    finitely many `times[i] + cap.period`, each later than the last; and a
    quiet move lands outside the quiet hours, so only a cap move can bring the
    message back into them. Hence at most len(times) rounds move it by the
    cap, one more may move it out of the quiet hours, one finds it settled;
    the loop is bounded by that count all the same.
    """
    at, moves = moment, []
    window_times = sorted(times)
    for _round in range(len(window_times) + 3):
        moved = False
        until = quiet.end_after(at, zone) if quiet is not None else None
        if until is not None and until > at:
            moves.append(Move(QUIET_HOURS, until, send_reasons.quiet_hours(quiet, zone.key)))
            at, moved = until, True
        until = cap_until(cap, window_times, at) if cap is not None else None
        if until is not None and until > at:
            moves.append(Move(FREQUENCY_CAP, until, send_reasons.frequency_cap(cap)))
            at, moved = until, True
        if not moved:
            break
    return Slot(at, tuple(moves))


# --- the exemption a transactional message may carry ----------------------------------------

# A transactional message whose meta says `"quiet_hours": "ignore"` goes in the quiet hours too (an order or
# pickup notice a person is waiting for); the workflows plugin writes it for a send step that says so.
QUIET_HOURS_META, IGNORE_QUIET_HOURS = "quiet_hours", "ignore"


def ignores_quiet_hours(purpose: str, meta: Mapping[str, Any] | None) -> bool:
    """Whether a message may go in the quiet hours: only a transactional one that asks to.

    Advertising never may, whatever its meta says: the check is here, where
    every message passes, so a hand-made outbox row cannot buy an exemption
    by its meta alone.
    """
    return purpose == consent.TRANSACTIONAL and (meta or {}).get(QUIET_HOURS_META) == IGNORE_QUIET_HOURS


# --- the send rules (check_send) ------------------------------------------------------------

_m = messages_t.c
# Built once: asked for every non-transactional message a dispatch sends. Only messages queued
# before this one count, so of several waiting for one contact the oldest go first. The statuses
# not counted are spelt out (not NOT IN of a list): an expanding list is re-rendered at each run.
_COUNTED_BEFORE = (select(_m.created_at).where(
    _m.contact_id == bindparam("contact_id"), _m.id < bindparam("message_id"), _m.purpose != consent.TRANSACTIONAL,
    *(_m.status != s for s in NOT_COUNTED), _m.created_at > bindparam("since", type_=_m.created_at.type))
    .order_by(_m.created_at))


def limits_rule(conn: Connection, settings: Settings, message: Outgoing, now: dt.datetime) -> Verdict | None:
    """Hold a message until the first moment outside the contact's quiet hours that the frequency cap allows.

    Quiet hours are read in the contact's own zone; the cap counts the
    non-transactional messages the contact has queued before this one, so of
    several waiting for one contact the oldest go first.
    """
    if message.contact_id is None:
        return None
    limits = load(settings)
    window = None if ignores_quiet_hours(message.purpose, message.meta) else limits.quiet(message.channel)
    cap = limits.frequency_cap if message.purpose != consent.TRANSACTIONAL else None
    if window is None and cap is None:
        return None
    zone = _zone(conn, settings, message.contact_id) if window is not None else settings.tz
    if cap is None:
        return _verdict(first_allowed(now, quiet=window, zone=zone, cap=None, times=()))
    since = now - cap.period
    times = _counted_in_batch(conn, message, since)
    slot = first_allowed(now, quiet=window, zone=zone, cap=cap, times=times if times is not None else
                         _counted_before(conn, message, since))
    if times is not None and slot.moved_by(FREQUENCY_CAP) is not None:
        # Held on the batch read: asked again alone, as a message before it may have failed since.
        slot = first_allowed(now, quiet=window, zone=zone, cap=cap, times=_counted_before(conn, message, since))
    return _verdict(slot)


def _verdict(slot: Slot) -> Verdict | None:
    return Verdict.defer(slot.at, slot.reason) if slot.moves else None


def _counted_before(conn: Connection, message: Outgoing, since: dt.datetime) -> list[dt.datetime]:
    """When the contact's counted messages queued before this one were queued (within the window)."""
    return list(conn.execute(_COUNTED_BEFORE, {"contact_id": message.contact_id, "message_id": message.id,
                                               "since": since}).scalars())


# The same question for every contact of a claimed batch at once: the messages counted for any of them,
# queued before the batch's last message. Run once per batch, so the expanding list costs nothing.
_COUNTED_FOR_BATCH = (select(_m.contact_id, _m.id, _m.created_at).where(
    _m.contact_id.in_(bindparam("contact_ids", expanding=True)), _m.id < bindparam("below"),
    _m.purpose != consent.TRANSACTIONAL, *(_m.status != s for s in NOT_COUNTED),
    _m.created_at > bindparam("since", type_=_m.created_at.type)))
_COUNTED = rules.BATCH_FACTS + "counted"


@dataclass(frozen=True)
class _Counted:
    since: dt.datetime
    below: int
    contacts: frozenset[int]
    times: Mapping[int, list[tuple[int, dt.datetime]]]


def _counted_in_batch(conn: Connection, message: Outgoing, since: dt.datetime) -> list[dt.datetime] | None:
    """`_counted_before` for a message of the batch in hand, from one read for the whole batch; None: not known.

    Why a read up to one batch old counts the same messages as a read now: the cap
    counts the contact's messages queued *before* this one that did not fail or get
    suppressed. New messages get higher ids, so none can join that set later; one that
    is sent meanwhile still counts; one that fails or is suppressed meanwhile counts
    less, so the batch read can only hold a message that might go, never let one go
    that the cap would hold, and a message it holds is asked again alone (above). The
    window only shrinks as the clock moves on: its start is applied here per message.
    Two changes made by hand while a batch is sent are counted from the next batch on:
    a merge that moves another contact's messages onto this one (the message in hand
    names the contact it was queued for either way), and a failed message a person
    queues again (outbox.resolve, "requeue").
    """
    batch = rules.batch_of(conn)
    if not batch or message.contact_id is None:
        return None
    counted: _Counted | None = conn.info.get(_COUNTED)
    if counted is None:
        contacts = frozenset(m.contact_id for m in batch if m.contact_id is not None)
        below = max(m.id for m in batch) + 1
        found: dict[int, list[tuple[int, dt.datetime]]] = {}
        for part in chunks(sorted(contacts), 500):
            for contact_id, message_id, created_at in conn.execute(
                    _COUNTED_FOR_BATCH, {"contact_ids": part, "below": below, "since": since}).all():
                found.setdefault(contact_id, []).append((message_id, created_at))
        counted = conn.info[_COUNTED] = _Counted(since, below, contacts, found)
    if message.contact_id not in counted.contacts or message.id >= counted.below or since < counted.since:
        return None
    return [at for message_id, at in counted.times.get(message.contact_id, ()) if message_id < message.id
            and at > since]


_ZONES = rules.BATCH_FACTS + "zones"


def _zone(conn: Connection, settings: Settings, contact_id: int) -> ZoneInfo:
    """The contact's time zone; in a dispatch, read once for every contact of the batch.

    A zone comes from the contact's own setting or phone, not from anything
    the person answered, so reading it up to one batch early changes nothing
    a promise is made about (consent is asked again as each message is
    handed over, hub.consent; the cap's batch read is `_counted_in_batch`).
    """
    zones = conn.info.get(_ZONES)
    if zones is None or contact_id not in zones:
        batch = {m.contact_id for m in rules.batch_of(conn) if m.contact_id is not None}
        zones = localtime.contact_zones(conn, settings, batch | {contact_id})
        if contact_id in batch:
            conn.info[_ZONES] = zones
    return zones.get(contact_id, settings.tz)


@hookimpl
def check_send(conn: Connection, settings: Settings, message: Outgoing, now: dt.datetime) -> Verdict | None:
    return limits_rule(conn, settings, message, now)
