"""Sign-in limits hold when guesses arrive all at once, on SQLite and PostgreSQL.

Each guess is its own client (its own session and CSRF token) posting at the
same moment from its own thread: through Flask's test client, where the
password checks are counted where they happen, and at a real `hub admin`
process, where the audit log tells how many guesses were tried.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from hub import users
from hub.models import AuditEntry
from tests.conftest import HubDB
from tests.support.admin import PASSWORD, AdminEnv, csrf_token
from tests.support.server import RunningAdmin

pytestmark = pytest.mark.both_databases  # sign-in locks (advisory locks on PostgreSQL)


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password check made, in order (one entry per check)."""
    made: list[str] = []
    lock = threading.Lock()
    real = users.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        with lock:
            made.append(password)
        return real(pwhash, password)

    monkeypatch.setattr(users, "check_password_hash", counting)
    return made


def guess_at_once(env: AdminEnv, attempts: list[tuple[str, str]], address: str) -> list[Any]:
    """Post every (email, password) to /login from its own client, released together."""
    clients = [env.app.test_client() for _ in attempts]
    tokens = [csrf_token(c) for c in clients]
    start = threading.Barrier(len(attempts))

    def post(i: int) -> Any:
        email, password = attempts[i]
        start.wait()
        return clients[i].post("/login", data={"email": email, "password": password, "csrf_token": tokens[i]},
                               environ_base={"REMOTE_ADDR": address})

    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        return list(pool.map(post, range(len(attempts))))


def failures(env: AdminEnv, **where: str) -> int:
    q = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == users.LOGIN_FAILED)
    if "actor" in where:
        q = q.where(AuditEntry.actor == where["actor"])
    with env.engine.connect() as conn:
        return conn.execute(q).scalar_one()


def said(answers: list[Any], phrase: str) -> int:
    return sum(phrase in a.get_data(as_text=True) for a in answers)


def test_parallel_guesses_at_one_account_are_checked_at_most_the_limit(admin_env: AdminEnv,
                                                                      checked: list[str]) -> None:
    limit = users.MAX_FAILURES_PER_ACCOUNT
    answers = guess_at_once(admin_env, [("admin@shop.example", f"guess number {n}") for n in range(15)], "10.0.0.7")
    assert all(a.status_code == 401 for a in answers)
    assert len(checked) == limit
    assert said(answers, "Неверный email или пароль") == limit
    assert said(answers, "Слишком много неудачных попыток входа в эту учётную запись") == 15 - limit
    assert failures(admin_env, actor="admin@shop.example") == limit
    # The right password now waits for the window, like any other guess.
    refused = guess_at_once(admin_env, [("admin@shop.example", PASSWORD)], "10.0.0.8")
    assert "Слишком много неудачных попыток входа в эту учётную запись" in refused[0].get_data(as_text=True)


def test_parallel_guesses_from_one_address_are_checked_at_most_the_limit(admin_env: AdminEnv,
                                                                        checked: list[str]) -> None:
    limit = users.MAX_FAILURES_PER_ADDRESS
    attempts = [(f"nobody{n}@shop.example", "guess") for n in range(limit + 10)]
    answers = guess_at_once(admin_env, attempts, "10.1.2.3")
    assert len(checked) == limit
    assert said(answers, "Слишком много неудачных попыток входа с вашего адреса") == 10
    assert failures(admin_env) == limit


def test_a_right_password_among_parallel_guesses_signs_in_once_and_is_logged_as_a_sign_in(
        admin_env: AdminEnv, checked: list[str]) -> None:
    attempts = [("marketer@shop.example", PASSWORD)] + [("marketer@shop.example", "wrong guess")] * 2
    answers = guess_at_once(admin_env, attempts, "10.0.0.9")
    assert [a.status_code for a in answers] == [302, 401, 401]
    with admin_env.engine.connect() as conn:
        actions = conn.execute(select(AuditEntry.action).where(AuditEntry.actor == "marketer@shop.example")
                               .order_by(AuditEntry.action)).scalars().all()
    assert actions == ["login", "login_failed", "login_failed"]
    assert len(checked) == 3


def test_parallel_guesses_at_a_running_hub_admin_are_checked_at_most_the_limit(running_admin: RunningAdmin,
                                                                              hub_db: HubDB) -> None:
    with hub_db.engine.begin() as conn:
        users.add(conn, "boss@shop.example", "admin", PASSWORD)
    limit, tries = users.MAX_FAILURES_PER_ACCOUNT, 15
    sessions = [requests.Session() for _ in range(tries)]
    tokens = [re.search(r'<meta name="csrf-token" content="([^"]+)"', s.get(running_admin.url + "/login",
                                                                              timeout=30).text).group(1)
              for s in sessions]
    start = threading.Barrier(tries)

    def post(i: int) -> str:
        start.wait()
        return sessions[i].post(running_admin.url + "/login", timeout=120, data={
            "email": "boss@shop.example", "password": f"guess {i}", "csrf_token": tokens[i]}).text

    with ThreadPoolExecutor(max_workers=tries) as pool:
        pages = list(pool.map(post, range(tries)))
    assert sum("Неверный email или пароль" in p for p in pages) == limit
    assert sum("Слишком много неудачных попыток входа в эту учётную запись" in p for p in pages) == tries - limit
    with hub_db.engine.connect() as conn:
        tried = conn.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.actor == "boss@shop.example", AuditEntry.action == users.LOGIN_FAILED)).scalar_one()
    assert tried == limit
