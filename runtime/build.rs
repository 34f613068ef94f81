//! Links libseccomp's one missing symbol into musl builds (musl/fortify.c says why).
//! Bundled with +whole-archive so that every binary that links this crate, the harness
//! included, carries the definition wherever the linker meets libseccomp's archive.

fn main() {
    println!("cargo::rerun-if-changed=musl/fortify.c");
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("musl") {
        return;
    }
    // The host's C compiler: the file includes only the compiler's own <stdarg.h>, so it
    // needs no musl headers, and Debian has no x86_64-linux-musl-gcc unless musl-tools is in.
    cc::Build::new()
        .compiler("cc")
        .file("musl/fortify.c")
        .cargo_metadata(false)
        .compile("bulkhead_fortify");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    println!("cargo::rustc-link-search=native={out}");
    println!("cargo::rustc-link-lib=static:+whole-archive=bulkhead_fortify");
}
