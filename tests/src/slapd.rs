//! A real OpenLDAP `slapd` (Debian packages `slapd` and `ldap-utils`) on a
//! free 127.0.0.1 port with a temporary `slapd.conf` and database, seeded
//! with `ldapadd`, stopped by PID when dropped.
//!
//! The directory has the base [`BASE`], the root [`ROOT_DN`], a service
//! account [`SERVICE_DN`] (what Gatehouse binds as: it reads everything and
//! writes the OTP attribute), the `memberof` overlay (so adding a group
//! fills its members' `memberOf`) and a schema with `gatehouseOtpDevices`
//! and `sAMAccountName` (auxiliary class `gatehouseUser`). Each test
//! supplies its own entries ([`Slapd::start`]); [`BASE_LDIF`] holds the
//! suffix, the `people`, `groups` and `services` units and the service
//! account. A missing binary fails the test with the package to install.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::TIMEOUT;
use crate::process::Process;
use crate::temp::TempDir;

/// The suffix.
pub const BASE: &str = "dc=example,dc=test";
/// The root DN.
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=test";
/// The root password.
pub const ROOT_PASSWORD: &str = "admin-secret";
/// The service account Gatehouse binds as.
pub const SERVICE_DN: &str = "cn=gatehouse,ou=services,dc=example,dc=test";
/// Its password.
pub const SERVICE_PASSWORD: &str = "service-secret";

/// The schema added to core, cosine and inetorgperson.
pub const SCHEMA: &str = "\
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

/// The entries every directory starts with: the suffix, `ou=people`,
/// `ou=groups`, `ou=services` and the service account.
pub const BASE_LDIF: &str = "\
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
";

/// A running, seeded slapd, stopped by PID before its directory goes.
#[derive(Debug)]
pub struct Slapd {
    process: Process,
    port: u16,
    _dir: TempDir,
}

/// The path of an installed system binary, or a failed test naming the
/// Debian package that provides it.
pub fn binary(name: &str, package: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .into_iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{name} is installed (Debian package {package})"))
}

impl Slapd {
    /// Starts slapd and adds [`BASE_LDIF`] then `entries` (LDIF; users
    /// before the groups naming them, so `memberOf` is filled).
    pub fn start(entries: &str) -> Self {
        let dir = TempDir::new("slapd");
        write_config(&dir, &format!("{BASE_LDIF}\n{entries}"));
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
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "slapd listens on {addr}");
            std::thread::sleep(std::time::Duration::from_millis(100));
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

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The `[ldap]` table of a Gatehouse configuration for this directory
    /// (service bind, [`BASE`], OTP attribute `gatehouseOtpDevices`).
    pub fn gatehouse_ldap_table(&self) -> String {
        format!(
            "[ldap]\nurl = \"{}\"\nbind_dn = \"{SERVICE_DN}\"\n\
             bind_password = \"{SERVICE_PASSWORD}\"\nbase_dn = \"{BASE}\"\n\
             otp_attribute = \"gatehouseOtpDevices\"\ntimeout_ms = 3000\n",
            self.url()
        )
    }

    /// `attribute` of the entry `dn` as LDIF (unwrapped), read as the
    /// service account.
    pub fn search(&self, dn: &str, attribute: &str) -> String {
        let output = Command::new(binary("ldapsearch", "ldap-utils"))
            .args(["-x", "-LLL", "-o", "ldif-wrap=no"])
            .args(["-H", &self.url()])
            .args(["-D", SERVICE_DN, "-w", SERVICE_PASSWORD, "-b", dn])
            .args(["-s", "base", attribute])
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    }

    /// SIGTERM by PID, bounded.
    pub fn stop(mut self) {
        self.process.stop();
    }
}

fn write_config(dir: &TempDir, seed: &str) {
    let path = dir.path();
    std::fs::create_dir_all(path.join("db")).unwrap();
    std::fs::write(path.join("gatehouse.schema"), SCHEMA).unwrap();
    std::fs::write(path.join("seed.ldif"), seed).unwrap();
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
