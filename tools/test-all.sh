#!/usr/bin/env bash
# The whole test suite: Rust unit + integration tests (parity against the committed goldens),
# then the Python tooling tests (export round trip, goldens reproducible from transformers).
# Creates the Python venv (.venv, ~4.9 GB: torch's CUDA libraries, used on CPU) on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SIGLIPD_VENV:-.venv}
# The venv (~3 GB of wheels: network and disk) and the page tests' npm packages are fetched in
# the background while cargo compiles (CPU); their logs are shown if they fail.
mkdir -p target
# a failure below stops the background fetches too
trap 'jobs -p | xargs -r kill 2>/dev/null' EXIT
venv_pid=
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import transformers, torch, onnxruntime, pytest' 2>/dev/null; then
  echo "== setting up Python tools venv in $VENV (tools/requirements.txt), in the background (log: target/venv-setup.log)"
  # The list is closed and pinned (see its header): no resolver, no triton, no wheel cache.
  ( python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet --no-cache-dir --no-deps -r tools/requirements.txt ) \
    >target/venv-setup.log 2>&1 &
  venv_pid=$!
fi
( cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error ) >target/npm-ci.log 2>&1 &
npm_pid=$!

# The binary the browser and Python tests drive: the one `cargo test` builds, wherever
# CARGO_TARGET_DIR puts it.
SIGLIPD_BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/debug/siglipd"
export SIGLIPD_BIN

echo "== cargo test"
cargo test --locked --all-targets

echo "== browser tests (headless Chromium via playwright-core, against $SIGLIPD_BIN)"
wait "$npm_pid" || { cat target/npm-ci.log; echo "test-all: npm ci failed" >&2; exit 1; }
(cd tests/e2e && npm test)

if [ -n "$venv_pid" ]; then
  wait "$venv_pid" || { cat target/venv-setup.log; echo "test-all: setting up $VENV failed" >&2; exit 1; }
fi
echo "== python tools tests"
"$VENV/bin/python" -m pytest -q tools/tests
