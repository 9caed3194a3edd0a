//! The import rules of the crate tour (`src/lib.rs`), read from the source tree: the core, the
//! store and the broker never import an edge (`ws`, `http`, `admin`, `server`, `app`), the store
//! never imports the core, and the shared vocabulary imports no service. A rule broken here is
//! an arrow pointing outward.

use std::path::{Path, PathBuf};

/// The edges: what serves clients and operators, and the state they share.
const EDGES: &[&str] = &["ws", "http", "admin", "server", "app", "cli"];

/// Every other module of the crate.
const NOT_EDGES: &[&str] = &[
    "core",
    "hub",
    "store",
    "auth",
    "events",
    "principal",
    "error",
    "wire",
    "config",
    "metrics",
    "logging",
    "shutdown",
    "systemd",
    "tls",
    "sha256",
    "timefmt",
    "fuzzing",
    "push",
    "webhooks",
];

/// Module (a directory or a file under `src/`) and what it must not import.
fn rules() -> Vec<(&'static str, Vec<&'static str>)> {
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        EDGES.iter().chain(extra).copied().collect()
    };
    vec![
        ("core", with(&[])),
        ("hub", with(&["core", "store", "auth"])),
        ("store", with(&["core", "hub", "auth"])),
        ("auth", with(&["core"])),
        ("events", with(&["core", "hub", "auth"])),
        ("principal", with(&["core", "hub", "auth", "store"])),
        ("error", with(&["core", "hub", "auth", "store", "config"])),
        ("wire", with(&["core", "hub", "auth"])),
        ("config", with(&["core", "hub", "auth", "store"])),
        ("metrics", with(&["core", "hub", "auth", "store"])),
        // Issue 17's building blocks, not wired in yet: they import nothing of the crate.
        ("push", with(NOT_EDGES)),
        // The webhook service: the core emits into it, so it never imports the core (nor the
        // broker or auth); it works over the store.
        ("webhooks", with(&["core", "hub", "auth", "push"])),
    ]
}

/// The crate modules a source file names (`crate::x`, `crate::{x, y}`, and `super::x` in a
/// module's root file, where `super` is the crate), leaving comments out.
fn imported_modules(source: &str, super_is_crate: bool) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        let mut prefixes = vec!["crate::"];
        if super_is_crate {
            prefixes.push("super::");
        }
        for prefix in prefixes {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let after = &rest[at + prefix.len()..];
                if let Some(group) = after.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    for item in group.split(',') {
                        if let Some(name) = module_name(item.trim()) {
                            found.push(name);
                        }
                    }
                } else if let Some(name) = module_name(after) {
                    found.push(name);
                }
                rest = after;
            }
        }
    }
    found
}

fn module_name(path: &str) -> Option<String> {
    let name: String = path
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every broken rule under `src`: file, module and the import that breaks it.
fn violations(src: &Path) -> Vec<String> {
    let mut broken = Vec::new();
    for (module, forbidden) in rules() {
        let dir = src.join(module);
        let root = if dir.is_dir() {
            dir
        } else {
            src.join(format!("{module}.rs"))
        };
        assert!(root.exists(), "no module {module} under {}", src.display());
        for file in rust_files(&root) {
            let source = std::fs::read_to_string(&file).expect("read");
            let super_is_crate = file.ends_with(format!("{module}/mod.rs"));
            for imported in imported_modules(&source, super_is_crate) {
                if forbidden.contains(&imported.as_str()) {
                    broken.push(format!("{}: {module} imports {imported}", file.display()));
                }
            }
        }
    }
    broken
}

#[test]
fn no_arrow_points_outward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let broken = violations(&src);
    assert!(
        broken.is_empty(),
        "imports against the crate tour:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_rules_catch_an_outward_import() {
    let source = "//! doc that names crate::ws is fine\nuse crate::{error::Error, ws::close};\nfn f() { crate::http::x(); } // crate::admin in a comment\n";
    assert_eq!(imported_modules(source, false), ["error", "ws", "http"]);
    assert_eq!(
        imported_modules("use super::server::AppState;", true),
        ["server"]
    );
    assert!(imported_modules("use super::server::AppState;", false).is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    for (module, _) in rules() {
        std::fs::write(src.join(format!("{module}.rs")), "//! clean\n").expect("write");
    }
    std::fs::write(src.join("store.rs"), "use crate::core::chat::Chat;\n").expect("write");
    assert_eq!(violations(src).len(), 1, "{:?}", violations(src));
}
