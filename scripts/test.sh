#!/usr/bin/env bash
# The whole test suite on a fresh machine: virtualenv, lint, types, tests on SQLite and
# PostgreSQL (SONIQ_TEST_DATABASE_URL, or a throwaway cluster when none answers).
# PYTHON, VENV and DJANGO choose the interpreter, the virtualenv and the Django release
# (scripts/_venv.sh); by default python3 in .venv with the newest Django it takes. .ci/run runs
# this twice: Python 3.11 with Django 5.2 in .venv, Python 3.13 with Django 6 in .venv-django6.
# Both legs run ruff and mypy as well: django-stubs follows Django 6, and mypy checks the code
# as Python 3.11 code ([tool.mypy] python_version) whichever interpreter runs it.
set -euo pipefail
. "$(dirname "$0")/_venv.sh" "test,dev"
"$VENV/bin/python" -c 'import django, sys; print(
    f"== Python {sys.version.split()[0]}, Django {django.get_version()}, in '"$VENV"'")'

echo "== ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "== mypy"
"$VENV/bin/mypy"
echo "== Debian packages"
# The admin's browser tests (tests/browser) drive Debian's chromium through Playwright, and
# tests/acceptance/test_pgbouncer.py runs soniq behind Debian's pgbouncer; both fail, rather
# than skip, without them. SONIQ_CHROMIUM may name another chromium binary.
missing=()
if [ -z "${SONIQ_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
    && ! command -v chromium-browser >/dev/null 2>&1; then
    missing+=(chromium)
fi
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
    missing+=(pgbouncer)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; then
        as_root=""
        [ "$(id -u)" -eq 0 ] || as_root="sudo"
        echo "installing ${missing[*]} with apt-get"
        $as_root apt-get update -qq
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "${missing[*]} missing and installing needs root or sudo: tests will fail" >&2
    fi
fi
echo "== pytest"
"$VENV/bin/pytest" "$@"
