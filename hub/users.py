"""The people who may use the admin: their roles, passwords, and limits on guessing them.

Three roles, each including the one below it: a viewer reads everything the
admin shows and changes nothing; a marketer also edits contacts, segments,
templates and workflows; an admin also connects CRMs, handles GDPR requests
and manages users. Passwords are stored only as werkzeug hashes.

Sign-ins are rate-limited from the audit log, so the limit holds across every
process serving the admin and survives restarts: too many failures for one
account, or from one address, within WINDOW refuse further attempts (even a
right password) until the window has passed. Every sign-in, failed or not, is
an audit entry; when an employee leaves, `deactivate` ends their access at
their next request. Each person may choose the language they read the admin
in (`set_language`); without a choice they read the shop's HUB_LANGUAGE.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from werkzeug.security import check_password_hash, generate_password_hash

from hub import i18n, normalize
from hub.db import utcnow
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import AuditEntry, User

users_t = User.__table__
audit_t = AuditEntry.__table__

ROLES = ("admin", "marketer", "viewer")
RANK = {"viewer": 0, "marketer": 1, "admin": 2}
# A role as people call it; the value stays in the database, --role and every check.
ROLE_TITLES = {"admin": N_("Administrator"), "marketer": N_("Marketer"), "viewer": N_("Viewer")}
MIN_PASSWORD = 10
WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
LOGIN, LOGIN_FAILED = "login", "login_failed"
# werkzeug's hash method for new passwords: scrypt with N=2**15, r=8, p=1 (about a tenth of a second, by
# design, so a stolen table is slow to guess through). Stored hashes carry their own parameters, so
# a test suite may lower this for speed without affecting how existing hashes are checked.
PASSWORD_METHOD = "scrypt:32768:8:1"


def role_title(role: Any) -> str:
    """A role in the reader's words ("Маркетолог"); an unknown one as it is."""
    return _(ROLE_TITLES[role]) if role in ROLE_TITLES else str(role)


def _hash(password: str) -> str:
    return generate_password_hash(password, method=PASSWORD_METHOD)


@functools.cache
def _dummy_hash() -> str:
    """Checked when the email is unknown, so a wrong email costs as long as a wrong password.

    Made on the first sign-in, not at import: every `hub` command imports this
    module, and a scrypt hash costs about a tenth of a second.
    """
    return _hash("not a password of anyone")


class UserError(ValueError):
    """A user that cannot be added or changed; the message says what to fix."""


class LoginRefused(Exception):
    """A sign-in that did not succeed; the message is safe to show (it never says which part was wrong)."""


@dataclass(frozen=True, slots=True)
class Account:
    """A user as the admin sees it (without the password hash)."""

    id: int
    email: str
    role: str
    active: bool
    created_at: dt.datetime
    fingerprint: str
    language: str | None = None  # the admin's language this person chose; None: the shop's HUB_LANGUAGE

    def can(self, role: str) -> bool:
        """Whether this user has `role` or a higher one."""
        return self.active and RANK[self.role] >= RANK[role]


def _fingerprint(password_hash: str) -> str:
    # Kept in the session: a changed password ends every other session of the user.
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def _account(row: Any) -> Account:
    return Account(id=row.id, email=row.email, role=row.role, active=bool(row.active), created_at=row.created_at,
                   fingerprint=_fingerprint(row.password_hash), language=row.language)


def clean_email(email: str) -> str:
    """The email as stored: checked and lower-cased, or a UserError naming the problem."""
    ident = normalize.email((email or "").strip())
    if ident is None or not ident.valid:
        raise UserError(_("%(email)r is not an email address", email=(email or "").strip()))
    return ident.value


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(_("role %(role)r is not one of: %(roles)s", role=role, roles=", ".join(ROLES)))
    return role


