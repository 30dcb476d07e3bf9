"""`hub plugin new`: the project it writes is refused where it would clash, installs, and passes its own tests.

The generated project is installed the way its author would (tests/packages.py:
`pip install` into a folder of its own, run in a child Python), so `hub plugins`
finds it through its entry point and its test suite runs against the Hub of
this checkout exactly as in the author's project.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from hub import plugins, scaffold
from tests import packages
from tests.support.cli import cli

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ["can_contact", "contact_synced", "register_admin_pages", "register_channels", "register_commands",
         "register_routes", "register_schedules", "register_segment_fields", "register_sources",
         "register_translations", "register_workflow_steps"]
SECRET = "scaffold-test-secret-key-0123456789"


def new(*args: str) -> Any:
    return CliRunner().invoke(cli, ["plugin", "new", *args])


@pytest.fixture(autouse=True)
def plugins_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No settings: `hub plugin new` checks names against every installed plugin, as `hub` loads them."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)
    plugins.use(None)
    yield
    plugins.use(None)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# --- what it writes ---------------------------------------------------------------------------------

EXPECTED = {".gitignore", "README.md", "pyproject.toml", "tests/export.json", "tests/test_acme.py",
            *(f"src/hub_acme/{m}.py" for m in ("__init__", "source", "events", "segments", "consent", "channel",
                                               "steps", "commands", "routes", "schedule", "admin", "language")),
            "src/hub_acme/admin_templates/hub_acme_admin/index.html",
            "src/hub_acme/translations/ru/LC_MESSAGES/acme.po"}


def test_new_writes_an_installable_project_and_says_what_to_do_next(tmp_path: Path) -> None:
    project = tmp_path / "hub-acme"
    result = new("acme", "--dir", str(project))
    assert result.exit_code == 0, result.output
    assert files_under(project) == EXPECTED
    for relative in EXPECTED:
        assert str(project / relative) in result.output
        assert "@@" not in (project / relative).read_text(encoding="utf-8"), relative
    for step in (f"cd {project}", "pip install -e .", "hub plugins", "pytest"):
        assert step in result.output

    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["build-system"] == {"requires": ["setuptools>=61"], "build-backend": "setuptools.build_meta"}
    assert meta["project"]["name"] == "hub-acme"
    assert meta["project"]["dependencies"] == ["hub-customer-base>=0.1"]  # "hub" on PyPI is another project
    assert meta["project"]["entry-points"]["hub"] == {"acme": "hub_acme"}
    assert meta["tool"]["pytest"]["ini_options"] == {"hub_plugins": ["acme"], "testpaths": ["tests"]}
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "pip install -e ." in readme and "hub plugins" in readme and "pytest" in readme


def test_a_name_is_normalized_into_every_name_derived_from_it(tmp_path: Path) -> None:
    result = new("My-CRM", "--dir", str(tmp_path / "p"))
    assert result.exit_code == 0, result.output
    meta = tomllib.loads((tmp_path / "p" / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["name"] == "hub-my-crm"
    assert meta["project"]["entry-points"]["hub"] == {"my_crm": "hub_my_crm"}
    assert (tmp_path / "p" / "src" / "hub_my_crm" / "__init__.py").is_file()
    assert "HUB_MY_CRM_FILE" in (tmp_path / "p" / "tests" / "test_my_crm.py").read_text(encoding="utf-8")


def test_the_default_directory_is_named_after_the_distribution(tmp_path: Path) -> None:
    assert new("acme").exit_code == 0  # in the working directory, tmp_path
    assert files_under(tmp_path / "hub-acme") == EXPECTED


def test_an_existing_empty_directory_is_used(tmp_path: Path) -> None:
    assert new("acme", "--dir", str(tmp_path)).exit_code == 0
    assert files_under(tmp_path) == EXPECTED


# --- what it refuses --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, reason", [
    ("1acme", "используйте строчные латинские буквы, цифры и _ или -, начиная с буквы"),
    ("acme!", "используйте строчные латинские буквы"),
    ("my crm", "используйте строчные латинские буквы"),
    ("клиенты", "используйте строчные латинские буквы"),
    ("-", "используйте строчные латинские буквы"),
    ("class", "это ключевое слово Python"),
    ("hub-acme", "укажите собственное имя плагина, без hub- (`hub plugin new acme` создаёт пакет hub-acme)"),
    ("a" * 41, "слишком длинное"),
    ("bitrix24", "плагин Hub с именем 'bitrix24' уже установлен (пакет hub-customer-base "),
    ("Workflows", "плагин Hub с именем 'workflows' уже установлен"),
    ("sync", "`hub sync` — уже существующая команда"),
    ("plugin", "`hub plugin` — уже существующая команда"),
])
def test_names_that_cannot_work_are_refused_before_anything_is_written(tmp_path: Path, name: str, reason: str
                                                                       ) -> None:
    result = new(name, "--dir", str(tmp_path / "p"))
    assert result.exit_code == 1
    assert result.output.startswith("Ошибка: ") and reason in result.output, result.output
    assert not (tmp_path / "p").exists()


def test_a_refusal_is_said_in_english_when_hub_language_is_en(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    result = new("class", "--dir", str(tmp_path / "p"))
    assert result.exit_code == 1
    assert result.output.startswith("Error: 'class' cannot be a plugin name: it is a Python keyword"), result.output


def test_a_name_an_installed_plugin_uses_for_a_channel_is_refused(tmp_path: Path) -> None:
    result = new("sms", "--dir", str(tmp_path / "p"))  # the mailing plugin's SMS channel
    assert result.exit_code == 1
    assert "'sms' не может быть именем плагина: у установленного плагина есть канал 'sms'" in result.output


def test_a_directory_with_files_in_it_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = new("acme", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"{tmp_path} уже есть и не пуст; ничего не записано" in result.output
    assert files_under(tmp_path) == {"notes.txt"}


def test_a_file_where_the_directory_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("mine", encoding="utf-8")
    result = new("acme", "--dir", str(tmp_path / "taken"))
    assert result.exit_code == 1 and "уже есть и это не каталог" in result.output
    assert (tmp_path / "taken").read_text(encoding="utf-8") == "mine"


# --- the template itself ----------------------------------------------------------------------------

def test_every_template_file_is_package_data() -> None:
    """A template file the package-data glob misses would be absent from an installed Hub."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = meta["tool"]["setuptools"]["package-data"]["hub.scaffold"]
    folder = Path(scaffold.__file__).parent
    template = {p.relative_to(folder).as_posix() for p in (folder / "template").rglob("*") if p.is_file()}
    covered = {f for f in template if any(fnmatch.fnmatch(f, g.replace("**/", "*")) for g in globs)}
    assert template and covered == template
    assert all(f.endswith(scaffold.SUFFIX) for f in template)


