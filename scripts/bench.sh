#!/usr/bin/env bash
# The README's main command: set up the machine, build release binaries, run the benchmark.
# Extra arguments go to `bulkhead bench` (e.g. --quick, --runs N, --backends a,b).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cargo build --workspace --release --quiet
exec target/x86_64-unknown-linux-gnu/release/bulkhead bench "$@"
