"""/healthz and /status.json: for load balancers and monitoring.

/healthz answers 200 when the database (and Redis, when configured) can be
reached, 503 otherwise, and says nothing else: it is public. /status.json is
the monitoring view: queue sizes, failed jobs and listening workers, whether
the scheduler ticks, the last sync of each source, the outbox by status. It holds no personal data, but it does describe
the business, so it needs a signed-in user or the bearer token set as
`status_token` in hub.toml (HUB_STATUS_TOKEN).
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, abort, jsonify, request
from sqlalchemy import text

from hub import messaging, queue, schedule
from hub.admin import overview
from hub.admin.access import PUBLIC, allow, current_user
from hub.admin.app import current_settings
from hub.config import Settings
from hub.db import get_engine, utcnow
from hub.i18n import use_language
from hub.webhooks import store as webhook_store

bp = Blueprint("health", __name__)


def checks(settings: Settings) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with get_engine(settings.database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
        out["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"; the type says enough
        out["database"] = f"error: {type(exc).__name__}"
    if settings.redis_url:
        try:
            queue.probe_connection(settings).ping()
            out["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - as for the database: any failure means "not healthy"
            out["redis"] = f"error: {type(exc).__name__}"
    return out


def scheduler(settings: Settings) -> dict[str, Any]:
    """Whether `hub scheduler` ticks (the rule of hub.schedule.scheduler_alive), for monitoring."""
    try:
        beat = schedule.scheduler_alive(get_engine(settings.database_url), settings)
    except Exception as exc:  # noqa: BLE001 - a bad setting or the database away: said, not raised
        return {"alive": None, "error": type(exc).__name__}
    return {"alive": beat.alive, "window_s": beat.window.total_seconds(),
            "last_started_at": beat.last_started_at.isoformat() if beat.last_started_at else None}


@bp.get("/healthz")
@allow(read=PUBLIC)
def healthz() -> Any:
    found = checks(current_settings())
    healthy = all(v == "ok" for v in found.values())
    return jsonify(status="ok" if healthy else "error", checks=found), (200 if healthy else 503)


def _token_ok(settings: Settings) -> bool:
    expected = str(settings.extra.get("status_token") or "")
    given = request.headers.get("Authorization", "")
    return bool(expected) and given.startswith("Bearer ") and hmac.compare_digest(
        given[len("Bearer "):].encode(), expected.encode())


@bp.get("/status.json")
@allow(read=PUBLIC)
def status() -> Any:
    settings = current_settings()
    if current_user() is None and not _token_ok(settings):
        abort(401)
    found = checks(settings)
    data: dict[str, Any] = {"status": "ok" if all(v == "ok" for v in found.values()) else "error",
                            "checks": found, "at": utcnow().isoformat()}
    if found["database"] == "ok":
        with get_engine(settings.database_url).connect() as conn:
            data["contacts"] = overview.base_size(conn)
            data["outbox"] = messaging.counts(conn)
            data["webhooks_switched_off"] = [h.id for h in webhook_store.switched_off(conn)]
            data["syncs"] = [{"source": s["source"], "status": s["run"]["status"] if s["run"] else None,
                              "kind": s["run"]["kind"] if s["run"] else None,
                              "started_at": s["run"]["started_at"].isoformat() if s["run"] else None,
                              "finished_at": (s["run"]["finished_at"].isoformat()
                                              if s["run"] and s["run"]["finished_at"] else None),
                              "failing": s["failing"]} for s in overview.last_syncs(conn)]
    with use_language("en"):  # read by monitoring, which matches on words: the same in every language
        data["queue"] = overview.queue_health(settings)
    data["scheduler"] = scheduler(settings)
    return jsonify(data)
