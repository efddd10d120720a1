//! [`LdapDirectory`]: password checks, group membership and the OTP
//! attribute against an LDAP server, with the `ldap3` crate on tokio.
//!
//! One connection per call, every step under the configured timeout:
//!
//! ```text
//! verify: connect -> service bind -> search user (1 entry) -> bind as user
//!         -> [group_mode = search: service bind -> search groups] -> unbind
//! ```
//!
//! An unknown user still costs one bind (to a DN that does not exist, its
//! result ignored), so the answer takes about as long as a wrong password.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry, SearchOptions};

use super::config::GroupMode;
use super::filter::{first_rdn_value, group_filter, is_plausible_login, user_filter};
use super::{DirectoryError, Group, PasswordDirectory, UserInfo, VerifyFuture};
use crate::config::Secret;

/// Most groups read for one user; the rest are dropped with a warning.
pub const MAX_GROUPS: i32 = 1_000;

/// LDAP result code invalidCredentials (RFC 4511 §4.1.9).
const RC_INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code sizeLimitExceeded.
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;

/// Resolved directory settings (secrets read, TLS built); made by
/// [`super::LdapSection::settings`].
#[derive(Clone)]
pub struct LdapSettings {
    /// `ldap://` or `ldaps://` URL.
    pub url: String,
    /// StartTLS on an `ldap://` connection.
    pub starttls: bool,
    /// TLS trust for `ldaps://` and StartTLS; `None`: the system roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Service account DN and password; `None`: anonymous search.
    pub service: Option<(String, Secret)>,
    /// Subtree of the users.
    pub base_dn: String,
    /// Login name attribute (`uid`, `sAMAccountName`).
    pub user_attribute: String,
    /// Extra filter for user entries.
    pub user_filter: String,
    /// Display name attribute.
    pub name_attribute: String,
    /// How groups are read.
    pub group_mode: GroupMode,
    /// Subtree of the groups (`group_mode = search`).
    pub group_base_dn: String,
    /// Extra filter for group entries.
    pub group_filter: String,
    /// Member attribute of groups (`member`, `uniqueMember`).
    pub group_member_attribute: String,
    /// Name attribute of groups.
    pub group_name_attribute: String,
    /// The OTP devices attribute.
    pub otp_attribute: String,
    /// Connection and per-operation timeout.
    pub timeout: Duration,
}

impl fmt::Debug for LdapSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapSettings")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("service_dn", &self.service.as_ref().map(|(dn, _)| dn))
            .field("base_dn", &self.base_dn)
            .field("user_attribute", &self.user_attribute)
            .field("group_mode", &self.group_mode)
            .field("otp_attribute", &self.otp_attribute)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One step of a directory call, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// TCP (and TLS) connection.
    Connect,
    /// Bind as the service account.
    ServiceBind,
    /// Search of the user entry.
    UserSearch,
    /// Bind as the user.
    UserBind,
    /// Search of the user's groups.
    GroupSearch,
    /// Read of the OTP attribute.
    ReadOtp,
    /// Write of the OTP attribute.
    WriteOtp,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::ServiceBind => "service bind",
            Self::UserSearch => "user search",
            Self::UserBind => "user bind",
            Self::GroupSearch => "group search",
            Self::ReadOtp => "otp attribute read",
            Self::WriteOtp => "otp attribute write",
        })
    }
}

/// Why a directory call failed (the directory's fault or the
/// configuration's, never the user's: a wrong password is
/// [`DirectoryError::Rejected`]).
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// The step took longer than the configured timeout.
    #[error("ldap {operation} timed out after {timeout:?}")]
    Timeout {
        /// The step.
        operation: Operation,
        /// The limit.
        timeout: Duration,
    },
    /// The server answered with a result code other than success.
    #[error("ldap {operation} refused: result code {rc}{}", if text.is_empty() { String::new() } else { format!(" ({text})") })]
    Refused {
        /// The step.
        operation: Operation,
        /// The LDAP result code (RFC 4511 §4.1.9).
        rc: u32,
        /// The server's diagnostic message.
        text: String,
    },
    /// Connection, TLS or protocol failure.
    #[error("ldap {operation} failed: {source}")]
    Protocol {
        /// The step.
        operation: Operation,
        /// The `ldap3` error.
        #[source]
        source: ldap3::LdapError,
    },
    /// An entry the client could not decode.
    #[error("ldap {operation}: malformed entry in the answer")]
    MalformedEntry {
        /// The step.
        operation: Operation,
    },
    /// The entry to read or write the OTP attribute of does not exist.
    #[error("ldap {operation}: no entry {dn}")]
    NoSuchEntry {
        /// The step.
        operation: Operation,
        /// The DN asked for.
        dn: String,
    },
}

