"""The command line speaks HUB_LANGUAGE: Russian by default, English when chosen, with nothing left over.

Every command's `--help` is read in both languages, over the whole `hub`
tree as the real `hub` builds it (the core's commands, then every installed
plugin's register_commands), so a new command or option without its Russian
is caught here. Runtime output is checked for a few commands a new user meets
first; `--json` output keeps its English keys in either language.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Iterator

import click
import pytest
from click.testing import CliRunner

from hub import i18n, importer, plugins
from hub.cli import HubGroup, RowsColumn, rows
from hub.config import load_settings
from hub.spreadsheet import FIELDS
from tests.conftest import HubDB
from tests.support.cli import cli


def _hub() -> click.Group:
    """`hub` as its entry point builds it: the core's commands, then every installed plugin's (a copy of the root)."""

    def detached(group: click.Group) -> click.Group:
        mine = copy.copy(group)
        mine.commands = {name: detached(c) if isinstance(c, click.Group) else c for name, c in group.commands.items()}
        return mine

    root = detached(cli)
    plugins.build(load_settings(environ={}, config_path="/nonexistent")).hook.register_commands(cli=root)
    return root


HUB = _hub()


def _paths(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _paths(command, (*path, name))
        else:
            yield (*path, name)


PATHS = list(_paths(HUB))


@pytest.fixture(autouse=True)
def every_plugin_loaded(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The plugins' catalogs are found through the loaded plugins, as in the real `hub`."""
    for name in ("HUB_LANGUAGE", "HUB_PLUGINS", "HUB_PLUGINS_DIR", "HUB_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    plugins.use(plugins.build(load_settings(environ={}, config_path="/nonexistent")))
    yield
    plugins.use(None)


def _help(path: tuple[str, ...], language: str | None, monkeypatch: pytest.MonkeyPatch) -> str:
    if language:
        monkeypatch.setenv("HUB_LANGUAGE", language)
    result = CliRunner().invoke(HUB, [*path, "--help"], terminal_width=200, prog_name="hub")
    assert result.exit_code == 0, result.output
    return result.output


# What may stay in Latin letters in Russian help: names of commands, options, metavars, settings and
# products, code in backticks, examples of values. Three or more plain English words in a row are a
# sentence nobody translated.
_TECHNICAL = [
    r"`[^`]*`",                      # code: `hub init`
    r"'[^']*'|\"[^\"]*\"",           # quoted values and examples
    r"\[[^\]]*\]",                   # [OPTIONS], [default: …], [admin|marketer|viewer], [x>=1]
    r"(?<!\w)--?[\w-]+(=\S+)?",      # --json, -n, --map=…
    r"\b[A-Z][A-Z0-9_=]+\b",         # FILE, NAME, COLUMN=FIELD, HUB_DATABASE_URL, TEXT, INTEGER
    r"\S*[_./:@+<>{}%]\S*",          # first_name, hub.toml, E.164, https://…, Ctrl+C, {{ contact }}
    r"\b\w*\d\w*\b",                 # Bitrix24, 152-ФЗ, 90d
]
_WORDS = re.compile(r"\b[A-Za-z][a-z]+(?:[\s,;()-]+[A-Za-z][a-z]+){2,}\b")
# Product and field names that read like words: allowed to stand three in a row.
_NAMES = {"amoCRM", "email", "phone", "sms", "marketing", "processing", "granted", "withdrawn", "pending", "admin",
          "marketer", "viewer", "waitress", "cron", "Redis", "PostgreSQL", "SQLite", "Excel", "Jinja", "SMTP",
          "webhook", "pip", "pytest", "high", "default", "low", "yaml", "json", "csv", "xlsx", "amocrm", "bitrix",
          "gdpr", "mailing", "workflows", "import", "unsubscribe", "the", "of", *FIELDS}  # fields: first_name, city…


def english_left(text: str) -> list[str]:
    """Runs of English words in Russian help that are not names, options or code."""
    lines = text.splitlines()
    body = []
    in_commands = False
    for line in lines[1:]:  # the first line is the usage: command and option names
        if line.strip() == "Команды:":
            in_commands = True
            continue
        if in_commands and re.match(r"^  \S", line):
            line = re.sub(r"^  \S+", "", line)  # a subcommand's name
        body.append(line)
    text = " ".join(body)
    for pattern in _TECHNICAL:
        text = re.sub(pattern, " ", text)
    found = []
    for match in _WORDS.finditer(text):
        words = re.findall(r"[A-Za-z]+", match.group(0))
        if sum(word not in _NAMES and word.lower() not in _NAMES for word in words) >= 2:
            found.append(match.group(0))
    return found


def test_the_check_finds_english_and_allows_names() -> None:
    assert english_left("Использование: hub x\n\n  Sync contacts and orders from a source.\n")
    assert not english_left("Использование: hub import contacts [OPTIONS] FILE\n\n  Импорт из CSV или XLSX "
                            "(`hub init`), --map 'Моб=phone', HUB_DATABASE_URL, email marketing granted, "
                            "first_name, Bitrix24 и amoCRM.\n")


# What click writes in its usage line and option list unless told otherwise: type names as metavars, the
# argument's name, the usage's [OPTIONS] / COMMAND [ARGS]..., [required], a date's strftime format.
_ENGLISH_PLACEHOLDERS = re.compile(
    r"\b(?:OPTIONS|COMMAND|ARGS|TEXT|INTEGER|FLOAT|RANGE|BOOLEAN|FILE|DIRECTORY|PATH|NAME|CONTACT_ID|MESSAGE_ID"
    r"|YYYY-MM-DD)\b|%Y")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "hub")
