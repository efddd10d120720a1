//! IIP pools and the lease table.
//!
//! A pool is an IPv4 CIDR in one resource location, owned by one or more
//! connectors, drawn from by the users and groups it names. A user is
//! leased one IIP when their access client connects (from the first pool,
//! in file order, that serves them) and releases it when it disconnects.
//!
//! Stickiness: a released lease stays the user's for the stickiness window;
//! the same user connecting again within it gets the same IIP back, and no
//! one else can take it. Past the window the IIP is free for anyone (the
//! user gets it back too when it is still free).
//!
//! The table is sans-IO: every operation takes `now`; the caller persists
//! what an operation returns ([`Lease`] rows) in the store.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The recommended ratio of pool addresses to the users who can draw from
/// it (seed 000: 1:3).
pub const ADDRESSES_PER_USER: u64 = 3;

/// Smallest prefix length of a pool (a /8 holds 16 million addresses).
pub const MIN_PREFIX: u8 = 8;

/// `[[server_to_client.pools]]`: one IIP pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Unique name (1-64 of `A-Z a-z 0-9 - _ .`).
    pub name: String,
    /// The resource location the pool serves (the policy's `locations`).
    pub location: String,
    /// The IPv4 CIDR the IIPs are drawn from (`/8` to `/32`); for a prefix
    /// up to /30 the network and broadcast addresses are not leased.
    #[schema(value_type = String)]
    pub cidr: Ipv4Net,
    /// The connectors that own the pool's IIPs (their `--name`); empty:
    /// any connector.
    #[serde(default)]
    pub connectors: Vec<String>,
    /// Users who draw from the pool (case-insensitive).
    #[serde(default)]
    pub users: Vec<String>,
    /// Directory groups whose members draw from the pool; with `users`
    /// also empty, every user draws from it.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl PoolConfig {
    /// Checks the pool at `server_to_client.pools[index]`.
    pub(crate) fn validate(&self, index: usize) -> Result<(), (String, String)> {
        let key = |field: &str| format!("server_to_client.pools[{index}].{field}");
        crate::policy::check_name(key("name"), &self.name)?;
        if !super::valid_name(&self.location) {
            return Err((
                key("location"),
                format!(
                    "invalid location {:?}: 1 to 64 letters, digits, '-', '_' or '.'",
                    self.location
                ),
            ));
        }
        if self.cidr.prefix_len() < MIN_PREFIX {
            return Err((
                key("cidr"),
                format!("{} is larger than a /{MIN_PREFIX}", self.cidr),
            ));
        }
        if self.cidr != self.cidr.trunc() {
            return Err((
                key("cidr"),
                format!(
                    "{} has host bits set, expected {}",
                    self.cidr,
                    self.cidr.trunc()
                ),
            ));
        }
        if let Some(bad) = self.connectors.iter().find(|c| !super::valid_name(c)) {
            return Err((key("connectors"), format!("invalid connector name {bad:?}")));
        }
        Ok(())
    }

    /// How many IIPs the pool leases.
    pub fn capacity(&self) -> u64 {
        self.addresses().len_hint()
    }

    /// Whether `user` (with `groups`) draws from this pool.
    pub fn serves(&self, user: &str, groups: &[String]) -> bool {
        if self.users.is_empty() && self.groups.is_empty() {
            return true;
        }
        self.users.iter().any(|u| u.eq_ignore_ascii_case(user))
            || self
                .groups
                .iter()
                .any(|g| groups.iter().any(|mine| mine.eq_ignore_ascii_case(g)))
    }

    /// Whether `connector` owns this pool's IIPs.
    pub fn owned_by(&self, connector: &str) -> bool {
        self.connectors.is_empty()
            || self
                .connectors
                .iter()
                .any(|c| c.eq_ignore_ascii_case(connector))
    }

    /// Whether `iip` is one of the pool's leasable addresses.
    pub fn holds(&self, iip: Ipv4Addr) -> bool {
        let (first, last) = self.addresses().bounds;
        (first..=last).contains(&u32::from(iip))
    }

    fn addresses(&self) -> Addresses {
        let network = u32::from(self.cidr.network());
        let broadcast = u32::from(self.cidr.broadcast());
        let bounds = if self.cidr.prefix_len() <= 30 {
            (network + 1, broadcast - 1)
        } else {
            (network, broadcast)
        };
        Addresses { bounds }
    }
}

