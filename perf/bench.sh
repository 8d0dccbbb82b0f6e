#!/usr/bin/env bash
# perf/bench.sh — issue 3: the switch against dpdk-testpmd (and optionally Open vSwitch
# with DPDK) on the same ports, the same pinned core and the same frames.
#
# Usage: perf/bench.sh [--duration S] [--reps N] [--sizes "64 1518"] [--cases "1 2 3a 3b 4 4v"]
#                      [--with-ovs] [--with-5tswap] [--with-burst64] [--callgrind]
#                      [--failover] [--smoke]
#                      [--out DIR]
#
#   --duration S   seconds measured per run, after a 1 s warm-up (default 5)
#   --reps N       runs per case and peer; the median is reported (default 3)
#   --sizes LIST   frame sizes in bytes, without FCS (default "64 1518")
#   --cases LIST   which cases (default "1 2 3a 3b 4 4v")
#   --with-ovs     also run Open vSwitch with DPDK (installs openvswitch-switch-dpdk
#                  with apt-get when it is missing; CI never passes this)
#   --with-5tswap  also run testpmd --forward-mode=5tswap on the same ports (swaps the
#                  L2-L4 addresses, so it parses like a switch must: the issue's
#                  "faster than testpmd's own 5-tuple swap" reference)
#   --with-burst64 also run testpmd io with --burst=64, the burst the switch reads
#                  (vswitch RX_BURST): the reference at the switch's own burst size,
#                  next to testpmd's default of 32
#   --callgrind    also count instructions per forwarded frame with valgrind (case 1, 64 B)
#   --failover     also run the failover-under-load timeline and write docs/failover.svg
#   --smoke        1 rep, 1 s, 64 B only: a quick functional pass
#   --peers LIST   run only these peers (switch testpmd 5tswap burst64 ovs), e.g. "switch ovs"
#   --out DIR      scratch and raw logs (default /tmp/vsbench.$$)
#
# Cases (see docs/BENCHMARKS.md):
#   1   VM -> bond: a vNIC backed by net_pcap (infinite_rx) -> hash-l3l4 bond of two
#       net_null NICs.                    Ref: testpmd io, net_pcap -> net_null.
#   2   VM -> bond: vsperf txonly --rate max on core 0 through net_virtio_user ->
#       vhost-user vNIC -> the same bond. Ref: testpmd io, net_vhost -> net_null, same generator.
#       The generator's virtqueues are split (the default); VIRTIO_ARGS=",packed_vq=1"
#       in the environment appends to its devargs (packed ones), for every peer alike.
#   3a  bond -> VM: a bond member backed by net_pcap (frames to the VM's MAC) -> a vNIC
#       backed by net_null.               Ref: testpmd io, net_pcap -> net_null.
#   3b  VM -> VM: a vNIC backed by net_pcap -> a vNIC backed by net_null.
#                                         Ref: testpmd io, net_pcap -> net_null.
#   4   case 1 with shares and a shaper (average_bps 400 Gb/s, a 100 MB burst: limits
#       high enough not to drop) on the vNIC.
#   4v  case 2 with the same policy: the cost of the policy path on the VM path.
#                                         Ref: as case 2 (neither has a per-VM policy).
#
# Every forwarding loop runs on core 1 (vswitchd `cores = [1]`; testpmd `-l 0,1`, whose
# forwarding lcore is 1; OVS pmd-cpu-mask=0x2); generators and control threads run on
# core 0. Mpps is computed from the forwarder's own counters: for vswitchd the delta of
# the sinks' tx_pkts between two `vsctl stats` snapshots S seconds apart; for testpmd
# the median of its periodic "Tx-pps" of the sink port over a window as long; for OVS
# the delta of the sinks' datapath TX packets (ovs-appctl dpctl/show -s).
set -u -o pipefail

