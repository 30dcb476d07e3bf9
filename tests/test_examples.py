"""examples/shop, a third-party plugin written against the public API only, installed and tested as its author would.

The example is copied out of the work tree (so building it leaves nothing
behind), pip-installed into a folder of its own (tests/packages.py), and then
Hub runs in child processes with that folder on the path: it must find the
plugin through its entry point, run the example's own test suite with
hub.testing's fixtures, and sync the shop emulator in `hub demo` without a
single wrong merge. A last test reads the example's source to prove it
imports nothing of Hub but hub.api, hub.testing and workflows.steps.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from tests.packages import install, run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "shop"
PUBLIC = ("hub.api", "hub.testing", "workflows.steps")  # what a plugin may import
CORE = ("hub", "plugins", "workflows")  # Hub's own packages
BUILD_LEFTOVERS = ("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a copy of examples/shop, the folder it is installed in)."""
    base = tmp_path_factory.mktemp("example-shop")
    copy = base / "shop"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    target = base / "site-packages"
    install(copy, target)
    return copy, target


def test_python_m_hub_is_the_hub_command(example: tuple[Path, Path], tmp_path: Path) -> None:
    assert (ROOT / "hub" / "__main__.py").is_file()
    done = run(["-m", "hub", "--version"], example[1], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hub, version ")


def test_the_installed_example_is_a_plugin_hub_finds(example: tuple[Path, Path], tmp_path: Path) -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["name"] == "hub-shop"
    assert project["project"]["entry-points"]["hub"] == {"shop": "hub_shop"}
    assert project["tool"]["pytest"]["ini_options"]["hub_plugins"] == ["shop"]

    done = run(["-m", "hub", "plugins", "--json"], example[1], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shop = next(p for p in json.loads(done.stdout) if p["name"] == "shop")
    assert (shop["kind"], shop["package"], shop["version"]) == ("installed", "hub-shop", "0.1.0")
    assert {"register_sources", "register_sandboxes", "register_commands", "register_segment_fields",
            "register_workflow_steps", "register_channels", "register_template_dirs",
            "can_contact"} <= set(shop["hooks"])

    connect = run(["-m", "hub", "connect", "shop", "--help"], example[1], cwd=tmp_path)
    assert connect.returncode == 0 and "--url URL" in connect.stdout and "--token" in connect.stdout


def test_the_installed_example_ships_its_russian_catalog_complete(example: tuple[Path, Path], tmp_path: Path) -> None:
    code = ("import pathlib, hub_shop; from hub import catalogs, i18n\n"
            "folder = pathlib.Path(hub_shop.__file__).parent / 'translations'\n"
            "print(len(list(folder.glob('ru/LC_MESSAGES/*.po'))), len(catalogs.untranslated(folder, 'ru')))\n"
            "print(folder in i18n.directories())\n"
            "with i18n.use_language('ru'):\n    print(i18n.gettext('Last coupons issued'))\n")
    done = run(["-c", code], example[1], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["1 0", "True", "Последние выданные купоны"]  # shipped, whole and loaded


def test_the_examples_own_test_suite_passes(example: tuple[Path, Path]) -> None:
    copy, target = example
    done = run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], target, cwd=copy,
               env={"PYTHONDONTWRITEBYTECODE": "1"})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    summary = re.search(r"^(\d+) passed(?:, \d+ warnings?)? in [\d.]+s", output, re.MULTILINE)
    assert summary, output[-2000:]  # only passes: nothing failed, errored or was skipped
    assert int(summary.group(1)) >= 30


def test_the_demo_syncs_the_shop_with_no_wrong_merges(example: tuple[Path, Path], tmp_path: Path) -> None:
    done = run(["-m", "hub", "demo", "--dir", str(tmp_path / "demo"), "--people", "150"], example[1], cwd=tmp_path,
               env={"COLUMNS": "200", "HUB_LANGUAGE": "en"})  # the demo in English (Russian: tests/test_cli.py)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    synced = re.search(r"Synced shop: 100 contacts → (\d+) new, (\d+) matched", done.stdout)
    assert synced and int(synced.group(2)) > 0, done.stdout  # some shop customers were already known
    wrong = re.search(r"checked against the truth: wrong merges\s*│\s*(\d+)", done.stdout)
    assert wrong and wrong.group(1) == "0", done.stdout


# --- only the public API ---------------------------------------------------------------------------

def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import of a module, static or through importlib, in Python source."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in CORE:  # `from hub import api` imports hub.api
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None)
                   in ("import_module", "__import__"))):
            found.append((node.lineno, node.args[0].value))
    return found


def private_imports(source: str) -> list[str]:
    """Imports of Hub's modules other than the public ones."""
    bad = []
    for line, module in imported_modules(source):
        if module.split(".")[0] in CORE and not any(module == p or module.startswith(p + ".") for p in PUBLIC):
            bad.append(f"line {line}: {module}")
    return bad


def test_the_import_check_catches_private_imports() -> None:
    source = ("from hub.api import Page\nfrom hub import api, sync\nimport hub\nimport plugins.bitrix24\n"
              "from workflows import runner\nimport importlib\nimportlib.import_module('hub.models')\n"
              "from workflows.steps import Step\nimport hub.testing\n")
    assert private_imports(source) == ["line 2: hub.sync", "line 3: hub", "line 4: plugins.bitrix24",
                                       "line 5: workflows.runner", "line 7: hub.models"]


def test_the_example_imports_nothing_of_hub_but_the_public_api() -> None:
    files = sorted(p for p in EXAMPLE.rglob("*.py")
                   if not any(part in ("build", "__pycache__") or part.endswith(".egg-info") for part in p.parts))
    assert len(files) >= 8
    used: set[str] = set()
    problems = []
    for path in files:
        source = path.read_text(encoding="utf-8")
        used |= {module for _, module in imported_modules(source)}
        problems += [f"{path.relative_to(ROOT)}: {bad}" for bad in private_imports(source)]
    assert problems == []
    assert {"hub.api", "workflows.steps"} <= used  # the check looked at real imports
