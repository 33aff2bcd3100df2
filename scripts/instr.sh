#!/usr/bin/env bash
# The node's own cost per request, in instructions: a measure that holds still on a noisy machine
# (wall-clock A/B runs here cannot tell changes of a few percent apart, and the VM exposes no
# hardware counters). Runs riven-node under callgrind over a real memcached, warms it up with
# instrumentation off, turns it on, drives it with `riven-bench load` for a while and divides the
# instructions the node ran by the requests it served. (Turning instrumentation on, rather than
# zeroing the counters, keeps the profile's per-function view right too.) User space only:
# kernel time, atomics and cache misses do not show; check those with `perf`.
#
#   scripts/instr.sh [PROTOCOL] [PIPELINE] [SECONDS] [NODE_BINARY] [-- extra riven-node flags]
#   scripts/instr.sh meta 16                 # meta, pipeline 16, 6 s, target/release/riven-node
#
# Needs valgrind and memcached. Leaves the profile in target/instr/ for `callgrind_annotate`
# (add `--inclusive=yes` for the call tree). Repeated runs of one binary agree within about 0.2 %.
set -euo pipefail
cd "$(dirname "$0")/.."
proto=${1:-meta}
pipeline=${2:-16}
secs=${3:-6}
node=${4:-target/release/riven-node}
shift $(( $# < 4 ? $# : 4 ))
[ "${1:-}" = "--" ] && shift
for tool in valgrind callgrind_control memcached; do
    command -v "$tool" >/dev/null || { echo "instr.sh: $tool is missing" >&2; exit 1; }
done
cargo build --release -q -p riven-node -p riven-bench
out=target/instr
mkdir -p "$out"
rm -f "$out"/callgrind.*
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mc_port=$(free_port)
node_port=$(free_port)
memcached -u root -t 4 -m 1024 -c 20000 -l 127.0.0.1 -p "$mc_port" -U 0 -R 1000 &
mc=$!
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.%p" --dump-instr=no --instr-atstart=no \
    --compress-strings=no --compress-pos=no \
    "$node" -t 4 -m 1024 -c 20000 -l 127.0.0.1 -p "$node_port" --l1-memcached "127.0.0.1:$mc_port" "$@" \
    >"$out/node.log" 2>&1 &
vg=$!
trap 'kill $vg $mc 2>/dev/null || true' EXIT
load() {
    target/release/riven-bench load -a "127.0.0.1:$node_port" -P "$proto" -d "$pipeline" -v 100 \
        -g 0.9 -k 100000 --quiet "$@"
}
for _ in $(seq 100); do
    (echo > "/dev/tcp/127.0.0.1/$node_port") 2>/dev/null && break
    sleep 0.1
done
load -t 1s >/dev/null
callgrind_control -i on "$vg" >/dev/null 2>&1
load -t "${secs}s" --no-warmup >"$out/load.txt"
callgrind_control -d "$vg" >/dev/null 2>&1
sleep 1
requests=$(awk '/^ *requests/ {print $2; exit}' "$out/load.txt")
instructions=$(awk '/^totals:/ {s += $2} END {print s}' "$out"/callgrind.*.1)
echo "$proto pipeline $pipeline: $requests requests, $instructions instructions," \
    "$((instructions / requests)) per request (profile: $(ls "$out"/callgrind.*.1))"