/// The LDAP directory.
#[derive(Debug, Clone)]
pub struct LdapDirectory {
    settings: Arc<LdapSettings>,
}

impl LdapDirectory {
    /// A directory client for `settings`. Nothing is contacted until the
    /// first call.
    pub fn new(settings: LdapSettings) -> Self {
        Self {
            settings: Arc::new(settings),
        }
    }

    /// Checks `login` and `password`; see [`PasswordDirectory::verify`].
    ///
    /// Errors: [`DirectoryError::Rejected`] for an empty password, an
    /// unknown or ambiguous login, or a wrong password (the same error for
    /// all, so callers cannot enumerate users);
    /// [`DirectoryError::Unavailable`] when the directory cannot answer.
    pub async fn verify_password(
        &self,
        login: &str,
        password: &str,
    ) -> Result<UserInfo, DirectoryError> {
        if password.is_empty() {
            // RFC 4513 §5.1.2: a bind with a DN and no password is an
            // "unauthenticated bind" that many servers answer with success.
            tracing::info!(reason = "empty_password", "ldap_login_refused");
            return Err(DirectoryError::Rejected);
        }
        if !is_plausible_login(login) {
            tracing::info!(reason = "implausible_login", "ldap_login_refused");
            return Err(DirectoryError::Rejected);
        }
        let mut ldap = self.service_connection().await.map_err(unavailable)?;
        let result = self.verify_on(&mut ldap, login, password).await;
        self.close(ldap).await;
        result
    }

    /// The DN of the one entry whose login attribute is `login` (searched
    /// with the service account, the user's password is not needed); `None`
    /// for no entry or several.
    ///
    /// Errors: [`LdapError`] for a failed bind or search.
    pub async fn user_dn(&self, login: &str) -> Result<Option<String>, LdapError> {
        let mut ldap = self.service_connection().await?;
        let result = self.find_user(&mut ldap, login).await;
        self.close(ldap).await;
        Ok(result?.map(|entry| entry.dn))
    }

    /// The raw value of the OTP attribute of the entry `dn` (the devices in
    /// `#@name=secret&,` form). Several values are joined in order. `None`
    /// when the attribute is absent.
    ///
    /// Errors: [`LdapError`], [`LdapError::NoSuchEntry`] for a `dn` that
    /// does not exist.
    pub async fn otp_attribute(&self, dn: &str) -> Result<Option<String>, LdapError> {
        let mut ldap = self.service_connection().await?;
        let result = self.read_otp(&mut ldap, dn).await;
        self.close(ldap).await;
        result
    }

    /// Replaces the OTP attribute of the entry `dn` with `value`; an empty
    /// `value` removes the attribute. Needs a service account with write
    /// access to the attribute.
    ///
    /// Errors: [`LdapError`] ([`LdapError::Refused`] with rc 50 when the
    /// service account may not write, rc 32 when `dn` does not exist).
    pub async fn set_otp_attribute(&self, dn: &str, value: &str) -> Result<(), LdapError> {
        let mut ldap = self.service_connection().await?;
        let values: HashSet<&str> = if value.is_empty() {
            HashSet::new()
        } else {
            HashSet::from([value])
        };
        let attribute = self.settings.otp_attribute.as_str();
        let result = self
            .step(
                Operation::WriteOtp,
                ldap.modify(dn, vec![Mod::Replace(attribute, values)]),
            )
            .await
            .and_then(|result| check(Operation::WriteOtp, result));
        self.close(ldap).await;
        result?;
        tracing::info!(dn, attribute, "ldap_otp_attribute_written");
        Ok(())
    }

