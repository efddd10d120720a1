//! The LDAP directory client against a real OpenLDAP `slapd` (Debian
//! packages `slapd` and `ldap-utils`), started by each test on a free
//! 127.0.0.1 port with a temporary `slapd.conf` (mdb backend, memberof
//! overlay) and seeded with `ldapadd` ([`gatehouse_tests::slapd`], which
//! the end-to-end tests start too).
//!
//! The schema adds one attribute for the OTP devices, `gatehouseOtpDevices`
//! (a directory string, single-valued), and `sAMAccountName` (Active
//! Directory's OID) to log in by it, both in the auxiliary class
//! `gatehouseUser`. The OIDs under 1.3.6.1.4.1.32473 are the documentation
//! enterprise number of RFC 5612. The server allows unauthenticated binds
//! (`allow bind_anon_dn`), so a client that sent an empty password would be
//! let in: the empty-password test would catch it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use gatehouse::ldap::{
    DirectoryError, GroupMode, LdapDirectory, LdapError, LdapSection, Operation, PasswordDirectory,
    UserInfo,
};
use gatehouse_tests::server::free_tcp_port;
use gatehouse_tests::slapd::{BASE, SERVICE_DN, SERVICE_PASSWORD, Slapd, TlsFiles};
use gatehouse_tests::temp::TempDir;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=test";
const BOB_DN: &str = "uid=bob,ou=people,dc=example,dc=test";

/// Added after the base entries ([`gatehouse_tests::slapd::BASE_LDIF`]).
/// Users first, then groups: the memberof overlay fills `memberOf` when a
/// group is added.
const SEED: &str = "\
dn: uid=alice,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: gatehouseUser
uid: alice
cn: Alice Liddell
sn: Liddell
sAMAccountName: alice.l
userPassword: alice-password

dn: uid=bob,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Builder
userPassword: bob-password

dn: cn=vpn-users,ou=groups,dc=example,dc=test
objectClass: groupOfNames
cn: vpn-users
member: uid=alice,ou=people,dc=example,dc=test
member: uid=bob,ou=people,dc=example,dc=test

dn: cn=admins,ou=groups,dc=example,dc=test
objectClass: groupOfNames
cn: admins
member: uid=alice,ou=people,dc=example,dc=test

dn: cn=legacy,ou=groups,dc=example,dc=test
objectClass: groupOfUniqueNames
cn: legacy
uniqueMember: uid=alice,ou=people,dc=example,dc=test
";

/// Plain `ldap://` only.
fn start() -> Slapd {
    Slapd::start(SEED)
}

/// `ldap://` (StartTLS offered) and `ldaps://`, with a certificate for
/// 127.0.0.1 signed by a CA generated for the test (in `dir`).
fn start_tls(dir: &TempDir) -> (Slapd, TlsFiles) {
    let tls = write_certificates(dir);
    (Slapd::start_with(SEED, Some(&tls)), tls)
}

/// The configuration of these tests: service account, `uid`, `memberOf`,
/// the test schema's OTP attribute, a short timeout.
fn section(slapd: &Slapd) -> LdapSection {
    LdapSection {
        url: Some(slapd.url()),
        bind_dn: Some(SERVICE_DN.to_owned()),
        bind_password: Some(gatehouse::config::Secret::new(SERVICE_PASSWORD)),
        base_dn: BASE.to_owned(),
        otp_attribute: "gatehouseOtpDevices".to_owned(),
        timeout_ms: 3_000,
        ..LdapSection::default()
    }
}

fn directory(slapd: &Slapd) -> LdapDirectory {
    directory_for(&section(slapd))
}

fn directory_for(section: &LdapSection) -> LdapDirectory {
    LdapDirectory::new(section.settings().unwrap().unwrap())
}

/// A CA and a certificate for 127.0.0.1 it signed, as PEM files.
fn write_certificates(dir: &TempDir) -> TlsFiles {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Gatehouse test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let tls = TlsFiles {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
    };
    std::fs::write(&tls.ca, ca_cert.pem()).unwrap();
    std::fs::write(&tls.cert, cert.pem()).unwrap();
    std::fs::write(&tls.key, key.serialize_pem()).unwrap();
    tls
}

