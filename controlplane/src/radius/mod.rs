//! The RADIUS factor (PROTOCOLS.md §8): PAP with Access-Challenge against a
//! RADIUS server, as the gateway's login flow uses it.
//!
//! - [`packet`]: sans-IO framing (RFC 2865 §3, §5), [`Packet::decode`].
//! - [`access`]: sans-IO Access-Request encoding (User-Password hidden per
//!   RFC 2865 §5.2, Message-Authenticator per RFC 3579 §3.2) and response
//!   verification ([`PendingAccess::handle_response`]).
//! - [`client`]: the tokio UDP client ([`RadiusClient`]): timeout,
//!   retransmission of the same datagram, failover across servers.
//! - [`config`]: `[radius]` ([`RadiusSection`]).
//!
//! What it refuses: any response whose Response Authenticator or
//! Message-Authenticator does not verify (with a wrong shared secret every
//! response is refused, and the client reports the mismatch), responses
//! without Message-Authenticator unless configured otherwise (BlastRADIUS,
//! CVE-2024-3596), codes other than Accept, Reject and Challenge. It only
//! speaks PAP: no CHAP, EAP or accounting. It never logs a password or the
//! shared secret.
//!
//! Who calls it: the login flow, as the RADIUS factor.

pub mod access;
pub mod client;
pub mod config;
pub mod packet;

pub use access::{
    AccessRequest, EncodeError, NasIdentity, PendingAccess, Response, ResponseError, ResponseKind,
    ResponsePolicy, SecretError, SharedSecret,
};
pub use client::{ChallengeState, RadiusClient, RadiusError, RadiusOutcome, RadiusSettings};
pub use config::RadiusSection;
pub use packet::{Authenticator, Code, DecodeError, Identifier, Packet};

#[cfg(test)]
mod tests;

/// Entry points for the fuzz targets (also run by the unit tests).
#[cfg(any(fuzzing, test))]
pub mod fuzz {
    use super::access::{message_authenticator, response_authenticator};
    use super::packet::{AUTHENTICATOR_LEN, HEADER_LEN, attribute};
    use super::{
        AccessRequest, Authenticator, Identifier, NasIdentity, Packet, ResponsePolicy, SharedSecret,
    };

    /// Decodes arbitrary bytes as a response to a fixed request, twice: as
    /// received (almost always refused by the authenticator check), and
    /// re-signed with the request's secret so the attribute parsing behind
    /// the checks is reached too. Must not panic.
    pub fn response(data: &[u8]) {
        let Ok(secret) = SharedSecret::new(b"fuzz-secret".to_vec()) else {
            return;
        };
        let nas = NasIdentity {
            identifier: Some("fuzz".to_owned()),
            ip_address: None,
        };
        let request = AccessRequest {
            identifier: Identifier(data.get(1).copied().unwrap_or(0)),
            authenticator: Authenticator([7; AUTHENTICATOR_LEN]),
            user_name: "alice",
            password: b"password",
            nas: &nas,
            state: None,
        };
        let Ok(pending) = request.encode(&secret) else {
            return;
        };
        for require in [false, true] {
            let policy = ResponsePolicy {
                require_message_authenticator: require,
            };
            let _ = pending.handle_response(data, &secret, policy);
        }
        let Ok(packet) = Packet::decode(data) else {
            return;
        };
        let mut signed = packet.as_bytes().to_vec();
        let mac_at = packet
            .attributes()
            .find(|a| a.kind == attribute::MESSAGE_AUTHENTICATOR && a.value.len() == 16)
            .map(|a| a.offset + 2);
        if let Some(at) = mac_at {
            signed[4..HEADER_LEN].copy_from_slice(&[7; AUTHENTICATOR_LEN]);
            signed[at..at + AUTHENTICATOR_LEN].fill(0);
            let mac = message_authenticator(&secret, &signed);
            signed[at..at + AUTHENTICATOR_LEN].copy_from_slice(&mac);
        }
        let auth = response_authenticator(&signed, &Authenticator([7; AUTHENTICATOR_LEN]), &secret);
        signed[4..HEADER_LEN].copy_from_slice(&auth);
        let _ = pending.handle_response(
            &signed,
            &secret,
            ResponsePolicy {
                require_message_authenticator: false,
            },
        );
    }
}
