#!/usr/bin/env bash
# Set up everything the tests need, then lint and run the whole suite (browser test included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "Debian's chromium is needed for the browser test: sudo apt-get install -y chromium" >&2
  fi
fi
.venv/bin/ruff check .
.venv/bin/lint-imports
export LPIPS_EXPLAIN_OFFLINE=1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
