//! Users' TOTP devices: enrol (a new secret and its `otpauth://` URI),
//! list, remove, and check a code against every device of a user with
//! replay refusal that survives restarts.
//!
//! Devices live in the store ([`OtpDevices::add`] and friends), their
//! secrets sealed under the [`OtpKey`] and bound to (user, device); or in
//! an LDAP attribute that the directory code decodes
//! ([`crate::auth::attribute`]) and hands to [`OtpDevices::verify_entries`].
//! Either way the accepted steps are kept in the store.

use std::time::SystemTime;

use crate::auth::attribute::DeviceEntry;
use crate::auth::names::{DeviceName, UserName};
use crate::auth::otpauth::OtpauthUri;
use crate::auth::seal::{OtpKey, SealError};
use crate::auth::totp::{
    self, AnyVerdict, Candidate, SecretError, TimeStep, TotpCode, TotpParams, TotpSecret,
};
use crate::store::{Store, StoreError};

/// The device store with its key and the issuer name shown in apps.
#[derive(Debug, Clone)]
pub struct OtpDevices {
    store: Store,
    key: OtpKey,
    issuer: String,
}

/// A new device: what the user scans.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The device's name.
    pub device: DeviceName,
    /// The key URI (its text is what the QR code carries).
    pub uri: OtpauthUri,
}

/// A device as listed (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device's name.
    pub name: DeviceName,
    /// When it was added.
    pub created_at: SystemTime,
}

/// What a code check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtpVerdict {
    /// `device` accepted the code; `step` is now recorded.
    Accept {
        /// The device that matched.
        device: DeviceName,
        /// The step recorded.
        step: TimeStep,
    },
    /// The code matched `device` at a step already used.
    Replay {
        /// The device that matched.
        device: DeviceName,
    },
    /// No device matched (or the user has none).
    Reject,
}

