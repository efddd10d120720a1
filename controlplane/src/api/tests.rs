//! The API's pure parts: the OpenAPI document, audit descriptions, body
//! parsing.

use super::*;
use crate::broker::catalog::GroupConfig;

#[test]
fn the_document_lists_every_resource_with_bearer_security() {
    let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/sessions/{id}",
        "/api/v1/workers",
        "/api/v1/listeners",
        "/api/v1/delivery-groups/{name}",
        "/api/v1/desktops",
        "/api/v1/resources",
        "/api/v1/assignments",
        "/api/v1/sta-servers/{id}",
        "/api/v1/users/{user}/otp-devices",
        "/api/v1/reload",
        "/api/v1/tokens",
        "/api/v1/audit",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["GroupConfig"].is_object());
}

#[test]
fn writes_are_described_by_action_resource_and_key() {
    assert_eq!(
        describe(&Method::DELETE, "/api/v1/sessions/0x01"),
        ("kill", "sessions".to_owned(), "0x01".to_owned())
    );
    assert_eq!(
        describe(&Method::POST, "/api/v1/reload"),
        ("reload", "reload".to_owned(), String::new())
    );
    assert_eq!(
        describe(&Method::PUT, "/api/v1/delivery-groups/g"),
        ("update", "delivery-groups".to_owned(), "g".to_owned())
    );
    let long = format!("/api/v1/x/{}", "é".repeat(500));
    assert_eq!(describe(&Method::POST, &long).2.chars().count(), 200);
}

