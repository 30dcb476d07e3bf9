"""A PostgreSQL cluster for the scale benchmark: started in a directory that may outlive the run.

tests/servers.py `postgres_server()` starts a throwaway cluster and deletes it
on exit; building five million contacts takes long enough that a benchmark run
wants to keep the data directory and start it again later (`--keep`,
`--reuse DIR`). This module reuses the test servers' pieces (running as the
postgres account when we are root, waiting for the server, stopping it) and
adds the settings a 5-million-contact base needs on a 2-core, 23 GB machine.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import (  # the checkout's root is on sys.path (see the scripts' imports)
    PG_DATABASE,
    PG_SUPERUSER,
    START_TIMEOUT,
    ServerUnavailable,
    _pg_stop,
    _pg_wait_and_create_db,
    _PgRunner,
    _tail,
    find_postgres_bin,
    free_port,
)

# What the cluster runs with, and why; the same advice holds for a production server of this size
# (bench/README.md, "## scale_postgres.py", repeats it for operators).
SETTINGS: dict[str, str] = {
    # A quarter of the RAM: the hot tables (contacts ~1.5 GB, the consent index, segment_members)
    # stay in PostgreSQL's own cache; the rest of RAM is the OS page cache (effective_cache_size).
    "shared_buffers": "4GB",
    "effective_cache_size": "12GB",
    # Per sort/hash node per query: a refresh hashes or sorts millions of contact ids (EXCEPT,
    # the consent anti-join); 128 MB (x hash_mem_multiplier 2) keeps them in memory. Hub holds few
    # connections doing such work at once, so the product stays far below RAM.
    "work_mem": "128MB",
    # Index builds (migration 0014 on a full base) and VACUUM: one sort in memory instead of runs on disk.
    "maintenance_work_mem": "1GB",
    # Bulk loads and refreshes write gigabytes of WAL; a small max_wal_size forces a checkpoint every
    # few seconds ("checkpoints are occurring too frequently").
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "checkpoint_completion_target": "0.9",
    # Two cores: a scan of 5 M rows may use both.
    "max_worker_processes": "4",
    "max_parallel_workers": "2",
    "max_parallel_workers_per_gather": "2",
    "max_parallel_maintenance_workers": "2",
    # SSD storage: random reads cost little more than sequential ones.
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
}


@dataclass(frozen=True)
class Cluster:
    url: str  # SQLAlchemy URL (postgresql+psycopg://...)
    workdir: Path  # holds data/ and server.log


def _configure(datadir: Path, workdir: Path) -> None:
    lines = ["", "# hub scale benchmark (bench/scale_cluster.py)", "listen_addresses = '127.0.0.1'",
             f"unix_socket_directories = '{workdir}'", "max_connections = 50"]
    lines += [f"{key} = '{value}'" for key, value in SETTINGS.items()]
    with open(datadir / "postgresql.conf", "a") as conf:
        conf.write("\n".join(lines) + "\n")


def _start(runner: _PgRunner, pg_ctl: str, datadir: Path, log: Path) -> int:
    for _attempt in range(3):
        port = free_port()
        log.unlink(missing_ok=True)
        result = runner.run([pg_ctl, "-D", str(datadir), "-l", str(log), "-o", f"-p {port}", "-w", "-t",
                             str(int(START_TIMEOUT)), "start"], timeout=START_TIMEOUT + 10)
        if result.returncode == 0:
            return port
        _pg_stop(runner, pg_ctl, datadir)
        if "could not bind" not in _tail(log, 50):
            break
    raise ServerUnavailable(f"PostgreSQL failed to start: {result.stdout.strip()}\n{_tail(log)}")


@contextmanager
def cluster(reuse: Path | None = None, keep: bool = False) -> Iterator[Cluster]:
    """A running cluster: a new one (removed on exit unless `keep`), or the one kept in `reuse`.

    The server is always stopped on exit; a kept or reused directory stays.
    """
    initdb, pg_ctl = find_postgres_bin("initdb"), find_postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise ServerUnavailable("initdb/pg_ctl not found (install postgresql)")
    workdir = reuse if reuse is not None else Path(tempfile.mkdtemp(prefix="hub-scale-pg-"))
    datadir, log = workdir / "data", workdir / "server.log"
    runner = _PgRunner(workdir)
    started = False
    try:
        if reuse is None:
            # Collation C (fast byte-order comparisons), character classes UTF-8: pg_trgm makes
            # trigrams only of what LC_CTYPE calls letters, and Cyrillic names are letters only under UTF-8.
            result = runner.run([initdb, "-D", str(datadir), "-U", PG_SUPERUSER, "--auth=trust", "--encoding=UTF8",
                                 "--locale=C", "--lc-ctype=C.utf8", "--no-sync"], timeout=300)
            if result.returncode != 0:
                raise ServerUnavailable(f"initdb failed: {result.stdout.strip()}")
            _configure(datadir, workdir)
        elif not (datadir / "PG_VERSION").is_file():
            raise ServerUnavailable(f"{workdir} holds no cluster kept by an earlier run (no data/PG_VERSION)")
        port = _start(runner, pg_ctl, datadir, log)
        started = True
        if reuse is None:
            _pg_wait_and_create_db(port, log)
        yield Cluster(f"postgresql+psycopg://{PG_SUPERUSER}@127.0.0.1:{port}/{PG_DATABASE}", workdir)
    finally:
        if started:
            runner.run([pg_ctl, "-D", str(datadir), "stop", "-m", "fast", "-w", "-t", "300"], timeout=310)
            _pg_stop(runner, pg_ctl, datadir)  # a no-op once the fast shutdown is done
        if reuse is None and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
