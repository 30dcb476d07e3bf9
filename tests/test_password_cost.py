"""Passwords are stored at scrypt's full cost; the cheap cost the test suite uses never reaches production.

tests/conftest.py lowers `hub.users.PASSWORD_METHOD` for speed, so what production
uses is read in a fresh interpreter, where nothing has lowered it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from hub import users
from hub.models import User
from hub.testing import CHEAP_PASSWORD_METHOD
from tests.conftest import PRODUCTION_PASSWORD_METHOD, TEST_PASSWORD_METHOD, HubDB
from tests.processes import ROOT, hub_env

pytest_plugins = ("pytester",)


def scrypt_cost(method: str) -> tuple[int, int, int]:
    name, n, r, p = method.split(":")
    assert name == "scrypt", method
    return int(n), int(r), int(p)


def test_production_hashes_with_scrypt_at_full_cost() -> None:
    found = subprocess.run([sys.executable, "-c", "from hub import users; print(users.PASSWORD_METHOD)"],
                           env=hub_env(), cwd=ROOT, capture_output=True, text=True, check=True)
    method = found.stdout.strip()
    n, r, p = scrypt_cost(method)
    assert n >= 2**15 and r >= 8 and p >= 1  # werkzeug's default, about a tenth of a second a hash
    assert method == PRODUCTION_PASSWORD_METHOD


def test_the_suite_hashes_cheaply_with_the_same_algorithm(hub_db: HubDB) -> None:
    assert users.PASSWORD_METHOD == TEST_PASSWORD_METHOD
    assert scrypt_cost(TEST_PASSWORD_METHOD) < scrypt_cost(PRODUCTION_PASSWORD_METHOD)
    with hub_db.engine.begin() as conn:
        users.add(conn, "cheap@shop.example", "viewer", "a test password 1")
    with hub_db.engine.connect() as conn:
        stored = conn.execute(select(User.password_hash).where(User.email == "cheap@shop.example")).scalar_one()
    assert stored.startswith(TEST_PASSWORD_METHOD + "$")
    assert users.authenticate(hub_db.engine, "cheap@shop.example", "a test password 1", address="192.0.2.1")


def test_a_hash_keeps_its_own_cost_whatever_new_hashes_use(hub_db: HubDB) -> None:
    """A hash made at production's cost is still checked at that cost: the method only applies to new hashes."""
    with hub_db.engine.begin() as conn:
        account = users.add(conn, "strong@shop.example", "viewer", "a test password 2")
        conn.execute(User.__table__.update().where(User.id == account.id).values(
            password_hash=generate_password_hash("a test password 2", method=PRODUCTION_PASSWORD_METHOD)))
    assert users.authenticate(hub_db.engine, "strong@shop.example", "a test password 2", address="192.0.2.2")
    with pytest.raises(users.LoginRefused):
        users.authenticate(hub_db.engine, "strong@shop.example", "a wrong password", address="192.0.2.2")


def test_a_plugin_authors_fixtures_hash_cheaply_and_put_the_full_cost_back(pytester: pytest.Pytester) -> None:
    """hub.testing lowers the cost for its own fixtures, in a plugin's suite where no conftest of Hub's does."""
    pytester.makepyfile(test_plugin=textwrap.dedent(f"""
        from hub import users
        from hub.testing import CHEAP_PASSWORD_METHOD

        PRODUCTION = users.PASSWORD_METHOD  # read before any fixture ran


        def test_production_cost_before():
            assert PRODUCTION == {PRODUCTION_PASSWORD_METHOD!r}


        def test_admin_users_are_hashed_cheaply(hub_admin, hub_database):
            viewer = hub_admin.signed_in_as("viewer").user
            for user in (hub_admin.user, viewer):
                stored = hub_database.scalar("SELECT password_hash FROM users WHERE id = :id", id=user.id)
                assert stored.startswith(CHEAP_PASSWORD_METHOD + "$")


        def test_the_full_cost_is_back_after_the_test():
            assert users.PASSWORD_METHOD == PRODUCTION
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
    assert scrypt_cost(CHEAP_PASSWORD_METHOD) < scrypt_cost(PRODUCTION_PASSWORD_METHOD)
