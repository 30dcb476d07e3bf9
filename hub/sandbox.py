"""What a plugin's `register_sandboxes` start function returns: a running emulator Hub is connected to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class RunningSandbox:
    """`source` is the source name to sync; `truth()` maps the emulator's contact ids to sample
    person ids (so the demo can prove no two people were merged); `close()` stops it."""

    source: str
    truth: Callable[[], dict[str, int]]
    close: Callable[[], None]
