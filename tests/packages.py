"""Installing a plugin package the way its user would, without touching the test environment.

`pip install --target` puts the package (and its entry points) in a folder of
its own; commands then run in a child Python with that folder on PYTHONPATH,
so Hub finds the plugin through its entry point exactly as after a real
`pip install`, and the packages of the running test suite stay as they were.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping


def install(package: Path, target: Path) -> None:
    """pip install the package at `package` into `target` (its dependencies are already here: Hub's own)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(package)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip install {package} failed:\n{done.stdout}\n{done.stderr}"


def run(args: list[str], target: Path, *, cwd: Path, env: Mapping[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python ARGS` with the installed package importable; returns the finished process."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    environ.update(env or {})
    environ["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, *args], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=timeout)
