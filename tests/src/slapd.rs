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
//! [`Slapd::start_with`] adds StartTLS and an `ldaps://` listener with
//! certificate files the test made ([`TlsFiles`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use crate::TIMEOUT;
use crate::server::{Server, accepts_tcp, free_tcp_port, system_binary};
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

/// The certificate files of slapd's TLS listeners (PEM): `ldaps://` and
/// StartTLS on `ldap://`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed `cert`.
    pub ca: PathBuf,
    /// The server certificate (for 127.0.0.1).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A running, seeded slapd. Fields drop in order: the server is stopped
/// by PID before its directory is removed.
#[derive(Debug)]
pub struct Slapd {
    server: Server,
    port: u16,
    ldaps_port: Option<u16>,
    _dir: TempDir,
}

impl Slapd {
    /// Starts slapd on `ldap://` and adds [`BASE_LDIF`] then `entries`
    /// (LDIF; users before the groups naming them, so `memberOf` is
    /// filled).
    pub fn start(entries: &str) -> Self {
        Self::start_with(entries, None)
    }

    /// [`Slapd::start`], and with `tls` also StartTLS on `ldap://` and an
    /// `ldaps://` listener ([`Slapd::ldaps_port`]).
    pub fn start_with(entries: &str, tls: Option<&TlsFiles>) -> Self {
        let slapd = system_binary("slapd", "slapd");
        let dir = TempDir::new("slapd");
        write_config(&dir, &format!("{BASE_LDIF}\n{entries}"), tls);
        // A port taken between choosing and binding makes slapd exit: try
        // again with others (bounded).
        for _ in 0..3 {
            let port = free_tcp_port();
            let ldaps_port = tls.map(|_| free_tcp_port());
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
                    "slapd did not listen on {addr} within {TIMEOUT:?}:\n{}",
                    server.log()
                );
                continue;
            }
            let output = Command::new(system_binary("ldapadd", "ldap-utils"))
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
                server,
                port,
                ldaps_port,
                _dir: dir,
            };
        }
        panic!(
            "slapd did not start in 3 tries:\n{}",
            std::fs::read_to_string(dir.path().join("slapd.log")).unwrap_or_default()
        );
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `ldaps://` port, when started with TLS.
    pub fn ldaps_port(&self) -> Option<u16> {
        self.ldaps_port
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
        let output = Command::new(system_binary("ldapsearch", "ldap-utils"))
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
        self.server.stop();
    }
}

fn write_config(dir: &TempDir, seed: &str, tls: Option<&TlsFiles>) {
    let path = dir.path();
    std::fs::create_dir_all(path.join("db")).unwrap();
    std::fs::write(path.join("gatehouse.schema"), SCHEMA).unwrap();
    std::fs::write(path.join("seed.ldif"), seed).unwrap();
    let tls_lines = tls.map_or_else(String::new, |tls| {
        format!(
            "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
            tls.ca.display(),
            tls.cert.display(),
            tls.key.display()
        )
    });
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
