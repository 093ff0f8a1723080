//! TLS test support: a CA and server certificates made in the test (rcgen),
//! written to a temporary directory for `--tls-cert`/`--tls-key`, and a
//! blocking rustls client for HTTPS and wss.

use super::{frame_bytes, parse_frame, Frame, Response, KEY, WAIT};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A test CA that signs server certificates for 127.0.0.1 and localhost.
pub struct TestPki {
    ca_key: KeyPair,
    ca: rcgen::Certificate,
    pub dir: PathBuf,
}

/// A server certificate as files, and its DER (what a client sees).
pub struct ServerCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: Vec<u8>,
}

impl TestPki {
    pub fn new(name: &str) -> TestPki {
        let dir = std::env::temp_dir().join(format!("chat-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "chat test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        TestPki { ca_key, ca, dir }
    }

    /// A new server certificate (a fresh key each time), written as
    /// `NAME.crt` (leaf then CA: a full chain) and `NAME.key`.
    pub fn server_cert(&self, name: &str) -> ServerCert {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let cert_path = self.dir.join(format!("{name}.crt"));
        let key_path = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), self.ca.pem())).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        ServerCert {
            cert_path,
            key_path,
            der: cert.der().to_vec(),
        }
    }

    /// A client that trusts only this CA and offers ALPN http/1.1
    /// (`versions`: None for rustls's defaults, TLS 1.3 and 1.2).
    pub fn client(
        &self,
        versions: Option<&[&'static rustls::SupportedProtocolVersion]>,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider);
        let builder = match versions {
            Some(v) => builder.with_protocol_versions(v).unwrap(),
            None => builder.with_safe_default_protocol_versions().unwrap(),
        };
        let mut config = builder.with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to 127.0.0.1 with the handshake done.
pub fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Tls {
    let tcp = super::connect(addr);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

/// The certificate the server presented (DER).
pub fn peer_cert(tls: &Tls) -> Vec<u8> {
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

/// Reads one response (Content-Length bodies) off a TLS stream.
pub fn read_tls_response(s: &mut Tls, buf: &mut Vec<u8>) -> Response {
    super::read_response(s, buf, false)
}

/// One HTTPS request on a fresh connection.
pub fn https_get(addr: SocketAddr, config: &Arc<ClientConfig>, path: &str) -> Response {
    let mut s = tls_connect(addr, config);
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    read_tls_response(&mut s, &mut Vec::new())
}

/// One value from /metrics over HTTPS.
pub fn tls_metric(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> u64 {
    let body = String::from_utf8(https_get(addr, config, "/metrics").body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

/// How a TLS stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsEnd {
    /// close_notify, then the end.
    CloseNotify,
    /// The TCP end without close_notify.
    Truncated,
    /// Still open after the wait.
    Open,
}

/// A blocking wss client.
pub struct Wss {
    pub s: Tls,
    pub buf: Vec<u8>,
}

impl Wss {
    pub fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, path: &str) -> Wss {
        let mut s = tls_connect(addr, config);
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let resp = read_tls_response(&mut s, &mut buf);
        assert_eq!(resp.status, 101, "{resp:?}");
        Wss { s, buf }
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let bytes = frame_bytes(fin, opcode, payload, Some([0x12, 0x34, 0x56, 0x78]));
        self.s.write_all(&bytes).unwrap();
        self.s.flush().unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, 1, text.as_bytes());
    }

    /// The next frame (panics after the wait).
    pub fn recv(&mut self) -> Frame {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return frame;
            }
            assert!(Instant::now() < deadline, "no frame within the wait");
            super::read_more(&mut self.s, &mut self.buf);
        }
    }

    /// The next data or close frame, skipping pings.
    pub fn recv_data(&mut self) -> Frame {
        loop {
            let f = self.recv();
            if f.opcode != 9 && f.opcode != 10 {
                return f;
            }
        }
    }

    pub fn recv_json(&mut self) -> serde_json::Value {
        self.recv_data().json()
    }

    /// Reads until the stream ends (bounded): how it ended.
    pub fn read_to_end(&mut self, within: Duration) -> TlsEnd {
        read_to_end(&mut self.s, within)
    }
}

/// Reads (and drops) until the TLS stream ends or `within` passes.
pub fn read_to_end(s: &mut Tls, within: Duration) -> TlsEnd {
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return TlsEnd::Open;
        }
        s.sock.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => return TlsEnd::CloseNotify,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return TlsEnd::Truncated,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return TlsEnd::Truncated,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return TlsEnd::Open
            }
            Err(e) => panic!("TLS read: {e}"),
        }
    }
}
