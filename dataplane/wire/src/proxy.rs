//! PROXY protocol version 2 header (HAProxy's PROXY protocol spec, §2.2):
//! how the data plane tells the control plane's web endpoint who the
//! client is when it forwards an HTTP connection to it over a local socket.
//!
//! ```text
//! 0   12  signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
//! 12   1  version (high nibble, 2) | command (low nibble: 0 LOCAL, 1 PROXY)
//! 13   1  family (high nibble: 0 UNSPEC, 1 INET, 2 INET6) | transport (low: 0 UNSPEC, 1 STREAM)
//! 14   2  length of what follows (big-endian)
//! 16   n  addresses (INET: src 4, dst 4, src port 2, dst port 2; INET6: 16, 16, 2, 2),
//!         then TLVs: type u8, length u16 BE, value
//! ```
//!
//! Gatehouse decides: it sends `PROXY` over `STREAM` with the client's and
//! the listener's addresses, and a `PP2_TYPE_SSL` TLV (client flag
//! `PP2_CLIENT_SSL`, verify 0) when the client spoke TLS. The decoder
//! accepts what the spec allows (LOCAL, UNSPEC, unknown TLVs are skipped)
//! but refuses a header longer than [`MAX_HEADER`] bytes, a wrong version,
//! a mixed address family or a TLV that runs past the header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Progress;

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Bytes before the variable part.
pub const FIXED_LEN: usize = 16;

/// The longest header this decoder accepts (fixed part included).
pub const MAX_HEADER: usize = 512;

/// TLV type of the TLS information block.
pub const PP2_TYPE_SSL: u8 = 0x20;

/// Client flag: the client connected over TLS.
pub const PP2_CLIENT_SSL: u8 = 0x01;

const VERSION_2: u8 = 0x20;
const COMMAND_LOCAL: u8 = 0x00;
const COMMAND_PROXY: u8 = 0x01;
const FAMILY_UNSPEC: u8 = 0x00;
const FAMILY_INET: u8 = 0x10;
const FAMILY_INET6: u8 = 0x20;
const TRANSPORT_UNSPEC: u8 = 0x00;
const TRANSPORT_STREAM: u8 = 0x01;

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The connection's original addresses; `None` for a LOCAL header (a
    /// connection of the proxy itself, e.g. a health check) or an UNSPEC
    /// family.
    pub addresses: Option<Addresses>,
    /// Whether a `PP2_TYPE_SSL` TLV says the client used TLS.
    pub tls: bool,
}

/// The client (source) and the address it connected to (destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// Where the connection came from: the client.
    pub source: SocketAddr,
    /// Where it arrived: the proxy's listener.
    pub destination: SocketAddr,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The first 12 bytes are not the v2 signature.
    #[error("not a proxy protocol v2 signature")]
    BadSignature,
    /// The version nibble is not 2.
    #[error("unsupported proxy protocol version {0:#x}")]
    BadVersion(u8),
    /// The command nibble is neither LOCAL nor PROXY.
    #[error("unknown proxy protocol command {0:#x}")]
    BadCommand(u8),
    /// The family/transport byte names nothing this decoder knows.
    #[error("unknown address family or transport {0:#04x}")]
    BadFamily(u8),
    /// The header is longer than [`MAX_HEADER`].
    #[error("proxy header of {0} bytes exceeds {MAX_HEADER}")]
    TooLong(usize),
    /// The length is shorter than the address block of the family.
    #[error("proxy header length {0} is shorter than its addresses")]
    ShortAddresses(usize),
    /// A TLV runs past the end of the header.
    #[error("proxy header tlv runs past the header")]
    TruncatedTlv,
    /// The source and destination addresses are of different families
    /// (encoder only).
    #[error("source and destination are of different address families")]
    MixedFamilies,
}

