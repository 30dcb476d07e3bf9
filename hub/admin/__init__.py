"""The web side of Hub: the admin for the people who run campaigns, and public routes.

Public routes (webhook receivers, unsubscribe links) come from plugins through
the register_routes hook, each with its own checks.
"""

from hub.admin.app import create_app, current_settings

__all__ = ["create_app", "current_settings"]
