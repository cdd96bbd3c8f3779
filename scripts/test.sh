#!/usr/bin/env bash
# The whole test suite on a fresh machine: virtualenv, lint, types, tests on SQLite and
# PostgreSQL (SONIQ_TEST_DATABASE_URL, or a throwaway cluster when none answers).
set -euo pipefail
. "$(dirname "$0")/_venv.sh" "test,dev"

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== chromium"
# The admin's browser tests (tests/browser) drive Debian's chromium through Playwright; they
# fail, rather than skip, without it. SONIQ_CHROMIUM may name another binary.
if [ -z "${SONIQ_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
    && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; then
        as_root=""
        [ "$(id -u)" -eq 0 ] || as_root="sudo"
        echo "installing Debian's chromium with apt-get"
        $as_root apt-get update -qq
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        echo "chromium is missing and installing it needs root or sudo:" \
            "the browser tests will fail" >&2
    fi
fi
echo "== pytest"
.venv/bin/pytest "$@"
