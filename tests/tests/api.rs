//! User flow: an administrator runs the gateway through the REST API
//! (`/api/v1` on the internal listener of the real `gatehouse run`) and
//! `gatehousectl`: tokens from `gatehouse api-token`, every resource
//! through create/read/update/delete with an admin and a read-only token,
//! the audit log, the configuration overlay surviving a restart, killing a
//! live session, and the OpenAPI document checked by independent tools
//! (`openapi-spec-validator`, `schemathesis`) from the Python venv that
//! `.ci/run` creates in `target/pyenv` (or `GATEHOUSE_PYENV`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gatehouse_tests::TIMEOUT;
use gatehouse_tests::bins;
use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::socks::{self, REPLY_SUCCEEDED};
use gatehouse_tests::vda_sim::VdaSim;
use serde_json::{Value, json};

const PLAINTEXT: &str = "[gateway]\nplaintext = true\n";

/// `METHOD PATH` at `admin` with `token` and a JSON `body`: the status and
/// the JSON answer (`Null` when empty).
fn http(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    gatehouse_tests::http::json(admin, method, path, token, body)
}

/// `gatehouse api-token create --name NAME --role ROLE` next to `gatehouse`.
fn cli_token(gatehouse: &Gatehouse, name: &str, role: &str) -> String {
    let output = api_token_command(gatehouse, &["create", "--name", name, "--role", role]);
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("gh_"), "{token}");
    token
}

fn api_token_command(gatehouse: &Gatehouse, args: &[&str]) -> Output {
    Command::new(bins::gatehouse())
        .arg("api-token")
        .arg("--config")
        .arg(gatehouse.config_path())
        .arg("--data-dir")
        .arg(gatehouse.data_dir())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// One configuration-backed resource: its collection, an item, its key,
/// and the item changed.
struct Case {
    collection: &'static str,
    item: Value,
    key: &'static str,
    changed: Value,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            collection: "delivery-groups",
            item: json!({"name": "pool", "kind": "shared"}),
            key: "pool",
            changed: json!({"name": "pool", "kind": "shared", "exclusive": true}),
        },
        Case {
            collection: "delivery-groups",
            item: json!({"name": "office", "kind": "private"}),
            key: "office",
            changed: json!({"name": "office", "kind": "private", "assign_on_first_use": false}),
        },
        Case {
            collection: "desktops",
            item: json!({"worker": "vda1", "group": "pool"}),
            key: "vda1",
            changed: json!({"worker": "vda1", "group": "office"}),
        },
        Case {
            collection: "desktops",
            item: json!({"worker": "vda2", "group": "office"}),
            key: "vda2",
            changed: json!({"worker": "vda2", "group": "office"}),
        },
        Case {
            collection: "resources",
            item: json!({"name": "Notepad", "kind": "app", "group": "pool"}),
            key: "Notepad",
            changed: json!({"name": "Notepad", "kind": "app", "group": "pool", "users": ["alice"]}),
        },
        Case {
            collection: "assignments",
            item: json!({"desktop": "vda2", "users": ["bob"]}),
            key: "vda2",
            changed: json!({"desktop": "vda2", "users": ["bob", "carol"]}),
        },
        Case {
            collection: "sta-servers",
            item: json!({"id": "STA0002", "url": "http://127.0.0.1:9/scripts/ctxsta.dll"}),
            key: "STA0002",
            changed: json!({"id": "STA0002", "url": "http://127.0.0.1:10/scripts/ctxsta.dll"}),
        },
        Case {
            collection: "iip-pools",
            item: json!({"name": "hq", "location": "dc1", "cidr": "127.78.0.0/24"}),
            key: "hq",
            changed: json!({"name": "hq", "location": "dc1", "cidr": "127.78.0.0/24", "users": ["alice"]}),
        },
        Case {
            collection: "server-to-client-apps",
            item: json!({"name": "vnc", "servers": ["127.0.9.0/24"], "ports": [5900]}),
            key: "vnc",
            changed: json!({"name": "vnc", "description": "VNC to the laptop",
                "servers": ["127.0.9.0/24"], "ports": [5900, 5901], "protocol": "tcp"}),
        },
        Case {
            collection: "policies",
            item: json!({"name": "no-notepad", "action": "deny", "resources": ["Notepad"]}),
            key: "no-notepad",
            changed: json!({"name": "no-notepad", "action": "deny", "resources": ["Notepad"],
                "clients": ["192.0.2.0/24"], "days": ["mon", "tue"], "hours": "08:00-18:00"}),
        },
    ]
}

