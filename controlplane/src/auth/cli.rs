//! `gatehouse user ...`: the local user directory and OTP devices from the
//! command line, on the store in the data directory of `gatehouse run`
//! (same `--config` and `--data-dir`).
//!
//! ```text
//! gatehouse user add NAME [--password-stdin]     exit 0, or 1 if NAME exists
//! gatehouse user passwd NAME [--password-stdin]  exit 0, or 1 if NAME is unknown
//! gatehouse user del NAME                        exit 0, or 1 if NAME is unknown
//! gatehouse user list                            one name per line
//! gatehouse user otp add NAME DEVICE [--qr FILE] prints the otpauth:// URI
//! gatehouse user otp list NAME                   one device per line
//! gatehouse user otp del NAME DEVICE             exit 0, or 1 if unknown
//! gatehouse user otp verify NAME CODE            exit 0 if accepted (once), else 1
//! ```
//!
//! The password is the first line of standard input when `--password-stdin`
//! is given or standard input is not a terminal; prompting on a terminal is
//! not supported. Bad names, passwords, flags or configuration exit with
//! [`EXIT_CONFIG`] (64). This module writes to the given streams only; the
//! binary passes its stdout and stderr.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::auth::devices::{OtpDevices, OtpError, OtpVerdict};
use crate::auth::local::{LocalUserError, LocalUsers};
use crate::auth::names::{DeviceName, UserName};
use crate::auth::otpauth::qr_png;
use crate::auth::password::{Password, PasswordHasher, PasswordParams};
use crate::auth::seal::OtpKey;
use crate::auth::totp::{TotpCode, TotpParams};
use crate::config::{self, Config, EXIT_CONFIG};
use crate::store::Store;

/// Exit code for a failed operation (unknown or existing name, refused
/// code, store error).
pub const EXIT_FAILURE: u8 = 1;

/// `gatehouse user`.
#[derive(Debug, clap::Args)]
pub struct UserArgs {
    /// Configuration file (TOML); its `data_dir` and `[auth]` apply.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Directory for state (`data_dir`), as for `gatehouse run`.
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
enum UserCommand {
    /// Add a local user.
    Add {
        /// The login name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a local user's password.
    Passwd {
        /// The login name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a local user and the OTP devices stored for them.
    Del {
        /// The login name.
        name: String,
    },
    /// List local users, one per line.
    List,
    /// Manage a user's TOTP devices.
    #[command(subcommand)]
    Otp(OtpCommand),
}

#[derive(Debug, clap::Subcommand)]
enum OtpCommand {
    /// Register a device: prints its otpauth:// URI.
    Add {
        /// The user.
        name: String,
        /// The device's name (unique per user).
        device: String,
        /// Also write the QR code PNG of the URI to this file.
        #[arg(long, value_name = "FILE")]
        qr: Option<PathBuf>,
    },
    /// List a user's devices, one per line.
    List {
        /// The user.
        name: String,
    },
    /// Remove a device.
    Del {
        /// The user.
        name: String,
        /// The device's name.
        device: String,
    },
    /// Check a code now (a code is accepted once).
    Verify {
        /// The user.
        name: String,
        /// The 6-digit code.
        code: String,
    },
}

/// A failure with its exit code and message.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl ToString) -> Self {
        Self {
            code: EXIT_CONFIG,
            message: message.to_string(),
        }
    }

    fn failed(message: impl ToString) -> Self {
        Self {
            code: EXIT_FAILURE,
            message: message.to_string(),
        }
    }
}

/// Runs `gatehouse user ...`. `stdin_is_terminal` decides whether the
/// password is read from `stdin` without `--password-stdin`. Returns the
/// exit code: 0, [`EXIT_FAILURE`] or [`EXIT_CONFIG`].
pub fn run(
    args: UserArgs,
    stdin: &mut dyn BufRead,
    stdin_is_terminal: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the runtime: {e}")))
        .and_then(|runtime| runtime.block_on(execute(args, stdin, stdin_is_terminal, out)));
    match result {
        Ok(()) => 0,
        Err(failure) => {
            let _ = writeln!(err, "gatehouse user: {}", failure.message);
            failure.code
        }
    }
}

async fn execute(
    args: UserArgs,
    stdin: &mut dyn BufRead,
    stdin_is_terminal: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let config = load_config(args.config.as_deref(), args.data_dir.as_deref())?;
    let store = Store::open(&config.data_dir)
        .await
        .map_err(|e| Failure::failed(crate::error_chain(&e)))?;
    let result = match args.command {
        UserCommand::Otp(command) => otp(command, &config, store.clone(), out).await,
        command => users(command, store.clone(), stdin, stdin_is_terminal, out).await,
    };
    store.close().await;
    result
}

/// The commands on local users (every [`UserCommand`] but `Otp`).
async fn users(
    command: UserCommand,
    store: Store,
    stdin: &mut dyn BufRead,
    stdin_is_terminal: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let hasher = PasswordHasher::new(PasswordParams::OWASP).map_err(Failure::failed)?;
    let users = LocalUsers::new(store, Arc::new(hasher));
    let password_from = |flag: bool| flag || !stdin_is_terminal;
    match command {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            let name = user_name(&name)?;
            let password = read_password(stdin, password_from(password_stdin))?;
            users.add(&name, &password).await.map_err(user_failure)?;
            say(out, &format!("user {name} added"))
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let name = user_name(&name)?;
            let password = read_password(stdin, password_from(password_stdin))?;
            users
                .set_password(&name, &password)
                .await
                .map_err(user_failure)?;
            say(out, &format!("password of user {name} set"))
        }
        UserCommand::Del { name } => {
            let name = user_name(&name)?;
            users.delete(&name).await.map_err(user_failure)?;
            say(out, &format!("user {name} deleted"))
        }
        UserCommand::List => {
            for user in users.list().await.map_err(user_failure)? {
                say(out, user.name.as_str())?;
            }
            Ok(())
        }
        UserCommand::Otp(_) => Err(Failure::usage("otp commands are not user commands")),
    }
}

