"""A sample third-party plugin adding an admin page through register_admin_pages.

Notes on a pin board: anyone signed in reads them, marketers add them, and
the add is recorded in the audit log. A view that forgot its @allow(...)
proves that such a view is refused; a second blueprint, registered as a
public route instead, proves the menu holds only registered pages. A third
page, for admins and outside the menu, adds a section to each contact's card.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, redirect, render_template, request, url_for
from markupsafe import Markup

from hub.api import AdminPage, actor, allow, current_user, engine, hookimpl, record_audit

NOTES: list[str] = []

bp = Blueprint("notes", __name__, url_prefix="/notes", template_folder="admin_page_templates")
PAGE = AdminPage(bp, "notes.index", {"ru": "Заметки", "en": "Notes"}, order=55, read_role="viewer",
                 write_role="marketer", icon="✎")

public = Blueprint("notes_feed", __name__, url_prefix="/notes-feed")


def pinned_for(conn: Any, contact_id: int) -> Markup:
    """What admins pinned about a person, on the contact's card."""
    return Markup('<p id="pinned-note">Pinned for #{}: call back</p>').format(contact_id)


pinned = Blueprint("pinned", __name__, url_prefix="/pinned")
PINNED = AdminPage(pinned, "pinned.index_of_pinned", {"en": "Pinned"}, read_role="admin", in_menu=False,
                   contact_section=pinned_for)


@pinned.get("/")
@allow(read="admin")
def index_of_pinned() -> Any:
    return "pinned notes"


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    user = current_user()
    return render_template("notes/index.html", notes=NOTES, who=user.email if user else None)


@bp.post("/")
@allow(read=None, write="viewer")  # the page's write_role (marketer) is stricter and wins
def add() -> Any:
    text = (request.form.get("text") or "").strip()
    NOTES.append(text)
    with engine().begin() as conn:
        record_audit(conn, actor(), "notes.added", text=text)
    return redirect(url_for("notes.index"))


@bp.get("/forgotten")
def forgotten() -> Any:
    """No @allow: refused for everyone."""
    return "should never be served"


@public.get("/")
def feed() -> Any:
    return {"notes": NOTES}


@hookimpl
def register_admin_pages(register: Callable[[AdminPage], None]) -> None:
    register(PAGE)
    register(PINNED)


@hookimpl
def register_routes(app: Any) -> None:
    app.register_blueprint(public)
