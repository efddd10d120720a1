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

use gatehouse_tests::curl::Browser;
use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::radius::{FreeRadius, PROMPT, SECRET};

/// The raw answer (status line, headers, body) of `path` for the browser
/// `jar`: a POST of `fields`, or a GET without them.
fn curl(gatehouse: &Gatehouse, jar: &Browser, path: &str, fields: &[(&str, &str)]) -> String {
    jar.request(gatehouse, path, fields, None).text()
}

#[test]
fn dual_passwords_with_a_radius_challenge_log_bob_on() {
    let radius = FreeRadius::start();
    let gatehouse = Gatehouse::start(&format!(
        "[login]\nschema = \"password+radius\"\nsecond_password = true\n\
         [radius]\nservers = [\"{}\"]\nsecret = \"{SECRET}\"\ntimeout_ms = 2000\nretries = 1\n\
         require_message_authenticator = false\n",
        radius.addr()
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
    radius.stop();
}
