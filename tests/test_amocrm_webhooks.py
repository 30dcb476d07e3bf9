"""The amoCRM webhook receiver, through the admin app's test client."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

import plugins.amocrm
from hub.admin import create_app
from plugins.amocrm import tokens, webhooks
from tests.conftest import HubDB

# What amoCRM posts (application/x-www-form-urlencoded), flattened.
FORM_TYPE = "application/x-www-form-urlencoded"
FORM = [
    ("contacts[update][0][id]", "30000012"), ("contacts[update][0][name]", "Анна Смирнова"),
    ("contacts[update][0][custom_fields][0][id]", "1000001"),
    ("contacts[update][0][custom_fields][0][values][0][value]", "+79161234567"),
    ("contacts[update][0][type]", "contact"),
    ("contacts[update][1][id]", "35000001"), ("contacts[update][1][type]", "company"),
    ("contacts[delete][0][id]", "30000013"), ("contacts[delete][0][type]", "contact"),
    ("leads[status][0][id]", "40000007"), ("leads[status][0][status_id]", "142"),
    ("leads[status][0][old_status_id]", "7100012"), ("leads[status][0][pipeline_id]", "7000001"),
    ("leads[add][0][id]", "40000008"), ("leads[status][1][id]", "40000007"),
    ("account[subdomain]", "shop"), ("account[id]", "31000001"),
]


@pytest.fixture
def app(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    # hook:register_routes
    plugin_manager.register(plugins.amocrm)
    tokens.save(hub_db.engine, hub_db.settings, {**tokens.long_lived_connection("https://shop.amocrm.ru", "llt"),
                                                 "webhook_secret": "s3cret-path-token",
                                                 "account": {"subdomain": "shop"}})
    queued: list[tuple[Any, ...]] = []

    def enqueue(settings: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        assert kwargs.get("background") is True
        queued.append((func.__name__, *args))

    monkeypatch.setattr(webhooks, "enqueue", enqueue)
    application = create_app(hub_db.settings)
    application.config["QUEUED"] = queued
    return application


def test_parse_groups_ids_by_entity_and_skips_companies() -> None:
    assert webhooks.parse(FORM) == {"contacts": ["30000013", "30000012"], "orders": ["40000008", "40000007"]}


def test_an_event_enqueues_a_targeted_fetch_and_answers_at_once(app: Any) -> None:
    response = app.test_client().post("/hooks/amocrm/s3cret-path-token", data=urlencode(FORM), content_type=FORM_TYPE)
    assert response.status_code == 200
    assert sorted(app.config["QUEUED"]) == [("fetch_records", "amocrm", "contacts", ["30000013", "30000012"]),
                                            ("fetch_records", "amocrm", "orders", ["40000008", "40000007"])]


def test_a_wrong_secret_is_refused_and_not_logged(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    response = app.test_client().post("/hooks/amocrm/s3cret-path-tokeX", data=urlencode(FORM), content_type=FORM_TYPE)
    assert response.status_code == 404
    assert app.config["QUEUED"] == []
    assert "wrong secret" in caplog.text and "s3cret" not in caplog.text


def test_an_event_from_another_account_is_ignored(app: Any) -> None:
    other = [(k, v) for k, v in FORM if k != "account[subdomain]"] + [("account[subdomain]", "stranger")]
    response = app.test_client().post("/hooks/amocrm/s3cret-path-token", data=urlencode(other),
                                       content_type=FORM_TYPE)
    assert response.status_code == 200 and app.config["QUEUED"] == []
