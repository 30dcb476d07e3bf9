"""Sending politely per destination domain: no more letters a second (minute, hour) than a provider takes well.

Mail.ru, Yandex and Gmail count what arrives from a sender; a campaign
poured in at full speed meets 421 "try again later" answers and, worse, the
spam folder. So each destination gets a pace, set as
HUB_MAIL_DOMAIN_RATES="mail.ru=10/s, yandex.ru=20/s, gmail.com=20/s, *=5/s"
or as a table in hub.toml (`[mailing.domain_rates]`, "mail.ru" = "20/s").
Nothing is limited unless set: a shop sending through a relay that paces
for it (Unisender, SendPulse) should not be slowed twice.

- One provider's domains share one pace: bk.ru and inbox.ru are the same
  Mail.ru servers (GROUPS). Naming any of them sets the group's pace.
- `*` is the pace of every other domain, each on its own: two small
  providers do not slow each other down.
- The pace is a GCRA bucket with no burst (hub.api.limiter: in Redis when
  HUB_REDIS_URL is set, shared by every worker on every host; else by this
  process's threads). Letters to a group are at least period/N apart, so any
  N+1 in a row span at least the period: never more than N in any window of
  that length, a sliding window that also spreads them out evenly.
- A letter whose domain has no slot free now is held (a hold Verdict) until
  its turn, and the dispatcher goes on with other domains' letters. Held
  letters are given turns one interval apart, so they come back one by one
  rather than all at once. They go with the next dispatch after their turn
  (the scheduler's, every 30 seconds), which may find many due at once: a
  letter back from a hold waits up to MAX_WAIT_S for its slot instead of
  being held again, so that dispatch sends them at the domain's pace.
- A slot is taken when the rule is asked; when another rule then holds or
  skips the letter, that slot goes unused. That errs on the slow side only.
- Transactional mail (an order, a password) is never held here: it takes a
  slot when one is free and goes anyway when none is.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

from hub.api import (TRANSACTIONAL, N_, Outgoing, ReasonShape, Settings, SettingsError, Verdict, format_number,
                     gettext, limiter, ngettext, redis_connection, utcnow)

CHANNEL = "email"
ENV_NAME = "HUB_MAIL_DOMAIN_RATES"
OTHERS = "*"

# A provider's domains, first the one its group is known by. Their servers and their reputation
# of a sender are one, so one pace serves them all.
GROUPS: dict[str, tuple[str, ...]] = {
    "mail.ru": ("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru", "my.com"),
    "yandex.ru": ("yandex.ru", "ya.ru", "yandex.com", "yandex.by", "yandex.kz", "yandex.ua", "narod.ru"),
    "gmail.com": ("gmail.com", "googlemail.com"),
}
GROUP_OF: dict[str, str] = {domain: name for name, domains in GROUPS.items() for domain in domains}

_PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}
_RATE = re.compile(r"^\s*(\d{1,7})\s*/\s*([a-z]+)\s*$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_OFF = ("none", "off", "no")
# A held letter back for its turn waits this long at most for its slot before it is held again.
MAX_WAIT_S = 1.0
# How long after its turn a held letter is still known as one (a dispatch may find it due later).
HELD_MEMORY_S = 3600


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` letters in any `period` seconds."""

    count: int
    period: int

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        unit = {1: "s", 60: "min", 3600: "h"}[self.period]
        return f"{self.count}/{unit}"


@dataclass(frozen=True)
class DomainRates:
    """The paces in force: per group or domain (`rates`), and for every other domain (`others`)."""

    rates: Mapping[str, Rate | None]
    others: Rate | None = None

    def for_domain(self, domain: str) -> tuple[str, Rate] | None:
        """The bucket a domain draws from (its group's name, or the domain itself) and its pace."""
        key = GROUP_OF.get(domain, domain)
        if key in self.rates:
            rate = self.rates[key]
        else:
            rate = self.others
        return None if rate is None else (key, rate)


def parse_rate(raw: Any) -> Rate | None:
    """"20/s", "1200/min", "3000/h" → a Rate; "none" → no limit. ValueError saying how to write one."""
    text = str(raw).strip().lower() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
    if text in _OFF:
        return None
    m = _RATE.match(text) if text is not None else None
    if m is None or m.group(2) not in _PERIODS:
        raise ValueError(gettext("%(value)r is not a pace; write letters/period, e.g. 20/s, 600/min or "
                                 "3000/h, or none", value=raw))
    count = int(m.group(1))
    if count < 1:
        raise ValueError(gettext("%(value)r: the number of letters must be at least 1", value=raw))
    return Rate(count, _PERIODS[m.group(2)])


