//! `bulkhead`: the harness CLI. Parsing only; the work lives in the modules and the libraries.

use bulkhead::env;

use anyhow::{Result, bail};
use bulkhead_images::{Built, KernelChoice, Options};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "bulkhead",
    version,
    about = "VMs vs containers: the same guest in every backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct ImageArgs {
    /// Use this kernel (ELF vmlinux or bzImage) instead of the distro's cloud kernel.
    #[arg(long, value_name = "PATH", conflicts_with = "no_kernel")]
    kernel: Option<PathBuf>,
    /// Cache directory (default: $BULKHEAD_CACHE, else $XDG_CACHE_HOME/bulkhead, else ~/.cache/bulkhead).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Build no kernel (containers only).
    #[arg(long)]
    no_kernel: bool,
    /// The bulkhead-guest binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    guest: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build (or reuse) the rootfs, OCI bundle, initramfs and kernel, and print their paths.
    Images(ImageArgs),
    /// Run the benchmark. Until the harness exists: print what is available here.
    Bench(ImageArgs),
}

/// The guest: `--guest`, else `bulkhead-guest` beside our own executable (same cargo target dir).
fn guest_path(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        if !p.is_file() {
            bail!("--guest {}: no such file", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("locating our own executable (pass --guest PATH): {e}"))?;
    let p = exe.with_file_name("bulkhead-guest");
    if !p.is_file() {
        bail!(
            "bulkhead-guest not found at {} (build it with `cargo build -p bulkhead-guest`, or pass --guest PATH)",
            p.display()
        );
    }
    Ok(p)
}

fn options(args: ImageArgs) -> Result<Options> {
    let mut opts = Options::new(guest_path(args.guest)?);
    opts.cache_dir = args.cache;
    opts.kernel = match (args.kernel, args.no_kernel) {
        (Some(p), _) => KernelChoice::Path(p),
        (None, true) => KernelChoice::None,
        (None, false) => KernelChoice::Distro,
    };
    Ok(opts)
}

fn print_built(b: &Built) {
    let show = |k: &str, p: &std::path::Path| println!("{k:<10} {}", p.display());
    show("cache", &b.cache_dir);
    show("guest", &b.guest);
    show("rootfs", &b.rootfs);
    show("bundle", &b.bundle);
    show("initramfs", &b.initramfs);
    if let Some(k) = &b.kernel {
        println!("{:<10} {}", "kernel", k.version);
        if let Some(p) = &k.bzimage {
            show("bzimage", p);
        }
        if let Some(p) = &k.vmlinux {
            show("vmlinux", p);
        }
        if let Some(m) = &k.modules {
            show("modules", &m.dir);
        }
    }
    println!(
        "{:<10} {}",
        "status",
        if b.built_now.is_empty() {
            "all reused".to_string()
        } else {
            format!("built {}", b.built_now.len())
        }
    );
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Images(args) => options(args)
            .and_then(|o| Ok(bulkhead_images::build(&o)?))
            .map(|b| print_built(&b)),
        Cmd::Bench(args) => {
            let env = env::Environment::detect();
            println!(
                "{}",
                serde_json::to_string_pretty(&env).expect("serialisable")
            );
            println!("the harness is not implemented yet; images available:");
            options(args)
                .and_then(|o| Ok(bulkhead_images::build(&o)?))
                .map(|b| print_built(&b))
        }
    };
    if let Err(e) = result {
        // One line naming the culprit. Our error types already include their cause in their
        // message, so the plain Display (not the `{:#}` chain) avoids saying it twice.
        eprintln!("bulkhead: error: {e}");
        std::process::exit(1);
    }
}
