//! The RADIUS client over tokio UDP: one fresh socket per request (so the
//! Identifier never collides), the request retransmitted unchanged on
//! timeout, servers tried in order.
//!
//! A challenge's State belongs to the server that sent it, so the answer
//! goes to that server only ([`ChallengeState::server`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::access::{
    AccessRequest, EncodeError, NasIdentity, PendingAccess, Response, ResponseError, ResponseKind,
    ResponsePolicy, SharedSecret,
};
use super::packet::{AUTHENTICATOR_LEN, Authenticator, Identifier, MAX_PACKET_LEN};

/// What the client needs to talk to its servers.
#[derive(Debug, Clone)]
pub struct RadiusSettings {
    /// Servers in order of preference; the next one is tried when one does
    /// not answer.
    pub servers: Vec<SocketAddr>,
    /// The shared secret (one for all servers).
    pub secret: SharedSecret,
    /// How long to wait for an answer to each transmission.
    pub timeout: Duration,
    /// Retransmissions per server after the first try.
    pub retries: u32,
    /// NAS-Identifier and/or NAS-IP-Address.
    pub nas: NasIdentity,
    /// What responses must carry.
    pub policy: ResponsePolicy,
}

/// A RADIUS authentication client.
#[derive(Debug, Clone)]
pub struct RadiusClient {
    settings: RadiusSettings,
}

/// The answer of the RADIUS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RadiusOutcome {
    /// Access-Accept.
    Accept {
        /// The Reply-Message, if any (untrusted text).
        reply_message: Option<String>,
    },
    /// Access-Reject.
    Reject {
        /// The Reply-Message, if any (untrusted text).
        reply_message: Option<String>,
    },
    /// Access-Challenge: show `prompt`, send the user's answer with
    /// [`RadiusClient::answer_challenge`] and `state`.
    Challenge {
        /// The Reply-Message (untrusted text: escape it); empty when the
        /// server sent none.
        prompt: String,
        /// What the answer must carry back.
        state: ChallengeState,
    },
}

/// What a challenge answer must echo: the server that asked and its State.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeState {
    server: SocketAddr,
    state: Option<Vec<u8>>,
}

impl ChallengeState {
    /// Rebuilds a state kept elsewhere (a login session record).
    pub fn new(server: SocketAddr, state: Option<Vec<u8>>) -> Self {
        Self { server, state }
    }

    /// The server that sent the challenge; the answer goes there.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The State attribute to echo (none when the challenge carried none).
    pub fn state(&self) -> Option<&[u8]> {
        self.state.as_deref()
    }
}

/// Why no outcome could be had.
#[derive(Debug, thiserror::Error)]
pub enum RadiusError {
    /// No server configured.
    #[error("no radius server configured")]
    NoServers,
    /// The request cannot be encoded (user name or password too long).
    #[error("cannot encode the access-request: {0}")]
    Encode(#[from] EncodeError),
    /// A socket could not be opened or used.
    #[error("radius socket to {server}: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The randomness for the Request Authenticator was unavailable.
    #[error("no randomness for the request authenticator: {0}")]
    Random(getrandom::Error),
    /// No acceptable answer from the last server tried. `refused` is the
    /// last datagram refused, if any: a wrong shared secret shows up here as
    /// an authenticator mismatch.
    #[error(
        "no valid answer from radius server {server} after {tries} tries{}",
        refused.as_ref().map(|e| format!(", last response refused: {e}")).unwrap_or_default()
    )]
    NoAnswer {
        /// The last server tried.
        server: SocketAddr,
        /// Transmissions to it.
        tries: u32,
        /// The last refusal.
        #[source]
        refused: Option<ResponseError>,
    },
}

impl RadiusClient {
    /// A client for `settings`.
    ///
    /// Errors: [`RadiusError::NoServers`] for an empty server list.
    pub fn new(settings: RadiusSettings) -> Result<Self, RadiusError> {
        if settings.servers.is_empty() {
            return Err(RadiusError::NoServers);
        }
        Ok(Self { settings })
    }