def test_help_is_russian_by_default(path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    shown = _help(path, None, monkeypatch)
    for frame in ("Usage:", "Options:", "Commands:", "Show this message and exit."):
        assert frame not in shown, f"click's {frame!r} in `hub {' '.join(path)} --help`:\n{shown}"
    assert shown.startswith("Использование: ")
    frame = [shown.splitlines()[0], *re.findall(r"^  (-\S.*?)(?:\s{2,}|$)", shown, re.M), shown]
    placeholders = _ENGLISH_PLACEHOLDERS.findall("\n".join(frame[:-1])) + re.findall(r"\[required", shown)
    assert not placeholders, f"click's English placeholders in `hub {' '.join(path)} --help`: {placeholders}\n{shown}"
    left = english_left(shown)
    assert not left, f"English in `hub {' '.join(path)} --help`: {left}\n{shown}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "hub")
def test_help_is_english_when_chosen(path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    shown = _help(path, "en", monkeypatch)
    assert shown.startswith("Usage: ") and "Show this message and exit." in shown
    # Russian examples of values may stay ('Моб=phone': a column as a Russian office names it).
    cyrillic = re.findall(r"[А-Яа-яЁё][^\n]*", re.sub(r"'[^']*'", "", shown))
    assert not cyrillic, f"Russian in `hub {' '.join(path)} --help` with HUB_LANGUAGE=en: {cyrillic}"


def test_clicks_placeholders_are_russian_and_english_again_when_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    ru = _help(("sample", "contacts"), None, monkeypatch)
    assert "Использование: hub sample contacts [ПАРАМЕТРЫ] ФАЙЛ" in ru
    assert "--people ЧИСЛО" in ru and "--duplicate-rate ЧИСЛО" in ru and "--today [ГГГГ-ММ-ДД]" in ru
    assert "Использование: hub [ПАРАМЕТРЫ] КОМАНДА [АРГУМЕНТЫ]..." in _help((), None, monkeypatch)
    assert "[обязательно]" in _help(("users", "add"), None, monkeypatch)
    assert "--limit ЧИСЛО" in _help(("messages", "list"), None, monkeypatch)
    assert "hub messages send [ПАРАМЕТРЫ] ШАБЛОН" in _help(("messages", "send"), None, monkeypatch)
    assert "--promo-expires ГГГГ-ММ-ДД" in _help(("messages", "send"), None, monkeypatch)
    en = _help(("sample", "contacts"), "en", monkeypatch)
    assert "Usage: hub sample contacts [OPTIONS] OUT" in en and "--people INTEGER" in en
    assert "Usage: hub [OPTIONS] COMMAND [ARGS]..." in _help((), "en", monkeypatch)
    assert "[required]" in _help(("users", "add"), "en", monkeypatch)
    assert "--limit INTEGER RANGE" in _help(("messages", "list"), "en", monkeypatch)
    assert "ПАРАМЕТРЫ" in _help(("sample", "contacts"), "ru", monkeypatch)


def test_a_usage_error_names_the_argument_in_russian(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(HUB, ["sample", "contacts"], prog_name="hub")
    assert result.exit_code == 2
    assert "Использование: hub sample contacts [ПАРАМЕТРЫ] ФАЙЛ" in result.output
    assert "'ФАЙЛ'" in result.output and "OUT" not in result.output


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "hub")
def test_russian_help_names_arguments_as_its_usage_line_does(path: tuple[str, ...],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """«Удалить сегмент ИМЯ» under «hub segments remove [ПАРАМЕТРЫ] ИМЯ», not the English NAME."""
    body = "\n".join(_help(path, None, monkeypatch).splitlines()[1:])
    body = re.sub(r"\{[^}]*\}", " ", body)  # a JSON shape keeps its English
    left = re.findall(r"(?<![\w-])(?:NAME|CONTACT_ID|MESSAGE_ID|FILE|TEMPLATE|CODE|CHANNEL|PURPOSE|COLUMN=FIELD)\b",
                      body)
    assert not left, f"`hub {' '.join(path)} --help` names {left} in English:\n{body}"


@pytest.mark.parametrize("path", [p for p in PATHS if p], ids=" ".join)
def test_every_option_says_what_it_is_for(path: tuple[str, ...]) -> None:
    command: click.Command = HUB
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    bare = [param.opts[0] for param in command.params
            if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()]
    assert not bare, f"`hub {' '.join(path)}`: options without help: {bare}"


def test_the_help_is_built_again_for_each_run_in_its_language(monkeypatch: pytest.MonkeyPatch) -> None:
    """Showing help in Russian does not leave it Russian for the next run in English, and back."""
    assert "Создать или обновить базу данных" in _help(("init",), "ru", monkeypatch)
    assert "Create or upgrade the database" in _help(("init",), "en", monkeypatch)
    assert "Создать или обновить базу данных" in _help(("init",), "ru", monkeypatch)


# --- what commands say when they run ---------------------------------------------------------------------

def run(args: list[str], language: str | None = None, **kwargs: Any) -> Any:
    env = {"HUB_LANGUAGE": language} if language else {}
    return CliRunner().invoke(cli, args, env=env, prog_name="hub", **kwargs)


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no Hub database yet."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite:///{tmp_path / 'hub.db'}")
    monkeypatch.delenv("HUB_SECRET_KEY", raising=False)
    return tmp_path


def test_init_speaks_the_chosen_language(fresh: Path) -> None:
    first = run(["init"])
    assert first.exit_code == 0, first.output
    assert "Создан HUB_SECRET_KEY" in first.output and ": создана (схема " in first.output
    again = run(["init"], "en")
    assert again.exit_code == 0 and ": already up to date (schema " in again.output
    assert ": уже актуальна (схема " in run(["init"]).output


def test_a_command_before_init_says_so_in_either_language(fresh: Path) -> None:
    ru = run(["consent", "show", "1"])
    assert ru.exit_code == 1 and ru.output.startswith("Ошибка: базы Hub по адресу ")
    assert "сначала выполните `hub init`" in ru.output
    en = run(["consent", "show", "1"], "en")
    assert en.exit_code == 1 and en.output.startswith("Error: no Hub database at ")


def test_a_missing_file_is_one_line_in_either_language(fresh: Path) -> None:
    assert run(["init"]).exit_code == 0
    ru = run(["import", "contacts", "nowhere.csv"])
    assert ru.exit_code == 2 and "Ошибка: Неверное значение 'ФАЙЛ': Файл 'nowhere.csv' не существует." in ru.output
    assert "Использование: hub import contacts" in ru.output
    en = run(["import", "contacts", "nowhere.csv"], "en")
    assert "Error: Invalid value for 'FILE': File 'nowhere.csv' does not exist." in en.output
    ru = run(["consent", "import", "nowhere.csv"])
    assert "Файл 'nowhere.csv' не существует." in ru.output


def test_a_file_gone_missing_is_one_line_naming_it() -> None:
    """A FileNotFoundError a command meets after its arguments were checked ends in one translated line."""

    @click.group(cls=HubGroup)
    def root() -> None:
        pass

    @root.command("read")
    def read() -> None:
        raise FileNotFoundError(2, "No such file or directory", "gone.csv")

    ru = CliRunner().invoke(root, ["read"], prog_name="hub")
    assert ru.exit_code == 1 and ru.output == "Ошибка: gone.csv: такого файла нет\n"
    en = CliRunner().invoke(root, ["read"], env={"HUB_LANGUAGE": "en"}, prog_name="hub")
    assert en.output == "Error: gone.csv: no such file\n"


SHEET = "ФИО;Телефон;Email;Город\nАнна Иванова;+7 916 123-45-67;anna@example.com;\nПётр Петров;8 (916) 765-43-21;;\n" \
        "Анна Иванова;89161234567;;\n;;;Москва\n"


def test_the_import_summary_in_both_languages_and_its_json_keys_in_english(fresh: Path) -> None:
    assert run(["init"]).exit_code == 0
    (fresh / "people.csv").write_text(SHEET, encoding="utf-8")
    ru = run(["import", "contacts", "people.csv"])
    assert ru.exit_code == 0, ru.output
    for label in ("Импортирован people.csv", "прочитано строк", "новых контактов", "строк пропущено",
                  "строка 5: нет ни имени, ни телефона, ни email", "Готово за "):
        assert label in ru.output, ru.output
    assert re.search(r"Готово за \d+,\d с\.", ru.output)
    en = run(["import", "contacts", "people.csv"], "en")
    assert en.exit_code == 0 and "rows read" in en.output and "line 5: no name, phone or email" in en.output
    assert re.search(r"Done in \d+\.\d s\.", en.output)
    for language in ("ru", "en"):
        report = json.loads(run(["import", "contacts", "people.csv", "--json"], language).output)
        assert {"file", "rows", "created", "merged", "skipped", "warnings"} <= set(report)
        assert report["rows"] == 4


def test_counts_take_the_plural_form_of_the_language(fresh: Path) -> None:
    out = fresh / "s.csv"
    for people, shown in ((1, "1 человеке"), (3, "3 людях"), (21, "21 человеке")):
        result = run(["sample", "contacts", str(out), "--people", str(people), "--duplicate-rate", "0"])
        assert result.exit_code == 0 and f"о {shown} в " in result.output, result.output
    assert re.search(r"^Записано 21 строка о 21 человеке", result.output)
    result = run(["sample", "contacts", str(out), "--people", "1", "--duplicate-rate", "0"], "en")
    assert result.output.startswith("Wrote 1 row for 1 person to ")


def test_consent_set_and_show_in_both_languages_with_local_labelled_times(sqlite_db: HubDB, tmp_path: Path) -> None:
    sheet = tmp_path / "c.csv"
    sheet.write_text("Имя;Email\nАнна;anna@example.com\n", encoding="utf-8")
    importer.import_contacts(sqlite_db.engine, sqlite_db.settings, sheet)
    ru = run(["consent", "set", "1", "email", "marketing", "granted"])
    assert ru.exit_code == 0, ru.output
    assert ru.output.strip() == "Записано: контакт №1 email/marketing — дано (источник: cli)."
    shown = run(["consent", "show", "1"]).output
    assert "email/marketing: дано" in shown
    assert re.search(r"\d\d\.\d\d\.\d{4} \d\d:\d\d МСК email/marketing — дано, источник: cli", shown), shown
    en = run(["consent", "show", "1"], "en").output
    assert "email/marketing: granted" in en and re.search(r"(AM|PM) UTC\+03:00 email/marketing granted via cli", en)
    data = json.loads(run(["consent", "show", "1", "--json"]).output)
    assert set(data) == {"contact_id", "current", "history"}
    assert data["current"] == [{"channel": "email", "purpose": "marketing", "status": "granted"}]
    wrong = run(["consent", "set", "1", "pigeon", "marketing", "granted"])
    assert wrong.exit_code == 1 and wrong.output.startswith("Ошибка: канал 'pigeon' — не один из: ")
    wrong = run(["consent", "set", "1", "pigeon", "marketing", "granted"], "en")
    assert wrong.output.startswith("Error: channel 'pigeon' is not one of: ")


def test_a_bad_setting_is_said_in_the_default_language_and_in_english_when_readable(
        fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TIMEZONE", "Mars/Olympus")
    ru = run(["init"])
    assert ru.exit_code == 1 and "HUB_TIMEZONE: 'Mars/Olympus' — не часовой пояс" in ru.output
    en = run(["init"], "en")
    assert "HUB_TIMEZONE: 'Mars/Olympus' is not a time zone (e.g. Europe/Moscow)" in en.output


def test_consent_import_counts_rows_and_contacts_in_the_language(sqlite_db: HubDB, tmp_path: Path) -> None:
    sheet = tmp_path / "consent.csv"
    sheet.write_text("email;channel;purpose;status\nanna@example.com;email;marketing;granted\n"
                     "oleg@example.com;email;marketing;granted\nbad;email;marketing;granted\n", encoding="utf-8")
    ru = run(["consent", "import", str(sheet)])
    assert ru.exit_code == 0, ru.output
    assert ru.output.splitlines() == ["3 строки: записано 2, создано 2 контакта, пропущено 1.",
                                      "  строка 4: нет верного email или телефона, чтобы найти человека"]
    en = run(["consent", "import", str(sheet)], "en")
    assert en.output.splitlines()[0] == "3 rows: 0 recorded, 0 contacts created, 1 skipped."
    assert set(json.loads(run(["consent", "import", str(sheet), "--json"]).output)) == {
        "file", "rows", "recorded", "already_recorded", "contacts_created", "skipped_count", "skipped"}


def test_the_progress_column_counts_rows_in_the_language_of_the_command_that_made_it() -> None:
    from rich.progress import Progress

    with i18n.use_language("ru"):
        column = RowsColumn()
    with Progress(column) as progress:  # rich redraws from a thread of its own, where no language is set
        task = progress.add_task("x", total=None, completed=1234)
        with i18n.use_language("en"):
            assert column.render(progress.tasks[task]).plain == "1\u00a0234 строки"
    assert rows(1) == "1 строка" and rows(5) == "5 строк" and rows(21, "en") == "21 rows"


def test_a_word_where_a_number_belongs_is_refused_in_russian(sqlite_db: HubDB) -> None:
    ru = run(["contacts", "show", "abc"])
    assert ru.exit_code == 2 and "Неверное значение 'ID_КОНТАКТА': 'abc' — не число" in ru.output
    assert "integer" not in ru.output
    en = run(["contacts", "show", "abc"], "en")
    assert "'abc' is not a number" in en.output
