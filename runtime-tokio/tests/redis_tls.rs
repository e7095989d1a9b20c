//! `rediss://`: the Redis store over TLS, against a `redis-server` that
//! speaks only TLS on its port, with a certificate authority and a server
//! certificate generated here (rcgen). The certificate is checked against a
//! given root ([`RedisOptions::root_cert`]); a wrong root is refused; the
//! binary's `--redis rediss://…/#insecure` takes any certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::json;
use switchboard_core::Config;
use switchboard_tests::redis::{RedisServer, TlsFiles};
use switchboard_tests::{Raw, Ws, next_json, raw_connect, send_json};
use switchboard_tokio::ServerBuilder;
use switchboard_tokio::redis::{RedisOptions, RedisStore};

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An authority and a certificate it signed for 127.0.0.1 / localhost,
/// written to `dir`; returns the files and the authority's PEM.
fn certificates(dir: &Path, ca_name: &str) -> (TlsFiles, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
        .expect("ca certificate");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    let files = TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: dir.join("ca.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).expect("write cert");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key");
    std::fs::write(&files.ca, ca.pem()).expect("write ca");
    (files, ca.pem())
}

fn temp_dir(what: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "sb-{what}-{}-{}",
        std::process::id(),
        switchboard_tests::redis::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

fn config() -> Config {
    Config {
        allow_anonymous: true,
        ..Config::default()
    }
}

async fn anonymous(url: &str) -> Ws {
    let mut ws = raw_connect(url, Raw::default()).await.expect("upgrade");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws
}

/// The next frame of type `t` (others skipped).
async fn next_of(ws: &mut Ws, t: &str) -> serde_json::Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == t {
            return v;
        }
    }
}

/// A subscriber and a publisher on `url`: the message goes through Redis.
async fn round_trip(url: &str, room: &str) {
    let mut s = anonymous(url).await;
    send_json(&mut s, json!({"type": "subscribe", "room": room, "id": 1})).await;
    assert_eq!(next_of(&mut s, "subscribed").await["id"], 1);
    let mut p = anonymous(url).await;
    send_json(
        &mut p,
        json!({"type": "publish", "room": room, "data": "over tls", "id": 2}),
    )
    .await;
    let ack = next_of(&mut p, "ack").await;
    assert_eq!(ack["offset"], 1, "{ack}");
    assert_eq!(next_of(&mut s, "message").await["data"], "over tls");
}

#[tokio::test]
async fn rediss_checks_the_certificate_against_the_given_root() {
    let dir = temp_dir("tls");
    let (files, ca_pem) = certificates(&dir.0, "switchboard test ca");
    let redis = RedisServer::tls(&files);
    let url = format!("rediss://127.0.0.1:{}", redis.port());

    let mut options = RedisOptions::new(url.as_str(), &config());
    options.root_cert = Some(ca_pem.into_bytes());
    let store = RedisStore::connect(options).await.expect("tls store");
    let server = ServerBuilder::new(config())
        .store(Arc::new(store))
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    round_trip(&server.ws_url(), "chat:tls").await;

    // Another authority: the certificate is refused, nothing connects.
    let other = temp_dir("tls-other");
    let (_, other_pem) = certificates(&other.0, "another ca");
    let mut options = RedisOptions::new(url.as_str(), &config());
    options.root_cert = Some(other_pem.into_bytes());
    let e = RedisStore::connect(options)
        .await
        .expect_err("an unknown authority is refused");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // The system's roots do not know the test authority either.
    let e = RedisStore::connect(RedisOptions::new(url.as_str(), &config()))
        .await
        .expect_err("not a system root");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // Plain text to a TLS port gets no Redis answer.
    let plain = format!("redis://127.0.0.1:{}", redis.port());
    assert!(
        RedisStore::connect(RedisOptions::new(plain.as_str(), &config()))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_binary_takes_rediss_with_insecure_and_a_password() {
    let dir = temp_dir("tls-bin");
    let (files, _) = certificates(&dir.0, "switchboard test ca");
    let redis = RedisServer::tls_with(&files, &["--requirepass", "tls-pw"]);
    let url = format!("rediss://:tls-pw@127.0.0.1:{}/#insecure", redis.port());
    let (_p, ws_url, _rx) = switchboard_tests::cli::spawn(
        Path::new(BINARY),
        &[
            "--listen",
            "127.0.0.1:0",
            "--redis",
            &url,
            "--allow-anonymous",
        ],
        &[],
    );
    round_trip(&ws_url, "chat:tls-bin").await;
}

#[tokio::test]
async fn the_binary_checks_rediss_against_its_redis_ca_file() {
    let dir = temp_dir("tls-ca");
    let (files, _) = certificates(&dir.0, "switchboard test ca");
    let redis = RedisServer::tls_with(&files, &["--requirepass", "tls-pw"]);
    // No `#insecure`: the certificate is checked against the given CA.
    let url = format!("rediss://:tls-pw@127.0.0.1:{}/", redis.port());
    let ca = files.ca.to_str().expect("utf-8 path");
    let (_p, ws_url, _rx) = switchboard_tests::cli::spawn(
        Path::new(BINARY),
        &[
            "--listen",
            "127.0.0.1:0",
            "--redis",
            &url,
            "--redis-ca",
            ca,
            "--allow-anonymous",
        ],
        &[],
    );
    round_trip(&ws_url, "chat:tls-ca").await;
}

/// Runs the binary expecting it to stop at once; returns its stderr.
fn fails_to_start(args: &[&str]) -> String {
    let mut child = std::process::Command::new(BINARY)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the binary did not stop: {args:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success(), "{args:?} started");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    err
}

#[tokio::test]
async fn a_missing_or_non_pem_redis_ca_file_is_a_clear_error() {
    let dir = temp_dir("tls-bad-ca");
    let (files, _) = certificates(&dir.0, "switchboard test ca");
    let redis = RedisServer::tls_with(&files, &[]);
    let url = format!("rediss://127.0.0.1:{}/", redis.port());
    let missing = dir.0.join("nope.pem");
    let missing = missing.to_str().expect("utf-8 path");
    let err = fails_to_start(&[
        "--listen",
        "127.0.0.1:0",
        "--redis",
        &url,
        "--redis-ca",
        missing,
    ]);
    assert!(err.contains(&format!("--redis-ca {missing}")), "{err}");
    assert!(err.contains("No such file"), "{err}");
    let garbage = dir.0.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let garbage = garbage.to_str().expect("utf-8 path");
    let err = fails_to_start(&[
        "--listen",
        "127.0.0.1:0",
        "--redis",
        &url,
        "--redis-ca",
        garbage,
    ]);
    assert!(err.contains(&format!("--redis-ca {garbage}")), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");
}
