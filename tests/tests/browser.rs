//! User flow: a real browser (headless Chromium through `chromedriver`)
//! logs on to the real `gatehouse run` through its TLS gateway listener:
//! password then a TOTP code from the real `oathtool`; password then push
//! approval with number matching answered by the real `push-device`
//! (approved, wrong number refused, no answer leading to the fallback
//! page and a manual code). The pages work without JavaScript: the push
//! page reloads itself with a meta refresh.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::push_device::{Answer, PushDevice};
use gatehouse_tests::temp::TempDir;
use gatehouse_tests::webdriver::Chrome;

const PASSWORD: &str = "correct horse battery";

/// How long a page may take to reach an expected state.
const PAGE_WAIT: Duration = Duration::from_secs(20);

fn push_config(wait_secs: u32) -> String {
    format!(
        "[login]\nschema = \"password+otp-or-push\"\n\
         [push]\nenabled = true\nwait_secs = {wait_secs}\npoll_hold_secs = 5\nconnect_grace_secs = 1\n"
    )
}

/// `gatehouse user add alice` and `gatehouse user otp add alice phone`:
/// the device's otpauth URI.
fn alice_with_a_phone(gatehouse: &Gatehouse) -> String {
    let (code, _) = gatehouse.user_command(&["add", "alice"], &format!("{PASSWORD}\n"));
    assert_eq!(code, Some(0), "gatehouse user add alice");
    let (code, uri) = gatehouse.user_command(&["otp", "add", "alice", "phone"], "");
    assert_eq!(code, Some(0), "gatehouse user otp add");
    uri.trim().to_owned()
}