DURATION=5
REPS=3
SIZES="64 1518"
CASES="1 2 3a 3b 4 4v"
WITH_OVS=0
WITH_5TSWAP=0
WITH_BURST64=0
PEERS_ONLY=""
CALLGRIND=0
FAILOVER=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --sizes) SIZES=$2; shift 2 ;;
        --cases) CASES=$2; shift 2 ;;
        --with-ovs) WITH_OVS=1; shift ;;
        --with-5tswap) WITH_5TSWAP=1; shift ;;
        --with-burst64) WITH_BURST64=1; shift ;;
        --callgrind) CALLGRIND=1; shift ;;
        --failover) FAILOVER=1; shift ;;
        --smoke) REPS=1; DURATION=1; SIZES=64; shift ;;
        --out) OUT=$2; shift 2 ;;
        --peers) PEERS_ONLY=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;p}' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
OUT=${OUT:-/tmp/vsbench.$$}
mkdir -p "$OUT"
. "$ROOT/perf/topologies.sh"
vs_need_tools bench.sh
TESTPMD=$(command -v dpdk-testpmd || true)

VM1=02:00:00:00:00:01
VM2=02:00:00:00:00:02
EXT=02:00:00:00:00:99
EAL_COMMON="--no-huge -m 1024 --no-pci --no-telemetry --iova-mode=va"

median() { sort -g | awk '{v[NR] = $1} END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2] + v[NR/2+1]) / 2 }'; }
log() { echo "[bench] $*" >&2; }
now() { date +%s.%N; }
# sleep_until EXPR: sleeps until the time (s since the epoch) the awk expression gives.
sleep_until() { sleep "$(awk -v n="$(now)" "BEGIN { d = ($1) - n; print (d > 0 ? d : 0) }")"; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT

# ---------------------------------------------------------------- vswitchd
# Each case's pcaps and vswitchd configuration (shared with perf/callgrind.sh and the
# CI smoke test); the vhost socket of cases 2 and 4v is $OUT/vm1.sock.
PCAP_DIR=$OUT VSPERF=$BIN/vsperf
switch_config() { # CASE SIZE PREFIX
    vs_topology "$1" "$2" "$3" "$OUT/vswitchd.ctl" "$OUT/vm1.sock"
}

# Frames transmitted by all of vswitchd's ports (in every case only the sink sends).
switch_tx() { "$BIN/vsctl" --socket "$OUT/vswitchd.ctl" --format json stats | jq '[.ports[].tx_pkts] | add'; }

# Generator for cases 2 and 4v (core 0): runs until killed.
start_generator() { # SIZE SOCKETPATH PREFIX
    vs_generator "$1" "$2" "$3" "$OUT/gen.json" "$OUT/gen.err"
    GEN=$VS_GEN
    PIDS+=("$GEN")
}
stop_generator() { kill -INT "$GEN" 2>/dev/null; wait "$GEN" 2>/dev/null; }

# Case 2's conditions over a measurement window, to tell a slow run's cause: each
# vCPU's steal (the host running something else on it) and idle share, and the
# generator's main thread's share of the window on a CPU and waiting for one
# (/proc/PID/task/TID/schedstat). cond_start before the window, cond_end after it;
# cond_end writes "$OUT/cond.txt", which the main loop adds to the run's log line.
cond_snap() {
    local g="0 0"
    [ -r "/proc/$GEN/task/$GEN/schedstat" ] && g=$(cut -d' ' -f1,2 "/proc/$GEN/task/$GEN/schedstat")
    echo "$(now) $g $(awk '/^cpu[01] / {printf "%s %s %s ", $2 + $3 + $4 + $7 + $8, $5 + $6, $9}' /proc/stat)"
}
cond_start() { cond_snap >"$OUT/cond.start"; }
cond_end() {
    echo "$(cat "$OUT/cond.start") $(cond_snap)" | awk '{
        dt = $10 - $1
        for (c = 0; c < 2; c++) {
            b = $(13 + 3 * c) - $(4 + 3 * c); i = $(14 + 3 * c) - $(5 + 3 * c); s = $(15 + 3 * c) - $(6 + 3 * c)
            t = b + i + s; if (t <= 0) t = 1
            cpu = cpu sprintf(" cpu%d steal %d %% idle %d %%;", c, 100 * s / t, 100 * i / t)
        }
        printf "  [%s generator on a CPU %d %%, waiting %d %%]", substr(cpu, 2), ($11 - $2) / dt / 1e7, ($12 - $3) / dt / 1e7
    }' >"$OUT/cond.txt"
}

