//! The browser package committed under `server/assets/switchboard-wasm/`
//! (what the hub serves) is built from the current sources, and its
//! TypeScript definitions type-check a usage file.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha1::{Digest, Sha1};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn files_under(dir: &Path, rel: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = format!("{rel}/{name}");
        if e.file_type().expect("file type").is_dir() {
            files_under(&e.path(), &rel, out);
        } else {
            out.push(rel);
        }
    }
}

/// The hash `scripts/build-wasm.sh` records: `sha1sum` of every input file
/// (sorted by path), then the `sha1sum` of that listing.
fn source_hash() -> String {
    let root = root();
    let list = std::fs::read_to_string(root.join("client-wasm/package-inputs")).expect("inputs");
    let mut files = Vec::new();
    for line in list
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let p = root.join(line);
        if p.is_dir() {
            files_under(&p, line, &mut files);
        } else {
            files.push(line.to_owned());
        }
    }
    files.sort();
    let mut listing = String::new();
    for f in &files {
        let bytes = std::fs::read(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        listing += &format!("{}  {f}\n", hex(&Sha1::digest(&bytes)));
    }
    hex(&Sha1::digest(listing.as_bytes()))
}

fn locked_wasm_bindgen() -> String {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"wasm-bindgen\"" {
            let v = lines.next().expect("version line");
            return v
                .trim_start_matches("version = ")
                .trim_matches('"')
                .to_owned();
        }
    }
    panic!("no wasm-bindgen in Cargo.lock");
}

#[test]
fn the_committed_package_is_built_from_the_current_sources() {
    let recorded =
        std::fs::read_to_string(root().join("server/assets/switchboard-wasm/SOURCE_HASH"))
            .expect("server/assets/switchboard-wasm/SOURCE_HASH");
    let want = format!("{} wasm-bindgen {}", source_hash(), locked_wasm_bindgen());
    assert_eq!(
        recorded.trim(),
        want,
        "server/assets/switchboard-wasm/ is stale: its sources (client-wasm/package-inputs) \
         changed since it was built; run scripts/build-wasm.sh and commit the result"
    );
}

#[test]
fn the_package_has_its_files_and_manifest() {
    let dir = root().join("server/assets/switchboard-wasm");
    for f in [
        "switchboard.js",
        "switchboard.d.ts",
        "switchboard_bg.wasm",
        "package.json",
        "README.md",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).expect("manifest"))
            .expect("package.json is JSON");
    assert_eq!(manifest["types"], "./switchboard.d.ts");
    assert_eq!(manifest["exports"]["."]["import"], "./switchboard.js");
    assert_eq!(manifest["exports"]["."]["types"], "./switchboard.d.ts");
    let wasm = std::fs::read(dir.join("switchboard_bg.wasm")).expect("wasm");
    assert_eq!(&wasm[..4], b"\0asm", "a WebAssembly module");
    let dts = std::fs::read_to_string(dir.join("switchboard.d.ts")).expect("d.ts");
    for name in [
        "class Switchboard",
        "class Subscription",
        "interface SwitchboardOptions",
        "[Symbol.asyncIterator]",
    ] {
        assert!(dts.contains(name), "switchboard.d.ts lacks {name}");
    }
}

/// `tsc --noEmit` over client-wasm/ts/usage.ts (its `@ts-expect-error`
/// lines must be errors, so loose `any` types fail it too). The TypeScript
/// compiler is the one scripts/build-wasm.sh installs (SWITCHBOARD_TSC
/// overrides); without it the test is skipped, unless CI or
/// SWITCHBOARD_REQUIRE_BROWSER=1 is set.
#[test]
fn the_typescript_definitions_type_check_a_usage_file() {
    let tsc = std::env::var_os("SWITCHBOARD_TSC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("SWITCHBOARD_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/switchboard")
                });
            cache.join("node-tools/node_modules/.bin/tsc")
        });
    if !tsc.is_file() {
        let required = std::env::var_os("CI").is_some()
            || std::env::var("SWITCHBOARD_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "no tsc at {} (scripts/build-wasm.sh --tools-only installs it)",
            tsc.display()
        );
        eprintln!("SKIPPED: no tsc at {}", tsc.display());
        return;
    }
    let out = Command::new(&tsc)
        .args(["--noEmit", "-p"])
        .arg(root().join("client-wasm/ts/tsconfig.json"))
        .output()
        .expect("running tsc");
    assert!(
        out.status.success(),
        "tsc failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
