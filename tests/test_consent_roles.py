"""Staff cannot forge consent: only the person's own link confirms, and staff entries say who made them.

Driven through the admin with Flask's test client, signed in as a viewer
and as a marketer, and through `hub consent set`.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub import consent, links
from hub.models import AuditEntry
from plugins.gdpr import capture
from tests.support.cli import cli
from tests.support.admin import AdminEnv, client_as, post, text


def history(env: AdminEnv, contact_id: int) -> list[dict[str, Any]]:
    with env.engine.connect() as conn:
        return consent.history(conn, contact_id)


def test_a_viewer_cannot_confirm_a_double_opt_in_with_a_link_from_a_preview(admin_env: AdminEnv) -> None:
    env = admin_env
    petrov = env.ids["markup"]  # has an email and no consent
    viewer = client_as(env, "viewer")
    page = viewer.get(f"/templates/double_opt_in_email?contact={petrov}")
    assert page.status_code == 200
    url = re.search(r"https?://[^\s\"<&]+/confirm/[A-Za-z0-9._\-]+", html.unescape(text(page))).group(0)  # type: ignore[union-attr]
    assert urlsplit(url).path == "/confirm/preview"  # a preview never carries the contact's signed link

    public = env.app.test_client()
    shown = public.get(urlsplit(url).path)
    assert shown.status_code == 200 and "предпросмотр" in text(shown)
    assert 'name="csrf_token"' not in text(shown)
    with pytest.raises(links.LinkError):
        capture.confirm(env.engine, env.settings, "preview", ip="203.0.113.5", user_agent="viewer")

    # A signed link made anywhere but in a letter to the person confirms nothing either.
    token = urlsplit(links.confirm_url(env.settings, petrov, "email")).path.rsplit("/", 1)[1]
    shown = public.get(f"/confirm/{token}")
    assert shown.status_code == 404 and "не была отправлена вам" in text(shown)
    assert 'name="csrf_token"' not in text(shown)  # no button to press
    result = capture.confirm(env.engine, env.settings, token, ip="203.0.113.5", user_agent="viewer")
    assert result.status == "unsent"
    assert history(env, petrov) == []


def test_a_viewer_cannot_record_consent_and_a_marketer_is_recorded_as_staff(admin_env: AdminEnv) -> None:
    env = admin_env
    petrov = env.ids["petrov_1"]
    form = {"channel": "sms", "purpose": "marketing", "status": "granted", "note": "бумажная анкета №5"}
    refused = post(client_as(env, "viewer"), f"/contacts/{petrov}/consent", form, token_from="/contacts/")
    assert refused.status_code == 403
    assert history(env, petrov) == []

    marketer = client_as(env, "marketer")
    done = post(marketer, f"/contacts/{petrov}/consent", form, token_from="/contacts/", follow_redirects=True)
    assert done.status_code == 200 and "внёс marketer@shop.example" in text(done)
    (event,) = history(env, petrov)
    assert event["status"] == "granted" and event["source"] == "staff:marketer@shop.example"
    assert event["evidence"]["staff_user"] == "marketer@shop.example"
    assert event["evidence"]["confirmed_by_person"] is False and event["evidence"]["note"] == "бумажная анкета №5"
    with env.engine.connect() as conn:
        actions = [(a, who) for a, who in conn.execute(select(AuditEntry.action, AuditEntry.actor))]
    assert ("consent_recorded_by_staff", "admin:marketer@shop.example") in actions
    # "pending" is not a staff answer: only a signup makes one.
    odd = post(marketer, f"/contacts/{petrov}/consent", {**form, "status": "pending"}, token_from="/contacts/",
               follow_redirects=True)
    assert "Согласие не записано" in text(odd) and len(history(env, petrov)) == 1


def test_staff_cannot_turn_a_pending_double_opt_in_into_granted(admin_env: AdminEnv) -> None:
    env = admin_env
    petrov = env.ids["petrov_2"]
    with env.engine.begin() as conn:
        consent.record(conn, petrov, "email", "news", "pending", source="form", settings=env.settings)
    marketer = client_as(env, "marketer")
    answer = post(marketer, f"/contacts/{petrov}/consent", {"channel": "email", "purpose": "news", "status": "granted",
                                                            "note": "звонок"}, token_from="/contacts/",
                  follow_redirects=True)
    assert "Согласие не записано" in text(answer) and "подтвердить может только он" in html.unescape(text(answer))
    assert [e["status"] for e in history(env, petrov)] == ["pending"]
    # Withdrawing on the person's word is fine, and named.
    post(marketer, f"/contacts/{petrov}/consent", {"channel": "email", "purpose": "news", "status": "withdrawn",
                                                   "note": "просил не писать"}, token_from="/contacts/")
    assert [(e["status"], e["source"]) for e in history(env, petrov)] == [
        ("pending", "form"), ("withdrawn", "staff:marketer@shop.example")]

    with env.engine.begin() as conn:
        consent.record(conn, petrov, "email", "surveys", "pending", source="form", settings=env.settings)
    result = CliRunner().invoke(cli, ["consent", "set", str(petrov), "email", "surveys", "granted"])
    assert result.exit_code == 1 and "подтвердить может только он" in result.output
    ok = CliRunner().invoke(cli, ["consent", "set", str(petrov), "sms", "surveys", "granted", "--source", "paper"])
    assert ok.exit_code == 0, ok.output
    last = history(env, petrov)[-1]
    assert last["source"] == "paper" and last["evidence"]["staff_user"].startswith("cli")
