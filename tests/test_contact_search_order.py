"""Past the count's cap the page is read in parts (the exact namesakes, then the others): the same order as uncapped.

On SQLite and PostgreSQL; on PostgreSQL the words go through the folded whole name of migration 0015.
"""

from __future__ import annotations

import pytest

from hub import sync
from hub.admin import contact_search
from hub.records import ContactRecord
from tests.support.admin import AdminEnv

pytestmark = pytest.mark.both_databases


def test_pages_past_the_cap_keep_exact_namesakes_first_then_the_others_by_name(
        admin_env: AdminEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    exact = [ContactRecord(source="import:big.csv", first_name="Клиент", last_name="Тестов",
                           emails=[f"same{i:02d}@shop.example"]) for i in range(7)]
    # Each holds both words without being the name typed: in the surname, the first name or the patronymic.
    others = [ContactRecord(source="import:big.csv", first_name=f"Клиентина{i:02d}", last_name="Тестова",
                            emails=[f"other{i:02d}@shop.example"]) for i in range(9)]
    others += [ContactRecord(source="import:big.csv", first_name="Клиент", last_name=f"Не{i}", middle_name="Тестович",
                             emails=[f"middle{i:02d}@shop.example"]) for i in range(4)]
    with admin_env.engine.begin() as conn:
        sync.write_page(conn, exact + others, admin_env.settings, sync.Counts())
    with admin_env.engine.connect() as conn:
        whole = contact_search.find(conn, admin_env.settings, "тестов клиент", limit=100)
    assert whole.total == 20 and not whole.more
    names = [(r["last_name"], r["first_name"]) for r in whole.rows]
    assert names[:7] == [("Тестов", "Клиент")] * 7  # the exact name first
    assert ("Тестов", "Клиент") not in names[7:]
    every = [r["id"] for r in whole.rows]
    monkeypatch.setattr(contact_search, "TOTAL_CAP", 3)
    with admin_env.engine.connect() as conn:
        for limit, offset in ((4, 0), (4, 4), (5, 5), (3, 9), (4, 16), (10, 7)):
            page = contact_search.find(conn, admin_env.settings, "Клиент ТЕСТОВ", limit=limit, offset=offset)
            assert [r["id"] for r in page.rows] == every[offset:offset + limit], (limit, offset)
            assert page.more == (20 > max(3, offset + limit))
