#!/usr/bin/env bash
# perf/sleep.sh — what the workers' load-based sleep ([dataplane] pmd_sleep_max_us,
# Open vSwitch's pmd-sleep-max) gives and costs: for each maximum and each rate, the
# worker's share of its core, the share of it asleep, and the round-trip latency of
# VM1 -> switch -> VM2 (echo) -> switch -> VM1.
#
# Usage: perf/sleep.sh [--max "0 50 300"] [--rates "20kpps 200kpps 1mpps"]
#                      [--duration S] [--out DIR]
#
#   --max LIST     pmd_sleep_max_us values (µs), set live with `vsctl set-dataplane`
#   --rates LIST   VM1's rate of timestamped frames (vsperf --rate syntax)
#   --duration S   seconds per row (default 4)
#   --out DIR      scratch and raw JSON (default /tmp/vssleep.$$)
#
# One vswitchd (worker on core 1) with two vhost-user VMs on one null uplink; one vsperf
# process on core 0 plays both: port 0 (VM1) in latency mode to VM2, port 1 (VM2) in
# echo mode. The latency includes both VMs' polling and two passes through the switch.
# Columns: max µs, rate, worker on a CPU (% of the row's wall time, from
# /proc/PID/task/TID/schedstat), asleep (% of the wall time, pmd-stats-show's sleep_us,
# timed around each nap, so its system calls count on both sides), the average nap
# (µs), frames sent, lost, round trip p50 / p99 / p99.9 / max (µs).
set -euo pipefail

MAX="0 50 300"
RATES="20kpps 200kpps 1mpps"
DURATION=4
OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --max) MAX=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sleep.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
OUT=${OUT:-/tmp/vssleep.$$}
mkdir -p "$OUT"
. "$ROOT/perf/topologies.sh"
vs_need_tools sleep.sh

VM1=02:00:00:00:00:01
VM2=02:00:00:00:00:02
CTL=$OUT/vswitchd.ctl
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
vsctl() { "$BIN/vsctl" --socket "$CTL" "$@"; }

PCAP_DIR=$OUT VSPERF=$BIN/vsperf
vs_topology vv 64 "vss$$" "$CTL" "$OUT/vm1.sock" "$OUT/vm2.sock" >"$OUT/sw.toml"
rm -f "$CTL" "$OUT"/vm?.sock
"$BIN/vswitchd" --config "$OUT/sw.toml" --json >"$OUT/sw.json" 2>"$OUT/sw.err" &
SW=$!
PIDS+=("$SW")
vs_wait_started "$SW" "$OUT/sw.err" 30 || { echo "sleep.sh: vswitchd did not start:" >&2; tail -3 "$OUT/sw.err" >&2; exit 1; }
TID=""
for t in /proc/"$SW"/task/*; do
    [ "$(cat "$t/comm")" = pmd0 ] && TID=${t##*/}
done
[ -n "$TID" ] || { echo "sleep.sh: vswitchd has no pmd0 thread" >&2; exit 1; }
on_cpu() { cut -d' ' -f1 "/proc/$SW/task/$TID/schedstat"; }
# Worker 0's time asleep (µs) and naps so far, from one pmd-stats-show.
slept() { vsctl --format json pmd-stats-show | jq -r '.[0] | "\(.sleep_us) \(.sleep_iterations)"'; }

printf "%-7s %-8s %8s %8s %8s %9s %6s %9s %9s %9s %9s\n" "max_us" "rate" "on_cpu%" "asleep%" "nap_us" "sent" "lost" "p50_us" "p99_us" "p99.9_us" "max_us"
for m in $MAX; do
    vsctl set-dataplane "pmd_sleep_max_us=$m" >/dev/null
    for r in $RATES; do
        j="$OUT/lat-$m-$r.json"
        "$BIN/vsperf" run --file-prefix "vsl$$" --lcores 0 --wait-link 15 --duration "$DURATION" \
            --stats-period 0 -q --json \
            --port "net_virtio_user0,path=$OUT/vm1.sock,queues=1" --mode latency \
            --src-mac "$VM1" --dst-mac "$VM2" --rate "$r" \
            --port "net_virtio_user1,path=$OUT/vm2.sock,queues=1" --mode echo \
            >"$j" 2>"$OUT/lat-$m-$r.err" &
        G=$!
        # The window: the middle of the run, away from the connection and the drain.
        sleep 2
        read -r s0 n0 < <(slept); c0=$(on_cpu); t0=$(date +%s%N)
        sleep "$(awk -v d="$DURATION" 'BEGIN { print (d > 2 ? d - 1.5 : d / 2) }')"
        c1=$(on_cpu); t1=$(date +%s%N); read -r s1 n1 < <(slept)
        wait "$G" || { echo "sleep.sh: vsperf failed at max $m rate $r: $(tail -1 "$OUT/lat-$m-$r.err")" >&2; continue; }
        cpu=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.1f", 100 * (b - a) / (t1 - t0) }')
        asleep=$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.1f", 100 * (b - a) * 1000 / (t1 - t0) }')
        nap=$(awk -v a="$s0" -v b="$s1" -v n="$((n1 - n0))" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "-" }')
        jq -r --arg m "$m" --arg r "$r" --arg cpu "$cpu" --arg asl "$asleep" --arg nap "$nap" \
            '.ports[0] | [$m, $r, $cpu, $asl, $nap, .tx_pkts, .lost, .p50_us, .p99_us, .p999_us, .max_us] | @tsv' "$j" |
            awk -F'\t' '{ printf "%-7s %-8s %8s %8s %8s %9s %6s %9.1f %9.1f %9.1f %9.1f\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }'
    done
done
vsctl set-dataplane pmd_sleep_max_us=0 >/dev/null
kill -TERM "$SW"
wait "$SW" || true
leak=$(jq -r '.mbufs_in_use_at_exit' "$OUT/sw.json" 2>/dev/null || echo "?")
[ "$leak" = 0 ] || echo "sleep.sh: vswitchd left $leak mbufs in use" >&2
echo "(raw JSON in $OUT)"
