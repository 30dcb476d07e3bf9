"""The core's own admin pages, registered through register_admin_pages like any plugin's.

A default plugin (hub.plugins.DEFAULT_PLUGINS): the menu is built from what
is registered, and the core is no exception. Titles are English messages of
the core's catalog, shown in each reader's language. The blueprints are imported
inside the hook, so commands that never serve the admin do not load them.
"""

from __future__ import annotations

from typing import Callable

from hub.admin.registry import PUBLIC, AdminPage
from hub.hookspecs import hookimpl
from hub.i18n import N_


@hookimpl
def register_admin_pages(register: Callable[[AdminPage], None]) -> None:
    from hub.admin import auth, connections, contacts, dashboard, health, message_templates, segments, users_admin

    register(AdminPage(health.bp, "health.healthz", N_("Health"),
                       read_role=PUBLIC, in_menu=False))
    register(AdminPage(auth.bp, "auth.login", N_("Sign in"),
                       read_role=PUBLIC, write_role=PUBLIC, in_menu=False))
    register(AdminPage(dashboard.bp, "dashboard.index", N_("Dashboard"), order=10))
    register(AdminPage(contacts.bp, "contacts.search", N_("Contacts"), order=20,
                       write_role="marketer", audit_actions=contacts.AUDIT_ACTIONS))
    register(AdminPage(segments.bp, "segments.index", N_("Segments"), order=30,
                       write_role="marketer"))
    from hub.admin import segment_members

    register(AdminPage(segment_members.bp, "segment_members.members", N_("Segment members"), order=31,
                       write_role="marketer", in_menu=False, audit_actions=segment_members.AUDIT_ACTIONS))
    register(AdminPage(message_templates.bp, "message_templates.index", N_("Templates"), order=50,
                       write_role="marketer", audit_actions=message_templates.AUDIT_ACTIONS))
    from hub.admin import messages

    register(AdminPage(messages.bp, "messages.index", N_("Messages"), order=55, write_role="marketer",
                       audit_actions=messages.AUDIT_ACTIONS))
    register(AdminPage(connections.bp, "connections.index", N_("Connections"),
                       order=60, write_role="admin"))
    register(AdminPage(users_admin.bp, "users.index", N_("Users"), order=90,
                       read_role="admin", write_role="admin"))
    from hub.admin import api_keys

    register(AdminPage(api_keys.bp, "api_keys.index", N_("API keys"), order=85, read_role="admin",
                       write_role="admin", audit_actions={"api_key_created": N_("API key created"),
                                                          "api_key_revoked": N_("API key revoked")}))

