//! The local user directory: users and Argon2id password hashes in the
//! store, for a gateway without LDAP (`gatehouse user add|passwd|del|list`,
//! and the login page's password factor on the embedded defaults).
//!
//! [`LocalUsers::verify`] answers [`LocalUserError::Rejected`] for a wrong
//! password and for an unknown user alike, after the same Argon2 work (see
//! [`crate::auth::password`]). Hashing runs on tokio's blocking pool.

use std::sync::Arc;

use crate::auth::names::UserName;
use crate::auth::password::{Password, PasswordError, PasswordHasher};
use crate::store::{Store, StoreError, UserRecord};

/// The local user directory.
#[derive(Debug, Clone)]
pub struct LocalUsers {
    store: Store,
    hasher: Arc<PasswordHasher>,
}

/// Why a directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalUserError {
    /// `add` of a name that exists.
    #[error("user {0} already exists")]
    AlreadyExists(UserName),
    /// `set_password` or `delete` of a name that does not exist.
    #[error("user {0} does not exist")]
    NotFound(UserName),
    /// `verify`: wrong password or unknown user (one answer for both).
    #[error("invalid user name or password")]
    Rejected,
    /// Hashing failed (not a verdict on the password).
    #[error("cannot hash the password")]
    Hash(#[source] PasswordError),
    /// The store failed.
    #[error("user store failed")]
    Store(#[source] StoreError),
}

impl LocalUsers {
    /// The directory in `store`, hashing with `hasher`.
    pub fn new(store: Store, hasher: Arc<PasswordHasher>) -> Self {
        Self { store, hasher }
    }

    /// Adds `name` with `password`.
    ///
    /// Errors: [`LocalUserError::AlreadyExists`], [`LocalUserError::Hash`],
    /// [`LocalUserError::Store`].
    pub async fn add(&self, name: &UserName, password: &Password) -> Result<(), LocalUserError> {
        let hash = self.hash(password).await?;
        self.store
            .insert_user(name, &hash)
            .await
            .map_err(|e| store_error(e, name))?;
        tracing::info!(user = %name, "local_user_added");
        Ok(())
    }

    /// Replaces the password of `name`.
    ///
    /// Errors: [`LocalUserError::NotFound`], [`LocalUserError::Hash`],
    /// [`LocalUserError::Store`].
    pub async fn set_password(
        &self,
        name: &UserName,
        password: &Password,
    ) -> Result<(), LocalUserError> {
        let hash = self.hash(password).await?;
        self.store
            .update_password(name, &hash)
            .await
            .map_err(|e| store_error(e, name))?;
        tracing::info!(user = %name, "local_user_password_set");
        Ok(())
    }

    /// Deletes `name` and the OTP devices stored for it.
    ///
    /// Errors: [`LocalUserError::NotFound`], [`LocalUserError::Store`].
    pub async fn delete(&self, name: &UserName) -> Result<(), LocalUserError> {
        self.store
            .delete_user(name)
            .await
            .map_err(|e| store_error(e, name))?;
        tracing::info!(user = %name, "local_user_deleted");
        Ok(())
    }

    /// Every user, by name.
    ///
    /// Errors: [`LocalUserError::Store`].
    pub async fn list(&self) -> Result<Vec<UserRecord>, LocalUserError> {
        self.store.list_users().await.map_err(LocalUserError::Store)
    }

    /// Checks `password` for `name`.
    ///
    /// Errors: [`LocalUserError::Rejected`] for a wrong password or unknown
    /// user (same work, same answer); [`LocalUserError::Store`] when the
    /// store cannot answer; [`LocalUserError::Hash`] when Argon2 cannot
    /// run.
    pub async fn verify(&self, name: &UserName, password: &Password) -> Result<(), LocalUserError> {
        let stored = self
            .store
            .password_hash(name)
            .await
            .map_err(LocalUserError::Store)?;
        let hasher = Arc::clone(&self.hasher);
        let password = password.clone();
        let outcome =
            tokio::task::spawn_blocking(move || hasher.verify(&password, stored.as_deref()))
                .await
                .map_err(|_| {
                    LocalUserError::Hash(PasswordError::Argon2("hashing task failed".to_owned()))
                })?;
        match outcome {
            Ok(()) => Ok(()),
            Err(PasswordError::Mismatch) => Err(LocalUserError::Rejected),
            Err(PasswordError::StoredHash) => {
                tracing::warn!(user = %name, reason = "stored hash unreadable", "local_user_corrupt");
                Err(LocalUserError::Rejected)
            }
            Err(other) => Err(LocalUserError::Hash(other)),
        }
    }

    async fn hash(&self, password: &Password) -> Result<String, LocalUserError> {
        let hasher = Arc::clone(&self.hasher);
        let password = password.clone();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|_| PasswordError::Argon2("hashing task failed".to_owned()))
            .and_then(|r| r)
            .map_err(LocalUserError::Hash)
    }
}

