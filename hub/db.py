"""Database engine, sessions and the few dialect differences Hub cares about.

The same code runs on SQLite (the embedded default) and PostgreSQL. The two
differ in how they store time zones and spell upserts; both differences are
handled here and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

from sqlalchemy import (JSON, Boolean, ColumnElement, DateTime, Engine, Table, any_, bindparam, create_engine, event,
                        func, select)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from hub.i18n import gettext as _

_engines: dict[str, Engine] = {}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores timestamptz; SQLite has no time zones, so values are
    stored as naive UTC and given their zone back on the way out. A naive
    datetime handed in is a bug in the caller and is refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; Hub stores timezone-aware UTC only")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


_clock: Callable[[], dt.datetime] | None = None


# The largest id a database row can have (a signed 64-bit integer, on SQLite and PostgreSQL alike).
MAX_ROW_ID = 2**63 - 1


def whole_number(text: Any, least: int = 1, most: int = MAX_ROW_ID) -> int | None:
    """A number typed or sent as text (an id in a URL, a form field), or None when it is not one.

    `str.isdigit` also says yes to «²» and other digits `int` refuses (a
    500 where a person made a typo), and `int` refuses more than 4 300
    digits: only ASCII digits, at most as many as MAX_ROW_ID has, pass here.
    """
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not (0 < len(text) <= len(str(MAX_ROW_ID)) and text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if least <= number <= most else None


def utcnow() -> dt.datetime:
    """Now, in UTC: the one clock all of Hub reads, so tests can move it (``hub.testing``'s ``hub_clock``)."""
    return _clock() if _clock is not None else dt.datetime.now(dt.timezone.utc)


def set_clock(clock: Callable[[], dt.datetime] | None) -> None:
    """Make `utcnow` answer from `clock` (an aware datetime each call); None restores the real clock."""
    global _clock
    _clock = clock


def get_engine(url: str) -> Engine:
    """One engine per URL per process, configured for the dialect."""
    engine = _engines.get(url)
    if engine is None:
        engine = _create(url)
        _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests and forked workers call this)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def _drop_inherited_pools() -> None:
    """In a forked child (an RQ work-horse, a reader process), forget the parent's pooled connections.

    A pooled connection is a socket the parent keeps using; a child that used
    it too would interleave its queries with the parent's (on PostgreSQL the
    second job of a worker then fails on a prepared statement the first one
    left). `close=False` leaves the parent's connections open for the parent;
    the child opens its own on first use.
    """
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_drop_inherited_pools)


class DatabaseUnavailable(OperationalError):
    """The database in HUB_DATABASE_URL cannot be opened; the message says why in one line, without secrets.

    Still an OperationalError, so code that treats a lost database as transient keeps doing so.
    """

    def __init__(self, reason: str, orig: BaseException) -> None:
        super().__init__(None, None, orig)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def _create(url: str) -> Engine:
    _check_port(url)
    engine = _create_for_dialect(url)
    # A mistyped path or a server that is down is the user's to fix: one line, not a driver traceback.
    event.listen(engine, "handle_error", _connect_failed)
    return engine


def _connect_failed(context: Any) -> BaseException | None:
    if context.connection is not None:  # only failures to connect; errors of a statement stay as they are
        return None
    return DatabaseUnavailable(_why_unavailable(context.engine.url, context.original_exception),
                               context.original_exception)


