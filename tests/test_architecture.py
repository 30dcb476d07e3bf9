"""The import contract: the core imports no plugin, plugins import no other plugin, and the command line has no cycle.

Read from the source (every import statement, those inside functions too),
so an import that only runs on some path breaks the contract here, not in
production.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def plugin_packages() -> dict[str, Path]:
    """Every plugin package by its import name: plugins/<name>, workflows, and the example's packages."""
    found = {f"plugins.{p.name}": p for p in sorted((ROOT / "plugins").iterdir()) if (p / "__init__.py").exists()}
    found["workflows"] = ROOT / "workflows"
    for src in sorted((ROOT / "examples").glob("*/src")):
        found.update({p.name: p for p in sorted(src.iterdir()) if (p / "__init__.py").exists()})
    return found


def module_name(path: Path, package_dir: Path, package: str) -> str:
    parts = list(path.relative_to(package_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from plugins import gdpr` imports plugins.gdpr: judged by what it takes from the module.
            out += [(node.lineno, target if alias.name == "*" else f"{target}.{alias.name}") for alias in node.names]
    return out


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# What a plugin publishes for other plugins to build on (docs/plugins.md, "Stability"): a workflow
# step of another plugin subclasses workflows.steps.Step, as a channel implements hub.api's Channel.
PUBLISHED = ("workflows.steps",)


def violations(package_dir: Path, package: str, forbidden: list[str], allowed: tuple[str, ...] = ()) -> list[str]:
    """One line per import statement that reaches into a `forbidden` package (what is `allowed` aside)."""
    found: dict[tuple[Path, int], str] = {}
    for path in sorted(package_dir.rglob("*.py")):
        for line, name in imports(path, module_name(path, package_dir, package)):
            if (path, line) in found or any(within(name, a) for a in allowed):
                continue
            if any(within(name, other) for other in forbidden):
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                found[(path, line)] = f"{shown}:{line} imports {name}"
    return list(found.values())


def test_imports_are_read_inside_functions_and_relative_ones_resolved(tmp_path: Path) -> None:
    pkg = tmp_path / "one"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import os\n\n\ndef hook():\n    from plugins import two\n", encoding="utf-8")
    (pkg / "sub.py").write_text("from . import helpers\nfrom .. import three\n", encoding="utf-8")
    assert violations(pkg, "plugins.one", ["plugins.two", "plugins.three"]) == [
        f"{pkg / '__init__.py'}:5 imports plugins.two", f"{pkg / 'sub.py'}:2 imports plugins.three"]
    assert violations(pkg, "plugins.one", ["plugins.one.helpers"]) == [f"{pkg / 'sub.py'}:1 imports plugins.one.helpers"]
    assert violations(pkg, "plugins.one", ["plugins.two", "plugins.three"], allowed=("plugins.two",)) == [
        f"{pkg / 'sub.py'}:2 imports plugins.three"]


def test_the_core_imports_no_plugin() -> None:
    assert violations(ROOT / "hub", "hub", ["plugins", "workflows", *plugin_packages()]) == []


def test_plugins_import_no_other_plugin() -> None:
    packages = plugin_packages()
    assert {"plugins.bitrix24", "plugins.amocrm", "plugins.gdpr", "plugins.mailing", "workflows", "hub_shop"} <= set(
        packages)
    found = []
    for name, path in packages.items():
        found += violations(path, name, [other for other in packages if other != name], allowed=PUBLISHED)
    assert found == []


CLI_MODULES = ["hub.cli", "hub.commands", "hub.segments.commands",
               *sorted(f"hub.commands.{p.stem}" for p in (ROOT / "hub" / "commands").glob("*.py")
                       if p.stem != "__init__")]


def test_every_command_module_imports_first_in_a_fresh_interpreter() -> None:
    # A cycle between the root and a command module shows only when that module is imported first.
    started = {name: subprocess.Popen([sys.executable, "-c", f"import {name}"], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for name in CLI_MODULES}
    failed = {name: proc.communicate()[0][-2000:] for name, proc in started.items() if proc.wait() != 0}
    assert failed == {}


def test_the_root_command_imports_no_command_module() -> None:
    script = ("import sys, hub.cli\n"
              "loaded = sorted(m for m in sys.modules if m.startswith(('hub.commands', 'hub.segments.commands',"
              " 'plugins', 'workflows')))\n"
              "print(loaded, sorted(hub.cli.cli.commands))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"
