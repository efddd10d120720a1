//! The state machine of the built-in provider (real clock, short timings
//! where a test waits for one to pass).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protocol::{self, AnswerBody, Decision, PushId, RegisterBody};
use super::*;
use crate::auth::names::DeviceName;
use crate::auth::totp::TotpSecret;

struct Secrets(HashMap<(String, String), TotpSecret>);

impl DeviceSecrets for Secrets {
    fn secret<'a>(&'a self, user: &'a UserName, device: &'a DeviceName) -> SecretFuture<'a> {
        let found = self.0.get(&(user.to_string(), device.to_string())).cloned();
        Box::pin(async move { Ok(found) })
    }
}

fn secret(byte: u8) -> TotpSecret {
    TotpSecret::from_bytes(&[byte; 20]).unwrap()
}

fn settings() -> PushSettings {
    PushSettings {
        enabled: true,
        wait: Duration::from_secs(30),
        poll_hold: Duration::from_secs(25),
        connect_grace: Duration::from_secs(5),
        max_devices: 100,
        max_pending: 100,
    }
}

/// Timings short enough to wait out.
fn quick() -> PushSettings {
    PushSettings {
        wait: Duration::from_millis(300),
        poll_hold: Duration::from_millis(200),
        connect_grace: Duration::from_millis(100),
        ..settings()
    }
}

fn service_with(settings: PushSettings) -> BuiltinPush {
    let mut map = HashMap::new();
    map.insert(("alice".into(), "phone".into()), secret(1));
    map.insert(("alice".into(), "tablet".into()), secret(2));
    map.insert(("bob".into(), "phone".into()), secret(3));
    BuiltinPush::new(settings, Arc::new(Secrets(map)))
}

fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

fn number(n: u8) -> MatchNumber {
    MatchNumber::new(n).unwrap()
}

async fn register(service: &BuiltinPush, user: &str, device: &str, key: u8) -> String {
    let nonce = service.challenge().unwrap();
    let proof = protocol::register_proof(&secret(key), &nonce, user, device);
    let body = RegisterBody {
        user: user.into(),
        device: device.into(),
        nonce,
        proof,
    };
    service.register(&body).await.unwrap().token
}

/// Starts a poll in a task and returns its handle.
fn spawn_poll(
    service: &BuiltinPush,
    token: &str,
) -> tokio::task::JoinHandle<Result<Option<protocol::PushMessage>, PollError>> {
    let service = service.clone();
    let token = token.to_owned();
    tokio::spawn(async move { service.poll(&token).await })
}

fn approve(id: &str, n: &str) -> AnswerBody {
    AnswerBody {
        id: id.into(),
        decision: Decision::Approve,
        number: Some(n.into()),
    }
}

/// Registers alice's phone, requests a push and returns it as delivered.
async fn delivered(service: &BuiltinPush, n: u8) -> (String, PushTicket, protocol::PushMessage) {
    let token = register(service, "alice", "phone", 1).await;
    let poll = spawn_poll(service, &token);
    tokio::task::yield_now().await;
    let ticket = service
        .request(&user("alice"), AttemptId::random().unwrap(), number(n))
        .await
        .unwrap();
    let push = poll.await.unwrap().unwrap().unwrap();
    (token, ticket, push)
}

#[tokio::test]
async fn an_approval_with_the_right_number_approves_the_attempt() {
    let service = service_with(settings());
    let (token, ticket, push) = delivered(&service, 42).await;
    assert_eq!(push.user, "alice");
    assert_eq!(push.device, "phone");
    assert_eq!(ticket.devices(), 1);
    let answered = service.answer(&token, &approve(&push.id, "42")).unwrap();
    assert_eq!(answered, PushOutcome::Approved);
    assert_eq!(
        service.wait(&ticket, Duration::from_secs(30)).await,
        PushOutcome::Approved
    );
}