/// Whether `got` has every field of `want` with the same value.
fn contains(got: &Value, want: &Value) -> bool {
    want.as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| got.get(k) == Some(v))
}

#[test]
fn every_resource_goes_through_crud_and_read_only_tokens_are_refused_writes() {
    let gatehouse = Gatehouse::start(PLAINTEXT);
    let admin = gatehouse.admin();
    let root = cli_token(&gatehouse, "root-admin", "admin");
    let reader = cli_token(&gatehouse, "reader", "read-only");
    let (root, reader) = (Some(root.as_str()), Some(reader.as_str()));

    let (status, body) = http(admin, "GET", "/api/v1/delivery-groups", None, None);
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) = http(admin, "GET", "/api/v1/sessions", Some("gh_nope"), None);
    assert_eq!(status, 401, "an unknown token is refused");

    for case in cases() {
        let all = format!("/api/v1/{}", case.collection);
        let one = format!("{all}/{}", case.key);
        let (status, body) = http(admin, "POST", &all, reader, Some(&case.item));
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden_role"))
        );
        let (status, body) = http(admin, "POST", &all, root, Some(&case.item));
        assert_eq!(status, 201, "create {all}: {body}");
        assert!(contains(&body, &case.item), "{body}");
        let (status, body) = http(admin, "POST", &all, root, Some(&case.item));
        assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
        let (status, body) = http(admin, "GET", &one, reader, None);
        assert_eq!(status, 200, "read {one}: {body}");
        assert!(contains(&body, &case.item), "{body}");
        let (status, _) = http(admin, "PUT", &one, reader, Some(&case.changed));
        assert_eq!(status, 403);
        let (status, body) = http(admin, "PUT", &one, root, Some(&case.changed));
        assert_eq!(status, 200, "update {one}: {body}");
        let (_, list) = http(admin, "GET", &all, reader, None);
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .any(|i| contains(i, &case.changed)),
            "{list}"
        );
    }

    // Validation names the field; nothing half-applied.
    let bad = json!({"worker": "vda9", "group": "nowhere"});
    let (status, body) = http(admin, "POST", "/api/v1/desktops", root, Some(&bad));
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed"))
    );
    assert_eq!(body["field"], "broker.desktops", "{body}");
    let bad = json!({"name": "x", "kind": "weird"});
    let (status, body) = http(admin, "POST", "/api/v1/delivery-groups", root, Some(&bad));
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("kind")),
        "{body}"
    );
    let (status, body) = http(
        admin,
        "DELETE",
        "/api/v1/delivery-groups/office",
        root,
        None,
    );
    assert_eq!(status, 400, "a group desktops use stays: {body}");
    let (status, _) = http(admin, "GET", "/api/v1/desktops/vda9", root, None);
    assert_eq!(status, 404);

    // Read-only resources.
    let (status, list) = http(admin, "GET", "/api/v1/listeners", reader, None);
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gateway", "admin"]);
    assert_eq!(list[0]["transport"], "plaintext");
    assert_eq!(list[0]["address"], gatehouse.gateway().to_string());
    assert_eq!(list[1]["address"], admin.to_string());
    assert_eq!(
        http(admin, "GET", "/api/v1/workers", reader, None),
        (200, json!([]))
    );
    assert_eq!(
        http(admin, "GET", "/api/v1/workers/w1", reader, None).0,
        404
    );
    assert_eq!(
        http(admin, "GET", "/api/v1/sessions", reader, None),
        (200, json!([]))
    );

    // A registered worker, then forgotten.
    let register = json!({"version": 1, "worker": "w1", "ica": "127.0.0.1:1494"});
    let (status, _) = http(admin, "POST", "/broker/v1/register", None, Some(&register));
    assert_eq!(status, 200);
    let (status, worker) = http(admin, "GET", "/api/v1/workers/w1", reader, None);
    assert_eq!(
        (status, &worker["ica"]),
        (200, &json!("127.0.0.1:1494")),
        "{worker}"
    );
    assert_eq!(worker["available"], true);
    assert_eq!(
        http(admin, "DELETE", "/api/v1/workers/w1", reader, None).0,
        403
    );
    assert_eq!(
        http(admin, "DELETE", "/api/v1/workers/w1", root, None),
        (200, worker)
    );
    assert_eq!(
        http(admin, "GET", "/api/v1/workers/w1", reader, None).0,
        404
    );
    assert_eq!(
        http(admin, "GET", "/api/v1/workers", reader, None),
        (200, json!([]))
    );

    // OTP devices.
    assert_eq!(
        gatehouse
            .user_command(&["add", "alice", "--password-stdin"], "Secret-pass-1\n")
            .0,
        Some(0)
    );
    assert_eq!(
        gatehouse
            .user_command(&["otp", "add", "alice", "phone"], "")
            .0,
        Some(0)
    );
    let devices = "/api/v1/users/alice/otp-devices";
    let (status, list) = http(admin, "GET", devices, reader, None);
    assert_eq!(
        (status, list[0]["name"].as_str()),
        (200, Some("phone")),
        "{list}"
    );
    assert_eq!(
        http(admin, "DELETE", &format!("{devices}/phone"), reader, None).0,
        403
    );
    assert_eq!(
        http(admin, "DELETE", &format!("{devices}/phone"), root, None).0,
        204
    );
    assert_eq!(http(admin, "GET", devices, reader, None), (200, json!([])));
    assert_eq!(
        http(admin, "DELETE", &format!("{devices}/phone"), root, None).0,
        404
    );

    // Tokens through the API.
    assert_eq!(http(admin, "GET", "/api/v1/tokens", reader, None).0, 403);
    let new = json!({"name": "ci", "role": "read-only"});
    let (status, created) = http(admin, "POST", "/api/v1/tokens", root, Some(&new));
    assert_eq!(status, 201, "{created}");
    let ci = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        http(admin, "GET", "/api/v1/listeners", Some(&ci), None).0,
        200
    );
    let (_, tokens) = http(admin, "GET", "/api/v1/tokens", root, None);
    assert!(tokens.to_string().contains("\"ci\""), "{tokens}");
    assert!(
        !tokens.to_string().contains(&ci),
        "secrets are never listed"
    );
    let (status, body) = http(admin, "DELETE", "/api/v1/tokens/root-admin", root, None);
    assert_eq!((status, body["code"].as_str()), (409, Some("own_token")));
    assert_eq!(
        http(admin, "DELETE", "/api/v1/tokens/ci", root, None).0,
        200
    );
    assert_eq!(
        http(admin, "GET", "/api/v1/listeners", Some(&ci), None).0,
        401
    );

    // Reload, as SIGHUP.
    assert_eq!(http(admin, "POST", "/api/v1/reload", reader, None).0, 403);
    let (status, reloaded) = http(admin, "POST", "/api/v1/reload", root, None);
    assert_eq!(status, 200, "{reloaded}");
    let (_, sta) = http(admin, "GET", "/api/v1/sta-servers/STA0002", root, None);
    assert_eq!(
        sta["url"], "http://127.0.0.1:10/scripts/ctxsta.dll",
        "a reload keeps the api's sections"
    );

    // Delete in reverse order.
    for case in cases().iter().rev() {
        let one = format!("/api/v1/{}/{}", case.collection, case.key);
        assert_eq!(http(admin, "DELETE", &one, reader, None).0, 403);
        let (status, body) = http(admin, "DELETE", &one, root, None);
        assert_eq!(status, 200, "delete {one}: {body}");
        assert_eq!(http(admin, "GET", &one, root, None).0, 404, "{one} is gone");
    }

    // The audit log: who, what, before, after, refusals.
    let (status, audit) = http(admin, "GET", "/api/v1/audit?limit=1000", reader, None);
    assert_eq!(status, 200);
    let entries = audit.as_array().unwrap();
    let find = |action: &str, resource: &str, name: &str, outcome: &str| {
        entries
            .iter()
            .find(|e| {
                e["action"] == action
                    && e["resource"] == resource
                    && e["name"] == name
                    && e["outcome"] == outcome
            })
            .unwrap_or_else(|| panic!("no {action} {resource}/{name} {outcome} in {audit}"))
    };
    let created = find("create", "delivery-groups", "pool", "ok");
    assert_eq!(created["who"], "root-admin");
    assert_eq!(created["after"]["kind"], "shared");
    assert!(created["before"].is_null());
    let updated = find("update", "delivery-groups", "pool", "ok");
    assert_eq!(updated["before"]["exclusive"], false);
    assert_eq!(updated["after"]["exclusive"], true);
    let refused = find("create", "delivery-groups", "", "forbidden_role");
    assert_eq!(refused["who"], "reader");
    find("delete", "otp-devices", "alice/phone", "ok");
    find("create", "tokens", "ci", "ok");
    find("revoke", "tokens", "ci", "ok");
    find("reload", "reload", "", "ok");
    find("create", "desktops", "", "validation_failed");
    find("delete", "assignments", "vda2", "ok");
    find("delete", "workers", "w1", "ok");
    find("create", "tokens", "root-admin", "ok");
    assert_eq!(
        http(admin, "GET", "/api/v1/audit?limit=0", reader, None).0,
        400
    );
    assert_eq!(
        http(admin, "GET", "/api/v1/audit?limit=1", reader, None)
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    gatehouse.stop();
}