# run_switch CASE SIZE -> prints "MPPS CYCLES_PER_PKT" (or "FAIL reason")
run_switch() {
    local c=$1 sz=$2 prefix="vsb$$" cfg="$OUT/sw-$1-$2.toml" err="$OUT/sw-$1-$2.err"
    switch_config "$c" "$sz" "$prefix" >"$cfg"
    rm -f "$OUT/vswitchd.ctl" "$OUT/vm1.sock"
    "$BIN/vswitchd" --config "$cfg" --json >"$OUT/sw.json" 2>"$err" &
    local sw=$!
    PIDS+=("$sw")
    local i
    if ! vs_wait_started "$sw" "$err" 60; then
        kill -KILL "$sw" 2>/dev/null; wait "$sw" 2>/dev/null
        echo "FAIL vswitchd did not start: $(grep -v '^\s*$' "$err" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')"
        return
    fi
    vs_vm_case "$c" && start_generator "$sz" "$OUT/vm1.sock" "vsg$$"
    sleep 1
    vs_vm_case "$c" && sleep 1
    local t0 n0 t1 n1
    vs_vm_case "$c" && cond_start
    t0=$(now); n0=$(switch_tx); sleep "$DURATION"; t1=$(now); n1=$(switch_tx)
    vs_vm_case "$c" && cond_end
    local cpp
    cpp=$("$BIN/vsctl" --socket "$OUT/vswitchd.ctl" --format json pmd-stats-show | jq '.[0].cycles_per_pkt | floor')
    vs_vm_case "$c" && stop_generator
    kill -TERM "$sw"
    # A daemon that does not stop within 30 s is killed and the run counts as failed.
    for i in $(seq 1 300); do kill -0 "$sw" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$sw" 2>/dev/null
    wait "$sw"; local rc=$?
    local leak
    leak=$(jq -r '.mbufs_in_use_at_exit' "$OUT/sw.json" 2>/dev/null || echo "?")
    if [ "$rc" != 0 ] || [ "$leak" != 0 ]; then
        echo "FAIL exit=$rc mbufs_in_use_at_exit=$leak"
        return
    fi
    awk -v n0="$n0" -v n1="$n1" -v t0="$t0" -v t1="$t1" -v cpp="$cpp" \
        'BEGIN { printf "%.3f %d\n", (n1 - n0) / (t1 - t0) / 1e6, cpp }'
}

# ---------------------------------------------------------------- testpmd
# tp_tx_pps LOG: the sink's (port 1's) nonzero Tx-pps of each testpmd statistics block.
tp_tx_pps() { awk '/NIC statistics for port/ {p = $(NF-1)} /Tx-pps:/ && p == 1 && $2 > 0 {print $2}' "$1"; }

