#!/usr/bin/env bash
# perf/callgrind.sh [DIR] — instructions per forwarded frame of the switch's fast path,
# counted by valgrind (callgrind), independent of machine noise.
#
# Runs vswitchd for RUN_FOR seconds (default 3) under callgrind with case 1 of bench.sh
# (a vNIC backed by net_pcap, 64-byte frames, 1024 flows -> hash-l3l4 bond of two
# net_null NICs), then divides the inclusive instruction counts (Ir) of the worker's
# functions by the frames it received:
#   the worker thread (all of it: the poll loop, parse, spoof check, bond member
#   selection, tx buffering, plus the PMDs: net_pcap rx copies, net_null tx frees),
#   split into the PMD calls and the rest; and the same for dpdk-testpmd io forwarding.
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
rm -f "$DIR"/sw.cg* "$DIR"/tp.cg*
# The forwarding thread is the one that executed the most instructions.
busiest() { for f in "$1"-*; do echo "$(awk '/^totals:/ {print $2}' "$f") $f"; done | sort -g | tail -1; }

valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$DIR/sw.cg" \
    "$BIN/vswitchd" --config "$DIR/cg.toml" --run-for "$RUN_FOR" --json >"$DIR/cg.json" 2>"$DIR/cg.err"
rc=$?
read -r SW_IR SW_F < <(busiest "$DIR/sw.cg")
[ -n "${SW_F:-}" ] || { echo "callgrind: no output (rc=$rc)"; tail -5 "$DIR/cg.err"; exit 1; }
RX=$(jq '[.ports[] | select(.kind == "vnic") | .counters.rx_pkts] | add' "$DIR/cg.json")
TX=$(jq '[.ports[] | select(.kind == "nic") | .counters.tx_pkts] | add' "$DIR/cg.json")
LEAK=$(jq .mbufs_in_use_at_exit "$DIR/cg.json")
callgrind_annotate --inclusive=yes "$SW_F" 2>/dev/null >"$DIR/annotate.txt"
ir_of() { grep -E "$1" "$DIR/annotate.txt" | head -1 | awk '{gsub(/,/, "", $1); print $1}'; }
RXB=$(ir_of 'rte_eth_rx_burst__extern')
TXB=$(ir_of 'rte_eth_tx_burst__extern')
echo "callgrind vswitchd: exit $rc, rx $RX, forwarded $TX, mbufs_in_use_at_exit $LEAK"
awk -v t="$SW_IR" -v rx="${RXB:-0}" -v tx="${TXB:-0}" -v n="$RX" 'BEGIN {
    if (n == 0) { print "callgrind: no frames forwarded"; exit 1 }
    printf "vswitchd worker: %.0f instructions/frame = %.0f switch + %.0f net_pcap rx_burst + %.0f net_null tx_burst\n",
        t / n, (t - rx - tx) / n, rx / n, tx / n }'

TESTPMD=$(command -v dpdk-testpmd || true)
if [ -n "$TESTPMD" ]; then
    timeout -s INT $((RUN_FOR + 10)) valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$DIR/tp.cg" "$TESTPMD" -l 0,1 --no-huge -m 1024 --no-pci --no-telemetry \
        --iova-mode=va --file-prefix "tpcg$$" --vdev "net_pcap0,rx_pcap=$PCAP,infinite_rx=1" \
        --vdev net_null0,no-rx=1 -- --forward-mode=io --stats-period 5 --no-lsc-interrupt \
        --total-num-mbufs=16384 >"$DIR/tp.log" 2>&1
    read -r TP_IR TP_F < <(busiest "$DIR/tp.cg")
    TP_N=$(awk '/Accumulated forward statistics/ {a = 1} a && /TX-packets:/ {print $2; exit}' "$DIR/tp.log")
    awk -v t="${TP_IR:-0}" -v n="${TP_N:-0}" 'BEGIN { if (n > 0) printf "testpmd io forwarding lcore: %.0f instructions/frame (%d frames)\n", t / n, n;
        else print "testpmd: no frames counted" }'
fi
echo "callgrind: annotate of the vswitchd worker in $DIR/annotate.txt"