/// The leasable range of a pool, as integers (first, last), inclusive.
#[derive(Debug, Clone, Copy)]
struct Addresses {
    bounds: (u32, u32),
}

impl Addresses {
    fn len_hint(self) -> u64 {
        u64::from(self.bounds.1 - self.bounds.0) + 1
    }
}

/// One lease: an IIP held by a user, active or released (sticky).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub iip: Ipv4Addr,
    /// The pool it came from.
    pub pool: String,
    /// The user (lowercase).
    pub user: String,
    /// When it was leased (or leased again).
    pub leased_at: SystemTime,
    /// When it was released; `None` while the user is connected.
    pub released_at: Option<SystemTime>,
}

impl Lease {
    /// Whether the user is connected with it.
    pub fn is_active(&self) -> bool {
        self.released_at.is_none()
    }

    /// Whether the lease still binds the IIP to its user at `now`: active,
    /// or released less than `stickiness` ago.
    pub fn binds(&self, now: SystemTime, stickiness: Duration) -> bool {
        match self.released_at {
            None => true,
            Some(released) => now
                .duration_since(released)
                .map_or(true, |since| since < stickiness),
        }
    }
}

/// What [`LeaseTable::lease`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// The lease now active (persist it).
    pub lease: Lease,
    /// The lease of another user whose sticky window had passed and whose
    /// IIP this lease took (delete it from the store first).
    pub reclaimed: Option<Lease>,
    /// Whether the user got back the IIP they held before.
    pub sticky: bool,
}

/// Why no IIP was leased.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No pool serves the user.
    #[error("no client ip pool serves user {user}")]
    NoPool {
        /// The user.
        user: String,
    },
    /// Every address of the pool is held (active or sticky).
    #[error("client ip pool {pool} is exhausted: all {capacity} addresses are leased")]
    Exhausted {
        /// The pool.
        pool: String,
        /// Its size.
        capacity: u64,
    },
}

/// The leases of every pool, by IIP and by user.
///
/// Invariant: one lease per IIP (the map key) and one per user
/// (`by_user`); a lease that [`Lease::binds`] is never given to another
/// user.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    pools: Vec<PoolConfig>,
    stickiness: Duration,
    by_iip: BTreeMap<Ipv4Addr, Lease>,
    by_user: BTreeMap<String, Ipv4Addr>,
}

impl LeaseTable {
    /// An empty table over `pools` (file order) with the stickiness window.
    pub fn new(pools: Vec<PoolConfig>, stickiness: Duration) -> Self {
        Self {
            pools,
            stickiness,
            by_iip: BTreeMap::new(),
            by_user: BTreeMap::new(),
        }
    }

    /// Loads leases read from the store. A lease whose IIP is in no pool
    /// any more, or a second lease of the same user or IIP, is skipped and
    /// returned so the caller can delete it.
    pub fn restore(&mut self, leases: Vec<Lease>) -> Vec<Lease> {
        let mut dropped = Vec::new();
        for lease in leases {
            let known = self
                .pools
                .iter()
                .any(|p| p.name == lease.pool && p.holds(lease.iip));
            if !known
                || self.by_iip.contains_key(&lease.iip)
                || self.by_user.contains_key(&lease.user)
            {
                dropped.push(lease);
                continue;
            }
            self.by_user.insert(lease.user.clone(), lease.iip);
            self.by_iip.insert(lease.iip, lease);
        }
        dropped
    }

    /// The pools, in file order.
    pub fn pools(&self) -> &[PoolConfig] {
        &self.pools
    }

    /// The stickiness window.
    pub fn stickiness(&self) -> Duration {
        self.stickiness
    }