# run_testpmd CASE SIZE [MODE [BURST]] -> "MPPS -"
run_testpmd() {
    local c=$1 sz=$2 mode=${3:-io} burst=${4:-32} vdev0
    [ -n "$TESTPMD" ] || { echo "FAIL dpdk-testpmd not installed"; return; }
    case $c in
        2|4v) rm -f "$OUT/vm1.sock"; vdev0="net_vhost0,iface=$OUT/vm1.sock,queues=1" ;;
        *) vdev0=$(vs_source "$c" "$sz") || { echo "FAIL no pcap"; return; } ;;
    esac
    local log="$OUT/tp-$mode-$burst-$c-$sz.log" warm=2 t_start
    vs_vm_case "$c" && warm=4
    t_start=$(now)
    # stats every second; the forwarding lcore is 1 (lcore 0 is the main lcore).
    timeout -s INT $((DURATION + warm + 5)) stdbuf -oL "$TESTPMD" -l 0,1 $EAL_COMMON \
        --file-prefix "tpb$$" --vdev "$vdev0" --vdev net_null0,no-rx=1 -- \
        --forward-mode="$mode" --burst="$burst" --stats-period 1 --no-lsc-interrupt --total-num-mbufs=16384 \
        --mbuf-size=2176 >"$log" 2>&1 &
    local tp=$!
    PIDS+=("$tp")
    if vs_vm_case "$c"; then
        local i
        for i in $(seq 1 100); do [ -S "$OUT/vm1.sock" ] && break; sleep 0.1; done
        start_generator "$sz" "$OUT/vm1.sock" "vsg$$"
        # The window testpmd's medians come from: from its first statistics block
        # with traffic (the generator connects when testpmd's vhost socket appears,
        # which can take seconds), for DURATION s or until 1 s before the timeout
        # stops testpmd.
        local end_by
        end_by=$(awk -v t="$t_start" -v d="$DURATION" -v w="$warm" 'BEGIN { printf "%.3f", t + d + w + 4 }')
        while ! tp_tx_pps "$log" | grep -q . && [ "$(awk -v e="$end_by" -v n="$(now)" 'BEGIN { print (n < e) }')" = 1 ]; do
            sleep 0.1
        done
        cond_start
        sleep_until "$(awk -v e="$end_by" -v n="$(now)" -v d="$DURATION" 'BEGIN { printf "%.3f", (n + d < e ? n + d : e) }')"
        cond_end
    fi
    wait "$tp" 2>/dev/null
    vs_vm_case "$c" && stop_generator
    # Tx-pps of port 1 (the null sink) per stats period (testpmd computes it over its
    # own measured interval; here it prints about every 2 s). The first period with
    # traffic includes the start and is dropped; the median of the rest is reported.
    local vals
    vals=$(tp_tx_pps "$log" |
        awk '{n++; v[n] = $1} END { for (i = 2; i <= n; i++) print v[i]; if (n == 1) print v[1] }')
    if [ -z "$vals" ]; then echo "FAIL no traffic"; return; fi
    echo "$(echo "$vals" | median | awk '{printf "%.3f", $1 / 1e6}') -"
}

