"""Switching a workflow on asks first, with the forecast's numbers; over a limit, only an admin may."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from hub import consent, sync
from hub.admin.audit import audit_t
from hub.db import utcnow
from hub.models import Contact
from hub.records import ContactRecord, OrderRecord
from tests.support.admin import AdminEnv, admin_env, client_as, plain, post, text  # noqa: F401
from workflows import forecast, store
from workflows.models import WorkflowRow, WorkflowRun

NAME = "reactivation_90d"


@pytest.fixture
def env(admin_env: AdminEnv) -> AdminEnv:  # noqa: F811
    """Anna and nine more who have not bought for 120 days and agreed to letters: all dormant."""
    now = utcnow()
    records: list[Any] = []
    for i in range(9):
        records.append(ContactRecord(source="bitrix24", external_id=f"d{i}", first_name=f"Дарья{i}",
                                     last_name="Спящая", emails=[f"d{i}@example.ru"]))
        records.append(OrderRecord(source="bitrix24", external_id=f"od{i}", contact_external_id=f"d{i}",
                                   amount=Decimal("900"), status="won", closed_at=now - dt.timedelta(days=120)))
    with admin_env.engine.begin() as conn:
        sync.write_page(conn, records, admin_env.settings, sync.Counts())
        for cid in conn.execute(select(Contact.id).where(Contact.last_name == "Спящая")).scalars():
            consent.record(conn, cid, "email", "marketing", "granted", source="test", settings=admin_env.settings)
        store.install_library(conn)
    return admin_env


def limit(env: AdminEnv, value: int) -> None:
    settings = env.app.config["HUB_SETTINGS"]
    env.app.config["HUB_SETTINGS"] = replace(settings, extra={**settings.extra,
                                                              "workflows_confirm_admin_over": value})


def enabled(env: AdminEnv, name: str = NAME) -> bool:
    with env.engine.connect() as conn:
        return bool(conn.execute(select(WorkflowRow.enabled).where(WorkflowRow.name == name)).scalar_one())


def expected(page: str) -> int:
    found = re.search(r'name="expected" value="(\d+)"', page)
    assert found, page
    return int(found.group(1))


def test_the_confirmation_shows_the_forecasts_numbers_and_switches_on(env: AdminEnv) -> None:
    marketer = client_as(env, "marketer")
    page = marketer.get(f"/workflows/{NAME}/enable")
    assert page.status_code == 200
    body = text(page)
    report = forecast.forecast(env.engine, env.settings, NAME, days=14)
    assert report["would_start"] > 0
    assert expected(body) == report["would_start"]
    assert re.search(r'id="enable-would-start">(\d+)<', body).group(1) == str(report["would_start"])
    assert re.search(r'id="enable-holdout">(\d+)<', body).group(1) == str(report["holdout"])
    assert re.search(r'data-channel="email">(\d+)<', body).group(1) == str(report["messages"]["email"])
    codes = sum(d.get("promo_code", 0) for d in report["by_day"])
    assert re.search(r'id="enable-promo">(\d+)<', body).group(1) == str(codes)
    summary = plain(page)
    assert "Сразу войд" in summary and "За 14 дней:" in summary and "промокод" in summary
    assert 'data-chart="bar"' in body and 'id="enable-chart-data"' in body
    with env.engine.connect() as conn:
        assert conn.execute(select(WorkflowRun.id)).first() is None  # asking wrote nothing
    done = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(expected(body))},
                follow_redirects=True)
    assert "включён" in text(done) and enabled(env)
    with env.engine.connect() as conn:
        entry = conn.execute(select(audit_t.c.details).where(audit_t.c.action == "workflow_enabled")).scalar_one()
    assert entry["confirmed"]["would_start"] == report["would_start"]
    assert entry["confirmed"]["messages"] == report["messages"] and entry["confirmed"]["promo_codes"] == codes


def test_stale_or_missing_numbers_are_shown_again_instead_of_switching_on(env: AdminEnv) -> None:
    marketer = client_as(env, "marketer")
    now = expected(text(marketer.get(f"/workflows/{NAME}/enable")))
    stale = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(now + 100)})
    assert stale.status_code == 409 and "Цифры изменились" in text(stale)
    assert expected(text(stale)) == now and not enabled(env)
    for forged in ("", "abc", "-1", "1" * 40):
        asked = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": forged})
        assert asked.status_code == 302 and asked.headers["Location"].endswith(f"/workflows/{NAME}/enable")
    assert not enabled(env)
    close = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(now + 3)},
                 follow_redirects=True)  # a small drift: the person saw the same picture
    assert "включён" in text(close) and enabled(env)
    off = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "0"}, follow_redirects=True)  # off: no question
    assert "выключен" in text(off) and not enabled(env)


def test_over_the_limit_only_an_admin_may_switch_on(env: AdminEnv) -> None:
    limit(env, 0)
    marketer = client_as(env, "marketer")
    page = marketer.get(f"/workflows/{NAME}/enable")
    assert "Включить может только администратор" in text(page) and 'id="enable-form"' not in text(page)
    number = forecast.forecast(env.engine, env.settings, NAME, days=14)["would_start"]
    refused = post(marketer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(number)})
    assert refused.status_code == 403 and "Включить может только администратор" in text(refused)
    assert not enabled(env)
    admin = client_as(env, "admin")
    page = admin.get(f"/workflows/{NAME}/enable")
    assert 'id="enable-form"' in text(page)
    done = post(admin, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": str(expected(text(page)))},
                follow_redirects=True)
    assert "включён" in text(done) and enabled(env)


def test_a_viewer_sees_the_numbers_but_no_button_and_cannot_post(env: AdminEnv) -> None:
    viewer = client_as(env, "viewer")
    page = viewer.get(f"/workflows/{NAME}/enable")
    assert page.status_code == 200 and 'id="enable-summary"' in text(page) and 'id="enable-form"' not in text(page)
    assert f'/workflows/{NAME}/enable"' not in text(viewer.get("/workflows/"))  # no «Включить» in the list
    refused = post(viewer, f"/workflows/{NAME}/enabled", {"enabled": "1", "expected": "1"})
    assert refused.status_code == 403 and not enabled(env)
    assert viewer.get("/workflows/no_such_workflow/enable").status_code == 404


def test_an_event_workflow_says_the_forecast_cannot_foresee_events(env: AdminEnv) -> None:
    marketer = client_as(env, "marketer")
    page = plain(marketer.get("/workflows/post_purchase_feedback/enable"))
    assert "Будущие события прогноз предсказать не может" in page
    assert "id=\"enable-event\"" in page
    done = post(marketer, "/workflows/post_purchase_feedback/enabled", {"enabled": "1", "expected": "0"},
                follow_redirects=True)
    assert "включён" in text(done) and enabled(env, "post_purchase_feedback")


def test_the_command_line_prints_the_numbers_and_asks_for_yes_over_the_limit(env: AdminEnv) -> None:
    import workflows
    from click.testing import CliRunner
    from tests.support.cli import cli

    workflows.register_commands(cli)
    over = CliRunner().invoke(cli, ["workflows", "enable", NAME],
                              env={"HUB_WORKFLOWS_CONFIRM_ADMIN_OVER": "0", "HUB_LANGUAGE": "en"})
    assert over.exit_code == 1 and "Error:" in over.output and "--yes" in over.output
    assert "would enter at once" in over.output and "Within 14 days:" in over.output
    assert not enabled(env)
    bad = CliRunner().invoke(cli, ["workflows", "enable", NAME], env={"HUB_WORKFLOWS_CONFIRM_ADMIN_OVER": "many"})
    assert bad.exit_code == 1 and "confirm_admin_over" in bad.output and not enabled(env)
    done = CliRunner().invoke(cli, ["workflows", "enable", NAME, "--yes"],
                              env={"HUB_WORKFLOWS_CONFIRM_ADMIN_OVER": "0"})
    assert done.exit_code == 0, done.output
    assert "Сразу войд" in done.output and "За 14 дней:" in done.output and "включён" in done.output
    assert enabled(env)
    under = CliRunner().invoke(cli, ["workflows", "enable", "welcome"])  # under the default limit of 1000
    assert under.exit_code == 0, under.output
    assert enabled(env, "welcome") and "события отслеживаются, когда сценарий включён" in under.output
    assert "--yes" in CliRunner().invoke(cli, ["workflows", "enable", "--help"]).output
