"""Segments as a user meets them: sync a CRM with known purchase histories, then count, refresh, explain.

Everything runs on SQLite and PostgreSQL (hub_db). The shop below is built
relative to the moment the test runs, so the command line (which uses the
real clock) sees the same histories on any day.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from hub import i18n, sync
from hub.db import bulk_insert, utcnow
from hub.hookspecs import hookimpl
from hub.models import Contact, LeadScore, SegmentMember
from hub.records import ContactRecord, OrderRecord
from hub.segments import membership, store
from hub.segments.evaluate import Segments
from hub.segments.rules import SegmentError
from hub.sync import Page
from tests.conftest import HubDB
from tests.plugins import segment_fields
from tests.support.cli import cli


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests read messages in English, as the code writes them (tests/test_admin_russian.py reads Russian)."""
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    with i18n.use_language("en"):
        yield

pytestmark = pytest.mark.both_databases  # segments compile to each dialect's SQL

NOW = utcnow()
TODAY_IN_MOSCOW = NOW.astimezone(dt.timezone(dt.timedelta(hours=3))).date()


def birthday_in(days: int) -> dt.date:
    day = TODAY_IN_MOSCOW + dt.timedelta(days=days)
    return day.replace(year=1992)  # a leap year, so even 29 February exists


# name -> (city, tags, birthday, orders as (status, amount, days ago))
SHOP: dict[str, tuple[str | None, list[str], dt.date | None, list[tuple[str, str, int]]]] = {
    "Анна": ("Москва", [], birthday_in(3), [("won", "1200", 200), ("won", "800", 120)]),       # inactive
    "Борис": ("Тула", ["opt-out-city"], None, [("won", "500", 10)]),                          # working
    "Вера": ("Москва", [], None, [("won", "700", 5), ("won", "900", 40), ("won", "300", 60)]),  # regular
    "Глеб": ("Казань", [], birthday_in(30), [("won", "150000", 3)]),                           # vip by revenue
    "Дина": (None, ["vip"], None, [("won", "1000", 20)]),                                      # vip by tag
    "Егор": ("Москва", [], None, [("won", "2500", 400)]),                                      # dead
    "Жанна": ("Тула", [], None, [("lost", "900", 15)]),                                        # potential
    "Зоя": (None, [], birthday_in(9), []),                                                     # potential
}


class ShopCRM:
    """A CRM export with known purchase histories (read in full every time)."""

    name = "shop"

    def entities(self) -> tuple[str, ...]:
        return ("contacts", "orders")

    def checkpoint(self, entity: str) -> str:
        return "1"

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[Page]:
        records: list[Any] = []
        for i, (first, (city, tags, birthday, orders)) in enumerate(SHOP.items(), 1):
            if entity == "contacts":
                records.append(ContactRecord(source="shop", external_id=str(i), first_name=first, city=city,
                                             tags=tags, birthday=birthday, emails=[f"c{i}@shop.ru"]))
            else:
                records += [OrderRecord(source="shop", external_id=f"{i}-{n}", contact_external_id=str(i),
                                        amount=Decimal(amount), status=status,  # type: ignore[arg-type]
                                        closed_at=NOW - dt.timedelta(days=days))
                            for n, (status, amount, days) in enumerate(orders)]
        yield Page(records, "1")

    @hookimpl
    def register_sources(self, register: Any) -> None:
        register("shop", lambda settings: self)


