"""The Flask application factory."""

from __future__ import annotations

from flask import Flask, current_app

from hub.config import Settings, load_settings
from hub.plugins import get_pm


def create_app(settings: Settings | None = None) -> Flask:
    """A Flask app for these settings, with every plugin's routes registered."""
    from hub.admin import health

    settings = settings or load_settings()
    app = Flask("hub.admin")
    app.config.update(SECRET_KEY=settings.require_secret_key(), HUB_SETTINGS=settings,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.register_blueprint(health.bp)
    get_pm().hook.register_routes(app=app)
    return app


def current_settings() -> Settings:
    """The settings of the app handling this request."""
    return current_app.config["HUB_SETTINGS"]
