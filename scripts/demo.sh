#!/usr/bin/env bash
# The demo: the testproject on its embedded SQLite database. Migrates, places orders through
# the real view (jobs enqueued in the order's transaction), and shows what was stored.
set -euo pipefail
. "$(dirname "$0")/_venv.sh" ""

cd testproject
export DJANGO_SETTINGS_MODULE=config.settings
"$VENV/bin/python" manage.py migrate --verbosity 0
"$VENV/bin/python" manage.py shop_demo
