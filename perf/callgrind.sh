#!/usr/bin/env bash
# perf/callgrind.sh [DIR] — instructions per forwarded frame of the switch's fast path,
# counted by valgrind (callgrind), independent of machine noise.
#
# Runs vswitchd for RUN_FOR seconds (default 3) under callgrind with case 1 of bench.sh
# (a vNIC backed by net_pcap, 64-byte frames, 1024 flows -> hash-l3l4 bond of two
# net_null NICs), then divides the inclusive instruction counts (Ir) of the worker's
# functions by the frames it received:
#   Worker::process  parse + spoof check + bond member selection + tx buffering
#                    (the switching decision, per burst)
#   Worker::run      the whole poll loop: + rx_burst (net_pcap copy) + tx_burst (net_null)
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
DIR=${1:-$(mktemp -d /tmp/vscg.XXXXXX)}
RUN_FOR=${RUN_FOR:-3}
mkdir -p "$DIR"
PCAP="$DIR/cg.pcap"
"$BIN/vsperf" gen-pcap --out "$PCAP" --src-mac 02:00:00:00:00:01 --dst-mac 02:00:00:00:00:99 --size 64 --flows 1024 2>/dev/null
cat >"$DIR/cg.toml" <<CFG
[eal]
file_prefix = "vscg$$"
[dataplane]
cores = [1]
control_core = 0
[control]
socket = "$DIR/cg.ctl"
[[nic]]
name = "n0"
devargs = "net_null0,no-rx=1"
[[nic]]
name = "n1"
devargs = "net_null1,no-rx=1"
[[bond]]
name = "bond0"
members = ["n0", "n1"]
mode = "hash-l3l4"
[[vm]]
name = "vm1"
  [[vm.vnic]]
  devargs = "net_pcap0,rx_pcap=$PCAP,infinite_rx=1"
  mac = "02:00:00:00:00:01"
  uplink = "bond0"
CFG
rm -f "$DIR"/callgrind.out.*
valgrind --tool=callgrind --callgrind-out-file="$DIR/callgrind.out.%p" \
    "$BIN/vswitchd" --config "$DIR/cg.toml" --run-for "$RUN_FOR" --json >"$DIR/cg.json" 2>"$DIR/cg.err"
rc=$?
OUTF=$(ls "$DIR"/callgrind.out.* 2>/dev/null | head -1)
[ -n "$OUTF" ] || { echo "callgrind: no output (rc=$rc)"; tail -5 "$DIR/cg.err"; exit 1; }
RX=$(jq '[.ports[] | select(.kind == "vnic") | .counters.rx_pkts] | add' "$DIR/cg.json")
TX=$(jq '[.ports[] | select(.kind == "nic") | .counters.tx_pkts] | add' "$DIR/cg.json")
LEAK=$(jq .mbufs_in_use_at_exit "$DIR/cg.json")
callgrind_annotate --inclusive=yes "$OUTF" 2>/dev/null >"$DIR/annotate.txt"
ir_of() { grep -E "$1" "$DIR/annotate.txt" | head -1 | awk '{gsub(/,/, "", $1); print $1}'; }
PROC=$(ir_of 'Worker::process')
RUN=$(ir_of 'Worker::run')
echo "callgrind: vswitchd exit $rc, rx $RX, forwarded $TX, mbufs_in_use_at_exit $LEAK"
awk -v p="${PROC:-0}" -v r="${RUN:-0}" -v n="$RX" 'BEGIN {
    if (n == 0) { print "callgrind: no frames forwarded"; exit 1 }
    printf "instructions/frame: Worker::process %.1f, Worker::run (whole poll loop) %.1f\n", p / n, r / n }'
echo "callgrind: annotate in $DIR/annotate.txt"
