#!/usr/bin/env bash
# Builds the Debian package the way a packager would (`cargo deb`, metadata in Cargo.toml) from
# the binary the test suite built, and checks what it installs: the binary runs, the unit, the
# config, the man pages. Usage: bash tools/check-deb.sh   (needs `cargo install cargo-deb`)
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
bin="$target/debug/siglipd"
[ -x "$bin" ] || { echo "no $bin: run the tests (bash tools/test-all.sh) first" >&2; exit 1; }
# the assets name target/man and the profile's binary
mkdir -p target/man && "$bin" man --dir target/man >/dev/null
# the dev profile: CI packages the binary it already built (a release build would take 20 min);
# release packages are built with a plain `cargo deb`
cargo deb --no-build --profile dev --no-strip -o "$target/siglipd.deb" 2>&1 | grep -v "dev profile is not supported\|debug symbols set\|Cargo also supports custom profiles" || true
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$target/siglipd.deb" "$root"
for f in usr/bin/siglipd lib/systemd/system/siglipd.service etc/siglipd/siglipd.toml \
         usr/share/doc/siglipd/examples/siglipd.toml usr/share/man/man1/siglipd.1.gz usr/share/man/man1/siglipd-run.1.gz; do
  [ -e "$root/$f" ] || { echo "the package lacks /$f" >&2; dpkg-deb --contents "$target/siglipd.deb" >&2; exit 1; }
done
dpkg-deb --field "$target/siglipd.deb" Package Version Depends | sed 's/^/  /'
"$root/usr/bin/siglipd" --version
# the packaged unit names a man page the package installs, and the packaged config is valid
grep -q '^Documentation=man:siglipd(1)' "$root/lib/systemd/system/siglipd.service"
zcat "$root/usr/share/man/man1/siglipd.1.gz" | grep -q '^\.TH siglipd 1'
# (no model is installed here: the config must parse and fail only at the bundle, with 78)
out="$("$root/usr/bin/siglipd" check-config --config "$root/etc/siglipd/siglipd.toml" 2>&1)" && code=0 || code=$?
[ "$code" = 78 ] && grep -q "no model bundle at /var/lib/siglipd" <<<"$out" \
  || { echo "the packaged config did not reach the model check (exit $code): $out" >&2; exit 1; }
echo "package ok: $target/siglipd.deb ($(du -h "$target/siglipd.deb" | cut -f1))"
