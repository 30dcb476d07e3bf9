"""Secrets of connected systems (webhook codes, OAuth tokens), encrypted at rest.

Encrypted with a key derived from HUB_SECRET_KEY, which lives in hub.toml or
the environment, not in the database: a stolen database file alone gives away
no CRM access. Each write bumps a version so a token refresh can tell whether
another worker refreshed first.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Connection, select, update

from hub.db import insert_for, utcnow
from hub.i18n import gettext as _
from hub.models import Credential

credentials_t = Credential.__table__


class CredentialError(RuntimeError):
    """Stored secrets cannot be read; the message never contains them."""


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"hub-credentials:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(secret_key: str, data: bytes) -> bytes:
    """`data` encrypted (and authenticated) with the key derived from HUB_SECRET_KEY, for other secrets at rest."""
    return _fernet(secret_key).encrypt(data)


def unseal(secret_key: str, token: bytes) -> bytes:
    """What `seal` encrypted; CredentialError when HUB_SECRET_KEY is not the one it was sealed with."""
    try:
        return _fernet(secret_key).decrypt(token)
    except InvalidToken:
        raise CredentialError("sealed with another HUB_SECRET_KEY") from None


def save(conn: Connection, name: str, data: dict[str, Any], secret_key: str) -> int:
    """Store (or replace) the secrets called `name`; returns the new version."""
    token = _fernet(secret_key).encrypt(json.dumps(data).encode())
    current = conn.execute(select(credentials_t.c.version).where(credentials_t.c.name == name)).scalar()
    if current is None:
        ins = insert_for(conn, credentials_t)
        conn.execute(ins.on_conflict_do_nothing(index_elements=["name"]),
                     {"name": name, "secret": token, "version": 1, "updated_at": utcnow()})
        return 1
    conn.execute(update(credentials_t).where(credentials_t.c.name == name)
                 .values(secret=token, version=current + 1, updated_at=utcnow()))
    return current + 1


def load(conn: Connection, name: str, secret_key: str, *,
         for_update: bool = False) -> tuple[dict[str, Any], int] | None:
    """The secrets called `name` and their version, or None; `for_update` locks the row (PostgreSQL)."""
    q = select(credentials_t.c.secret, credentials_t.c.version).where(credentials_t.c.name == name)
    if for_update:
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        return None
    try:
        data = json.loads(_fernet(secret_key).decrypt(row.secret))
    except InvalidToken:
        raise CredentialError(_("credentials %(name)r cannot be decrypted: HUB_SECRET_KEY differs from the one "
                                "they were saved with; connect again", name=name)) from None
    return data, row.version


def delete(conn: Connection, name: str) -> bool:
    """Forget the secrets called `name` (a half-finished connection, say); False if there were none."""
    return conn.execute(credentials_t.delete().where(credentials_t.c.name == name)).rowcount > 0


def redact(data: dict[str, Any]) -> dict[str, Any]:
    """A copy fit for logs and `--json` output: values replaced by their length."""
    return {k: (f"<{len(str(v))} chars>" if v else v) for k, v in data.items()}


def lock(conn: Connection, name: str) -> bool:
    """Hold the row called `name` until this transaction ends; False if there is no such row.

    A no-op update is a write lock on both databases: a row lock on
    PostgreSQL, the database write lock on SQLite. Token refreshes take it so
    that of several workers finding the same expired token, one refreshes and
    the others then read the new token.
    """
    result = conn.execute(update(credentials_t).where(credentials_t.c.name == name)
                          .values(version=credentials_t.c.version))
    return result.rowcount > 0
