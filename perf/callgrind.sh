#!/usr/bin/env bash
# perf/callgrind.sh [DIR] — instructions per forwarded frame of the switch's fast path,
# counted by valgrind (callgrind), independent of machine noise.
#
# For each case in CASES (default "1 4 3a 3b", the bench.sh cases of the same names,
# SIZE-byte frames (default 64), 1024 flows), runs vswitchd for RUN_FOR seconds (default 3) under
# callgrind and divides the instructions of the worker thread (all of it: the poll
# loop, parse, spoof check, member selection or MAC lookup, the bandwidth gate, tx
# buffering, plus the PMDs: net_pcap rx copies, net_null tx frees) by the frames it
# received, split into the PMD calls (rte_eth_rx_burst/rte_eth_tx_burst, inclusive)
# and the rest ("switch"). Then the same for dpdk-testpmd io forwarding (net_pcap ->
# net_null) unless TESTPMD=0.
#   1   vNIC (net_pcap) -> hash-l3l4 bond of two net_null NICs, bandwidth policy off
#   4   case 1 with the bandwidth policy on: shares 500 and a shaper (average_bps 400 G)
#   3a  bond member (net_pcap) -> vNIC (net_null) by destination-MAC lookup
#   3b  vNIC (net_pcap) -> vNIC (net_null) on the same uplink
#   2   (only when asked: CASES="2") a vhost-user vNIC fed by vsperf txonly --rate max
#       through net_virtio_user on core 0 -> the case-1 bond. The generator is not
#       under valgrind, so once it sends, the slowed switch finds full bursts
#       waiting. Until then (the generator's own start, seconds) the switch polls an
#       empty port, so the counts are zeroed (callgrind_control -z) when frames have
#       flowed for ZERO_AFTER seconds (default 3) and the frames received until then
#       subtracted: the count is the saturated one. RUN_FOR should allow for
#       valgrind's start (25). (testpmd io from net_vhost, counted the same way
#       through its interactive prompt, was not saturated under valgrind: 13 frames
#       per vhost receive call against the switch's 30, so it is not compared.)
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
DIR=${1:-$(mktemp -d /tmp/vscg.XXXXXX)}
RUN_FOR=${RUN_FOR:-3}
CASES=${CASES:-1 4 3a 3b}
SIZE=${SIZE:-64}
mkdir -p "$DIR"
VM1=02:00:00:00:00:01
VM2=02:00:00:00:00:02
EXT=02:00:00:00:00:99
# The same pcaps and topologies as perf/bench.sh.
PCAP_DIR=$DIR VSPERF=$BIN/vsperf
. "$ROOT/perf/topologies.sh"
config() { vs_topology "$1" "$SIZE" "vscg$$" "$DIR/cg.ctl" "$DIR/vm1.sock"; }

# The forwarding thread is the one that executed the most instructions.
busiest() { for f in "$1"-*; do echo "$(awk '/^totals:/ {print $2}' "$f") $f"; done | sort -g | tail -1; }
ir_of() { grep -E "$2" "$1" | head -1 | awk '{gsub(/,/, "", $1); print $1}'; }

ZERO_AFTER=${ZERO_AFTER:-3}
switch_rx() { "$BIN/vsctl" --socket "$DIR/cg.ctl" --format json stats 2>/dev/null | jq '[.ports[].rx_pkts] | add'; }

