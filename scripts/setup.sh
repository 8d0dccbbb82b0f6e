#!/usr/bin/env bash
# Installs what the project needs on a Debian 12 machine, idempotently, and builds it.
#   scripts/setup.sh            # install packages if missing, build release binaries
# Needs root (or sudo) for apt-get. Rust comes from the machine's rustup toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(libdpdk-dev dpdk dpdk-dev libclang-dev clang pkg-config iproute2 libpcap-dev qemu-system-x86 tcpdump valgrind)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
pkg-config --atleast-version=22.11 libdpdk || { echo "setup: libdpdk >= 22.11 not found by pkg-config" >&2; exit 1; }
cargo build --release --workspace --bins >&2
