#!/usr/bin/env bash
# Run the test suite: scripts/test.sh [pytest args...]
#
# 1. bootstraps .venv (scripts/bootstrap.sh);
# 2. installs the system packages the tests need, only those that are missing;
# 3. runs the linter (ruff) and the type checker (mypy), settings in pyproject.toml, and stops
#    on any finding;
# 4. runs pytest on parallel workers with any extra arguments and exits with pytest's exit code.
#
# PostgreSQL, Redis and dovecot (IMAP) are not started here: the test suite
# starts throwaway servers itself (tests/servers.py). Set HUB_TEST_POSTGRES_URL,
# HUB_TEST_REDIS_URL or HUB_TEST_IMAP_URL to use existing servers instead; the
# matching package is then not required.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/bootstrap.sh

# --- system packages ---------------------------------------------------------

have() { command -v "$1" >/dev/null 2>&1; }

# initdb is usually not on PATH on Debian (it lives in /usr/lib/postgresql/N/bin).
have_initdb() {
    have initdb && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

missing=()
if [ -z "${HUB_TEST_REDIS_URL:-}" ] && ! have redis-server; then
    missing+=(redis-server)
fi
if [ -z "${HUB_TEST_POSTGRES_URL:-}" ] && ! have_initdb; then
    missing+=(postgresql)
fi
# dovecot lives in /usr/sbin, which is not on every user's PATH.
if [ -z "${HUB_TEST_IMAP_URL:-}" ] && ! have dovecot && [ ! -x /usr/sbin/dovecot ]; then
    missing+=(dovecot-imapd)
fi
# The admin's browser tests drive headless Chromium through chromedriver (tests/browser.py).
if ! have chromium; then
    missing+=(chromium)
fi
if ! have chromedriver; then
    missing+=(chromium-driver)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        have sudo && sudo=(sudo)
    fi
    if ! have apt-get; then
        echo "test.sh: warning: missing ${missing[*]} and no apt-get to install them;" \
             "tests that need them will fail" >&2
    elif [ "$(id -u)" -ne 0 ] && [ "${#sudo[@]}" -eq 0 ]; then
        echo "test.sh: warning: missing ${missing[*]}; not root and no sudo to install them" >&2
    else
        export DEBIAN_FRONTEND=noninteractive
        # Wait for the dpkg lock instead of failing if another apt run holds it.
        apt=("${sudo[@]}" apt-get -q -o DPkg::Lock::Timeout=300)
        # A failed install is reported but does not stop the run: pytest then
        # says exactly which server or tool is unavailable, and tests that do
        # not need it still run.
        # apt's output is kept out of the way unless something goes wrong.
        apt_log="$(mktemp)"
        if "${apt[@]}" update >"$apt_log" 2>&1 \
            && "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >>"$apt_log" 2>&1; then
            for pkg in "${missing[@]}"; do
                echo "test.sh: installed $pkg"
            done
        else
            tail -n 20 "$apt_log" >&2
            echo "test.sh: warning: could not install ${missing[*]} with apt-get" >&2
        fi
        rm -f "$apt_log"
    fi
fi

# --- lint and types ------------------------------------------------------------

# Both run before the tests, and both always run, so one run lists every finding.
lint_failed=()
.venv/bin/ruff check --quiet . || lint_failed+=("ruff check .")
.venv/bin/mypy || lint_failed+=("mypy")
if [ "${#lint_failed[@]}" -gt 0 ]; then
    for tool in "${lint_failed[@]}"; do
        echo "test.sh: '$tool' reported problems (listed above)" >&2
    done
    echo "test.sh: fix them and run again; the tests did not run" >&2
    exit 1
fi

# --- tests ---------------------------------------------------------------------

# The suite runs on parallel workers (pytest-xdist), one per CPU up to four; each worker
# starts its own throwaway servers. A test file stays on one worker, so its module-scoped
# fixtures (a browser, an emulator) start once. HUB_TEST_WORKERS=0 runs everything in
# this process; arguments given to the script come last and win (e.g. -n 0).
cpus="$(nproc 2>/dev/null || echo 2)"
workers="${HUB_TEST_WORKERS:-$(( cpus < 4 ? cpus : 4 ))}"

# exec: the script's exit code is pytest's.
exec .venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
