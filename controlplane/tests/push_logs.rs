//! The three failure conditions of a push (PROTOCOLS.md §9, the seed's
//! "Failure logs") each log their own line. Its own test binary: the log
//! subscriber is the process-wide default, with no other test racing it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse::auth::names::{DeviceName, UserName};
use gatehouse::auth::totp::TotpSecret;
use gatehouse::push::protocol::{self, RegisterBody};
use gatehouse::push::{
    AttemptId, BuiltinPush, DeviceSecrets, MatchNumber, PushError, PushOutcome, PushService,
    PushSettings, SecretFuture,
};

struct Secrets(HashMap<String, TotpSecret>);

impl DeviceSecrets for Secrets {
    fn secret<'a>(&'a self, user: &'a UserName, device: &'a DeviceName) -> SecretFuture<'a> {
        let found = self.0.get(&format!("{user}/{device}")).cloned();
        Box::pin(async move { Ok(found) })
    }
}

/// A log sink.
#[derive(Clone, Default)]
struct Logs(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }

    fn counts(&self) -> [usize; 3] {
        let text = self.text();
        [
            "push_no_device",
            "push_device_unreachable",
            "push_no_response",
        ]
        .map(|event| text.matches(event).count())
    }
}

#[tokio::test]
async fn each_failure_condition_logs_its_own_line() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let secret = TotpSecret::from_bytes(&[1; 20]).unwrap();
    let secrets = Secrets(HashMap::from([("alice/phone".to_owned(), secret.clone())]));
    let settings = PushSettings {
        enabled: true,
        wait: Duration::from_millis(300),
        poll_hold: Duration::from_secs(5),
        connect_grace: Duration::from_millis(100),
        max_devices: 10,
        max_pending: 10,
    };
    let service = BuiltinPush::new(settings, Arc::new(secrets));
    let alice = UserName::new("alice").unwrap();
    let number = MatchNumber::new(12).unwrap();

    let result = service
        .request(&alice, AttemptId::random().unwrap(), number)
        .await;
    assert_eq!(result, Err(PushError::NoDevice));
    assert_eq!(logs.counts(), [1, 0, 0], "{}", logs.text());

    let nonce = service.challenge().unwrap();
    let body = RegisterBody {
        user: "alice".into(),
        device: "phone".into(),
        proof: protocol::register_proof(&secret, &nonce, "alice", "phone"),
        nonce,
    };
    let token = service.register(&body).await.unwrap().token;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let result = service
        .request(&alice, AttemptId::random().unwrap(), number)
        .await;
    assert_eq!(result, Err(PushError::DeviceUnreachable));
    assert_eq!(logs.counts(), [1, 1, 0], "{}", logs.text());

    let poll = {
        let service = service.clone();
        let token = token.clone();
        tokio::spawn(async move { service.poll(&token).await })
    };
    tokio::task::yield_now().await;
    let ticket = service
        .request(&alice, AttemptId::random().unwrap(), number)
        .await
        .unwrap();
    assert!(poll.await.unwrap().unwrap().is_some());
    assert_eq!(
        service.wait(&ticket, Duration::from_secs(5)).await,
        PushOutcome::TimedOut
    );
    assert_eq!(logs.counts(), [1, 1, 1], "{}", logs.text());
    // Neither the token nor the nonce is logged.
    assert!(!logs.text().contains(&token));
    assert!(!logs.text().contains(&body.nonce));
}
