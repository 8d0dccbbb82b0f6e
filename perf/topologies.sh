# perf/topologies.sh — sourced by perf/bench.sh, perf/callgrind.sh, perf/sleep.sh and
# perf/failover.sh (for vs_wait_started): the vswitchd
# configuration of each benchmark case, so that the instruction counts and the
# throughput runs measure the same topology.
#
# The caller sets VM1, VM2, EXT (MAC addresses), VSPERF (the vsperf binary) and
# PCAP_DIR (where the pcaps are made, once each).
#
# vs_pcap SRC DST SIZE
#   prints the path of a pcap of SIZE-byte frames from SRC to DST, 1024 flows
# vs_source CASE SIZE
#   prints the devargs of the net_pcap port that replays case 1, 3a, 3b or 4's traffic
#   (infinite_rx): the same frames for the switch, testpmd and Open vSwitch
# vs_generator SIZE VHOST_SOCKET FILE_PREFIX JSON ERR [WAIT_LINK_S]
#   starts vsperf in the background on core 0 as case 2's VM: txonly at full speed,
#   SIZE-byte frames from VM1 to EXT, 1024 flows, through net_virtio_user to
#   VHOST_SOCKET; sets VS_GEN to its pid (SIGINT ends it). VIRTIO_ARGS (e.g.
#   ",packed_vq=1") is appended to its devargs: the VM's virtio features, the same
#   for every peer
# vs_vm_case CASE / vs_policy_case CASE
#   true for the cases whose VM is a generator process on a vhost-user socket (2, 4v)
#   / whose bandwidth policy is on (4, 4v)
# vs_need_tools SCRIPT
#   exits unless $BIN holds vswitchd, vsctl and vsperf and jq is installed
# vs_wait_started PID ERR SECS
#   waits up to SECS for the vswitchd of PID to log "switch started" in ERR; fails
#   (status 1) when it does not, or exits first
# vs_topology CASE SIZE FILE_PREFIX CONTROL_SOCKET [VHOST_SOCKET [VHOST_SOCKET2]]
#   1   vNIC (net_pcap, infinite_rx) -> hash-l3l4 bond of two net_null NICs
#   2   the same with a vhost-user vNIC (VHOST_SOCKET) fed by a generator process
#   4   case 1 with the bandwidth policy on: shares 500 and a shaper (average_bps
#       400 Gb/s, a 100 MB burst), limits high enough not to drop
#   4v  case 2 with the same policy (the VM path, VHOST_SOCKET)
#   3a  bond member (net_pcap, frames to the VM) -> vNIC (net_null), MAC lookup
#   3b  vNIC (net_pcap) -> vNIC (net_null) on the same uplink
#   vv  the same with two vhost-user vNICs (VHOST_SOCKET, VHOST_SOCKET2): perf/sleep.sh
vs_vm_case() { [ "$1" = 2 ] || [ "$1" = 4v ]; }
vs_policy_case() { [ "$1" = 4 ] || [ "$1" = 4v ]; }

vs_need_tools() {
    # vs_need_tools SCRIPT: exits (status 1) unless $BIN has vswitchd, vsctl and vsperf
    # and jq is installed; SCRIPT names the caller in the message.
    local b
    for b in vswitchd vsctl vsperf; do
        [ -x "$BIN/$b" ] || { echo "$1: $BIN/$b missing: run cargo build --release --workspace --bins" >&2; exit 1; }
    done
    command -v jq >/dev/null || { echo "$1: jq is required" >&2; exit 1; }
}

vs_wait_started() {
    local i
    for i in $(seq 1 $(($3 * 10))); do
        grep -q "switch started" "$2" && return 0
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "switch started" "$2"
}

