//! `gatehouse`: the appliance binary. It starts the control plane and the
//! data-plane cores (see docs/ARCHITECTURE.md).
//!
//! Subcommands: `run` (the gateway: control plane and data plane in one
//! process), `controlplane --shm NAME` and `dataplane --shm NAME` (the same
//! gateway as two processes over a named shared-memory segment),
//! `connector --shm NAME --name CONNECTOR` (the server-to-client connector
//! role on cores of its own, on a segment the control plane serves),
//! `check-config FILE` (validate a configuration), `forward` (a plain TCP
//! forwarder on the data-plane cores) and `user` (local users and OTP
//! devices, see `gatehouse::auth::cli`) and `api-token` (REST API tokens,
//! see `gatehouse::api::cli`). Logs go to stderr
//! through `tracing` (`RUST_LOG` filters, default `info`; `--log-format
//! json` for one JSON object per line). A bad configuration or flag exits
//! with 64.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "the binary reports results and fatal errors on the terminal"
)]

mod forward;
mod signals;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use gatehouse::appliance::{self, RunError};
use gatehouse::config::{self, Config, ConfigError, EXIT_CONFIG};
use gatehouse::split;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gatehouse remote-access gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (control plane and data plane in one process).
    Run(RunArgs),
    /// Run only the control plane (STA, internal HTTP listener, ticket
    /// redemption, session table) on a named shared-memory segment; a
    /// `gatehouse dataplane` on the same segment carries the sessions.
    Controlplane(ControlPlaneArgs),
    /// Run only the data-plane cores (the gateway listener) on a named
    /// shared-memory segment; a `gatehouse controlplane` on the same
    /// segment redeems the tickets. Either may start first.
    Dataplane(DataPlaneArgs),
    /// Run a server-to-client connector: data-plane cores that only accept
    /// back-end connections to the IIPs of the pools naming it, on a
    /// named shared-memory segment the control plane serves
    /// (`[[server_to_client.connectors]]`).
    Connector(ConnectorArgs),
    /// Check a configuration file: prints `ok`, or the error naming the key
    /// and exits with 64.
    CheckConfig {
        /// The configuration file (TOML).
        file: PathBuf,
    },
    /// Forward TCP connections to one back end on the data-plane cores.
    Forward(forward::ForwardArgs),
    /// Manage local users and their OTP devices in the data directory's
    /// store.
    User(gatehouse::auth::cli::UserArgs),
    /// Manage the REST API's tokens in the data directory's store (the
    /// first admin token comes from here).
    ApiToken(gatehouse::api::cli::ApiTokenArgs),
}

/// Flags of `gatehouse run`; each overrides its key of the file.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Configuration file (TOML; see controlplane/gatehouse.example.toml).
    /// Without it the embedded defaults apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for state (`data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Gateway listener, IP:PORT (`gateway.listen`; port 0 picks one,
    /// logged in `gatehouse_ready`).
    #[arg(long, value_name = "ADDR")]
    gateway_listen: Option<SocketAddr>,
    /// Internal HTTP listener, IP:PORT (`admin.listen`).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
}

/// Flags of `gatehouse controlplane`.
#[derive(Debug, clap::Args)]
struct ControlPlaneArgs {
    /// The shared-memory segment: NAME under /dev/shm, or DIR/NAME. The
    /// data plane must name the same one.
    #[arg(long, value_name = "NAME")]
    shm: String,
    /// Configuration file (TOML), the same as the data plane's.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for state (`data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Internal HTTP listener, IP:PORT (`admin.listen`).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
}

/// Flags of `gatehouse dataplane`.
#[derive(Debug, clap::Args)]
struct DataPlaneArgs {
    /// The shared-memory segment: NAME under /dev/shm, or DIR/NAME. The
    /// control plane must name the same one.
    #[arg(long, value_name = "NAME")]
    shm: String,
    /// Configuration file (TOML), the same as the control plane's.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for state (`data_dir`; the generated certificate).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Gateway listener, IP:PORT (`gateway.listen`; port 0 picks one,
    /// logged in `gatehouse_ready`).
    #[arg(long, value_name = "ADDR")]
    gateway_listen: Option<SocketAddr>,
}