    async fn verify_on(
        &self,
        ldap: &mut Ldap,
        login: &str,
        password: &str,
    ) -> Result<UserInfo, DirectoryError> {
        let settings = &*self.settings;
        let Some(entry) = self.find_user(ldap, login).await.map_err(unavailable)? else {
            // Spend a bind anyway, so an unknown user is not told apart by
            // timing; its outcome does not matter.
            let decoy = format!(
                "{}={},{}",
                settings.user_attribute,
                ldap3::dn_escape(login),
                settings.base_dn
            );
            let _ = self
                .step(Operation::UserBind, ldap.simple_bind(&decoy, password))
                .await;
            tracing::info!(reason = "unknown_user", "ldap_login_refused");
            return Err(DirectoryError::Rejected);
        };
        let bound = self
            .step(Operation::UserBind, ldap.simple_bind(&entry.dn, password))
            .await
            .map_err(unavailable)?;
        if bound.rc == RC_INVALID_CREDENTIALS {
            tracing::info!(reason = "wrong_password", dn = %entry.dn, "ldap_login_refused");
            return Err(DirectoryError::Rejected);
        }
        if bound.rc != 0 {
            // Locked or expired accounts and the like (AD answers 49 with a
            // sub-code in the text; OpenLDAP's ppolicy 53): still a refusal
            // for the user, worth a look for the administrator.
            tracing::warn!(
                reason = "bind_refused",
                dn = %entry.dn,
                rc = bound.rc,
                text = %bound.text,
                "ldap_login_refused"
            );
            return Err(DirectoryError::Rejected);
        }
        let login_value = attribute_values(&entry, &settings.user_attribute)
            .next()
            .unwrap_or(login)
            .to_owned();
        let name = attribute_values(&entry, &settings.name_attribute)
            .next()
            .unwrap_or(&login_value)
            .to_owned();
        let groups = match settings.group_mode {
            GroupMode::None => Vec::new(),
            GroupMode::MemberOf => attribute_values(&entry, "memberOf")
                .map(|dn| Group {
                    name: first_rdn_value(dn).unwrap_or_else(|| dn.to_owned()),
                    dn: dn.to_owned(),
                })
                .collect(),
            GroupMode::Search => {
                self.service_bind(ldap).await.map_err(unavailable)?;
                self.search_groups(ldap, &entry.dn)
                    .await
                    .map_err(unavailable)?
            }
        };
        tracing::info!(dn = %entry.dn, groups = groups.len(), "ldap_login_accepted");
        Ok(UserInfo {
            dn: entry.dn,
            login: login_value,
            name,
            groups,
        })
    }

    /// The one entry for `login`, `None` for none or several.
    async fn find_user(
        &self,
        ldap: &mut Ldap,
        login: &str,
    ) -> Result<Option<SearchEntry>, LdapError> {
        let settings = &*self.settings;
        let filter = user_filter(&settings.user_attribute, &settings.user_filter, login);
        let mut attrs = vec![
            settings.user_attribute.as_str(),
            settings.name_attribute.as_str(),
        ];
        if settings.group_mode == GroupMode::MemberOf {
            attrs.push("memberOf");
        }
        let op = Operation::UserSearch;
        // Two entries are enough to know the login is ambiguous.
        let search = ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .search(&settings.base_dn, Scope::Subtree, &filter, attrs);
        let ldap3::SearchResult(entries, result) = self.step(op, search).await?;
        if result.rc == RC_SIZE_LIMIT_EXCEEDED || entries.len() > 1 {
            tracing::warn!(filter = %filter, "ldap_login_ambiguous");
            return Ok(None);
        }
        check(op, result)?;
        entries
            .into_iter()
            .next()
            .map(|entry| construct(op, entry))
            .transpose()
    }

