"""Throwaway PostgreSQL, Redis and IMAP (dovecot) servers for the test suite.

The context managers start a private server on a free loopback port, with all
of its state in a temporary directory, and tear everything down on exit, even
when the body raises. tests/conftest.py wraps them in session-scoped fixtures
(one set per pytest-xdist worker). Should the test process die without getting
there (a worker terminated at the end of an interrupted run, SIGKILL), a
watchdog started beside each server (tests/watchdog.py) stops it instead.

To run the suite against servers you manage yourself, set
HUB_TEST_POSTGRES_URL, HUB_TEST_REDIS_URL and/or HUB_TEST_IMAP_URL; the matching context manager
then yields that URL and starts nothing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POSTGRES_URL_ENV = "HUB_TEST_POSTGRES_URL"
REDIS_URL_ENV = "HUB_TEST_REDIS_URL"

PG_DATABASE = "hub_test"
# Superuser created by initdb; independent of the OS user running the tests.
PG_SUPERUSER = "postgres"
# OS account used to run the server when the tests run as root
# (initdb and postgres refuse to run as root).
PG_OS_USER = "postgres"
# Where Debian/Ubuntu install versioned PostgreSQL binaries (not on PATH).
PG_LIB_GLOB = "/usr/lib/postgresql/*/bin"

START_TIMEOUT = 60.0  # seconds to wait for a server to accept connections
STOP_TIMEOUT = 15.0  # seconds to wait for a server to go away
# Another process can grab the port between picking it and the server binding
# it; starting again on a fresh port is cheaper than failing the session.
START_ATTEMPTS = 3
WATCHDOG = Path(__file__).with_name("watchdog.py")

# Libpq variables that would silently redirect our client tools elsewhere.
_PG_ENV_VARS = (
    "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD",
    "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE", "PGDATA", "PGOPTIONS", "PGSSLMODE",
)


class ServerUnavailable(RuntimeError):
    """A test server could not be started (missing binary, failed start-up)."""


# --------------------------------------------------------------------------- helpers


def _env_url(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def free_port() -> int:
    """Ask the kernel for a currently unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_watchdog(server_pid: int, signum: int, workdir: Path | str, marker: str = "") -> subprocess.Popen[bytes]:
    """Have tests/watchdog.py stop `server_pid` (and remove `workdir`) if this process dies first.

    `marker`: a string in the command line of helper processes to kill too (a browser's profile folder).
    """
    return subprocess.Popen(
        [sys.executable, str(WATCHDOG), str(os.getpid()), str(server_pid), str(int(signum)), str(workdir), marker],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # out of reach of a Ctrl-C meant for the test run
    )


def stop_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    """Called once this process stops the server itself: the watchdog has nothing left to do."""
    if watchdog is not None and watchdog.poll() is None:
        watchdog.kill()
        watchdog.wait()


@contextmanager
def _watched(server_pid: int, signum: int, workdir: Path) -> Iterator[None]:
    watchdog = start_watchdog(server_pid, signum, workdir)
    try:
        yield
    finally:
        stop_watchdog(watchdog)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"


def _version_key(bin_dir: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,); sorts 9.6 < 10 < 15 correctly.
    version = Path(bin_dir).parent.name
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def find_postgres_bin(name: str) -> str | None:
    """Locate a PostgreSQL program: PATH first, then the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    for bin_dir in sorted(glob.glob(PG_LIB_GLOB), key=_version_key, reverse=True):
        candidate = os.path.join(bin_dir, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _require_postgres_bin(name: str) -> str:
    path = find_postgres_bin(name)
    if path is None:
        raise ServerUnavailable(
            f"PostgreSQL program {name!r} not found on PATH or in {PG_LIB_GLOB} "
            f"(install postgresql, run scripts/test.sh, or set {POSTGRES_URL_ENV})"
        )
    return path


# --------------------------------------------------------------------------- PostgreSQL


class _PgRunner:
    """Runs the PostgreSQL server programs, as the postgres account when we are root."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if k not in _PG_ENV_VARS}
        # Locale-independent messages and no dependency on installed locales.
        self.env["LC_ALL"] = "C"
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam(PG_OS_USER)
            except KeyError:
                raise ServerUnavailable(
                    f"running as root, but there is no {PG_OS_USER!r} account to run "
                    "PostgreSQL as (initdb refuses to run as root)"
                ) from None
            self.env["HOME"] = str(workdir)
            self.env["USER"] = self.env["LOGNAME"] = self.user.pw_name
            os.chown(workdir, self.user.pw_uid, self.user.pw_gid)

    def run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        kwargs = {}
        if self.user is not None:
            # Drop to the postgres account in the child only; extra_groups=[]
            # also clears root's supplementary groups.
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            args,
            cwd=self.workdir,  # the postgres account may not be able to read our cwd
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )


