#!/usr/bin/env bash
# Runs every test of the workspace, first installing what the tests need on a fresh Debian machine:
# memcached (the tests start a real one on loopback) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v memcached >/dev/null 2>&1 || need_apt+=(memcached)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} (apt-get)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The packaged memcached starts as a service on port 11211; the tests start their own on free
# ports, so a running service is harmless, but do not leave one we started by installing.
if [ ${#need_apt[@]} -gt 0 ] && command -v systemctl >/dev/null 2>&1; then
  systemctl stop memcached >/dev/null 2>&1 || true
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p riven-client --all-targets --all-features -- -D warnings
cargo test --workspace "$@"
# The client's optional features (`json`) have tests of their own.
cargo test -p riven-client --all-features "$@"