# ---------------------------------------------------------------- Open vSwitch
OVS_DIR=$OUT/ovs
export OVS_RUNDIR=$OVS_DIR  # keep the bridge sockets private too
OVSBIN=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
ovs_vsctl() { ovs-vsctl --db="unix:$OVS_DIR/db.sock" --timeout=30 "$@"; }
ovs_appctl() { ovs-appctl --target="$OVS_DIR/ovs-vswitchd.ctl" "$@"; }
ovs_prepare() {
    if [ ! -x "$OVSBIN" ]; then
        log "installing openvswitch-switch-dpdk"
        DEBIAN_FRONTEND=noninteractive apt-get install -y openvswitch-switch-dpdk >"$OUT/apt.log" 2>&1 ||
            { log "apt-get install failed (see $OUT/apt.log)"; return 1; }
    fi
    # The package's service may have started a system ovsdb/ovs-vswitchd; ours are private.
    return 0
}
# run_ovs CASE SIZE -> "MPPS CYCLES" ; bond: balance-slb (balance-tcp needs LACP), NORMAL + static fdb
run_ovs() {
    local c=$1 sz=$2 port0
    case $c in
        2|4v) port0=vhost ;;
        *) port0=$(vs_source "$c" "$sz") || { echo "FAIL no pcap"; return; } ;;
    esac
    rm -rf "$OVS_DIR"; mkdir -p "$OVS_DIR"
    ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    ovsdb-server "$OVS_DIR/conf.db" --remote="punix:$OVS_DIR/db.sock" --pidfile="$OVS_DIR/ovsdb.pid" \
        --unixctl="$OVS_DIR/ovsdb.ctl" --log-file="$OVS_DIR/ovsdb.log" -vconsole:off --detach 2>>"$OVS_DIR/start.err" ||
        { echo "FAIL ovsdb-server: $(tail -1 "$OVS_DIR/start.err")"; return; }
    ovs_vsctl --no-wait init
    ovs_vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true \
        "other_config:dpdk-extra=--no-huge --legacy-mem -m 2048 --no-pci --no-telemetry --file-prefix=ovsb$$" \
        other_config:pmd-cpu-mask=0x2 other_config:dpdk-lcore-mask=0x1
    "$OVSBIN" "unix:$OVS_DIR/db.sock" --pidfile="$OVS_DIR/vswitchd.pid" --unixctl="$OVS_DIR/ovs-vswitchd.ctl" \
        --log-file="$OVS_DIR/vswitchd.log" -vconsole:off --detach 2>>"$OVS_DIR/start.err" ||
        { echo "FAIL ovs-vswitchd: $(tail -1 "$OVS_DIR/start.err")"; ovs_stop; return; }
    ovs_vsctl add-br br0 -- set bridge br0 datapath_type=netdev
    local sinkdev sink
    case $c in
        1|2|4|4v)
            if vs_vm_case "$c"; then
                # a vhost-user server port: the socket is $OVS_RUNDIR/vm1
                ovs_vsctl add-port br0 vm1 -- set Interface vm1 type=dpdkvhostuser
            else
                ovs_vsctl add-port br0 vm1 -- set Interface vm1 type=dpdk "options:dpdk-devargs=$port0"
            fi
            ovs_vsctl add-bond br0 bond0 n0 n1 bond_mode=balance-slb \
                -- set Interface n0 type=dpdk options:dpdk-devargs=net_null0,no-rx=1 \
                -- set Interface n1 type=dpdk options:dpdk-devargs=net_null1,no-rx=1
            sleep 1; ovs_appctl fdb/add br0 n0 0 $EXT >/dev/null; sink="n0 n1" ;;
        3a)
            ovs_vsctl add-bond br0 bond0 n0 n1 bond_mode=balance-slb \
                -- set Interface n0 type=dpdk "options:dpdk-devargs=$port0" \
                -- set Interface n1 type=dpdk options:dpdk-devargs=net_null0,no-rx=1
            ovs_vsctl add-port br0 vm1 -- set Interface vm1 type=dpdk options:dpdk-devargs=net_null1,no-rx=1
            sleep 1; ovs_appctl fdb/add br0 vm1 0 $VM1 >/dev/null; sink="vm1" ;;
        3b)
            ovs_vsctl add-port br0 vm1 -- set Interface vm1 type=dpdk "options:dpdk-devargs=$port0"
            ovs_vsctl add-port br0 vm2 -- set Interface vm2 type=dpdk options:dpdk-devargs=net_null0,no-rx=1
            sleep 1; ovs_appctl fdb/add br0 vm2 0 $VM2 >/dev/null; sink="vm2" ;;
    esac
    # Live transmit counters of the sinks, from the datapath (`dpctl/show -s` reads each
    # netdev's stats when asked). Not the Interface table's `statistics`: ovs-vswitchd
    # refreshes those only every stats-update-interval (5 s at least), so a window of a
    # few seconds saw either no change or 5 s worth of frames.
    ovs_tx() {
        ovs_appctl dpctl/show -s | awk -v sinks=" $sink " '
            match($0, /port [0-9]+: [^ ]+ \(/) { split(substr($0, RSTART, RLENGTH), w, " "); name = w[3] }
            /TX packets:/ { split($2, a, ":"); if (index(sinks, " " name " ")) s += a[2] }
            END { print s + 0 }'
    }
    if vs_vm_case "$c"; then
        local i
        for i in $(seq 1 100); do [ -S "$OVS_DIR/vm1" ] && break; sleep 0.1; done
        start_generator "$sz" "$OVS_DIR/vm1" "vsg$$"
        sleep 2
    fi
    sleep 2
    ovs_appctl dpif-netdev/pmd-stats-clear >/dev/null
    local t0 n0 t1 n1 cpp
    vs_vm_case "$c" && cond_start
    t0=$(now); n0=$(ovs_tx); sleep "$DURATION"; t1=$(now); n1=$(ovs_tx)
    vs_vm_case "$c" && cond_end
    cpp=$(ovs_appctl dpif-netdev/pmd-stats-show | awk -F: '/processing cycles per packet|avg processing cycles per packet/ {gsub(/[^0-9.]/, "", $2); print int($2); exit}')
    vs_vm_case "$c" && stop_generator
    ovs_stop
    awk -v n0="$n0" -v n1="$n1" -v t0="$t0" -v t1="$t1" -v cpp="${cpp:--}" \
        'BEGIN { if (n1 <= n0) print "FAIL no traffic"; else printf "%.3f %s\n", (n1 - n0) / (t1 - t0) / 1e6, cpp }'
}
ovs_stop() {
    local pids="" f
    for f in vswitchd ovsdb; do
        [ -f "$OVS_DIR/$f.pid" ] && pids="$pids $(cat "$OVS_DIR/$f.pid")"
    done
    ovs_appctl exit >/dev/null 2>&1 || true
    ovs-appctl --target="$OVS_DIR/ovsdb.ctl" exit >/dev/null 2>&1 || true
    # Wait for both to be gone (its PMD thread still spinning would slow the next run
    # on this core), up to 10 s, then kill what is left.
    for _ in $(seq 1 100); do
        local alive=0
        for f in $pids; do kill -0 "$f" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && return 0
        sleep 0.1
    done
    for f in $pids; do kill -9 "$f" 2>/dev/null; done
    sleep 0.2
}

