//! The login state machine and decisions, with a fake password directory
//! and the real store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::auth::devices::OtpDevices;
use crate::auth::names::DeviceName;
use crate::auth::totp::{self, TotpParams};

/// Knows `alice` / `right`; counts calls so tests see the password work
/// done even when the answer is fixed.
#[derive(Debug, Default)]
struct Fake {
    calls: Mutex<u32>,
}

impl PasswordDirectory for Fake {
    fn verify<'a>(&'a self, login: &'a str, password: &'a str) -> VerifyFuture<'a> {
        *self.calls.lock() += 1;
        Box::pin(async move {
            if login == "alice" && password == "right" {
                Ok(UserInfo {
                    dn: String::new(),
                    login: "alice".to_owned(),
                    name: "Alice Example".to_owned(),
                    groups: Vec::new(),
                })
            } else {
                Err(DirectoryError::Rejected)
            }
        })
    }
}

struct Setup {
    login: Login,
    fake: Arc<Fake>,
    devices: OtpDevices,
    dir: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup(section: LoginSection) -> Setup {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-login-{}-{}",
        std::process::id(),
        getrandom::u64().unwrap()
    ));
    let store = Store::open(&dir).await.unwrap();
    let devices = OtpDevices::new(store.clone(), OtpKey::from_bytes([7; 32]), "Gatehouse");
    let fake = Arc::new(Fake::default());
    let login = Login::new(
        section,
        fake.clone(),
        UserDevices::Store(devices.clone()),
        None,
        store,
        "Gatehouse",
    );
    Setup {
        login,
        fake,
        devices,
        dir,
    }
}

fn form(login: &str, passwd: &str) -> LoginForm {
    LoginForm {
        login: login.to_owned(),
        passwd: passwd.to_owned(),
        passwd1: String::new(),
    }
}

fn peer(last: u8) -> Option<SocketAddr> {
    Some(SocketAddr::from(([192, 0, 2, last], 40_000)))
}

