//! User flow: LDAP password and a TOTP device kept in the user's LDAP
//! entry, end to end. The real `gatehouse run` checks passwords against a
//! real OpenLDAP `slapd` (Debian packages `slapd` and `ldap-utils`,
//! [`gatehouse_tests::slapd`]); alice's entry holds one device in the clear
//! `#@name=secret&,` form (accepted on read), the code comes from the real
//! `oathtool`, and a device added at `/manageotp` is written back to the
//! entry sealed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::process::Command;

use gatehouse_tests::curl::Browser;
use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::slapd::Slapd;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=test";
const PHONE_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

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
gatehouseOtpDevices: #@phone=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&,

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

/// The raw answer (status line, headers, body) of `path` for the browser
/// `jar`: a POST of `fields`, or a GET without them.
fn curl(gatehouse: &Gatehouse, jar: &Browser, path: &str, fields: &[(&str, &str)]) -> String {
    jar.request(gatehouse, path, fields, None).text()
}

fn oathtool(secret: &str) -> String {
    let output = Command::new("oathtool")
        .args(["--totp", "--base32", secret])
        .output()
        .expect("oathtool runs (.ci/run installs oathtool)");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {text}"))
        + start.len();
    let len = text[from..].find(end).unwrap();
    &text[from..from + len]
}

#[test]
fn an_ldap_user_logs_on_with_a_code_of_the_device_in_her_entry() {
    let slapd = Slapd::start(SEED);
    let gatehouse = Gatehouse::start(&format!(
        "[login]\nschema = \"password+otp\"\n{}",
        slapd.gatehouse_ldap_table()
    ));
    let jar = Browser::new();

    let wrong = curl(
        &gatehouse,
        &jar,
        "/cgi/login",
        &[("login", "alice"), ("passwd", "wrong"), ("passwd1", "")],
    );
    assert!(wrong.contains("NSC_VPNERR=4001"), "{wrong}");
    let challenge = curl(
        &gatehouse,
        &jar,
        "/cgi/login",
        &[
            ("login", "alice"),
            ("passwd", "alice-password"),
            ("passwd1", ""),
        ],
    );
    assert!(
        challenge.contains("Enter the code from your authenticator"),
        "{challenge}"
    );
    let code = oathtool(PHONE_SECRET);
    let done = curl(&gatehouse, &jar, "/cgi/dlge", &[("response", &code)]);
    assert!(done.starts_with("HTTP/1.1 302"), "{done}");
    let home = curl(&gatehouse, &jar, "/vpns/home.html", &[]);
    assert!(
        home.contains("Alice Liddell"),
        "the directory's name: {home}"
    );

    // A second device, written back to the entry, every secret sealed.
    let manage = curl(&gatehouse, &jar, "/manageotp", &[]);
    assert!(
        manage.contains("<span class=\"device\">phone</span>"),
        "{manage}"
    );
    let csrf = between(&manage, "name=\"csrf\" value=\"", "\"").to_owned();
    let added = curl(
        &gatehouse,
        &jar,
        "/manageotp/add",
        &[("csrf", &csrf), ("device", "tablet")],
    );
    assert!(added.contains("otpauth://totp/"), "{added}");
    let stored = slapd.search(ALICE_DN, "gatehouseOtpDevices");
    assert!(stored.contains("#@phone=gh1."), "{stored}");
    assert!(stored.contains("#@tablet=gh1."), "{stored}");
    assert!(!stored.contains(PHONE_SECRET), "{stored}");

    // An administrator sees and removes devices in the entry through the
    // REST API.
    let token = gatehouse.admin_api_token("ldap-test");
    let (status, listed) = gatehouse.api(&token, "GET", "/api/v1/users/alice/otp-devices");
    assert_eq!(status, 200, "{listed}");
    assert!(listed.contains(r#""name":"phone""#), "{listed}");
    assert!(listed.contains(r#""name":"tablet""#), "{listed}");
    let (status, body) = gatehouse.api(&token, "DELETE", "/api/v1/users/alice/otp-devices/tablet");
    assert_eq!(status, 204, "{body}");
    let stored = slapd.search(ALICE_DN, "gatehouseOtpDevices");
    assert!(stored.contains("#@phone=gh1."), "{stored}");
    assert!(
        !stored.contains("#@tablet="),
        "removed from the entry: {stored}"
    );
    let (status, _) = gatehouse.api(&token, "DELETE", "/api/v1/users/alice/otp-devices/tablet");
    assert_eq!(status, 404);
    let (status, _) = gatehouse.api(&token, "GET", "/api/v1/users/nobody/otp-devices");
    assert_eq!(status, 404, "a user the directory does not know");

    let events = gatehouse.stop();
    assert_eq!(
        count(
            &events,
            "login",
            &[("user", "alice"), ("factor", "otp"), ("outcome", "success")]
        ),
        1
    );
    slapd.stop();
}