#[test]
fn api_changes_survive_a_restart_and_win_over_the_file() {
    let gatehouse = Gatehouse::start(&format!(
        "{PLAINTEXT}[[broker.groups]]\nname = \"file-group\"\nkind = \"shared\"\n"
    ));
    let root = cli_token(&gatehouse, "root", "admin");
    let group = json!({"name": "api-group", "kind": "private"});
    let (status, _) = http(
        gatehouse.admin(),
        "POST",
        "/api/v1/delivery-groups",
        Some(&root),
        Some(&group),
    );
    assert_eq!(status, 201);
    let (_, dir) = gatehouse.stop_keeping_data();
    let gatehouse = Gatehouse::restart_in(dir);
    let (status, list) = http(
        gatehouse.admin(),
        "GET",
        "/api/v1/delivery-groups",
        Some(&root),
        None,
    );
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["file-group", "api-group"],
        "the stored section wins"
    );
    let listed = api_token_command(&gatehouse, &["list"]);
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(text.starts_with("root\tadmin\t"), "{text}");
    assert!(
        api_token_command(&gatehouse, &["revoke", "root"])
            .status
            .success()
    );
    assert_eq!(
        api_token_command(&gatehouse, &["revoke", "root"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        http(
            gatehouse.admin(),
            "GET",
            "/api/v1/listeners",
            Some(&root),
            None
        )
        .0,
        401
    );
    gatehouse.stop();
}

#[test]
fn killing_a_session_through_the_api_cuts_its_relay_within_a_second() {
    let sim = VdaSim::start();
    let gatehouse = Gatehouse::start(PLAINTEXT);
    let admin = gatehouse.admin();
    let root = cli_token(&gatehouse, "root", "admin");
    let reader = cli_token(&gatehouse, "reader", "read-only");
    let ticket = gatehouse.issue(sim.ica());
    let mut stream = socks::connect_plain(gatehouse.gateway());
    assert_eq!(socks::launch(&mut stream, &ticket), REPLY_SUCCEEDED);
    socks::expect_detect_and_echo(&mut stream, b"before the kill");

    let started = Instant::now();
    let session = loop {
        let (_, list) = http(admin, "GET", "/api/v1/sessions", Some(&reader), None);
        if let Some(first) = list.as_array().and_then(|l| l.first()) {
            break first.clone();
        }
        assert!(started.elapsed() < TIMEOUT, "the session is never listed");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(session["worker"], sim.ica().to_string());
    let one = format!("/api/v1/sessions/{}", session["id"].as_str().unwrap());
    assert_eq!(
        http(admin, "GET", &one, Some(&reader), None),
        (200, session.clone())
    );
    assert_eq!(http(admin, "DELETE", &one, Some(&reader), None).0, 403);
    stream.write_all(b"still up").unwrap();
    let mut echoed = [0u8; 8];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(
        &echoed, b"still up",
        "a refused kill leaves the relay alone"
    );

    let (status, killed) = http(admin, "DELETE", &one, Some(&root), None);
    assert_eq!((status, killed), (200, session));
    let killed_at = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("bytes after the kill"),
        Err(error) => assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            ),
            "the relay is not cut within a second: {error}"
        ),
    }
    assert!(killed_at.elapsed() < Duration::from_secs(1));
    let started = Instant::now();
    while http(admin, "GET", &one, Some(&reader), None).0 != 404 {
        assert!(started.elapsed() < TIMEOUT, "the session stays listed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let events = gatehouse.stop();
    assert!(
        events
            .iter()
            .any(|e| e.is("api_change", &[("action", "kill"), ("outcome", "ok")]))
    );
    assert_eq!(sim.stop().code(), Some(0));
}

/// The Python venv with `openapi-spec-validator` and `schemathesis`.
fn pyenv() -> PathBuf {
    let dir = std::env::var_os("GATEHOUSE_PYENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv"),
        PathBuf::from,
    );
    for tool in ["openapi-spec-validator", "schemathesis"] {
        assert!(
            dir.join("bin").join(tool).is_file(),
            "{} has no {tool}: run .ci/run (it creates the venv with python3 -m venv and \
             pip-installs the pinned openapi-spec-validator and schemathesis), or set \
             GATEHOUSE_PYENV",
            dir.display()
        );
    }
    dir
}