/// Reads a header from the start of `input`; `consumed` is its length,
/// the first byte of the proxied stream follows.
///
/// # Errors
/// [`ProxyError`] for anything but a well-formed v2 header.
pub fn decode(input: &[u8]) -> Result<Progress<ProxyHeader>, ProxyError> {
    let prefix = input.len().min(SIGNATURE.len());
    if input.get(..prefix) != SIGNATURE.get(..prefix) {
        return Err(ProxyError::BadSignature);
    }
    let Some(fixed) = input.get(..FIXED_LEN) else {
        return Ok(Progress::NeedMore {
            at_least: FIXED_LEN,
        });
    };
    let version_command = fixed[12];
    if version_command & 0xF0 != VERSION_2 {
        return Err(ProxyError::BadVersion(version_command >> 4));
    }
    let command = version_command & 0x0F;
    if command != COMMAND_LOCAL && command != COMMAND_PROXY {
        return Err(ProxyError::BadCommand(command));
    }
    let family = fixed[13];
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let total = FIXED_LEN + len;
    if total > MAX_HEADER {
        return Err(ProxyError::TooLong(total));
    }
    let Some(body) = input.get(FIXED_LEN..total) else {
        return Ok(Progress::NeedMore { at_least: total });
    };
    let (addresses, tlvs) = match family {
        f if f == FAMILY_UNSPEC | TRANSPORT_UNSPEC => (None, &body[..0]),
        f if f == FAMILY_INET | TRANSPORT_STREAM => {
            let block = body.get(..12).ok_or(ProxyError::ShortAddresses(len))?;
            let ip =
                |at: usize| Ipv4Addr::new(block[at], block[at + 1], block[at + 2], block[at + 3]);
            let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
            let addresses = Addresses {
                source: SocketAddr::new(IpAddr::V4(ip(0)), port(8)),
                destination: SocketAddr::new(IpAddr::V4(ip(4)), port(10)),
            };
            (Some(addresses), &body[12..])
        }
        f if f == FAMILY_INET6 | TRANSPORT_STREAM => {
            let block = body.get(..36).ok_or(ProxyError::ShortAddresses(len))?;
            let ip = |at: usize| {
                let mut octets = [0; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
            let addresses = Addresses {
                source: SocketAddr::new(IpAddr::V6(ip(0)), port(32)),
                destination: SocketAddr::new(IpAddr::V6(ip(16)), port(34)),
            };
            (Some(addresses), &body[36..])
        }
        other => return Err(ProxyError::BadFamily(other)),
    };
    let tls = tls_flag(tlvs)?;
    let addresses = if command == COMMAND_LOCAL {
        None
    } else {
        addresses
    };
    Ok(Progress::Done {
        value: ProxyHeader { addresses, tls },
        consumed: total,
    })
}

/// Walks the TLVs; whether an SSL TLV carries the client-SSL flag.
fn tls_flag(mut tlvs: &[u8]) -> Result<bool, ProxyError> {
    let mut tls = false;
    while !tlvs.is_empty() {
        let [kind, high, low, ref rest @ ..] = *tlvs else {
            return Err(ProxyError::TruncatedTlv);
        };
        let len = usize::from(u16::from_be_bytes([high, low]));
        let value = rest.get(..len).ok_or(ProxyError::TruncatedTlv)?;
        if kind == PP2_TYPE_SSL {
            tls |= value
                .first()
                .is_some_and(|client| client & PP2_CLIENT_SSL != 0);
        }
        tlvs = &rest[len..];
    }
    Ok(tls)
}

/// Appends a `PROXY`/`STREAM` header for `addresses` (and the SSL TLV when
/// `tls`) to `out`.
///
/// # Errors
/// [`ProxyError::MixedFamilies`] when source and destination differ in
/// family; `out` is then unchanged.
pub fn encode(addresses: Addresses, tls: bool, out: &mut Vec<u8>) -> Result<(), ProxyError> {
    let tlv: &[u8] = if tls {
        // Type, length 5, client flags, verify (u32, 0 = verified or none).
        &[PP2_TYPE_SSL, 0x00, 0x05, PP2_CLIENT_SSL, 0, 0, 0, 0]
    } else {
        &[]
    };
    let (family, block_len) = match (addresses.source, addresses.destination) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => (FAMILY_INET, 12),
        (SocketAddr::V6(_), SocketAddr::V6(_)) => (FAMILY_INET6, 36),
        _ => return Err(ProxyError::MixedFamilies),
    };
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_2 | COMMAND_PROXY);
    out.push(family | TRANSPORT_STREAM);
    let len = u16::try_from(block_len + tlv.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    match (addresses.source, addresses.destination) {
        (SocketAddr::V4(source), SocketAddr::V4(destination)) => {
            out.extend_from_slice(&source.ip().octets());
            out.extend_from_slice(&destination.ip().octets());
        }
        (SocketAddr::V6(source), SocketAddr::V6(destination)) => {
            out.extend_from_slice(&source.ip().octets());
            out.extend_from_slice(&destination.ip().octets());
        }
        _ => {}
    }
    out.extend_from_slice(&addresses.source.port().to_be_bytes());
    out.extend_from_slice(&addresses.destination.port().to_be_bytes());
    out.extend_from_slice(tlv);
    Ok(())
}

/// Entry point for the fuzz target `fuzz/fuzz_targets/proxy.rs`: decode
/// arbitrary bytes, check the progress contract, and re-encode a decoded
/// PROXY header to the same value.
#[cfg(any(fuzzing, test))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod fuzz {
    use super::*;

    /// Fuzzes [`decode`].
    pub fn proxy(data: &[u8]) {
        match decode(data) {
            Ok(Progress::Done { value, consumed }) => {
                assert!((FIXED_LEN..=MAX_HEADER).contains(&consumed));
                assert!(consumed <= data.len());
                if let Some(addresses) = value.addresses {
                    let mut out = Vec::new();
                    encode(addresses, value.tls, &mut out).unwrap();
                    let again = decode(&out).unwrap().done().unwrap();
                    assert_eq!(again.0.addresses, Some(addresses));
                    assert_eq!(again.0.tls, value.tls);
                }
            }
            Ok(Progress::NeedMore { at_least }) => assert!(at_least > data.len()),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4() -> Addresses {
        Addresses {
            source: "192.0.2.7:50123".parse().unwrap(),
            destination: "127.0.0.1:8443".parse().unwrap(),
        }
    }

    #[test]
    fn an_ipv4_header_matches_its_byte_vector() {
        let mut out = Vec::new();
        encode(v4(), false, &mut out).unwrap();
        let mut expected = SIGNATURE.to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
        expected.extend_from_slice(&[192, 0, 2, 7, 127, 0, 0, 1]);
        expected.extend_from_slice(&[0xC3, 0xCB, 0x20, 0xFB]);
        assert_eq!(out, expected);
        let (header, consumed) = decode(&out).unwrap().done().unwrap();
        assert_eq!(consumed, out.len());
        assert_eq!(
            header,
            ProxyHeader {
                addresses: Some(v4()),
                tls: false
            }
        );
    }

    #[test]
    fn an_ipv6_header_with_the_tls_flag_round_trips() {
        let addresses = Addresses {
            source: "[2001:db8::1]:40000".parse().unwrap(),
            destination: "[::1]:443".parse().unwrap(),
        };
        let mut out = Vec::new();
        encode(addresses, true, &mut out).unwrap();
        assert_eq!(out.len(), FIXED_LEN + 36 + 8);
        let (header, _) = decode(&out).unwrap().done().unwrap();
        assert_eq!(header.addresses, Some(addresses));
        assert!(header.tls);
    }

    #[test]
    fn every_strict_prefix_asks_for_more_and_the_rest_is_not_consumed() {
        let mut out = Vec::new();
        encode(v4(), true, &mut out).unwrap();
        for end in 0..out.len() {
            match decode(&out[..end]).unwrap() {
                Progress::NeedMore { at_least } => assert!(at_least > end, "prefix {end}"),
                Progress::Done { .. } => panic!("prefix {end} decoded"),
            }
        }
        let len = out.len();
        out.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(decode(&out).unwrap().done().unwrap().1, len);
    }

    #[test]
    fn refuses_what_is_not_a_v2_header() {
        assert_eq!(decode(b"GET / HTTP/1.1"), Err(ProxyError::BadSignature));
        assert_eq!(decode(b"PROXY TCP4 "), Err(ProxyError::BadSignature));
        let mut out = Vec::new();
        encode(v4(), false, &mut out).unwrap();
        let mut bad = out.clone();
        bad[12] = 0x11;
        assert_eq!(decode(&bad), Err(ProxyError::BadVersion(1)));
        let mut bad = out.clone();
        bad[12] = 0x2F;
        assert_eq!(decode(&bad), Err(ProxyError::BadCommand(0xF)));
        let mut bad = out.clone();
        bad[13] = 0x31;
        assert_eq!(decode(&bad), Err(ProxyError::BadFamily(0x31)));
        let mut bad = out.clone();
        bad[14..16].copy_from_slice(&4_u16.to_be_bytes());
        assert_eq!(decode(&bad), Err(ProxyError::ShortAddresses(4)));
        let mut bad = out;
        bad[14..16].copy_from_slice(&1_000_u16.to_be_bytes());
        assert_eq!(decode(&bad), Err(ProxyError::TooLong(1_016)));
    }

    #[test]
    fn a_tlv_running_past_the_header_is_refused_and_unknown_ones_skipped() {
        let mut out = Vec::new();
        encode(v4(), false, &mut out).unwrap();
        let mut with_tlvs = out.clone();
        with_tlvs.extend_from_slice(&[0x04, 0x00, 0x02, 0xAA, 0xBB]);
        with_tlvs[14..16].copy_from_slice(&17_u16.to_be_bytes());
        let (header, _) = decode(&with_tlvs).unwrap().done().unwrap();
        assert!(!header.tls);
        let mut truncated = out;
        truncated.extend_from_slice(&[PP2_TYPE_SSL, 0x00, 0x09, 0x01]);
        truncated[14..16].copy_from_slice(&16_u16.to_be_bytes());
        assert_eq!(decode(&truncated), Err(ProxyError::TruncatedTlv));
    }

    #[test]
    fn a_local_header_carries_no_addresses() {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        let (header, consumed) = decode(&out).unwrap().done().unwrap();
        assert_eq!(consumed, FIXED_LEN);
        assert_eq!(header.addresses, None);
    }

    #[test]
    fn mixed_families_are_not_encoded() {
        let addresses = Addresses {
            source: "192.0.2.7:1".parse().unwrap(),
            destination: "[::1]:2".parse().unwrap(),
        };
        let mut out = Vec::new();
        assert_eq!(
            encode(addresses, false, &mut out),
            Err(ProxyError::MixedFamilies)
        );
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            fuzz::proxy(&data);
        }

        #[test]
        fn never_panics_after_a_valid_signature(rest in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut data = SIGNATURE.to_vec();
            data.extend_from_slice(&rest);
            fuzz::proxy(&data);
        }
    }
}
