#!/usr/bin/env bash
# The smart client's benchmark: builds in release mode, then `riven-bench client` starts its own
# riven-node processes on loopback and measures
#   - riven-client's throughput against the raw pipelined engine on the same node, at the same
#     concurrency (alternating rounds; ops/s, the generator's and the node's CPU per operation);
#   - the read latency with one zone slowed by a delay proxy (5 ms), with hedged reads and without.
# It replaces the section "Smart client (riven-client)" of BENCHMARKS.md.
#
#   scripts/bench-client.sh            # 9 alternating rounds of 3 s (about 3 minutes)
#   scripts/bench-client.sh --quick    # 1 round of 1 s, printed only
#
# Extra arguments go to `riven-bench client`. Run it while nothing else is building: the machine's
# 2 cores are shared by the load generator and the nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p riven-node -p riven-bench
out=(--markdown BENCHMARKS.md)
for arg in "$@"; do
    case "$arg" in
        --quick|--markdown|--markdown=*) out=() ;;
    esac
done
exec target/release/riven-bench client "${out[@]}" "$@"