def _domain_key(raw: Any) -> str:
    domain = str(raw).strip().lower().rstrip(".") if isinstance(raw, str) else ""
    if domain == OTHERS:
        return domain
    if not _DOMAIN.match(domain):
        raise ValueError(gettext("%(value)r is not a mail domain (e.g. mail.ru, or * for every other)",
                                 value=raw))
    return GROUP_OF.get(domain, domain)


def parse(raw: Any, name: str = ENV_NAME) -> DomainRates | None:
    """The setting's text ("mail.ru=20/s, *=50/s") or table; None when empty. SettingsError naming the bad part."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, Mapping):
        pairs = [(k, v) for k, v in raw.items()]
    elif isinstance(raw, str):
        if len(raw) > 10_000:
            raise SettingsError(gettext("%(name)s: too long to be a list of paces", name=name))
        pairs = []
        for part in re.split(r"[,;\n]", raw):
            if not part.strip():
                continue
            domain, sep, value = part.partition("=")
            if not sep:
                raise SettingsError(gettext("%(name)s: %(part)r is not domain=pace, e.g. mail.ru=20/s",
                                            name=name, part=part.strip()))
            pairs.append((domain, value))
    else:
        raise SettingsError(gettext("%(name)s: write it as domain=pace pairs, e.g. mail.ru=20/s, *=50/s",
                                    name=name))
    rates: dict[str, Rate | None] = {}
    others: Rate | None = None
    written: dict[str, str] = {}
    for domain, value in pairs:
        try:
            key = _domain_key(domain)
            rate = parse_rate(value)
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from None
        shown = str(domain).strip().lower()
        if key in written:
            raise SettingsError(gettext("%(name)s: %(domain)s and %(other)s are the same provider; give its pace "
                                        "once", name=name, domain=written[key], other=shown)
                                if written[key] != shown else
                                gettext("%(name)s: %(domain)s is given twice", name=name, domain=shown))
        written[key] = shown
        if key == OTHERS:
            others = rate
        else:
            rates[key] = rate
    return DomainRates(rates, others)


def _raw_setting(settings: Settings) -> tuple[Any, str]:
    """The variable when set (the environment wins over hub.toml, as for every setting), else the table."""
    table = settings.extra.get("mailing")
    if settings.extra.get("mail_domain_rates") is None and isinstance(table, Mapping) \
            and table.get("domain_rates") is not None:
        return table["domain_rates"], "[mailing] domain_rates"
    return settings.extra.get("mail_domain_rates"), ENV_NAME


_loaded: tuple[Settings, DomainRates | None] | None = None


def load(settings: Settings) -> DomainRates | None:
    """The paces in force (None: none set), read once per Settings object: the rule runs for every letter."""
    global _loaded
    found = _loaded
    if found is None or found[0] is not settings:
        raw, name = _raw_setting(settings)
        found = _loaded = (settings, parse(raw, name))
    return found[1]


def domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.rsplit("@", 1)[1].strip().lower().rstrip(".") or None


# --- the reason a letter waits, as the message log shows it ------------------------------------

def _say(values: Mapping[str, str]) -> str:
    count, _sep, unit = values["rate"].partition("/")
    try:
        number = int(count)
    except ValueError:
        return gettext("sending pace for %(domain)s: %(rate)s", domain=values["domain"], rate=values["rate"])
    shown = format_number(number)
    if unit == "s":
        return ngettext("sending pace for %(domain)s: at most %(num)s letter a second",
                        "sending pace for %(domain)s: at most %(num)s letters a second", number,
                        domain=values["domain"], num=shown)
    if unit == "min":
        return ngettext("sending pace for %(domain)s: at most %(num)s letter a minute",
                        "sending pace for %(domain)s: at most %(num)s letters a minute", number,
                        domain=values["domain"], num=shown)
    return ngettext("sending pace for %(domain)s: at most %(num)s letter an hour",
                    "sending pace for %(domain)s: at most %(num)s letters an hour", number,
                    domain=values["domain"], num=shown)


DOMAIN_RATE = ReasonShape("domain rate %(rate)s for %(domain)s", N_("sending pace for %(domain)s: %(rate)s"),
                          say=_say)


# --- the rule ------------------------------------------------------------------------------------

class _Turns:
    """When the letters this process held for one bucket come back: one interval apart, after the last."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def next(self, key: str, earliest: float, interval: float) -> float:
        with self._lock:
            turn = max(self._last.get(key, 0.0) + interval, earliest)
            self._last[key] = turn
            return turn