fn otp_section() -> LoginSection {
    LoginSection {
        schema: LoginSchema::PasswordOtp,
        ..LoginSection::default()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn each_schema_names_its_step_after_the_password() {
    assert_eq!(after_password(LoginSchema::Password, false), Next::Done);
    assert_eq!(after_password(LoginSchema::PasswordOtp, false), Next::Otp);
    assert_eq!(
        after_password(LoginSchema::PasswordOtpOrPush, false),
        Next::Otp
    );
    assert_eq!(
        after_password(LoginSchema::PasswordRadius, false),
        Next::RadiusPasscode
    );
    assert_eq!(
        after_password(LoginSchema::PasswordRadius, true),
        Next::RadiusSecondPassword
    );
}

#[test]
fn pending_logins_are_bounded_in_count_and_time() {
    let pending = PendingLogins {
        max: 2,
        ttl: Duration::from_secs(10),
        map: Mutex::new(HashMap::new()),
    };
    let t0 = Instant::now();
    let one = Pending {
        user: UserInfo {
            dn: String::new(),
            login: "a".to_owned(),
            name: "a".to_owned(),
            groups: Vec::new(),
        },
        awaiting: Awaiting::Otp,
        prompt: String::new(),
        expires: t0,
        answers: 0,
        push_attempt: None,
        push: None,
        resends: 0,
    };
    assert!(pending.insert("1".to_owned(), one.clone(), t0));
    assert!(pending.insert("2".to_owned(), one.clone(), t0));
    assert!(!pending.insert("3".to_owned(), one.clone(), t0), "full");
    assert!(pending.take("1", t0 + Duration::from_secs(9)).is_some());
    assert!(pending.take("1", t0).is_none(), "taken once");
    assert!(
        pending.take("2", t0 + Duration::from_secs(10)).is_none(),
        "expired"
    );
    assert!(pending.insert("4".to_owned(), one.clone(), t0 + Duration::from_secs(11)));
    assert!(
        pending.insert("5".to_owned(), one, t0 + Duration::from_secs(30)),
        "expired entries make room"
    );
}

#[test]
fn failure_messages_do_not_tell_unknown_users_from_wrong_passwords() {
    assert_eq!(Failure::BadCredentials.reason(), "bad_credentials");
    assert!(
        Failure::BadCredentials
            .message()
            .contains("user name or password")
    );
    let debug = format!("{:?}", form("alice", "secret-pw"));
    assert!(!debug.contains("secret-pw"), "{debug}");
}

#[tokio::test]
async fn a_right_password_logs_in_and_the_session_is_found_by_its_cookie() {
    let setup = setup(LoginSection::default()).await;
    let reply = setup.login.start(&form("alice", "right"), peer(1)).await;
    let LoginReply::Session { token, scope } = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(scope, Scope::Full);
    let session = setup.login.sessions().find(&token).await.unwrap().unwrap();
    assert_eq!(session.user, "alice");
    assert_eq!(session.display_name, "Alice Example");
    assert!(setup.login.sessions().end(&token).await.unwrap());
    assert!(setup.login.sessions().find(&token).await.unwrap().is_none());
}

#[tokio::test]
async fn unknown_users_wrong_passwords_and_locked_names_get_one_answer() {
    let setup = setup(LoginSection {
        user_max_failures: 2,
        ..LoginSection::default()
    })
    .await;
    for (login, password) in [("mallory", "x"), ("alice", "wrong"), ("alice", "wrong")] {
        let reply = setup.login.start(&form(login, password), peer(2)).await;
        assert!(
            matches!(reply, LoginReply::Failed(Failure::BadCredentials)),
            "{reply:?}"
        );
    }
    // Locked now: the right password gets the same answer, after the same work.
    let calls = *setup.fake.calls.lock();
    let reply = setup.login.start(&form("ALICE", "right"), peer(2)).await;
    assert!(
        matches!(reply, LoginReply::Failed(Failure::BadCredentials)),
        "{reply:?}"
    );
    assert_eq!(
        *setup.fake.calls.lock(),
        calls + 1,
        "the password was checked"
    );
    // Another name from the same address is not locked.
    let reply = setup.login.start(&form("bob", "x"), peer(2)).await;
    assert!(matches!(reply, LoginReply::Failed(Failure::BadCredentials)));
}

#[tokio::test]
async fn a_locked_address_is_refused_without_a_password_check() {
    let setup = setup(LoginSection {
        ip_max_failures: 3,
        ..LoginSection::default()
    })
    .await;
    for n in 0..3 {
        let reply = setup
            .login
            .start(&form(&format!("u{n}"), "x"), peer(3))
            .await;
        assert!(matches!(reply, LoginReply::Failed(Failure::BadCredentials)));
    }
    let calls = *setup.fake.calls.lock();
    let reply = setup.login.start(&form("alice", "right"), peer(3)).await;
    assert!(
        matches!(reply, LoginReply::Failed(Failure::AddressLocked)),
        "{reply:?}"
    );
    assert_eq!(*setup.fake.calls.lock(), calls);
    let reply = setup.login.start(&form("alice", "right"), peer(4)).await;
    assert!(matches!(reply, LoginReply::Session { .. }), "{reply:?}");
}

#[tokio::test]
async fn password_and_otp_asks_for_a_code_and_refuses_its_reuse() {
    let setup = setup(otp_section()).await;
    let user = UserName::new("alice").unwrap();
    let enrolment = setup
        .devices
        .add(&user, &DeviceName::new("phone").unwrap())
        .await
        .unwrap();
    let reply = setup.login.start(&form("alice", "right"), peer(5)).await;
    let LoginReply::Challenge {
        pending, prompt, ..
    } = reply
    else {
        panic!("{reply:?}");
    };
    assert_eq!(prompt, OTP_PROMPT);
    let reply = setup.login.answer(&pending, "000000x", peer(5)).await;
    let LoginReply::Challenge {
        pending: again,
        error,
        ..
    } = reply
    else {
        panic!("{reply:?}");
    };
    assert_eq!(error, Some(Failure::BadCode));
    assert_eq!(again, pending);
    let code = totp::code_at(&enrolment.uri.secret, now_secs(), TotpParams::GATEWAY);
    let code = format!("{:06}", code.value());
    let reply = setup.login.answer(&pending, &code, peer(5)).await;
    assert!(
        matches!(
            reply,
            LoginReply::Session {
                scope: Scope::Full,
                ..
            }
        ),
        "{reply:?}"
    );
    // The same code in a second login is refused.
    let LoginReply::Challenge { pending, .. } =
        setup.login.start(&form("alice", "right"), peer(5)).await
    else {
        panic!("challenge");
    };
    let reply = setup.login.answer(&pending, &code, peer(5)).await;
    assert!(
        matches!(
            reply,
            LoginReply::Challenge {
                error: Some(Failure::ReplayedCode),
                ..
            }
        ),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_pending_login_is_forgotten_after_three_wrong_answers() {
    let setup = setup(otp_section()).await;
    let user = UserName::new("alice").unwrap();
    setup
        .devices
        .add(&user, &DeviceName::new("phone").unwrap())
        .await
        .unwrap();
    let LoginReply::Challenge { pending, .. } =
        setup.login.start(&form("alice", "right"), peer(6)).await
    else {
        panic!("challenge");
    };
    for _ in 0..MAX_ANSWERS - 1 {
        let reply = setup.login.answer(&pending, "abc", peer(6)).await;
        assert!(matches!(reply, LoginReply::Challenge { .. }), "{reply:?}");
    }
    let reply = setup.login.answer(&pending, "abc", peer(6)).await;
    assert!(
        matches!(reply, LoginReply::Failed(Failure::BadCode)),
        "{reply:?}"
    );
    let reply = setup.login.answer(&pending, "123456", peer(6)).await;
    assert!(
        matches!(reply, LoginReply::Failed(Failure::Expired)),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_user_without_a_device_may_only_enrol_unless_configured_otherwise() {
    let setup = setup(otp_section()).await;
    let reply = setup.login.start(&form("alice", "right"), peer(7)).await;
    assert!(
        matches!(
            reply,
            LoginReply::Session {
                scope: Scope::Enrol,
                ..
            }
        ),
        "{reply:?}"
    );
    let setup = self::setup(LoginSection {
        enrol_without_device: false,
        ..otp_section()
    })
    .await;
    let reply = setup.login.start(&form("alice", "right"), peer(7)).await;
    assert!(
        matches!(reply, LoginReply::Failed(Failure::NoDevice)),
        "{reply:?}"
    );
}

#[tokio::test]
async fn sessions_expire_when_idle_and_are_swept() {
    let setup = setup(LoginSection {
        session_idle_secs: 1,
        ..LoginSection::default()
    })
    .await;
    let LoginReply::Session { token, .. } =
        setup.login.start(&form("alice", "right"), peer(8)).await
    else {
        panic!("session");
    };
    assert!(setup.login.sessions().find(&token).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(setup.login.sessions().sweep().await.unwrap(), 1);
    assert!(setup.login.sessions().find(&token).await.unwrap().is_none());
}

mod push {
    use super::*;
    use crate::push::protocol::{self, AnswerBody, Decision as PushDecision, RegisterBody};
    use crate::push::{BuiltinPush, PushSettings, StoreSecrets};

    /// Alice with a phone in the store, a login offering push through a
    /// built-in provider waiting `wait`, and the phone's secret.
    async fn push_setup(wait: Duration) -> (Setup, BuiltinPush, totp::TotpSecret) {
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-login-push-{}-{}",
            std::process::id(),
            getrandom::u64().unwrap()
        ));
        let store = Store::open(&dir).await.unwrap();
        let key = OtpKey::from_bytes([7; 32]);
        let devices = OtpDevices::new(store.clone(), key.clone(), "Gatehouse");
        let enrolment = devices
            .add(
                &UserName::new("alice").unwrap(),
                &DeviceName::new("phone").unwrap(),
            )
            .await
            .unwrap();
        let service = BuiltinPush::new(
            PushSettings {
                enabled: true,
                wait,
                poll_hold: Duration::from_secs(5),
                connect_grace: Duration::from_secs(5),
                max_devices: 10,
                max_pending: 10,
            },
            Arc::new(StoreSecrets::new(store.clone(), key)),
        );
        let fake = Arc::new(Fake::default());
        let login = Login::new(
            LoginSection {
                schema: LoginSchema::PasswordOtpOrPush,
                ..LoginSection::default()
            },
            fake.clone(),
            UserDevices::Store(devices.clone()),
            None,
            store,
            "Gatehouse",
        )
        .with_push(Arc::new(service.clone()));
        let setup = Setup {
            login,
            fake,
            devices,
            dir,
        };
        (setup, service, enrolment.uri.secret)
    }

    async fn register(service: &BuiltinPush, secret: &totp::TotpSecret) -> String {
        let nonce = service.challenge().unwrap();
        let proof = protocol::register_proof(secret, &nonce, "alice", "phone");
        let body = RegisterBody {
            user: "alice".into(),
            device: "phone".into(),
            nonce,
            proof,
        };
        service.register(&body).await.unwrap().token
    }

    /// Opens a poll and returns the push it receives.
    fn poll(
        service: &BuiltinPush,
        token: &str,
    ) -> tokio::task::JoinHandle<Option<protocol::PushMessage>> {
        let service = service.clone();
        let token = token.to_owned();
        tokio::spawn(async move { service.poll(&token).await.unwrap() })
    }

    fn answer(id: &str, decision: PushDecision, number: &str) -> AnswerBody {
        AnswerBody {
            id: id.into(),
            decision,
            number: Some(number.into()),
        }
    }

    async fn push_started(setup: &Setup) -> (String, MatchNumber) {
        match setup.login.start(&form("alice", "right"), peer(9)).await {
            LoginReply::Push { pending, number } => (pending, number),
            reply => panic!("{reply:?}"),
        }
    }

    #[tokio::test]
    async fn a_push_approved_with_the_number_shown_logs_in_and_a_denial_is_refused() {
        let (setup, service, secret) = push_setup(Duration::from_secs(10)).await;
        let token = register(&service, &secret).await;
        let device = poll(&service, &token);
        tokio::task::yield_now().await;
        let (pending, number) = push_started(&setup).await;
        let push = device.await.unwrap().unwrap();
        let outcome = service
            .answer(
                &token,
                &answer(&push.id, PushDecision::Approve, &number.to_string()),
            )
            .unwrap();
        assert_eq!(outcome, PushOutcome::Approved);
        let reply = setup.login.push_wait(&pending, peer(9)).await;
        assert!(
            matches!(
                reply,
                LoginReply::Session {
                    scope: Scope::Full,
                    ..
                }
            ),
            "{reply:?}"
        );
        // Spent: the same pending cookie gets nothing more.
        let reply = setup.login.push_wait(&pending, peer(9)).await;
        assert!(
            matches!(reply, LoginReply::Failed(Failure::Expired)),
            "{reply:?}"
        );

        let device = poll(&service, &token);
        tokio::task::yield_now().await;
        let (pending, number) = push_started(&setup).await;
        let push = device.await.unwrap().unwrap();
        service
            .answer(
                &token,
                &answer(&push.id, PushDecision::Deny, &number.to_string()),
            )
            .unwrap();
        let reply = setup.login.push_wait(&pending, peer(9)).await;
        assert!(
            matches!(reply, LoginReply::Failed(Failure::PushDenied)),
            "{reply:?}"
        );
    }

    #[tokio::test]
    async fn a_wrong_number_is_refused_as_a_failure() {
        let (setup, service, secret) = push_setup(Duration::from_secs(10)).await;
        let token = register(&service, &secret).await;
        let device = poll(&service, &token);
        tokio::task::yield_now().await;
        let (pending, number) = push_started(&setup).await;
        let push = device.await.unwrap().unwrap();
        let wrong = MatchNumber::new((number.value() + 1) % 100).unwrap();
        let outcome = service
            .answer(
                &token,
                &answer(&push.id, PushDecision::Approve, &wrong.to_string()),
            )
            .unwrap();
        assert_eq!(outcome, PushOutcome::WrongNumber);
        let reply = setup.login.push_wait(&pending, peer(9)).await;
        assert!(
            matches!(reply, LoginReply::Failed(Failure::WrongNumber)),
            "{reply:?}"
        );
    }

    #[tokio::test]
    async fn no_answer_offers_the_fallback_and_a_resend_asks_again_for_the_same_login() {
        let (setup, service, secret) = push_setup(Duration::from_millis(300)).await;
        let token = register(&service, &secret).await;
        let device = poll(&service, &token);
        tokio::task::yield_now().await;
        let (pending, _) = push_started(&setup).await;
        let first = device.await.unwrap().unwrap();
        let reply = setup.login.push_wait(&pending, peer(9)).await;
        assert!(
            matches!(
                reply,
                LoginReply::PushFallback {
                    notice: Some(PushNotice::NoAnswer),
                    ..
                }
            ),
            "{reply:?}"
        );
        // A wrong code keeps the fallback page (with its resend button).
        let reply = setup.login.answer(&pending, "000000x", peer(9)).await;
        assert!(
            matches!(
                reply,
                LoginReply::PushFallback {
                    error: Some(Failure::BadCode),
                    ..
                }
            ),
            "{reply:?}"
        );

        let device = poll(&service, &token);
        tokio::task::yield_now().await;
        let reply = setup.login.resend_push(&pending, peer(9)).await;
        let LoginReply::Push {
            pending: same,
            number,
        } = reply
        else {
            panic!("{reply:?}");
        };
        assert_eq!(same, pending);
        let second = device.await.unwrap().unwrap();
        assert_ne!(second.id, first.id, "a new push");
        service
            .answer(
                &token,
                &answer(&second.id, PushDecision::Approve, &number.to_string()),
            )
            .unwrap();
        let reply = setup.login.push_wait(&pending, peer(9)).await;
        assert!(matches!(reply, LoginReply::Session { .. }), "{reply:?}");
    }

    #[tokio::test]
    async fn without_a_registered_device_the_fallback_takes_a_code() {
        let (setup, _service, secret) = push_setup(Duration::from_secs(10)).await;
        let reply = setup.login.start(&form("alice", "right"), peer(9)).await;
        let LoginReply::PushFallback {
            pending,
            notice: Some(PushNotice::NoDevice),
            ..
        } = reply
        else {
            panic!("{reply:?}");
        };
        let code = totp::code_at(&secret, now_secs(), TotpParams::GATEWAY);
        let reply = setup
            .login
            .answer(&pending, &format!("{:06}", code.value()), peer(9))
            .await;
        assert!(matches!(reply, LoginReply::Session { .. }), "{reply:?}");
    }
}
