"""The admin's erase form with "also erase in the CRM", in headless Chromium, as an admin and as a marketer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from hub import queue, sync
from hub.hookspecs import hookimpl
from hub.models import AuditEntry, ExternalRef
from hub.records import ContactRecord
from tests.browser import Browser
from tests.plugins.sample_source import FakeCRM, SampleSource
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in


class AnonymisingCrm(SampleSource):
    """A CRM whose API cannot delete: it anonymises, as amoCRM does."""

    def erase_contact(self, external_id: str) -> str:
        self.crm.contacts[int(external_id)].update(first="Удалённый контакт", emails=[])
        return "anonymised"


def test_the_admin_ticks_also_erase_in_the_crm_and_reads_its_answer(live: str, browser: Browser,
                                                                    admin_env: AdminEnv, plugin_manager: Any) -> None:
    crm = FakeCRM()
    crm.add_contact(1, first="Ольга", emails=["olga@example.ru"])

    @hookimpl
    def register_sources(register: Any) -> None:
        register("shopcrm", lambda settings: AnonymisingCrm(crm))

    plugin_manager.register(SimpleNamespace(register_sources=register_sources), name="shopcrm")
    with admin_env.engine.begin() as conn:
        sync.write_page(conn, [ContactRecord(source="shopcrm", external_id="1", first_name="Ольга",
                                             emails=["olga@example.ru"])], admin_env.settings, sync.Counts())
    with admin_env.engine.connect() as conn:
        olga = conn.execute(select(ExternalRef.contact_id).where(ExternalRef.source == "shopcrm")).scalar_one()

    sign_in(browser, live, "marketer", f"/contacts/{olga}")  # a marketer sees the card, not the erase form
    assert "Ольга" in browser.text("body") and not browser.exists("input[name=in_crm]")

    browser.clear_cookies()
    sign_in(browser, live, "admin", f"/gdpr/person?contact={olga}")
    assert "Удалить и в CRM (shopcrm)" in browser.text("#erase-form")
    assert not browser.script("return document.querySelector('#erase-form input[name=in_crm]').checked")
    browser.click("#erase-form input[name=in_crm]")
    browser.fill("#erase-form input[name=confirm]", "ERASE")
    browser.click("#erase-form button")
    # The page answers at once (a CRM that is down keeps no one waiting): a worker asks the CRM.
    said = browser.wait_text("body", "Запрос в CRM отправлен")
    assert "Запрос в CRM отправлен, результат — в журнале действий." in said
    assert f"Контакт №{olga} удалён" in said and browser.exists("#erased")
    queue.drain(timeout=60)
    assert crm.contacts[1]["first"] == "Удалённый контакт"
    with admin_env.engine.connect() as conn:
        results = conn.execute(select(AuditEntry.details).where(AuditEntry.action == "gdpr.erase.sources")).scalar()
    assert results == {"results": [{"source": "shopcrm", "external_id": "1", "result": "anonymised"}]}