#[tokio::test]
async fn a_denial_denies_the_attempt() {
    let service = service_with(settings());
    let (token, ticket, push) = delivered(&service, 7).await;
    let body = AnswerBody {
        id: push.id.clone(),
        decision: Decision::Deny,
        number: None,
    };
    assert_eq!(service.answer(&token, &body).unwrap(), PushOutcome::Denied);
    assert_eq!(
        service.wait(&ticket, Duration::from_secs(30)).await,
        PushOutcome::Denied
    );
}

#[tokio::test]
async fn an_approval_with_a_wrong_or_missing_number_is_refused_and_final() {
    let service = service_with(settings());
    let (token, ticket, push) = delivered(&service, 7).await;
    assert_eq!(
        service.answer(&token, &approve(&push.id, "08")).unwrap(),
        PushOutcome::WrongNumber
    );
    // A second try with the right number is too late.
    assert_eq!(
        service.answer(&token, &approve(&push.id, "07")),
        Err(AnswerError::UnknownPush)
    );
    assert_eq!(
        service.wait(&ticket, Duration::from_secs(30)).await,
        PushOutcome::WrongNumber
    );

    let (token, ticket, push) = delivered(&service, 7).await;
    let body = AnswerBody {
        id: push.id.clone(),
        decision: Decision::Approve,
        number: None,
    };
    assert_eq!(
        service.answer(&token, &body).unwrap(),
        PushOutcome::WrongNumber
    );
    assert_eq!(
        service.wait(&ticket, Duration::from_secs(30)).await,
        PushOutcome::WrongNumber
    );
}

#[tokio::test]
async fn no_answer_times_out_and_a_late_approval_is_refused() {
    let service = service_with(quick());
    let (token, ticket, push) = delivered(&service, 55).await;
    let start = Instant::now();
    assert_eq!(
        service.wait(&ticket, Duration::from_secs(300)).await,
        PushOutcome::TimedOut
    );
    // Bounded by the ticket's own 300 ms deadline, not the 300 s asked.
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(
        service.answer(&token, &approve(&push.id, "55")),
        Err(AnswerError::UnknownPush)
    );
    // The ticket is spent.
    assert_eq!(
        service.wait(&ticket, Duration::from_secs(30)).await,
        PushOutcome::TimedOut
    );
}

#[tokio::test]
async fn a_user_without_a_registered_device_gets_no_device() {
    let service = service_with(settings());
    let result = service
        .request(&user("alice"), AttemptId::random().unwrap(), number(1))
        .await;
    assert_eq!(result, Err(PushError::NoDevice));
}

