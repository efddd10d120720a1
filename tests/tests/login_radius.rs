//! User flow: dual passwords with a RADIUS challenge, end to end. The
//! real `gatehouse run` uses the local user directory for the first
//! password and a real FreeRADIUS (Debian package `freeradius`, started on
//! a free 127.0.0.1 UDP port with a minimal temporary raddb) for the
//! second (`passwd1`); the server answers `bob`'s second password with an
//! Access-Challenge whose Reply-Message becomes the page's prompt, and the
//! answer posted to `/cgi/dlge` (with the State echoed) logs bob on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gatehouse_tests::curl::Browser;
use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::process::Process;
use gatehouse_tests::temp::TempDir;

const SECRET: &str = "test-secret-42";
const PROMPT: &str = "Enter your token code";

/// A running FreeRADIUS, stopped by PID before its directory goes.
struct FreeRadius {
    process: Process,
    addr: SocketAddr,
    _dir: TempDir,
}

impl FreeRadius {
    fn start() -> Self {
        let binary = ["/usr/sbin/freeradius", "/usr/bin/freeradius"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .expect("freeradius is installed (Debian package freeradius; .ci/run installs it)");
        let dir = TempDir::new("freeradius");
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        write_raddb(dir.path(), port);
        let mut child = Command::new(binary)
            .arg("-X")
            .arg("-d")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("freeradius starts");
        let stdout = child.stdout.take().unwrap();
        let mut process = Process::new("freeradius", child, stdout);
        process.wait_for("Ready to process requests", |line| {
            line.contains("Ready to process requests")
        });
        Self {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        }
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

/// The raw answer (status line, headers, body) of `path` for the browser
/// `jar`: a POST of `fields`, or a GET without them.
fn curl(gatehouse: &Gatehouse, jar: &Browser, path: &str, fields: &[(&str, &str)]) -> String {
    jar.request(gatehouse, path, fields, None).text()
}

#[test]
fn dual_passwords_with_a_radius_challenge_log_bob_on() {
    let mut radius = FreeRadius::start();
    let gatehouse = Gatehouse::start(&format!(
        "[login]\nschema = \"password+radius\"\nsecond_password = true\n\
         [radius]\nservers = [\"{}\"]\nsecret = \"{SECRET}\"\ntimeout_ms = 2000\nretries = 1\n\
         require_message_authenticator = false\n",
        radius.addr
    ));
    for user in ["bob", "alice"] {
        let (code, _) = gatehouse.user_command(&["add", user], "local-password\n");
        assert_eq!(code, Some(0));
    }
    let jar = Browser::new();

    let page = curl(
        &gatehouse,
        &jar,
        "/cgi/login",
        &[
            ("login", "bob"),
            ("passwd", "local-password"),
            ("passwd1", "bob-password"),
        ],
    );
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains(PROMPT),
        "the Reply-Message is the prompt: {page}"
    );
    assert!(page.contains("action=\"/cgi/dlge\""), "{page}");
    let wrong = curl(&gatehouse, &jar, "/cgi/dlge", &[("response", "654321")]);
    assert!(
        wrong.contains("NSC_VPNERR=4001") || wrong.contains("not accepted"),
        "{wrong}"
    );

    // Start over and answer right.
    curl(
        &gatehouse,
        &jar,
        "/cgi/login",
        &[
            ("login", "bob"),
            ("passwd", "local-password"),
            ("passwd1", "bob-password"),
        ],
    );
    let done = curl(&gatehouse, &jar, "/cgi/dlge", &[("response", "123456")]);
    assert!(done.starts_with("HTTP/1.1 302"), "{done}");
    assert!(done.contains("/cgi/setclient?cvpn"), "{done}");
    let home = curl(&gatehouse, &jar, "/vpns/home.html", &[]);
    assert!(home.contains("<span id=\"user\">bob</span>"), "{home}");

    // alice: the right local password, a wrong RADIUS one.
    let jar2 = Browser::new();
    let refused = curl(
        &gatehouse,
        &jar2,
        "/cgi/login",
        &[
            ("login", "alice"),
            ("passwd", "local-password"),
            ("passwd1", "wrong"),
        ],
    );
    assert!(refused.contains("NSC_VPNERR=4001"), "{refused}");
    let events = gatehouse.stop();
    assert_eq!(
        count(
            &events,
            "login",
            &[
                ("user", "bob"),
                ("outcome", "success"),
                ("factor", "radius")
            ]
        ),
        1
    );
    assert_eq!(
        count(
            &events,
            "login",
            &[
                ("user", "alice"),
                ("factor", "second_password"),
                ("outcome", "failure")
            ]
        ),
        1
    );
    radius.process.stop();
}