def _check_port(url: str) -> None:
    """Refuse a port that is not a number in one line; SQLAlchemy would end in a bare int() error."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    host, colon, port = netloc.rpartition(":")
    if not colon or not port or host.endswith(":") or "]" in port:
        return  # no port, or an IPv6 address without one
    if whole_number(port, most=65535) is None:
        raise DatabaseUnavailable(_("HUB_DATABASE_URL: the port «%(port)s» is not a number from 1 to 65535",
                                    port=port[:20]), ValueError(port))


def shown_url(url: Any) -> str:
    """A database URL fit for printing: host, port and database name, no password and no query string.

    A password may also ride in the query (``?password=...``), so the query is left out whole.
    """
    url = make_url(url) if isinstance(url, str) else url
    return url.set(query={}).render_as_string(hide_password=True)


def _why_unavailable(url: Any, error: BaseException) -> str:
    shown = shown_url(url.set(drivername=url.get_backend_name()))
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "").absolute()
        if not path.parent.exists():
            return _("the folder %(folder)s for the SQLite database does not exist (HUB_DATABASE_URL=%(url)s); "
                     "create it or correct the path", folder=path.parent, url=shown)
        if not path.parent.is_dir():
            return _("%(folder)s is not a folder, an SQLite database cannot be created there "
                     "(HUB_DATABASE_URL=%(url)s)", folder=path.parent, url=shown)
        if path.is_dir():
            return _("%(path)s is a folder, not an SQLite database file (HUB_DATABASE_URL=%(url)s)", path=path,
                     url=shown)
        if path.is_file() and "not a database" in str(error):
            return _("%(path)s is not an SQLite database file (HUB_DATABASE_URL=%(url)s); name another file",
                     path=path, url=shown)
        return _("cannot open the SQLite database %(path)s: no permission to write or the path is not reachable "
                 "(HUB_DATABASE_URL=%(url)s)", path=path, url=shown)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = (lines[0] if lines else type(error).__name__).removeprefix("connection failed: ")
    return _("cannot connect to the database %(url)s: %(detail)s", url=shown, detail=detail)


def _create_for_dialect(url: str) -> Engine:
    # hide_parameters: an error's text (logged, or shown in a 500's traceback) names the statement but not
    # its values, which are phones, emails and names.
    if url.startswith("sqlite"):
        # No directories are made: a mistyped path must fail with a clear line, not grow a new tree.
        # pool_use_lifo: each SQLite connection keeps its own page cache, and drops all of it when it
        # finds the database changed by another connection. A first-in-first-out pool hands out its
        # connections in turn once two exist (a read beside a write), so every transaction of a sync
        # started on a cold cache: 17 % of a Bitrix24 full sync's writing thread was re-reading pages.
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True, pool_use_lifo=True)
        engine.__class__ = _SQLiteEngine
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN past reads and
        # breaks SAVEPOINTs; let SQLAlchemy issue BEGIN itself.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


class _SQLiteEngine(Engine):
    """An engine whose ``begin()`` blocks take SQLite's write lock at once (BEGIN IMMEDIATE).

    A deferred transaction that reads and then writes fails at once with
    "database is locked" when another connection committed in between
    (SQLite cannot wait there without a deadlock), so a background sync and a
    scheduler tick, or two processes, would make each other fail. Taking the
    lock first makes the second writer wait (busy_timeout) instead. Reads
    through ``connect()`` stay deferred and, with WAL, never wait for a writer.
    """

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.connect() as conn:
            conn.execution_options(hub_sqlite_immediate=True)
            with conn.begin():
                yield conn


def _sqlite_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("hub_sqlite_immediate"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # may wait and fail ("database is locked"): errors as SQLAlchemy's
    else:
        # A deferred BEGIN takes no lock and cannot fail; straight to the driver, as it runs before every
        # transaction (a dispatch begins one per letter) and SQLAlchemy's statement path costs more than it.
        driver = conn.connection.driver_connection
        assert driver is not None  # the connection is being begun, so it is open
        driver.execute("BEGIN")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    _owner_only(cur)
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    # A 128 MB page cache (used only as needed) and a checkpoint every ~80 MB
    # of WAL: large imports and a million-contact admin touch many index
    # pages, and fewer, larger checkpoints write each page back once. A
    # larger cache did not make a Bitrix24 full sync cheaper once the pool
    # kept one connection (25.0 CPU-s at 128 MB against 25.2 at 256 MB,
    # run side by side) and cost memory (347 MB against 487 MB).
    cur.execute("PRAGMA cache_size=-131072")
    cur.execute("PRAGMA wal_autocheckpoint=20000")
    # Deleted rows are overwritten with zeros, free pages included ("FAST" would leave
    # whole freed pages as they were): an erased person must not stay readable in the
    # file. Many builds default to it already; others do not.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


def _owner_only(cur: Any) -> None:
    """Make a database file SQLite has just created readable by its owner only (0600).

    Only a brand-new, still empty file is touched, so a mode someone chose for an
    existing database stays. SQLite creates the -wal and -shm files later with the
    database file's own mode, so they follow. (Changing the umask instead would
    affect every thread of the process, the admin's included.)
    """
    for _seq, name, filename in cur.execute("PRAGMA database_list").fetchall():
        if name == "main" and filename:
            path = Path(filename)
            if path.is_file() and path.stat().st_size == 0:
                os.chmod(path, 0o600)


def forget_deleted(engine: Engine, *, vacuum_below: int = 0) -> bool:
    """Make what was just deleted unreadable on disk now, not at some later checkpoint; SQLite only.

    secure_delete zeroes freed space in the database file, but in WAL mode the
    pages as they were before a delete stay in the -wal file until a checkpoint
    copies the new ones back and the log starts over. A TRUNCATE checkpoint does
    both and leaves the -wal file empty; it waits (busy_timeout) for readers of
    older snapshots. A database file smaller than `vacuum_below` bytes is first
    rebuilt with VACUUM, which also clears space freed before secure_delete was
    on (databases written by builds without it). False when a reader held on and
    the -wal file still has old pages; elsewhere than SQLite, always True.
    """
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as conn:
        # The driver's own connection is in autocommit: VACUUM and a checkpoint run outside a transaction.
        raw: Any = conn.connection.dbapi_connection
        try:
            if vacuum_below:
                filename = raw.execute("PRAGMA database_list").fetchone()[2]
                if filename and os.path.getsize(filename) < vacuum_below:
                    raw.execute("VACUUM")
            busy, _frames, _done = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            return False  # a writer held the database past busy_timeout; the next checkpoint does it
    return not busy


def sessionmaker_for(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A unit of work: committed when the block ends, rolled back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def insert_for(conn: Connection | Session, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both SQLite and PostgreSQL do)."""
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    name = bind.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database dialect {name!r}")