class Listener:
    """Records what segment_changed is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int], list[int]]] = []

    @hookimpl
    def segment_changed(self, conn: Any, segment: str, entered: list[int], exited: list[int]) -> None:
        assert conn.in_transaction()
        self.calls.append((segment, list(entered), list(exited)))


def hub(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    return result


def hub_json(*args: str) -> Any:
    result = hub(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def shop(hub_db: HubDB, plugin_manager: Any) -> dict[str, int]:
    """The shop synced the way a user does it; returns contact ids by first name."""
    plugin_manager.register(ShopCRM())
    result = hub("sync", "shop", "--json")
    assert result.exit_code == 0, result.output
    ids = {c["first_name"]: c["id"] for c in hub_json("contacts", "list")}
    assert hub("consent", "set", str(ids["Анна"]), "email", "marketing", "granted").exit_code == 0
    assert hub("consent", "set", str(ids["Егор"]), "email", "marketing", "granted").exit_code == 0
    assert hub("consent", "set", str(ids["Егор"]), "email", "marketing", "withdrawn").exit_code == 0
    assert hub("consent", "set", str(ids["Вера"]), "email", "marketing", "granted").exit_code == 0
    return ids


def names(ids: dict[str, int], members: list[int]) -> set[str]:
    by_id = {v: k for k, v in ids.items()}
    return {by_id[m] for m in members}


def write_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_built_in_segments_count_what_the_purchase_histories_say(shop: dict[str, int]) -> None:
    expected = {
        "potential": {"Жанна", "Зоя"}, "working": {"Борис"}, "regular": {"Вера"}, "vip": {"Глеб", "Дина"},
        "inactive": {"Анна"}, "dead": {"Егор"},
        "dormant_90d": {"Анна"},  # Егор bought long ago too, but withdrew his consent
        "birthday_7d": {"Анна"}, "never_bought": {"Жанна", "Зоя"}, "new_30d": set(SHOP),
    }
    for segment, who in expected.items():
        assert hub_json("segments", "count", segment) == {"segment": segment, "count": len(who)}
        members = hub_json("segments", "members", segment)
        assert names(shop, [m["id"] for m in members]) == who, segment
    contacts = hub_json("contacts", "list")
    stages = {c["first_name"]: c["lifecycle"] for c in contacts}
    for stage in ("potential", "working", "regular", "vip", "inactive", "dead"):
        assert {n for n, s in stages.items() if s == stage} == expected[stage]


def test_segments_written_in_the_language_count_exactly(shop: dict[str, int], tmp_path: Path) -> None:
    nested = write_file(tmp_path, "moscow_lapsed.yaml", """
name: moscow_lapsed
title: Bought before, quiet for 90 days, in the big cities or not opted out of city mailings
rule:
  all:
    - {field: orders.count, op: gte, value: 1}
    - {field: orders.last_at, op: before, value: -90d}
    - any:
        - {field: contact.city, op: in, value: [Москва, Санкт-Петербург]}
        - {not: {field: contact.tags, op: contains, value: opt-out-city}}
""")
    added = hub_json("segments", "add", nested)
    assert added == {"segment": "moscow_lapsed", "created": True, "count": 2}  # Анна, Егор
    reuse = write_file(tmp_path, "reuse.json", json.dumps({
        "name": "lapsed_or_vip", "rule": {"any": [{"segment": "moscow_lapsed"}, {"segment": "vip"}]}}))
    assert hub_json("segments", "add", reuse)["count"] == 4
    quiet = write_file(tmp_path, "quiet.yaml", """
name: quiet_buyers
rule:
  all:
    - {segment: lapsed_or_vip}
    - not: {field: consent.email.marketing, op: eq, value: granted}
    - {field: contact.first_name, op: matches, value: ЕГ}
""")
    assert hub_json("segments", "add", quiet)["count"] == 1
    members = hub_json("segments", "members", "quiet_buyers")
    assert [m["id"] for m in members] == [shop["Егор"]] and members[0]["entered_at"] is None
    listed = {s["name"]: s for s in hub_json("segments", "list")}
    assert listed["quiet_buyers"]["builtin"] is False and listed["dormant_90d"]["builtin"] is True
    text = hub("segments", "list")
    assert text.exit_code == 0 and "moscow_lapsed" in text.output and "built-in" in text.output
    shown = hub("segments", "show", "moscow_lapsed")
    assert "opt-out-city" in shown.output and "Санкт-Петербург" in shown.output
    segment_contacts = hub_json("contacts", "list", "--segment", "lapsed_or_vip")
    assert {c["first_name"] for c in segment_contacts} == {"Анна", "Егор", "Глеб", "Дина"}
    assert all("lead_score" in c for c in segment_contacts)


def test_bad_rules_end_in_one_error_line(shop: dict[str, int], tmp_path: Path) -> None:
    typo = write_file(tmp_path, "typo.yaml", """
name: typo
rule:
  all:
    - {field: orders.count, op: gte, value: 1}
    - {field: orders.last_at, op: befor, value: -90d}
