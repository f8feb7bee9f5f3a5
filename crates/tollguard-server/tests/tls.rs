//! `tollguard serve` over TLS, with a certificate made by openssl for the test.

use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_a_configured_certificate() {
    let dir = common::temp_dir("tls");
    let Some((cert, key)) = common::test_cert(&dir) else { return };
    let rater = common::rater();
    let opts = tollguard_server::Options {
        database: dir.join("tg.db"),
        tls: Some((cert.clone(), key.clone())),
        ..Default::default()
    };
    let server =
        tollguard_server::Server::start(rater, tollguard_engine::policy::Policy::builtin(), opts).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stop_rx.await;
    }));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(pem_cert(&cert)).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let healthz = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tls.read_to_string(&mut out).await.unwrap();
        out
    };
    let out = healthz().await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("ok\n"), "{out}");
    // Three clients that connect and never start their handshake (each is given 5 s) do not
    // hold up the next one: handshakes run side by side.
    let mut stalled = vec![];
    for _ in 0..3 {
        stalled.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(5), healthz())
        .await
        .expect("served while three handshakes stall (one at a time would take 15 s)");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    drop(stalled);
    // Plain HTTP on the TLS port gets no answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), plain.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..n]).contains("200"));
    let _ = stop_tx.send(());
    serving.await.unwrap().unwrap();
}

fn pem_cert(path: &Path) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path).unwrap()
}
