#!/usr/bin/env bash
# Builds the Debian package dist/oomguard_<version>_<arch>.deb from this checkout (docs/service.md):
# the build directory `build` (CMake's default RelWithDebInfo: -O2 -g without variable tracking, stripped
# into the package, as Debian builds its packages), the man pages from the CLI, and CPack's DEB generator
# with dpkg-shlibdeps.
# Then checks what it made: lintian (no errors allowed), and the unit with systemd-analyze verify and
# security. Installs what it needs (scripts/install-deps.sh package) when missing.
# Usage: scripts/package.sh [BUILD_DIR]   (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
scripts/install-deps.sh package
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DOOMGUARD_BENCH=OFF >/dev/null
fi
cmake --build "$build" -j"$(nproc)" --target oomguard oomguard_kube_tls package_files
rm -f dist/oomguard_*.deb
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls dist/oomguard_*.deb)
echo "package: $deb ($(stat -c %s "$deb") bytes)"
dpkg-deb -I "$deb" | sed -n 's/^ \(Depends\|Version\|Architecture\|Installed-Size\):/package:   \1:/p'

status=0
lintian_log=$(mktemp)
lintian --tag-display-limit 0 "$deb" > "$lintian_log" 2>&1 || true
errors=$(grep -c '^E: ' "$lintian_log" || true)
warnings=$(grep -c '^W: ' "$lintian_log" || true)
sed 's/^/package: lintian: /' "$lintian_log"
echo "package: lintian: $errors errors, $warnings warnings"
[ "$errors" -eq 0 ] || status=1
rm -f "$lintian_log"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
# verify checks that ExecStart's binary exists and runs on this host's paths, not under --root: check a
# copy of the unit whose commands name the unpacked package's files.
unit="$root/oomguard.service"
sed -e "s|^ExecStart=/usr/bin/oomguard|ExecStart=$root/usr/bin/oomguard|" \
  "$root/lib/systemd/system/oomguard.service" > "$unit"
if verify=$(systemd-analyze verify --man=no "$unit" 2>&1) && [ -z "$verify" ]; then
  echo "package: systemd-analyze verify: clean"
else
  echo "package: systemd-analyze verify: $verify"
  status=1
fi
score=$(systemd-analyze security --offline=true --root="$root" oomguard.service 2>&1 | tail -n 1)
echo "package: systemd-analyze security: $score"
exit "$status"