fn group_names(user: &UserInfo) -> Vec<&str> {
    let mut names: Vec<&str> = user.groups.iter().map(|g| g.name.as_str()).collect();
    names.sort_unstable();
    names
}

async fn verify(
    directory: &LdapDirectory,
    login: &str,
    password: &str,
) -> Result<UserInfo, DirectoryError> {
    // Through the trait object, as the login flow will call it.
    let directory: &dyn PasswordDirectory = directory;
    directory.verify(login, password).await
}

#[tokio::test]
async fn logs_in_with_the_right_password_and_reads_groups_from_member_of() {
    let slapd = start();
    let user = verify(&directory(&slapd), "alice", "alice-password")
        .await
        .unwrap();
    assert_eq!(user.dn, ALICE_DN);
    assert_eq!(user.login, "alice");
    assert_eq!(user.name, "Alice Liddell");
    assert_eq!(group_names(&user), ["admins", "vpn-users"]);
    assert!(
        user.groups
            .iter()
            .any(|g| g.dn == "cn=admins,ou=groups,dc=example,dc=test")
    );
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_error() {
    let slapd = start();
    let directory = directory(&slapd);
    let wrong = verify(&directory, "alice", "bob-password")
        .await
        .unwrap_err();
    let unknown = verify(&directory, "carol", "alice-password")
        .await
        .unwrap_err();
    assert!(matches!(wrong, DirectoryError::Rejected), "{wrong:?}");
    assert!(matches!(unknown, DirectoryError::Rejected), "{unknown:?}");
    assert_eq!(wrong.to_string(), unknown.to_string());
    // Bob's password is right for bob only.
    let bob = verify(&directory, "bob", "bob-password").await.unwrap();
    assert_eq!(bob.dn, BOB_DN);
    assert_eq!(group_names(&bob), ["vpn-users"]);
}

#[tokio::test]
async fn an_empty_password_is_refused_although_the_server_would_accept_the_bind() {
    let slapd = start();
    // The precondition: this server answers an unauthenticated bind (DN,
    // no password) with success.
    let (conn, mut raw) = ldap3::LdapConnAsync::new(&slapd.url()).await.unwrap();
    tokio::spawn(async move { conn.drive().await });
    let bound = raw.simple_bind(ALICE_DN, "").await.unwrap();
    assert_eq!(bound.rc, 0, "slapd should allow unauthenticated binds here");
    let _ = raw.unbind().await;

    let error = verify(&directory(&slapd), "alice", "").await.unwrap_err();
    assert!(matches!(error, DirectoryError::Rejected), "{error:?}");
}

#[tokio::test]
async fn filter_syntax_in_the_login_matches_nothing() {
    let slapd = start();
    let directory = directory(&slapd);
    for login in [
        "*",
        "al*",
        "*)(uid=*",
        "alice)(|(uid=*",
        "*)(|(objectClass=*",
        "alice\\2a",
    ] {
        let error = verify(&directory, login, "alice-password")
            .await
            .unwrap_err();
        assert!(
            matches!(error, DirectoryError::Rejected),
            "{login}: {error:?}"
        );
    }
}

#[tokio::test]
async fn finds_users_by_sam_account_name() {
    let slapd = start();
    let section = LdapSection {
        user_attribute: "sAMAccountName".to_owned(),
        user_filter: "(objectClass=inetOrgPerson)".to_owned(),
        ..section(&slapd)
    };
    let user = verify(&directory_for(&section), "ALICE.L", "alice-password")
        .await
        .unwrap();
    assert_eq!(user.dn, ALICE_DN);
    assert_eq!(user.login, "alice.l");
    let error = verify(&directory_for(&section), "alice", "alice-password")
        .await
        .unwrap_err();
    assert!(matches!(error, DirectoryError::Rejected), "{error:?}");
}

#[tokio::test]
async fn reads_groups_by_search_on_member_or_unique_member() {
    let slapd = start();
    let by_member = LdapSection {
        group_mode: GroupMode::Search,
        group_base_dn: "ou=groups,dc=example,dc=test".to_owned(),
        ..section(&slapd)
    };
    let alice = verify(&directory_for(&by_member), "alice", "alice-password")
        .await
        .unwrap();
    assert_eq!(group_names(&alice), ["admins", "vpn-users"]);
    let bob = verify(&directory_for(&by_member), "bob", "bob-password")
        .await
        .unwrap();
    assert_eq!(group_names(&bob), ["vpn-users"]);

    let by_unique_member = LdapSection {
        group_member_attribute: "uniqueMember".to_owned(),
        ..by_member
    };
    let alice = verify(&directory_for(&by_unique_member), "alice", "alice-password")
        .await
        .unwrap();
    assert_eq!(group_names(&alice), ["legacy"]);

    let none = LdapSection {
        group_mode: GroupMode::None,
        ..section(&slapd)
    };
    let alice = verify(&directory_for(&none), "alice", "alice-password")
        .await
        .unwrap();
    assert!(alice.groups.is_empty());
}

#[tokio::test]
async fn the_otp_attribute_round_trips_through_the_directory() {
    let slapd = start();
    let directory = directory(&slapd);
    assert_eq!(directory.otp_attribute(ALICE_DN).await.unwrap(), None);

    let devices = "#@phone=JBSWY3DPEHPK3PXP&,#@tablet=KRSXG5CTMVRXEZLU&,";
    directory
        .set_otp_attribute(ALICE_DN, devices)
        .await
        .unwrap();
    assert_eq!(
        directory.otp_attribute(ALICE_DN).await.unwrap().as_deref(),
        Some(devices)
    );
    let one = "#@phone=JBSWY3DPEHPK3PXP&,";
    directory.set_otp_attribute(ALICE_DN, one).await.unwrap();
    assert_eq!(
        directory.otp_attribute(ALICE_DN).await.unwrap().as_deref(),
        Some(one)
    );
    directory.set_otp_attribute(ALICE_DN, "").await.unwrap();
    assert_eq!(directory.otp_attribute(ALICE_DN).await.unwrap(), None);
    // Removing an absent attribute is not an error either.
    directory.set_otp_attribute(ALICE_DN, "").await.unwrap();
}

#[tokio::test]
async fn otp_attribute_errors_are_typed() {
    let slapd = start();
    let directory = directory(&slapd);
    // Bob's entry lacks the auxiliary class: objectClassViolation (65).
    let error = directory
        .set_otp_attribute(BOB_DN, "#@phone=JBSWY3DPEHPK3PXP&,")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            LdapError::Refused {
                operation: Operation::WriteOtp,
                rc: 65,
                ..
            }
        ),
        "{error:?}"
    );
    let missing = "uid=nobody,ou=people,dc=example,dc=test";
    let error = directory.otp_attribute(missing).await.unwrap_err();
    assert!(
        matches!(error, LdapError::NoSuchEntry { ref dn, .. } if dn == missing),
        "{error:?}"
    );
    // A user is not the service account: the ACL refuses the write (50).
    let as_alice = LdapSection {
        bind_dn: Some(ALICE_DN.to_owned()),
        bind_password: Some(gatehouse::config::Secret::new("alice-password")),
        ..section(&slapd)
    };
    let error = directory_for(&as_alice)
        .set_otp_attribute(ALICE_DN, "#@evil=AAAA&,")
        .await
        .unwrap_err();
    assert!(
        matches!(error, LdapError::Refused { rc: 50, .. }),
        "{error:?}"
    );
    assert_eq!(directory.otp_attribute(ALICE_DN).await.unwrap(), None);
}

