//! The phases of a VM's start, one criterion group each (`cargo bench -p bulkhead-vm`), through
//! the same library calls `builder::run` makes, in its order:
//!
//! - `vm_create`: /dev/kvm opened, KVM_CREATE_VM and the TSS address (`Vm::new`); the VM's
//!   teardown is left out of the time;
//! - `vm_memory_slot`: KVM_SET_USER_MEMORY_REGION of 16, 128 and 1024 MiB of guest RAM
//!   (`Vm::register_memory`) on a VM without an irqchip yet, as the builder does (see
//!   `Vm::create_irqchip` for why the order matters); KVM allocates per-page metadata for a
//!   slot, so the size is the variable. The RAM is mapped once; the slot is deleted between
//!   iterations, untimed;
//! - `vm_irqchip`: the in-kernel PIC, IOAPIC and PIT after the slot (`Vm::create_irqchip`);
//! - `vm_vcpus`: 1 and 2 vCPUs created and set up for the 64-bit entry (`vcpu::create`:
//!   KVM_CREATE_VCPU, CPUID, XCR0, MSRs, FPU, LAPIC, registers), each on a fresh VM;
//! - `vm_kernel_load`: a kernel opened, its format read, and its segments copied into fresh
//!   guest RAM (`KernelImage::open` + `load`, what `boot::Boot` does): the bare guest ELF the
//!   benchmark's VMM floor boots (microvm/guests, embedded in the library) and every vmlinux
//!   in the images cache (`bulkhead images` builds the distro's and the minimal one; absent
//!   ones are left out with a note). The RAM is fresh each time because a real start faults
//!   its pages in while loading.
//!
//! Needs /dev/kvm for all but the kernel loads; without it those groups are left out with a
//! note on stderr. Each iteration's set-up (a VM to measure on) is untimed but still costs
//! wall time, so the groups that need one measure for a shorter time: the whole file runs in
//! about a minute on two cores.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulkhead_vm::arch::x86_64::layout::{HIMEM_START, ZERO_PAGE_START};
use bulkhead_vm::arch::x86_64::regs::Entry;
use bulkhead_vm::boot::kernel::KernelImage;
use bulkhead_vm::guests;
use bulkhead_vm::vstate::vm::Vm;
use bulkhead_vm::vstate::{memory, vcpu};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use kvm_bindings::kvm_userspace_memory_region;

/// The guest RAM sizes whose slot registration is timed.
const SLOT_MIB: &[u64] = &[16, 128, 1024];

/// Guest RAM for the kernel loads: room for a distro vmlinux (about 50 MiB) above 1 MiB.
const LOAD_MIB: u64 = 256;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

fn has_kvm(group: &str) -> bool {
    let ok = Path::new("/dev/kvm").exists();
    if !ok {
        eprintln!("vm_start: {group}: no /dev/kvm, left out");
    }
    ok
}

fn vm_create(c: &mut Criterion) {
    if !has_kvm("vm_create") {
        return;
    }
    let mut g = c.benchmark_group("vm_create");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("kvm_create_vm", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let vm = Vm::new().unwrap();
                total += t.elapsed();
                // Torn down outside the time: KVM frees a VM after its last fd closes.
                drop(black_box(vm));
            }
            total
        })
    });
    g.finish();
}

/// Deletes every slot `register_memory` made for `mem` (a slot of size 0 is a deletion).
fn unregister(vm: &Vm, mem: &vm_memory::GuestMemoryMmap) {
    use vm_memory::GuestMemoryBackend;
    for slot in 0..mem.num_regions() as u32 {
        let region = kvm_userspace_memory_region {
            slot,
            ..Default::default()
        };
        // SAFETY: deleting a slot maps nothing; the guest never runs in this VM.
        unsafe { vm.fd().set_user_memory_region(region) }.unwrap();
    }
}

