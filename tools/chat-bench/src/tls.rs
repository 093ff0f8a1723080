//! `wss://` targets: a client connection's socket, plain or under rustls,
//! behind one nonblocking Read/Write so the loop stays the same.
//!
//! The certificate is not checked: the tool only ever aims at loopback
//! (`target.rs`) and measures the server, whatever certificate it has.

use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// A client socket.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

pub struct TlsStream {
    sock: TcpStream,
    conn: ClientConnection,
}

impl Stream {
    /// `sock` as is, or under a new TLS client connection.
    pub fn new(sock: TcpStream, tls: bool) -> io::Result<Stream> {
        if !tls {
            return Ok(Stream::Plain(sock));
        }
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        let conn = ClientConnection::new(client_config(), name).map_err(io::Error::other)?;
        Ok(Stream::Tls(Box::new(TlsStream { sock, conn })))
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &mut t.sock,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Writes TLS records rustls holds (the socket became writable).
    pub fn flush_records(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => t.write_records(),
        }
    }
}

impl TlsStream {
    fn write_records(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Read for Stream {
    /// Plaintext, Ok(0) at the end (close_notify or a bare FIN), or
    /// WouldBlock once the socket is drained.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = match self {
            Stream::Plain(s) => return s.read(buf),
            Stream::Tls(t) => t,
        };
        loop {
            match t.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match t.conn.read_tls(&mut t.sock) {
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            t.conn
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            t.write_records()?;
        }
    }
}

impl Write for Stream {
    /// Encrypts what rustls takes; WouldBlock while earlier records still
    /// wait for the socket (the loop retries on WRITABLE).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let t = match self {
            Stream::Plain(s) => return s.write(buf),
            Stream::Tls(t) => t,
        };
        t.write_records()?;
        if t.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = t.conn.writer().write(buf)?;
        t.write_records()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_records()
    }
}

impl mio::event::Source for Stream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tcp_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tcp_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.tcp_mut().deregister(registry)
    }
}

/// One client configuration for the whole run (TLS 1.3 and 1.2, ALPN
/// http/1.1, no session resumption: every connection a full handshake).
fn client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports TLS 1.3 and 1.2")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            config.resumption = rustls::client::Resumption::disabled();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any certificate, but checks the handshake's signatures (so the
/// server does all the work a real client makes it do).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
