"""Lead scores and lifecycle stages pushed to the CRMs' fields: only what changed, in batches, kept on failure.

The CRM is the in-memory sample source, taught to write fields in batches
(hub.api.FieldBatches); contacts come through a real sync, scores through
the lead_scores table the segments refresh.
"""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace
from typing import Any, Sequence

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, update

from hub import crm_push, schedule, sync
from hub.api import FieldBatches
from hub.db import insert_for, utcnow
from hub.hookspecs import hookimpl
from hub.models import Contact, ExternalRef, LeadScore
from tests.conftest import HubDB
from tests.plugins.sample_source import FakeCRM, SampleSource
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # the comparison with what was pushed is SQL on JSON


class PushingSource(SampleSource):
    """The sample CRM with score fields: records every batch; can refuse, or write only some records."""

    def __init__(self, crm: FakeCRM, calls: list[list[tuple[str, str, Any]]], *, names: Sequence[str] | None = None,
                 refuse: bool = False, skip: Sequence[str] = (), poison: Sequence[str] = (),
                 says_written: bool = False) -> None:
        super().__init__(crm)
        self.calls, self.names, self.refuse, self.skip = calls, names, refuse, set(skip)
        self.poison = set(poison)  # records the CRM refuses the whole batch for (a locked record, say)
        self.says_written = says_written

    def pushes(self, name: str) -> bool:
        return self.names is None or name in self.names

    def set_fields(self, values: Sequence[tuple[str, str, Any]]) -> list[str]:
        self.calls.append(list(values))
        if self.refuse:
            raise ConnectionError("503 Service Unavailable")
        if self.poison & {ext for ext, _name, _value in values}:
            refused = RuntimeError("Bitrix24: ERROR_CORE: record is locked")
            if self.says_written:  # as Bitrix24's batches do: what went through before the refusal
                refused.written = sorted({ext for ext, _n, _v in values} - self.poison)  # type: ignore[attr-defined]
            raise refused
        return sorted({ext for ext, _name, _value in values if ext not in self.skip})


class Crm:
    """One test's CRM and how its source behaves, switchable between pushes."""

    def __init__(self) -> None:
        self.data = FakeCRM()
        self.calls: list[list[tuple[str, str, Any]]] = []
        self.options: dict[str, Any] = {}

    def sent(self) -> list[tuple[str, str, Any]]:
        """Every value sent since the last look."""
        out = [v for call in self.calls for v in call]
        self.calls.clear()
        return out


@pytest.fixture
def crm(hub_db: HubDB, plugin_manager: Any) -> Crm:
    made = Crm()
    for i in range(1, 11):
        made.data.add_contact(i, first=f"Клиент {i}", emails=[f"c{i}@example.ru"])

    @hookimpl
    def register_sources(register: Any) -> None:
        register("sample", lambda settings: PushingSource(made.data, made.calls, **made.options))

    plugin_manager.register(SimpleNamespace(register_sources=register_sources), name="sample")
    sync.run(hub_db.engine, hub_db.settings, "sample")
    return made


def contact_of(db: HubDB, external_id: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(ExternalRef.contact_id).where(ExternalRef.source == "sample",
                                                                 ExternalRef.external_id == external_id)).scalar_one()


def set_score(db: HubDB, external_id: str, score: int) -> None:
    cid = contact_of(db, external_id)
    with db.engine.begin() as conn:
        conn.execute(delete(LeadScore).where(LeadScore.contact_id == cid))
        conn.execute(insert_for(conn, LeadScore.__table__).values(contact_id=cid, score=score, updated_at=utcnow()))


def pushed(db: HubDB) -> dict[str, dict[str, Any]]:
    with db.engine.connect() as conn:
        return {ext: dict(p or {}) for ext, p in conn.execute(select(ExternalRef.external_id, ExternalRef.pushed))}


def test_the_first_push_sends_everyone_then_only_what_changed(hub_db: HubDB, crm: Crm) -> None:
    assert isinstance(PushingSource(crm.data, []), FieldBatches)
    first = crm_push.push(hub_db.engine, hub_db.settings)
    assert first.as_dict() == {"sources": {"sample": {"changed": 10, "sent": 20, "written": 10, "failed": 0,
                                                      "error": None}}, "written": 10}
    assert sorted(crm.sent()) == sorted([(str(i), "lead_score", 0) for i in range(1, 11)]
                                        + [(str(i), "lifecycle", "potential") for i in range(1, 11)])
    assert pushed(hub_db)["4"] == {"lead_score": 0, "lifecycle": "potential"}

    for ext, score in (("2", 15), ("5", 40), ("9", 7)):
        set_score(hub_db, ext, score)
    second = crm_push.push(hub_db.engine, hub_db.settings)
    assert sorted(crm.sent()) == [("2", "lead_score", 15), ("5", "lead_score", 40), ("9", "lead_score", 7)]
    assert second.sources["sample"].changed == 3 and second.sources["sample"].written == 3
    assert pushed(hub_db)["5"] == {"lead_score": 40, "lifecycle": "potential"}

    third = crm_push.push(hub_db.engine, hub_db.settings)
    assert crm.sent() == [] and crm.calls == [] and third.sources["sample"].changed == 0


