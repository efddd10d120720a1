//! The client side of a gateway launch, for the engine-level gateway tests:
//! a self-signed TLS pair, SOCKSv5 exchanges over any blocking stream.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use gatehouse_engine::tls::{TlsAcceptor, self_signed};
use gatehouse_engine::{
    EngineConfig, EngineHandle, GatewayConfig, GatewayFactory, RedeemerFactory,
};
use gatehouse_wire::socks5::{
    Address, Command, Method, Reply, decode_reply, encode_greeting, encode_request,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::{connect, start};

/// A ticket in the STA text form.
pub const TICKET: &[u8] = b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// A blocking TLS client stream.
pub type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A gateway acceptor for `localhost` and a client config trusting it.
pub fn tls_pair() -> (Arc<TlsAcceptor>, Arc<rustls::ClientConfig>) {
    let generated = self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let acceptor =
        TlsAcceptor::from_pem(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(generated.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(acceptor), Arc::new(client))
}

/// Connects to `addr` and wraps the stream in TLS for `localhost` (the
/// handshake runs with the first write or read).
pub fn tls_connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> TlsClient {
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(config.clone(), name).unwrap();
    rustls::StreamOwned::new(connection, connect(addr))
}

/// Starts a one-listener gateway engine on 127.0.0.1:0.
pub fn start_gateway<F: RedeemerFactory>(
    config: EngineConfig,
    gateway: GatewayConfig,
    redeemers: F,
) -> EngineHandle {
    start(config, GatewayFactory::new(gateway, redeemers))
}

/// The bytes of a SOCKS request.
pub fn request(command: Command, address: Address<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(command, &address, 1494, &mut out).unwrap();
    out
}

/// A CONNECT carrying `ticket` as its domain.
pub fn connect_ticket(ticket: &[u8]) -> Vec<u8> {
    request(Command::Connect, Address::Domain(ticket))
}

/// Client side up to the reply: greeting (no-auth and user/password),
/// method selection `05 00`, then `request`; returns the reply code.
pub fn socks_exchange<S: Read + Write>(stream: &mut S, request: &[u8]) -> Reply {
    let mut greeting = Vec::new();
    encode_greeting(&[Method::NoAuth, Method::UserPass], &mut greeting);
    stream.write_all(&greeting).unwrap();
    let mut selection = [0u8; 2];
    stream.read_exact(&mut selection).unwrap();
    assert_eq!(selection, [0x05, 0x00], "no-auth selected");
    stream.write_all(request).unwrap();
    stream.flush().unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).unwrap();
    decode_reply(&reply).unwrap().done().unwrap().0.0
}

/// A plaintext SOCKS exchange on a fresh connection to `addr`.
pub fn plain_launch(addr: SocketAddr, request: &[u8]) -> (TcpStream, Reply) {
    let mut stream = connect(addr);
    let reply = socks_exchange(&mut stream, request);
    (stream, reply)
}

/// A loopback port with nothing listening.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Writes `payload`, reads the same number of bytes back (an echo worker).
pub fn echo_round<S: Read + Write>(stream: &mut S, payload: &[u8]) -> Vec<u8> {
    stream.write_all(payload).unwrap();
    stream.flush().unwrap();
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).unwrap();
    back
}
