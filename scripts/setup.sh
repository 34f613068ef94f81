#!/usr/bin/env bash
# Shared set-up for the README's two commands (scripts/bench.sh and scripts/test.sh).
# Idempotent: on a machine that already has everything it only checks.
#
# Installs the system packages the benchmark's peers and the tests need, and prepares the
# host's cgroup layout for crun. Images and the guest kernel are built by `bulkhead images`
# (cached), not here.
set -euo pipefail

# The peers and tools we compare against or drive in tests, from the distribution:
#   runc crun            OCI runtimes measured next to ours (same bundle)
#   podman containerd    real clients that drive our runtime in tests
#   qemu-system-x86      QEMU -M microvm peer; TCG boots of the guest and the nested test host
#   busybox-static       a debug shell inside the rootfs
#   hyperfine            ad-hoc timing of whole commands (documented in the README)
#   cpio file zstd xz-utils  checking initramfs archives, binaries and kernel payloads in tests
#   iproute2             network namespaces and interfaces in tests
#   chromium             headless screenshot of report.html in the harness's rendering test
#   libseccomp-dev       libseccomp.a, linked statically into bulkhead-runtime (build dependency)
#   uidmap               newuidmap/newgidmap: rootless containers with more than one id mapped
#   e2fsprogs            mkfs.ext4 -d: the rootfs as an ext4 image for a VM's --disk (images)
#   flex bison libelf-dev bc  building the minimal guest kernel from linux-source (images)
PACKAGES=(runc crun podman containerd qemu-system-x86 busybox-static hyperfine cpio file zstd xz-utils iproute2 chromium libseccomp-dev uidmap e2fsprogs flex bison libelf-dev bc)

# Kubernetes' path (runtime/tests/cri.rs): the CNI plugins containerd's CRI sets a pod's network
# up with (Debian puts them in /usr/lib/cni), and protoc, which builds the CRI client's
# protobufs (the k8s-cri crate).
PACKAGES+=(containernetworking-plugins protobuf-compiler)
# Docker's daemon (Debian's dockerd 20.10), a real client of our runtime in runtime/tests/docker.rs.
PACKAGES+=(docker.io)
# gVisor's runsc (release 20221219): the sandbox between a container and a VM, measured as a peer.
PACKAGES+=(runsc)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# crun refuses a hybrid cgroup layout ("cgroups in hybrid mode not supported") unless the
# hugetlb controller is mounted as a v1 hierarchy. Only on v1/hybrid hosts whose kernel has
# the controller; a pure cgroup2 host needs nothing.
if [[ "$(stat -f -c %T /sys/fs/cgroup)" == tmpfs ]] &&
    awk '$1=="hugetlb" && $4==1 {f=1} END {exit !f}' /proc/cgroups &&
    ! mountpoint -q /sys/fs/cgroup/hugetlb; then
    echo "setup: mounting the hugetlb cgroup v1 hierarchy (crun needs it on hybrid hosts)" >&2
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
fi

# Every binary is built for musl (.cargo/config.toml says why); rustup ships its libc.
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    echo "setup: adding the x86_64-unknown-linux-musl target to the Rust toolchain" >&2
    rustup target add x86_64-unknown-linux-musl
fi

# Fuzzing (scripts/test.sh runs a short round of each target; README: a long run): cargo-fuzz
# drives libFuzzer, which needs a nightly toolchain for its sanitizer flags.
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "setup: installing the nightly toolchain (cargo fuzz needs it)" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "setup: installing cargo-fuzz" >&2
    # From /: this workspace's .cargo/config.toml (musl, static libseccomp) is for our crates.
    (cd / && cargo install cargo-fuzz --locked --quiet)
fi

# youki, the Rust OCI runtime, measured as a peer: only on crates.io here (its GitHub release
# binaries are out of reach). Its cgroup v1 support is the cargo feature `v1`; without it youki
# refuses this kind of hybrid host. ~5 min on 2 cores, once; its own target dir, removed after.
if ! command -v youki >/dev/null && [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/youki" ]]; then
    echo "setup: installing youki from crates.io (cargo install, ~5 min)" >&2
    youki_target="$(mktemp -d)"
    (cd / && CARGO_TARGET_DIR="$youki_target" cargo install youki --locked --quiet --features v1,v2,seccomp) ||
        echo "setup: youki did not build; its row in the report says it is not installed" >&2
    rm -rf "$youki_target"
fi
