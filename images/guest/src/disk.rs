//! `disk`: block I/O a test can check from the outside, one JSON line per run.
//!
//! - `disk write DEV MIB SEED`: writes MIB MiB of [`pattern`] to DEV from its start, then
//!   fdatasync (a virtio-blk flush), then prints
//!   `{"disk":"write","bytes":N,"fnv":"HEX","synced":true}`;
//! - `disk read DEV MIB SEED`: reads MIB MiB from DEV, prints
//!   `{"disk":"read","bytes":N,"fnv":"HEX","pattern":BOOL}` (`pattern`: the bytes are
//!   [`pattern`] of SEED);
//!   With a fifth argument `hold`, it then sleeps instead of returning: the test that
//!   SIGKILLs the VMM right after this line must find the VM still running.
//! - `disk sum FILE`: the whole file's length and FNV-1a 64 (the host's check of an image,
//!   run outside the VM).
//! - `disk bench DEV READS MIB`: READS random 4 KiB reads, then MIB MiB of sequential 1 MiB
//!   reads (wrapping around the device), both with O_DIRECT so the guest's page cache is not
//!   what is measured, one at a time; prints
//!   `{"disk":"bench","reads":READS,"rand_ns":NS,"mib":MIB,"seq_ns":NS}` (the benchmark of
//!   microvm/benches/devices.rs divides).
//!
//! Any failure (a missing device, a read-only one refusing the write) prints
//! `{"disk":KIND,"error":"..."}` and exits 1. The checksum is FNV-1a 64 over the bytes, in
//! hex: simple to compute on any side, and not a security boundary.

use std::io::{Read, Write};

use crate::output::{self, Json};

const MIB: usize = 1 << 20;

/// FNV-1a 64, fed in pieces.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// MiB number `index` of the test data for `seed`: xorshift64, seeded per MiB, so any MiB can
/// be made (and checked) on its own.
pub fn pattern(seed: u64, index: u64, out: &mut [u8]) {
    let mut x = seed ^ (index.wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = chunk.len();
        chunk.copy_from_slice(&x.to_le_bytes()[..n]);
    }
}

fn fail(kind: &str, why: String) -> i32 {
    let line = Json::Obj(vec![
        ("disk".into(), Json::Str(kind.into())),
        ("error".into(), Json::Str(why)),
    ]);
    output::line(&line.render());
    1
}

/// The device at `path`, waiting up to a second for it to appear (a driver just loaded).
fn open(path: &str, write: bool) -> std::io::Result<std::fs::File> {
    let mut tries = 0;
    loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

pub fn run(args: &[String]) -> i32 {
    let arg = |i: usize| args.get(i).map(String::as_str);
    let num = |i: usize| arg(i).and_then(|s| s.parse::<u64>().ok());
    match (arg(0), arg(1)) {
        (Some("write"), Some(dev)) => match (num(2), num(3)) {
            (Some(mib), Some(seed)) => {
                let status = write(dev, mib, seed);
                if status == 0 && arg(4) == Some("hold") {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    }
                }
                status
            }
            _ => fail("write", "usage: disk write DEV MIB SEED".into()),
        },
        (Some("read"), Some(dev)) => match (num(2), num(3)) {
            (Some(mib), Some(seed)) => read(dev, mib, seed),
            _ => fail("read", "usage: disk read DEV MIB SEED".into()),
        },
        (Some("sum"), Some(file)) => sum(file),
        (Some("bench"), Some(dev)) => match (num(2), num(3)) {
            (Some(reads), Some(mib)) => bench(dev, reads, mib),
            _ => fail("bench", "usage: disk bench DEV READS MIB".into()),
        },
        _ => fail(
            "?",
            "usage: disk write|read DEV MIB SEED | disk sum FILE | disk bench DEV READS MIB".into(),
        ),
    }
}

fn write(dev: &str, mib: u64, seed: u64) -> i32 {
    let mut f = match open(dev, true) {
        Ok(f) => f,
        Err(e) => return fail("write", format!("{dev}: {e}")),
    };
    let mut buf = vec![0u8; MIB];
    let mut fnv = Fnv::default();
    for i in 0..mib {
        pattern(seed, i, &mut buf);
        fnv.feed(&buf);
        if let Err(e) = f.write_all(&buf) {
            return fail("write", format!("{dev}: MiB {i}: {e}"));
        }
    }
    if let Err(e) = f.sync_data() {
        return fail("write", format!("{dev}: fdatasync: {e}"));
    }
    let line = Json::Obj(vec![
        ("disk".into(), Json::Str("write".into())),
        ("bytes".into(), Json::Int((mib as usize * MIB) as i64)),
        ("fnv".into(), Json::Str(fnv.hex())),
        ("synced".into(), Json::Bool(true)),
    ]);
    output::line(&line.render());
    0
}