# ---------------------------------------------------------------- main loop

# Case 4 needs the shaping keys: ask vswitchd whether it accepts them.
# Asked once: cases 4 and 4v at every size share the answer.
CASE4_OK=""
case4_available() {
    if [ -z "$CASE4_OK" ]; then
        switch_config 4 64 "vsb4$$" >"$OUT/probe4.toml"
        timeout 20 "$BIN/vswitchd" --config "$OUT/probe4.toml" --run-for 0.1 --socket "$OUT/probe.ctl" >/dev/null 2>"$OUT/probe4.err"
        if grep -q "unknown field" "$OUT/probe4.err"; then CASE4_OK=no; else CASE4_OK=yes; fi
    fi
    [ "$CASE4_OK" = yes ]
}

PEERS="switch testpmd"
[ "$WITH_5TSWAP" = 1 ] && PEERS="$PEERS 5tswap"
[ "$WITH_BURST64" = 1 ] && PEERS="$PEERS burst64"
[ -n "$PEERS_ONLY" ] && PEERS=${PEERS_ONLY//ovs/}
[[ " $PEERS_ONLY " == *" ovs "* ]] && WITH_OVS=1
if [ "$WITH_OVS" = 1 ]; then
    if ovs_prepare; then PEERS="$PEERS ovs"; else log "Open vSwitch unavailable: skipping it"; fi
fi
RESULTS=$OUT/results.txt
: >"$RESULTS"
# Case 2 crosses cores through the vhost ring, so its speed follows how long a cache
# line takes from core 0 to core 1 and back. On a VM that changes with where the host
# runs the two vCPUs: on this host about 75 ns or about 440 ns, and every forwarder
# (switch, testpmd, OVS) runs at less than half speed in the slow placement. Each
# case-2 run is bracketed by a probe (`vsperf c2c`, 200 ms, while nothing polls) and
# the summary compares the peers within each placement.
C2C=$OUT/c2c.txt
: >"$C2C"
C2C_SLOW_NS=${C2C_SLOW_NS:-200}
# c2c_probe -> the median round trip in ns, or "-" when the probe failed.
c2c_probe() {
    local ns
    ns=$("$BIN/vsperf" c2c --cpus 0,1 --ms 200 --json 2>/dev/null | jq -r '.median_ns | floor' 2>/dev/null)
    echo "${ns:--}"
}
SKIPPED=()
log "raw logs in $OUT; ${DURATION}s per run, $REPS reps, sizes: $SIZES, cases: $CASES, peers: $PEERS"
for sz in $SIZES; do
    for c in $CASES; do
        if vs_policy_case "$c" && ! case4_available; then
            SKIPPED+=("case $c (shares + shaping, ${sz} B): not yet available — vswitchd refuses [[vm.vnic]] average_bps ($(grep -o 'unknown field[^,]*' "$OUT/probe4.err" | head -1))")
            continue
        fi
        for r in $(seq 1 "$REPS"); do
            for p in $PEERS; do
                rm -f "$OUT/gen.json" "$OUT/cond.txt"
                c2c="" c2c_before=""
                vs_vm_case "$c" && c2c_before=$(c2c_probe)
                case $p in
                    switch) res=$(run_switch "$c" "$sz") ;;
                    testpmd) res=$(run_testpmd "$c" "$sz") ;;
                    5tswap) res=$(run_testpmd "$c" "$sz" 5tswap) ;;
                    burst64) res=$(run_testpmd "$c" "$sz" io 64) ;;
                    ovs) res=$(run_ovs "$c" "$sz") ;;
                esac
                # Case 2: how often the generator found the vhost ring full (the
                # forwarder behind) over its whole run, start included.
                gen=""
                [ -s "$OUT/gen.json" ] && gen=$(jq -r '.ports[0] | "  (generator: \(.tx_pkts / 1e6 | floor) M sent, ring full on \(100 * .tx_dropped / (.tx_pkts + .tx_dropped + 1) | floor) % of tries)"' "$OUT/gen.json" 2>/dev/null)
                [ -s "$OUT/cond.txt" ] && gen="$gen$(cat "$OUT/cond.txt")"
                echo "$c $sz $p $r $res" >>"$RESULTS"
                if vs_vm_case "$c"; then
                    c2c_after=$(c2c_probe)
                    echo "$c $sz $p $r $c2c_before $c2c_after" >>"$C2C"
                    c2c="  [cache line 0<->1: $c2c_before ns before, $c2c_after ns after]"
                fi
                log "case $c ${sz}B rep $r $p: $res$gen$c2c"
            done
        done
    done
