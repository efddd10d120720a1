//! The engine's typed configuration.
//!
//! [`EngineConfig::default`] is the embedded default; the control plane
//! deserializes the `[engine]` table of `gatehouse.toml` into it (unknown
//! keys are rejected) and the `gatehouse forward` flags override fields.
//! Durations are written as seconds (an integer or a decimal number).

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Every knob of the data-plane engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Data-plane threads; absent means one per CPU available to the process.
    pub cores: Option<NonZeroUsize>,
    /// Pin core `i` to CPU `i` (modulo the CPUs available).
    pub pin_cores: bool,
    /// Which monoio driver the cores run.
    pub driver: Driver,
    /// Submission queue entries of each core's io_uring (a power of two,
    /// 8 ..= 32768); unused by the legacy driver.
    pub ring_entries: u32,
    /// How plain TCP ↔ TCP sessions move bytes.
    pub relay: RelayMode,
    /// Pipe capacity in bytes for the splice relay (`F_SETPIPE_SZ`, 4096 ..=
    /// 1048576; the kernel's default is 65536). Bigger pipes move more per
    /// system call: 128 KiB cut the CPU per relayed byte by about a quarter
    /// against 64 KiB on our VM. An empty pipe holds no memory, and a
    /// session holds pipes only while bytes are in flight. Unprivileged
    /// processes past `/proc/sys/fs/pipe-user-pages-soft` get small pipes.
    pub pipe_size: u32,
    /// A session that moves no byte either way for this long is closed.
    #[serde(with = "secs")]
    pub idle_timeout: Duration,
    /// Open connections per core; one more is accepted and closed at once.
    pub max_connections_per_core: u32,
    /// Connections per core still in their handshake (accepted, not yet
    /// relaying); one more is accepted and closed at once.
    pub max_pending_handshakes_per_core: u32,
    /// On shutdown, how long open sessions may run before they are cut.
    #[serde(with = "secs")]
    pub drain_deadline: Duration,
    /// A core that accepts a connection while another core owns fewer
    /// sessions hands it to that core (once, at accept), as HAProxy's
    /// threads pick the least loaded one; off, each connection stays on the
    /// core the kernel's `SO_REUSEPORT` hash chose.
    pub balance_accepts: bool,
    /// `relay = "auto"`, before a direction turns to splice: a message
    /// within this many milliseconds of the one before makes the direction
    /// *hot* (it keeps an io_uring receive posted and a pooled 16 KiB
    /// buffer, so each further message costs one completion and one send),
    /// and it stays hot until it has been quiet for between this and twice
    /// this. 0 = never hot: each message takes one `recv` and one `send`
    /// and no buffer is held between messages (the least memory for many
    /// interactive sessions, one readiness round more per message).
    /// 0 ..= 60000; default 250.
    pub copy_hot_ms: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cores: None,
            pin_cores: false,
            driver: Driver::Auto,
            ring_entries: 1_024,
            relay: RelayMode::Auto,
            pipe_size: 128 * 1_024,
            idle_timeout: Duration::from_secs(600),
            max_connections_per_core: 50_000,
            max_pending_handshakes_per_core: 4_096,
            drain_deadline: Duration::from_secs(30),
            balance_accepts: true,
            copy_hot_ms: 250,
        }
    }
}

impl EngineConfig {
    /// The number of cores [`crate::Engine::start`] runs: `cores`, or one
    /// per CPU available to the process. Size a control-plane channel with
    /// it (one ring pair per core).
    pub fn core_count(&self) -> usize {
        self.cores.map_or_else(
            || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            NonZeroUsize::get,
        )
    }

    /// Checks the values serde cannot: ranges and relations between fields.
    ///
    /// Errors name the key and the expected form.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad =
            |key: &'static str, expected: &'static str| Err(ConfigError::Invalid { key, expected });
        if !(8..=32_768).contains(&self.ring_entries) || !self.ring_entries.is_power_of_two() {
            return bad("ring_entries", "a power of two from 8 to 32768");
        }
        if !(4_096..=1_048_576).contains(&self.pipe_size) {
            return bad("pipe_size", "bytes from 4096 to 1048576");
        }
        if self.copy_hot_ms > 60_000 {
            return bad("copy_hot_ms", "milliseconds from 0 to 60000");
        }
        if self.idle_timeout.is_zero() {
            return bad("idle_timeout", "seconds greater than zero");
        }
        if self.max_connections_per_core == 0 {
            return bad("max_connections_per_core", "an integer of at least 1");
        }
        if self.max_pending_handshakes_per_core == 0 {
            return bad(
                "max_pending_handshakes_per_core",
                "an integer of at least 1",
            );
        }
        Ok(())
    }
}

/// A configuration value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The key holds a value of the right type but outside its range.
    #[error("engine.{key}: expected {expected}")]
    Invalid {
        /// The offending key.
        key: &'static str,
        /// What the key accepts.
        expected: &'static str,
    },
    /// A command-line style value that names no variant.
    #[error("unknown {what} {value:?}: expected one of {expected}")]
    Unknown {
        /// What was being parsed (`driver`, `relay mode`).
        what: &'static str,
        /// The value given.
        value: String,
        /// The accepted spellings.
        expected: &'static str,
    },
}

/// The monoio driver a core runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// io_uring when the kernel offers every operation the engine uses,
    /// else the legacy driver (logged once at start).
    Auto,
    /// io_uring or fail to start.
    IoUring,
    /// The epoll-based driver.
    Legacy,
}

