"""The reactivation campaign as a new user runs it on a CRM: the Bitrix24 plugin's portal emulator.

Connect, sync, grant consent to some, run reactivation_90d: every dormant
consenting contact gets one code and one email (file channel), nobody else;
the code is written to the contact's card in the portal; when the portal later
reports a deal carrying the code, the next sync and tick redeem it and the
status shows the conversion. A week later (a fake clock) the SMS and the
manager's call task follow for those who did not buy.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import plugins.bitrix24 as bitrix24_plugin
from hub import consent
from hub.config import load_settings
from hub.db import utcnow
from hub.models import ContactIdentity, ExternalRef, Message
from hub.segments.evaluate import Segments
from plugins.bitrix24.sandbox import Portal, SandboxServer
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.shop import runs_of, use_workflows
from workflows import ticks
from workflows.models import PromoCode

PEOPLE = 80


@pytest.fixture
def portal() -> Iterator[SandboxServer]:
    # The portal keeps whole seconds; two seconds ahead, a deal it records "now" is after the run began.
    server = SandboxServer(Portal(contacts=PEOPLE, seed=3, today=utcnow().date(),
                                  clock=lambda: time.time() + 2)).start()
    yield server
    server.stop()
    server.portal.close()


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    Path("hub.toml").write_text(
        '[bitrix24]\npromo_field = "UF_CRM_PROMO_CODE"\nfields = { promo_code = "COMMENTS" }\n\n'
        '[workflows]\npromo_crm_field = "promo_code"\n', encoding="utf-8")
    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    bitrix24_plugin.register_commands(cli)
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def hub_json(*args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_reactivation_campaign_on_a_synced_bitrix24_portal(wf: HubDB, portal: SandboxServer) -> None:
    connected = CliRunner().invoke(cli, ["connect", "bitrix24", "--webhook", portal.webhook_url])
    assert connected.exit_code == 0, connected.output
    assert hub_json("sync", "bitrix24", "--full")["contacts"]["created"] > 0
    with wf.engine.begin() as conn:
        refs = dict(conn.execute(select(ExternalRef.contact_id, ExternalRef.external_id)
                                 .where(ExternalRef.source == "bitrix24")).all())
        with_email = set(conn.execute(select(ContactIdentity.contact_id).where(
            ContactIdentity.kind == "email", ContactIdentity.valid)).scalars())
        for contact_id in sorted(refs)[::2]:  # half of them agreed to marketing
            consent.record(conn, contact_id, "email", "marketing", "granted", source="form")
            consent.record(conn, contact_id, "sms", "marketing", "granted", source="form")
    with wf.engine.connect() as conn:
        dormant = set(Segments(conn, wf.settings).member_ids("dormant_90d"))
    assert dormant and dormant <= set(sorted(refs)[::2])

    run = hub_json("workflows", "run", "reactivation_90d")
    runs = {r.contact_id: r for r in runs_of(wf, "reactivation_90d")}
    assert set(runs) == dormant and run["started"] == len(dormant)
    treated = {c for c, r in runs.items() if not r.holdout}
    expect_mail = treated & with_email
    assert run["messages"] == run["sent"] == len(expect_mail)
    letters = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
               for p in sorted(Path("outbox").glob("*-email.eml"))]
    with wf.engine.connect() as conn:
        codes = {r.contact_id: r.code for r in conn.execute(select(PromoCode))}
        sent_to = {m.contact_id for m in conn.execute(select(Message).where(Message.status == "sent"))}
    assert sent_to == expect_mail and len(letters) == len(expect_mail)
    assert set(codes) == treated
    for letter in letters:
        assert any(code in letter.get_body(("plain",)).get_content() for code in codes.values())

    assert hub_json("workflows", "run", "reactivation_90d")["started"] == 0  # nobody twice

    first_tick = hub_json("workflows", "tick")
    assert first_tick["promo_written_back"]["written"] == len(treated)
    buyer = sorted(expect_mail)[0]
    assert portal.portal.contact(int(refs[buyer]))["COMMENTS"] == codes[buyer]
    for contact_id in treated:  # the manager reads on the card what the code is worth, as in amoCRM
        (note,) = portal.portal.timeline_comments("contact", int(refs[contact_id]))
        assert note["COMMENT"].startswith(f"Промокод {codes[contact_id]}, скидка 15\N{NO-BREAK SPACE}%, действует до ")

    # The customer buys in the shop with the code; the manager's deal in the portal carries it.
    portal.portal.add_deal({"TITLE": "Заказ по промокоду", "CONTACT_ID": int(refs[buyer]), "OPPORTUNITY": 3200,
                            "STAGE_ID": "WON", "UF_CRM_PROMO_CODE": codes[buyer].lower()})
    assert hub_json("sync", "bitrix24")["orders"]["created"] == 1
    assert hub_json("workflows", "tick")["redeemed"] == 1
    status = hub_json("workflows", "status", "reactivation_90d")
    assert status["promo_codes"]["redeemed"] == 1
    assert status["conversion"]["treated"]["converted"] >= 1
    assert status["converted"] >= 1 and float(status["revenue"]) >= 3200

    # A week later: the buyer leaves the campaign; the others get the SMS and a call task.
    week = utcnow() + dt.timedelta(days=7, hours=1)
    settings = replace(wf.settings, extra=load_settings().extra)
    ticks.tick(wf.engine, settings, now=week)
    runs = {r.contact_id: r for r in runs_of(wf, "reactivation_90d")}
    assert runs[buyer].status == "exited"
    called = [c for c in treated if c != buyer]
    for contact_id in called:
        assert runs[contact_id].status == "done", (contact_id, runs[contact_id].error)
        (task,) = portal.portal.activities(3, int(refs[contact_id]))
        assert task["title"].endswith(f"промокод {codes[contact_id]} истекает")
    assert portal.portal.activities(3, int(refs[buyer])) == []