def check_password(password: str, email: str = "") -> None:
    """The password policy: long enough, and not the email."""
    if len(password or "") < MIN_PASSWORD:
        raise UserError(_("the password is too short: use at least %(min)s characters", min=MIN_PASSWORD))
    if email and password.strip().lower() in (email.lower(), email.split("@")[0].lower()):
        raise UserError(_("the password must not be the email address"))
    if len(set(password)) < 4:
        raise UserError(_("the password is too simple: use more different characters"))


def add(conn: Connection, email: str, role: str, password: str) -> Account:
    """A new user; refuses a duplicate email, an unknown role or a weak password."""
    email = clean_email(email)
    check_role(role)
    check_password(password, email)
    if find(conn, email) is not None:
        raise UserError(_("a user %(email)s already exists", email=email))
    conn.execute(users_t.insert().values(email=email, role=role, password_hash=_hash(password),
                                         active=True, created_at=utcnow()))
    found = find(conn, email)
    assert found is not None
    return found


def find(conn: Connection, email: str) -> Account | None:
    row = conn.execute(select(users_t).where(users_t.c.email == email.strip().lower())).first()
    return _account(row) if row is not None else None


def get(conn: Connection, user_id: int) -> Account | None:
    row = conn.execute(select(users_t).where(users_t.c.id == user_id)).first()
    return _account(row) if row is not None else None


def all_users(conn: Connection) -> list[Account]:
    return [_account(r) for r in conn.execute(select(users_t).order_by(users_t.c.email))]


def _admins_left(conn: Connection, without: int) -> int:
    return conn.execute(select(func.count()).select_from(users_t).where(
        users_t.c.role == "admin", users_t.c.active.is_(True), users_t.c.id != without)).scalar_one()


def set_role(conn: Connection, user_id: int, role: str) -> Account:
    """Change a role; the last active admin cannot be demoted (nobody could undo it)."""
    check_role(role)
    user = _existing(conn, user_id)
    if user.role == "admin" and role != "admin" and _admins_left(conn, user_id) == 0:
        raise UserError(_("%(email)s is the only active admin; make someone else admin first", email=user.email))
    conn.execute(users_t.update().where(users_t.c.id == user_id).values(role=role))
    return _existing(conn, user_id)


def set_active(conn: Connection, user_id: int, active: bool) -> Account:
    """Turn a user's access off (when they leave) or on again; the last active admin stays."""
    user = _existing(conn, user_id)
    if not active and user.role == "admin" and _admins_left(conn, user_id) == 0:
        raise UserError(_("%(email)s is the only active admin; make someone else admin first", email=user.email))
    conn.execute(users_t.update().where(users_t.c.id == user_id).values(active=active))
    return _existing(conn, user_id)


def check_language(language: str | None) -> str | None:
    """A language Hub speaks ("ru", "en"), or None for the shop's own; anything else is a UserError."""
    if language is None or str(language).strip() == "":
        return None
    code = str(language).strip().lower()
    if code not in i18n.LANGUAGES:
        raise UserError(_("language %(language)r is not one of: %(languages)s", language=str(language)[:20],
                          languages=", ".join(i18n.LANGUAGES)))
    return code


def set_language(conn: Connection, user_id: int, language: str | None) -> Account:
    """The language this person reads the admin in; None goes back to the shop's HUB_LANGUAGE."""
    code = check_language(language)
    _existing(conn, user_id)
    conn.execute(users_t.update().where(users_t.c.id == user_id).values(language=code))
    return _existing(conn, user_id)


def set_password(conn: Connection, user_id: int, password: str) -> Account:
    user = _existing(conn, user_id)
    check_password(password, user.email)
    conn.execute(users_t.update().where(users_t.c.id == user_id).values(
        password_hash=_hash(password)))
    return _existing(conn, user_id)


def _existing(conn: Connection, user_id: int) -> Account:
    user = get(conn, user_id)
    if user is None:
        raise UserError(_("no user with id %(id)s", id=user_id))
    return user


