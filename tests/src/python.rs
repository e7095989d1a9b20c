//! Python from the tests: a venv per requirements file
//! (`scripts/py-venv.sh`) and the `/metrics` scrape read by the
//! `prometheus_client` OpenMetrics parser. Missing Python or PyPI fails the test with
//! the script's message; nothing is skipped.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_path_buf()
}

/// The python of the venv with `requirements` (a path from the repository
/// root) installed, made once by `scripts/py-venv.sh`. Panics with the
/// script's message (no python3, no venv module, no package index).
pub fn venv_python(requirements: &str) -> PathBuf {
    let root = repo_root();
    let out = Command::new("bash")
        .arg(root.join("scripts/py-venv.sh"))
        .arg(root.join(requirements))
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/py-venv.sh");
    assert!(
        out.status.success(),
        "scripts/py-venv.sh {requirements} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        python.exists(),
        "py-venv printed {python:?}, which is not there"
    );
    python
}

/// One `/metrics` answer as the Python parsers read it.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The raw text.
    pub text: String,
    /// `{"families": {NAME: {"type", "samples": [[name, labels, value]]}}}`
    /// (see `tests/python/parse_metrics.py`).
    pub parsed: Value,
}

impl Scrape {
    /// The type of family `family` (`counter`, `gauge`, `histogram`; a
    /// counter's family is its name without `_total`), if present.
    pub fn kind(&self, family: &str) -> Option<&str> {
        self.parsed["families"][family]["type"].as_str()
    }

    /// The value of the sample `sample` whose labels include `labels`, if
    /// exactly one such sample exists (panics on several).
    pub fn value(&self, sample: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let families = self.parsed["families"].as_object()?;
        let mut found = None;
        for family in families.values() {
            for s in family["samples"].as_array().into_iter().flatten() {
                let matches = s[0].as_str() == Some(sample)
                    && labels.iter().all(|(k, v)| s[1][*k].as_str() == Some(*v));
                if matches {
                    assert!(found.is_none(), "several samples {sample} {labels:?}");
                    found = s[2].as_f64();
                }
            }
        }
        found
    }

    /// [`Scrape::value`], panicking with the text when it is missing.
    pub fn get(&self, sample: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(sample, labels)
            .unwrap_or_else(|| panic!("no sample {sample} {labels:?} in /metrics:\n{}", self.text))
    }
}

/// Parses `text` with `python`'s `prometheus_client` OpenMetrics parser (from [`venv_python`] of
/// `tests/python/metrics-requirements.txt`); panics on a parse error.
pub fn parse_metrics(python: &Path, text: &str) -> Scrape {
    let script = repo_root().join("tests/python/parse_metrics.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the metrics parser");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write /metrics to the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the prometheus_client parsers refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = serde_json::from_slice(&out.stdout).expect("parser JSON");
    Scrape {
        text: text.to_owned(),
        parsed,
    }
}

/// `GET /metrics` on `addr` (a real socket), parsed with `python`.
pub async fn scrape(python: &Path, addr: SocketAddr) -> Scrape {
    let (status, text) = crate::wire::http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "/metrics answered {status}: {text}");
    let python = python.to_path_buf();
    tokio::task::spawn_blocking(move || parse_metrics(&python, &text))
        .await
        .expect("parser task")
}
