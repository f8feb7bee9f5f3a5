//! TLS for `tollguard serve` (rustls with ring), when a certificate and key are configured; and
//! for the server's own HTTPS requests (webhooks, Kamailio's JSON-RPC at an `https://` address).

use anyhow::{anyhow, Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A TLS acceptor from PEM files (the certificate chain, and a PKCS#8, PKCS#1 or SEC1 key).
pub fn acceptor(cert: &Path, key_file: &Path) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: not a PEM certificate chain ({e})", cert.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| anyhow!("{}: no PEM private key ({e})", key_file.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("{} and {}: {e}", cert.display(), key_file.display()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener that hands the server connections whose TLS handshake is complete. Handshakes
/// run side by side, each given 5 s: a client that stalls in its handshake holds up no one. At
/// most [`HANDSHAKES`] at a time: beyond that, new connections wait in the kernel's backlog
/// (many idle connections cannot exhaust the process's file descriptors).
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    addr: std::net::SocketAddr,
}

/// TLS handshakes in progress at most.
pub const HANDSHAKES: usize = 256;

impl TlsListener {
    /// Accepts on `tcp`, completing handshakes with `acceptor` (on the current runtime).
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                // Until the listener is dropped (the server stopped): then the port is let go.
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    _ = tx.closed() => break,
                };
                let Ok((tcp, addr)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let done = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await;
                    drop(slot);
                    if let Ok(Ok(tls)) = done {
                        let _ = tx.send((tls, addr)).await;
                    }
                });
            }
        });
        Ok(TlsListener { ready, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended (it never does while the listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// TLS settings for the server's own HTTPS requests: Mozilla's root certificates (the
/// `webpki-roots` crate) and, when given, every certificate of a PEM file (a private CA, or a
/// receiver's self-signed certificate). The settings are made once per file (and once without).
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<tokio_rustls::rustls::ClientConfig>> {
    static DEFAULT: std::sync::OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> = std::sync::OnceLock::new();
    let make = |extra: &[CertificateDer<'static>]| -> Result<Arc<tokio_rustls::rustls::ClientConfig>> {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for c in extra {
            roots.add(c.clone()).map_err(|e| anyhow!("not a usable CA certificate ({e})"))?;
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    };
    match extra_ca {
        None => {
            if let Some(c) = DEFAULT.get() {
                return Ok(c.clone());
            }
            let c = make(&[])?;
            Ok(DEFAULT.get_or_init(|| c).clone())
        }
        Some(path) => {
            // Read once per file (at start, when the configuration is checked).
            static BY_FILE: std::sync::Mutex<
                Option<
                    std::collections::HashMap<std::path::PathBuf, Arc<tokio_rustls::rustls::ClientConfig>>,
                >,
            > = std::sync::Mutex::new(None);
            if let Some(c) = BY_FILE.lock().expect("tls cache lock").get_or_insert_default().get(path) {
                return Ok(c.clone());
            }
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow!("{}: not PEM certificates ({e})", path.display()))?;
            if certs.is_empty() {
                return Err(anyhow!("{}: no certificate in it", path.display()));
            }
            let c = make(&certs).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            BY_FILE
                .lock()
                .expect("tls cache lock")
                .get_or_insert_default()
                .insert(path.to_path_buf(), c.clone());
            Ok(c)
        }
    }
}
