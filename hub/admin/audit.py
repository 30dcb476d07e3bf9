"""What people did in the admin, kept in audit_log: who, what, to whom, when.

Written in the same transaction as the change it describes, so the log
never claims a change that rolled back, nor misses one that committed. The
log keeps each action's technical name; the page shows its title: the core's
own here, a plugin's from its admin page (``AdminPage.audit_actions``), and an
action nobody titled as it is.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import current_app
from sqlalchemy import Connection, select

from hub import users
from hub.db import utcnow
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import AuditEntry

audit_t = AuditEntry.__table__
log = logging.getLogger(__name__)
# What the core records, as people call it.
ACTION_TITLES = {
    users.LOGIN: N_("signed in"), users.LOGIN_FAILED: N_("sign-in failed"),
    "user_added": N_("user added"), "user_role_changed": N_("role changed"), "user_enabled": N_("access enabled"),
    "user_disabled": N_("access disabled"), "user_language_changed": N_("language changed"),
    "sync_requested": N_("sync requested"), "connected": N_("source connected"),
    "segment_saved": N_("segment saved"), "segment_removed": N_("segment removed"),
    "segments_refresh_requested": N_("segments refresh requested"),
    "template_saved": N_("template saved"), "template_removed": N_("template removed"),
    "consent_recorded_by_staff": N_("consent recorded by staff"), "contact_merged": N_("contacts merged"),
    "contact_unmerged": N_("merge undone"),
}
# Who acts when no person does.
ACTOR_TITLES = {"scheduler": N_("scheduler"), "cli": N_("command line")}


def _plugin_titles() -> Mapping[str, str]:
    from hub.admin import access

    titles: dict[str, str] = {}
    for page in current_app.config.get(access.ADMIN_BLUEPRINTS, {}).values():
        titles.update(page.audit_actions)
    return titles


def details_text(action: Any, details: Any) -> str:
    """An entry's details as people read them: the plugin's sentence for its action, else key by key.

    A plugin's describer that fails on an old or odd entry must not take the
    whole log down: that entry falls back to the key-by-key line.
    """
    from hub.admin import access, filters

    for page in current_app.config.get(access.ADMIN_BLUEPRINTS, {}).values():
        describe = page.audit_details.get(action)
        if describe is not None and isinstance(details, Mapping):
            try:
                return describe(details)
            except Exception as exc:  # noqa: BLE001 - one entry shown plainly beats a page that fails
                log.warning("describing audit action %s failed: %s", action, type(exc).__name__)
            break
    return filters.details(details)


def action_title(action: Any) -> str:
    """An action in the reader's words ("вход"); one nobody titled as it is."""
    title = ACTION_TITLES.get(action) or _plugin_titles().get(action)
    return _(title) if title else str(action)


def actor_title(who: Any) -> str:
    """Who did it: a person's email (without the "admin:" the admin's actions are recorded with), the
    scheduler and the command line in the reader's words."""
    text = str(who or "")
    if text in ACTOR_TITLES:
        return _(ACTOR_TITLES[text])
    return text.removeprefix("admin:") if text != "admin:" else text


def record(conn: Connection, actor: str, action: str, *, contact_id: int | None = None,
           **details: Any) -> None:
    """Append one entry; `details` must never hold a password, token or secret."""
    conn.execute(audit_t.insert().values(at=utcnow(), actor=actor, action=action, contact_id=contact_id,
                                         details=details))


def latest(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(select(audit_t).order_by(audit_t.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]