def test_a_stage_that_moves_is_sent_and_an_erased_or_deleted_record_is_not(hub_db: HubDB, crm: Crm) -> None:
    crm_push.push(hub_db.engine, hub_db.settings)
    crm.sent()
    now = utcnow()
    with hub_db.engine.begin() as conn:
        conn.execute(update(Contact).where(Contact.id == contact_of(hub_db, "3"))
                     .values(orders_count=4, revenue=9000, last_order_at=now - dt.timedelta(days=2)))
        conn.execute(update(Contact).where(Contact.id == contact_of(hub_db, "6")).values(deleted_at=now))
        conn.execute(update(ExternalRef).where(ExternalRef.external_id == "7").values(deleted_at=now))
    set_score(hub_db, "6", 99)
    set_score(hub_db, "7", 99)
    crm_push.push(hub_db.engine, hub_db.settings)
    assert crm.sent() == [("3", "lifecycle", "regular")]


def test_a_refusing_crm_keeps_what_was_pushed_and_gets_it_again(hub_db: HubDB, crm: Crm) -> None:
    crm_push.push(hub_db.engine, hub_db.settings)
    crm.sent()
    before = pushed(hub_db)
    set_score(hub_db, "1", 30)
    set_score(hub_db, "2", 31)
    crm.options = {"refuse": True}
    report = crm_push.push(hub_db.engine, hub_db.settings)
    assert report.sources["sample"].error == "503 Service Unavailable" and report.sources["sample"].failed == 2
    assert pushed(hub_db) == before

    crm.options = {"skip": ["2"]}  # the CRM wrote one record of the two (the other is locked there, say)
    crm.sent()
    report = crm_push.push(hub_db.engine, hub_db.settings)
    assert sorted(crm.sent()) == [("1", "lead_score", 30), ("2", "lead_score", 31)]
    assert (report.sources["sample"].written, report.sources["sample"].failed) == (1, 1)
    assert pushed(hub_db)["1"]["lead_score"] == 30 and pushed(hub_db)["2"]["lead_score"] == 0

    crm.options = {}
    crm_push.push(hub_db.engine, hub_db.settings)
    assert crm.sent() == [("2", "lead_score", 31)]


def test_a_record_the_crm_refuses_holds_back_nobody_after_it(hub_db: HubDB, crm: Crm) -> None:
    crm.options = {"poison": ["5"]}
    for run in range(2):  # the next run meets the refused record again, and again passes it
        report = crm_push.push(hub_db.engine, hub_db.settings, page=4)
        part = report.sources["sample"]
        assert (part.written, part.failed) == ((9, 1) if run == 0 else (0, 1))
        assert part.error == "Bitrix24: ERROR_CORE: record is locked"
        assert "lead_score" in pushed(hub_db)["10"] and pushed(hub_db)["5"] == {}
    crm.sent()
    crm.options = {"refuse": True}  # a CRM that refuses everything is not asked once per record
    set_score(hub_db, "1", 50)
    for ext in map(str, range(1, 11)):
        set_score(hub_db, ext, 60)
    crm_push.push(hub_db.engine, hub_db.settings)
    assert len(crm.calls) <= 1 + crm_push.ISOLATE_CALLS


def test_what_a_refusing_crm_says_it_wrote_is_not_sent_again(hub_db: HubDB, crm: Crm) -> None:
    crm.options = {"poison": ["5"], "says_written": True}
    part = crm_push.push(hub_db.engine, hub_db.settings).sources["sample"]
    assert (part.written, part.failed) == (9, 1) and len(crm.calls) == 1  # no splitting needed
    assert "lead_score" in pushed(hub_db)["4"] and pushed(hub_db)["5"] == {}


def test_only_the_names_a_source_pushes_are_read_and_sent_a_page_at_a_time(hub_db: HubDB, crm: Crm) -> None:
    crm.options = {"names": ["lead_score"]}
    report = crm_push.push(hub_db.engine, hub_db.settings, page=3)
    assert [len(call) for call in crm.calls] == [3, 3, 3, 1]  # keyset pages of three references
    assert {name for _ext, name, _v in crm.sent()} == {"lead_score"}
    assert report.sources["sample"].written == 10 and pushed(hub_db)["10"] == {"lead_score": 0}

    crm.options = {"names": []}  # a connection mapping neither: not read at all
    assert crm_push.push(hub_db.engine, hub_db.settings).as_dict() == {"sources": {}, "written": 0}

    set_score(hub_db, "8", 12)
    crm.options = {"names": ["lead_score"]}
    crm_push.push(hub_db.engine, hub_db.settings, limit=1)
    assert crm.sent() == [("8", "lead_score", 12)]


