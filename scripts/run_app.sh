#!/usr/bin/env bash
# Set up and start the Streamlit app (a sample pair is preloaded) on http://localhost:8501.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streamlit run app.py "$@"
