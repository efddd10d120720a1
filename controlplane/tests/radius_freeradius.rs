//! The RADIUS client against a real FreeRADIUS (Debian package
//! `freeradius`), started by each test on a free 127.0.0.1 UDP port with a
//! minimal temporary raddb ([`gatehouse_tests::radius`]): one client
//! (127.0.0.1, a shared secret, `require_message_authenticator = yes`, so
//! a request with a missing or wrong Message-Authenticator is dropped), and
//! an unlang policy:
//!
//! - `alice` / `alice-password`: Access-Accept;
//! - `bob` / `bob-password`: Access-Challenge with Reply-Message "Enter your
//!   token code" and a State (FreeRADIUS's session-state); the answer
//!   `123456` with that State: Access-Accept;
//! - everything else: Access-Reject.
//!
//! Debian 12's FreeRADIUS 3.2.1 predates the BlastRADIUS fixes and sends no
//! Message-Authenticator in its responses, so these tests set
//! `require_message_authenticator = false`; the in-process fake server at
//! the end checks the client's side of it (retransmission, forged and
//! unsigned answers).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatehouse::config::Secret;
use gatehouse::radius::access::{message_authenticator, response_authenticator};
use gatehouse::radius::{
    ChallengeState, RadiusClient, RadiusError, RadiusOutcome, RadiusSection, ResponseError,
    SharedSecret,
};
use gatehouse_tests::radius::{FreeRadius, PROMPT, SECRET};
use gatehouse_tests::server::free_udp_port;
use tokio::net::UdpSocket;

/// The client settings of these tests for `radius`.
fn section(radius: &FreeRadius) -> RadiusSection {
    RadiusSection {
        servers: vec![radius.addr()],
        secret: Some(Secret::new(SECRET)),
        timeout_ms: 1_000,
        retries: 1,
        nas_identifier: "gatehouse-test".to_owned(),
        require_message_authenticator: false,
        ..RadiusSection::default()
    }
}

fn client(radius: &FreeRadius) -> RadiusClient {
    client_for(&section(radius))
}

fn client_for(section: &RadiusSection) -> RadiusClient {
    RadiusClient::new(section.settings().unwrap().unwrap()).unwrap()
}

fn is_reject(outcome: &RadiusOutcome) -> bool {
    matches!(outcome, RadiusOutcome::Reject { .. })
}

