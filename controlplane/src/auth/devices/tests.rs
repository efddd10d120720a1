//! Enrolment, listing, removal and code checks against a store on a
//! temporary directory, at fixed times.

use std::path::PathBuf;

use super::*;
use crate::auth::totp::code_at;

const NOW: u64 = 1_700_000_000;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-devices-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn key() -> OtpKey {
    OtpKey::from_bytes([5; 32])
}

fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

fn device(name: &str) -> DeviceName {
    DeviceName::new(name).unwrap()
}

async fn devices(dir: &std::path::Path) -> OtpDevices {
    OtpDevices::new(Store::open(dir).await.unwrap(), key(), "Gatehouse")
}

fn code_for(enrolment: &Enrolment, unix_secs: u64) -> TotpCode {
    code_at(&enrolment.uri.secret, unix_secs, TotpParams::GATEWAY)
}

#[tokio::test]
async fn enrols_a_device_with_a_gateway_uri() {
    let dir = temp_dir("enrol");
    let otp = devices(&dir).await;
    let enrolment = otp.add(&user("alice"), &device("phone")).await.unwrap();
    let text = enrolment.uri.to_string();
    assert!(
        text.starts_with("otpauth://totp/Gatehouse:alice?secret="),
        "{text}"
    );
    assert!(text.ends_with("&issuer=Gatehouse&algorithm=SHA1&digits=6&period=30&device=phone"));
    assert_eq!(OtpauthUri::parse(&text).unwrap(), enrolment.uri);
    assert_eq!(enrolment.uri.secret.as_bytes().len(), 20);
    // The secret is not stored in the clear.
    let stored = otp.store.list_devices(&user("alice")).await.unwrap();
    assert!(stored[0].sealed_secret.starts_with("gh1."));
    assert!(
        !stored[0]
            .sealed_secret
            .contains(&enrolment.uri.secret.to_base32())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn accepts_a_code_once_even_across_a_restart() {
    let dir = temp_dir("replay");
    let otp = devices(&dir).await;
    let enrolment = otp.add(&user("alice"), &device("phone")).await.unwrap();
    let code = code_for(&enrolment, NOW);
    assert_eq!(
        otp.verify(&user("alice"), code, NOW).await.unwrap(),
        OtpVerdict::Accept {
            device: device("phone"),
            step: TotpParams::GATEWAY.step_at(NOW)
        }
    );
    assert_eq!(
        otp.verify(&user("alice"), code, NOW + 1).await.unwrap(),
        OtpVerdict::Replay {
            device: device("phone")
        }
    );
    otp.store.close().await;
    let otp = devices(&dir).await;
    assert_eq!(
        otp.verify(&user("alice"), code, NOW + 2).await.unwrap(),
        OtpVerdict::Replay {
            device: device("phone")
        }
    );
    // The next step's code is still good.
    let next = code_for(&enrolment, NOW + 30);
    assert!(matches!(
        otp.verify(&user("alice"), next, NOW + 30).await.unwrap(),
        OtpVerdict::Accept { .. }
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn names_which_of_several_devices_matched() {
    let dir = temp_dir("several");
    let otp = devices(&dir).await;
    let _phone = otp.add(&user("alice"), &device("phone")).await.unwrap();
    let tablet = otp.add(&user("alice"), &device("tablet")).await.unwrap();
    let verdict = otp
        .verify(&user("alice"), code_for(&tablet, NOW), NOW)
        .await
        .unwrap();
    assert!(matches!(verdict, OtpVerdict::Accept { device, .. } if device.as_str() == "tablet"));
    // Another user's code does not open alice's account.
    let bob = otp.add(&user("bob"), &device("phone")).await.unwrap();
    assert_eq!(
        otp.verify(&user("alice"), code_for(&bob, NOW + 60), NOW + 60)
            .await
            .unwrap(),
        OtpVerdict::Reject
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn lists_and_removes_devices() {
    let dir = temp_dir("list");
    let otp = devices(&dir).await;
    otp.add(&user("alice"), &device("phone")).await.unwrap();
    otp.add(&user("alice"), &device("tablet")).await.unwrap();
    let again = otp.add(&user("alice"), &device("phone")).await.unwrap_err();
    assert_eq!(again.to_string(), "device phone already exists");
    let names: Vec<String> = otp
        .list(&user("alice"))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name.to_string())
        .collect();
    assert_eq!(names, ["phone", "tablet"]);
    otp.remove(&user("alice"), &device("phone")).await.unwrap();
    let missing = otp
        .remove(&user("alice"), &device("phone"))
        .await
        .unwrap_err();
    assert_eq!(missing.to_string(), "device phone does not exist");
    assert_eq!(otp.list(&user("alice")).await.unwrap().len(), 1);
    assert_eq!(
        otp.verify(
            &user("nobody"),
            TotpCode::parse("123456", TotpParams::GATEWAY).unwrap(),
            NOW
        )
        .await
        .unwrap(),
        OtpVerdict::Reject
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn skips_a_device_whose_secret_does_not_open() {
    let dir = temp_dir("tampered");
    let otp = devices(&dir).await;
    let good = otp.add(&user("alice"), &device("phone")).await.unwrap();
    // A sealed secret copied from bob's row does not open under alice.
    let bob = otp.add(&user("bob"), &device("x")).await.unwrap();
    let bob_sealed = otp.store.list_devices(&user("bob")).await.unwrap()[0]
        .sealed_secret
        .clone();
    otp.store
        .insert_device(&user("alice"), &device("x"), &bob_sealed)
        .await
        .unwrap();
    assert_eq!(
        otp.verify(&user("alice"), code_for(&bob, NOW), NOW)
            .await
            .unwrap(),
        OtpVerdict::Reject
    );
    assert!(matches!(
        otp.verify(&user("alice"), code_for(&good, NOW), NOW)
            .await
            .unwrap(),
        OtpVerdict::Accept { .. }
    ));
    // Under another key nothing opens.
    let other = OtpDevices::new(otp.store.clone(), OtpKey::from_bytes([6; 32]), "Gatehouse");
    assert_eq!(
        other
            .verify(&user("alice"), code_for(&good, NOW + 30), NOW + 30)
            .await
            .unwrap(),
        OtpVerdict::Reject
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn checks_devices_held_in_a_directory_attribute_with_stored_replay_records() {
    let dir = temp_dir("attribute");
    let otp = devices(&dir).await;
    let secret = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
    let entries = [DeviceEntry {
        name: device("ldap-phone"),
        secret: secret.clone(),
    }];
    let code = code_at(&secret, NOW, TotpParams::GATEWAY);
    assert!(matches!(
        otp.verify_entries(&user("carol"), &entries, code, NOW)
            .await
            .unwrap(),
        OtpVerdict::Accept { .. }
    ));
    assert_eq!(
        otp.verify_entries(&user("carol"), &entries, code, NOW)
            .await
            .unwrap(),
        OtpVerdict::Replay {
            device: device("ldap-phone")
        }
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
