"""/healthz: is the database reachable, and Redis when configured (for load balancers and monitoring)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import text

from hub import queue
from hub.admin.app import current_settings
from hub.db import get_engine

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    settings = current_settings()
    checks: dict[str, str] = {}
    try:
        with get_engine(settings.database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not healthy"; the type says enough
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.redis_url:
        try:
            queue.redis_connection(settings).ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "error", checks=checks), (200 if healthy else 503)
