//! The workspace's layout rules (P3.0), checked on the source tree itself:
//! - no source file under a crate's `src/` is over 800 lines;
//! - no circular imports between modules.
//!
//! "Circular" is judged among siblings: at the crate root and inside every module directory,
//! child module A depends on child module B when any file of A's subtree names anything of B's
//! subtree (a `use` line or a `crate::`, `super::`, `self::` or child-module path). A cycle among
//! siblings is a failure. A module and its own descendants may use each other (a parent
//! re-exports and orchestrates its children; a child uses an item its parent defines): that is
//! nesting, not a circle between peers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

/// A module of one crate: its path from the crate root and the file that holds it.
#[derive(Debug)]
struct Module {
    path: Vec<String>,
    file: PathBuf,
}

/// Source text with comments and string/char literals blanked out (same length, same lines),
/// so that doc links and messages are not taken for imports.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |c: u8| if c == b'\n' { b'\n' } else { b' ' };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if b[i] == b'r'
            && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#"))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // Raw string r"..." / r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let end = b[j + 1..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| j + 1 + p + close.len());
                out.extend(b[i..end].iter().map(|&c| blank(c)));
                i = end;
            } else {
                out.push(b[i]);
                i += 1;
            }
        } else if b[i] == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    out.push(b' ');
                    i += 1;
                }
                out.push(blank(b[i]));
                i += 1;
            }
            out.push(b' ');
            i += 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\''), not a lifetime ('a).
            let lit_len = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(3)
            } else {
                None
            };
            match lit_len {
                Some(n) => {
                    out.extend(std::iter::repeat_n(b' ', n));
                    i += n;
                }
                None => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `mod name;` declarations (not inline `mod name { ... }`) with any `#[path = "..."]`.
fn declared_modules(code: &str, raw: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let raw_lines: Vec<&str> = raw.lines().collect();
    for (n, line) in code.lines().enumerate() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let Some(rest) = t.strip_prefix("mod ") else {
            continue;
        };
        let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        if !rest[name.len()..].trim_start().starts_with(';') {
            continue;
        }
        let path_attr = n
            .checked_sub(1)
            .and_then(|p| raw_lines.get(p))
            .and_then(|l| l.trim().strip_prefix("#[path = \""))
            .and_then(|l| l.strip_suffix("\"]"))
            .map(str::to_string);
        found.push((name, path_attr));
    }
    found
}

/// Every module of the crate rooted at `root_file`.
fn modules(root_file: &Path) -> Vec<Module> {
    let mut all = Vec::new();
    let mut todo = vec![(Vec::<String>::new(), root_file.to_path_buf())];
    while let Some((path, file)) = todo.pop() {
        let raw =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let code = code_only(&raw);
        let dir = file.parent().unwrap();
        // Children of `a/mod.rs`, `lib.rs` or `main.rs` live beside it; those of `a.rs` in `a/`.
        let stem = file.file_stem().unwrap().to_str().unwrap();
        let child_dir = if path.is_empty() || stem == "mod" {
            dir.to_path_buf()
        } else {
            dir.join(stem)
        };
        for (name, attr) in declared_modules(&code, &raw) {
            let f = match attr {
                Some(p) => dir.join(p),
                None if child_dir.join(format!("{name}.rs")).exists() => {
                    child_dir.join(format!("{name}.rs"))
                }
                None => child_dir.join(&name).join("mod.rs"),
            };
            let mut p = path.clone();
            p.push(name);
            todo.push((p, f));
        }
        all.push(Module { path, file });
    }
    all
}

/// Split a `use` tree (`crate::{a::{b, c}, d as e}`) into its paths.
fn expand_use(tree: &str) -> Vec<Vec<String>> {
    fn go(s: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let s = s.trim();
        if let Some(open) = s.find('{') {
            let head: Vec<String> = s[..open]
                .split("::")
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
            let inner = &s[open + 1..s.rfind('}').unwrap_or(s.len())];
            let mut p = prefix.to_vec();
            p.extend(head);
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&inner[start..i], &p, out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            go(&inner[start..], &p, out);
        } else if !s.is_empty() {
            let s = s.split(" as ").next().unwrap();
            let mut p = prefix.to_vec();
            p.extend(
                s.split("::")
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_string),
            );
            out.push(p);
        }
    }
    let mut out = Vec::new();
    go(tree, &[], &mut out);
    out
}

