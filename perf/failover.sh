#!/usr/bin/env bash
# perf/failover.sh [OUT.svg] — failover and failback under load, sampled every 10 ms.
#
# A VM (vsperf txonly at $RATE, through net_virtio_user into the switch's vhost-user
# vNIC) sends to an external MAC over an active-backup bond of two net_tap NICs
# (failback immediate). The same vsperf process observes each tap from the kernel side
# with net_af_packet and records its rx timeline every 10 ms. At t=2 s the active member
# is pulled (`ip link set TAP down`), at t=4 s restored, the run ends at t=6 s.
# Writes OUT.svg (default docs/failover.svg); the raw vsperf report goes to /tmp/failover-run.json.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
SVG=${1:-$ROOT/docs/failover.svg}
. "$ROOT/perf/topologies.sh"  # vs_wait_started
# 100 kpps: the switch writes to a tap with one syscall per frame and tops out near
# 90 kpps here (at 200 kpps the VM's virtio ring overflows and the plot shows the
# tap's limit, not the failover).
RATE=${RATE:-100kpps}
DIR=$(mktemp -d /tmp/vsfail.XXXXXX)
A=vsfa$$; B=vsfb$$
A=${A:0:15}; B=${B:0:15}
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
cat >"$DIR/sw.toml" <<CFG
[eal]
file_prefix = "vsf$$"
[dataplane]
cores = [1]
control_core = 0
[control]
socket = "$DIR/ctl"
[[nic]]
name = "nic0"
devargs = "net_tap0,iface=$A"
[[nic]]
name = "nic1"
devargs = "net_tap1,iface=$B"
[[bond]]
name = "bond0"
members = ["nic0", "nic1"]
mode = "active-backup"
failback = "immediate"
[[vm]]
name = "vm1"
  [[vm.vnic]]
  socket = "$DIR/vm1.sock"
  mac = "02:00:00:00:00:01"
  uplink = "bond0"
CFG
"$BIN/vswitchd" --config "$DIR/sw.toml" --json >"$DIR/sw.json" 2>"$DIR/sw.err" &
SW=$!; PIDS+=("$SW")
vs_wait_started "$SW" "$DIR/sw.err" 30 || { cat "$DIR/sw.err" >&2; exit 1; }
ip link set dev "$A" up && ip link set dev "$B" up || exit 1
sleep 0.5
"$BIN/vsperf" run --file-prefix "vsfg$$" --lcores 0 --wait-link 10 --duration 6 --drain-ms 100 \
    --timeline-ms 10 --stats-period 0 --json \
    --port "net_virtio_user0,path=$DIR/vm1.sock,queues=1" --mode txonly --rate "$RATE" \
        --src-mac 02:00:00:00:00:01 --dst-mac 02:00:00:00:00:99 --flows 64 \
    --port "net_af_packet0,iface=$A" --mode rxonly \
    --port "net_af_packet1,iface=$B" --mode rxonly >"$DIR/run.json" 2>"$DIR/run.err" &
VP=$!; PIDS+=("$VP")
for _ in $(seq 1 2000); do grep -q "traffic started" "$DIR/run.err" && break; sleep 0.005; done
grep -q "traffic started" "$DIR/run.err" || { cat "$DIR/run.err" >&2; exit 1; }
T0=$(date +%s.%N)
sleep 2
T_DOWN=$(date +%s.%N); ip link set dev "$A" down
sleep 2
T_UP=$(date +%s.%N); ip link set dev "$A" up
wait "$VP" || { cat "$DIR/run.err" >&2; exit 1; }
kill -TERM "$SW"; wait "$SW"
rel() { awk -v a="$1" -v b="$T0" 'BEGIN { printf "%.3f", a - b }'; }
D=$(rel "$T_DOWN"); U=$(rel "$T_UP")
cp "$DIR/run.json" "/tmp/failover-run.json"  # the raw vsperf report
"$BIN/vsperf" plot-timeline --report "$DIR/run.json" --out "$SVG" \
    --port 1 --label "nic0 ($A, active)" --port 2 --label "nic1 ($B, backup)" \
    --mark "$D=nic0 down" --mark "$U=nic0 up" \
    --title "Failover and failback under load: VM at $RATE -> active-backup bond of two taps, 10 ms bins" || exit 1
# Summary: per member, frames received in each phase, and the gap around each event.
jq -r --argjson d "$D" --argjson u "$U" '
  def phase($p; $lo; $hi): [.ports[$p].timeline[] | select(.[0] > $lo*1000 and .[0] <= $hi*1000) | .[1]] | add // 0;
  "vm tx_pkts \(.ports[0].tx_pkts) tx_dropped \(.ports[0].tx_dropped)",
  "nic0 rx: before \(phase(1; 0; $d)) during \(phase(1; $d; $u)) after \(phase(1; $u; 99))",
  "nic1 rx: before \(phase(2; 0; $d)) during \(phase(2; $d; $u)) after \(phase(2; $u; 99))"' "$DIR/run.json"
# Frames the VM sent that neither member delivered, and the longest run of 10 ms bins
# in which neither member received anything (the outage as seen on the wire), within
# the 6 s the VM sends (the drain's bins after it are empty on both).
jq -r '
  ([.ports[1].timeline, .ports[2].timeline] | transpose
   | map(select(.[0][0] <= 6000) | (.[0][1] // 0) + (.[1][1] // 0))
   | reduce .[] as $n ({cur: 0, max: 0}; if $n == 0 then .cur += 1 | .max = ([.max, .cur] | max) else .cur = 0 end)
   | .max) as $gap
  | "lost: \(.ports[0].tx_pkts - .ports[1].rx_pkts - .ports[2].rx_pkts) of \(.ports[0].tx_pkts) frames; longest run of empty bins on both members: \($gap) x 10 ms"' "$DIR/run.json"
echo "mbufs_in_use_at_exit: $(jq .mbufs_in_use_at_exit "$DIR/sw.json")"
echo "wrote $SVG"