status=0
for c in $CASES; do
    config "$c" >"$DIR/cg-$c.toml" || exit 2
    rm -f "$DIR/sw-$c.cg"* "$DIR/vm1.sock"
    valgrind --tool=callgrind --separate-threads=yes --fair-sched=yes --callgrind-out-file="$DIR/sw-$c.cg" \
        "$BIN/vswitchd" --config "$DIR/cg-$c.toml" --run-for "$RUN_FOR" --json >"$DIR/cg-$c.json" 2>"$DIR/cg-$c.err" &
    sw=$!
    RX0=0
    if [ "$c" = 2 ]; then
        for _ in $(seq 1 600); do [ -S "$DIR/vm1.sock" ] && break; sleep 0.1; done
        vs_generator "$SIZE" "$DIR/vm1.sock" "vscgg$$" "$DIR/gen.json" "$DIR/gen.err" 30
        gen=$VS_GEN
        # Zero the counts once frames flow; the frames received before then are
        # subtracted below.
        for _ in $(seq 1 300); do
            [ "$(switch_rx)" -gt 0 ] 2>/dev/null && break
            sleep 0.1
        done
        sleep "$ZERO_AFTER"
        callgrind_control -z "$sw" >/dev/null
        RX0=$(switch_rx)
    fi
    wait "$sw"
    rc=$?
    [ "$c" = 2 ] && { kill -INT "$gen" 2>/dev/null; wait "$gen" 2>/dev/null; }
    read -r SW_IR SW_F < <(busiest "$DIR/sw-$c.cg")
    if [ -z "${SW_F:-}" ]; then echo "case $c: no callgrind output (rc=$rc)"; tail -5 "$DIR/cg-$c.err"; status=1; continue; fi
    RX=$(jq --argjson rx0 "${RX0:-0}" '([.ports[] | .counters.rx_pkts] | add) - $rx0' "$DIR/cg-$c.json")
    TX=$(jq '[.ports[] | .counters.tx_pkts] | add' "$DIR/cg-$c.json")
    LEAK=$(jq .mbufs_in_use_at_exit "$DIR/cg-$c.json")
    callgrind_annotate --inclusive=yes "$SW_F" 2>/dev/null >"$DIR/annotate-$c.txt"
    RXB=$(ir_of "$DIR/annotate-$c.txt" 'rte_eth_rx_burst__extern')
    TXB=$(ir_of "$DIR/annotate-$c.txt" 'rte_eth_tx_burst__extern')
    echo "case $c: vswitchd exit $rc, rx $RX, forwarded $TX, mbufs_in_use_at_exit $LEAK"
    awk -v c="$c" -v t="$SW_IR" -v rx="${RXB:-0}" -v tx="${TXB:-0}" -v n="$RX" 'BEGIN {
        if (n == 0) { print "case " c ": no frames received"; exit 1 }
        printf "case %s: vswitchd worker %.0f instructions/frame = %.0f switch + %.0f rx_burst + %.0f tx_burst\n",
            c, t / n, (t - rx - tx) / n, rx / n, tx / n }' || status=1
done

TESTPMD_BIN=$(command -v dpdk-testpmd || true)
if [ "${TESTPMD:-1}" != 0 ] && [ -n "$TESTPMD_BIN" ]; then
    SOURCE=$(vs_source 1 "$SIZE") || exit 2
    timeout -s INT $((RUN_FOR + 10)) valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$DIR/tp.cg" "$TESTPMD_BIN" -l 0,1 --no-huge -m 1024 --no-pci --no-telemetry \
        --iova-mode=va --file-prefix "tpcg$$" --vdev "$SOURCE" \
        --vdev net_null0,no-rx=1 -- --forward-mode=io --stats-period 5 --no-lsc-interrupt \
        --total-num-mbufs=16384 >"$DIR/tp.log" 2>&1
    read -r TP_IR TP_F < <(busiest "$DIR/tp.cg")
    TP_N=$(awk '/Accumulated forward statistics/ {a = 1} a && /TX-packets:/ {print $2; exit}' "$DIR/tp.log")
    awk -v t="${TP_IR:-0}" -v n="${TP_N:-0}" 'BEGIN { if (n > 0) printf "testpmd io forwarding lcore: %.0f instructions/frame (%d frames)\n", t / n, n;
        else print "testpmd: no frames counted" }'
fi
echo "callgrind: annotations of the vswitchd worker in $DIR/annotate-CASE.txt"
exit $status