/// Paths written in `code`: every `a::b::c` chain, and every path of every `use` tree.
fn written_paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    // `use` trees.
    let mut from = 0;
    while let Some(p) = code[from..].find("use ") {
        let at = from + p;
        from = at + 4;
        if at > 0 && is_ident(code[..at].chars().next_back().unwrap()) {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        let tree = &code[at + 4..at + end];
        if tree.contains('(') || tree.contains('=') {
            continue; // not a use declaration
        }
        for p in expand_use(tree) {
            found.push((line_of(at), p));
        }
    }
    // Expression and type paths: identifier chains joined by `::`.
    let chars: Vec<(usize, char)> = code.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        let starts = (c.is_ascii_alphabetic() || c == '_')
            && (i == 0 || !is_ident(chars[i - 1].1) && chars[i - 1].1 != ':');
        if !starts {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < chars.len() && is_ident(chars[j].1) {
                j += 1;
            }
            segs.push(code[chars[s].0..chars.get(j).map_or(code.len(), |c| c.0)].to_string());
            if j + 2 < chars.len()
                && chars[j].1 == ':'
                && chars[j + 1].1 == ':'
                && is_ident(chars[j + 2].1)
            {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            found.push((line_of(pos), segs));
        }
        i = j.max(i + 1);
    }
    found
}

/// Resolve a written path, seen from module `from`, to the deepest module it names.
fn resolve(from: &[String], path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut base: Vec<String>;
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            rest = &path[1..];
        }
        Some("self") => {
            base = from.to_vec();
            rest = &path[1..];
        }
        Some("super") => {
            base = from.to_vec();
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        Some(first) => {
            // Uniform paths: a child module of this one (or, at the root, a top-level module).
            let mut child = from.to_vec();
            child.push(first.to_string());
            if !known.contains(&child) {
                return None;
            }
            base = from.to_vec();
        }
        None => return None,
    }
    for seg in rest {
        let mut next = base.clone();
        next.push(seg.clone());
        if known.contains(&next) {
            base = next;
        } else {
            break;
        }
    }
    Some(base)
}

/// Cycles among the children of each module, with the evidence of each edge.
fn sibling_cycles(crate_name: &str, mods: &[Module], root: &Path) -> Vec<String> {
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    // (parent, child a, child b) -> first place where a names b.
    let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeMap<String, String>>> =
        BTreeMap::new();
    for m in mods {
        let code = code_only(&std::fs::read_to_string(&m.file).unwrap());
        for (line, p) in written_paths(&code) {
            let Some(target) = resolve(&m.path, &p, &known) else {
                continue;
            };
            let common = m
                .path
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == m.path.len() || common == target.len() {
                continue; // the same module, an ancestor or a descendant
            }
            let at = format!(
                "{}:{line} names {}",
                m.file.strip_prefix(root).unwrap_or(&m.file).display(),
                if target.is_empty() {
                    "crate".into()
                } else {
                    target.join("::")
                }
            );
            edges
                .entry(m.path[..common].to_vec())
                .or_default()
                .entry(m.path[common].clone())
                .or_default()
                .entry(target[common].clone())
                .or_insert(at);
        }
    }
    let mut cycles = Vec::new();
    for (parent, graph) in &edges {
        // Tarjan-free: for each edge a -> b, look for a path b -> ... -> a.
        let mut reported = BTreeSet::new();
        for (a, outs) in graph {
            for b in outs.keys() {
                let mut stack = vec![(b.clone(), vec![a.clone(), b.clone()])];
                let mut seen = BTreeSet::new();
                while let Some((n, trail)) = stack.pop() {
                    if n == *a {
                        let mut key: Vec<String> = trail[..trail.len() - 1].to_vec();
                        key.sort();
                        if reported.insert(key) {
                            let evidence: Vec<String> = trail
                                .windows(2)
                                .map(|w| graph[&w[0]][&w[1]].clone())
                                .collect();
                            cycles.push(format!(
                                "{crate_name}: {} → {}: {}",
                                if parent.is_empty() {
                                    "crate".into()
                                } else {
                                    parent.join("::")
                                },
                                trail.join(" → "),
                                evidence.join("; ")
                            ));
                        }
                        break;
                    }
                    if !seen.insert(n.clone()) {
                        continue;
                    }
                    for next in graph.get(&n).into_iter().flat_map(|o| o.keys()) {
                        let mut t = trail.clone();
                        t.push(next.clone());
                        stack.push((next.clone(), t));
                    }
                }
            }
        }
    }
    cycles
}