def among(conn: Connection, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN (values)`` with all the values in one bound parameter.

    An ordinary IN list is rendered afresh for every length it is given, so a
    sync that looks up thousands of keys a page pays SQLAlchemy's statement
    compilation each time, more than the lookup itself. One JSON array
    (SQLite's json_each) or one PostgreSQL array keeps the statement the same
    and compiled once; both still use the column's index.
    """
    if conn.dialect.name == "sqlite":
        return column.in_(select(bound_values(conn, values, column.type).c.value))
    return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))


def bound_values(conn: Connection, values: Sequence[Any], type_: Any) -> Any:
    """The values as a one-column table (`.c.value`) bound as one parameter: json_each on SQLite, unnest
    of an array on PostgreSQL. For a query that does something per value (a correlated subquery), where
    `among` only tests membership; compiled once whatever the number of values, like `among`."""
    if conn.dialect.name == "sqlite":
        return func.json_each(bindparam(None, json.dumps(list(values), default=str))).table_valued("value")
    return func.unnest(bindparam(None, list(values), type_=postgresql.ARRAY(type_))).table_valued("value") \
        .render_derived()


def bulk_insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *,
                ignore_conflicts: bool = False) -> None:
    """Insert many rows of the same shape, skipping conflicting ones when asked.

    On SQLite this is one driver-level executemany with each column's own
    bind processor applied column by column, once per distinct object (a
    chunk shares one timestamp): SQLAlchemy's per-row parameter machinery
    costs more than SQLite's work for the narrow rows an import writes.
    Timestamps and flags, the columns a sync writes most, skip SQLAlchemy's
    layered processors for equivalent direct ones (_sqlite_binder).

    On PostgreSQL the rows go in with COPY (_pg_copy): psycopg's executemany
    sends one INSERT per row, which the server parses and plans one by one
    (measured: 100,000 narrow rows in 5.6 s that way, 0.3 s with COPY).
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _pg_copy(conn, table, rows, ignore_conflicts=ignore_conflicts)
        return
    if conn.dialect.name != "sqlite":
        stmt = insert_for(conn, table)
        conn.execute(stmt.on_conflict_do_nothing() if ignore_conflicts else stmt, list(rows))
        return
    names = list(rows[0])
    verb = "INSERT OR IGNORE" if ignore_conflicts else "INSERT"
    sql = f"{verb} INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    if len(names) == 1:
        columns: list[Sequence[Any]] = [[row[names[0]] for row in rows]]
    else:  # transposed in C: one tuple per row, then one per column
        columns = list(zip(*map(itemgetter(*names), rows), strict=True))
    for i, name in enumerate(names):
        binder = _sqlite_binder(table.c[name].type, conn.dialect)
        if binder is not None:
            columns[i] = binder(columns[i])
    conn.exec_driver_sql(sql, list(zip(*columns, strict=True)))


def analyze(conn: Connection, table: Table) -> None:
    """Give a table just filled its planner statistics (PostgreSQL; SQLite plans without them).

    Autovacuum never analyzes temporary tables, and sees a transaction's rows only once it commits,
    so without this the planner guesses the size of a scratch table, or of a table a long
    transaction is filling, and a guess of a few thousand rows for millions turns a set operation
    against it into a loop over one of them. ANALYZE counts the transaction's own new rows.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.quote(table.name)}")


def _pg_copy(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, ignore_conflicts: bool) -> None:
    """COPY the rows into `table`; with `ignore_conflicts`, through a scratch table and ON CONFLICT DO NOTHING.

    Each value passes its column's own bind processor first (timestamps made
    UTC, JSON wrapped), so what lands is what the ordinary INSERT would write.
    The scratch table holds only the columns given, without constraints
    (CREATE TABLE AS ... WITH NO DATA), so columns left out take their
    defaults in `table` itself; it lives until the transaction ends.
    """
    names = list(rows[0])
    dialect = conn.dialect
    processors = [table.c[name].type._cached_bind_processor(dialect) for name in names]
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in names)
    target = quote(table.name)
    into = target
    if ignore_conflicts:
        into = quote(f"hub_bulk_{table.name}"[:63])
        if conn.exec_driver_sql(f"SELECT to_regclass('pg_temp.{into}')").scalar() is None:
            conn.exec_driver_sql(f"CREATE TEMP TABLE {into} ON COMMIT DROP AS SELECT {columns} FROM {target} "
                                 "WITH NO DATA")
        else:
            conn.exec_driver_sql(f"TRUNCATE {into}")
    driver = conn.connection.driver_connection
    assert driver is not None  # a connection in use is open
    with driver.cursor() as cursor, cursor.copy(f"COPY {into} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([value if proc is None else proc(value)
                            for value, proc in zip(map(row.__getitem__, names), processors, strict=True)])
    if ignore_conflicts:
        conn.exec_driver_sql(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {into} ON CONFLICT DO NOTHING")


def _sqlite_binder(type_: Any, dialect: Any) -> Callable[[Sequence[Any]], list[Any]] | None:
    """How a column's values are bound on SQLite, or None when they go to the driver as they are."""
    if isinstance(type_, UTCDateTime):
        return _bind_times
    processor = type_._cached_bind_processor(dialect)
    if processor is None:
        return None
    if isinstance(type_, Boolean):  # a bool as SQLite stores it; anything else meets SQLAlchemy's checks
        return lambda values: [int(v) if type(v) is bool else processor(v) for v in values]
    if isinstance(type_, JSON) and dialect._json_serializer is None:
        return _bind_json
    return lambda values: _bind_column(values, processor)


_JSON = json.JSONEncoder()  # json.dumps's own settings, without its per-call argument checks


def _bind_json(values: Sequence[Any]) -> list[Any]:
    """What SQLAlchemy's JSON processor writes (json.dumps), empty lists and objects without encoding.

    An object several rows share (an importer's rows made alike) is encoded once.
    """
    encode = _JSON.encode
    done: dict[int, str] = {}  # id -> text: every object in `values` lives until this returns

    def text(v: Any) -> str:
        found = done.get(id(v))
        if found is None:
            found = done[id(v)] = encode(v)
        return found

    return [None if v is None else ("[]" if type(v) is list else "{}") if not v and type(v) in (list, dict)
            else text(v) for v in values]


def _bind_times(values: Sequence[Any]) -> list[Any]:
    """UTCDateTime's binding on SQLite in one step: naive UTC in SQLAlchemy's storage format.

    The same text SQLAlchemy's SQLite DATETIME writes ("2026-12-07 10:00:00.000000"),
    so comparisons with rows written through the ORM hold.
    """
    out: list[Any] = []
    last: Any = None
    bound: Any = None
    utc = dt.timezone.utc
    for value in values:
        if value is None:
            out.append(None)
            continue
        if value is not last:  # a chunk's rows share one "now"
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r}; Hub stores timezone-aware UTC only")
            utc_value = value if value.tzinfo is utc else value.astimezone(utc)
            bound = utc_value.isoformat(" ", "microseconds")[:26]
            last = value
        out.append(bound)
    return out


