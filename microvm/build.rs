//! Builds the bare guests (microvm/guests/bare/) with GNU as + ld.
//!
//! Why as/ld rather than bytes emitted by a Rust generator: the guests are real programs
//! (page tables, decimal printing, real-mode firmware), and readable, commented assembly is
//! reviewable where a table of hand-encoded bytes is not. binutils is on every machine we
//! build on (it comes with gcc), needs no download, and the output is reproducible: no
//! build id, no symbols, no timestamps (`ld -s --build-id=none`); a given binutils version
//! gives byte-identical images.
//!
//! Outputs land in OUT_DIR: the library embeds the ones the benchmark uses
//! (`bulkhead_vm::guests`), the tests the rest (tests/common/guests.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

/// (output name, VARIANT value) for the 64-bit ELF guests; see guests/bare/bare.S.
const ELF_GUESTS: &[(&str, u32)] = &[
    ("bare.elf", 0),
    ("triple-fault.elf", 1),
    ("mmio.elf", 2),
    ("serial-flood.elf", 3),
    ("halt.elf", 4),
    ("panic.elf", 5),
    ("poweroff.elf", 6),
    ("pvh.elf", 7),
    ("hog.elf", 8),
    ("virtio.elf", 9),
];

fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run {shown}: {e} (GNU binutils `as`/`ld` are required)")
    });
    assert!(status.success(), "{shown} failed with {status}");
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("guests/bare");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let bare_s = dir.join("bare.S");
    let bare_ld = dir.join("bare.ld");
    let bios_s = dir.join("bios.S");
    for f in [&bare_s, &bare_ld, &bios_s] {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    for (name, variant) in ELF_GUESTS {
        let obj = out.join(format!("{name}.o"));
        run(Command::new("as")
            .args(["--64", "--defsym"])
            .arg(format!("VARIANT={variant}"))
            .arg("-o")
            .arg(&obj)
            .arg(&bare_s));
        link_elf(&obj, &bare_ld, &out.join(name));
    }

    let obj = out.join("bios.o");
    run(Command::new("as")
        .arg("--32")
        .arg("-o")
        .arg(&obj)
        .arg(&bios_s));
    let bios = out.join("bios.bin");
    run(Command::new("ld")
        .args([
            "-m",
            "elf_i386",
            "--build-id=none",
            "-Ttext=0",
            "--oformat=binary",
            "-o",
        ])
        .arg(&bios)
        .arg(&obj));
    let len = std::fs::metadata(&bios).expect("bios.bin").len();
    assert_eq!(len, 64 * 1024, "the firmware image must be exactly 64 KiB");
}

fn link_elf(obj: &Path, script: &Path, elf: &Path) {
    run(Command::new("ld")
        .args([
            "-s",
            "-m",
            "elf_x86_64",
            "-nostdlib",
            "-static",
            "--build-id=none",
        ])
        // The guest is one tiny RWX image on purpose; keep binutils >= 2.39 quiet about it.
        .arg("--no-warn-rwx-segments")
        .args(["-z", "max-page-size=0x1000", "-T"])
        .arg(script)
        .arg("-o")
        .arg(elf)
        .arg(obj));
}
