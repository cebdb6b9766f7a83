# Shared by cross/aarch64.sh and cross/armv7.sh (sourced, not run).
# Cross toolchain: Debian's rustc-web/cargo-web (1.96, new enough for tract 0.23) plus the
# target's std from libstd-rust-web-dev:<arch>. rustup cannot download targets here, and the
# rustup toolchain stays the default for everything else: only these scripts call /usr/bin/cargo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start=$(date +%s)
phase() { echo "== [cross $TARGET $(( $(date +%s) - start ))s] $*"; }

# install_packages <debian arch or -> <package>... : idempotent; only runs apt when something is
# missing; a foreign architecture is added only when one is named
install_packages() {
  local arch=$1; shift
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && { phase "packages present"; return 0; }
  phase "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [ "$arch" != - ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    dpkg --add-architecture "$arch"
  fi
  if ! apt-get update -qq; then
    # Seen once: the mirror's index for one foreign architecture was stale. Say so plainly
    # instead of failing somewhere later with a confusing missing-package error.
    echo "cross: apt-get update failed (a stale mirror index?); retrying once" >&2
    sleep 5
    apt-get update -qq || { echo "cross: apt-get update failed twice (see the E: lines above for the index): cannot install the $TARGET toolchain" >&2; return 100; }
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Debian's cargo with Debian's rustc (rustup's rustc has no std for these targets: E0463).
# XCARGO_ENV: extra VAR=value pairs a target script needs (armv7: RUSTC_BOOTSTRAP for build-std).
XCARGO_ENV=()
xcargo() {
  env "${XCARGO_ENV[@]}" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
    CARGO_TARGET_DIR="$ROOT/target/cross" \
    /usr/bin/cargo --config "$ROOT/cross/$TARGET.toml" "$@"
}

# Test binaries are listed by cargo as JSON; run each under qemu with the given env/cpu.
# Integration tests that spawn the siglipd binary (cli, daemon) are not in the list: without
# binfmt_misc an aarch64 process cannot exec another aarch64 binary under qemu-user.
# CROSS_LIB_TESTS=0 (.ci/run) leaves the unit tests to the x86 run: they hold config, ids, state
# and decision logic that do not depend on the CPU, and building them in release for the target
# is a whole extra compile of the crate. What ARM changes (tract's kernels, SIMD decoders, the
# server) is in parity and http.
TEST_ARGS=(--release --locked --target "$TARGET" --test parity --test http)
[ "${CROSS_LIB_TESTS:-1}" = 0 ] || TEST_ARGS+=(--lib)

# One compile: building the integration tests also builds the siglipd binary, with the same
# (dev-dependency-unified) features, so a separate `cargo build` would compile much twice.
build_and_test() {
  phase "release build: siglipd binary and the tests"
  xcargo test "${TEST_ARGS[@]}" --no-run
  local bin="target/cross/$TARGET/release/siglipd"
  [ -x "$bin" ] || { echo "cross: $bin was not built" >&2; return 1; }
  file "$bin" 2>/dev/null || ls -la "$bin"
}

# run_tests <label> <VAR=value>...: runs the lib + parity + http tests under the runner from
# cross/<target>.toml with extra env (QEMU_CPU picks the emulated CPU, TRACT_* knobs).
run_tests() {
  local label=$1; shift
  local log="target/cross/$TARGET-tests-$label.log"
  phase "tests under qemu: $label ($*)"
  set +e
  # classify_matches_the_cli runs the binary as a subprocess (see above); --no-fail-fast so one
  # failing binary does not hide the others' results
  ( export "$@" RUST_TEST_THREADS=2; xcargo test "${TEST_ARGS[@]}" --no-fail-fast -- --skip classify_matches_the_cli --nocapture ) >"$log" 2>&1
  local rc=$?
  set -e
  grep -E '^(test result|test .* FAILED|---- )|panicked|int8 kernels|worst dynamic|fp16 kernels|worst fp16' "$log" || true
  if [ $rc -ne 0 ]; then
    echo "cross: tests failed under $label (exit $rc; log: $log)" >&2
    tail -40 "$log" >&2
    return 1
  fi
}