/// Flags of `gatehouse connector`.
#[derive(Debug, clap::Args)]
struct ConnectorArgs {
    /// The shared-memory segment: NAME under /dev/shm, or DIR/NAME; the
    /// `shm` of this connector's `[[server_to_client.connectors]]` entry.
    #[arg(long, value_name = "NAME")]
    shm: String,
    /// The connector's name (what pools' `connectors` name).
    #[arg(long, value_name = "CONNECTOR")]
    name: String,
    /// Configuration file (TOML) for the `[engine]` knobs (and the
    /// entry's `cores`). Without it the embedded defaults apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Cores (default: the entry's `cores`, else 1); must match the
    /// entry's `cores`, which sizes the segment.
    #[arg(long, value_name = "N")]
    cores: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.log_format);
    match cli.command {
        Command::Run(args) => run(args),
        Command::Controlplane(args) => controlplane(args),
        Command::Dataplane(args) => dataplane(args),
        Command::Connector(args) => connector(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Forward(args) => forward_main(args),
        Command::User(args) => ExitCode::from(gatehouse::auth::cli::run(
            args,
            &mut std::io::stdin().lock(),
            std::io::stdin().is_terminal(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
        Command::ApiToken(args) => ExitCode::from(gatehouse::api::cli::run(
            args,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let loader = loader(
        args.config,
        args.data_dir,
        args.gateway_listen,
        args.admin_listen,
    );
    match loader() {
        Ok(config) => finish(appliance::run_reloadable(config, loader)),
        Err(error) => config_failure(&error),
    }
}

/// Loads the file (or the default) with the flags applied, now and on
/// every SIGHUP.
fn loader(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    gateway_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
) -> gatehouse::reload::Loader {
    std::sync::Arc::new(move || {
        Overrides {
            config: config.as_deref(),
            data_dir: data_dir.as_deref(),
            gateway_listen,
            admin_listen,
        }
        .load()
    })
}

fn controlplane(args: ControlPlaneArgs) -> ExitCode {
    let loader = loader(args.config, args.data_dir, None, args.admin_listen);
    let config = match loader() {
        Ok(config) => config,
        Err(error) => return config_failure(&error),
    };
    match split::segment_name(&args.shm) {
        Ok(shm) => finish(split::run_control_plane_reloadable(config, shm, loader)),
        Err(error) => config_failure(&error),
    }
}

fn dataplane(args: DataPlaneArgs) -> ExitCode {
    let loader = loader(args.config, args.data_dir, args.gateway_listen, None);
    let config = match loader() {
        Ok(config) => config,
        Err(error) => return config_failure(&error),
    };
    match split::segment_name(&args.shm) {
        Ok(shm) => finish(split::run_data_plane_reloadable(config, shm, loader)),
        Err(error) => config_failure(&error),
    }
}

fn connector(args: ConnectorArgs) -> ExitCode {
    let config = match (loader(args.config, None, None, None))() {
        Ok(config) => config,
        Err(error) => return config_failure(&error),
    };
    let cores = match gatehouse::connector::connector_cores(&config, &args.name, args.cores) {
        Ok(cores) => cores,
        Err(error) => return config_failure(&error),
    };
    match split::segment_name(&args.shm) {
        Ok(shm) => finish(gatehouse::connector::run_connector(
            config, shm, args.name, cores,
        )),
        Err(error) => config_failure(&error),
    }
}

fn config_failure(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("gatehouse: {error}");
    ExitCode::from(EXIT_CONFIG)
}

/// The exit code of a finished `run`, `controlplane`, `dataplane` or
/// `connector`.
fn finish(outcome: Result<(), RunError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gatehouse: {}", chain(&error));
            if error.is_config() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The configuration flags shared by `run`, `controlplane` and
/// `dataplane`; each overrides its key of the file.
struct Overrides<'a> {
    config: Option<&'a Path>,
    data_dir: Option<&'a Path>,
    gateway_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
}

impl Overrides<'_> {
    /// The file (or the embedded default) with the flags applied, validated.
    fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match self.config {
            Some(path) => config::load(path)?,
            None => Config::default(),
        };
        if let Some(dir) = self.data_dir {
            config.data_dir = dir.to_owned();
        }
        if let Some(addr) = self.gateway_listen {
            config.gateway.listen = addr;
        }
        if let Some(addr) = self.admin_listen {
            config.admin.listen = addr;
        }
        config.validate()?;
        Ok(config)
    }
}

fn check_config(file: &Path) -> ExitCode {
    match config::check_config(file) {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: {error}", file.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn forward_main(args: forward::ForwardArgs) -> ExitCode {
    match forward::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            if e.downcast_ref::<gatehouse_engine::EngineError>()
                .is_some_and(|e| matches!(e, gatehouse_engine::EngineError::Config(_)))
            {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `error: cause: cause`.
fn chain(error: &RunError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}
