"""The `hub` command line as tests run it: the root with the core's own commands.

The `hub` script adds every plugin's commands; a test adds only those of the
plugins it tests (their register_commands), so the core's come the same way.
"""

from __future__ import annotations

from hub import commands
from hub.cli import cli

commands.register_commands(cli)

__all__ = ["cli"]
