#!/usr/bin/env bash
# The README's main command: set up the machine, build release binaries, measure the start
# phases with criterion, run the benchmark.
# Extra arguments go to `bulkhead bench` (e.g. --quick, --runs N, --backends a,b).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cargo build --workspace --release --quiet

# The phases of a container's and a VM's start (runtime/benches/create_phases.rs,
# microvm/benches/vm_start.rs): criterion's results, one directory per crate, go into the
# report's "Phases (criterion)" table. Each file sizes itself (both together run in about a
# minute here), so they run with their own settings; --noplot because only the numbers are
# read. Named, not `--bench '*'`: microvm/benches/devices.rs boots nested VMs for minutes and
# is no phase of a start. A fresh directory each time: a benchmark removed from the code must
# not linger in the report.
phases=target/bulkhead-phases
rm -rf "$phases"
mkdir -p "$phases"
for crate_bench in bulkhead-runtime:create_phases bulkhead-vm:vm_start; do
    crate=${crate_bench%%:*}
    CRITERION_HOME="$PWD/$phases/$crate" \
        cargo bench --quiet -p "$crate" --bench "${crate_bench#*:}" -- --noplot
done
echo "cargo bench of bulkhead-runtime's create_phases and bulkhead-vm's vm_start with each \
file's own criterion settings (warm-up 0.3 s, 1-2 s of measurement, 10-20 samples; the groups whose every \
iteration needs a fresh VM measure for 0.5 s), run by scripts/bench.sh just before the \
benchmark" >"$phases/measured-with.txt"

exec target/x86_64-unknown-linux-musl/release/bulkhead bench --phases "$phases" "$@"