""")
    result = hub("segments", "add", typo)
    assert result.exit_code == 1
    assert result.output == ("Error: typo.yaml: rule.all[1].op: 'befor' is not an operator for orders.last_at; "
                             "did you mean 'before'?\n")
    loop = write_file(tmp_path, "loop.yaml", "name: loop\nrule: {segment: loop}\n")
    assert hub("segments", "add", loop).output == ("Error: loop.yaml: rule.segment: loop → loop: "
                                                   "a segment cannot contain itself\n")
    builtin = write_file(tmp_path, "vip.yaml", "name: vip\nrule: {field: orders.count, op: gt, value: 5}\n")
    assert hub("segments", "add", builtin).output == ("Error: vip.yaml: 'vip' is a built-in segment; "
                                                      "save yours under another name\n")
    missing = hub("segments", "count", "dormant_9d")
    assert missing.exit_code == 1
    assert missing.output == ("Error: no segment named 'dormant_9d'; did you mean 'dormant_90d'? "
                              "(see `hub segments list`)\n")
    assert hub("contacts", "list", "--segment", "nope").output.startswith("Error: no segment named 'nope'")
    assert hub("segments", "remove", "vip").output == "Error: 'vip' is a built-in segment and cannot be removed\n"
    not_yaml = write_file(tmp_path, "broken.yaml", "name: [\n")
    assert hub("segments", "add", not_yaml).output.startswith("Error: broken.yaml: not valid YAML (")
    assert hub("segments", "explain", "vip", "999999").output == "Error: no contact with id 999999\n"


def test_refresh_records_who_entered_and_left_and_tells_plugins(shop: dict[str, int], plugin_manager: Any,
                                                                 hub_db: HubDB, tmp_path: Path) -> None:
    # hook:segment_changed
    listener = Listener()
    plugin_manager.register(listener)
    report = hub_json("segments", "refresh")
    by_name = {s["segment"]: s for s in report["segments"]}
    assert by_name["dormant_90d"] == {**by_name["dormant_90d"], "mode": "full", "members": 1, "entered": 1,
                                      "exited": 0}
    assert report["lead_score"]["contacts"] == len(SHOP)
    assert ("dormant_90d", [shop["Анна"]], []) in listener.calls
    assert all(entered or exited for _, entered, exited in listener.calls)  # only real changes are told

    listener.calls.clear()
    assert hub("consent", "set", str(shop["Анна"]), "email", "marketing", "withdrawn").exit_code == 0
    assert hub("consent", "set", str(shop["Егор"]), "email", "marketing", "granted").exit_code == 0
    report = hub_json("segments", "refresh", "dormant_90d")
    assert report["segments"] == [{**report["segments"][0], "members": 1, "entered": 1, "exited": 1}]
    assert listener.calls == [("dormant_90d", [shop["Егор"]], [shop["Анна"]])]
    assert report["lead_score"] is None  # dormant_90d does not read lead scores
    explained = hub_json("segments", "explain", "dormant_90d", str(shop["Егор"]))
    assert explained["member"] is True and explained["recorded"]["member"] is True

    text = hub("segments", "refresh")
    assert text.exit_code == 0 and "Segments refreshed" in text.output and "Done in" in text.output


def test_a_large_change_reaches_plugins_in_chunks(shop: dict[str, int], plugin_manager: Any, hub_db: HubDB,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    listener = Listener()
    plugin_manager.register(listener)
    monkeypatch.setattr(membership, "HOOK_CHUNK", 3)
    membership.refresh(hub_db.engine, hub_db.settings, ["new_30d"])
    assert [len(entered) for _, entered, _ in listener.calls] == [3, 3, 2]
    assert sorted(i for _, entered, _ in listener.calls for i in entered) == sorted(shop.values())


def test_overlapping_refreshes_run_one_after_the_other(shop: dict[str, int], plugin_manager: Any,
                                                        hub_db: HubDB) -> None:
    import threading
    import time

    class SlowListener(Listener):
        @hookimpl
        def segment_changed(self, conn: Any, segment: str, entered: list[int], exited: list[int]) -> None:
            time.sleep(0.3)  # hold the refresh transaction open while the other run starts
            self.calls.append((segment, list(entered), list(exited)))

    membership.refresh(hub_db.engine, hub_db.settings, ["new_30d"])
    with hub_db.engine.begin() as conn:  # someone new arrives
        sync.write_contacts(conn, [ContactRecord(source="shop", external_id="9", first_name="Ия")], hub_db.settings,
                            sync.Counts())
    listener = SlowListener()
    plugin_manager.register(listener)
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(membership.refresh(hub_db.engine, hub_db.settings, ["new_30d"]))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.segments[0].entered for r in reports) == [0, 1]
    assert len(listener.calls) == 1


def test_refresh_is_incremental_when_the_rule_allows(shop: dict[str, int], hub_db: HubDB, tmp_path: Path) -> None:
    city = write_file(tmp_path, "tula.yaml", """