async fn otp(
    command: OtpCommand,
    config: &Config,
    store: Store,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let key = OtpKey::load_or_generate(config.auth.otp_key_file.as_deref(), &config.data_dir)
        .map_err(|e| Failure::failed(crate::error_chain(&e)))?;
    let devices = OtpDevices::new(store, key, &config.auth.issuer);
    match command {
        OtpCommand::Add { name, device, qr } => {
            let (name, device) = (user_name(&name)?, device_name(&device)?);
            let enrolment = devices.add(&name, &device).await.map_err(otp_failure)?;
            let uri = enrolment.uri.to_string();
            if let Some(path) = qr {
                let png = qr_png(&uri).map_err(|e| Failure::failed(crate::error_chain(&e)))?;
                std::fs::write(&path, png).map_err(|e| {
                    Failure::failed(format!("cannot write {}: {e}", path.display()))
                })?;
            }
            say(out, &uri)
        }
        OtpCommand::List { name } => {
            for device in devices
                .list(&user_name(&name)?)
                .await
                .map_err(otp_failure)?
            {
                say(out, device.name.as_str())?;
            }
            Ok(())
        }
        OtpCommand::Del { name, device } => {
            let (name, device) = (user_name(&name)?, device_name(&device)?);
            devices.remove(&name, &device).await.map_err(otp_failure)?;
            say(out, &format!("device {device} of user {name} deleted"))
        }
        OtpCommand::Verify { name, code } => {
            let name = user_name(&name)?;
            let code = TotpCode::parse(&code, TotpParams::GATEWAY).map_err(Failure::usage)?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            match devices
                .verify(&name, code, now)
                .await
                .map_err(otp_failure)?
            {
                OtpVerdict::Accept { device, .. } => {
                    say(out, &format!("accepted by device {device}"))
                }
                OtpVerdict::Replay { device } => Err(Failure::failed(format!(
                    "code refused: already used on device {device}"
                ))),
                OtpVerdict::Reject => Err(Failure::failed("code refused")),
            }
        }
    }
}

fn load_config(file: Option<&Path>, data_dir: Option<&Path>) -> Result<Config, Failure> {
    let mut config = match file {
        Some(path) => {
            config::load(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?
        }
        None => Config::default(),
    };
    if let Some(dir) = data_dir {
        config.data_dir = dir.to_owned();
    }
    config.validate().map_err(Failure::usage)?;
    Ok(config)
}

fn read_password(stdin: &mut dyn BufRead, from_stdin: bool) -> Result<Password, Failure> {
    if !from_stdin {
        return Err(Failure::usage(
            "no password: pipe it to --password-stdin (prompting on a terminal is not supported)",
        ));
    }
    let mut line = Zeroizing::new(String::new());
    stdin
        .read_line(&mut line)
        .map_err(|e| Failure::usage(format!("cannot read the password from stdin: {e}")))?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    Password::new(trimmed.to_owned()).map_err(Failure::usage)
}

fn user_name(text: &str) -> Result<UserName, Failure> {
    UserName::new(text).map_err(Failure::usage)
}

fn device_name(text: &str) -> Result<DeviceName, Failure> {
    DeviceName::new(text).map_err(Failure::usage)
}

fn user_failure(error: LocalUserError) -> Failure {
    Failure::failed(crate::error_chain(&error))
}

fn otp_failure(error: OtpError) -> Failure {
    Failure::failed(crate::error_chain(&error))
}

fn say(out: &mut dyn Write, line: &str) -> Result<(), Failure> {
    writeln!(out, "{line}").map_err(|e| Failure::failed(format!("cannot write the output: {e}")))
}
