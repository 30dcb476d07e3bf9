#!/usr/bin/env bash
# Create or refresh the project virtualenv (.venv) with Hub and its test extras.
#
# Idempotent and cheap to re-run: the editable install is skipped while
# .venv/.stamp is newer than pyproject.toml. Delete .venv/.stamp (or touch
# pyproject.toml) to force a reinstall. PYTHON=... selects the interpreter.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.stamp"

# Succeeds when interpreter $1 is Python 3.11 or newer.
python_ok() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

if [ ! -x "$VENV/bin/python" ]; then
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        echo "bootstrap: $PYTHON not found; Hub needs Python >= 3.11" >&2
        exit 1
    fi
    if ! python_ok "$PYTHON"; then
        echo "bootstrap: Hub needs Python >= 3.11, but $PYTHON is $("$PYTHON" -V 2>&1)" \
             "(set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    echo "bootstrap: creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
    rm -f "$STAMP"
elif ! python_ok "$VENV/bin/python"; then
    # An old venv left behind by an older interpreter would fail in confusing ways later.
    echo "bootstrap: $VENV uses $("$VENV/bin/python" -V 2>&1); Hub needs >= 3.11." \
         "Remove it (make clean) and re-run." >&2
    exit 1
fi

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
    exit 0  # up to date
fi

echo "bootstrap: installing Hub and test dependencies into $VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Hub was once installed under the distribution name "hub"; its leftover entry points would
# register every built-in plugin twice.
if "$VENV/bin/python" -m pip show hub 2>/dev/null | grep -qx "Editable project location: $PWD"; then
    "$VENV/bin/python" -m pip uninstall --quiet -y hub
fi
"$VENV/bin/python" -m pip install --quiet -e '.[test]'
touch "$STAMP"
