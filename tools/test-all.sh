#!/usr/bin/env bash
# The whole test suite: Rust unit + integration tests (parity against the committed goldens),
# then the Python tooling tests (export round trip, goldens reproducible from transformers).
# Creates the Python venv (.venv, ~4.9 GB: torch's CUDA libraries, used on CPU) on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SIGLIPD_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import transformers, torch, onnxruntime, pytest' 2>/dev/null; then
  echo "== setting up Python tools venv in $VENV (tools/requirements.txt)"
  python3 -m venv "$VENV"
  # The list is closed and pinned (see its header): no resolver, no triton, no wheel cache.
  "$VENV/bin/pip" install --quiet --no-cache-dir --no-deps -r tools/requirements.txt
fi

# The binary the browser and Python tests drive: the one `cargo test` builds, wherever
# CARGO_TARGET_DIR puts it.
SIGLIPD_BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/debug/siglipd"
export SIGLIPD_BIN

echo "== cargo test"
cargo test --locked --all-targets

echo "== browser tests (headless Chromium via playwright-core, against $SIGLIPD_BIN)"
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error && npm test)

echo "== python tools tests"
"$VENV/bin/python" -m pytest -q tools/tests
