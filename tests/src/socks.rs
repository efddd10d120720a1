//! A SOCKSv5 client (RFC 1928) carrying an STA ticket, over TLS or plain
//! TCP, as a Citrix client does towards the gateway.
//!
//! The exchange: greeting `05 02 00 02` (no authentication, or
//! username/password), the server's choice `05 00`, then CONNECT with ATYP
//! `03` (domain) whose text is the ticket (`;40;STA01;…`) and port 1494, then
//! the reply `05 REP 00 ATYP BND.ADDR BND.PORT`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::TIMEOUT;

/// The ICA detect string a worker sends first: `7F 7F "ICA" 00`.
pub const ICA_DETECT: [u8; 6] = [0x7F, 0x7F, 0x49, 0x43, 0x41, 0x00];

/// SOCKS reply `00`: succeeded.
pub const REPLY_SUCCEEDED: u8 = 0x00;
/// SOCKS reply `01`: general failure (overload, control plane, STA down).
pub const REPLY_GENERAL_FAILURE: u8 = 0x01;
/// SOCKS reply `02`: not allowed by the ruleset (the ticket is refused).
pub const REPLY_NOT_ALLOWED: u8 = 0x02;
/// SOCKS reply `05`: connection refused (by the worker).
pub const REPLY_CONNECTION_REFUSED: u8 = 0x05;

/// The ICA port a client puts in its CONNECT.
pub const ICA_PORT: u16 = 1_494;

/// A TLS stream to the gateway.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A rustls client configuration that trusts only the PEM certificate(s)
/// in `cert_pem` (the gateway's self-signed certificate,
/// `<data_dir>/tls/gateway.crt`).
pub fn trusting(cert_pem: &Path) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(cert_pem)
        .unwrap_or_else(|error| panic!("read {}: {error}", cert_pem.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    assert!(
        !roots.is_empty(),
        "no certificate in {}",
        cert_pem.display()
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// TCP to `gateway`, reads and writes bounded by [`TIMEOUT`].
pub fn connect_plain(gateway: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect_timeout(&gateway, TIMEOUT)
        .unwrap_or_else(|error| panic!("connect {gateway}: {error}"));
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    tcp
}

/// TLS to `gateway` as `localhost` (the name in the generated
/// certificate). The handshake completes before this returns, so a
/// certificate the client does not trust fails here.
pub fn connect_tls(gateway: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> TlsStream {
    let mut tcp = connect_plain(gateway);
    let name = ServerName::try_from("localhost").unwrap();
    let mut connection = rustls::ClientConnection::new(tls.clone(), name).unwrap();
    while connection.is_handshaking() {
        connection
            .complete_io(&mut tcp)
            .unwrap_or_else(|error| panic!("tls handshake with {gateway}: {error}"));
    }
    rustls::StreamOwned::new(connection, tcp)
}

/// The greeting `05 02 00 02`; asserts the answer `05 00` (no
/// authentication chosen).
pub fn greet(stream: &mut impl ReadWrite) {
    stream.write_all(&[0x05, 0x02, 0x00, 0x02]).unwrap();
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).unwrap();
    assert_eq!(choice, [0x05, 0x00], "method selection");
}

/// CONNECT with ATYP `03` = `ticket`, port [`ICA_PORT`]; returns the REP
/// code of the reply, which is read whole (any ATYP).
pub fn connect(stream: &mut impl ReadWrite, ticket: &str) -> u8 {
    let len = u8::try_from(ticket.len()).expect("a ticket fits a SOCKS domain");
    let mut request = vec![0x05, 0x01, 0x00, 0x03, len];
    request.extend_from_slice(ticket.as_bytes());
    request.extend_from_slice(&ICA_PORT.to_be_bytes());
    stream.write_all(&request).unwrap();
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).unwrap();
    assert_eq!((head[0], head[2]), (0x05, 0x00), "reply header {head:02x?}");
    let address_len = match head[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).unwrap();
            usize::from(len[0])
        }
        atyp => panic!("reply with ATYP {atyp:#04x}"),
    };
    let mut rest = vec![0u8; address_len + 2];
    stream.read_exact(&mut rest).unwrap();
    head[1]
}

/// [`greet`] then [`connect`]: the REP code.
pub fn launch(stream: &mut impl ReadWrite, ticket: &str) -> u8 {
    greet(stream);
    connect(stream, ticket)
}

/// After a success reply: reads the worker's [`ICA_DETECT`], then sends
/// `payload` and asserts it comes back unchanged (the worker echoes).
pub fn expect_detect_and_echo(stream: &mut impl ReadWrite, payload: &[u8]) {
    let mut detect = [0u8; ICA_DETECT.len()];
    stream.read_exact(&mut detect).unwrap();
    assert_eq!(detect, ICA_DETECT, "the worker speaks first");
    stream.write_all(payload).unwrap();
    let mut echoed = vec![0u8; payload.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, payload, "the worker's echo");
}

/// After a refusal: asserts the gateway closes the connection (end of
/// stream, or a TLS stream cut without `close_notify`) within [`TIMEOUT`]
/// without sending anything more.
pub fn expect_closed(stream: &mut impl ReadWrite) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("bytes after a refusal: {byte:02x?}"),
        Err(error) => assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "the gateway closes after a refusal, got {error}"
        ),
    }
}

/// A byte stream both ways: a [`TcpStream`] or a [`TlsStream`].
pub trait ReadWrite: Read + Write {}

impl<T: Read + Write> ReadWrite for T {}
