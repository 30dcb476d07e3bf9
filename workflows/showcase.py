"""The end of `hub demo` (this plugin's register_showcases): the reactivation campaign on the base the demo built.

The demo's CRMs are emulators, so nobody in them ever agreed to anything; the
demo records email consent for the customers it synced from them, marked
`source: demo`, the way a shop's checkout form would have. Then it switches
reactivation_90d on and runs it in-process: codes issued, letters written as
.eml files into the demo's outbox folder (the file channel), nothing sent
anywhere.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import Engine, select

from hub.api import ContactIdentity, ExternalRef, Message, Settings, record_consent, utcnow
from workflows import store, ticks, triggers
from workflows.models import PromoCode

WORKFLOW = "reactivation_90d"
SHOWN = 3


def run_reactivation(settings: Settings, engine: Engine, workdir: Path, console: Console) -> dict[str, Any]:
    """Grant demo consent to the CRM customers, run reactivation_90d, print what it sent; returns the numbers."""
    outbox = workdir / "outbox"
    settings = replace(settings, extra={**settings.extra, "outbox_dir": str(outbox)})
    now = utcnow()
    with engine.begin() as conn:
        store.install_library(conn)
        crm_people = sorted(set(conn.execute(select(ExternalRef.contact_id).join(
            ContactIdentity, ContactIdentity.contact_id == ExternalRef.contact_id)
            .where(ContactIdentity.kind == "email", ContactIdentity.valid)).scalars()))
        for contact_id in crm_people:
            record_consent(conn, contact_id, "email", "marketing", "granted", source="demo",
                           evidence={"demo": "the emulated CRM customers' checkout consent"})
        row = store.set_enabled(conn, WORKFLOW, True, now=now)
        workflow = store.definition(conn, settings, row.id, row.version)
    started = triggers.fire(engine, settings, row, workflow, now=now, manual=True)
    ticks.advance_due(engine, settings, now=now, workflow_id=row.id)
    with engine.connect() as conn:
        sent = conn.execute(select(Message.id, Message.address, Message.subject, PromoCode.code)
                            .join(PromoCode, PromoCode.contact_id == Message.contact_id)
                            .where(Message.status == "sent", Message.template == "reactivation_email")
                            .order_by(Message.id)).all()
    letters = sorted(outbox.glob("*-email.eml")) if outbox.exists() else []
    console.rule("[bold]Reactivation: no purchase for 90 days → a personal promo code → email")
    console.print(f"{len(crm_people):,} CRM customers given email consent for the demo (source: demo); "
                  f"{started.started:,} of them are dormant and entered {WORKFLOW}, {started.holdout:,} of those "
                  f"in the 10% control group that gets nothing.")
    console.print(f"{len(sent):,} personal codes and letters: {len(letters):,} .eml files in {outbox}")
    for _, address, subject, code in sent[:SHOWN]:
        console.print(f"  {address}: «{subject}» — {code}")
    console.print(f"In 7 days, whoever has not bought gets an SMS and their manager a call task. See it:\n"
                  f"  HUB_DATABASE_URL=sqlite:///{workdir / 'hub.db'} hub workflows status {WORKFLOW}")
    return {"consented": len(crm_people), **started.as_dict(), "emails": len(sent), "files": len(letters)}
