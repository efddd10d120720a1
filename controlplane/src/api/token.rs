//! API tokens: `gh_` + base64url (no padding) of 32 random bytes, shown
//! once at creation and kept only as their SHA-256 (hex) in the store
//! (table `api_tokens`), with a name, a [`Role`], the creation time and
//! the last use.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::store::{Store, StoreError};

/// The prefix of every API token.
pub const TOKEN_PREFIX: &str = "gh_";

/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;

/// Longest token name.
pub const MAX_NAME_LEN: usize = 64;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// GET only.
    ReadOnly,
    /// Everything.
    Admin,
}

impl Role {
    /// `read-only` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::Admin => "admin",
        }
    }

    /// Parses `read-only` or `admin`.
    ///
    /// Errors: a message naming the accepted values.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "read-only" => Ok(Self::ReadOnly),
            "admin" => Ok(Self::Admin),
            _ => Err(format!(
                "invalid role {text:?}, expected read-only or admin"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token's name: 1 to [`MAX_NAME_LEN`] of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenName(String);

impl TokenName {
    /// Validates a name.
    ///
    /// Errors: a message saying what is expected.
    pub fn new(text: &str) -> Result<Self, String> {
        let valid = !text.is_empty()
            && text.len() <= MAX_NAME_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "invalid token name {text:?}, expected 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 . _ -"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A freshly generated token secret; zeroed on drop.
pub struct TokenSecret(Zeroizing<String>);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(gh_…)")
    }
}

impl TokenSecret {
    /// A new random token from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
        crate::sta::http::os_fill(bytes.as_mut());
        let mut text = String::with_capacity(TOKEN_PREFIX.len() + 43);
        text.push_str(TOKEN_PREFIX);
        text.push_str(&data_encoding::BASE64URL_NOPAD.encode(bytes.as_ref()));
        Self(Zeroizing::new(text))
    }

    /// The token, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The stored form of `token`: lowercase hex of its SHA-256.
pub fn hash(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last use, Unix seconds; absent when never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
}

/// The tokens in the store.
#[derive(Debug, Clone)]
pub struct Tokens {
    store: Store,
}

impl Tokens {
    /// The tokens kept in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Creates a token `name` with `role`; returns its secret (shown once).
    ///
    /// Errors: [`StoreError::AlreadyExists`] for a taken name,
    /// [`StoreError::Query`].
    pub async fn create(
        &self,
        name: &TokenName,
        role: Role,
    ) -> Result<(TokenSecret, TokenInfo), StoreError> {
        let secret = TokenSecret::generate();
        let now = super::unix_now();
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (name, token_sha256, role, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(name.as_str())
        .bind(hash(secret.expose()))
        .bind(role.as_str())
        .bind(now)
        .execute(self.store.pool())
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists {
                what: "token",
                name: name.to_string(),
            });
        }
        let info = TokenInfo {
            name: name.to_string(),
            role,
            created_at: now,
            last_used_at: None,
        };
        Ok((secret, info))
    }

    /// Every token, by name.
    ///
    /// Errors: [`StoreError::Query`], [`StoreError::Corrupt`].
    pub async fn list(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, role, created_at, last_used_at FROM api_tokens ORDER BY name",
        )
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(info_of).collect()
    }

    /// The token `name`, if any.
    ///
    /// Errors: [`StoreError::Query`], [`StoreError::Corrupt`].
    pub async fn get(&self, name: &str) -> Result<Option<TokenInfo>, StoreError> {
        let row = sqlx::query(
            "SELECT name, role, created_at, last_used_at FROM api_tokens WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.store.pool())
        .await?;
        row.as_ref().map(info_of).transpose()
    }

    /// Revokes (deletes) the token `name`.
    ///
    /// Errors: [`StoreError::NotFound`], [`StoreError::Query`].
    pub async fn revoke(&self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE name = $1")
            .bind(name)
            .execute(self.store.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "token",
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// The token whose secret is `presented`, with its last use set to
    /// now; `None` for an unknown token. The lookup is by hash; the hashes
    /// are compared again in constant time.
    ///
    /// Errors: [`StoreError::Query`], [`StoreError::Corrupt`].
    pub async fn authenticate(&self, presented: &str) -> Result<Option<TokenInfo>, StoreError> {
        if !presented.starts_with(TOKEN_PREFIX) || presented.len() > 128 {
            return Ok(None);
        }
        let wanted = hash(presented);
        let row = sqlx::query(
            "SELECT name, role, created_at, last_used_at, token_sha256 FROM api_tokens \
             WHERE token_sha256 = $1",
        )
        .bind(&wanted)
        .fetch_optional(self.store.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored: String = row.try_get(4)?;
        if !bool::from(stored.as_bytes().ct_eq(wanted.as_bytes())) {
            return Ok(None);
        }
        let info = info_of(&row)?;
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE name = $2")
            .bind(super::unix_now())
            .bind(&info.name)
            .execute(self.store.pool())
            .await?;
        Ok(Some(info))
    }
}

fn info_of(row: &sqlx::sqlite::SqliteRow) -> Result<TokenInfo, StoreError> {
    let role: String = row.try_get(1)?;
    Ok(TokenInfo {
        name: row.try_get(0)?,
        role: Role::parse(&role).map_err(|_| StoreError::Corrupt {
            what: "api_tokens.role",
        })?,
        created_at: row.try_get(2)?,
        last_used_at: row.try_get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_base64url_of_32_bytes() {
        let token = TokenSecret::generate();
        let text = token.expose();
        let body = text.strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(
            data_encoding::BASE64URL_NOPAD
                .decode(body.as_bytes())
                .unwrap()
                .len(),
            TOKEN_BYTES
        );
        assert_ne!(TokenSecret::generate().expose(), text);
    }

    #[test]
    fn hash_is_lowercase_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rejects_token_names_outside_the_alphabet() {
        assert!(TokenName::new("ci-bot.1_a").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(65)] {
            assert!(TokenName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn stores_only_the_hash_and_authenticates_by_secret() {
        let (store, _dir) = super::super::test_store("tokens").await;
        let tokens = Tokens::new(store.clone());
        let name = TokenName::new("ops").unwrap();
        let (secret, info) = tokens.create(&name, Role::Admin).await.unwrap();
        assert_eq!(info.role, Role::Admin);
        assert!(
            tokens
                .create(&name, Role::ReadOnly)
                .await
                .unwrap_err()
                .is_already_exists()
        );
        let stored: String = sqlx::query_scalar("SELECT token_sha256 FROM api_tokens")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(stored, hash(secret.expose()));
        let found = tokens.authenticate(secret.expose()).await.unwrap().unwrap();
        assert_eq!(found.name, "ops");
        assert!(tokens.authenticate("gh_wrong").await.unwrap().is_none());
        let listed = tokens.list().await.unwrap();
        assert!(listed[0].last_used_at.is_some());
        tokens.revoke("ops").await.unwrap();
        assert!(
            tokens
                .authenticate(secret.expose())
                .await
                .unwrap()
                .is_none()
        );
        assert!(tokens.revoke("ops").await.unwrap_err().is_not_found());
    }
}
