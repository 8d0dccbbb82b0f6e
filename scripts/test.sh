#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: unit tests (policy, config,
# wrappers) and end-to-end tests on real DPDK ports (vhost-user, tap, af_packet,
# pcap, null), real peers (dpdk-testpmd, QEMU's QMP monitor).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# DPDK processes pin cores and busy-poll: tests run one at a time. End-to-end tests
# share two cores with their generators and peers, so a timing-sensitive one may be
# retried; nextest reports every retried test as FLAKY in its summary.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast --test-threads 1 --retries 2
else
  cargo test --release --workspace --no-fail-fast -- --test-threads=1
fi
