"""POST /api/v1/workflows/{name}/enroll: a contact enters a workflow by its own rules, once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update

from hub import identity, sync
from hub.admin.app import create_app
from hub.db import utcnow
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.support.shop import runs_of, use_workflows
from tests.test_api_gate import auth, is_problem, make_key
from workflows import store, triggers
from workflows.models import WorkflowRun

pytestmark = pytest.mark.both_databases  # the run's uniqueness (ON CONFLICT), merges

ONCE = {"name": "api_once", "title": "Один раз", "trigger": {"event": "order.won"}, "reentry": "never",
        "steps": [{"wait": "3d"}]}
AGAIN = {**ONCE, "name": "api_again", "reentry": "30d"}
SPLIT = {**ONCE, "name": "api_split", "holdout": "50%"}
OFF = {**ONCE, "name": "api_off"}


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    db = use_workflows(hub_db, plugin_manager, monkeypatch)
    with db.engine.begin() as conn:
        for document in (ONCE, AGAIN, SPLIT, OFF):
            store.add(conn, db.settings, document)
        for name in ("api_once", "api_again", "api_split"):
            store.set_enabled(conn, name, True)
    return db


@pytest.fixture
def client(wf: HubDB) -> Any:
    return create_app(wf.settings).test_client()


@pytest.fixture
def key(wf: HubDB) -> str:
    return make_key(wf, "workflows:write")


def contact(db: HubDB, n: int, **more: Any) -> int:
    record = ContactRecord(source="shop", external_id=f"c{n}", first_name="Анна",
                           phones=[f"+7 916 400-00-{n:02d}"], **more)
    with db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [record], db.settings, sync.Counts()).contact_ids[0]
    assert cid is not None
    return cid


def enroll(client: Any, key: str, name: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(f"/api/v1/workflows/{name}/enroll", json=body, headers=auth(key, **headers))


def test_a_contact_is_enrolled_once_by_any_identifier(wf: HubDB, client: Any, key: str) -> None:
    anna = contact(wf, 1, emails=["anna@example.ru"])
    first = enroll(client, key, "api_once", {"phone": "8 (916) 400-00-01"})
    assert first.status_code == 200, first.get_data(as_text=True)
    answer = first.get_json()
    assert answer["contact_id"] == anna and answer["workflow"] == "api_once" and answer["status"] == "enrolled"
    assert answer["reason"] is None
    (run,) = runs_of(wf, "api_once")
    assert run.id == answer["run_id"] and run.trigger == "api" and run.status == "running" and run.cycle == 1
    for body in ({"contact_id": anna}, {"email": "ANNA@example.ru"},
                 {"reference": {"source": "shop", "external_id": "c1"}}):
        again = enroll(client, key, "api_once", body).get_json()
        assert again["status"] == "already_running" and again["run_id"] == run.id and again["reason"]
    with wf.engine.begin() as conn:  # the run ends: "never" keeps the contact out for good
        conn.execute(update(WorkflowRun).values(status="done", finished_at=utcnow()))
    done = enroll(client, key, "api_once", {"contact_id": anna}).get_json()
    assert done["status"] == "not_eligible" and "never" in done["reason"] and done["run_id"] == run.id
    assert len(runs_of(wf, "api_once")) == 1


def test_a_repeat_with_the_idempotency_key_changes_nothing(wf: HubDB, client: Any, key: str) -> None:
    anna = contact(wf, 2)
    first = enroll(client, key, "api_once", {"contact_id": anna}, **{"Idempotency-Key": "e-1"})
    again = enroll(client, key, "api_once", {"contact_id": anna}, **{"Idempotency-Key": "e-1"})
    assert again.get_json() == first.get_json() and again.headers["Idempotent-Replayed"] == "true"
    assert len(runs_of(wf, "api_once")) == 1


def test_reentry_lets_a_contact_in_again_after_its_period(wf: HubDB, client: Any, key: str) -> None:
    anna = contact(wf, 3)
    assert enroll(client, key, "api_again", {"contact_id": anna}).get_json()["status"] == "enrolled"
    with wf.engine.begin() as conn:
        conn.execute(update(WorkflowRun).values(status="done", finished_at=utcnow()))
    soon = enroll(client, key, "api_again", {"contact_id": anna}).get_json()
    assert soon["status"] == "not_eligible" and "30" in soon["reason"]
    with wf.engine.begin() as conn:
        conn.execute(update(WorkflowRun).values(started_at=utcnow() - dt.timedelta(days=31)))
    later = enroll(client, key, "api_again", {"contact_id": anna}).get_json()
    assert later["status"] == "enrolled"
    assert [r.cycle for r in sorted(runs_of(wf, "api_again"), key=lambda r: r.id)] == [1, 2]


def test_the_holdout_takes_its_share(wf: HubDB, client: Any, key: str) -> None:
    people = [contact(wf, n) for n in range(10, 30)]
    held = next(c for c in people if triggers.in_holdout_name("api_split", c, 50))
    treated = next(c for c in people if not triggers.in_holdout_name("api_split", c, 50))
    out = enroll(client, key, "api_split", {"contact_id": held}).get_json()
    assert out["status"] == "held_out" and out["run_id"] and out["reason"]
    assert enroll(client, key, "api_split", {"contact_id": held}).get_json() == out  # a repeat says the same
    assert enroll(client, key, "api_split", {"contact_id": treated}).get_json()["status"] == "enrolled"
    assert {r.contact_id: r.holdout for r in runs_of(wf, "api_split")} == {held: True, treated: False}


def test_a_contact_merged_away_between_calls_is_the_survivor(wf: HubDB, client: Any, key: str) -> None:
    anna = contact(wf, 4)
    twin = contact(wf, 5)
    first = enroll(client, key, "api_once", {"contact_id": twin}).get_json()
    with wf.engine.begin() as conn:
        identity.merge_contacts(conn, anna, twin, reason={"rule": "merged by hand"}, settings=wf.settings)
    again = enroll(client, key, "api_once", {"contact_id": twin}).get_json()
    assert again["contact_id"] == anna and again["status"] == "already_running" and again["run_id"] == first["run_id"]
    by_phone = enroll(client, key, "api_once", {"phone": "+7 916 400-00-05"}).get_json()
    assert by_phone["contact_id"] == anna and by_phone["status"] == "already_running"
    assert [(r.contact_id, r.cycle) for r in runs_of(wf, "api_once")] == [(anna, 1)]


def test_unknown_switched_off_and_hostile_requests_get_problems(wf: HubDB, client: Any, key: str) -> None:
    anna = contact(wf, 6)
    missing = is_problem(enroll(client, key, "nope", {"contact_id": anna}), 404)
    assert "nope" in missing["detail"]
    off = is_problem(enroll(client, key, "api_off", {"contact_id": anna}), 409)
    assert "api_off" in off["detail"] and "hub workflows enable" in off["detail"]
    nobody = is_problem(enroll(client, key, "api_once", {"contact_id": 999_999}), 404)
    assert nobody["errors"][0]["field"] == "/contact_id"
    assert is_problem(enroll(client, key, "api_once", {"email": "nobody@example.ru"}), 404)["errors"][0][
        "field"] == "/email"
    assert is_problem(enroll(client, key, "api_once", {"phone": "12"}), 400)["errors"][0]["field"] == "/phone"
    assert is_problem(enroll(client, key, "api_once", {"email": "@@"}), 400)["errors"][0]["field"] == "/email"
    two = is_problem(enroll(client, key, "api_once", {"contact_id": anna, "email": "anna@example.ru"}), 400)
    assert two["errors"][0]["field"] == "/email"
    assert is_problem(enroll(client, key, "api_once", {}), 400)["errors"][0]["field"] == "/contact_id"
    # An id no contact can have names nobody (404); one past the largest row id is refused by the schema.
    assert is_problem(enroll(client, key, "api_once", {"contact_id": 2**40}), 404)["errors"][0]["field"] == \
        "/contact_id"
    for body in ({"contact_id": "1; drop table contacts"}, {"contact_id": 2**63}, {"reference": {"source": "x"}},
                 {"contact_id": anna, "steps": []}, {"phone": "1" * 51}, {"phone": "+7916\u00004000006"},
                 {"reference": {"source": "shop\u0000", "external_id": "c6"}}):
        is_problem(enroll(client, key, "api_once", body), 422)
    is_problem(enroll(client, key, "x" * 500, {"contact_id": anna}), 400)  # longer than any name: the gate says so
    is_problem(enroll(client, key, "api%00once", {"contact_id": anna}), 400)  # the gate checks path parameters
    is_problem(enroll(client, make_key(wf, "contacts:write"), "api_once", {"contact_id": anna}), 403)
    with wf.engine.connect() as conn:
        assert conn.execute(select(WorkflowRun.id)).first() is None


def test_a_deleted_contact_is_nobody(wf: HubDB, client: Any, key: str) -> None:
    """Deleted in every source: no live contact, as POST /orders and POST /events answer too."""
    from hub.models import Contact

    anna = contact(wf, 7)
    with wf.engine.begin() as conn:
        conn.execute(update(Contact).where(Contact.id == anna).values(deleted_at=utcnow()))
    assert is_problem(enroll(client, key, "api_once", {"contact_id": anna}), 404)["errors"][0]["field"] == \
        "/contact_id"
    assert runs_of(wf, "api_once") == []


# --- someone else's tools: schemathesis against the served document ---------------------------

ACCEPTED = ["2xx", "401", "403", "404", "409", "429"]


def attack_operation(app: Any, key: str, label: str, examples: int = 20) -> None:
    """Let schemathesis attack one operation as the served document describes it: valid requests must get
    answers the document lists (a 400 allowed: a value well-formed but meaningless), invalid ones a 4xx."""
    import itertools

    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode

    loaded = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    loaded.config.checks.positive_data_acceptance.expected_statuses = [*ACCEPTED, "400"]
    (operation,) = [r.ok() for r in loaded.get_all_operations() if r.ok().label == label]  # type: ignore[union-attr]
    numbers = itertools.count()
    failures = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink])
        def attack(case: schemathesis.Case) -> None:
            if case.headers and "Idempotency-Key" in case.headers:
                case.headers["Idempotency-Key"] = f"{next(numbers)}-" + case.headers["Idempotency-Key"][-200:]
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"})

        try:
            attack()
        except Exception as exc:  # noqa: BLE001 - both modes run; all that broke is said at once
            failures.append(f"{label} ({mode.value}):\n{exc}")
    assert not failures, "\n\n".join(failures)


def test_schemathesis_finds_nothing_wrong_with_enroll(wf: HubDB, client: Any, key: str) -> None:
    for n in range(1, 4):
        contact(wf, 40 + n)
    attack_operation(create_app(wf.settings), key, "POST /api/v1/workflows/{name}/enroll")


def test_a_segment_workflow_takes_only_the_segments_members_now(wf: HubDB, client: Any, key: str) -> None:
    """Enrolling someone who bought yesterday into a win-back would hand them a promo code meant for others."""
    from tests.support.shop import Person, make_shop

    dormant = {**ONCE, "name": "api_dormant", "trigger": {"segment": "dormant_90d"}}
    with wf.engine.begin() as conn:
        store.add(conn, wf.settings, dormant)
        store.set_enabled(conn, "api_dormant", True)
    ids = make_shop(wf, [Person("old", "Анна", None, "old@example.ru", bought_days_ago=120),
                         Person("new", "Вера", None, "new@example.ru", bought_days_ago=1)], now=utcnow())
    refused = enroll(client, key, "api_dormant", {"contact_id": ids["new"]}, **{"Accept-Language": "en"}).get_json()
    assert refused["status"] == "not_eligible" and refused["run_id"] is None
    assert "dormant_90d" in refused["reason"] and "not in the segment" in refused["reason"]
    russian = enroll(client, key, "api_dormant", {"email": "new@example.ru"}).get_json()
    assert russian["status"] == "not_eligible" and "dormant_90d" in russian["reason"]
    assert "not in the segment" not in russian["reason"]
    assert [r.contact_id for r in runs_of(wf, "api_dormant")] == []
    taken = enroll(client, key, "api_dormant", {"contact_id": ids["old"]}).get_json()
    assert taken["status"] == "enrolled"
    assert [r.contact_id for r in runs_of(wf, "api_dormant")] == [ids["old"]]


def test_a_shared_phone_or_email_names_nobody_and_says_so(wf: HubDB, client: Any, key: str) -> None:
    from tests.test_api_events import OFFICE_EMAIL, OFFICE_PHONE, office

    people = office(wf)
    for body, field in (({"phone": OFFICE_PHONE}, "/phone"), ({"email": OFFICE_EMAIL}, "/email")):
        doc = is_problem(enroll(client, key, "api_once", body, **{"Accept-Language": "en"}), 409)
        assert doc["errors"][0]["field"] == field and "several people share" in doc["detail"], doc
        assert "contact_id or reference" in doc["errors"][0]["detail"]
    assert runs_of(wf, "api_once") == []
    nobody = is_problem(enroll(client, key, "api_once", {"phone": "+74951234599"}, **{"Accept-Language": "en"}), 404)
    assert "nobody in the base" in nobody["detail"]
    assert enroll(client, key, "api_once", {"contact_id": people[0]}).get_json()["status"] == "enrolled"
