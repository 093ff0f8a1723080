//! In-binary TLS: the certificate store, its reload on SIGHUP, and the
//! TLS counters. The per-connection byte moving lives with the loop
//! (`event_loop/tls_io.rs`); the engine never sees TLS, only plaintext.
//!
//! One [`TlsAcceptor`] is made at start and cloned into every loop that
//! accepts: the rustls `ServerConfig` is shared read-only, and the
//! certificate it serves sits behind one lock inside its resolver, so a
//! reload swaps it for every loop (and every thread) at once. rustls asks
//! the resolver once per ClientHello: new handshakes get the new
//! certificate, open connections keep the keys they agreed on.

use crate::engine::ExtraMetrics;
use log::{info, warn};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::UnbufferedServerConnection;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The only application protocol offered in ALPN: the server speaks
/// HTTP/1.1 (and WebSocket over it), not h2.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Plaintext encrypted at once for one connection: the driver encrypts
/// only once the previous records are out, so the records a full socket
/// leaves with a connection are at most this plus record overhead.
pub(crate) const TLS_OUTPUT_LIMIT: usize = 64 * 1024;

/// The certificate chain and key files (`--tls-cert`, `--tls-key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM, the server's certificate first, then its chain.
    pub cert: PathBuf,
    /// PEM, PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

/// Shared by every loop: the rustls configuration, the swappable
/// certificate and the counters.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    metrics: Arc<TlsMetrics>,
}

impl TlsAcceptor {
    /// Reads and checks the certificate and key; an error names the file
    /// and what is wrong with it (the binary then exits 2).
    pub fn load(files: TlsFiles) -> Result<TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load_certified_key(&files, &provider)?;
        let store = Arc::new(CertStore {
            files,
            provider: Arc::clone(&provider),
            current: Mutex::new(Arc::new(key)),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&store) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(TlsAcceptor {
            config: Arc::new(config),
            store,
            metrics: Arc::new(TlsMetrics::default()),
        })
    }

    /// A new connection's TLS state, or None if rustls refuses to make one
    /// (it does not for a server config that loaded).
    pub(crate) fn accept(&self) -> Option<UnbufferedServerConnection> {
        match UnbufferedServerConnection::new(Arc::clone(&self.config)) {
            Ok(conn) => Some(conn),
            Err(e) => {
                warn!("TLS: cannot start a connection: {e}");
                None
            }
        }
    }

    /// SIGHUP: reads the files again; on success new handshakes use them,
    /// on failure the old certificate stays and the reason is logged.
    pub fn reload(&self) {
        match load_certified_key(&self.store.files, &self.store.provider) {
            Ok(key) => {
                let mut current = self
                    .store
                    .current
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                *current = Arc::new(key);
                self.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
                info!(
                    "SIGHUP: reloaded the TLS certificate from {}",
                    self.store.files.cert.display()
                );
            }
            Err(e) => {
                self.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
                warn!("SIGHUP: TLS certificate not reloaded, keeping the old one: {e}");
            }
        }
    }

    pub(crate) fn metrics(&self) -> &Arc<TlsMetrics> {
        &self.metrics
    }
}

/// The certificate being served, swapped whole by a reload.
#[derive(Debug)]
struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Mutex<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(Arc::clone(&current))
    }
}

fn load_certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let cert_pem = read(&files.cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", files.cert.display()));
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: no usable PEM private key ({e})", files.key.display()))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(certs, key);
    certified.keys_match().map_err(|e| {
        format!(
            "{} does not match {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(certified)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Why a TLS handshake did not complete, as `/metrics` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// Not TLS, or broken TLS: garbage, plain HTTP, a malformed or
    /// out-of-order message.
    BadMessage,
    /// TLS, but nothing in common: versions, ciphers, ALPN.
    Incompatible,
    /// The client sent a fatal alert (often: it does not trust us).
    AlertReceived,
    /// The client closed the connection mid-handshake.
    Eof,
    /// The handshake timeout (or shutdown) ended it.
    Timeout,
    /// Anything else rustls refused.
    Other,
}

const FAILURE_KINDS: [(HandshakeFailure, &str); 6] = [
    (HandshakeFailure::BadMessage, "bad_message"),
    (HandshakeFailure::Incompatible, "incompatible"),
    (HandshakeFailure::AlertReceived, "alert_received"),
    (HandshakeFailure::Eof, "eof"),
    (HandshakeFailure::Timeout, "timeout"),
    (HandshakeFailure::Other, "other"),
];

impl HandshakeFailure {
    pub(crate) fn of(error: &rustls::Error) -> HandshakeFailure {
        use rustls::Error as E;
        match error {
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::DecryptError => HandshakeFailure::BadMessage,
            E::PeerIncompatible(_) | E::NoApplicationProtocol => HandshakeFailure::Incompatible,
            E::AlertReceived(_) => HandshakeFailure::AlertReceived,
            _ => HandshakeFailure::Other,
        }
    }

    fn index(self) -> usize {
        FAILURE_KINDS
            .iter()
            .position(|(kind, _)| *kind == self)
            .unwrap_or(FAILURE_KINDS.len() - 1)
    }
}

/// TLS counters, shared by every loop (atomics: one per process).
#[derive(Debug, Default)]
pub(crate) struct TlsMetrics {
    handshakes: AtomicU64,
    failures: [AtomicU64; FAILURE_KINDS.len()],
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

impl TlsMetrics {
    pub(crate) fn handshake_done(&self) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_failed(&self, kind: HandshakeFailure) {
        if let Some(counter) = self.failures.get(kind.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ExtraMetrics for TlsMetrics {
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP chat_tls_handshakes_total TLS handshakes completed.\n\
             # TYPE chat_tls_handshakes_total counter\n\
             chat_tls_handshakes_total {}",
            self.handshakes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP chat_tls_handshake_failures_total TLS handshakes that did not complete, by kind.\n\
             # TYPE chat_tls_handshake_failures_total counter"
        );
        for ((_, name), counter) in FAILURE_KINDS.iter().zip(&self.failures) {
            let _ = writeln!(
                out,
                "chat_tls_handshake_failures_total{{kind=\"{name}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP chat_tls_reloads_total Certificate reloads on SIGHUP, by result.\n\
             # TYPE chat_tls_reloads_total counter\n\
             chat_tls_reloads_total{{result=\"ok\"}} {}\n\
             chat_tls_reloads_total{{result=\"failed\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_metrics_are_prometheus_text() {
        let m = TlsMetrics::default();
        m.handshake_done();
        m.handshake_failed(HandshakeFailure::Timeout);
        m.handshake_failed(HandshakeFailure::of(&rustls::Error::NoApplicationProtocol));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("\nchat_tls_handshakes_total 1\n"), "{out}");
        assert!(out.contains("chat_tls_handshake_failures_total{kind=\"timeout\"} 1\n"));
        assert!(out.contains("chat_tls_handshake_failures_total{kind=\"incompatible\"} 1\n"));
        assert!(out.contains("chat_tls_handshake_failures_total{kind=\"eof\"} 0\n"));
        assert!(out.contains("chat_tls_reloads_total{result=\"failed\"} 0\n"));
        for line in out.lines() {
            assert!(
                line.starts_with('#') || line.split(' ').count() == 2,
                "{line}"
            );
        }
    }
}