name: tula_emailable
rule:
  all:
    - {field: contact.city, op: eq, value: Тула}
    - {field: consent.email.marketing, op: ne, value: withdrawn}
""")
    hub_json("segments", "add", city)
    first = hub_json("segments", "refresh", "tula_emailable", "dormant_90d")["segments"]
    assert [(s["segment"], s["mode"], s["members"]) for s in first] == [
        ("tula_emailable", "full", 2), ("dormant_90d", "full", 1)]
    # a sync moves Зоя to Тула; a consent answer takes Борис out
    with hub_db.engine.begin() as conn:
        sync.write_contacts(conn, [ContactRecord(source="shop", external_id="8", first_name="Зоя", city="Тула")],
                            hub_db.settings, sync.Counts())
    assert hub("consent", "set", str(shop["Борис"]), "email", "marketing", "withdrawn").exit_code == 0
    second = hub_json("segments", "refresh", "tula_emailable", "dormant_90d")["segments"]
    assert [(s["segment"], s["mode"]) for s in second] == [("tula_emailable", "incremental"), ("dormant_90d", "full")]
    assert second[0] | {"seconds": 0} == {"segment": "tula_emailable", "mode": "incremental", "members": 2,
                                          "entered": 1, "exited": 1, "seconds": 0}
    assert hub_json("segments", "refresh", "tula_emailable", "--full")["segments"][0]["members"] == 2
    # a changed rule starts over with a full refresh
    hub_json("segments", "add", write_file(tmp_path, "tula2.yaml", "name: tula_emailable\n"
                                                          "rule: {field: contact.city, op: eq, value: Тула}\n"))
    again = hub_json("segments", "refresh", "tula_emailable")["segments"][0]
    assert (again["mode"], again["members"], again["entered"]) == ("full", 3, 1)


def test_deleted_contacts_leave_segments(shop: dict[str, int], hub_db: HubDB) -> None:
    membership.refresh(hub_db.engine, hub_db.settings, ["never_bought"])
    with hub_db.engine.begin() as conn:
        conn.execute(update(Contact).where(Contact.id == shop["Зоя"]).values(deleted_at=utcnow()))
    report = membership.refresh(hub_db.engine, hub_db.settings, ["never_bought"])
    assert (report.segments[0].mode, report.segments[0].exited, report.segments[0].members) == ("incremental", 1, 1)
    assert hub_json("segments", "count", "never_bought")["count"] == 1


def test_a_merged_contact_leaves_and_its_survivor_moves(shop: dict[str, int], hub_db: HubDB,
                                                        plugin_manager: Any) -> None:
    listener = Listener()
    plugin_manager.register(listener)
    membership.refresh(hub_db.engine, hub_db.settings, ["never_bought", "working"])
    listener.calls.clear()
    # Зоя (never bought) turns out to be Борис (one recent order)
    assert hub("dedupe", "--merge", str(shop["Борис"]), str(shop["Зоя"])).exit_code == 0
    report = membership.refresh(hub_db.engine, hub_db.settings, ["never_bought", "working"])
    assert [(s.segment, s.mode, s.members) for s in report.segments] == [("never_bought", "incremental", 1),
                                                                         ("working", "full", 1)]
    assert listener.calls == [("never_bought", [], [shop["Зоя"]])]


def test_explain_shows_each_clause_and_the_points(shop: dict[str, int], hub_db: HubDB) -> None:
    data = hub_json("segments", "explain", "dormant_90d", str(shop["Егор"]))
    assert data["member"] is False and data["deleted"] is False
    clauses = data["rule"]["items"]
    assert [(c["field"], c["passed"]) for c in clauses] == [
        ("orders.count", True), ("orders.last_at", True), ("consent.email.marketing", False)]
    assert clauses[0]["seen"] == 1 and clauses[2]["seen"] == "withdrawn" and clauses[1]["value"] == "-90d"
    assert dt.datetime.fromisoformat(clauses[1]["seen"]) < NOW - dt.timedelta(days=399)
    points = {line["title"]: line["points"] for line in data["lead_score"]["lines"]}
    assert points == {"Decision maker": 0, "Won orders": 5, "Bought within 30 days": 0, "Called within 30 days": 0,
                      "Met within 90 days": 0, "No contact for 180 days": 0, "Missed call not returned": 0,
                      "Email bounced": 0}
    assert data["lead_score"]["score"] == 5 and data["lead_score"]["stored"] is None
    text = hub("segments", "explain", "dormant_90d", str(shop["Егор"]))
    assert "is not in the segment" in text.output
    assert "✗ consent.email.marketing equals granted — seen: withdrawn" in text.output
    assert "✓ orders.last_at before 90 days ago — seen: " in text.output
    assert not re.search(r"\d{4}-\d\d-\d\dT", text.output)  # moments in local time, not raw ISO
    russian = CliRunner().invoke(cli, ["segments", "explain", "dormant_90d", str(shop["Егор"])],
                                 env={"HUB_LANGUAGE": "ru"}).output
    assert "consent.email.marketing" in russian and "— значение: отозвано" in russian, russian
    assert '"' not in russian and not re.search(r"\d{4}-\d\d-\d\dT", russian), russian
    assert "  +5  Won orders" in text.output
    vera = hub_json("segments", "explain", "regular", str(shop["Вера"]))
    assert vera["member"] is True and vera["rule"]["seen"] == "regular"
    assert vera["lead_score"]["score"] == 15 + 10  # three orders, one within 30 days


def test_lead_scores_are_stored_on_refresh_and_usable_in_rules(shop: dict[str, int], hub_db: HubDB, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model = write_file(tmp_path, "score.yaml", """
- {title: Moscow, rule: {field: contact.city, op: eq, value: Москва}, points: 10}
- {title: Orders, per: orders.count, points: 7, max: 15}
- {title: Opted out, rule: {field: contact.tags, op: contains, value: opt-out-city}, points: -30}
""")
    monkeypatch.setenv("HUB_LEAD_SCORE_MODEL", model)
    hub_json("segments", "refresh")
    with hub_db.engine.connect() as conn:
        stored = dict(conn.execute(select(LeadScore.contact_id, LeadScore.score)).all())
    assert stored[shop["Вера"]] == 10 + 15 and stored[shop["Анна"]] == 10 + 14 and stored[shop["Борис"]] == 7 - 30
    assert stored[shop["Зоя"]] == 0
    hot = write_file(tmp_path, "hot.yaml", "name: hot\nrule: {field: contact.lead_score, op: gte, value: 20}\n")
    assert hub_json("segments", "add", hot)["count"] == 2  # Егор: Moscow and one order, 17
    assert names(shop, [m["id"] for m in hub_json("segments", "members", "hot")]) == {"Анна", "Вера"}
    by_id = {c["id"]: c["lead_score"] for c in hub_json("contacts", "list")}
    assert by_id == stored
    report = hub_json("segments", "refresh", "hot")
    assert report["lead_score"] is not None and report["lead_score"]["changed"] == 0
    monkeypatch.setenv("HUB_LEAD_SCORE_MODEL", write_file(tmp_path, "bad.yaml", "- {rule: {field: contact.lead_score, "
                                                                             "op: gt, value: 1}, points: 1}\n"))
    assert hub("segments", "refresh").output == ("Error: bad.yaml: [0].rule: the lead score cannot depend on "
                                                 "contact.lead_score\n")


def test_a_segment_using_a_plugin_field_is_reported_broken_without_it(shop: dict[str, int], hub_db: HubDB,
                                                                      plugin_manager: Any, tmp_path: Path) -> None:
    plugin_manager.register(segment_fields)
    survey = write_file(tmp_path, "kids.yaml", "name: has_kids\n"
                                               "rule: {field: survey.kids.answer, op: starts_with, value: да}\n")
    assert hub_json("segments", "add", survey)["count"] == 0
    plugin_manager.unregister(segment_fields)
    listed = {s["name"]: s for s in hub_json("segments", "list")}
    assert "survey.kids.answer" in listed["has_kids"]["error"]
    assert hub("segments", "count", "has_kids").output.startswith("Error: segment 'has_kids' no longer checks:")
    assert hub_json("segments", "refresh")["broken"][0]["segment"] == "has_kids"


def test_plugin_fields_and_operators_work_in_sql(shop: dict[str, int], hub_db: HubDB, plugin_manager: Any) -> None:
    plugin_manager.register(segment_fields)
    segment_fields.metadata.create_all(hub_db.engine)
    try:
        with hub_db.engine.begin() as conn:
            bulk_insert(conn, segment_fields.visits, [
                {"contact_id": shop["Анна"], "at": NOW - dt.timedelta(days=2)},
                {"contact_id": shop["Анна"], "at": NOW - dt.timedelta(days=50)},
                {"contact_id": shop["Борис"], "at": NOW - dt.timedelta(days=40)}])
            conn.execute(update(Contact).where(Contact.id == shop["Вера"]).values(
                attributes={"survey_kids": "да, двое", "survey_nps": "9"}))
            conn.execute(update(Contact).where(Contact.id == shop["Глеб"]).values(attributes={"survey_kids": "нет"}))
        with hub_db.engine.connect() as conn:
            segments = Segments(conn, hub_db.settings)
            for rule, who in [
                ({"field": "visits.last_at", "op": "within_last", "value": "7d"}, {"Анна"}),
                ({"field": "visits.last_at", "op": "before", "value": "-30d"}, {"Борис"}),
                ({"not": {"field": "visits.last_at", "op": "not_null"}}, set(SHOP) - {"Анна", "Борис"}),
                ({"field": "survey.kids.answer", "op": "starts_with", "value": "да"}, {"Вера"}),
                ({"field": "survey.nps.answer", "op": "in", "value": ["9", "10"]}, {"Вера"}),
                ({"field": "contact.first_name", "op": "starts_with", "value": "Г"}, {"Глеб"}),
            ]:
                definition = store.parse({"name": "probe", "rule": rule}, segments.registry)
                ids = conn.execute(segments.compiler.members(definition.rule)).scalars().all()
                assert names(shop, list(ids)) == who, rule
    finally:
        segment_fields.metadata.drop_all(hub_db.engine)


def test_missing_values_and_not(shop: dict[str, int], hub_db: HubDB) -> None:
    with hub_db.engine.connect() as conn:
        segments = Segments(conn, hub_db.settings)

        def who(rule: Any) -> set[str]:
            definition = store.parse({"name": "probe", "rule": rule}, segments.registry)
            return names(shop, list(conn.execute(segments.compiler.members(definition.rule)).scalars()))

        no_city = {"Дина", "Зоя"}
        assert who({"field": "contact.city", "op": "ne", "value": "Москва"}) == {"Борис", "Глеб", "Жанна"}
        assert who({"not": {"field": "contact.city", "op": "eq", "value": "Москва"}}) == (
            {"Борис", "Глеб", "Жанна"} | no_city)
        assert who({"not": {"field": "contact.city", "op": "not_in", "value": ["Тула"]}}) == (
            {"Борис", "Жанна"} | no_city)
        assert who({"field": "contact.city", "op": "is_null"}) == no_city
        assert who({"field": "contact.city", "op": "matches", "value": "МОСК"}) == {"Анна", "Вера", "Егор"}
        assert who({"field": "contact.city", "op": "matches", "value": "%"}) == set()
        assert who({"field": "orders.avg", "op": "eq", "value": "1000"}) == {"Анна", "Дина"}
        # Вера's average is 1900 / 3 = 633.333…: above 633.33, below 633.34
        assert who({"field": "orders.avg", "op": "gt", "value": "633.33"}) == {"Анна", "Вера", "Глеб", "Дина", "Егор"}
        assert who({"field": "orders.avg", "op": "lt", "value": "633.34"}) == {"Борис", "Вера"}
        assert who({"field": "orders.avg", "op": "is_null"}) == {"Жанна", "Зоя"}
        assert who({"field": "contact.birthday", "op": "birthday_within", "value": "1m"}) == {"Анна", "Глеб", "Зоя"}


def test_consent_ties_are_broken_by_recording_order(shop: dict[str, int], hub_db: HubDB) -> None:
    from hub import consent

    at = NOW - dt.timedelta(days=1)
    with hub_db.engine.begin() as conn:
        consent.record(conn, shop["Глеб"], "sms", "news", "granted", source="a", at=at)
        consent.record(conn, shop["Глеб"], "sms", "news", "withdrawn", source="b", at=at)
        consent.record(conn, shop["Дина"], "sms", "news", "withdrawn", source="a", at=at)
        consent.record(conn, shop["Дина"], "sms", "news", "granted", source="old paper form", at=at - dt.timedelta(1))
        current = consent.current(conn, shop["Глеб"])[("sms", "news")]
    assert current == "withdrawn"
    with hub_db.engine.connect() as conn:
        segments = Segments(conn, hub_db.settings)
        for status, who in [("granted", set()), ("withdrawn", {"Глеб", "Дина"}),
                            ("none", set(SHOP) - {"Глеб", "Дина"})]:
            definition = store.parse({"name": "p", "rule": {"field": "consent.sms.news", "op": "eq", "value": status}},
                                     segments.registry)
            assert names(shop, list(conn.execute(segments.compiler.members(definition.rule)).scalars())) == who


def test_remove_refuses_while_another_segment_uses_it(shop: dict[str, int], tmp_path: Path, hub_db: HubDB) -> None:
    hub_json("segments", "add", write_file(tmp_path, "a.yaml", "name: base_a\nrule: {segment: vip}\n"))
    hub_json("segments", "add", write_file(tmp_path, "b.yaml", "name: base_b\nrule: {not: {segment: base_a}}\n"))
    hub_json("segments", "refresh", "base_a")
    result = hub("segments", "remove", "base_a")
    assert result.output == "Error: segment 'base_a' is used by base_b; change or remove those first\n"
    assert hub("segments", "remove", "base_b").output == "Removed segment base_b.\n"
    assert hub("segments", "remove", "base_a").exit_code == 0
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SegmentMember)).scalar_one() == 0
    with pytest.raises(SegmentError, match="no segment named 'base_a'"):
        with hub_db.engine.connect() as conn:
            Segments(conn, hub_db.settings).count("base_a")


def test_fields_lists_the_registry_with_plugin_fields(shop: dict[str, int], plugin_manager: Any) -> None:
    plugin_manager.register(segment_fields)
    listed = {f["field"]: f for f in hub_json("segments", "fields")}
    assert listed["consent.<channel>.<purpose>"]["choices"] == ["granted", "withdrawn", "pending", "none"]
    assert "birthday_within" in listed["contact.birthday"]["operators"]
    assert listed["visits.last_at"]["type"] == "datetime"
    assert "starts_with" in listed["survey.<question>.answer"]["operators"]
    table = CliRunner().invoke(cli, ["segments", "fields"], env={"HUB_LANGUAGE": "ru", "COLUMNS": "250"}).output
    kinds = {line.split("│")[2].strip() for line in table.splitlines() if line.count("│") >= 4}
    assert {"дата", "выбор из списка", "текст", "деньги", "целое число"} <= kinds, kinds
    assert not kinds & {"choice", "date", "text", "money", "integer", "datetime"}, kinds
    english = CliRunner().invoke(cli, ["segments", "fields"], env={"COLUMNS": "250"}).output
    assert "date and time" in english and "whole number" in english


def test_the_refresh_progress_counts_segments_in_the_language_of_the_command_that_made_it() -> None:
    from rich.progress import Progress

    from hub import i18n
    from hub.segments.commands import SegmentsColumn

    with i18n.use_language("ru"):
        column = SegmentsColumn()
    with i18n.use_language("en"):
        english = SegmentsColumn()
    with Progress(column) as progress:  # rich redraws from a thread of its own, where no language is set
        task = progress.add_task("x", total=None, completed=1234)
        assert column.render(progress.tasks[task]).plain == "1\u00a0234 сегмента"
        assert english.render(progress.tasks[task]).plain == "1,234 segments"
        progress.update(task, completed=5)
        assert column.render(progress.tasks[task]).plain == "5 сегментов"
        progress.update(task, completed=1)
        assert column.render(progress.tasks[task]).plain == "1 сегмент"