def _imports(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.add(".relative")
            elif node.module in ("hub", "workflows"):  # `from hub import api` imports hub.api
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module or "")
    return found


def test_generated_code_imports_only_the_public_api_and_what_hub_depends_on() -> None:
    project = scaffold.render("acme")
    sources = {path: text for path, text in project.items() if path.suffix == ".py"}
    assert len(sources) == 13
    hub_side: set[str] = set()
    for path, text in sources.items():
        for module in _imports(text):
            top = module.split(".")[0]
            if top in ("hub", "workflows"):
                hub_side.add(module)
            else:
                # Nothing outside Hub's own dependencies, which the environment it is installed in has.
                assert top in sys.stdlib_module_names or top in ("hub_acme", "click", "flask", "sqlalchemy",
                                                                  "pytest", "__future__"), (path, module)
    assert hub_side <= {"hub.api", "hub.testing", "workflows.steps"}, hub_side
    assert {"hub.api", "workflows.steps"} <= hub_side


# --- installed, as its author would -----------------------------------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """(project, target, work): `hub plugin new acme`, pip-installed into `target`."""
    work = tmp_path_factory.mktemp("scaffold")
    project, target = work / "hub-acme", work / "target"
    result = new("acme", "--dir", str(project))
    plugins.use(None)  # the plugin manager the name check loaded
    assert result.exit_code == 0, result.output
    packages.install(project, target)
    yield project, target, work


def test_hub_finds_the_installed_plugin_and_its_hooks(installed: tuple[Path, Path, Path]) -> None:
    project, target, work = installed
    env = {"HUB_DATABASE_URL": f"sqlite:///{work / 'hub.db'}", "HUB_SECRET_KEY": SECRET}
    done = packages.run(["-m", "hub", "plugins", "--json"], target, cwd=work, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    described = {p["name"]: p for p in json.loads(done.stdout)}
    assert described["acme"] == {"name": "acme", "kind": "installed", "package": "hub-acme", "version": "0.1.0",
                                 "hooks": HOOKS}
    again = packages.run(["-m", "hub", "plugin", "new", "acme", "--dir", str(work / "again")], target, cwd=work,
                         env=env, timeout=120)
    assert again.returncode == 1 and "плагин Hub с именем 'acme' уже установлен" in again.stderr


def test_the_generated_tests_pass_as_generated(installed: tuple[Path, Path, Path]) -> None:
    project, target, work = installed
    tests = len(re.findall(r"^def test_", (project / "tests" / "test_acme.py").read_text(encoding="utf-8"), re.M))
    done = packages.run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(work / "pytest")],
                        target, cwd=project, timeout=600)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert re.search(rf"^{tests} passed", done.stdout, re.M), done.stdout