vs_pcap() {
    local f="$PCAP_DIR/$1-$2-$3.pcap"
    f=${f//:/}
    if [ ! -f "$f" ]; then
        "$VSPERF" gen-pcap --out "$f" --src-mac "$1" --dst-mac "$2" --size "$3" --flows 1024 >/dev/null 2>&1 ||
            { echo "vs_pcap: vsperf gen-pcap failed for $f" >&2; return 1; }
    fi
    echo "$f"
}

vs_generator() {
    # Backgrounded here, not by the caller: `vs_generator ... &` would make $! a
    # subshell, which does not pass SIGINT on to vsperf.
    "$VSPERF" run --file-prefix "$3" --lcores 0 --port "net_virtio_user0,path=$2,queues=1${VIRTIO_ARGS:-}" \
        --mode txonly --rate max --src-mac "$VM1" --dst-mac "$EXT" --flows 1024 --size "$1" \
        --duration 600 --wait-link "${6:-15}" --stats-period 0 -q --json >"$4" 2>"$5" &
    VS_GEN=$!
}

vs_source() {
    local f
    case $1 in
    1|4) f=$(vs_pcap "$VM1" "$EXT" "$2") ;;
    3a) f=$(vs_pcap "$EXT" "$VM1" "$2") ;;
    3b) f=$(vs_pcap "$VM1" "$VM2" "$2") ;;
    *) echo "vs_source: case $1 has no pcap source" >&2; return 1 ;;
    esac || return 1
    echo "net_pcap0,rx_pcap=$f,infinite_rx=1"
}

# VM1 and VM2 on an unbonded null NIC n0: the rest of case 3b's and case vv's
# configuration; $1 and $2 are the port lines of VM1's and VM2's vNICs.
vs_vm_pair() {
    cat <<EOF
[[nic]]
name = "n0"
devargs = "net_null0,no-rx=1"
[[vm]]
name = "vm1"
  [[vm.vnic]]
  $1
  mac = "$VM1"
  uplink = "n0"
[[vm]]
name = "vm2"
  [[vm.vnic]]
  $2
  mac = "$VM2"
  uplink = "n0"
EOF
}

vs_topology() {
    local c=$1 sz=$2 prefix=$3 ctl=$4 vhost=${5:-} vhost2=${6:-} src=""
    if ! vs_vm_case "$c" && [ "$c" != vv ]; then
        src=$(vs_source "$c" "$sz") || return 1
    fi
    cat <<EOF
[eal]
file_prefix = "$prefix"
[dataplane]
cores = [1]
control_core = 0
bandwidth = $(vs_policy_case "$c" && echo true || echo false)
[control]
socket = "$ctl"
EOF
    case $c in
    1|2|4|4v)
        # Cases 4 and 4v: the allocator shares out the bond's capacity, and net_null reports
        # 10 Gb/s; at 1518 B that (2 x 10 Gb/s = 1.6 Mpps) would be the limit, not
        # the switch. The null NICs are declared 100 Gb/s so that nothing is dropped.
        local speed=""
        vs_policy_case "$c" && speed="speed_mbps = 100000"
        cat <<EOF
[[nic]]
name = "n0"
devargs = "net_null0,no-rx=1"
$speed
[[nic]]
name = "n1"
devargs = "net_null1,no-rx=1"
$speed
[[bond]]
name = "bond0"
members = ["n0", "n1"]
mode = "hash-l3l4"
[[vm]]
name = "vm1"
EOF
        vs_policy_case "$c" && echo 'shares = 500'
        echo '  [[vm.vnic]]'
        if vs_vm_case "$c"; then
            [ -n "$vhost" ] || { echo "vs_topology: case $c needs a vhost-user socket" >&2; return 1; }
            echo "  socket = \"$vhost\""
        else
            echo "  devargs = \"$src\""
        fi
        # 400 Gb/s: 1518-byte frames at 8.2 Mpps are already 100 Gb/s (a 100 Gb/s
        # shaper held session 4's first case-4 run at 8.18 Mpps).
        vs_policy_case "$c" && printf '  average_bps = 400000000000\n  burst_bytes = 100000000\n'
        cat <<EOF
  mac = "$VM1"
  uplink = "bond0"
EOF
        ;;
    3a)
        cat <<EOF
[[nic]]
name = "n0"
devargs = "$src"
[[nic]]
name = "n1"
devargs = "net_null0,no-rx=1"
[[bond]]
name = "bond0"
members = ["n0", "n1"]
mode = "hash-l3l4"
[[vm]]
name = "vm1"
  [[vm.vnic]]
  devargs = "net_null1,no-rx=1"
  mac = "$VM1"
  uplink = "bond0"
EOF
        ;;
    3b) vs_vm_pair "devargs = \"$src\"" 'devargs = "net_null1,no-rx=1"' ;;
    vv)
        [ -n "$vhost" ] && [ -n "$vhost2" ] || { echo "vs_topology: case vv needs two vhost-user sockets" >&2; return 1; }
        vs_vm_pair "socket = \"$vhost\"" "socket = \"$vhost2\"" ;;
    *) echo "vs_topology: unknown case $c" >&2; return 1 ;;
    esac
}
