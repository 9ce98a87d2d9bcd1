#!/bin/sh
# System packages for ARM cross-compilation and its tests: the aarch64 cross gcc and libc,
# qemu-user to run aarch64 binaries, and debootstrap for the aarch64 root in which
# scripts/aarch64_rpc_server.py runs TVM's RPC server. Installs only what is missing.
set -eu
missing=""
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing="$missing gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
command -v qemu-aarch64 >/dev/null 2>&1 || missing="$missing qemu-user"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  run=""
elif command -v sudo >/dev/null 2>&1; then
  run="sudo"
else
  echo "install-system-deps: cannot install$missing (not root, no sudo); ARM tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$run apt-get update -qq
# shellcheck disable=SC2086
$run apt-get install -y -qq $missing
