//! The LDAP factor: passwords checked by binding to a real directory
//! (OpenLDAP, Active Directory), group membership for policy, and the
//! per-user attribute that stores OTP devices (PROTOCOLS.md §9).
//!
//! - [`PasswordDirectory`]: what the login flow asks of any password
//!   directory (LDAP here; the embedded local directory implements it too).
//! - [`directory`]: [`LdapDirectory`], the `ldap3` client: service bind,
//!   user search by `uid` or `sAMAccountName` with an RFC 4515-escaped
//!   filter, bind as the user, groups by `memberOf` or by a group search,
//!   OTP attribute read and write.
//! - [`filter`]: the filter and DN text functions, pure.
//! - [`config`]: `[ldap]` ([`LdapSection`]).
//!
//! What it refuses: an empty password (never sent: a bind with a DN and no
//! password is an unauthenticated bind that servers accept, RFC 4513
//! §5.1.2), a login that matches no entry or several, filter syntax in a
//! login (escaped to a literal). Unknown users and wrong passwords give the
//! same [`DirectoryError::Rejected`] and cost one bind each. It never logs
//! a password or the OTP attribute's value.
//!
//! Who calls it: the login flow (verify) and `/manageotp` (the OTP
//! attribute; the `#@name=secret&,` form is encoded and parsed in
//! `crate::auth`, this module moves the raw string).

pub mod config;
pub mod directory;
pub mod filter;

use std::future::Future;
use std::pin::Pin;

pub use config::{GroupMode, LdapSection};
pub use directory::{LdapDirectory, LdapError, LdapSettings, Operation};

/// What a password check yields: who the user is for policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The user's DN (the key for [`LdapDirectory::otp_attribute`]).
    pub dn: String,
    /// The login name as the directory spells it (the value of the login
    /// attribute, which may differ in case from what the user typed).
    pub login: String,
    /// The display name.
    pub name: String,
    /// The groups the user is a member of.
    pub groups: Vec<Group>,
}

/// A group the user is a member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group's DN.
    pub dn: String,
    /// Its name: the group name attribute, or the value of the DN's first
    /// RDN (`cn=vpn-users,...` gives `vpn-users`).
    pub name: String,
}

/// Why a password check did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Unknown user, wrong password, empty password, ambiguous login: one
    /// answer for all, so a caller cannot learn which users exist.
    #[error("invalid user name or password")]
    Rejected,
    /// The directory could not answer (down, timeout, service account
    /// refused): the user is not at fault and may retry later.
    #[error("directory unavailable: {0}")]
    Unavailable(#[source] LdapError),
}

/// The future returned by [`PasswordDirectory::verify`].
pub type VerifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<UserInfo, DirectoryError>> + Send + 'a>>;

/// A directory that checks a login name and password: the first factor of
/// every login schema. Object safe, so the login flow can hold an
/// `Arc<dyn PasswordDirectory>` (LDAP or the local store).
pub trait PasswordDirectory: Send + Sync {
    /// Checks `password` for `login` and returns who the user is.
    ///
    /// Contract: an empty password is [`DirectoryError::Rejected`] without
    /// asking anyone; unknown users and wrong passwords are both
    /// [`DirectoryError::Rejected`], alike in time as far as the directory
    /// allows; only a directory that cannot answer is
    /// [`DirectoryError::Unavailable`].
    fn verify<'a>(&'a self, login: &'a str, password: &'a str) -> VerifyFuture<'a>;
}

#[cfg(test)]
mod tests;