fn store_error(error: StoreError, name: &UserName) -> LocalUserError {
    match error {
        StoreError::AlreadyExists { .. } => LocalUserError::AlreadyExists(name.clone()),
        StoreError::NotFound { .. } => LocalUserError::NotFound(name.clone()),
        other => LocalUserError::Store(other),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::auth::password::PasswordParams;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-local-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    async fn directory(dir: &std::path::Path) -> LocalUsers {
        let store = Store::open(dir).await.unwrap();
        let hasher = PasswordHasher::new(PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        LocalUsers::new(store, Arc::new(hasher))
    }

    fn name(text: &str) -> UserName {
        UserName::new(text).unwrap()
    }

    fn password(text: &str) -> Password {
        Password::new(text.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn adds_verifies_changes_and_deletes_a_user() {
        let dir = temp_dir("cycle");
        let users = directory(&dir).await;
        users.add(&name("alice"), &password("one")).await.unwrap();
        users
            .verify(&name("alice"), &password("one"))
            .await
            .unwrap();
        users
            .set_password(&name("alice"), &password("two"))
            .await
            .unwrap();
        assert!(matches!(
            users.verify(&name("alice"), &password("one")).await,
            Err(LocalUserError::Rejected)
        ));
        users
            .verify(&name("alice"), &password("two"))
            .await
            .unwrap();
        assert_eq!(users.list().await.unwrap().len(), 1);
        users.delete(&name("alice")).await.unwrap();
        assert!(users.list().await.unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn unknown_user_and_wrong_password_get_one_answer() {
        let dir = temp_dir("same-answer");
        let users = directory(&dir).await;
        users.add(&name("alice"), &password("one")).await.unwrap();
        let wrong = users
            .verify(&name("alice"), &password("nope"))
            .await
            .unwrap_err();
        let unknown = users
            .verify(&name("mallory"), &password("nope"))
            .await
            .unwrap_err();
        assert!(matches!(wrong, LocalUserError::Rejected));
        assert!(matches!(unknown, LocalUserError::Rejected));
        assert_eq!(wrong.to_string(), unknown.to_string());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn names_the_user_that_exists_or_is_missing() {
        let dir = temp_dir("exists");
        let users = directory(&dir).await;
        users.add(&name("alice"), &password("one")).await.unwrap();
        let again = users
            .add(&name("alice"), &password("two"))
            .await
            .unwrap_err();
        assert_eq!(again.to_string(), "user alice already exists");
        // The first password still holds.
        users
            .verify(&name("alice"), &password("one"))
            .await
            .unwrap();
        let missing = users
            .set_password(&name("bob"), &password("x"))
            .await
            .unwrap_err();
        assert_eq!(missing.to_string(), "user bob does not exist");
        assert!(matches!(
            users.delete(&name("bob")).await,
            Err(LocalUserError::NotFound(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
