"""The queue jobs of workflows; they carry run ids only and read everything else from the database.

`hub worker` runs them when Redis is configured (the scheduler enqueues
them); without Redis the scheduler calls the same functions in-process. Each
reads its settings afresh, as every Hub job does, so a job queued before a
restart means the same thing after it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

# not in hub.api on purpose: the campaign engine writes outbox rows and dispatches them
from hub import messaging
from hub.api import Settings, get_engine, load_settings


def engine_for(settings: Settings) -> Engine:
    """This process's engine (a forked RQ work-horse gets fresh connections: hub.db drops inherited pools)."""
    return get_engine(settings.database_url)


def advance_runs(run_ids: list[int]) -> dict[str, Any]:
    """Take these runs as far as they go now, then send the messages they wrote."""
    from workflows import runner

    settings = load_settings()
    return runner.advance(engine_for(settings), settings, run_ids).as_dict()


def dispatch_outbox() -> dict[str, Any]:
    """Send what the outbox holds that is due (held for quiet hours, retries, anything left over)."""
    settings = load_settings()
    return messaging.dispatch(engine_for(settings), settings).as_dict()


def write_back_promo_codes() -> dict[str, Any]:
    """Write issued promo codes to the CRM field configured for them."""
    from workflows import promo

    settings = load_settings()
    return promo.write_back_pending(engine_for(settings), settings)


def write_back_nps_answers() -> dict[str, Any]:
    """Write survey answers still pending (a CRM was down) to the CRMs as comments."""
    from workflows import nps

    settings = load_settings()
    return nps.write_back_pending(engine_for(settings), settings)
