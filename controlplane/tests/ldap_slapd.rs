//! The LDAP directory client against a real OpenLDAP `slapd` (Debian
//! packages `slapd` and `ldap-utils`), started by each test on a free
//! 127.0.0.1 port with a temporary `slapd.conf` (mdb backend, memberof
//! overlay) and seeded with `ldapadd`.
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

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse::ldap::{
    DirectoryError, GroupMode, LdapDirectory, LdapError, LdapSection, Operation, PasswordDirectory,
    UserInfo,
};
use support::{Server, TempDir, accepts_tcp, free_tcp_port, require_binary};

const BASE: &str = "dc=example,dc=test";
const ROOT_DN: &str = "cn=admin,dc=example,dc=test";
const ROOT_PASSWORD: &str = "admin-secret";
const SERVICE_DN: &str = "cn=gatehouse,ou=services,dc=example,dc=test";
const SERVICE_PASSWORD: &str = "service-secret";
const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=test";
const BOB_DN: &str = "uid=bob,ou=people,dc=example,dc=test";

const SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.32473.1.1.1 NAME 'gatehouseOtpDevices'
    DESC 'Gatehouse OTP devices: #@name=secret&, repeated'
    EQUALITY caseExactMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{4096}
    SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
    EQUALITY caseIgnoreMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15
    SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.32473.1.2.1 NAME 'gatehouseUser'
    AUXILIARY
    MAY ( gatehouseOtpDevices $ sAMAccountName ) )
";

/// Users first, then groups: the memberof overlay fills `memberOf` when a
/// group is added.
const SEED: &str = "\
dn: dc=example,dc=test
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,dc=example,dc=test
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=test
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=test
objectClass: organizationalUnit
ou: services

dn: cn=gatehouse,ou=services,dc=example,dc=test
objectClass: person
cn: gatehouse
sn: service
userPassword: service-secret

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

/// Certificate files for the TLS listeners.
struct Tls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A running, seeded slapd. Fields drop in order: the server is killed
/// before its directory is removed.
struct Slapd {
    _server: Server,
    port: u16,
    ldaps_port: Option<u16>,
    ca: Option<PathBuf>,
    dir: TempDir,
}

impl Slapd {
    /// Plain `ldap://` only.
    fn start() -> Self {
        Self::start_with(false)
    }

    /// `ldap://` (StartTLS offered) and `ldaps://`, with a certificate for
    /// 127.0.0.1 signed by a CA generated for the test.
    fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        let slapd = require_binary("slapd", "slapd");
        let ldapadd = require_binary("ldapadd", "ldap-utils");
        let dir = TempDir::new("slapd");
        let tls = tls.then(|| write_certificates(&dir));
        write_config(&dir, tls.as_ref());
        // A port taken between choosing and binding makes slapd exit: try
        // again with another (bounded).
        for _ in 0..3 {
            let port = free_tcp_port();
            let ldaps_port = tls.as_ref().map(|_| free_tcp_port());
            let mut urls = format!("ldap://127.0.0.1:{port}/");
            if let Some(ldaps) = ldaps_port {
                urls.push_str(&format!(" ldaps://127.0.0.1:{ldaps}/"));
            }
            let mut command = Command::new(&slapd);
            command
                .arg("-f")
                .arg(dir.path().join("slapd.conf"))
                .args(["-h", &urls, "-d", "0"]);
            let mut server = Server::start("slapd", command, &dir.path().join("slapd.log"));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if !server.wait_ready(|_| accepts_tcp(addr)) {
                assert!(
                    server.exited(),
                    "slapd did not listen within the startup time:\n{}",
                    server.log()
                );
                continue;
            }
            let output = Command::new(&ldapadd)
                .args(["-x", "-H", &format!("ldap://127.0.0.1:{port}")])
                .args(["-D", ROOT_DN, "-w", ROOT_PASSWORD, "-f"])
                .arg(dir.path().join("seed.ldif"))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "ldapadd failed: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                server.log()
            );
            return Self {
                _server: server,
                port,
                ldaps_port,
                ca: tls.map(|tls| tls.ca),
                dir,
            };
        }
        panic!(
            "slapd did not start in 3 tries:\n{}",
            std::fs::read_to_string(dir.path().join("slapd.log")).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The configuration of these tests: service account, `uid`,
    /// `memberOf`, the test schema's OTP attribute, a short timeout.
    fn section(&self) -> LdapSection {
        LdapSection {
            url: Some(self.url()),
            bind_dn: Some(SERVICE_DN.to_owned()),
            bind_password: Some(gatehouse::config::Secret::new(SERVICE_PASSWORD)),
            base_dn: BASE.to_owned(),
            otp_attribute: "gatehouseOtpDevices".to_owned(),
            timeout_ms: 3_000,
            ..LdapSection::default()
        }
    }

    fn directory(&self) -> LdapDirectory {
        directory_for(&self.section())
    }
}

fn directory_for(section: &LdapSection) -> LdapDirectory {
    LdapDirectory::new(section.settings().unwrap().unwrap())
}