fn memory_slot(c: &mut Criterion) {
    if !has_kvm("vm_memory_slot") {
        return;
    }
    let mut g = c.benchmark_group("vm_memory_slot");
    g.sampling_mode(SamplingMode::Flat);
    let vm = Vm::new().unwrap();
    for &mib in SLOT_MIB {
        let mem = memory::create(mib).unwrap();
        g.bench_function(format!("{mib}MiB"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    vm.register_memory(&mem).unwrap();
                    total += t.elapsed();
                    unregister(&vm, &mem);
                }
                total
            })
        });
    }
    g.finish();
}

/// A VM with its memory slot registered, as the builder has it before the irqchip.
fn vm_with_memory() -> (Vm, vm_memory::GuestMemoryMmap) {
    let vm = Vm::new().unwrap();
    let mem = memory::create(16).unwrap();
    vm.register_memory(&mem).unwrap();
    (vm, mem)
}

fn irqchip_and_vcpus(c: &mut Criterion) {
    if !has_kvm("vm_irqchip and vm_vcpus") {
        return;
    }
    let mut g = c.benchmark_group("vm_irqchip");
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_millis(500));
    g.bench_function("pic_ioapic_pit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (vm, mem) = vm_with_memory();
                let t = Instant::now();
                vm.create_irqchip().unwrap();
                total += t.elapsed();
                drop((vm, mem));
            }
            total
        })
    });
    g.finish();

    let entry = Entry::Linux64 {
        rip: HIMEM_START,
        zero_page: ZERO_PAGE_START,
    };
    let mut g = c.benchmark_group("vm_vcpus");
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_millis(500));
    for count in [1u8, 2] {
        g.bench_function(count.to_string(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // vCPU ids cannot be reused within a VM: a fresh one each time.
                    let (vm, mem) = vm_with_memory();
                    vm.create_irqchip().unwrap();
                    let t = Instant::now();
                    let vcpus = vcpu::create(&vm, count, entry).unwrap();
                    total += t.elapsed();
                    drop((vcpus, vm, mem));
                }
                total
            })
        });
    }
    g.finish();
}

/// The kernels to load: the bare guest (written out of the library) and each cached vmlinux.
fn kernels(scratch: &Path) -> Vec<(String, PathBuf)> {
    let bare = scratch.join("bare.elf");
    std::fs::write(&bare, guests::BARE).unwrap();
    let mut out = vec![("bare_elf".to_string(), bare)];
    let cache = match bulkhead_images::cache::default_dir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("vm_start: vm_kernel_load: no images cache ({e}); vmlinux left out");
            return out;
        }
    };
    let mut cached: Vec<(String, PathBuf)> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let vmlinux = e.path().join("vmlinux");
            // `kernel-minimal-<key>` is the minimal kernel, `kernel-<package>` a distro one.
            let id = match name.strip_prefix("kernel-")? {
                n if n.starts_with("minimal-") => "vmlinux_minimal".to_string(),
                n => format!("vmlinux_{}", n.split('_').next().unwrap_or(n)),
            };
            vmlinux.is_file().then_some((id, vmlinux))
        })
        .collect();
    if cached.is_empty() {
        eprintln!(
            "vm_start: vm_kernel_load: no vmlinux in {} (`bulkhead images` builds one); left out",
            cache.display()
        );
    }
    cached.sort();
    cached.dedup_by(|a, b| a.0 == b.0);
    out.extend(cached);
    out
}

fn kernel_load(c: &mut Criterion) {
    let scratch = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("vm_kernel_load");
    g.sampling_mode(SamplingMode::Flat);
    for (id, path) in kernels(scratch.path()) {
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mem = memory::create(LOAD_MIB).unwrap();
                    let t = Instant::now();
                    let mut kernel = KernelImage::open(&path).unwrap();
                    black_box(kernel.load(&mem).unwrap());
                    total += t.elapsed();
                    drop(mem);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = vm_start;
    config = config();
    targets = vm_create, memory_slot, irqchip_and_vcpus, kernel_load
}
criterion_main!(vm_start);
