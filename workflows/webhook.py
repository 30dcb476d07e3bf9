"""`webhook: {url: https://…}`: POST the run's contact and promo code as JSON to another system.

Every request carries `Idempotency-Key: workflow:RUN:STEP`, the same on every
try, so a receiver can drop a repeat: a request whose answer was lost (a
timeout, a worker that died) is sent again, like any webhook. 2xx is done; 408,
429, 5xx or no answer are tried again with backoff; any other answer parks the
run with the status code. The URL is never written to logs or errors (it often
carries a token); errors name its host only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from hub.api import N_, gettext, local_time
from workflows.steps import (Checking, FormField, Options, Outcome, Step, StepCall, StepError, StepFailed,
                             kind_title)

TIMEOUT_S = 10
RETRY_STATUSES = (408, 425, 429)


class WebhookUnavailable(RuntimeError):
    """The receiver did not answer or asked to try later; the step is tried again."""


class Webhook(Step):
    """`webhook: {url: https://crm.example.ru/hooks/hub, timeout: 10}`."""

    name = "webhook"
    kind_title = N_("Webhook")
    kind_summary = N_("Sends the contact's data to another system's address (an HTTP POST).")
    needs_contact = True
    form = (FormField("url", "url", N_("Address"), required=True, placeholder="https://example.ru/hook"),
            FormField("timeout", "integer", N_("Wait for an answer, seconds"), placeholder="10"))
    shorthand = "url"

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options(options, ("url", "timeout"), shorthand="url", example="{url: https://example.ru/hook}")
        url = opts.require("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise StepError(gettext("expected an http:// or https:// address"), "url")
        timeout = opts.get("timeout", TIMEOUT_S)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 120:
            raise StepError(gettext("give the seconds to wait, from 1 to 120"), "timeout")
        self.url, self.timeout, self.host = url, float(timeout), parts.hostname

    def label(self) -> str:
        return f"webhook {self.host}"

    def phrase(self) -> str:
        return f"{kind_title(self)}: {self.host}"

    def payload(self, call: StepCall) -> dict[str, Any]:
        contact = call.contact or {}
        promo = call.promo
        return {
            "workflow": call.run.workflow, "run": call.run.id, "step": call.shown_number(), "at": call.now.isoformat(),
            "contact": {k: contact.get(k) for k in ("id", "first_name", "last_name", "email", "phone")},
            "promo": None if promo is None else {
                "code": promo["code"], "discount": float(promo["discount"]),
                "expires_at": local_time(call.settings, promo["expires_at"]).isoformat()},
            "trigger": call.run.trigger, "context": dict(call.run.context),
        }

    def run(self, call: StepCall) -> Outcome:
        try:
            answer = requests.post(self.url, json=self.payload(call), timeout=self.timeout,
                                   headers={"Idempotency-Key": call.key, "User-Agent": "Hub workflows"})
        except requests.RequestException as exc:
            raise WebhookUnavailable(f"{self.host} did not answer ({type(exc).__name__})") from None
        if answer.ok:
            return Outcome.done({"status": answer.status_code})
        if answer.status_code in RETRY_STATUSES or answer.status_code >= 500:
            raise WebhookUnavailable(f"{self.host} answered HTTP {answer.status_code}")
        raise StepFailed(f"{self.host} refused the webhook: HTTP {answer.status_code}")