fn write_config(dir: &TempDir, tls: Option<&Tls>) {
    let path = dir.path();
    std::fs::create_dir_all(path.join("db")).unwrap();
    std::fs::write(path.join("gatehouse.schema"), SCHEMA).unwrap();
    std::fs::write(path.join("seed.ldif"), SEED).unwrap();
    let mut tls_lines = String::new();
    if let Some(tls) = tls {
        tls_lines = format!(
            "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
            tls.ca.display(),
            tls.cert.display(),
            tls.key.display()
        );
    }
    let p = path.display();
    let config = format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {p}/gatehouse.schema
pidfile {p}/slapd.pid
argsfile {p}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
allow bind_anon_dn
{tls_lines}
database mdb
maxsize 10485760
suffix \"{BASE}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PASSWORD}
directory {p}/db
overlay memberof
access to attrs=userPassword
    by anonymous auth
    by * none
access to attrs=gatehouseOtpDevices
    by dn.exact=\"{SERVICE_DN}\" write
    by * none
access to *
    by dn.exact=\"{SERVICE_DN}\" read
    by self read
    by * none
"
    );
    std::fs::write(path.join("slapd.conf"), config).unwrap();
}

/// A CA and a certificate for 127.0.0.1 it signed, as PEM files.
fn write_certificates(dir: &TempDir) -> Tls {
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
    let tls = Tls {
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
    let slapd = Slapd::start();
    let user = verify(&slapd.directory(), "alice", "alice-password")
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
    let slapd = Slapd::start();
    let directory = slapd.directory();
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
    let slapd = Slapd::start();
    // The precondition: this server answers an unauthenticated bind (DN,
    // no password) with success.
    let (conn, mut raw) = ldap3::LdapConnAsync::new(&slapd.url()).await.unwrap();
    tokio::spawn(async move { conn.drive().await });
    let bound = raw.simple_bind(ALICE_DN, "").await.unwrap();
    assert_eq!(bound.rc, 0, "slapd should allow unauthenticated binds here");
    let _ = raw.unbind().await;

    let error = verify(&slapd.directory(), "alice", "").await.unwrap_err();
    assert!(matches!(error, DirectoryError::Rejected), "{error:?}");
}

#[tokio::test]
async fn filter_syntax_in_the_login_matches_nothing() {
    let slapd = Slapd::start();
    let directory = slapd.directory();
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
    let slapd = Slapd::start();
    let section = LdapSection {
        user_attribute: "sAMAccountName".to_owned(),
        user_filter: "(objectClass=inetOrgPerson)".to_owned(),
        ..slapd.section()
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
    let slapd = Slapd::start();
    let by_member = LdapSection {
        group_mode: GroupMode::Search,
        group_base_dn: "ou=groups,dc=example,dc=test".to_owned(),
        ..slapd.section()
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
        ..slapd.section()
    };
    let alice = verify(&directory_for(&none), "alice", "alice-password")
        .await
        .unwrap();
    assert!(alice.groups.is_empty());
}

#[tokio::test]
async fn the_otp_attribute_round_trips_through_the_directory() {
    let slapd = Slapd::start();
    let directory = slapd.directory();
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
    let slapd = Slapd::start();
    let directory = slapd.directory();
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
        ..slapd.section()
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
    let slapd = Slapd::start();
    let wrong_service = LdapSection {
        bind_password: Some(gatehouse::config::Secret::new("not-the-password")),
        ..slapd.section()
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
        ..slapd.section()
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
    let slapd = Slapd::start_tls();
    let ldaps = LdapSection {
        url: Some(format!("ldaps://127.0.0.1:{}", slapd.ldaps_port.unwrap())),
        ca_file: slapd.ca.clone(),
        ..slapd.section()
    };
    let user = verify(&directory_for(&ldaps), "alice", "alice-password")
        .await
        .unwrap();
    assert_eq!(user.dn, ALICE_DN);

    let starttls = LdapSection {
        starttls: true,
        ca_file: slapd.ca.clone(),
        ..slapd.section()
    };
    let user = verify(&directory_for(&starttls), "alice", "alice-password")
        .await
        .unwrap();
    assert_eq!(group_names(&user), ["admins", "vpn-users"]);
}

#[tokio::test]
async fn refuses_a_server_certificate_from_another_ca() {
    let slapd = Slapd::start_tls();
    let other = TempDir::new("other-ca");
    let other_ca = write_certificates(&other).ca;
    let section = LdapSection {
        url: Some(format!("ldaps://127.0.0.1:{}", slapd.ldaps_port.unwrap())),
        ca_file: Some(other_ca),
        ..slapd.section()
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
    assert!(slapd.dir.path().exists());
}

#[tokio::test]
async fn push_finds_a_devices_secret_in_the_users_attribute_clear_or_sealed() {
    use gatehouse::auth::attribute::{DeviceEntry, encode};
    use gatehouse::auth::names::{DeviceName, UserName};
    use gatehouse::auth::seal::OtpKey;
    use gatehouse::auth::totp::TotpSecret;
    use gatehouse::push::{DeviceSecrets, LdapSecrets};

    let slapd = Slapd::start();
    let directory = slapd.directory();
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
