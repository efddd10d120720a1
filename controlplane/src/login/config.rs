//! `[login]`: the login schema and the limits of the web login flow.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, in_range};
use crate::radius::RadiusSection;

/// Which factors a login needs, after the password (LDAP when `[ldap] url`
/// is set, else the local user directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LoginSchema {
    /// The password only.
    #[default]
    #[serde(rename = "password")]
    Password,
    /// The password, then RADIUS (a passcode page, or `passwd1` with
    /// `second_password`; Access-Challenge pages as the server asks).
    #[serde(rename = "password+radius")]
    PasswordRadius,
    /// The password, then a TOTP code of one of the user's devices.
    #[serde(rename = "password+otp")]
    PasswordOtp,
    /// The password, then a push approval or a TOTP code (the seed's
    /// DualAuthOrPush): with `[push] enabled = true` a user with a device
    /// gets a push with number matching, the OTP form as the fallback;
    /// with push off this is [`LoginSchema::PasswordOtp`], said once in
    /// the log (`login_push_unavailable`).
    #[serde(rename = "password+otp-or-push")]
    PasswordOtpOrPush,
}

impl LoginSchema {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::PasswordRadius => "password+radius",
            Self::PasswordOtp => "password+otp",
            Self::PasswordOtpOrPush => "password+otp-or-push",
        }
    }
}

/// `[login]`: how users log on to the gateway's web side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSection {
    /// The factors: `password`, `password+radius`, `password+otp`,
    /// `password+otp-or-push`. Default `password`.
    pub schema: LoginSchema,
    /// `true`: the login form's second password (`passwd1`) is the RADIUS
    /// password, sent in the first Access-Request right after the first
    /// password is accepted (dual passwords); only with
    /// `schema = "password+radius"`. `false`: RADIUS asks for its passcode
    /// on a page of its own. Default `false`.
    pub second_password: bool,
    /// A user of `password+otp` who has no device yet gets a session that
    /// can only register one (`/manageotp`), then logs on again. `false`:
    /// such a user is refused. Default `true`.
    pub enrol_without_device: bool,
    /// A session ends after this many seconds without a request. Default
    /// 1800.
    pub session_idle_secs: u64,
    /// A session ends this many seconds after the login, whatever happens.
    /// Default 28800.
    pub session_absolute_secs: u64,
    /// A login waiting for its second factor is forgotten after this many
    /// seconds. Default 300.
    pub pending_secs: u64,
    /// Most logins waiting for their second factor at once; more are
    /// refused ("busy"). Default 10000.
    pub max_pending: usize,
    /// Failures of one user name within `failure_window_secs` that lock it
    /// for `lockout_secs`. Default 5.
    pub user_max_failures: u32,
    /// Failures from one client address within `failure_window_secs` that
    /// lock the address for `lockout_secs`. Default 20.
    pub ip_max_failures: u32,
    /// The window failures are counted in. Default 900.
    pub failure_window_secs: u64,
    /// How long a lockout lasts. Default 900.
    pub lockout_secs: u64,
}

impl Default for LoginSection {
    fn default() -> Self {
        Self {
            schema: LoginSchema::Password,
            second_password: false,
            enrol_without_device: true,
            session_idle_secs: 1_800,
            session_absolute_secs: 28_800,
            pending_secs: 300,
            max_pending: 10_000,
            user_max_failures: 5,
            ip_max_failures: 20,
            failure_window_secs: 900,
            lockout_secs: 900,
        }
    }
}

impl LoginSection {
    /// Checks ranges and that the factors the schema names are configured.
    ///
    /// Errors: [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self, radius: &RadiusSection) -> Result<(), ConfigError> {
        in_range("login.session_idle_secs", self.session_idle_secs, 1, 86_400)?;
        in_range(
            "login.session_absolute_secs",
            self.session_absolute_secs,
            1,
            30 * 86_400,
        )?;
        in_range("login.pending_secs", self.pending_secs, 1, 3_600)?;
        in_range("login.max_pending", self.max_pending as u64, 1, 1_000_000)?;
        in_range(
            "login.user_max_failures",
            u64::from(self.user_max_failures),
            1,
            1_000,
        )?;
        in_range(
            "login.ip_max_failures",
            u64::from(self.ip_max_failures),
            1,
            100_000,
        )?;
        in_range(
            "login.failure_window_secs",
            self.failure_window_secs,
            1,
            86_400,
        )?;
        in_range("login.lockout_secs", self.lockout_secs, 1, 86_400)?;
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.schema == LoginSchema::PasswordRadius && !radius.enabled() {
            return invalid(
                "login.schema",
                "password+radius needs radius.servers (and radius.secret)",
            );
        }
        if self.second_password && self.schema != LoginSchema::PasswordRadius {
            return invalid(
                "login.second_password",
                "is the RADIUS password, so it needs schema = \"password+radius\"",
            );
        }
        Ok(())
    }
}