/// Why a device operation failed (not a verdict on a code).
#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    /// The user has a device of that name.
    #[error("device {0} already exists")]
    AlreadyExists(DeviceName),
    /// The user has no device of that name.
    #[error("device {0} does not exist")]
    NotFound(DeviceName),
    /// No secret could be generated.
    #[error("cannot generate an otp secret")]
    Secret(#[source] SecretError),
    /// No secret could be sealed.
    #[error("cannot seal the otp secret")]
    Seal(#[source] SealError),
    /// The store failed.
    #[error("otp device store failed")]
    Store(#[source] StoreError),
}

impl OtpDevices {
    /// Devices in `store`, sealed with `key`; `issuer` names the gateway
    /// in authenticator apps.
    pub fn new(store: Store, key: OtpKey, issuer: &str) -> Self {
        Self {
            store,
            key,
            issuer: issuer.to_owned(),
        }
    }

    /// Enrols a new device for `user`: a fresh 160-bit secret, stored
    /// sealed, and the URI to show as a QR code.
    ///
    /// Errors: [`OtpError::AlreadyExists`], [`OtpError::Secret`],
    /// [`OtpError::Seal`], [`OtpError::Store`].
    pub async fn add(&self, user: &UserName, device: &DeviceName) -> Result<Enrolment, OtpError> {
        let secret = TotpSecret::generate().map_err(OtpError::Secret)?;
        let sealed = self
            .key
            .seal(secret.as_bytes(), &store_context(user, device))
            .map_err(OtpError::Seal)?;
        self.store
            .insert_device(user, device, &sealed)
            .await
            .map_err(|e| device_error(e, device))?;
        tracing::info!(user = %user, device = %device, "otp_device_added");
        Ok(Enrolment {
            device: device.clone(),
            uri: OtpauthUri::gateway(&self.issuer, user.as_str(), secret, Some(device.as_str())),
        })
    }

    /// The user's devices, by name.
    ///
    /// Errors: [`OtpError::Store`].
    pub async fn list(&self, user: &UserName) -> Result<Vec<DeviceInfo>, OtpError> {
        let records = self
            .store
            .list_devices(user)
            .await
            .map_err(OtpError::Store)?;
        Ok(records
            .into_iter()
            .map(|r| DeviceInfo {
                name: r.name,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Removes a device.
    ///
    /// Errors: [`OtpError::NotFound`], [`OtpError::Store`].
    pub async fn remove(&self, user: &UserName, device: &DeviceName) -> Result<(), OtpError> {
        self.store
            .delete_device(user, device)
            .await
            .map_err(|e| device_error(e, device))?;
        tracing::info!(user = %user, device = %device, "otp_device_removed");
        Ok(())
    }

    /// Checks `code` at `unix_secs` against every device of `user` in the
    /// store. A device whose secret does not open is skipped with a
    /// warning.
    ///
    /// Errors: [`OtpError::Store`].
    pub async fn verify(
        &self,
        user: &UserName,
        code: TotpCode,
        unix_secs: u64,
    ) -> Result<OtpVerdict, OtpError> {
        let records = self
            .store
            .list_devices(user)
            .await
            .map_err(OtpError::Store)?;
        let mut entries = Vec::with_capacity(records.len());
        for record in records {
            let opened = self
                .key
                .open(&record.sealed_secret, &store_context(user, &record.name))
                .map_err(|e| e.to_string())
                .and_then(|bytes| TotpSecret::from_bytes(&bytes).map_err(|e| e.to_string()));
            match opened {
                Ok(secret) => entries.push(DeviceEntry {
                    name: record.name,
                    secret,
                }),
                Err(reason) => {
                    tracing::warn!(user = %user, device = %record.name, reason, "otp_device_unreadable");
                }
            }
        }
        self.verify_entries(user, &entries, code, unix_secs).await
    }

    /// Checks `code` at `unix_secs` against `entries` (devices held
    /// elsewhere, e.g. decoded from the LDAP attribute), with replay
    /// records in the store under (user, device name).
    ///
    /// Errors: [`OtpError::Store`].
    pub async fn verify_entries(
        &self,
        user: &UserName,
        entries: &[DeviceEntry],
        code: TotpCode,
        unix_secs: u64,
    ) -> Result<OtpVerdict, OtpError> {
        let mut last = Vec::with_capacity(entries.len());
        for entry in entries {
            let step = self
                .store
                .last_accepted_step(user, &entry.name)
                .await
                .map_err(OtpError::Store)?;
            last.push(step);
        }
        let candidates: Vec<Candidate<'_>> = entries
            .iter()
            .zip(&last)
            .map(|(entry, last)| Candidate {
                secret: &entry.secret,
                last_accepted: *last,
            })
            .collect();
        let outcome = totp::verify_any(&candidates, code, unix_secs, TotpParams::GATEWAY);
        let verdict = match outcome {
            AnyVerdict::Accept { index, step } => match entries.get(index) {
                Some(entry) => {
                    // The conditional write is what makes a code single-use
                    // when two logins race with it.
                    let recorded = self
                        .store
                        .record_accepted_step(user, &entry.name, step)
                        .await
                        .map_err(OtpError::Store)?;
                    let device = entry.name.clone();
                    if recorded {
                        OtpVerdict::Accept { device, step }
                    } else {
                        OtpVerdict::Replay { device }
                    }
                }
                None => OtpVerdict::Reject,
            },
            AnyVerdict::Replay { index, .. } => match entries.get(index) {
                Some(entry) => OtpVerdict::Replay {
                    device: entry.name.clone(),
                },
                None => OtpVerdict::Reject,
            },
            AnyVerdict::Reject => OtpVerdict::Reject,
        };
        let (result, device) = match &verdict {
            OtpVerdict::Accept { device, .. } => ("accept", Some(device.as_str())),
            OtpVerdict::Replay { device } => ("replay", Some(device.as_str())),
            OtpVerdict::Reject => ("reject", None),
        };
        tracing::info!(user = %user, device, result, devices = entries.len(), "otp_verified");
        Ok(verdict)
    }
}

/// The associated data binding a stored sealed secret to (user, device).
pub fn store_context(user: &UserName, device: &DeviceName) -> Vec<u8> {
    let mut context = b"gatehouse otp store\0".to_vec();
    context.extend_from_slice(user.as_str().as_bytes());
    context.push(0);
    context.extend_from_slice(device.as_str().as_bytes());
    context
}

fn device_error(error: StoreError, device: &DeviceName) -> OtpError {
    match error {
        StoreError::AlreadyExists { .. } => OtpError::AlreadyExists(device.clone()),
        StoreError::NotFound { .. } => OtpError::NotFound(device.clone()),
        other => OtpError::Store(other),
    }
}

#[cfg(test)]
mod tests;
