# perf/topologies.sh — sourced by perf/bench.sh and perf/callgrind.sh: the vswitchd
# configuration of each benchmark case, so that the instruction counts and the
# throughput runs measure the same topology.
#
# The caller defines VM1, VM2, EXT (MAC addresses) and a function `pcap SRC DST SIZE`
# that prints the path of a pcap of SIZE-byte frames from SRC to DST (1024 flows).
#
# vs_topology CASE SIZE FILE_PREFIX CONTROL_SOCKET [VHOST_SOCKET]
#   1   vNIC (net_pcap, infinite_rx) -> hash-l3l4 bond of two net_null NICs
#   2   the same with a vhost-user vNIC (VHOST_SOCKET) fed by a generator process
#   4   case 1 with the bandwidth policy on: shares 500 and a shaper (average_bps
#       400 Gb/s, a 100 MB burst), limits high enough not to drop
#   3a  bond member (net_pcap, frames to the VM) -> vNIC (net_null), MAC lookup
#   3b  vNIC (net_pcap) -> vNIC (net_null) on the same uplink
vs_topology() {
    local c=$1 sz=$2 prefix=$3 ctl=$4 vhost=${5:-}
    cat <<EOF
[eal]
file_prefix = "$prefix"
[dataplane]
cores = [1]
control_core = 0
bandwidth = $([ "$c" = 4 ] && echo true || echo false)
[control]
socket = "$ctl"
EOF
    case $c in
    1|2|4)
        # Case 4: the allocator shares out the bond's capacity, and net_null reports
        # 10 Gb/s; at 1518 B that (2 x 10 Gb/s = 1.6 Mpps) would be the limit, not
        # the switch. The null NICs are declared 100 Gb/s so that nothing is dropped.
        local speed=""
        [ "$c" = 4 ] && speed="speed_mbps = 100000"
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
        [ "$c" = 4 ] && echo 'shares = 500'
        echo '  [[vm.vnic]]'
        if [ "$c" = 2 ]; then
            [ -n "$vhost" ] || { echo "vs_topology: case 2 needs a vhost-user socket" >&2; return 1; }
            echo "  socket = \"$vhost\""
        else
            echo "  devargs = \"net_pcap0,rx_pcap=$(pcap "$VM1" "$EXT" "$sz"),infinite_rx=1\""
        fi
        # 400 Gb/s: 1518-byte frames at 8.2 Mpps are already 100 Gb/s (a 100 Gb/s
        # shaper held session 4's first case-4 run at 8.18 Mpps).
        [ "$c" = 4 ] && printf '  average_bps = 400000000000\n  burst_bytes = 100000000\n'
        cat <<EOF
  mac = "$VM1"
  uplink = "bond0"
EOF
        ;;
    3a)
        cat <<EOF
[[nic]]
name = "n0"
devargs = "net_pcap0,rx_pcap=$(pcap "$EXT" "$VM1" "$sz"),infinite_rx=1"
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
    3b)
        cat <<EOF
[[nic]]
name = "n0"
devargs = "net_null0,no-rx=1"
[[vm]]
name = "vm1"
  [[vm.vnic]]
  devargs = "net_pcap0,rx_pcap=$(pcap "$VM1" "$VM2" "$sz"),infinite_rx=1"
  mac = "$VM1"
  uplink = "n0"
[[vm]]
name = "vm2"
  [[vm.vnic]]
  devargs = "net_null1,no-rx=1"
  mac = "$VM2"
  uplink = "n0"
EOF
        ;;
    *) echo "vs_topology: unknown case $c" >&2; return 1 ;;
    esac
}