#[tokio::test]
async fn alice_is_accepted_with_her_password() {
    let radius = FreeRadius::start();
    let outcome = client(&radius)
        .authenticate("alice", b"alice-password")
        .await
        .unwrap();
    assert!(
        matches!(outcome, RadiusOutcome::Accept { .. }),
        "{outcome:?}"
    );
    // The server saw the NAS-Identifier and a valid Message-Authenticator
    // (it drops requests without one).
    let log = radius.log();
    assert!(log.contains("NAS-Identifier = \"gatehouse-test\""), "{log}");
    assert!(log.contains("Message-Authenticator = 0x"), "{log}");
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_are_rejected() {
    let radius = FreeRadius::start();
    let client = client(&radius);
    for (user, password) in [
        ("alice", &b"bob-password"[..]),
        ("alice", b""),
        ("bob", b"alice-password"),
        ("carol", b"alice-password"),
    ] {
        let outcome = client.authenticate(user, password).await.unwrap();
        assert!(is_reject(&outcome), "{user}: {outcome:?}");
    }
}

#[tokio::test]
async fn bob_is_challenged_then_accepted_with_the_token_code() {
    let radius = FreeRadius::start();
    let client = client(&radius);
    let outcome = client.authenticate("bob", b"bob-password").await.unwrap();
    let RadiusOutcome::Challenge { prompt, state } = outcome else {
        panic!("expected a challenge, got {outcome:?}");
    };
    assert_eq!(prompt, PROMPT);
    assert_eq!(state.server(), radius.addr());
    assert!(state.state().is_some_and(|s| !s.is_empty()));
    let outcome = client
        .answer_challenge("bob", b"123456", &state)
        .await
        .unwrap();
    assert!(
        matches!(outcome, RadiusOutcome::Accept { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_wrong_token_code_or_a_missing_or_foreign_state_is_rejected() {
    let radius = FreeRadius::start();
    let client = client(&radius);
    let challenge = |outcome: RadiusOutcome| match outcome {
        RadiusOutcome::Challenge { state, .. } => state,
        other => panic!("expected a challenge, got {other:?}"),
    };
    let state = challenge(client.authenticate("bob", b"bob-password").await.unwrap());
    let outcome = client
        .answer_challenge("bob", b"654321", &state)
        .await
        .unwrap();
    assert!(is_reject(&outcome), "{outcome:?}");

    let state = challenge(client.authenticate("bob", b"bob-password").await.unwrap());
    let without = ChallengeState::new(state.server(), None);
    let outcome = client
        .answer_challenge("bob", b"123456", &without)
        .await
        .unwrap();
    assert!(is_reject(&outcome), "{outcome:?}");
    let foreign = ChallengeState::new(state.server(), Some(b"not-a-state-16b!".to_vec()));
    let outcome = client
        .answer_challenge("bob", b"123456", &foreign)
        .await
        .unwrap();
    assert!(is_reject(&outcome), "{outcome:?}");
    // The real State still works once.
    let outcome = client
        .answer_challenge("bob", b"123456", &state)
        .await
        .unwrap();
    assert!(
        matches!(outcome, RadiusOutcome::Accept { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_wrong_shared_secret_is_a_clear_error() {
    let radius = FreeRadius::start();
    let section = RadiusSection {
        secret: Some(Secret::new("not-the-secret")),
        timeout_ms: 300,
        retries: 1,
        ..section(&radius)
    };
    let started = Instant::now();
    let error = client_for(&section)
        .authenticate("alice", b"alice-password")
        .await
        .unwrap_err();
    // FreeRADIUS drops a request whose Message-Authenticator does not
    // verify, so nothing comes back; a server that answered would have its
    // answer refused as an authenticator mismatch.
    match &error {
        RadiusError::NoAnswer {
            server,
            tries,
            refused,
        } => {
            assert_eq!(*server, radius.addr());
            assert_eq!(*tries, 2);
            assert!(
                refused.is_none() || matches!(refused, Some(ResponseError::AuthenticatorMismatch)),
                "{refused:?}"
            );
        }
        other => panic!("expected no answer, got {other:?}"),
    }
    assert!(
        error.to_string().starts_with(&format!(
            "no valid answer from radius server {}",
            radius.addr()
        )),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let log = radius.log();
    assert!(
        log.contains("invalid Message-Authenticator!  (Shared secret is incorrect.)"),
        "{log}"
    );
}

#[tokio::test]
async fn fails_over_to_the_next_server() {
    let radius = FreeRadius::start();
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let section = RadiusSection {
        servers: vec![nobody, radius.addr()],
        timeout_ms: 200,
        retries: 0,
        ..section(&radius)
    };
    let outcome = client_for(&section)
        .authenticate("alice", b"alice-password")
        .await
        .unwrap();
    assert!(
        matches!(outcome, RadiusOutcome::Accept { .. }),
        "{outcome:?}"
    );
}

/// An in-process server that answers the way the test says, for what a
/// real server cannot be made to do on demand.
struct FakeServer {
    socket: UdpSocket,
    secret: SharedSecret,
}

impl FakeServer {
    async fn bind() -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            secret: SharedSecret::new(SECRET.as_bytes().to_vec()).unwrap(),
        }
    }

    fn section(&self) -> RadiusSection {
        RadiusSection {
            servers: vec![self.socket.local_addr().unwrap()],
            secret: Some(Secret::new(SECRET)),
            timeout_ms: 300,
            retries: 2,
            ..RadiusSection::default()
        }
    }

    async fn receive(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0; 4_096];
        let (len, peer) =
            tokio::time::timeout(Duration::from_secs(5), self.socket.recv_from(&mut buf))
                .await
                .expect("a request within 5 s")
                .unwrap();
        buf.truncate(len);
        (buf, peer)
    }

    /// An Access-Accept to `request`, with a Message-Authenticator when
    /// `mac`, signed with `secret`.
    fn accept(request: &[u8], secret: &SharedSecret, mac: bool) -> Vec<u8> {
        let mut out = vec![0x02, request[1], 0, 0];
        out.extend_from_slice(&request[4..20]);
        if mac {
            out.extend_from_slice(&[0x50, 18]);
            out.extend_from_slice(&[0; 16]);
        }
        out.extend_from_slice(&[0x12, 4, b'o', b'k']);
        let len = u16::try_from(out.len()).unwrap();
        out[2..4].copy_from_slice(&len.to_be_bytes());
        if mac {
            let value = message_authenticator(secret, &out);
            out[22..38].copy_from_slice(&value);
        }
        let mut request_auth = [0; 16];
        request_auth.copy_from_slice(&request[4..20]);
        let auth = response_authenticator(
            &out,
            &gatehouse::radius::Authenticator(request_auth),
            secret,
        );
        out[4..20].copy_from_slice(&auth);
        out
    }
}

#[tokio::test]
async fn retransmits_the_same_datagram_and_skips_forged_answers() {
    let fake = FakeServer::bind().await;
    let client = client_for(&fake.section());
    let login = tokio::spawn(async move { client.authenticate("alice", b"pw").await });

    // First try: no answer. Second: the same bytes (identifier and
    // authenticator unchanged); a forged answer first, then the real one.
    let (first, _) = fake.receive().await;
    let (second, peer) = fake.receive().await;
    assert_eq!(first, second);
    let wrong = SharedSecret::new(b"forger".to_vec()).unwrap();
    let forged = FakeServer::accept(&second, &wrong, true);
    fake.socket.send_to(&forged, peer).await.unwrap();
    let real = FakeServer::accept(&second, &fake.secret, true);
    fake.socket.send_to(&real, peer).await.unwrap();

    let outcome = login.await.unwrap().unwrap();
    assert_eq!(
        outcome,
        RadiusOutcome::Accept {
            reply_message: Some("ok".to_owned())
        }
    );
}

#[tokio::test]
async fn only_forged_or_unsigned_answers_end_in_a_clear_error() {
    let fake = FakeServer::bind().await;
    let client = client_for(&fake.section());
    let login = tokio::spawn(async move { client.authenticate("alice", b"pw").await });
    let wrong = SharedSecret::new(b"forger".to_vec()).unwrap();
    for _ in 0..3 {
        let (request, peer) = fake.receive().await;
        let forged = FakeServer::accept(&request, &wrong, true);
        fake.socket.send_to(&forged, peer).await.unwrap();
    }
    let error = login.await.unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            RadiusError::NoAnswer {
                tries: 3,
                refused: Some(ResponseError::AuthenticatorMismatch),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("wrong shared secret"), "{error}");

    // Correctly signed but without Message-Authenticator, while the
    // default policy requires one.
    let client = client_for(&fake.section());
    let login = tokio::spawn(async move { client.authenticate("alice", b"pw").await });
    for _ in 0..3 {
        let (request, peer) = fake.receive().await;
        let unsigned = FakeServer::accept(&request, &fake.secret, false);
        fake.socket.send_to(&unsigned, peer).await.unwrap();
    }
    let error = login.await.unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            RadiusError::NoAnswer {
                refused: Some(ResponseError::MessageAuthenticatorMissing),
                ..
            }
        ),
        "{error:?}"
    );
}