    /// Leases an IIP to `user` (with `groups`) at `now`: their own lease
    /// again when it still binds, else the lowest free address of the
    /// first pool that serves them (an address is free when no lease binds
    /// it). Leasing again while active returns the same lease.
    ///
    /// Errors: [`LeaseError::NoPool`], [`LeaseError::Exhausted`].
    pub fn lease(
        &mut self,
        user: &str,
        groups: &[String],
        now: SystemTime,
    ) -> Result<Leased, LeaseError> {
        let user = user.to_ascii_lowercase();
        let pool_index = self
            .pools
            .iter()
            .position(|p| p.serves(&user, groups))
            .ok_or_else(|| LeaseError::NoPool { user: user.clone() })?;
        let pool = &self.pools[pool_index];
        if let Some(iip) = self.by_user.get(&user).copied()
            && let Some(lease) = self.by_iip.get_mut(&iip)
            && lease.pool == pool.name
        {
            // Their own lease: still binding, or expired but not taken.
            let sticky = lease.released_at.is_some();
            lease.released_at = None;
            lease.leased_at = now;
            return Ok(Leased {
                lease: lease.clone(),
                reclaimed: None,
                sticky,
            });
        }
        let (first, last) = pool.addresses().bounds;
        let mut chosen = None;
        // Lowest address that no lease binds; bounded by the pool's size.
        for value in first..=last {
            let iip = Ipv4Addr::from(value);
            match self.by_iip.get(&iip) {
                None => {
                    chosen = Some((iip, None));
                    break;
                }
                Some(other) if !other.binds(now, self.stickiness) => {
                    chosen = Some((iip, Some(other.clone())));
                    break;
                }
                Some(_) => {}
            }
        }
        let Some((iip, reclaimed)) = chosen else {
            return Err(LeaseError::Exhausted {
                pool: pool.name.clone(),
                capacity: pool.capacity(),
            });
        };
        let pool_name = pool.name.clone();
        // The user's lease in a pool that no longer serves them goes.
        if let Some(old) = self.by_user.remove(&user) {
            self.by_iip.remove(&old);
        }
        if let Some(other) = &reclaimed {
            self.by_user.remove(&other.user);
        }
        let lease = Lease {
            iip,
            pool: pool_name,
            user: user.clone(),
            leased_at: now,
            released_at: None,
        };
        self.by_iip.insert(iip, lease.clone());
        self.by_user.insert(user, iip);
        Ok(Leased {
            lease,
            reclaimed,
            sticky: false,
        })
    }

    /// Releases `user`'s active lease at `now`; the released (sticky)
    /// lease, or `None` when the user held no active lease.
    pub fn release(&mut self, user: &str, now: SystemTime) -> Option<Lease> {
        let iip = *self.by_user.get(&user.to_ascii_lowercase())?;
        let lease = self.by_iip.get_mut(&iip)?;
        if !lease.is_active() {
            return None;
        }
        lease.released_at = Some(now);
        Some(lease.clone())
    }

    /// The active lease of `iip`.
    pub fn active(&self, iip: Ipv4Addr) -> Option<&Lease> {
        self.by_iip.get(&iip).filter(|lease| lease.is_active())
    }

    /// The lease (active or released) of `user`.
    pub fn of_user(&self, user: &str) -> Option<&Lease> {
        let iip = self.by_user.get(&user.to_ascii_lowercase())?;
        self.by_iip.get(iip)
    }

    /// Every lease, by IIP.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_iip.values()
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// A pool's size against the users who can draw from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// The pool.
    pub name: String,
    /// Its resource location.
    pub location: String,
    /// Addresses it leases.
    pub capacity: u64,
    /// Users known to draw from it (see [`known_users`]).
    pub users: u64,
    /// Leases that bind an address now (active or sticky).
    pub leased: u64,
    /// `capacity < 3 x users`: the pool is smaller than recommended.
    pub undersized: bool,
}

/// The users known to draw from `pool`: the users it names, plus, when it
/// names neither users nor groups (everyone draws), `local_users` (the
/// local directory's size). Members of directory groups are not counted:
/// the control plane does not enumerate LDAP groups.
pub fn known_users(pool: &PoolConfig, local_users: u64) -> u64 {
    let named = pool.users.len() as u64;
    if pool.users.is_empty() && pool.groups.is_empty() {
        local_users
    } else {
        named
    }
}

/// The status of every pool at `now`, given the local directory's size.
pub fn status(table: &LeaseTable, local_users: u64, now: SystemTime) -> Vec<PoolStatus> {
    table
        .pools()
        .iter()
        .map(|pool| {
            let users = known_users(pool, local_users);
            let capacity = pool.capacity();
            let leased = table
                .iter()
                .filter(|l| l.pool == pool.name && l.binds(now, table.stickiness()))
                .count() as u64;
            PoolStatus {
                name: pool.name.clone(),
                location: pool.location.clone(),
                capacity,
                users,
                leased,
                undersized: capacity < users.saturating_mul(ADDRESSES_PER_USER),
            }
        })
        .collect()
}
