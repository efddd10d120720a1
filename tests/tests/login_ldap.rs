//! User flow: LDAP password and a TOTP device kept in the user's LDAP
//! entry, end to end. The real `gatehouse run` checks passwords against a
//! real OpenLDAP `slapd` (Debian packages `slapd` and `ldap-utils`,
//! started on a free 127.0.0.1 port with a temporary `slapd.conf` and
//! seeded with `ldapadd`); alice's entry holds one device in the clear
//! `#@name=secret&,` form (accepted on read), the code comes from the real
//! `oathtool`, and a device added at `/manageotp` is written back to the
//! entry sealed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::process::Process;
use gatehouse_tests::temp::TempDir;

const BASE: &str = "dc=example,dc=test";
const ROOT_DN: &str = "cn=admin,dc=example,dc=test";
const ROOT_PASSWORD: &str = "admin-secret";
const SERVICE_DN: &str = "cn=gatehouse,ou=services,dc=example,dc=test";
const SERVICE_PASSWORD: &str = "service-secret";
const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=test";
const PHONE_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

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

/// A running, seeded slapd, stopped by PID before its directory goes.
struct Slapd {
    process: Process,
    port: u16,
    _dir: TempDir,
}

fn binary(name: &str, package: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .into_iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{name} is installed (Debian package {package})"))
}

impl Slapd {
    fn start() -> Self {
        let dir = TempDir::new("slapd");
        write_config(&dir);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(binary("slapd", "slapd"))
            .arg("-f")
            .arg(dir.path().join("slapd.conf"))
            .args(["-h", &format!("ldap://127.0.0.1:{port}/"), "-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("slapd starts");
        let stderr = child.stderr.take().unwrap();
        let process = Process::new("slapd", child, stderr);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "slapd listens on {addr}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let output = Command::new(binary("ldapadd", "ldap-utils"))
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{port}")])
            .args(["-D", ROOT_DN, "-w", ROOT_PASSWORD, "-f"])
            .arg(dir.path().join("seed.ldif"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "ldapadd failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self {
            process,
            port,
            _dir: dir,
        }
    }

    fn otp_attribute(&self) -> String {
        let output = Command::new(binary("ldapsearch", "ldap-utils"))
            .args(["-x", "-LLL", "-o", "ldif-wrap=no"])
            .args(["-H", &format!("ldap://127.0.0.1:{}", self.port)])
            .args(["-D", SERVICE_DN, "-w", SERVICE_PASSWORD, "-b", ALICE_DN])
            .args(["-s", "base", "gatehouseOtpDevices"])
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    }
}

fn write_config(dir: &TempDir) {
    let path = dir.path();
    std::fs::create_dir_all(path.join("db")).unwrap();
    std::fs::write(path.join("gatehouse.schema"), SCHEMA).unwrap();
    std::fs::write(path.join("seed.ldif"), SEED).unwrap();
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

fn curl(gatehouse: &Gatehouse, jar: &Path, path: &str, fields: &[(&str, &str)]) -> String {
    let port = gatehouse.gateway().port();
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--include", "--max-time", "20"])
        .arg("--cacert")
        .arg(gatehouse.certificate())
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg("--cookie")
        .arg(jar)
        .arg("--cookie-jar")
        .arg(jar);
    for (name, value) in fields {
        command
            .arg("--data-urlencode")
            .arg(format!("{name}={value}"));
    }
    let output = command
        .arg(format!("https://localhost:{port}{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
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
    let mut slapd = Slapd::start();
    let gatehouse = Gatehouse::start(&format!(
        "[login]\nschema = \"password+otp\"\n\
         [ldap]\nurl = \"ldap://127.0.0.1:{}\"\nbind_dn = \"{SERVICE_DN}\"\n\
         bind_password = \"{SERVICE_PASSWORD}\"\nbase_dn = \"{BASE}\"\n\
         otp_attribute = \"gatehouseOtpDevices\"\ntimeout_ms = 3000\n",
        slapd.port
    ));
    let browser = TempDir::new("browser");
    let jar = browser.path().join("cookies.txt");
    std::fs::write(&jar, "").unwrap();

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
    let stored = slapd.otp_attribute();
    assert!(stored.contains("#@phone=gh1."), "{stored}");
    assert!(stored.contains("#@tablet=gh1."), "{stored}");
    assert!(!stored.contains(PHONE_SECRET), "{stored}");

    let events = gatehouse.stop();
    assert_eq!(
        count(
            &events,
            "login",
            &[("user", "alice"), ("factor", "otp"), ("outcome", "success")]
        ),
        1
    );
    slapd.process.stop();
}