fn oathtool(uri: &str) -> String {
    let secret = uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .unwrap_or_else(|| panic!("a secret in {uri}"));
    let output = Command::new("oathtool")
        .args(["--totp", "--base32", secret])
        .stdin(Stdio::null())
        .output()
        .expect("oathtool runs (.ci/run installs oathtool)");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Opens the login page and submits user name and password.
fn log_on(chrome: &Chrome, gatehouse: &Gatehouse) {
    chrome.goto(&format!("https://{}/", gatehouse.gateway()));
    let (url, _) = chrome.wait_until("the login page", PAGE_WAIT, |_, html| {
        html.contains("action=\"/cgi/login\"")
    });
    assert!(url.ends_with("/vpn/index.html"), "{url}");
    chrome.type_into("#login", "alice");
    chrome.type_into("#passwd", PASSWORD);
    chrome.click("button[type=submit]");
}

fn wait_for_home(chrome: &Chrome) {
    let (url, html) = chrome.wait_until("the home page", PAGE_WAIT, |url, _| {
        url.ends_with("/vpns/home.html")
    });
    assert!(
        html.contains("<span id=\"user\">alice</span>"),
        "{url}\n{html}"
    );
    assert_eq!(chrome.text("#user"), "alice");
    assert!(chrome.cookie("NSC_AAAC").is_some(), "the session cookie");
}

/// Waits for the push page and reads its number.
fn number_on_the_page(chrome: &Chrome) -> String {
    chrome.wait_until("the push page", PAGE_WAIT, |_, html| {
        html.contains("id=\"number\"")
    });
    let text = chrome.text("#push");
    let number = text
        .strip_prefix("Approve on your device and choose ")
        .unwrap_or_else(|| panic!("the push page says {text:?}"))
        .to_owned();
    assert!(
        number.len() == 2 && number.bytes().all(|b| b.is_ascii_digit()),
        "{number:?}"
    );
    number
}

/// Writes `number` where `push-device --approve-from` reads it.
fn type_on_the_device(file: &Path, number: &str) {
    let part = file.with_extension("part");
    std::fs::write(&part, number).unwrap();
    std::fs::rename(&part, file).unwrap();
}

/// The fallback page: "Enter OTP manually" and "Resend notification".
fn wait_for_fallback(chrome: &Chrome) -> String {
    let (_, html) = chrome.wait_until("the fallback page", PAGE_WAIT, |_, html| {
        html.contains("id=\"resend\"")
    });
    assert_eq!(chrome.text("#manual"), "Enter OTP manually");
    assert_eq!(chrome.text("#resend"), "Resend notification");
    html
}

fn enter_code(chrome: &Chrome, code: &str) {
    chrome.type_into("#response", code);
    chrome.click("#submit");
}

#[test]
fn chromium_logs_on_with_a_password_and_an_oathtool_code_and_reaches_the_home_page() {
    let gatehouse = Gatehouse::start("[login]\nschema = \"password+otp\"\n");
    let uri = alice_with_a_phone(&gatehouse);
    let chrome = Chrome::start(&gatehouse.certificate());
    log_on(&chrome, &gatehouse);
    chrome.wait_until("the code page", PAGE_WAIT, |_, html| {
        html.contains("action=\"/cgi/dlge\"")
    });
    assert_eq!(
        chrome.text("#prompt"),
        "Enter the code from your authenticator"
    );
    chrome.type_into("#response", &oathtool(&uri));
    chrome.click("button[type=submit]");
    wait_for_home(&chrome);
    drop(chrome);
    let events = gatehouse.stop();
    assert_eq!(
        count(
            &events,
            "login",
            &[("user", "alice"), ("factor", "otp"), ("outcome", "success")]
        ),
        1
    );
}

#[test]
fn chromium_logs_on_by_push_when_the_device_approves_with_the_number_shown() {
    let gatehouse = Gatehouse::start(&push_config(20));
    let uri = alice_with_a_phone(&gatehouse);
    let dir = TempDir::new("device");
    let file = dir.path().join("number");
    let mut device = PushDevice::register(&gatehouse, &uri, Answer::ApproveFrom(&file));
    let chrome = Chrome::start(&gatehouse.certificate());
    log_on(&chrome, &gatehouse);
    let number = number_on_the_page(&chrome);
    let push = device.wait_for("push ");
    assert!(push.text.contains("user=alice"), "{}", push.text);
    type_on_the_device(&file, &number);
    let answered = device.wait_for("answered ");
    assert!(
        answered.text.ends_with("outcome=approved"),
        "{}",
        answered.text
    );
    wait_for_home(&chrome);
    drop(chrome);
    device.stop();
    let events = gatehouse.stop();
    assert_eq!(
        count(
            &events,
            "login",
            &[
                ("user", "alice"),
                ("factor", "push"),
                ("outcome", "success")
            ]
        ),
        1
    );
    assert_eq!(
        count(&events, "push_outcome", &[("outcome", "approved")]),
        1
    );
}

#[test]
fn a_wrong_number_on_the_device_is_refused_and_the_user_can_log_on_afterwards() {
    let gatehouse = Gatehouse::start(&push_config(20));
    let uri = alice_with_a_phone(&gatehouse);
    let dir = TempDir::new("device");
    let file = dir.path().join("number");
    let mut device = PushDevice::register(&gatehouse, &uri, Answer::ApproveWrongFrom(&file));
    let chrome = Chrome::start(&gatehouse.certificate());
    log_on(&chrome, &gatehouse);
    let number = number_on_the_page(&chrome);
    device.wait_for("push ");
    type_on_the_device(&file, &number);
    let answered = device.wait_for("answered ");
    assert!(
        answered.text.ends_with("outcome=wrong_number"),
        "{}",
        answered.text
    );
    let (url, _) = chrome.wait_until("the refusal", PAGE_WAIT, |_, html| {
        html.contains("id=\"error\"")
    });
    assert!(
        chrome
            .text("#error")
            .contains("did not match the number shown"),
        "{url}"
    );
    assert!(chrome.has("#login"), "back on the login form");
    assert_eq!(chrome.cookie("NSC_VPNERR").as_deref(), Some("4001"));
    assert!(chrome.cookie("NSC_AAAC").is_none());

    // The refusal changed nothing stored: with the device gone, the
    // fallback page and a code log alice on.
    device.stop();
    std::thread::sleep(Duration::from_millis(1_500));
    log_on(&chrome, &gatehouse);
    let page = wait_for_fallback(&chrome);
    assert!(page.contains("could not be reached"), "{page}");
    enter_code(&chrome, &oathtool(&uri));
    wait_for_home(&chrome);
    drop(chrome);
    let events = gatehouse.stop();
    assert_eq!(count(&events, "login", &[("reason", "wrong_number")]), 1);
    assert_eq!(count(&events, "push_device_unreachable", &[]), 1);
    assert_eq!(
        count(
            &events,
            "login",
            &[("factor", "otp"), ("outcome", "success")]
        ),
        1
    );
}

#[test]
fn a_device_that_does_not_answer_leads_to_the_fallback_page_and_a_manual_code_logs_on() {
    let gatehouse = Gatehouse::start(&push_config(2));
    let uri = alice_with_a_phone(&gatehouse);
    let dir = TempDir::new("device");
    // Never written: the device gets the push but never answers.
    let file = dir.path().join("number");
    let mut device = PushDevice::register(&gatehouse, &uri, Answer::ApproveFrom(&file));
    let chrome = Chrome::start(&gatehouse.certificate());
    log_on(&chrome, &gatehouse);
    number_on_the_page(&chrome);
    device.wait_for("push ");
    let page = wait_for_fallback(&chrome);
    assert!(page.contains("did not answer in time"), "{page}");
    assert!(chrome.cookie("NSC_AAAC").is_none());
    enter_code(&chrome, &oathtool(&uri));
    wait_for_home(&chrome);
    drop(chrome);
    drop(device);
    let events = gatehouse.stop();
    assert_eq!(count(&events, "push_no_response", &[]), 1);
    assert_eq!(count(&events, "login", &[("reason", "push_timed_out")]), 1);
    assert_eq!(
        count(
            &events,
            "login",
            &[("factor", "otp"), ("outcome", "success")]
        ),
        1
    );
}
