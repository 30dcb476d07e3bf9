"""The web side of Hub: the admin for the people who run campaigns, and public routes.

Public routes (webhook receivers, unsubscribe links) come from plugins through
the register_routes hook, each with its own checks. The names below are
imported on first use, so `hub users …` and other commands that only need
the user store do not load Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.admin.app import create_app, current_settings

__all__ = ["create_app", "current_settings"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hub.admin import app

        return getattr(app, name)
    raise AttributeError(f"module 'hub.admin' has no attribute {name!r}")