#[test]
fn body_errors_name_the_field() {
    let error =
        sections::parse_body::<GroupConfig>(br#"{"name": "g", "kind": "weird"}"#).unwrap_err();
    assert_eq!(error.code, "validation_failed");
    assert_eq!(error.field.as_deref(), Some("kind"));
    let error = sections::parse_body::<GroupConfig>(b"{not json").unwrap_err();
    assert_eq!(error.code, "bad_request");
    let ok = sections::parse_body::<GroupConfig>(br#"{"name": "g", "kind": "shared"}"#).unwrap();
    assert_eq!(ok.name, "g");
}

#[test]
fn bodies_must_be_json_objects() {
    // serde reads a struct from an array by position; the API takes objects.
    for body in [
        &br#"["g", "shared"]"#[..],
        b" \n [\"g\",\"shared\"]",
        b"\"g\"",
        b"null",
    ] {
        let error = sections::parse_body::<GroupConfig>(body).unwrap_err();
        assert_eq!(
            error.code,
            "validation_failed",
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(error.field.as_deref(), Some("body"));
    }
    let ok = sections::parse_body::<GroupConfig>(b" \r\n\t{\"name\": \"g\", \"kind\": \"shared\"}");
    assert_eq!(ok.unwrap().name, "g");
    // Found by the api_request fuzz target's round trip: an array body just
    // under MAX_BODY_BYTES parsed, and re-encoded as an object it was over.
    let crash = include_bytes!("../../fuzz/regressions/api_request_body_array.json");
    assert!(sections::parse_body::<GroupConfig>(crash).is_err());
    fuzz::request(crash);
}

#[test]
fn a_read_only_caller_is_refused_admin_operations() {
    let caller = Caller {
        name: "ro".to_owned(),
        role: Role::ReadOnly,
    };
    assert_eq!(caller.require_admin().unwrap_err().code, "forbidden_role");
}

#[test]
fn the_fuzz_entry_point_takes_any_bytes() {
    for data in [
        &b""[..],
        b"{}",
        br#"{"name": "g", "kind": "private", "power_on_url": "http://x"}"#,
        br#"{"desktop": "vda1", "client_ip": "10.0.0.1"}"#,
        b"/api/v1/sessions/0xffffffffffffffffff",
        b"\xff\xfe",
    ] {
        fuzz::request(data);
    }
}

/// A running configuration over a fresh store, with its broker and router.
async fn live(name: &str) -> (LiveConfig, Broker, Store, TestDir) {
    use crate::sta::Sta;
    use crate::sta::http::{StaRouter, os_fill};
    let (store, dir) = test_store(name).await;
    let config = crate::config::Config::default();
    let sta = Arc::new(parking_lot::Mutex::new(Sta::new(
        config.sta.id,
        config.sta.limits(),
        os_fill,
    )));
    let router = StaRouter::from_config(sta.clone(), &config.sta).unwrap();
    let broker = Broker::from_config(&config, sta, store.clone(), Default::default())
        .await
        .unwrap();
    let live = LiveConfig::new(
        config,
        Default::default(),
        store.clone(),
        broker.clone(),
        router,
        broker.policies().clone(),
    );
    (live, broker, store, dir)
}

fn group(name: &str) -> GroupConfig {
    sections::parse_body(format!(r#"{{"name": "{name}", "kind": "private"}}"#).as_bytes()).unwrap()
}

#[tokio::test]
async fn a_change_is_validated_stored_applied_and_wins_at_start_and_on_reload() {
    use crate::broker::catalog::DesktopConfig;
    let (live, broker, store, _dir) = live("overlay-change").await;
    live.change::<sections::Groups, _>(|mut items| {
        items.push(group("office"));
        Ok((items, ()))
    })
    .await
    .unwrap();
    assert_eq!(broker.catalog().section().groups, [group("office")]);

    let orphan: DesktopConfig =
        sections::parse_body(br#"{"worker": "vda1", "group": "nowhere"}"#).unwrap();
    let refused = live
        .change::<sections::Desktops, _>(|mut items| {
            items.push(orphan);
            Ok((items, ()))
        })
        .await
        .unwrap_err();
    assert_eq!(refused.field.as_deref(), Some("broker.desktops"));
    assert!(
        live.snapshot().broker.desktops.is_empty(),
        "nothing half-applied"
    );
    assert!(broker.catalog().section().desktops.is_empty());

    let mut restarted = crate::config::Config::default();
    let overlaid = overlay::apply_stored(&store, &mut restarted).await.unwrap();
    assert_eq!(overlaid.into_iter().collect::<Vec<_>>(), ["broker.groups"]);
    assert_eq!(restarted.broker.groups, [group("office")]);

    let reloaded = live
        .overlay_reloaded(crate::config::Config::default())
        .unwrap();
    assert_eq!(
        reloaded.broker.groups,
        [group("office")],
        "the api's section wins"
    );
}

#[tokio::test]
async fn a_policy_added_through_the_api_decides_the_next_launch_and_a_bad_one_names_its_field() {
    use crate::broker::catalog::Who;
    let (live, broker, _store, _dir) = live("overlay-policy").await;
    let alice = Who {
        user: "alice".into(),
        groups: Vec::new(),
        client_ip: None,
    };
    assert!(broker.verdict(&alice, "Desk").allowed());
    let rule: crate::policy::PolicyRule = sections::parse_body(
        br#"{"name": "no-desk", "action": "deny", "resources": ["Desk"], "users": ["alice"]}"#,
    )
    .unwrap();
    live.change::<sections::Policies, _>(|mut items| {
        items.push(rule);
        Ok((items, ()))
    })
    .await
    .unwrap();
    let verdict = broker.verdict(&alice, "Desk");
    assert!(!verdict.allowed());
    assert_eq!(verdict.rule.as_deref(), Some("no-desk"));

    let bad: crate::policy::PolicyRule =
        sections::parse_body(br#"{"name": "late", "action": "deny", "hours": "25:00-26:00"}"#)
            .unwrap();
    let refused = live
        .change::<sections::Policies, _>(|mut items| {
            items.push(bad);
            Ok((items, ()))
        })
        .await
        .unwrap_err();
    assert_eq!(refused.field.as_deref(), Some("policy.rules[1].hours"));
    assert_eq!(
        live.snapshot().policy.rules.len(),
        1,
        "nothing half-applied"
    );
}

#[tokio::test]
async fn a_stored_section_that_does_not_fit_stops_the_start() {
    let (store, _dir) = test_store("overlay-bad").await;
    sqlx::query("INSERT INTO config_overlay (section, json, updated_at) VALUES ('broker.groups', 'not json', 0)")
        .execute(store.pool())
        .await
        .unwrap();
    let mut config = crate::config::Config::default();
    let error = overlay::apply_stored(&store, &mut config)
        .await
        .unwrap_err();
    assert!(
        matches!(error, overlay::OverlayError::Section { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_udp_server_to_client_app_is_refused_naming_its_protocol() {
    let (live, _broker, _store, _dir) = live("overlay-s2c-udp").await;
    let udp: crate::s2c::apps::AppConfig = sections::parse_body(
        br#"{"name": "dns", "servers": ["10.0.0.0/8"], "ports": [53], "protocol": "udp"}"#,
    )
    .unwrap();
    let refused = live
        .change::<sections::S2cApps, _>(|mut items| {
            items.push(udp);
            Ok((items, ()))
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.field.as_deref(),
        Some("server_to_client.apps[0].protocol")
    );
    assert!(
        refused.message.contains("udp") || refused.message.contains("UDP"),
        "{}",
        refused.message
    );
}