# --- signing in ---------------------------------------------------------------------------

def _failures(conn: Connection, since: dt.datetime, *, email: str | None = None, address: str | None = None) -> int:
    q = select(func.count()).select_from(audit_t).where(audit_t.c.action == LOGIN_FAILED, audit_t.c.at >= since)
    if email is not None:
        q = q.where(audit_t.c.actor == email)
    if address is not None:
        q = q.where(AuditEntry.details["ip"].as_string() == address)
    return conn.execute(q).scalar_one()


def _last_success(conn: Connection, email: str) -> dt.datetime | None:
    return conn.execute(select(func.max(audit_t.c.at)).where(audit_t.c.action == LOGIN,
                                                             audit_t.c.actor == email)).scalar()


def throttled(conn: Connection, email: str, address: str, *, now: dt.datetime | None = None) -> str | None:
    """Why sign-ins are refused for this email or address right now, or None."""
    now = now or utcnow()
    since = now - WINDOW
    last_ok = _last_success(conn, email)
    account_since = max(since, last_ok) if last_ok is not None else since
    minutes = int(WINDOW.total_seconds() // 60)
    if _failures(conn, account_since, email=email) >= MAX_FAILURES_PER_ACCOUNT:
        return _("Too many failed sign-ins for this account. Try again in %(minutes)s minutes.", minutes=minutes)
    if _failures(conn, since, address=address) >= MAX_FAILURES_PER_ADDRESS:
        return _("Too many failed sign-ins from your address. Try again in %(minutes)s minutes.", minutes=minutes)
    return None


def authenticate(engine: Engine, email: str, password: str, *, address: str,
                 now: dt.datetime | None = None) -> Account:
    """The user with this email and password, or LoginRefused.

    Every attempt is an audit entry, committed before the password is even
    checked: it counts as a failure from that moment and becomes a "login"
    only once the password proved right. Counting the attempts so far and
    recording this one happen under a lock on the account and on the address
    (see `_hold`), so parallel guesses cannot all see the same count and all
    be checked; the slow password check itself runs after the lock is gone.
    """
    now = now or utcnow()
    typed = (email or "").strip().lower()[:200]
    with engine.begin() as conn:
        _hold(conn, typed, address)
        reason = throttled(conn, typed, address, now=now)
        if reason is not None:
            raise LoginRefused(reason)
        attempt = conn.execute(audit_t.insert().values(at=now, actor=typed, action=LOGIN_FAILED,
                                                       details={"ip": address}).returning(audit_t.c.id)).scalar_one()
        row = conn.execute(select(users_t).where(users_t.c.email == typed)).first()
    ok = check_password_hash(row.password_hash if row is not None else _dummy_hash(), password or "")
    ok = ok and row is not None and bool(row.active)
    if not ok:
        raise LoginRefused(_("Wrong email or password, or the account is switched off."))
    with engine.begin() as conn:
        conn.execute(audit_t.update().where(audit_t.c.id == attempt).values(action=LOGIN))
    return _account(row)


def _hold(conn: Connection, email: str, address: str) -> None:
    """Serialize sign-in attempts for this account and for this address until the transaction ends.

    SQLite's write lock (Hub's ``begin()`` takes it at once) already lets one
    attempt in at a time. PostgreSQL takes two transaction-level advisory
    locks, always the account's first, so two attempts never wait for each
    other in a cycle.
    """
    if conn.dialect.name != "postgresql":
        return
    for kind, value in (("account", email), ("address", address)):
        digest = hashlib.blake2b(f"hub-sign-in:{kind}:{value}".encode(), digest_size=8).digest()
        conn.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True))))


def session_valid(user: Account | None, fingerprint: str | None) -> bool:
    """Whether a session still belongs to this user: active, and the password unchanged since sign-in."""
    return user is not None and user.active and fingerprint is not None and hmac.compare_digest(
        user.fingerprint, fingerprint)
