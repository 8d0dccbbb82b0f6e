#!/usr/bin/env bash
# Sets everything up (DPDK, build) and runs the switch on a built-in demo topology that
# needs no hardware: two VMs played by vsperf generator processes over vhost-user, and
# an active-backup bond of two tap "NICs". Halfway through, the active NIC's link is
# pulled to show failover. Prints the switch's counters, `vsctl show` and `bond/show`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (tap devices, DPDK without hugepages)" >&2; exit 1; }

BIN=target/release
DIR=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
TAP0=vsdemo0 TAP1=vsdemo1
cleanup() {
  [ -n "${SW:-}" ] && kill -INT "$SW" 2>/dev/null && wait "$SW" 2>/dev/null || true
  [ -n "${GEN:-}" ] && kill "$GEN" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

cat > "$DIR/vswitch.toml" <<TOML
# Demo topology: vm1 and vm2 on bond0 = nic0 (active) + nic1 (backup).
[eal]
file_prefix = "vsdemo"
[dataplane]
cores = [1]
[control]
socket = "$DIR/vswitchd.ctl"
[[nic]]
name = "nic0"
devargs = "net_tap0,iface=$TAP0"
speed_mbps = 1000
[[nic]]
name = "nic1"
devargs = "net_tap1,iface=$TAP1"
speed_mbps = 1000
[[bond]]
name = "bond0"
members = ["nic0", "nic1"]
mode = "active-backup"
failback = "immediate"
[[vm]]
name = "vm1"
priority = 8
  [[vm.vnic]]
  socket = "$DIR/vm1.sock"
  mac = "02:00:00:00:00:01"
  uplink = "bond0"
[[vm]]
name = "vm2"
priority = 3
  [[vm.vnic]]
  socket = "$DIR/vm2.sock"
  mac = "02:00:00:00:00:02"
  uplink = "bond0"
TOML

echo "== demo: starting vswitchd (worker on core 1) with $DIR/vswitch.toml"
RUST_LOG=${RUST_LOG:-info} $BIN/vswitchd --config "$DIR/vswitch.toml" 2> >(sed 's/^/[vswitchd] /' >&2) &
SW=$!
for _ in $(seq 100); do [ -S "$DIR/vswitchd.ctl" ] && break; sleep 0.1; done
ip link set "$TAP0" up; ip link set "$TAP1" up
sysctl -qw "net.ipv6.conf.$TAP0.disable_ipv6=1" "net.ipv6.conf.$TAP1.disable_ipv6=1" || true

echo "== demo: vm1 sends 20 kpps to an external host (out bond0); vm2 sends 5 kpps to vm1 (switched locally), 8 s"
$BIN/vsperf run --file-prefix vsdemo-vms --lcores 0 --duration 8 --wait-link 10 --stats-period 2 \
  --port "net_virtio_user0,path=$DIR/vm1.sock,queues=1" --mode txonly --src-mac 02:00:00:00:00:01 \
      --dst-mac 02:00:00:00:00:99 --rate 20kpps \
  --port "net_virtio_user1,path=$DIR/vm2.sock,queues=1" --mode txonly --src-mac 02:00:00:00:00:02 \
      --dst-mac 02:00:00:00:00:01 --rate 5kpps \
  --port "net_af_packet0,iface=$TAP0" --mode rxonly --port "net_af_packet1,iface=$TAP1" --mode rxonly \
  2> >(sed 's/^/[vsperf] /' >&2) &
GEN=$!
sleep 4
echo "== demo: pulling nic0's cable (ip link set $TAP0 down): bond0 fails over to nic1"
ip link set "$TAP0" down
sleep 1
$BIN/vsctl --socket "$DIR/vswitchd.ctl" bond/show bond0
wait "$GEN" || true
GEN=
echo
echo "== demo: vsctl show"
$BIN/vsctl --socket "$DIR/vswitchd.ctl" show
echo
echo "== demo: vsctl stats"
$BIN/vsctl --socket "$DIR/vswitchd.ctl" stats
echo
echo "== demo: stopping vswitchd (SIGINT): final counters"
kill -INT "$SW"; wait "$SW" || true; SW=
