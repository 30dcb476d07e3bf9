"""The signed tokens of unsubscribe, preference and confirmation links: what they carry and how they read.

Tokens go out in letters and come back months later, so their format is a
promise: a token made by itsdangerous's own URL-safe serializer (the way
tokens were made before Hub signed them without trying to compress) must
read, and a token Hub makes must read with that serializer.
"""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from hub import links
from hub.config import Settings, load_settings

SECRET = "link-secret-0123456789abcdef0123456789"


@pytest.fixture
def settings() -> Settings:
    return load_settings(environ={"HUB_SECRET_KEY": SECRET, "HUB_PLUGINS": ""}, config_path="/nonexistent")


@pytest.mark.parametrize("contact_id", [1, 987654321])
def test_a_token_reads_back_and_matches_itsdangerous_own(settings: Settings, contact_id: int) -> None:
    token = links.unsubscribe_token(settings, contact_id, "sms", "marketing")
    target = links.read_unsubscribe(settings, token)
    assert (target.contact_id, target.channel, target.purpose) == (contact_id, "sms", "marketing")
    plain = URLSafeTimedSerializer(SECRET, salt=links._UNSUBSCRIBE)
    assert plain.loads(token) == [contact_id, "sms", "marketing"]
    # The payload part (before the timestamp and signature) is what itsdangerous itself would write.
    assert token.split(".")[0] == plain.dumps([contact_id, "sms", "marketing"]).split(".")[0]


def test_a_compressed_token_still_reads(settings: Settings) -> None:
    # itsdangerous compresses a payload that zlib shortens and marks it with a leading ".".
    purpose = "marketing-" + "x" * 200
    old = URLSafeTimedSerializer(SECRET, salt=links._UNSUBSCRIBE).dumps([42, "email", purpose])
    assert old.startswith(".")
    target = links.read_unsubscribe(settings, old)
    assert (target.contact_id, target.purpose) == (42, purpose)
    assert not links.unsubscribe_token(settings, 42, "email", purpose).startswith(".")


def test_the_whole_token_is_itsdangerous_own_and_an_older_key_still_reads(settings: Settings,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Hub keeps one signer and its derived key per serializer; the bytes must not change for that.
    from itsdangerous.timed import TimestampSigner

    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_796_000_000)
    plain = URLSafeTimedSerializer(SECRET, salt=links._UNSUBSCRIBE)
    for contact_id in (1, 2, 987654321):
        assert links.unsubscribe_token(settings, contact_id) == plain.dumps([contact_id, "email", "marketing"])
    rotated = links._Serializer(["old-secret-0123456789abcdef0123", SECRET], salt=links._UNSUBSCRIBE)
    old = URLSafeTimedSerializer("old-secret-0123456789abcdef0123", salt=links._UNSUBSCRIBE).dumps([7, "sms", "x"])
    assert rotated.loads(old) == [7, "sms", "x"]
    assert plain.loads(rotated.dumps([8, "email", "y"])) == [8, "email", "y"]