    async fn search_groups(&self, ldap: &mut Ldap, dn: &str) -> Result<Vec<Group>, LdapError> {
        let settings = &*self.settings;
        let op = Operation::GroupSearch;
        let filter = group_filter(&settings.group_filter, &settings.group_member_attribute, dn);
        let search = ldap
            .with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS))
            .search(
                &settings.group_base_dn,
                Scope::Subtree,
                &filter,
                vec![settings.group_name_attribute.as_str()],
            );
        let ldap3::SearchResult(entries, result) = self.step(op, search).await?;
        if result.rc == RC_SIZE_LIMIT_EXCEEDED {
            tracing::warn!(dn, max = MAX_GROUPS, "ldap_groups_truncated");
        } else {
            check(op, result)?;
        }
        entries
            .into_iter()
            .map(|entry| {
                let entry = construct(op, entry)?;
                let name = attribute_values(&entry, &settings.group_name_attribute)
                    .next()
                    .map(str::to_owned)
                    .or_else(|| first_rdn_value(&entry.dn))
                    .unwrap_or_else(|| entry.dn.clone());
                Ok(Group { dn: entry.dn, name })
            })
            .collect()
    }

    async fn read_otp(&self, ldap: &mut Ldap, dn: &str) -> Result<Option<String>, LdapError> {
        let op = Operation::ReadOtp;
        let attribute = self.settings.otp_attribute.as_str();
        let search = ldap.search(dn, Scope::Base, "(objectClass=*)", vec![attribute]);
        let ldap3::SearchResult(entries, result) = self.step(op, search).await?;
        // noSuchObject (32): the DN is wrong, not the attribute missing.
        if result.rc == 32 {
            return Err(LdapError::NoSuchEntry {
                operation: op,
                dn: dn.to_owned(),
            });
        }
        check(op, result)?;
        let Some(entry) = entries.into_iter().next() else {
            return Err(LdapError::NoSuchEntry {
                operation: op,
                dn: dn.to_owned(),
            });
        };
        let entry = construct(op, entry)?;
        let values: Vec<&str> = attribute_values(&entry, attribute).collect();
        Ok((!values.is_empty()).then(|| values.concat()))
    }

    /// Connects and binds as the service account (if any).
    async fn service_connection(&self) -> Result<Ldap, LdapError> {
        let settings = &*self.settings;
        let mut conn = LdapConnSettings::new()
            .set_conn_timeout(settings.timeout)
            .set_starttls(settings.starttls);
        if let Some(tls) = &settings.tls {
            conn = conn.set_config(Arc::clone(tls));
        }
        let connect = LdapConnAsync::with_settings(conn, &settings.url);
        let (driver, mut ldap) = self.step(Operation::Connect, connect).await?;
        tokio::spawn(async move {
            if let Err(error) = driver.drive().await {
                tracing::debug!(reason = %error, "ldap_connection_ended");
            }
        });
        self.service_bind(&mut ldap).await?;
        Ok(ldap)
    }

    async fn service_bind(&self, ldap: &mut Ldap) -> Result<(), LdapError> {
        let Some((dn, password)) = &self.settings.service else {
            return Ok(());
        };
        let op = Operation::ServiceBind;
        let result = self.step(op, ldap.simple_bind(dn, password.expose())).await;
        result
            .and_then(|result| check(op, result))
            .inspect_err(|error| {
                tracing::error!(reason = %error, "ldap_service_bind_failed");
            })
    }

    /// Runs one step under the timeout.
    async fn step<T>(
        &self,
        operation: Operation,
        future: impl Future<Output = ldap3::result::Result<T>>,
    ) -> Result<T, LdapError> {
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, future).await {
            Err(_) | Ok(Err(ldap3::LdapError::Timeout { .. })) => {
                Err(LdapError::Timeout { operation, timeout })
            }
            Ok(Err(ldap3::LdapError::LdapResult { result })) => Err(LdapError::Refused {
                operation,
                rc: result.rc,
                text: result.text,
            }),
            Ok(Err(source)) => Err(LdapError::Protocol { operation, source }),
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// Unbinds (best effort, bounded); dropping the handle closes the
    /// connection either way.
    async fn close(&self, mut ldap: Ldap) {
        let _ = tokio::time::timeout(self.settings.timeout, ldap.unbind()).await;
    }
}

impl PasswordDirectory for LdapDirectory {
    fn verify<'a>(&'a self, login: &'a str, password: &'a str) -> VerifyFuture<'a> {
        Box::pin(self.verify_password(login, password))
    }
}

fn unavailable(error: LdapError) -> DirectoryError {
    DirectoryError::Unavailable(error)
}

fn check(operation: Operation, result: ldap3::LdapResult) -> Result<(), LdapError> {
    if result.rc == 0 {
        Ok(())
    } else {
        Err(LdapError::Refused {
            operation,
            rc: result.rc,
            text: result.text,
        })
    }
}

/// `SearchEntry::construct` panics on an entry it cannot parse (its
/// documented contract); a bad answer from the server must be an error,
/// not a panic of the login task.
fn construct(operation: Operation, entry: ldap3::ResultEntry) -> Result<SearchEntry, LdapError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(entry)))
        .map_err(|_| LdapError::MalformedEntry { operation })
}

/// The string values of `name` in `entry`; attribute names compare
/// without case (servers answer `memberOf` to a request for `memberof`).
fn attribute_values<'e>(entry: &'e SearchEntry, name: &str) -> impl Iterator<Item = &'e str> {
    entry
        .attrs
        .iter()
        .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
        .flat_map(|(_, values)| values.iter().map(String::as_str))
}
