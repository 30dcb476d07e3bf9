"""GDPR and 152-FZ: consent capture with double opt-in, the preference centre, one-click
unsubscribe, data export, erasure, retention and the audit trail.

Registered like any third-party plugin, through the "hub" entry point group.
The modules side by side: topics (what a person can agree to), config (the
[gdpr] settings), capture (signups and their confirmation), preferences
(changing and withdrawing answers), routes and csrf (the public pages),
crm_consent (consent read from CRM fields on every sync), export, erasure,
retention, audit (audit_log entries) and commands (`hub gdpr …`).

The consent ledger itself and the can-contact decision are the core's
(hub.consent): this plugin feeds the ledger and keeps erased people out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from hub.api import hookimpl
from plugins.gdpr import audit, erasure


@hookimpl
def register_translations(register: Callable[[Path], None]) -> None:
    """The plugin's messages in Russian (translations/ru), found like any plugin's."""
    register(Path(__file__).parent / "translations")


@hookimpl
def register_migrations(register: Any) -> None:
    """The plugin's tables (plugins.gdpr.models) come from its own migrations."""
    register("gdpr", Path(__file__).parent / "migrations" / "versions")


@hookimpl
def register_routes(app: Any) -> None:
    from plugins.gdpr.routes import bp

    app.register_blueprint(bp)


@hookimpl
def register_api_endpoints(register: Any) -> None:
    """POST /api/v1/consent: a website's signups (double opt-in) and withdrawals, with a key (plugins.gdpr.api)."""
    from plugins.gdpr import api

    api.register(register)


@hookimpl
def register_admin_pages(register: Any) -> None:
    """The consent log, and one person's export and erasure, in the admin."""
    from plugins.gdpr.admin import PAGE

    register(PAGE)


@hookimpl
def register_commands(cli: Any) -> None:
    from plugins.gdpr.commands import gdpr_group

    cli.add_command(gdpr_group)


@hookimpl
def register_schedules(register: Any, settings: Any) -> None:
    """The retention rules apply themselves every day, so nobody has to remember to run them."""
    import datetime as dt

    from hub.api import N_, Schedule
    from plugins.gdpr import retention

    # Marked for the catalog: whoever lists the schedules shows it in the reader's language.
    register("gdpr-retention", Schedule(dt.timedelta(days=1), retention.scheduled,
                                        N_("apply the retention rules ([gdpr.retention])")))


@hookimpl
def refuse_records(conn: Any, settings: Any, records: list[Any]) -> set[int]:
    """People erased on request stay out, whichever CRM or file still holds them."""
    return erasure.refuse_erased(conn, settings, records)


@hookimpl
def refuse_orders(conn: Any, settings: Any, orders: list[Any]) -> set[int]:
    """… and so do their deals, which may carry their name in the title."""
    return erasure.refuse_linked_to_erased(conn, settings, orders)


@hookimpl
def refuse_activities(conn: Any, settings: Any, activities: list[Any]) -> set[int]:
    """… and so do the calls and meetings the CRM still logs for them (a subject names who and what)."""
    return erasure.refuse_linked_to_erased(conn, settings, activities)


@hookimpl
def contact_synced(conn: Any, settings: Any, source: str, contact_ids: list[int]) -> None:
    """Consent mapped from CRM fields ([gdpr.crm_consent]) follows every sync of that CRM."""
    from plugins.gdpr import crm_consent

    crm_consent.apply(conn, settings, source, contact_ids)


@hookimpl
def contact_merged(conn: Any, survivor_id: int, merged_id: int) -> None:
    """Consent requests (signups waiting for their click) follow the person into the survivor."""
    from plugins.gdpr import capture

    capture.follow_merge(conn, survivor_id, merged_id)


@hookimpl
def contact_unmerged(conn: Any, survivor_id: int, restored_id: int) -> None:
    """… and back to the restored contact when the merge is undone, those made with its own address."""
    from plugins.gdpr import capture

    capture.follow_unmerge(conn, survivor_id, restored_id)


@hookimpl(trylast=True)
def contact_erased(conn: Any, contact_id: int) -> None:
    """Signups still waiting for their click, made with the erased person's address, are forgotten too.

    Last of all implementations: it blanks the pending letters' rows, which
    other plugins read to find what they keep of them (the file channel's files).
    """
    from plugins.gdpr import capture

    capture.forget_pending(conn, contact_id)


@hookimpl
def consent_changed(conn: Any, contact_id: int, channel: str, purpose: str, status: str, source: str) -> None:
    """Every consent change is also in the audit log (without its evidence, which may name the person)."""
    audit.record(conn, source, f"consent.{status}", contact_id, channel=channel, purpose=purpose, source=source)