/// How a session whose two sides are plain TCP moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayMode {
    /// Copy until bulk: each direction of a TCP ↔ TCP session starts with
    /// `read(2)`/`write(2)` through a pooled buffer and switches to splice
    /// once two reads in a row fill the buffer. Measured on our 2-vCPU VM:
    /// splice spends about a third of copy's CPU per relayed byte (0.22–0.27
    /// against 0.54–0.85 CPU-seconds per GB) and holds no buffer while a
    /// session is idle; plain copying answers small ping-pong faster. See
    /// the [`crate::relay`] docs.
    Auto,
    /// `splice(2)` through a pipe per direction (TCP ↔ TCP only).
    Splice,
    /// Read into pooled 16 KiB buffers and write them out.
    Copy,
}

impl FromStr for Driver {
    type Err = ConfigError;

    /// Parses `auto`, `io-uring` (or `iouring`, `uring`) and `legacy`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "auto" => Ok(Self::Auto),
            "io-uring" | "iouring" | "uring" => Ok(Self::IoUring),
            "legacy" | "epoll" => Ok(Self::Legacy),
            _ => Err(ConfigError::Unknown {
                what: "driver",
                value: value.to_owned(),
                expected: "auto, io-uring, legacy",
            }),
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::IoUring => "io-uring",
            Self::Legacy => "legacy",
        })
    }
}

impl FromStr for RelayMode {
    type Err = ConfigError;

    /// Parses `auto`, `splice` and `copy`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "auto" => Ok(Self::Auto),
            "splice" => Ok(Self::Splice),
            "copy" => Ok(Self::Copy),
            _ => Err(ConfigError::Unknown {
                what: "relay mode",
                value: value.to_owned(),
                expected: "auto, splice, copy",
            }),
        }
    }
}

impl fmt::Display for RelayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Splice => "splice",
            Self::Copy => "copy",
        })
    }
}

/// Durations as seconds: an integer or a decimal number, never negative.
mod secs {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_f64(value.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        de.deserialize_any(Seconds)
    }

    struct Seconds;

    impl Visitor<'_> for Seconds {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number of seconds, at least 0")
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(value))
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Duration, E> {
            u64::try_from(value)
                .map(Duration::from_secs)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(value)
                .map_err(|_| E::invalid_value(de::Unexpected::Float(value), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key `validate` names, if it refuses `config`.
    fn rejected_key(config: &EngineConfig) -> Option<&'static str> {
        match config.validate() {
            Err(ConfigError::Invalid { key, .. }) => Some(key),
            Ok(()) | Err(_) => None,
        }
    }

    #[test]
    fn default_config_is_valid() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
    }

    #[test]
    fn rejects_ring_entries_that_are_not_a_power_of_two() {
        let config = EngineConfig {
            ring_entries: 1_000,
            ..EngineConfig::default()
        };
        assert_eq!(rejected_key(&config), Some("ring_entries"));
    }

    #[test]
    fn rejects_a_zero_idle_timeout() {
        let config = EngineConfig {
            idle_timeout: Duration::ZERO,
            ..EngineConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn copy_hot_ms_takes_zero_and_rejects_more_than_a_minute() {
        let never_hot = EngineConfig {
            copy_hot_ms: 0,
            ..EngineConfig::default()
        };
        assert_eq!(never_hot.validate(), Ok(()));
        let config = EngineConfig {
            copy_hot_ms: 60_001,
            ..EngineConfig::default()
        };
        assert_eq!(rejected_key(&config), Some("copy_hot_ms"));
    }

    #[test]
    fn rejects_a_pipe_size_out_of_range() {
        let config = EngineConfig {
            pipe_size: 2 * 1_048_576,
            ..EngineConfig::default()
        };
        assert_eq!(rejected_key(&config), Some("pipe_size"));
    }

    #[test]
    fn reads_a_toml_table_with_seconds_and_kebab_case_names() {
        let config: EngineConfig = toml::from_str(
            "cores = 2\ndriver = \"io-uring\"\nrelay = \"copy\"\n\
             idle_timeout = 0.5\ndrain_deadline = 10\n",
        )
        .unwrap();
        assert_eq!(config.cores, NonZeroUsize::new(2));
        assert_eq!(config.driver, Driver::IoUring);
        assert_eq!(config.relay, RelayMode::Copy);
        assert_eq!(config.idle_timeout, Duration::from_millis(500));
        assert_eq!(config.drain_deadline, Duration::from_secs(10));
        assert_eq!(
            config.max_connections_per_core,
            EngineConfig::default().max_connections_per_core,
            "absent keys keep the embedded default"
        );
    }

    #[test]
    fn rejects_unknown_keys_and_negative_seconds() {
        assert!(toml::from_str::<EngineConfig>("coress = 2").is_err());
        assert!(toml::from_str::<EngineConfig>("idle_timeout = -1").is_err());
    }

    #[test]
    fn the_default_survives_a_toml_round_trip() {
        let text = toml::to_string(&EngineConfig::default()).unwrap();
        let back: EngineConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, EngineConfig::default());
    }

    #[test]
    fn parses_driver_and_relay_spellings() {
        assert_eq!("io-uring".parse::<Driver>(), Ok(Driver::IoUring));
        assert_eq!("legacy".parse::<Driver>(), Ok(Driver::Legacy));
        assert_eq!("copy".parse::<RelayMode>(), Ok(RelayMode::Copy));
        assert!("fast".parse::<RelayMode>().is_err());
        for driver in [Driver::Auto, Driver::IoUring, Driver::Legacy] {
            assert_eq!(driver.to_string().parse::<Driver>(), Ok(driver));
        }
    }
}
