#!/usr/bin/env bash
# Installs the Debian packages rind needs to build, run and test, and nothing when they are present.
# Used by `make run` and `make test`; safe to run any number of times. Uses sudo when not root.
set -euo pipefail

# libdnnl2 (oneDNN) is optional at run time (opened with dlopen): with it the engine uses oneDNN's
# sgemm on AVX2-only CPUs (AVX-512 CPUs use rind's own packed kernels), and the tests check that path too.
packages=(libopenblas-dev libdnnl2 libpng-dev libmicrohttpd-dev pkg-config python3-venv)
# The tests: systemd-analyze verifies the unit; debootstrap and systemd-nspawn boot it under a real
# systemd (scripts/boot-test.sh); chromium and chromium-driver run the page at / in a headless
# browser (Tests/web/run.sh); postgresql's server binaries run the throwaway database of the
# cluster tests (scripts/pg-throwaway.sh; Debian's own cluster is not used).
[ "${1:-}" = "--test" ] && packages+=(systemd debootstrap systemd-container chromium chromium-driver postgresql)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "bootstrap: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "bootstrap: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
