"""The `hub` command line as tests run it: the root with the core's own commands.

The `hub` script adds every plugin's commands; a test adds only those of the
plugins it tests (their register_commands), so the core's come the same way.
"""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from hub import commands
from hub.cli import cli

commands.register_commands(cli)

__all__ = ["cli", "run_ok"]


def run_ok(*args: str) -> Any:
    """Run `hub ARGS` and insist it succeeded, showing its output when it did not."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result
