//! `[push]`: whether push approval is offered and its timing and bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::service::PushSettings;
use crate::config::{ConfigError, in_range};

/// `[push]`. Push is off unless `enabled = true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSection {
    /// Offer push approval and serve the device endpoints. Default false.
    pub enabled: bool,
    /// Seconds the login page waits for the device's answer before it
    /// offers "enter OTP manually" and "Resend notification" (1 to 300).
    /// Default 30.
    pub wait_secs: u64,
    /// Seconds the gateway holds a device's poll open when there is no
    /// push (1 to 300). Default 25.
    pub poll_hold_secs: u64,
    /// Seconds after a poll ended during which the device still counts as
    /// connected (it is about to poll again; 0 to 60). Default 5.
    pub connect_grace_secs: u64,
    /// Most devices registered at once, all users (1 to 1000000). Default
    /// 10000.
    pub max_devices: usize,
    /// Most pushes waiting for an answer at once, all users (1 to
    /// 1000000). Default 1000.
    pub max_pending: usize,
}

impl Default for PushSection {
    fn default() -> Self {
        Self {
            enabled: false,
            wait_secs: 30,
            poll_hold_secs: 25,
            connect_grace_secs: 5,
            max_devices: 10_000,
            max_pending: 1_000,
        }
    }
}

impl PushSection {
    /// Checks ranges; called by [`crate::config::Config::validate`].
    ///
    /// Errors: [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("push.wait_secs", self.wait_secs, 1, 300)?;
        in_range("push.poll_hold_secs", self.poll_hold_secs, 1, 300)?;
        in_range("push.connect_grace_secs", self.connect_grace_secs, 0, 60)?;
        in_range("push.max_devices", self.max_devices as u64, 1, 1_000_000)?;
        in_range("push.max_pending", self.max_pending as u64, 1, 1_000_000)?;
        Ok(())
    }

    /// The service's settings.
    pub fn settings(&self) -> PushSettings {
        PushSettings {
            enabled: self.enabled,
            wait: Duration::from_secs(self.wait_secs),
            poll_hold: Duration::from_secs(self.poll_hold_secs),
            connect_grace: Duration::from_secs(self.connect_grace_secs),
            max_devices: self.max_devices,
            max_pending: self.max_pending,
        }
    }
}
