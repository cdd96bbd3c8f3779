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
echo "== pytest"
.venv/bin/pytest "$@"