#[tokio::test]
async fn a_directory_that_cannot_answer_is_unavailable_not_a_rejection() {
    let slapd = start();
    let wrong_service = LdapSection {
        bind_password: Some(gatehouse::config::Secret::new("not-the-password")),
        ..section(&slapd)
    };
    let error = verify(&directory_for(&wrong_service), "alice", "alice-password")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DirectoryError::Unavailable(LdapError::Refused {
                operation: Operation::ServiceBind,
                rc: 49,
                ..
            })
        ),
        "{error:?}"
    );

    let closed = LdapSection {
        url: Some(format!("ldap://127.0.0.1:{}", free_tcp_port())),
        ..section(&slapd)
    };
    let error = verify(&directory_for(&closed), "alice", "alice-password")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DirectoryError::Unavailable(LdapError::Protocol {
                operation: Operation::Connect,
                ..
            })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_configured_time() {
    // Accepts TCP connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let section = LdapSection {
        url: Some(format!("ldap://{}", silent.local_addr().unwrap())),
        timeout_ms: 300,
        base_dn: BASE.to_owned(),
        bind_dn: Some(SERVICE_DN.to_owned()),
        bind_password: Some(gatehouse::config::Secret::new(SERVICE_PASSWORD)),
        ..LdapSection::default()
    };
    let started = Instant::now();
    let error = verify(&directory_for(&section), "alice", "alice-password")
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            error,
            DirectoryError::Unavailable(LdapError::Timeout {
                operation: Operation::ServiceBind,
                ..
            })
        ),
        "{error:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let started = Instant::now();
    let error = directory_for(&section)
        .otp_attribute(ALICE_DN)
        .await
        .unwrap_err();
    assert!(matches!(error, LdapError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(silent);
}

#[tokio::test]
async fn logs_in_over_ldaps_and_starttls_trusting_the_configured_ca() {
    let certificates = TempDir::new("slapd-tls");
    let (slapd, tls) = start_tls(&certificates);
    let ldaps = LdapSection {
        url: Some(format!("ldaps://127.0.0.1:{}", slapd.ldaps_port().unwrap())),
        ca_file: Some(tls.ca.clone()),
        ..section(&slapd)
    };
    let user = verify(&directory_for(&ldaps), "alice", "alice-password")
        .await
        .unwrap();
    assert_eq!(user.dn, ALICE_DN);

    let starttls = LdapSection {
        starttls: true,
        ca_file: Some(tls.ca.clone()),
        ..section(&slapd)
    };
    let user = verify(&directory_for(&starttls), "alice", "alice-password")
        .await
        .unwrap();
    assert_eq!(group_names(&user), ["admins", "vpn-users"]);
}

#[tokio::test]
async fn refuses_a_server_certificate_from_another_ca() {
    let certificates = TempDir::new("slapd-tls");
    let (slapd, _) = start_tls(&certificates);
    let other = TempDir::new("other-ca");
    let other_ca = write_certificates(&other).ca;
    let section = LdapSection {
        url: Some(format!("ldaps://127.0.0.1:{}", slapd.ldaps_port().unwrap())),
        ca_file: Some(other_ca),
        ..section(&slapd)
    };
    let error = verify(&directory_for(&section), "alice", "alice-password")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DirectoryError::Unavailable(LdapError::Protocol {
                operation: Operation::Connect,
                ..
            })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn push_finds_a_devices_secret_in_the_users_attribute_clear_or_sealed() {
    use gatehouse::auth::attribute::{DeviceEntry, encode};
    use gatehouse::auth::names::{DeviceName, UserName};
    use gatehouse::auth::seal::OtpKey;
    use gatehouse::auth::totp::TotpSecret;
    use gatehouse::push::{DeviceSecrets, LdapSecrets};

    let slapd = start();
    let directory = directory(&slapd);
    let dir = TempDir::new("push-key");
    let key = OtpKey::load_or_generate(None, dir.path()).unwrap();
    let tablet = TotpSecret::from_base32("KRSXG5CTMVRXEZLU").unwrap();
    let sealed = encode(
        &[DeviceEntry {
            name: DeviceName::new("tablet").unwrap(),
            secret: tablet.clone(),
        }],
        &key,
    )
    .unwrap();
    let value = format!("#@phone=JBSWY3DPEHPK3PXP&,{sealed}");
    directory.set_otp_attribute(ALICE_DN, &value).await.unwrap();

    let secrets = LdapSecrets::new(directory, key);
    let alice = UserName::new("alice").unwrap();
    let phone = secrets
        .secret(&alice, &DeviceName::new("phone").unwrap())
        .await
        .unwrap()
        .expect("the clear entry");
    assert_eq!(phone.to_base32(), "JBSWY3DPEHPK3PXP");
    let found = secrets
        .secret(&alice, &DeviceName::new("tablet").unwrap())
        .await
        .unwrap()
        .expect("the sealed entry");
    assert_eq!(found.to_base32(), tablet.to_base32());
    let none = secrets
        .secret(&alice, &DeviceName::new("watch").unwrap())
        .await
        .unwrap();
    assert!(none.is_none(), "no such device");
    let nobody = secrets
        .secret(
            &UserName::new("mallory").unwrap(),
            &DeviceName::new("phone").unwrap(),
        )
        .await
        .unwrap();
    assert!(nobody.is_none(), "no such user");
}
