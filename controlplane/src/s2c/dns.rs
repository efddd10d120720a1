//! A small authoritative DNS responder for the registered client names
//! (`[server_to_client] dns_listen`): `A` records of the machine names
//! access clients registered (`POST /access/v1/fqdn`) -> their active IIP,
//! `NXDOMAIN` for any other name (RFC 1035).
//!
//! The codec is sans-IO: [`decode_query`] reads one UDP datagram,
//! [`encode_response`] writes the answer. Only standard queries with one
//! question are answered; a name using compression pointers (never in a
//! query) is a format error. Anything that does not hold a 12-byte header
//! is dropped unanswered.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::service::ServerToClient;

/// Largest datagram read (RFC 1035 UDP limit; EDNS answers stay small).
pub const MAX_DATAGRAM: usize = 512;
/// TTL of an answer, in seconds: short, a lease can end at any time.
pub const TTL_SECS: u32 = 30;

const HEADER_BYTES: usize = 12;
const TYPE_A: u16 = 0x0001;
const CLASS_IN: u16 = 0x0001;
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_RD: u16 = 0x0100;
const OPCODE_MASK: u16 = 0x7800;

/// A response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Rcode {
    /// The name exists (with or without an answer of the type asked).
    NoError = 0,
    /// The query is malformed.
    FormErr = 1,
    /// The name does not exist.
    NxDomain = 3,
    /// Not a standard query.
    NotImp = 4,
}

/// One decoded question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The query id.
    pub id: u16,
    /// Whether recursion was desired (echoed).
    pub recursion_desired: bool,
    /// The name asked for, lowercase, without the trailing dot.
    pub name: String,
    /// The type asked for.
    pub qtype: u16,
    /// The class asked for.
    pub qclass: u16,
    /// The question's bytes (name, type, class), echoed in the answer.
    pub question: Vec<u8>,
}

/// Why a datagram is not a query this responder answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Shorter than a header: dropped.
    #[error("datagram shorter than a dns header")]
    Short,
    /// A header, but not an answerable query: answer with this code.
    #[error("query refused with rcode {rcode:?}")]
    Refused {
        /// The query id.
        id: u16,
        /// The code to answer with.
        rcode: Rcode,
    },
}