    /// The first factor (or the only one): User-Name and User-Password,
    /// to each server in order until one answers.
    ///
    /// Errors: [`RadiusError`]; a rejection is an outcome, not an error.
    pub async fn authenticate(
        &self,
        user: &str,
        password: &[u8],
    ) -> Result<RadiusOutcome, RadiusError> {
        let mut last = None;
        for &server in &self.settings.servers {
            match self.exchange(server, user, password, None).await {
                Ok(outcome) => return Ok(outcome),
                Err(error @ (RadiusError::Encode(_) | RadiusError::Random(_))) => {
                    return Err(error);
                }
                Err(error) => {
                    tracing::warn!(%server, reason = %error, "radius_server_failed");
                    last = Some(error);
                }
            }
        }
        Err(last.unwrap_or(RadiusError::NoServers))
    }

    /// Answers an [`RadiusOutcome::Challenge`]: a new request (new
    /// identifier and authenticator, PROTOCOLS.md §8) with the user's
    /// `response` as User-Password and the State unchanged, to the server
    /// that sent the challenge.
    ///
    /// Errors: [`RadiusError`].
    pub async fn answer_challenge(
        &self,
        user: &str,
        response: &[u8],
        challenge: &ChallengeState,
    ) -> Result<RadiusOutcome, RadiusError> {
        self.exchange(challenge.server, user, response, challenge.state())
            .await
    }

    async fn exchange(
        &self,
        server: SocketAddr,
        user: &str,
        password: &[u8],
        state: Option<&[u8]>,
    ) -> Result<RadiusOutcome, RadiusError> {
        let settings = &self.settings;
        let mut random = [0u8; AUTHENTICATOR_LEN + 1];
        getrandom::fill(&mut random).map_err(RadiusError::Random)?;
        let mut authenticator = [0u8; AUTHENTICATOR_LEN];
        authenticator.copy_from_slice(&random[..AUTHENTICATOR_LEN]);
        let pending = AccessRequest {
            identifier: Identifier(random[AUTHENTICATOR_LEN]),
            authenticator: Authenticator(authenticator),
            user_name: user,
            password,
            nas: &settings.nas,
            state,
        }
        .encode(&settings.secret)?;

        let io = |source| RadiusError::Io { server, source };
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        // A connected socket only receives datagrams from the server.
        socket.connect(server).await.map_err(io)?;
        let mut refused = None;
        let tries = settings.retries.saturating_add(1);
        for _ in 0..tries {
            socket.send(pending.datagram()).await.map_err(io)?;
            let deadline = Instant::now() + settings.timeout;
            match self
                .await_answer(&socket, &pending, deadline, &mut refused)
                .await
            {
                Ok(Some(response)) => {
                    tracing::debug!(%server, outcome = ?response.kind, "radius_answer");
                    return Ok(into_outcome(response, server));
                }
                Ok(None) => {}
                Err(error) => return Err(io(error)),
            }
        }
        Err(RadiusError::NoAnswer {
            server,
            tries,
            refused,
        })
    }

    /// Reads datagrams until one is a valid answer or `deadline`. Refused
    /// datagrams are logged and kept in `refused`; the wait goes on (a
    /// forged datagram must not end a login).
    async fn await_answer(
        &self,
        socket: &UdpSocket,
        pending: &PendingAccess,
        deadline: Instant,
        refused: &mut Option<ResponseError>,
    ) -> Result<Option<Response>, std::io::Error> {
        let mut buf = vec![0u8; MAX_PACKET_LEN];
        loop {
            let len = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_elapsed) => return Ok(None),
                Ok(Ok(len)) => len,
                // ICMP port unreachable from an earlier send: this try is
                // lost, the next one may find the server up.
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(None);
                }
                Ok(Err(error)) => return Err(error),
            };
            let datagram = buf.get(..len).unwrap_or_default();
            match pending.handle_response(datagram, &self.settings.secret, self.settings.policy) {
                Ok(response) => return Ok(Some(response)),
                Err(error) => {
                    tracing::warn!(
                        peer = %socket.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
                        reason = %error,
                        "radius_response_refused"
                    );
                    *refused = Some(error);
                }
            }
        }
    }
}

fn into_outcome(response: Response, server: SocketAddr) -> RadiusOutcome {
    match response.kind {
        ResponseKind::Accept => RadiusOutcome::Accept {
            reply_message: response.reply_message,
        },
        ResponseKind::Reject => RadiusOutcome::Reject {
            reply_message: response.reply_message,
        },
        ResponseKind::Challenge => RadiusOutcome::Challenge {
            prompt: response.reply_message.unwrap_or_default(),
            state: ChallengeState {
                server,
                state: response.state,
            },
        },
    }
}
