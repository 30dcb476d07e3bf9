"""The growth curve of the segments benchmark: the same run at several sizes, and how time grows with size.

`bench/segments.py --scale 100000,1000000` runs the whole benchmark once per
size, each in a child process on fresh data (its own SQLite file, or its own
database on the PostgreSQL server given), so each size's peak memory is that
child's own. For each pair of consecutive sizes it reports, per figure,
time ratio / size ratio: 1.0 is linear, below is better than linear, and
above TOLERANCE a step where a plan stops scaling (a scan per row, a sort that
spills) rather than noise on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import log
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

TOLERANCE = 1.3
SCRIPT = Path(__file__).with_name("segments.py")


def sizes(value: str) -> list[int]:
    """`--scale`: contact counts separated by commas (100000,1000000 or 100_000,1_000_000), smallest first."""
    try:
        out = sorted({int(part.strip().replace("_", "")) for part in value.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected contact counts separated by commas") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one contact count")
    return out


def figures(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The times one run's growth is judged on: Hub's and the floor's, side by side."""
    counts = result["counts_total"]
    floor = result["floor"]
    return {
        "hub": {"count_dormant_90d": result["counts"]["dormant_90d"]["seconds"], "counts_total": counts["seconds"],
                "refresh_first": result["refresh_first"]["seconds"],
                "refresh_week_later": result["refresh_week_later"]["seconds"],
                "refresh_incremental": result["refresh_incremental"]["seconds"]},
        "floor": {"count_dormant_90d": result["counts"]["dormant_90d"].get("floor_seconds", 0.0),
                  "counts_total": counts["floor_seconds"], "refresh_first": floor["refresh_first"]["seconds"],
                  "refresh_week_later": floor["refresh_week_later"]["seconds"]},
    }


def growth(smaller: dict[str, Any], larger: dict[str, Any]) -> dict[str, Any]:
    """Time ratio over size ratio for each figure between two consecutive sizes."""
    size_ratio = larger["contacts"] / smaller["contacts"]
    step: dict[str, Any] = {"from": smaller["contacts"], "to": larger["contacts"], "size_ratio": round(size_ratio, 2)}
    for side in ("hub", "floor"):
        step[side] = {}
        for name, small in smaller["seconds"][side].items():
            large = larger["seconds"][side][name]
            time_ratio = large / small if small else None
            g = time_ratio / size_ratio if time_ratio is not None else None
            step[side][name] = {"time_ratio": round(time_ratio, 2) if time_ratio is not None else None,
                                "growth": round(g, 2) if g is not None else None,
                                "linear_or_better": g is not None and g <= TOLERANCE}
    step["peak_rss_ratio"] = round(larger["peak_rss_mb"] / smaller["peak_rss_mb"], 2)
    return step


class Databases:
    """Where each size runs: a fresh SQLite file in its own directory, or a fresh database on the PostgreSQL server."""

    def __init__(self, url: str | None, workdir: Path, keep: bool) -> None:
        self.url, self.workdir, self.keep = url, workdir, keep

    def open(self, contacts: int) -> tuple[str | None, Path]:
        """A database (None: SQLite in the directory) and a directory for this size."""
        directory = self.workdir / f"size-{contacts}"
        directory.mkdir(parents=True, exist_ok=True)
        if self.url is None:
            return None, directory
        url = make_url(self.url)
        name = f"{url.database}_{contacts}"
        self._admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
        return url.set(database=name).render_as_string(hide_password=False), directory

    def close(self, contacts: int) -> None:
        if self.keep:
            return
        shutil.rmtree(self.workdir / f"size-{contacts}", ignore_errors=True)
        if self.url is not None:
            self._admin(f'DROP DATABASE IF EXISTS "{make_url(self.url).database}_{contacts}"')

    def _admin(self, *statements: str) -> None:
        assert self.url is not None
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for statement in statements:
                    conn.execute(text(statement))
        finally:
            engine.dispose()


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Each size in a child process of bench/segments.py; then the curve and its growth."""
    places = Databases(args.database, workdir, args.keep)
    runs: list[dict[str, Any]] = []
    for contacts in args.scale:
        url, directory = places.open(contacts)
        command = [sys.executable, str(SCRIPT), "--contacts", str(contacts), "--seed", str(args.seed),
                   "--repeat", str(args.repeat), "--workdir", str(directory)]
        if url is not None:
            command += ["--database", url]
        log(f"--- {contacts:,} contacts ---")
        try:
            done = subprocess.run(command, stdout=subprocess.PIPE, check=True)
        finally:
            places.close(contacts)
        runs.append(json.loads(done.stdout))
    curve = [{"contacts": r["contacts"], "orders": r["orders"], "seconds": figures(r),
              "ratio": {"count_dormant_90d": r["ratio"]["count_dormant_90d"],
                        "counts_total": r["ratio"]["counts_total"],
                        "refresh_first": r["ratio"]["refresh_first"]["whole"],
                        "refresh_week_later": r["ratio"]["refresh_week_later"]["whole"]},
              "peak_rss_mb": r["memory"]["peak_rss_mb"],
              "peak_rss_mb_with_reference": r["memory"]["peak_rss_mb_with_reference"],
              "floor_agrees": r["floor_agrees"], "errors": r["errors"], "load_average": r["load_average"]}
             for r in runs]
    steps = [growth(a, b) for a, b in zip(curve, curve[1:], strict=False)]
    return {
        "database": runs[0]["database"],
        "scale": [r["contacts"] for r in runs],
        "tolerance": TOLERANCE,
        "curve": curve,
        "growth": steps,
        "linear_or_better": {side: all(f["linear_or_better"] for s in steps for f in s[side].values())
                             for side in ("hub", "floor")},
        "floor_agrees": all(r["floor_agrees"] for r in runs),
        "runs": runs,
    }
