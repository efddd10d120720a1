//! A real FreeRADIUS (Debian package `freeradius`) on a free 127.0.0.1
//! UDP port with a minimal temporary raddb, stopped by PID when dropped.
//!
//! One client, 127.0.0.1 with the shared secret [`SECRET`] and
//! `require_message_authenticator = yes` (a request with a missing or wrong
//! Message-Authenticator is dropped), and an unlang policy:
//!
//! - `alice` / `alice-password`: Access-Accept;
//! - `bob` / `bob-password`: Access-Challenge with Reply-Message [`PROMPT`]
//!   and a State (FreeRADIUS's session-state); the answer `123456` with
//!   that State: Access-Accept;
//! - everything else: Access-Reject.
//!
//! The server runs with `-X`: its log ([`FreeRadius::log`]) shows every
//! request it received, written before it answered.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::server::{Server, free_udp_port, system_binary};
use crate::temp::TempDir;

/// The shared secret of the one client (127.0.0.1).
pub const SECRET: &str = "test-secret-42";
/// bob's Reply-Message in the Access-Challenge.
pub const PROMPT: &str = "Enter your token code";

/// A running FreeRADIUS. Fields drop in order: the server is stopped by
/// PID before its directory is removed.
#[derive(Debug)]
pub struct FreeRadius {
    server: Server,
    addr: SocketAddr,
    _dir: TempDir,
}

impl FreeRadius {
    /// Starts it and waits until it is ready to process requests.
    pub fn start() -> Self {
        let freeradius = system_binary("freeradius", "freeradius");
        let dir = TempDir::new("freeradius");
        // A port taken between choosing and binding makes FreeRADIUS exit:
        // try again with another (bounded).
        for _ in 0..3 {
            let port = free_udp_port();
            write_raddb(dir.path(), port);
            let mut command = Command::new(&freeradius);
            command.arg("-X").arg("-d").arg(dir.path());
            let mut server = Server::start("freeradius", command, &dir.path().join("radiusd.log"));
            if server.wait_ready(|server| server.log().contains("Ready to process requests")) {
                return Self {
                    server,
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    _dir: dir,
                };
            }
            assert!(
                server.exited(),
                "freeradius did not come up within the startup time:\n{}",
                server.log()
            );
            assert!(
                server.log().contains("Address already in use"),
                "freeradius exited at startup:\n{}",
                server.log()
            );
        }
        panic!("freeradius did not start in 3 tries");
    }

    /// Where it listens (127.0.0.1, UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log so far (`-X`: every request it received).
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// SIGTERM by PID, bounded.
    pub fn stop(mut self) {
        self.server.stop();
    }
}

fn write_raddb(dir: &Path, port: u16) {
    let d = dir.display();
    // `dictionary` is required; the system dictionaries are read anyway.
    std::fs::write(dir.join("dictionary"), "").unwrap();
    let config = format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = {d}
sbindir = /usr/sbin
logdir = {d}
raddbdir = {d}
radacctdir = {d}
name = freeradius
confdir = {d}
modconfdir = {d}/mods-config
run_dir = {d}
db_dir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/radiusd.pid
max_request_time = 10
cleanup_delay = 1
max_requests = 256
hostname_lookups = no
log {{
    destination = stderr
    colourise = no
    auth = yes
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
client gatehouse {{
    ipaddr = 127.0.0.1
    secret = {SECRET}
    require_message_authenticator = yes
}}
modules {{
    pap {{
        normalise = yes
    }}
    always reject {{
        rcode = reject
    }}
    always handled {{
        rcode = handled
    }}
}}
server default {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {port}
    }}
    authorize {{
        if (User-Name == "alice") {{
            update control {{
                Cleartext-Password := "alice-password"
                Auth-Type := PAP
            }}
        }}
        elsif (User-Name == "bob") {{
            if (!State) {{
                update control {{
                    Cleartext-Password := "bob-password"
                    Auth-Type := TokenStep1
                }}
            }}
            else {{
                # The token code kept with the State by step 1; an unknown
                # State has no session-state, so nothing matches.
                update control {{
                    Cleartext-Password := "%{{session-state:Tmp-String-0}}"
                    Auth-Type := TokenStep2
                }}
            }}
        }}
        else {{
            reject
        }}
    }}
    authenticate {{
        Auth-Type PAP {{
            pap
        }}
        Auth-Type TokenStep1 {{
            pap
            update session-state {{
                Tmp-String-0 := "123456"
            }}
            update reply {{
                Reply-Message := "{PROMPT}"
            }}
            update control {{
                Response-Packet-Type := Access-Challenge
            }}
            handled
        }}
        Auth-Type TokenStep2 {{
            pap
        }}
    }}
}}
"#
    );
    std::fs::write(dir.join("radiusd.conf"), config).unwrap();
}