fn read(dev: &str, mib: u64, seed: u64) -> i32 {
    let mut f = match open(dev, false) {
        Ok(f) => f,
        Err(e) => return fail("read", format!("{dev}: {e}")),
    };
    let (mut buf, mut want) = (vec![0u8; MIB], vec![0u8; MIB]);
    let mut fnv = Fnv::default();
    let mut same = true;
    for i in 0..mib {
        if let Err(e) = f.read_exact(&mut buf) {
            return fail("read", format!("{dev}: MiB {i}: {e}"));
        }
        fnv.feed(&buf);
        pattern(seed, i, &mut want);
        same &= buf == want;
    }
    let line = Json::Obj(vec![
        ("disk".into(), Json::Str("read".into())),
        ("bytes".into(), Json::Int((mib as usize * MIB) as i64)),
        ("fnv".into(), Json::Str(fnv.hex())),
        ("pattern".into(), Json::Bool(same)),
    ]);
    output::line(&line.render());
    0
}

fn sum(file: &str) -> i32 {
    let mut f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => return fail("sum", format!("{file}: {e}")),
    };
    let mut buf = vec![0u8; MIB];
    let (mut fnv, mut bytes) = (Fnv::default(), 0u64);
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                fnv.feed(&buf[..n]);
                bytes += n as u64;
            }
            Err(e) => return fail("sum", format!("{file}: {e}")),
        }
    }
    let line = Json::Obj(vec![
        ("disk".into(), Json::Str("sum".into())),
        ("bytes".into(), Json::Int(bytes as i64)),
        ("fnv".into(), Json::Str(fnv.hex())),
    ]);
    output::line(&line.render());
    0
}

/// 4 KiB, the random reads' size and every O_DIRECT buffer's alignment.
const BLOCK: usize = 4096;

fn bench(dev: &str, reads: u64, mib: u64) -> i32 {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let _ = open(dev, false); // waits for the device to appear
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
    {
        Ok(f) => f,
        Err(e) => return fail("bench", format!("{dev}: {e}")),
    };
    let size = match f.seek(SeekFrom::End(0)) {
        Ok(n) if n >= MIB as u64 => n,
        Ok(n) => return fail("bench", format!("{dev}: {n} bytes, want at least 1 MiB")),
        Err(e) => return fail("bench", format!("{dev}: {e}")),
    };
    // O_DIRECT wants an aligned buffer: one MiB at a 4 KiB boundary inside a larger Vec.
    let mut raw = vec![0u8; MIB + BLOCK];
    let skip = raw.as_ptr().align_offset(BLOCK);
    let buf = &mut raw[skip..skip + MIB];
    let blocks = size / BLOCK as u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let start = std::time::Instant::now();
    for i in 0..reads {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = (x % blocks) * BLOCK as u64;
        if let Err(e) = f.read_exact_at(&mut buf[..BLOCK], at) {
            return fail("bench", format!("{dev}: random read {i} at {at}: {e}"));
        }
    }
    let rand_ns = start.elapsed().as_nanos() as i64;
    let whole = size / MIB as u64;
    let start = std::time::Instant::now();
    for i in 0..mib {
        let at = (i % whole) * MIB as u64;
        if let Err(e) = f.read_exact_at(buf, at) {
            return fail("bench", format!("{dev}: MiB {i} at {at}: {e}"));
        }
    }
    let seq_ns = start.elapsed().as_nanos() as i64;
    let line = Json::Obj(vec![
        ("disk".into(), Json::Str("bench".into())),
        ("reads".into(), Json::Int(reads as i64)),
        ("rand_ns".into(), Json::Int(rand_ns)),
        ("mib".into(), Json::Int(mib as i64)),
        ("seq_ns".into(), Json::Int(seq_ns)),
    ]);
    output::line(&line.render());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_and_pattern_are_stable() {
        let mut f = Fnv::default();
        f.feed(b"a");
        assert_eq!(f.hex(), "af63dc4c8601ec8c");
        let (mut a, mut b) = (vec![0u8; 64], vec![0u8; 64]);
        pattern(1, 0, &mut a);
        pattern(1, 1, &mut b);
        assert_ne!(a, b);
        pattern(1, 0, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn bench_reads_a_file_and_reports_both_phases() {
        // O_DIRECT on a file of the temp directory (tmpfs refuses it: then the error line).
        let dir = std::env::temp_dir().join(format!("bulkhead-disk-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("img");
        std::fs::write(&img, vec![7u8; 2 * MIB]).unwrap();
        let status = bench(img.to_str().unwrap(), 10, 3);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(status == 0 || status == 1);
        assert_eq!(bench("/nonexistent-disk", 1, 1), 1);
    }
}
