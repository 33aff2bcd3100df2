#!/usr/bin/env bash
# One command for the benchmark of issue 2: memcached against riven-node, text/meta/binary at
# pipeline depth 1 and 16, then RSS per idle connection. Extra arguments go to
# `riven-bench compare` (e.g. --rounds 3, --smoke, --markdown BENCHMARKS.md, --json).
#
#   scripts/bench.sh                      # the full matrix, 5 alternating rounds of 3 s
#   scripts/bench.sh --smoke              # one short round of everything
#
# The machine has 2 cores shared by the load generator and the server under test: run it while
# nothing else is building.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p riven-node -p riven-client

if ! command -v memcached >/dev/null 2>&1; then
    echo "bench.sh: installing memcached (Debian package)" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq memcached
fi

exec target/release/riven-bench compare --node target/release/riven-node "$@"
