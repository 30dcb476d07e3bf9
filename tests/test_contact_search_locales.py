"""The name search finds the same people on SQLite, on PostgreSQL in the C locale and in a UTF-8 one.

PostgreSQL's lower() folds Cyrillic only under a UTF-8 LC_CTYPE, the way
production databases are made; there the search reads the beginnings of the
name's words from one GIN index (hub.models.NAME_PREFIXES). In the C locale
(the rest of the suite's cluster) and on SQLite it reads the names with LIKE.
Three ways of answering one question: each query is asked of all three
databases, seeded alike, and must list the same people in the same order.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, make_url, select, text

from hub import migrations, sync
from hub.admin import contact_search
from hub.config import Settings, load_settings
from hub.db import dispose_engines, get_engine
from hub.models import Contact
from hub.records import ContactRecord
from hub.testing import every_installed_plugin
from tests.conftest import SECRET

# A word longer than the index keeps of a word's beginning (hub.models.NAME_PREFIX_MAX): found by the
# index's part of it, then checked whole.
LONG = "Оченьдлиннаядвойнаяфамилияизпрошлоговека"
PEOPLE = [  # (surname, first name, patronymic)
    ("Иванов", "Иван", "Петрович"), ("Иванова", "Мария", "Сергеевна"), ("Иванов", "Пётр", "Иванович"),
    ("Ёлкина", "Алёна", "Фёдоровна"), ("Яковлев", "Олег", "Петрович"), ("Петровичев", "Олег", "Яковлевич"),
    ("Салтыков-Щедрин", "Михаил", "Евграфович"), ("Петров", "Иван", "Андреевич"), ("ПЕТРОВА", "АННА", "ИВАНОВНА"),
    ("Ивановский", "Андрей", ""), ("Smith", "John", ""), ("Sokolov", "Petr", "Ivanovich"), ("", "Ян", ""),
    ("Андреев", "Александр", "Александрович"), ("Александров", "Андрей", "Андреевич"),
    (LONG, "Ольга", ""),
]
QUERIES = [
    "Иванов", "иванов иван", "Иван Петрович", "Петрович Иванов Иван", "иванов и.п.", "ИВАНОВ ИВАН ПЕТРОВИЧ",
    "Петр Иванов", "ёлкина", "Елкина Алена Федоровна", "Яковлев Олег Петрович", "олег петр", "ванов", "ович",
    "Щедрин", "салтыков-щедрин михаил", "щед ми", "петров", "Анна Ивановна", "андрей", "smith", "SOKOLOV P.",
    "Ян", "Андреев Александр Александрович", "александр андреевич", "ан", "Иванов, Иван", "и", "%", "иван_",
    LONG, LONG[:35] + " ольга", LONG[:33] + "ю", "ольга " + LONG + "ов",
]


@pytest.fixture(scope="module")
def databases(postgres_url: str, tmp_path_factory: pytest.TempPathFactory,
              _hub_sqlite_template: Path) -> Iterator[dict[str, str]]:
    """Three databases migrated and seeded alike: SQLite, PostgreSQL in C, PostgreSQL with a UTF-8 LC_CTYPE."""
    path = tmp_path_factory.mktemp("locales") / "hub.db"
    shutil.copy(_hub_sqlite_template, path)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    names = {"c": f"hub_c_{uuid.uuid4().hex[:10]}", "utf8": f"hub_utf8_{uuid.uuid4().hex[:10]}"}
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{names["c"]}"'))
        conn.execute(text(f"""CREATE DATABASE "{names['utf8']}" TEMPLATE template0 ENCODING 'UTF8' """
                          "LC_COLLATE 'C' LC_CTYPE 'C.utf8'"))
    urls = {"sqlite": f"sqlite:///{path}",
            **{key: make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
               for key, name in names.items()}}
    try:
        for key, url in urls.items():
            if key != "sqlite":
                migrations.upgrade(get_engine(url), pm=every_installed_plugin())
            records = [ContactRecord(source="import:clients.csv", last_name=last, first_name=first,
                                     middle_name=middle) for last, first, middle in PEOPLE]
            with get_engine(url).begin() as conn:
                sync.write_page(conn, records, _settings(url), sync.Counts())
        yield urls
    finally:
        dispose_engines()
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _settings(url: str) -> Settings:
    return replace(load_settings(environ={"HUB_SECRET_KEY": SECRET, "HUB_PLUGINS": ""}, config_path="/nonexistent"),
                   database_url=url)


def _names(url: str, query: str) -> tuple[int, list[str]]:
    with get_engine(url).connect() as conn:
        found = contact_search.find(conn, _settings(url), query, limit=50)
        named = dict(conn.execute(select(Contact.id, Contact.name_key)).all())
    return found.total, [f"{named[r['id']]} / {r['middle_name'] or ''}" for r in found.rows]


def test_the_utf8_database_reads_the_word_index_and_the_c_one_does_not(databases: dict[str, str]) -> None:
    for key, folds in (("utf8", True), ("c", False), ("sqlite", False)):
        with get_engine(databases[key]).connect() as conn:
            assert contact_search._folds_cyrillic(conn) is folds, key
    with get_engine(databases["utf8"]).connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        where, _ = contact_search.conditions(conn, _settings(databases["utf8"]), "Иванов Иван Петрович")
        assert where is not None
        compiled = select(Contact.id).where(where).compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(conn.execute(text(f"EXPLAIN {compiled}")).scalars())
    assert "ix_contacts_name_prefixes" in plan, plan


@pytest.mark.parametrize("query", QUERIES)
def test_every_database_finds_the_same_people_in_the_same_order(databases: dict[str, str], query: str) -> None:
    answers = {key: _names(url, query) for key, url in databases.items()}
    assert answers["utf8"] == answers["sqlite"] == answers["c"], answers


def test_what_the_words_find(databases: dict[str, str]) -> None:
    url = databases["utf8"]
    assert _names(url, "Иванов") == (5, ["иванов иван / Петрович", "иванов петр / Иванович",
                                         "иванова мария / Сергеевна", "ивановский андрей / ",
                                         "петрова анна / ИВАНОВНА"])
    assert _names(url, "Яковлев Олег Петрович")[1] == ["яковлев олег / Петрович", "петровичев олег / Яковлевич"]
    assert _names(url, "ванов") == (0, [])
    assert _names(url, "щед ми") == (1, ["салтыков-щедрин михаил / Евграфович"])
    assert _names(url, "SOKOLOV P.") == (1, ["sokolov petr / Ivanovich"])
    long = LONG.lower()
    assert _names(url, LONG[:35] + " ольга") == (1, [f"{long} ольга / "])
    assert _names(url, LONG[:33] + "ю") == (0, [])  # the index's 32 letters agree, the word does not