done

# ---------------------------------------------------------------- table
echo
echo "Mpps, median of $REPS runs of ${DURATION}s (forwarding on core 1; cycles/pkt from the forwarder's own stats)"
# peer_median CASE SIZE PEER [FIELD]: the median of a peer's runs that did not fail
# (field 5: Mpps, 6: cycles/pkt).
peer_median() {
    awk -v c="$1" -v s="$2" -v p="$3" -v f="${4:-5}" '$1 == c && $2 == s && $3 == p && $5 != "FAIL" {print $f}' "$RESULTS" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "" || b == 0) print "-"; else printf "%.2f\n", a / b }'; }
# The reference columns: testpmd io always, the others when they ran.
declare -A COL_NAME=([testpmd]="testpmd" [5tswap]="testpmd 5tswap" [burst64]="testpmd --burst=64" [ovs]="OVS")
declare -A COL_RATIO=([testpmd]="testpmd" [5tswap]="5tswap" [burst64]="burst64" [ovs]="OVS")
COLS=testpmd
for p in 5tswap burst64 ovs; do [[ " $PEERS " == *" $p "* ]] && COLS="$COLS $p"; done
hdr="| case | size | switch Mpps |"
sep="|---|---|---|"
for p in $COLS; do hdr="$hdr ${COL_NAME[$p]} Mpps | switch/${COL_RATIO[$p]} |"; sep="$sep---|---|"; done
echo "$hdr switch cycles/pkt | fails |"
echo "$sep---|---|"
for sz in $SIZES; do
    for c in $CASES; do
        grep -q "^$c $sz " "$RESULTS" || continue
        sw=$(peer_median "$c" "$sz" switch)
        cpp=$(peer_median "$c" "$sz" switch 6)
        fails=$(awk -v c="$c" -v s="$sz" '$1 == c && $2 == s && $5 == "FAIL"' "$RESULTS" | wc -l)
        row="| $c | $sz | $sw |"
        for p in $COLS; do
            ref=$(peer_median "$c" "$sz" "$p")
            row="$row $ref | $(ratio "$sw" "$ref") |"
        done
        echo "$row $cpp | $fails |"
    done
