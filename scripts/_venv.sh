# Shared by scripts/demo.sh and scripts/test.sh: create the virtualenv and install soniq into it.
# Usage: . scripts/_venv.sh "<pip extras>"
# Environment: PYTHON, the interpreter that creates the virtualenv (python3); VENV, its folder
# (.venv); DJANGO, a requirement that pins Django in it (e.g. "Django>=6.0,<7"; by default pip
# takes the newest Django that soniq and the interpreter accept). The virtualenv is kept between
# runs; each run installs into it again, so a changed DJANGO takes effect.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
target="."
[ -z "${1:-}" ] || target=".[$1]"
"$VENV/bin/python" -m pip install --quiet -e "$target" ${DJANGO:+"$DJANGO"}