_turns = _Turns()
_buckets: dict[tuple[str, Rate], tuple[Settings, Any]] = {}


def _bucket(settings: Settings, key: str, rate: Rate) -> Any:
    """One limiter per bucket and Settings, built once (a Redis bucket registers its script)."""
    found = _buckets.get((key, rate))
    if found is None or found[0] is not settings:
        if len(_buckets) > 10_000:  # many one-off domains: start afresh rather than grow without end
            _buckets.clear()
        found = _buckets[(key, rate)] = (settings, limiter(settings, f"mail-domain:{key}", rate.per_second, 1))
    return found[1]


class _Held:
    """The letters this rule held: when one is back, its turn has come and it may wait a moment for its slot.

    In Redis when configured (a worker runs each dispatch job in a process of
    its own, so only Redis remembers), else in this process.
    """

    def __init__(self) -> None:
        self._ids: dict[int, float] = {}
        self._redis: tuple[Settings, Any] | None = None
        self._lock = threading.Lock()

    def _client(self, settings: Settings) -> Any:
        found = self._redis
        if found is None or found[0] is not settings:
            found = self._redis = (settings, redis_connection(settings))
        return found[1]

    def remember(self, settings: Settings, message_id: int, seconds: float) -> None:
        keep = int(seconds) + HELD_MEMORY_S
        if settings.redis_url:
            self._client(settings).set(f"hub:mail-held:{message_id}", 1, ex=keep)
            return
        with self._lock:
            if len(self._ids) > 100_000:
                clock = time.monotonic()
                self._ids = {k: v for k, v in self._ids.items() if v > clock}
            self._ids[message_id] = time.monotonic() + keep

    def returning(self, settings: Settings, message_id: int) -> bool:
        if settings.redis_url:
            return bool(self._client(settings).exists(f"hub:mail-held:{message_id}"))
        with self._lock:
            return self._ids.get(message_id, 0.0) > time.monotonic()


_held = _Held()


def _wait_for_slot(bucket: Any, wait: float) -> float:
    """Sleep until the slot frees and take it, for MAX_WAIT_S at most; what is left to wait (0: taken)."""
    deadline = time.monotonic() + MAX_WAIT_S
    while 0 < wait and time.monotonic() + wait <= deadline:
        time.sleep(wait)
        wait = bucket.delay()
    return wait


def rate_rule(settings: Settings, message: Outgoing, now: dt.datetime) -> Verdict | None:
    """Take a slot in the letter's domain bucket, or hold it until its turn.

    A letter this rule held before is back because its turn came: rather than
    hold it again, it waits (MAX_WAIT_S at most) for the slot. So the dispatch
    that finds held letters due, however seldom it runs, sends them at the
    domain's pace instead of one each time; a letter seen for the first time
    is held without waiting, so other domains' letters never queue behind it.
    """
    if message.channel != CHANNEL:
        return None
    rates = load(settings)
    if rates is None:
        return None
    domain = domain_of(message.address)
    found = rates.for_domain(domain) if domain else None
    if found is None:
        return None
    key, rate = found
    bucket = _bucket(settings, key, rate)
    wait = bucket.delay()
    if wait <= 0 or message.purpose == TRANSACTIONAL:
        return None
    if wait <= MAX_WAIT_S and _held.returning(settings, message.id):
        wait = _wait_for_slot(bucket, wait)
        if wait <= 0:
            return None
    clock = time.monotonic()
    turn = _turns.next(key, clock + wait, 1.0 / rate.per_second)
    _held.remember(settings, message.id, turn - clock)
    # From the clock, not `now` (the dispatch's start): a long batch would otherwise hold letters too briefly.
    # A dispatch replaying another time (`now` far from the clock) keeps its own time line.
    start = utcnow() if abs((utcnow() - now).total_seconds()) < 60 else now
    return Verdict.defer(start + dt.timedelta(seconds=turn - clock), DOMAIN_RATE(rate=rate, domain=key))
