"""`hub users …`: add the people who may sign in to the admin, and switch them off when they leave."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

from hub import users
from hub.cli import App, emit_json
from hub.i18n import gettext as _


def _app() -> App:
    """The command line's App (settings and engine, made on first use), as `pass_app` gives it."""
    return click.get_current_context().ensure_object(App)


def _read_password(from_stdin: bool, email: str) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return click.prompt(_("Password for %(email)s", email=email), hide_input=True, confirmation_prompt=True)


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """A user-store mistake ends in one `Error:` line, like every other Hub command."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.group("users")
def users_group() -> None:
    """People who may sign in to the admin (hub admin), and their roles."""


@users_group.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(users.ROLES), required=True,
              help="admin: everything; marketer: contacts, segments, templates, workflows; viewer: read only.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@_user_errors
def add_cmd(email: str, role: str, password_stdin: bool) -> None:
    """Add a user who signs in with EMAIL; the password is asked for (never an argument)."""
    engine = _app().ready_engine()
    email = users.clean_email(email)
    with engine.connect() as conn:
        if users.find(conn, email) is not None:
            raise users.UserError(_("a user %(email)s already exists", email=email))
    password = _read_password(password_stdin, email)
    with engine.begin() as conn:
        user = users.add(conn, email, role, password)
    click.echo(_("Added %(email)s as %(role)s. They sign in at the admin (hub admin) with this password.",
                 email=user.email, role=_role(user.role)))


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_cmd(as_json: bool) -> None:
    """Every user with their role and whether they may sign in."""
    with _app().ready_engine().connect() as conn:
        found = users.all_users(conn)
    rows = [{"id": u.id, "email": u.email, "role": u.role, "active": u.active,
             "created_at": u.created_at.isoformat()} for u in found]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(_("No users yet; add one with: hub users add EMAIL --role admin"))
    for r in rows:
        state = _("on") if r["active"] else _("off")
        click.echo(f"{r['email']:40} {_role(str(r['role'])):14} {state}")


# Roles as people read them (users.role_title); the --role values, the database and --json keep the English word.
_role = users.role_title


def _set(email: str, change: str, value: object) -> users.Account:
    engine = _app().ready_engine()
    with engine.begin() as conn:
        user = users.find(conn, users.clean_email(email))
        if user is None:
            raise users.UserError(_("no user %(email)s", email=email))
        if change == "role":
            return users.set_role(conn, user.id, str(value))
        if change == "active":
            return users.set_active(conn, user.id, bool(value))
        return users.set_password(conn, user.id, str(value))


@users_group.command("role")
@click.argument("email")
@click.argument("role", type=click.Choice(users.ROLES))
@_user_errors
def role_cmd(email: str, role: str) -> None:
    """Give a user another role."""
    user = _set(email, "role", role)
    click.echo(_("%(email)s is now %(role)s.", email=user.email, role=_role(user.role)))


@users_group.command("disable")
@click.argument("email")
@_user_errors
def disable_cmd(email: str) -> None:
    """Switch a user's access off (their open sessions end at their next click)."""
    user = _set(email, "active", False)
    click.echo(_("%(email)s can no longer sign in.", email=user.email))


@users_group.command("enable")
@click.argument("email")
@_user_errors
def enable_cmd(email: str) -> None:
    """Switch a user's access on again."""
    user = _set(email, "active", True)
    click.echo(_("%(email)s can sign in again.", email=user.email))


@users_group.command("password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@_user_errors
def password_cmd(email: str, password_stdin: bool) -> None:
    """Set a new password (ends the user's other sessions)."""
    user = _set(email, "password", _read_password(password_stdin, email))
    click.echo(_("New password set for %(email)s.", email=user.email))