def _pg_stop(runner: _PgRunner, pg_ctl: str, datadir: Path) -> None:
    """Stop the cluster immediately; fall back to SIGKILL if pg_ctl cannot."""
    pid_file = datadir / "postmaster.pid"
    if not pid_file.exists():
        return  # never started, or already gone
    try:
        result = runner.run(
            [pg_ctl, "-D", str(datadir), "stop", "-m", "immediate", "-w", "-t", str(int(STOP_TIMEOUT))],
            timeout=STOP_TIMEOUT + 5,
        )
        if result.returncode == 0:
            return
    except subprocess.TimeoutExpired:
        pass
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass


def _pg_wait_and_create_db(port: int, log: Path) -> None:
    """Poll until the server accepts connections, then create the test database."""
    import psycopg  # test dependency; imported here so importing this module stays cheap

    deadline = time.monotonic() + START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = psycopg.connect(
                host="127.0.0.1", port=port, user=PG_SUPERUSER, dbname="postgres",
                connect_timeout=2, autocommit=True,  # CREATE DATABASE cannot run in a transaction
            )
        except psycopg.OperationalError as exc:
            last_error = exc
            time.sleep(0.1)
            continue
        with conn:
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        return
    raise ServerUnavailable(
        f"PostgreSQL on 127.0.0.1:{port} did not accept connections within "
        f"{START_TIMEOUT:.0f}s ({last_error}); server log tail:\n{_tail(log)}"
    )


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster and yield its SQLAlchemy URL.

    The cluster lives in a temporary directory (data, unix socket and log),
    listens on 127.0.0.1 only with trust authentication, and is tuned for
    speed over durability. It is stopped and deleted on exit.
    """
    override = _env_url(POSTGRES_URL_ENV)
    if override:
        yield override
        return

    initdb = _require_postgres_bin("initdb")
    pg_ctl = _require_postgres_bin("pg_ctl")

    workdir = Path(tempfile.mkdtemp(prefix="hub-pg-"))
    datadir = workdir / "data"
    log = workdir / "server.log"
    runner: _PgRunner | None = None
    try:
        runner = _PgRunner(workdir)
        result = runner.run(
            [initdb, "-D", str(datadir), "-U", PG_SUPERUSER, "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-sync"],
            timeout=120,
        )
        if result.returncode != 0:
            raise ServerUnavailable(f"initdb failed (exit {result.returncode}):\n{result.stdout.strip()}")

        # Written to the config file rather than passed on the command line so
        # paths need no quoting. Durability is irrelevant for a throwaway cluster.
        with open(datadir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# hub test settings\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{workdir}'\n"
                "max_connections = 100\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )

        port = 0
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            log.unlink(missing_ok=True)  # so the log only tells about this attempt
            result = runner.run(
                [pg_ctl, "-D", str(datadir), "-l", str(log), "-o", f"-p {port}",
                 "-w", "-t", str(int(START_TIMEOUT)), "start"],
                timeout=START_TIMEOUT + 10,
            )
            if result.returncode == 0:
                break
            _pg_stop(runner, pg_ctl, datadir)
            port_taken = "could not bind" in _tail(log, 50)
            if not (port_taken and attempt < START_ATTEMPTS):
                raise ServerUnavailable(
                    f"PostgreSQL failed to start (pg_ctl exit {result.returncode}): "
                    f"{result.stdout.strip()}\nserver log tail:\n{_tail(log)}"
                )

        _pg_wait_and_create_db(port, log)
        postmaster = int((datadir / "postmaster.pid").read_text().splitlines()[0])
        with _watched(postmaster, signal.SIGQUIT, workdir):  # SIGQUIT: PostgreSQL's immediate shutdown
            yield f"postgresql+psycopg://{PG_SUPERUSER}@127.0.0.1:{port}/{PG_DATABASE}"
    finally:
        if runner is not None:
            _pg_stop(runner, pg_ctl, datadir)
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- Redis


def _find_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"):
            if os.access(candidate, os.X_OK):
                path = candidate
                break
    if path is None:
        raise ServerUnavailable(
            "redis-server not found on PATH (install redis-server, run scripts/test.sh, "
            f"or set {REDIS_URL_ENV})"
        )
    return path


def _redis_ping(port: int) -> bool:
    """PING using the inline protocol, so no client library is needed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()  # SIGTERM: redis exits promptly (nothing to save with persistence off)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


