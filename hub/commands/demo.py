"""`hub demo`: Hub end to end on sample data (the work itself is hub.demo)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console


@click.command("demo")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("hub-demo"),
              show_default=True, help="Where the demo keeps its database and files (recreated each run).")
@click.option("--people", type=int, default=3000, show_default=True, help="How many people the sample base holds.")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Seed of the sample data: the same seed gives the same base.")
def demo_cmd(workdir: Path, people: int, seed: int) -> None:
    """Run Hub end to end on sample data with the embedded defaults, and show what it found and fixed."""
    from hub import demo

    demo.run(workdir, people=people, seed=seed, console=Console())
