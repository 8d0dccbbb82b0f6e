#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: unit tests (policy, config,
# wrappers) and end-to-end tests on real DPDK ports (vhost-user, tap, af_packet,
# pcap, null), real peers (dpdk-testpmd, QEMU's QMP monitor).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# DPDK processes pin cores and busy-poll: end-to-end tests run one at a time.
cargo test --release --workspace --no-fail-fast -- --test-threads=1
