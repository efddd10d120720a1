//! Where push registration finds a device's TOTP secret.

use std::future::Future;
use std::pin::Pin;

use crate::auth::devices::store_context;
use crate::auth::names::{DeviceName, UserName};
use crate::auth::seal::OtpKey;
use crate::auth::totp::TotpSecret;
use crate::store::{Store, StoreError};

/// The future of [`DeviceSecrets::secret`].
pub type SecretFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<TotpSecret>, SecretLookupError>> + Send + 'a>>;

/// The lookup failed (not "no such device", which is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum SecretLookupError {
    /// The store failed.
    #[error("device store failed")]
    Store(#[source] StoreError),
    /// The directory failed (for implementations outside this module).
    #[error("device directory failed: {0}")]
    Directory(String),
}

/// The TOTP secrets of users' devices. Object safe. Implement it for the
/// LDAP attribute too (decode with [`crate::auth::attribute::decode`]).
pub trait DeviceSecrets: Send + Sync {
    /// The secret of `user`'s device `device`, `Ok(None)` when there is no
    /// such user or device (or its secret does not open).
    fn secret<'a>(&'a self, user: &'a UserName, device: &'a DeviceName) -> SecretFuture<'a>;
}

/// Devices in the embedded store, sealed under the OTP key (the same
/// records [`crate::auth::devices::OtpDevices`] writes).
#[derive(Debug, Clone)]
pub struct StoreSecrets {
    store: Store,
    key: OtpKey,
}

impl StoreSecrets {
    /// Secrets in `store`, opened with `key`.
    pub fn new(store: Store, key: OtpKey) -> Self {
        Self { store, key }
    }
}

impl DeviceSecrets for StoreSecrets {
    fn secret<'a>(&'a self, user: &'a UserName, device: &'a DeviceName) -> SecretFuture<'a> {
        Box::pin(async move {
            let records = self
                .store
                .list_devices(user)
                .await
                .map_err(SecretLookupError::Store)?;
            let Some(record) = records.into_iter().find(|r| &r.name == device) else {
                return Ok(None);
            };
            let opened = self
                .key
                .open(&record.sealed_secret, &store_context(user, device))
                .ok()
                .and_then(|bytes| TotpSecret::from_bytes(&bytes).ok());
            if opened.is_none() {
                tracing::warn!(user = %user, device = %device, "push_device_secret_unreadable");
            }
            Ok(opened)
        })
    }
}

/// Devices in the users' LDAP OTP attribute (`#@name=secret&,`, sealed or
/// clear), found by the service account: the push devices of a gateway
/// whose directory is LDAP.
#[derive(Debug, Clone)]
pub struct LdapSecrets {
    directory: crate::ldap::LdapDirectory,
    key: OtpKey,
}

impl LdapSecrets {
    /// Secrets read from `directory`'s OTP attribute, sealed entries opened
    /// with `key`.
    pub fn new(directory: crate::ldap::LdapDirectory, key: OtpKey) -> Self {
        Self { directory, key }
    }
}

impl DeviceSecrets for LdapSecrets {
    fn secret<'a>(&'a self, user: &'a UserName, device: &'a DeviceName) -> SecretFuture<'a> {
        Box::pin(async move {
            let failed =
                |error: crate::ldap::LdapError| SecretLookupError::Directory(error.to_string());
            let Some(dn) = self
                .directory
                .user_dn(user.as_str())
                .await
                .map_err(failed)?
            else {
                return Ok(None);
            };
            let Some(value) = self.directory.otp_attribute(&dn).await.map_err(failed)? else {
                return Ok(None);
            };
            let Ok(entries) = crate::auth::attribute::decode(&value, &self.key) else {
                tracing::warn!(user = %user, "push_device_attribute_unreadable");
                return Ok(None);
            };
            Ok(entries
                .into_iter()
                .find(|decoded| &decoded.entry.name == device)
                .map(|decoded| decoded.entry.secret))
        })
    }
}