/// Reads one query datagram.
///
/// Errors: [`DnsError::Short`] (drop it), [`DnsError::Refused`] (answer
/// with its code: a response, a non-standard opcode, not one question, a
/// malformed name).
pub fn decode_query(datagram: &[u8]) -> Result<Query, DnsError> {
    let header = datagram.get(..HEADER_BYTES).ok_or(DnsError::Short)?;
    let word = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let id = word(0);
    let flags = word(2);
    let refuse = |rcode| DnsError::Refused { id, rcode };
    if flags & FLAG_QR != 0 {
        return Err(refuse(Rcode::FormErr));
    }
    if flags & OPCODE_MASK != 0 {
        return Err(refuse(Rcode::NotImp));
    }
    if word(4) != 1 {
        return Err(refuse(Rcode::FormErr));
    }
    let rest = &datagram[HEADER_BYTES..];
    let mut at = 0;
    let mut labels: Vec<String> = Vec::new();
    let mut name_len = 0;
    loop {
        let len = usize::from(*rest.get(at).ok_or(refuse(Rcode::FormErr))?);
        at += 1;
        if len == 0 {
            break;
        }
        // 0xC0: a compression pointer, 0x40/0x80: reserved label types.
        if len > 63 {
            return Err(refuse(Rcode::FormErr));
        }
        let label = rest.get(at..at + len).ok_or(refuse(Rcode::FormErr))?;
        name_len += len + 1;
        if name_len > 255 {
            return Err(refuse(Rcode::FormErr));
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
    let tail = rest.get(at..at + 4).ok_or(refuse(Rcode::FormErr))?;
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    Ok(Query {
        id,
        recursion_desired: flags & FLAG_RD != 0,
        name: labels.join("."),
        qtype,
        qclass,
        question: rest[..at + 4].to_vec(),
    })
}

/// The answer to `query`: the address of the name (`None`: it does not
/// exist). An existing name asked for another type or class gets no
/// answer record (`NOERROR`, no data).
pub fn encode_response(query: &Query, address: Option<Ipv4Addr>) -> Vec<u8> {
    let rcode = if address.is_some() {
        Rcode::NoError
    } else {
        Rcode::NxDomain
    };
    let answer = address.filter(|_| query.qtype == TYPE_A && query.qclass == CLASS_IN);
    let mut flags = FLAG_QR | FLAG_AA | rcode as u16;
    if query.recursion_desired {
        flags |= FLAG_RD;
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + query.question.len() + 16);
    out.extend_from_slice(&query.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1_u16.to_be_bytes());
    out.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query.question);
    if let Some(ip) = answer {
        // A pointer to the question's name at offset 12.
        out.extend_from_slice(&[0xC0, 0x0C]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL_SECS.to_be_bytes());
        out.extend_from_slice(&4_u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// A header-only refusal with `rcode` for query `id`.
pub fn encode_refusal(id: u16, rcode: Rcode) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(FLAG_QR | rcode as u16).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

/// The answer (if any) to one datagram, given how names resolve.
pub fn answer(datagram: &[u8], resolve: impl FnOnce(&str) -> Option<Ipv4Addr>) -> Option<Vec<u8>> {
    match decode_query(datagram) {
        Ok(query) => Some(encode_response(&query, resolve(&query.name))),
        Err(DnsError::Refused { id, rcode }) => Some(encode_refusal(id, rcode)),
        Err(DnsError::Short) => None,
    }
}

/// Answers queries on `socket` with `s2c`'s registered names, forever.
/// Logs `s2c_dns_listening` once and `s2c_dns_query` (debug) per query.
pub async fn serve(socket: UdpSocket, s2c: ServerToClient) {
    if let Ok(addr) = socket.local_addr() {
        tracing::info!(addr = %addr, "s2c_dns_listening");
    }
    let mut buf = [0_u8; MAX_DATAGRAM];
    loop {
        let (len, peer): (usize, SocketAddr) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(error = %error, "s2c_dns_receive_failed");
                continue;
            }
        };
        let mut found = None;
        let reply = answer(&buf[..len], |name| {
            found = s2c.resolve(name);
            found
        });
        tracing::debug!(peer = %peer, answered = found.is_some(), "s2c_dns_query");
        if let Some(reply) = reply {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// Entry points for the fuzz targets.
#[cfg(any(fuzzing, test))]
pub mod fuzz {
    use std::net::Ipv4Addr;

    /// Answers arbitrary bytes as a query for a name that resolves; never
    /// panics, and an answer always starts with the query's id.
    pub fn query(data: &[u8]) {
        if let Some(reply) = super::answer(data, |_| Some(Ipv4Addr::new(127, 77, 0, 1))) {
            assert_eq!(reply.get(..2), data.get(..2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` of `qtype` with id 0x1234 and RD set.
    pub(crate) fn query_bytes(name: &str, qtype: u16) -> Vec<u8> {
        let mut out = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            out.push(u8::try_from(label.len()).unwrap());
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out
    }

    fn resolve(name: &str) -> Option<Ipv4Addr> {
        (name == "pc1.corp.example").then_some(Ipv4Addr::new(127, 77, 0, 9))
    }

    #[test]
    fn answers_a_registered_name_with_its_address() {
        let query = query_bytes("PC1.corp.example", TYPE_A);
        let reply = answer(&query, resolve).unwrap();
        assert_eq!(&reply[..2], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([reply[2], reply[3]]), 0x8500);
        assert_eq!(&reply[4..8], &[0, 1, 0, 1]);
        assert_eq!(&reply[12..query.len()], &query[12..]);
        assert_eq!(&reply[reply.len() - 4..], &[127, 77, 0, 9]);
        assert_eq!(&reply[query.len()..query.len() + 2], &[0xC0, 0x0C]);
    }

    #[test]
    fn unknown_names_are_nxdomain_and_other_types_no_data() {
        let reply = answer(&query_bytes("other.example", TYPE_A), resolve).unwrap();
        assert_eq!(reply[3] & 0x0F, Rcode::NxDomain as u8);
        assert_eq!(&reply[6..8], &[0, 0]);
        let reply = answer(&query_bytes("pc1.corp.example", 28), resolve).unwrap();
        assert_eq!(reply[3] & 0x0F, Rcode::NoError as u8);
        assert_eq!(&reply[6..8], &[0, 0]);
    }

    #[test]
    fn malformed_queries_are_refused_and_short_ones_dropped() {
        assert_eq!(answer(&[0x12, 0x34, 0x01], resolve), None);
        let mut compressed = query_bytes("pc1.corp.example", TYPE_A);
        compressed[12] = 0xC0;
        let reply = answer(&compressed, resolve).unwrap();
        assert_eq!(reply[3] & 0x0F, Rcode::FormErr as u8);
        let mut response = query_bytes("pc1.corp.example", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(
            answer(&response, resolve).unwrap()[3] & 0x0F,
            Rcode::FormErr as u8
        );
        let mut update = query_bytes("pc1.corp.example", TYPE_A);
        update[2] |= 0x28;
        assert_eq!(
            answer(&update, resolve).unwrap()[3] & 0x0F,
            Rcode::NotImp as u8
        );
    }

    #[test]
    fn every_truncated_query_is_refused_or_dropped_never_misread() {
        let query = query_bytes("pc1.corp.example", TYPE_A);
        for len in 0..query.len() {
            match decode_query(&query[..len]) {
                Err(DnsError::Short) => assert!(len < HEADER_BYTES),
                Err(DnsError::Refused { rcode, .. }) => assert_eq!(rcode, Rcode::FormErr),
                Ok(decoded) => panic!("{len} bytes decoded as {decoded:?}"),
            }
        }
        assert!(decode_query(&query).is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed: u32 = 1;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (seed >> 16) as u8
                })
                .collect();
            fuzz::query(&data);
        }
    }
}
