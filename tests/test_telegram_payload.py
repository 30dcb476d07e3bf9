"""The deep-link start payload: fits Telegram's 64 characters of A-Z a-z 0-9 _ -, and only Hub's own verify."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import pytest

from hub.config import Settings
from plugins.telegram import payload

SETTINGS = Settings(secret_key="s" * 32)
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("contact_id", [1, 42, 2**31 - 1, 10**15])
def test_a_payload_fits_telegram_and_reads_back(contact_id: int) -> None:
    made = payload.make(SETTINGS, contact_id, now=NOW)
    assert len(made) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", made)
    assert payload.read(SETTINGS, made, max_days=30, now=NOW) == contact_id
    assert payload.deep_link("hub_shop_bot", made) == f"https://t.me/hub_shop_bot?start={made}"


def _forged(made: str) -> list[str]:
    flip = "A" if made[-1] != "A" else "B"
    body, day, signature = made.split("-", 2)
    other_contact = payload.make(SETTINGS, 43, now=NOW).split("-")[0]
    return [
        made[:-1] + flip,                      # one character of the signature changed
        made[:-3],                             # truncated
        f"{other_contact}-{day}-{signature}",  # another person's id under this signature
        made + "A",                            # one character too many
        "x" * 65,                              # oversized
        "",                                    # empty
        made.replace(made[0], "я", 1),         # non-ASCII
        made.upper(),                          # case matters
        "1-1-" + "٣" * 22,                     # Arabic-Indic digits are not ASCII
        "../../etc/passwd",
    ]


def test_forged_truncated_oversized_and_non_ascii_payloads_are_refused() -> None:
    made = payload.make(SETTINGS, 42, now=NOW)
    for bad in _forged(made):
        with pytest.raises(payload.PayloadError):
            payload.read(SETTINGS, bad, max_days=30, now=NOW)


def test_another_hubs_secret_and_an_old_link_are_refused() -> None:
    made = payload.make(SETTINGS, 42, now=NOW)
    with pytest.raises(payload.PayloadError):
        payload.read(replace(SETTINGS, secret_key="t" * 32), made, max_days=30, now=NOW)
    with pytest.raises(payload.PayloadError, match="too old"):
        payload.read(SETTINGS, made, max_days=30, now=NOW + dt.timedelta(days=31))
    assert payload.read(SETTINGS, made, max_days=30, now=NOW + dt.timedelta(days=30)) == 42
    with pytest.raises(payload.PayloadError):  # made "in the future": not ours
        payload.read(SETTINGS, payload.make(SETTINGS, 42, now=NOW + dt.timedelta(days=5)), max_days=30, now=NOW)


def test_non_text_is_refused() -> None:
    with pytest.raises(payload.PayloadError):
        payload.read(SETTINGS, None, max_days=30)  # type: ignore[arg-type]