@contextmanager
def redis_server() -> Iterator[str]:
    """Start redis-server on a free loopback port without persistence and yield its URL."""
    override = _env_url(REDIS_URL_ENV)
    if override:
        yield override
        return

    binary = _find_redis_server()
    workdir = Path(tempfile.mkdtemp(prefix="hub-redis-"))
    log = workdir / "redis.log"
    proc: subprocess.Popen | None = None
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            with open(log, "ab") as log_file:
                proc = subprocess.Popen(
                    [binary, "--port", str(port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no",
                     "--dir", str(workdir),  # any stray file lands in the temp dir
                     "--daemonize", "no", "--loglevel", "warning"],
                    cwd=workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + START_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                if _redis_ping(port):
                    break
                time.sleep(0.05)
            else:
                # Exited early (most likely the port was taken) or timed out.
                exited = proc.poll() is not None
                _stop_process(proc)
                if exited and attempt < START_ATTEMPTS:
                    continue
                reason = f"exited with code {proc.returncode}" if exited else (
                    f"did not answer PING within {START_TIMEOUT:.0f}s")
                raise ServerUnavailable(f"redis-server on 127.0.0.1:{port} {reason}; log tail:\n{_tail(log)}")
            break
        assert proc is not None
        with _watched(proc.pid, signal.SIGTERM, workdir):
            yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc is not None:
            _stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- IMAP (dovecot)

IMAP_URL_ENV = "HUB_TEST_IMAP_URL"
# Every user name logs in with this one password (a static passdb), so a test
# that wants an empty mailbox just picks a user name nobody used yet.
IMAP_PASSWORD = "hub-test-imap"
IMAP_USER = "hub"
# When we are root: dovecot's own accounts for its internal and login processes
# (as the Debian package creates them), and mail processes as `nobody`.
DOVECOT_INTERNAL_USER = "dovecot"
DOVECOT_LOGIN_USER = "dovenull"
DOVECOT_MAIL_USER = "nobody"


def _find_dovecot() -> str:
    path = shutil.which("dovecot")
    if path is None:
        for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
            if os.access(candidate, os.X_OK):
                path = candidate
                break
    if path is None:
        raise ServerUnavailable(
            "dovecot not found on PATH (install dovecot-imapd, run scripts/test.sh, "
            f"or set {IMAP_URL_ENV})"
        )
    return path


def _imap_greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(64).startswith(b"* OK")
    except OSError:
        return False


class Dovecot:
    """A running throwaway dovecot: its URL and where each user's maildir is.

    The benchmark writes maildir files directly (far faster than APPENDing
    100,000 messages), so it needs the path and the owner mail files must have.
    """

    def __init__(self, url: str, homes: Path, uid: int, gid: int) -> None:
        self.url = url
        self.homes = homes
        self.uid = uid
        self.gid = gid

    def maildir(self, user: str) -> Path:
        """The user's maildir (created with its cur/new/tmp folders, owned as dovecot expects)."""
        home = self.homes / user
        root = home / "Maildir"
        for path in (home, root, root / "cur", root / "new", root / "tmp"):
            path.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                os.chown(path, self.uid, self.gid)
        return root


def _dovecot_accounts(workdir: Path) -> tuple[str, str, str, int, int]:
    """(internal user, internal group, login user, mail uid, mail gid) for running as who we are."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        import grp

        group = grp.getgrgid(os.getegid()).gr_name
        return me.pw_name, group, me.pw_name, me.pw_uid, os.getegid()
    import grp

    try:
        internal = pwd.getpwnam(DOVECOT_INTERNAL_USER)
        pwd.getpwnam(DOVECOT_LOGIN_USER)
        mail = pwd.getpwnam(DOVECOT_MAIL_USER)
    except KeyError as exc:
        raise ServerUnavailable(
            f"running as root, but the account {exc.args[0]} dovecot needs is missing "
            "(install dovecot-core, which creates dovecot and dovenull)"
        ) from None
    return internal.pw_name, grp.getgrgid(internal.pw_gid).gr_name, DOVECOT_LOGIN_USER, mail.pw_uid, mail.pw_gid


def _dovecot_config(workdir: Path, port: int, accounts: tuple[str, str, str, int, int]) -> str:
    internal_user, internal_group, login_user, uid, gid = accounts
    return f"""\
# Throwaway IMAP server for Hub's tests (tests/servers.py); nothing outside {workdir}.
instance_name = hub-test-{port}
base_dir = {workdir}/run
state_dir = {workdir}/state
log_path = {workdir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
# Dovecot is the only writer once it runs (files written beforehand are indexed at the first
# SELECT): without this every command after a MOVE rescans the whole cur/ folder.
maildir_very_dirty_syncs = yes
passdb {{
  driver = static
  args = password={IMAP_PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={workdir}/home/%u
}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def _stop_dovecot(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()  # SIGTERM: the master stops its children and exits
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


@contextmanager
def start_dovecot() -> Iterator[Dovecot]:
    """Start dovecot (IMAP only, plaintext login on loopback, maildirs in a temporary folder)."""
    binary = _find_dovecot()
    workdir = Path(tempfile.mkdtemp(prefix="hub-imap-"))
    log = workdir / "dovecot.log"
    proc: subprocess.Popen | None = None
    try:
        accounts = _dovecot_accounts(workdir)
        homes = workdir / "home"
        homes.mkdir()
        if os.geteuid() == 0:
            workdir.chmod(0o711)  # the mail processes (nobody) pass through to their homes
            os.chown(homes, accounts[3], accounts[4])
        port = 0
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            conf = workdir / "dovecot.conf"
            conf.write_text(_dovecot_config(workdir, port, accounts))
            log.unlink(missing_ok=True)
            with open(workdir / "master.out", "ab") as out:
                proc = subprocess.Popen(
                    [binary, "-F", "-c", str(conf)], cwd=workdir,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + START_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                if _imap_greets(port):
                    break
                time.sleep(0.05)
            else:
                exited = proc.poll() is not None
                _stop_dovecot(proc)
                if exited and attempt < START_ATTEMPTS and "in use" in _tail(log, 50) + _tail(workdir / "master.out"):
                    continue
                reason = f"exited with code {proc.returncode}" if exited else (
                    f"did not greet within {START_TIMEOUT:.0f}s")
                raise ServerUnavailable(
                    f"dovecot on 127.0.0.1:{port} {reason}; log tail:\n{_tail(log)}\n{_tail(workdir / 'master.out')}")
            break
        assert proc is not None
        with _watched(proc.pid, signal.SIGTERM, workdir):
            yield Dovecot(f"imap://{IMAP_USER}:{IMAP_PASSWORD}@127.0.0.1:{port}", homes, accounts[3], accounts[4])
    finally:
        if proc is not None:
            _stop_dovecot(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def dovecot_server() -> Iterator[str]:
    """Start a throwaway dovecot and yield its URL, imap://USER:PASSWORD@127.0.0.1:PORT.

    Any user name logs in with the URL's password and gets an empty mailbox of
    its own. With HUB_TEST_IMAP_URL set, yields that instead and starts
    nothing; such a server should accept any user name with the URL's password
    too (a static passdb, as here), since each test logs in as a new user.
    """
    override = _env_url(IMAP_URL_ENV)
    if override:
        yield override
        return
    with start_dovecot() as server:
        yield server.url