def _bind_column(values: Sequence[Any], processor: Callable[[Any], Any]) -> list[Any]:
    """One column's values through its bind processor, each distinct object once."""
    out: list[Any] = []
    seen: dict[int, Any] = {}  # id -> bound value; the rows keep every object alive meanwhile
    for value in values:
        if value is None:
            out.append(None)
        elif type(value) in (list, dict) and not value:
            out.append("[]" if type(value) is list else "{}")
        else:
            key = id(value)
            bound = seen.get(key, _UNSET)
            if bound is _UNSET:
                bound = seen[key] = processor(value)
            out.append(bound)
    return out


_UNSET = object()


def reserve_ids(conn: Connection, table: Table, count: int) -> list[int]:
    """Take `count` fresh primary keys for `table`, as a sequence would hand them out.

    Bulk inserts then run as one plain executemany: asking the database for
    each new id through RETURNING costs a statement per row on SQLite. On
    SQLite the reservation bumps the AUTOINCREMENT counter, which also takes
    the write lock, so no other writer can be handed the same ids.
    """
    if count <= 0:
        return []
    name = conn.dialect.name
    if name == "postgresql":
        seq = f"{table.name}_id_seq"
        rows = conn.exec_driver_sql(f"SELECT nextval('{seq}') FROM generate_series(1, {int(count)})")
        return [r[0] for r in rows]
    if name == "sqlite":
        row = conn.exec_driver_sql(
            "UPDATE sqlite_sequence SET seq = max(seq, (SELECT coalesce(max(id), 0) FROM "
            f"{table.name})) + {int(count)} WHERE name = '{table.name}' RETURNING seq").first()
        if row is None:
            top = conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table.name}").scalar_one()
            conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                                 (table.name, top + count))
            last = top + count
        else:
            last = row[0]
        return list(range(last - count + 1, last + 1))
    raise RuntimeError(f"unsupported database dialect {name!r}")


def by_source_key(conn: Connection, keys: Iterable[tuple[str, str]], source: Any, key: Any, value: Any,
                  *where: ColumnElement[bool], chunk: int = 5000) -> dict[tuple[str, Any], Any]:
    """`value` for each (source, key) pair found, as {(source, key): value}: how a sync page finds what its
    records name (a contact by its CRM id, a company, a deal's contact).

    One query a source and chunk of distinct keys (`among`, so the statement is
    compiled once), with the extra `where` conditions on the same table.
    """
    by_source: dict[str, set[Any]] = {}
    for name, one in keys:
        if one:
            by_source.setdefault(name, set()).add(one)
    out: dict[tuple[str, Any], Any] = {}
    for name, wanted in by_source.items():
        for part in chunks(sorted(wanted), chunk):
            for found, result in conn.execute(select(key, value).where(source == name, among(conn, key, part),
                                                                       *where)).all():
                out[(name, found)] = result
    return out


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Slices of at most `size`, to stay under the databases' bound-parameter limits."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
