"""The core's own admin pages, registered through register_admin_pages like any plugin's.

A default plugin (hub.plugins.DEFAULT_PLUGINS): the menu is built from what
is registered, and the core is no exception. The blueprints are imported
inside the hook, so commands that never serve the admin do not load them.
"""

from __future__ import annotations

from typing import Callable

from hub.admin.registry import PUBLIC, AdminPage
from hub.hookspecs import hookimpl


@hookimpl
def register_admin_pages(register: Callable[[AdminPage], None]) -> None:
    from hub.admin import auth, connections, contacts, dashboard, health, message_templates, segments, users_admin

    register(AdminPage(health.bp, "health.healthz", {"ru": "Состояние", "en": "Health"},
                       read_role=PUBLIC, in_menu=False))
    register(AdminPage(auth.bp, "auth.login", {"ru": "Вход", "en": "Sign in"},
                       read_role=PUBLIC, write_role=PUBLIC, in_menu=False))
    register(AdminPage(dashboard.bp, "dashboard.index", {"ru": "Обзор", "en": "Dashboard"}, order=10))
    register(AdminPage(contacts.bp, "contacts.search", {"ru": "Контакты", "en": "Contacts"}, order=20,
                       write_role="marketer"))
    register(AdminPage(segments.bp, "segments.index", {"ru": "Сегменты", "en": "Segments"}, order=30,
                       write_role="marketer"))
    register(AdminPage(message_templates.bp, "message_templates.index", {"ru": "Шаблоны", "en": "Templates"}, order=50,
                       write_role="marketer"))
    register(AdminPage(connections.bp, "connections.index", {"ru": "Подключения", "en": "Connections"},
                       order=60, write_role="admin"))
    register(AdminPage(users_admin.bp, "users.index", {"ru": "Пользователи", "en": "Users"}, order=90,
                       read_role="admin", write_role="admin"))

