#!/usr/bin/env bash
# The README's test command: set up the machine, then build and run every test.
# CI runs this with BULKHEAD_REQUIRE_ALL=1, which turns every skipped test into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Tests run the workspace's binaries (bulkhead-guest, bulkhead-runtime, bulkhead-vm, bulkhead):
# build them all first.
cargo build --workspace --quiet
cargo test --workspace "$@"
