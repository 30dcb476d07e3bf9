"""Secrets are encrypted at rest and never readable without the key."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hub import credentials
from hub.models import Credential
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # stored secrets (ON CONFLICT, row locks)


def test_saved_secrets_are_encrypted_and_versioned(hub_db: HubDB) -> None:
    key = hub_db.settings.secret_key
    with hub_db.engine.begin() as conn:
        assert credentials.save(conn, "bitrix24", {"webhook": "https://p.bitrix24.ru/rest/1/s3cr3tcode/"}, key) == 1
        assert credentials.save(conn, "bitrix24", {"webhook": "https://p.bitrix24.ru/rest/1/newcode42/"}, key) == 2
        raw = conn.execute(select(Credential.secret)).scalar_one()
        data, version = credentials.load(conn, "bitrix24", key)
    assert b"newcode42" not in raw and b"bitrix24.ru" not in raw
    assert data == {"webhook": "https://p.bitrix24.ru/rest/1/newcode42/"} and version == 2


def test_a_wrong_key_gives_a_clear_error_without_the_secret(hub_db: HubDB) -> None:
    with hub_db.engine.begin() as conn:
        credentials.save(conn, "amocrm", {"refresh_token": "def50200abc"}, hub_db.settings.secret_key)
        with pytest.raises(credentials.CredentialError) as info:
            credentials.load(conn, "amocrm", "another-key-entirely-0123456789")
    assert "HUB_SECRET_KEY не тот" in str(info.value) and "def50200" not in str(info.value)
    assert credentials.redact({"refresh_token": "def50200abc"}) == {"refresh_token": "<11 chars>"}