done
for s in "${SKIPPED[@]:-}"; do [ -n "$s" ] && echo "SKIP $s"; done

# Cases 2 and 4v per placement: runs whose probes before and after were both below
# C2C_SLOW_NS ("near") or both at or above it ("far"); runs whose placement changed
# across them are left out of these rows.
# placement_runs CASE SIZE PEER near|far -> the Mpps of those runs
placement_runs() {
    awk -v c="$1" -v s="$2" -v p="$3" -v m="$4" -v t="$C2C_SLOW_NS" '
        FNR == NR { if ($5 ~ /^[0-9]+$/ && $6 ~ /^[0-9]+$/) mode[$1 " " $2 " " $3 " " $4] = ($5 < t && $6 < t) ? "near" : ($5 >= t && $6 >= t) ? "far" : "mixed"; next }
        $1 == c && $2 == s && $3 == p && $5 != "FAIL" && mode[$1 " " $2 " " $3 " " $4] == m { print $5 }' "$C2C" "$RESULTS"
}
if [ -s "$C2C" ]; then
    echo
    echo "Cases 2 and 4v by where the host ran the two vCPUs (cache line 0<->1 below / from $C2C_SLOW_NS ns, before and after the run): median Mpps (runs)"
    hdr="| case | size | placement |"
    sep="|---|---|---|"
    for p in $PEERS; do hdr="$hdr $p |"; sep="$sep---|"; done
    for p in $COLS; do hdr="$hdr switch/${COL_RATIO[$p]} |"; sep="$sep---|"; done
    echo "$hdr"
    echo "$sep"
    for sz in $SIZES; do
        for c in $CASES; do
            grep -q "^$c $sz " "$C2C" || continue
            for m in near far; do
                row="| $c | $sz | $m |"
                declare -A MED=()
                for p in $PEERS; do
                    runs=$(placement_runs "$c" "$sz" "$p" "$m")
                    MED[$p]=$(printf '%s' "$runs" | median)
                    row="$row ${MED[$p]} ($(printf '%s' "$runs" | grep -c .)) |"
                done
                for p in $COLS; do row="$row $(ratio "${MED[switch]:--}" "${MED[$p]:--}") |"; done
                echo "$row"
                unset MED
            done
        done
    done
fi

# ---------------------------------------------------------------- callgrind
if [ "$CALLGRIND" = 1 ]; then
    "$ROOT/perf/callgrind.sh" "$OUT" || log "callgrind run failed"
fi
# ---------------------------------------------------------------- failover
if [ "$FAILOVER" = 1 ]; then
    "$ROOT/perf/failover.sh" "$ROOT/docs/failover.svg" || log "failover run failed"
fi