/// Runs `command`, killed after `limit`.
fn run_bounded(mut command: Command, limit: Duration) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "timed out after {limit:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_openapi_document_validates_and_schemathesis_finds_no_server_error() {
    let pyenv = pyenv();
    let gatehouse = Gatehouse::start(PLAINTEXT);
    let admin = gatehouse.admin();
    let root = cli_token(&gatehouse, "schemathesis-admin-token", "admin");
    let (status, document) = http(admin, "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200, "the document needs no token");
    let file = gatehouse.data_dir().join("openapi.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let mut validator = Command::new(pyenv.join("bin/openapi-spec-validator"));
    validator.arg(&file);
    let (ok, text) = run_bounded(validator, Duration::from_secs(60));
    assert!(ok, "openapi-spec-validator refuses the document: {text}");

    let mut fuzzer = Command::new(pyenv.join("bin/schemathesis"));
    // It keeps a cache in its working directory: the gateway's temporary one.
    fuzzer
        .current_dir(gatehouse.data_dir())
        .arg("run")
        .arg(format!("http://{admin}/api/v1/openapi.json"))
        .args(["--url", &format!("http://{admin}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "15"])
        .args(["--phases", "examples,fuzzing"])
        .args(["--seed", "1"])
        .args(["--header", &format!("Authorization: Bearer {root}")])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    let (ok, text) = run_bounded(fuzzer, Duration::from_secs(120));
    assert!(ok, "schemathesis found a failure: {text}");
    assert!(!text.contains("500 Internal"), "{text}");
    // The token stays valid throughout (it could revoke itself by name).
    assert!(!text.contains("Authentication failed"), "{text}");
    assert!(text.contains(" passed"), "schemathesis ran cases: {text}");
    let events = gatehouse.stop();
    assert!(
        events.iter().any(|e| e.is("api_change", &[])),
        "schemathesis did write"
    );
    assert_eq!(
        count(&events, "api_unauthorized", &[]),
        0,
        "the admin token stayed valid"
    );
}

#[test]
fn gatehousectl_prints_tables_and_json_and_reports_refusals() {
    let gatehouse = Gatehouse::start(PLAINTEXT);
    let url = format!("http://{}", gatehouse.admin());
    let root = cli_token(&gatehouse, "root", "admin");
    let reader = cli_token(&gatehouse, "reader", "read-only");
    let ctl = |token: &str, args: &[&str]| {
        Command::new(bins::gatehousectl())
            .args(["--url", &url])
            .env("GATEHOUSE_TOKEN", token)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = ctl(&root, &["groups", "create", "name=pool", "kind=shared"]);
    assert!(out.status.success(), "{out:?}");
    let out = ctl(
        &root,
        &[
            "desktops",
            "create",
            "--data",
            r#"{"worker":"vda1","group":"pool"}"#,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = ctl(&reader, &["groups", "list"]);
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("NAME") && lines[0].contains("KIND"),
        "{table}"
    );
    assert!(
        lines[1].contains("pool") && lines[1].contains("shared"),
        "{table}"
    );
    let out = ctl(&reader, &["--json", "desktops", "list"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json, json!([{"worker": "vda1", "group": "pool"}]));
    let out = ctl(&reader, &["groups", "delete", "pool"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden_role"),
        "{out:?}"
    );
    let out = ctl(&root, &["groups", "create", "name=bad", "kind=weird"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("validation_failed") && stderr.contains("field kind"),
        "{stderr}"
    );
    let out = ctl(&reader, &["listeners"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("plaintext"),
        "{out:?}"
    );
    let out = ctl(&root, &["--json", "sessions", "list"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([])
    );
    let out = ctl(&reader, &["audit", "--limit", "5"]);
    let audit = String::from_utf8(out.stdout).unwrap();
    assert!(
        audit.contains("desktops") && audit.contains("root"),
        "{audit}"
    );
    let out = ctl(&root, &["reload"]);
    assert!(out.status.success(), "{out:?}");
    let out = ctl("gh_wrong", &["workers", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("http 401 unauthorized"),
        "{out:?}"
    );
    gatehouse.stop();
}