#[tokio::test]
async fn a_registered_device_that_stopped_polling_is_unreachable() {
    let service = service_with(quick());
    let token = register(&service, "alice", "phone", 1).await;
    // Just registered: within the grace.
    assert_eq!(service.connected_devices(&user("alice")), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(service.connected_devices(&user("alice")), 0);
    let result = service
        .request(&user("alice"), AttemptId::random().unwrap(), number(1))
        .await;
    assert_eq!(result, Err(PushError::DeviceUnreachable));
    // Polling again makes it reachable.
    let poll = spawn_poll(&service, &token);
    tokio::task::yield_now().await;
    assert_eq!(service.connected_devices(&user("alice")), 1);
    assert!(
        service
            .request(&user("alice"), AttemptId::random().unwrap(), number(1))
            .await
            .is_ok()
    );
    assert!(poll.await.unwrap().unwrap().is_some());
}

#[tokio::test]
async fn an_answer_for_another_attempt_or_user_is_refused() {
    let service = service_with(settings());
    let (alice_token, alice_ticket, alice_push) = delivered(&service, 11).await;
    // Bob's device answers alice's push.
    let bob_token = register(&service, "bob", "phone", 3).await;
    assert_eq!(
        service.answer(&bob_token, &approve(&alice_push.id, "11")),
        Err(AnswerError::UnknownPush)
    );
    // A second attempt of alice: approving the first does not answer it.
    let poll = spawn_poll(&service, &alice_token);
    tokio::task::yield_now().await;
    let second = service
        .request(&user("alice"), AttemptId::random().unwrap(), number(22))
        .await
        .unwrap();
    let second_push = poll.await.unwrap().unwrap().unwrap();
    assert_ne!(second_push.id, alice_push.id);
    assert_eq!(
        service
            .answer(&alice_token, &approve(&alice_push.id, "11"))
            .unwrap(),
        PushOutcome::Approved
    );
    assert_eq!(
        service.wait(&alice_ticket, Duration::from_secs(30)).await,
        PushOutcome::Approved
    );
    // The second attempt is still open; it times out on its own.
    assert_eq!(
        service.wait(&second, Duration::from_millis(50)).await,
        PushOutcome::TimedOut
    );
    // An unknown id and a malformed one are refused alike.
    let unknown = PushId::random().unwrap().to_string();
    assert_eq!(
        service.answer(&alice_token, &approve(&unknown, "11")),
        Err(AnswerError::UnknownPush)
    );
    assert_eq!(
        service.answer(&alice_token, &approve("nope", "11")),
        Err(AnswerError::UnknownPush)
    );
}

#[tokio::test]
async fn a_replayed_answer_is_refused() {
    let service = service_with(settings());
    let (token, ticket, push) = delivered(&service, 42).await;
    let body = approve(&push.id, "42");
    assert_eq!(
        service.answer(&token, &body).unwrap(),
        PushOutcome::Approved
    );
    assert_eq!(service.answer(&token, &body), Err(AnswerError::UnknownPush));
    assert_eq!(
        service.wait(&ticket, Duration::from_secs(30)).await,
        PushOutcome::Approved
    );
    assert_eq!(service.answer(&token, &body), Err(AnswerError::UnknownPush));
}

#[tokio::test]
async fn a_resent_push_replaces_the_attempts_earlier_one() {
    let service = service_with(settings());
    let token = register(&service, "alice", "phone", 1).await;
    let attempt = AttemptId::random().unwrap();
    let first = service
        .request(&user("alice"), attempt, number(1))
        .await
        .unwrap();
    let push = service.poll(&token).await.unwrap().unwrap();
    let second = service
        .request(&user("alice"), attempt, number(2))
        .await
        .unwrap();
    assert_eq!(
        service.answer(&token, &approve(&push.id, "01")),
        Err(AnswerError::UnknownPush)
    );
    assert_eq!(
        service.wait(&first, Duration::from_millis(50)).await,
        PushOutcome::TimedOut
    );
    let push = service.poll(&token).await.unwrap().unwrap();
    assert_eq!(
        service.answer(&token, &approve(&push.id, "02")).unwrap(),
        PushOutcome::Approved
    );
    assert_eq!(
        service.wait(&second, Duration::from_secs(1)).await,
        PushOutcome::Approved
    );
}

#[tokio::test]
async fn registration_needs_the_secret_and_a_fresh_nonce() {
    let service = service_with(settings());
    let nonce = service.challenge().unwrap();
    let wrong = RegisterBody {
        user: "alice".into(),
        device: "phone".into(),
        proof: protocol::register_proof(&secret(9), &nonce, "alice", "phone"),
        nonce: nonce.clone(),
    };
    assert_eq!(service.register(&wrong).await, Err(RegisterError::Rejected));
    // The nonce was spent by the failed try.
    let right = RegisterBody {
        proof: protocol::register_proof(&secret(1), &nonce, "alice", "phone"),
        ..wrong.clone()
    };
    assert_eq!(service.register(&right).await, Err(RegisterError::Rejected));
    // Unknown device: the same refusal.
    let nonce = service.challenge().unwrap();
    let unknown = RegisterBody {
        user: "alice".into(),
        device: "watch".into(),
        proof: protocol::register_proof(&secret(1), &nonce, "alice", "watch"),
        nonce,
    };
    assert_eq!(
        service.register(&unknown).await,
        Err(RegisterError::Rejected)
    );
    // A nonce the gateway never issued.
    let made_up = protocol::random_token().unwrap();
    let forged = RegisterBody {
        user: "alice".into(),
        device: "phone".into(),
        proof: protocol::register_proof(&secret(1), &made_up, "alice", "phone"),
        nonce: made_up,
    };
    assert_eq!(
        service.register(&forged).await,
        Err(RegisterError::Rejected)
    );
    assert_eq!(service.connected_devices(&user("alice")), 0);
}

#[tokio::test]
async fn registering_a_device_again_ends_its_old_token() {
    let service = service_with(settings());
    let old = register(&service, "alice", "phone", 1).await;
    let old_poll = spawn_poll(&service, &old);
    tokio::task::yield_now().await;
    let new = register(&service, "alice", "phone", 1).await;
    assert_eq!(old_poll.await.unwrap(), Err(PollError::Unauthorized));
    assert_eq!(service.poll(&old).await, Err(PollError::Unauthorized));
    let poll = spawn_poll(&service, &new);
    tokio::task::yield_now().await;
    assert_eq!(service.connected_devices(&user("alice")), 1);
    poll.abort();
}

#[tokio::test]
async fn a_poll_without_a_push_ends_after_the_hold_time() {
    let service = service_with(quick());
    let token = register(&service, "alice", "phone", 1).await;
    let start = Instant::now();
    assert_eq!(service.poll(&token).await, Ok(None));
    let held = start.elapsed();
    assert!(
        held >= Duration::from_millis(200) && held < Duration::from_secs(5),
        "{held:?}"
    );
}

#[tokio::test]
async fn every_table_is_bounded() {
    let bounded = PushSettings {
        max_devices: 2,
        max_pending: 1,
        ..settings()
    };
    let service = service_with(bounded);
    register(&service, "alice", "phone", 1).await;
    register(&service, "alice", "tablet", 2).await;
    let nonce = service.challenge().unwrap();
    let third = RegisterBody {
        user: "bob".into(),
        device: "phone".into(),
        proof: protocol::register_proof(&secret(3), &nonce, "bob", "phone"),
        nonce,
    };
    assert_eq!(service.register(&third).await, Err(RegisterError::Full));
    let _first = service
        .request(&user("alice"), AttemptId::random().unwrap(), number(1))
        .await
        .unwrap();
    // A second attempt while max_pending (1) pushes wait is refused.
    assert_eq!(
        service
            .request(&user("alice"), AttemptId::random().unwrap(), number(2))
            .await,
        Err(PushError::Busy)
    );
    // Nonces: the oldest is evicted past the bound.
    let first = service.challenge().unwrap();
    for _ in 0..MAX_NONCES {
        service.challenge().unwrap();
    }
    let evicted = RegisterBody {
        user: "alice".into(),
        device: "phone".into(),
        proof: protocol::register_proof(&secret(1), &first, "alice", "phone"),
        nonce: first,
    };
    assert_eq!(
        service.register(&evicted).await,
        Err(RegisterError::Rejected)
    );
}

#[tokio::test]
async fn a_disabled_service_sends_nothing() {
    let service = service_with(PushSettings {
        enabled: false,
        ..settings()
    });
    assert_eq!(service.challenge(), Err(RegisterError::Disabled));
    assert_eq!(
        service
            .request(&user("alice"), AttemptId::random().unwrap(), number(1))
            .await,
        Err(PushError::Disabled)
    );
}

#[test]
fn match_numbers_are_two_digits() {
    assert_eq!(MatchNumber::parse("07").unwrap().value(), 7);
    assert_eq!(MatchNumber::parse("99").unwrap().to_string(), "99");
    for bad in ["7", "007", "", "a1", "1 ", "+1", "٣٣"] {
        assert!(MatchNumber::parse(bad).is_err(), "{bad:?}");
    }
    assert!(MatchNumber::new(100).is_err());
    for _ in 0..200 {
        let n = MatchNumber::random().unwrap();
        assert!(n.value() < 100);
        assert_eq!(MatchNumber::parse(&n.to_string()).unwrap(), n);
    }
    assert_eq!(format!("{:?}", number(42)), "MatchNumber(..)");
}

#[test]
fn the_registration_proof_binds_nonce_user_and_device() {
    let s = secret(1);
    let proof = protocol::register_proof(&s, "n", "alice", "phone");
    assert!(protocol::verify_proof(&s, "n", "alice", "phone", &proof));
    assert!(!protocol::verify_proof(&s, "m", "alice", "phone", &proof));
    assert!(!protocol::verify_proof(&s, "n", "bob", "phone", &proof));
    assert!(!protocol::verify_proof(&s, "n", "alice", "tablet", &proof));
    assert!(!protocol::verify_proof(
        &secret(2),
        "n",
        "alice",
        "phone",
        &proof
    ));
    assert!(!protocol::verify_proof(
        &s, "n", "alice", "phone", "garbage!"
    ));
    // Separators keep ("a\0b", "c") and ("a", "b\0c") apart.
    assert_ne!(
        protocol::register_proof(&s, "n", "ab", "c"),
        protocol::register_proof(&s, "n", "a", "bc")
    );
}

#[test]
fn bearer_values_are_parsed_strictly() {
    let token = protocol::random_token().unwrap();
    assert_eq!(
        protocol::parse_bearer(&format!("Bearer {token}")),
        Ok(token.as_str())
    );
    assert_eq!(
        protocol::parse_bearer(&format!("bearer {token}")),
        Ok(token.as_str())
    );
    assert!(protocol::parse_bearer(&format!("Basic {token}")).is_err());
    assert!(protocol::parse_bearer("Bearer short").is_err());
    assert!(protocol::parse_bearer(&token).is_err());
}

#[test]
fn the_push_section_parses_and_checks_its_ranges() {
    let config = crate::config::Config::from_toml(
        "[push]\nenabled = true\nwait_secs = 2\npoll_hold_secs = 1\nconnect_grace_secs = 0\n",
    )
    .unwrap();
    let settings = config.push.settings();
    assert!(settings.enabled);
    assert_eq!(settings.wait, Duration::from_secs(2));
    assert_eq!(settings.poll_hold, Duration::from_secs(1));
    assert_eq!(settings.connect_grace, Duration::ZERO);
    let error = crate::config::Config::from_toml("[push]\nwait_secs = 0\n").unwrap_err();
    assert!(error.to_string().contains("push.wait_secs"), "{error}");
    let error = crate::config::Config::from_toml("[push]\nbogus = 1\n").unwrap_err();
    assert!(error.to_string().contains("bogus"), "{error}");
    assert!(!crate::config::Config::default().push.enabled);
}

/// Bodies are JSON objects: serde would read the fields of an array by
/// position (found by the fuzz target: an array body that parsed, grew past
/// MAX_BODY_BYTES as an object and did not parse back).
#[test]
fn device_bodies_must_be_json_objects() {
    let register = br#"{"user":"alice","device":"phone","nonce":"n","proof":"p"}"#;
    assert!(protocol::parse_register(register).is_ok());
    assert!(
        protocol::parse_register(
            b"  \n{\"user\":\"alice\",\"device\":\"phone\",\"nonce\":\"n\",\"proof\":\"p\"}"
        )
        .is_ok()
    );
    for body in [
        &br#"["alice","phone","n","p"]"#[..],
        br#" ["alice","phone","n","p"]"#,
        b"",
        b"null",
    ] {
        assert_eq!(
            protocol::parse_register(body),
            Err(protocol::ProtocolError::Json(
                "expected a JSON object".to_owned()
            )),
            "{body:?}"
        );
    }
    assert!(protocol::parse_answer(br#"["id","approve","42"]"#).is_err());
    let crash = include_bytes!("../../fuzz/regressions/push_register_body_array.json");
    assert!(protocol::parse_register(crash).is_err());
    fuzz::register_body(crash);
}