/// The workspace's packages, from the root Cargo.toml's `members` (so a new crate is checked
/// too).
fn packages(workspace: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
    let members = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("[workspace] members = [...] in Cargo.toml")
        .0;
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

/// Crate roots of the workspace's packages: `src/lib.rs` and `src/main.rs`.
fn crate_roots(workspace: &Path) -> Vec<(String, PathBuf)> {
    let mut roots = Vec::new();
    for pkg in packages(workspace) {
        let src = workspace.join(&pkg).join("src");
        for f in ["lib.rs", "main.rs"] {
            if src.join(f).exists() {
                roots.push((format!("{pkg}/src/{f}"), src.join(f)));
            }
        }
    }
    roots
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn long_files(workspace: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for pkg in packages(workspace) {
        rust_files(&workspace.join(pkg).join("src"), &mut files);
    }
    files.sort();
    files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| {
                format!(
                    "{}: {n} lines",
                    f.strip_prefix(workspace).unwrap().display()
                )
            })
        })
        .collect()
}

fn cycles(workspace: &Path) -> Vec<String> {
    crate_roots(workspace)
        .iter()
        .flat_map(|(name, root)| sibling_cycles(name, &modules(root), workspace))
        .collect()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn no_source_file_is_over_800_lines() {
    let long = long_files(&workspace());
    assert!(
        long.is_empty(),
        "split these (limit {MAX_LINES}):\n{}",
        long.join("\n")
    );
}

#[test]
fn no_module_imports_a_sibling_that_imports_it_back() {
    let cycles = cycles(&workspace());
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

/// The checker itself, on a tree with a known cycle and a known nesting (which is allowed).
#[test]
fn the_checker_finds_a_cycle_and_allows_nesting() {
    let dir = std::env::temp_dir().join(format!("bulkhead-layout-{}", std::process::id()));
    let src = dir.join("runtime/src");
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[workspace]\nmembers = [\"runtime\"]\n",
    )
    .unwrap();
    let write = |p: &str, s: &str| std::fs::write(src.join(p), s).unwrap();
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
    // a -> b::x -> c -> a: a cycle among the root's children, through a nested file.
    write(
        "a.rs",
        "use crate::b::x::f;\n// crate::c in a comment is not an import\n",
    );
    write("b/mod.rs", "pub mod x;\npub use x::f;\n");
    write("b/x.rs", "pub fn f() { super::super::c::g() }\n");
    write(
        "c.rs",
        "pub fn g() { let _ = \"crate::b\"; crate::a::h() }\n",
    );
    let found = cycles(&dir);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("a → b → c → a"), "{found:?}");
    // b's child using b's own items, and b re-exporting x: nesting, no cycle.
    write("c.rs", "pub fn g() {}\n");
    write("b/x.rs", "pub fn f() { super::helper() }\n");
    write("b/mod.rs", "pub mod x;\npub use x::f;\nfn helper() {}\n");
    assert!(cycles(&dir).is_empty(), "{:?}", cycles(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}
