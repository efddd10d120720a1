//! The store on a temporary directory: creation, migrations, WAL, file
//! mode, and each table's operations.

use std::os::unix::fs::PermissionsExt;

use sqlx::Row;

use super::*;
use crate::auth::names::{DeviceName, UserName};
use crate::auth::totp::TimeStep;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-store-test-{}-{name}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

fn device(name: &str) -> DeviceName {
    DeviceName::new(name).unwrap()
}

#[tokio::test]
async fn creates_a_private_wal_database_with_the_schema_on_first_use() {
    let dir = temp_dir("create").join("nested");
    let store = Store::open(&dir).await.unwrap();
    let file = dir.join(DATABASE_FILE);
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");
    let tables: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' \
         AND name NOT LIKE 'sqlite%' ORDER BY name",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect();
    assert_eq!(
        tables,
        [
            "api_tokens",
            "audit_log",
            "broker_assignments",
            "config_overlay",
            "iip_leases",
            "local_users",
            "otp_accepted_steps",
            "otp_devices",
            "web_sessions"
        ]
    );
    store.close().await;
    fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn keeps_its_rows_across_a_reopen() {
    let dir = temp_dir("reopen");
    let store = Store::open(&dir).await.unwrap();
    store
        .insert_user(&user("alice"), "$argon2id$x")
        .await
        .unwrap();
    store
        .record_accepted_step(&user("alice"), &device("phone"), TimeStep(7))
        .await
        .unwrap();
    store.close().await;
    let store = Store::open(&dir).await.unwrap();
    assert_eq!(
        store
            .password_hash(&user("alice"))
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$x")
    );
    assert_eq!(
        store
            .last_accepted_step(&user("alice"), &device("phone"))
            .await
            .unwrap(),
        Some(TimeStep(7))
    );
    store.close().await;
    fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn adds_lists_updates_and_deletes_users() {
    let dir = temp_dir("users");
    let store = Store::open(&dir).await.unwrap();
    store.insert_user(&user("bob"), "h1").await.unwrap();
    store.insert_user(&user("alice"), "h2").await.unwrap();
    let again = store.insert_user(&user("bob"), "h3").await.unwrap_err();
    assert!(again.is_already_exists(), "{again}");
    assert_eq!(again.to_string(), "user bob already exists");
    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    store.update_password(&user("bob"), "h4").await.unwrap();
    assert_eq!(
        store.password_hash(&user("bob")).await.unwrap().as_deref(),
        Some("h4")
    );
    assert!(
        store
            .update_password(&user("carol"), "h")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(store.password_hash(&user("carol")).await.unwrap(), None);
    store.delete_user(&user("bob")).await.unwrap();
    let gone = store.delete_user(&user("bob")).await.unwrap_err();
    assert!(gone.is_not_found());
    assert_eq!(gone.to_string(), "user bob does not exist");
    assert_eq!(store.list_users().await.unwrap().len(), 1);
    store.close().await;
    fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn keeps_device_names_unique_per_user() {
    let dir = temp_dir("devices");
    let store = Store::open(&dir).await.unwrap();
    let alice = user("alice");
    store
        .insert_device(&alice, &device("phone"), "gh1.a")
        .await
        .unwrap();
    store
        .insert_device(&alice, &device("tablet"), "gh1.b")
        .await
        .unwrap();
    store
        .insert_device(&user("bob"), &device("phone"), "gh1.c")
        .await
        .unwrap();
    let twice = store.insert_device(&alice, &device("phone"), "gh1.d").await;
    assert!(twice.unwrap_err().is_already_exists());
    let listed = store.list_devices(&alice).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].name.as_str(), "phone");
    assert_eq!(listed[0].sealed_secret, "gh1.a");
    store.delete_device(&alice, &device("phone")).await.unwrap();
    assert!(
        store
            .delete_device(&alice, &device("phone"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(store.list_devices(&alice).await.unwrap().len(), 1);
    assert_eq!(store.list_devices(&user("bob")).await.unwrap().len(), 1);
    store.close().await;
    fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn records_only_later_steps() {
    let dir = temp_dir("steps");
    let store = Store::open(&dir).await.unwrap();
    let (alice, phone) = (user("alice"), device("phone"));
    assert_eq!(
        store.last_accepted_step(&alice, &phone).await.unwrap(),
        None
    );
    assert!(
        store
            .record_accepted_step(&alice, &phone, TimeStep(10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_accepted_step(&alice, &phone, TimeStep(10))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_accepted_step(&alice, &phone, TimeStep(9))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_accepted_step(&alice, &phone, TimeStep(11))
            .await
            .unwrap()
    );
    assert_eq!(
        store.last_accepted_step(&alice, &phone).await.unwrap(),
        Some(TimeStep(11))
    );
    // Another device of the same user has its own record.
    assert!(
        store
            .record_accepted_step(&alice, &device("tablet"), TimeStep(10))
            .await
            .unwrap()
    );
    store.close().await;
    fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn deleting_a_user_or_device_drops_its_devices_and_steps() {
    let dir = temp_dir("cascade");
    let store = Store::open(&dir).await.unwrap();
    let (alice, phone) = (user("alice"), device("phone"));
    store.insert_user(&alice, "h").await.unwrap();
    store.insert_device(&alice, &phone, "gh1.a").await.unwrap();
    store
        .record_accepted_step(&alice, &phone, TimeStep(5))
        .await
        .unwrap();
    store.delete_device(&alice, &phone).await.unwrap();
    assert_eq!(
        store.last_accepted_step(&alice, &phone).await.unwrap(),
        None
    );
    store.insert_device(&alice, &phone, "gh1.b").await.unwrap();
    store
        .record_accepted_step(&alice, &phone, TimeStep(6))
        .await
        .unwrap();
    store.delete_user(&alice).await.unwrap();
    assert!(store.list_devices(&alice).await.unwrap().is_empty());
    assert_eq!(
        store.last_accepted_step(&alice, &phone).await.unwrap(),
        None
    );
    store.close().await;
    fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn concurrent_recordings_of_one_step_accept_exactly_one() {
    let dir = temp_dir("race");
    let store = Store::open(&dir).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_accepted_step(&user("alice"), &device("phone"), TimeStep(42))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += usize::from(task.await.unwrap());
    }
    assert_eq!(accepted, 1);
    store.close().await;
    fs::remove_dir_all(&dir).unwrap();
}
