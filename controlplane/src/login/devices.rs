//! Where a user's TOTP devices live: the store, or the LDAP OTP attribute
//! (sealed `#@name=secret&,`, the clear form accepted on read) when the
//! directory is LDAP. Replay records are in the store either way.

use std::sync::Arc;

use crate::auth::attribute::{self, DeviceEntry};
use crate::auth::devices::{Enrolment, OtpDevices, OtpError, OtpVerdict};
use crate::auth::names::{DeviceName, UserName};
use crate::auth::otpauth::OtpauthUri;
use crate::auth::seal::OtpKey;
use crate::auth::totp::{TotpCode, TotpSecret};
use crate::ldap::LdapDirectory;

/// The device store of the login flow and `/manageotp`.
#[derive(Debug, Clone)]
pub enum UserDevices {
    /// Devices in the store's `otp_devices` table.
    Store(OtpDevices),
    /// Devices in the LDAP attribute of the user's entry.
    Ldap {
        /// The directory.
        directory: Arc<LdapDirectory>,
        /// Seals the attribute's secrets.
        key: OtpKey,
        /// Replay records (and nothing else) in the store.
        replay: OtpDevices,
        /// The issuer of new devices' URIs.
        issuer: String,
    },
}

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// The store side failed or the device is a duplicate / unknown.
    #[error(transparent)]
    Otp(#[from] OtpError),
    /// The directory could not be read or written.
    #[error("ldap otp attribute: {0}")]
    Ldap(String),
    /// The attribute holds something that does not decode.
    #[error("the otp attribute does not decode: {0}")]
    Attribute(#[from] attribute::AttributeError),
}

impl UserDevices {
    /// The names of `user`'s devices (`dn`: the user's entry for LDAP).
    ///
    /// Errors: [`DevicesError`].
    pub async fn list(&self, user: &UserName, dn: &str) -> Result<Vec<DeviceName>, DevicesError> {
        match self {
            Self::Store(devices) => Ok(devices
                .list(user)
                .await?
                .into_iter()
                .map(|d| d.name)
                .collect()),
            Self::Ldap { .. } => Ok(self
                .ldap_entries(dn)
                .await?
                .into_iter()
                .map(|e| e.name)
                .collect()),
        }
    }

    /// Registers a device.
    ///
    /// Errors: [`DevicesError`] ([`OtpError::AlreadyExists`] for a name in
    /// use).
    pub async fn add(
        &self,
        user: &UserName,
        dn: &str,
        device: &DeviceName,
    ) -> Result<Enrolment, DevicesError> {
        match self {
            Self::Store(devices) => Ok(devices.add(user, device).await?),
            Self::Ldap {
                directory,
                key,
                issuer,
                ..
            } => {
                let mut entries = self.ldap_entries(dn).await?;
                if entries.iter().any(|e| e.name == *device) {
                    return Err(OtpError::AlreadyExists(device.clone()).into());
                }
                let secret = TotpSecret::generate().map_err(OtpError::Secret)?;
                entries.push(DeviceEntry {
                    name: device.clone(),
                    secret: secret.clone(),
                });
                let value = attribute::encode(&entries, key).map_err(OtpError::Seal)?;
                directory
                    .set_otp_attribute(dn, &value)
                    .await
                    .map_err(|e| DevicesError::Ldap(e.to_string()))?;
                tracing::info!(user = %user, device = %device, "otp_device_added");
                Ok(Enrolment {
                    device: device.clone(),
                    uri: OtpauthUri::gateway(issuer, user.as_str(), secret, Some(device.as_str())),
                })
            }
        }
    }

    /// The directory entry of `user` the LDAP form keeps devices in:
    /// `Some("")` for the store (no entry needed), `None` for a user the
    /// directory does not know.
    ///
    /// Errors: [`DevicesError::Ldap`] when the directory cannot be asked.
    pub async fn entry_of(&self, user: &UserName) -> Result<Option<String>, DevicesError> {
        match self {
            Self::Store(_) => Ok(Some(String::new())),
            Self::Ldap { directory, .. } => directory
                .user_dn(user.as_str())
                .await
                .map_err(|e| DevicesError::Ldap(e.to_string())),
        }
    }

    /// Removes a device.
    ///
    /// Errors: [`DevicesError`] ([`OtpError::NotFound`] for an unknown
    /// name).
    pub async fn remove(
        &self,
        user: &UserName,
        dn: &str,
        device: &DeviceName,
    ) -> Result<(), DevicesError> {
        match self {
            Self::Store(devices) => Ok(devices.remove(user, device).await?),
            Self::Ldap { directory, key, .. } => {
                let mut entries = self.ldap_entries(dn).await?;
                let before = entries.len();
                entries.retain(|e| e.name != *device);
                if entries.len() == before {
                    return Err(OtpError::NotFound(device.clone()).into());
                }
                let value = attribute::encode(&entries, key).map_err(OtpError::Seal)?;
                directory
                    .set_otp_attribute(dn, &value)
                    .await
                    .map_err(|e| DevicesError::Ldap(e.to_string()))?;
                tracing::info!(user = %user, device = %device, "otp_device_removed");
                Ok(())
            }
        }
    }

    /// Checks `code` at `unix_secs` against every device of the user,
    /// refusing a code already accepted.
    ///
    /// Errors: [`DevicesError`].
    pub async fn verify(
        &self,
        user: &UserName,
        dn: &str,
        code: TotpCode,
        unix_secs: u64,
    ) -> Result<OtpVerdict, DevicesError> {
        match self {
            Self::Store(devices) => Ok(devices.verify(user, code, unix_secs).await?),
            Self::Ldap { replay, .. } => {
                let entries = self.ldap_entries(dn).await?;
                Ok(replay
                    .verify_entries(user, &entries, code, unix_secs)
                    .await?)
            }
        }
    }

    async fn ldap_entries(&self, dn: &str) -> Result<Vec<DeviceEntry>, DevicesError> {
        let Self::Ldap { directory, key, .. } = self else {
            return Ok(Vec::new());
        };
        let value = directory
            .otp_attribute(dn)
            .await
            .map_err(|e| DevicesError::Ldap(e.to_string()))?;
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        Ok(attribute::decode(&value, key)?
            .into_iter()
            .map(|d| d.entry)
            .collect())
    }
}
