"""How many confirmation letters a public signup may cause: per address and per client.

Anyone can type anyone's address into a form, so without a limit a form is a
way to flood a stranger's mailbox (or to spend the business's sending
reputation). Each letter takes a slot from two leaky buckets (hub.ratelimit),
one for the address and one for the client's IP; a signup that finds either
empty sends nothing and gets a polite page. With HUB_REDIS_URL the buckets
live in Redis and every process shares them; otherwise one process keeps
them, bounded in number so that a stream of made-up addresses cannot grow it
without end.

Settings ([gdpr] in hub.toml, or HUB_GDPR_*): `confirmations_per_address`
(letters per hour to one address, default 3) and `confirmations_per_client`
(letters per hour caused from one IP, default 20).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from hub.api import Settings, SettingsError
# not in hub.api on purpose: the public forms' limits use the limiter's buckets directly
from hub.ratelimit import LocalBucket, RedisBucket
from plugins.gdpr import config

HOUR = 3600.0
PER_ADDRESS, PER_CLIENT = 3, 20
MAX_LOCAL_BUCKETS = 20_000

_local: OrderedDict[tuple[str, int], LocalBucket] = OrderedDict()
_lock = threading.Lock()


def per_hour(settings: Settings, key: str, default: int) -> int:
    raw = config.value(settings, key, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"[gdpr] {key} (HUB_GDPR_{key.upper()}): {raw!r} is not a whole number") from None
    if value < 1:
        raise SettingsError(f"[gdpr] {key} (HUB_GDPR_{key.upper()}): must be at least 1")
    return value


def _bucket(settings: Settings, key: str, per_hour_: int) -> LocalBucket | RedisBucket:
    if settings.redis_url:
        from hub.api import redis_connection

        return RedisBucket(redis_connection(settings), key, per_hour_ / HOUR, per_hour_)
    with _lock:
        bucket = _local.get((key, per_hour_))
        if bucket is None:
            bucket = _local[(key, per_hour_)] = LocalBucket(per_hour_ / HOUR, per_hour_)
            while len(_local) > MAX_LOCAL_BUCKETS:
                _local.popitem(last=False)
        else:
            _local.move_to_end((key, per_hour_))
        return bucket


def _key(settings: Settings, kind: str, value: str) -> str:
    # Keyed, so neither Redis nor a memory dump holds the address or the IP itself.
    digest = hashlib.sha256(f"{settings.require_secret_key()}\x1f{kind}\x1f{value}".encode()).hexdigest()
    return f"gdpr-confirm:{kind}:{digest[:40]}"


def take(settings: Settings, address: str, client: str | None) -> bool:
    """Take one letter's slot for this address and client; False (nothing taken for the address) when over a limit."""
    per_address = per_hour(settings, "confirmations_per_address", PER_ADDRESS)
    per_client = per_hour(settings, "confirmations_per_client", PER_CLIENT)
    if client and _bucket(settings, _key(settings, "client", client), per_client).delay() > 0:
        return False
    return _bucket(settings, _key(settings, "address", address), per_address).delay() == 0


def reset() -> None:
    """Forget the in-process buckets (tests)."""
    with _lock:
        _local.clear()