def run(*args: str, code: int = 0, language: str = "en") -> Any:
    result = CliRunner().invoke(cli, list(args), env={"HUB_LANGUAGE": language})
    assert result.exit_code == code, result.output
    return result


def test_hub_crm_push_says_what_it_wrote_in_words_and_json(hub_db: HubDB, crm: Crm) -> None:
    data = json.loads(run("crm", "push", "--json").stdout)
    assert data["sources"]["sample"]["written"] == 10
    assert run("crm", "push").output == "sample: nothing changed since the last push.\n"
    set_score(hub_db, "3", 5)
    assert run("crm", "push", language="ru").output == "sample: изменилась 1 запись, записано: 1\n"
    set_score(hub_db, "3", 6)
    crm.options = {"refuse": True}
    failed = json.loads(run("crm", "push", "--json", code=1).stdout)  # a failure is an exit code in JSON too
    assert failed["sources"]["sample"]["failed"] == 1
    out = run("crm", "push", "--source", "sample", code=1).output
    assert "1 not written (sent again next time)" in out and "503 Service Unavailable" in out
    assert "Error: no source named nowhere" in run("crm", "push", "--source", "nowhere", code=1).output
    assert "--json" in run("crm", "push", "--help").output


def test_the_schedule_hands_a_push_to_the_queue_and_can_be_switched_off(hub_db: HubDB, crm: Crm,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    found = schedule.schedules(hub_db.settings)
    assert found["crm_push"].every == dt.timedelta(seconds=300)
    handed: list[tuple[str, Any]] = []

    def hand_out(settings: Any, name: str, func: Any, *args: Any) -> str:
        handed.append((name, args))
        return "started"

    monkeypatch.setattr(schedule, "hand_out", hand_out)
    run_ = schedule.ScheduledRun(hub_db.settings, hub_db.engine, utcnow())
    assert crm_push.push_all(run_) == {"sample": "started"}
    assert handed == [("crm_push:sample", ("sample",))]
    assert crm_push.push_source("sample") == {"changed": 10, "sent": 20, "written": 10}

    monkeypatch.setenv("HUB_CRM_PUSH_INTERVAL_S", "0")
    from hub.config import load_settings

    assert "crm_push" not in schedule.schedules(load_settings())


# --- against the Bitrix24 emulator ----------------------------------------------------------------

def test_scores_appear_in_the_bitrix24_portal_fields(hub_db: HubDB, plugin_manager: Any) -> None:
    from pathlib import Path

    import plugins.bitrix24 as bitrix24_plugin
    from plugins.bitrix24.sandbox import Portal, SandboxServer

    Path("hub.toml").write_text('[bitrix24]\nfields = { lead_score = "UF_CRM_SCORE", lifecycle = "UF_CRM_STAGE" }\n',
                                encoding="utf-8")
    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    bitrix24_plugin.register_commands(cli)
    server = SandboxServer(Portal(contacts=12, seed=5, today=dt.date(2026, 12, 1))).start()
    try:
        run("connect", "bitrix24", "--webhook", server.webhook_url)
        run("sync", "bitrix24", "--full")
        first = json.loads(run("crm", "push", "--json").stdout)["sources"]["bitrix24"]
        assert first["written"] == first["changed"] > 0 and first["failed"] == 0
        with hub_db.engine.connect() as conn:
            ext = conn.execute(select(ExternalRef.external_id).where(ExternalRef.source == "bitrix24")
                               .order_by(ExternalRef.id)).scalars().first()
        assert ext is not None
        cid = contact_of_source(hub_db, "bitrix24", ext)
        with hub_db.engine.begin() as conn:
            conn.execute(delete(LeadScore).where(LeadScore.contact_id == cid))
            conn.execute(insert_for(conn, LeadScore.__table__).values(contact_id=cid, score=42, updated_at=utcnow()))
        second = json.loads(run("crm", "push", "--json").stdout)["sources"]["bitrix24"]
        assert (second["changed"], second["sent"], second["written"]) == (1, 1, 1)
        assert float(server.portal.contact(int(ext))["UF_CRM_SCORE"]) == 42
        assert json.loads(run("crm", "push", "--json").stdout)["sources"]["bitrix24"]["changed"] == 0
    finally:
        server.stop()
        server.portal.close()


def contact_of_source(db: HubDB, source: str, external_id: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(ExternalRef.contact_id).where(ExternalRef.source == source,
                                                                 ExternalRef.external_id == external_id)).scalar_one()
