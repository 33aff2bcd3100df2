#!/usr/bin/env bash
# The benchmark: builds in release mode, starts memcached and riven-node in each mode that exists
# (embedded memory store; over that same memcached as L1; L1 + on-disk L2), drives them with
# `riven-bench compare`, alternating targets round after round, and prints a table of medians and
# ratios against memcached direct: text/meta/binary, pipeline 1 and 16, 100 B and 100 KiB values,
# then RSS per idle connection (10,000 of them). The load generator runs on 1 thread for 100 B
# values and 2 for 100 KiB ones (one thread is the bottleneck there against memcached direct).
# It writes BENCHMARKS.md (date, machine, exact commands, tables) and BENCHMARKS.png (throughput
# ratios, latency percentiles).
#
#   scripts/bench.sh                  # the full matrix: 9 alternating rounds of 3 s (about 23 minutes)
#   scripts/bench.sh --quick          # 1 round of 1 s per setting (about 2 minutes)
#   scripts/bench.sh --smoke          # as short as it gets; writes to target/ instead, for CI
#
# Extra arguments go to `riven-bench compare` (e.g. --rounds 3, --modes embedded,l1-l2, --json).
# The chart's text uses a font embedded in riven-bench: no font or fontconfig package is needed.
# The machine has 2 cores shared by the load generator and the servers: run it while nothing
# else is building.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p riven-node -p riven-bench

if ! command -v memcached >/dev/null 2>&1; then
    echo "bench.sh: installing memcached (Debian package)" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq memcached
    # The package starts a memcached service on port 11211; the benchmark starts its own.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop memcached >/dev/null 2>&1 || true; fi
fi

out=(--markdown BENCHMARKS.md --chart BENCHMARKS.png)
own=0
for arg in "$@"; do
    case "$arg" in
        --markdown|--markdown=*|--chart|--chart=*) own=1 ;;
        --smoke) out=(--markdown target/BENCHMARKS-smoke.md --chart target/BENCHMARKS-smoke.png) ;;
    esac
done
if [ "$own" -eq 1 ]; then out=(); fi

exec target/release/riven-bench compare "${out[@]}" "$@"
