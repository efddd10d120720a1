//! `gatehouse api-token ...`: API tokens from the command line, on the
//! store in the data directory of `gatehouse run` (same `--config` and
//! `--data-dir`), to bootstrap the first admin token.
//!
//! ```text
//! gatehouse api-token create --name N --role admin|read-only   prints the token once
//! gatehouse api-token list                                     name, role, created, last used
//! gatehouse api-token revoke NAME                              exit 0, or 1 if unknown
//! ```
//!
//! Each create and revoke is written to the audit log as `cli`. Bad flags
//! or configuration exit with [`EXIT_CONFIG`] (64), a failed operation
//! with 1. This module writes to the given streams only.

use std::io::Write;
use std::path::PathBuf;

use super::audit::{AuditLog, Change};
use super::token::{Role, TokenName, Tokens};
use crate::config::{self, Config, EXIT_CONFIG};
use crate::store::Store;

/// Exit code for a failed operation.
pub const EXIT_FAILURE: u8 = 1;

/// `gatehouse api-token`.
#[derive(Debug, clap::Args)]
pub struct ApiTokenArgs {
    /// Configuration file (TOML); its `data_dir` applies.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Directory for state (`data_dir`), as for `gatehouse run`.
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create a token and print it (shown only this once).
    Create {
        /// The token's name (1 to 64 of A-Z a-z 0-9 . _ -).
        #[arg(long)]
        name: String,
        /// `admin` or `read-only`.
        #[arg(long)]
        role: String,
    },
    /// List the tokens: name, role, created, last used (Unix seconds).
    List,
    /// Revoke a token.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// Runs `gatehouse api-token ...`; returns the exit code.
pub fn run(args: ApiTokenArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (EXIT_FAILURE, format!("cannot start the runtime: {e}")))
        .and_then(|runtime| runtime.block_on(execute(args, out)));
    match result {
        Ok(()) => 0,
        Err((code, message)) => {
            let _ = writeln!(err, "gatehouse api-token: {message}");
            code
        }
    }
}

async fn execute(args: ApiTokenArgs, out: &mut dyn Write) -> Result<(), (u8, String)> {
    let usage = |m: String| (EXIT_CONFIG, m);
    let failed = |m: String| (EXIT_FAILURE, m);
    let mut config = match &args.config {
        Some(path) => config::load(path).map_err(|e| usage(format!("{}: {e}", path.display())))?,
        None => Config::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir.clone_from(dir);
    }
    config.validate().map_err(|e| usage(e.to_string()))?;
    let store = Store::open(&config.data_dir)
        .await
        .map_err(|e| failed(crate::error_chain(&e)))?;
    let tokens = Tokens::new(store.clone());
    let audit = AuditLog::new(store.clone());
    let write = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|e| failed(format!("cannot write the output: {e}")))
    };
    let result = match args.command {
        TokenCommand::Create { name, role } => {
            let name = TokenName::new(&name).map_err(usage)?;
            let role = Role::parse(&role).map_err(usage)?;
            match tokens.create(&name, role).await {
                Ok((secret, info)) => {
                    let _ = audit
                        .record(Change {
                            who: "cli",
                            action: "create",
                            resource: "tokens",
                            name: name.as_str(),
                            before: None,
                            after: serde_json::to_value(&info).ok(),
                            outcome: "ok",
                        })
                        .await;
                    write(out, secret.expose().to_owned())
                }
                Err(e) => Err(failed(crate::error_chain(&e))),
            }
        }
        TokenCommand::List => match tokens.list().await {
            Ok(list) => list.into_iter().try_for_each(|t| {
                let last = t.last_used_at.map_or("-".to_owned(), |at| at.to_string());
                write(
                    out,
                    format!("{}\t{}\t{}\t{last}", t.name, t.role, t.created_at),
                )
            }),
            Err(e) => Err(failed(crate::error_chain(&e))),
        },
        TokenCommand::Revoke { name } => match tokens.revoke(&name).await {
            Ok(()) => {
                let _ = audit
                    .record(Change {
                        who: "cli",
                        action: "revoke",
                        resource: "tokens",
                        name: &name,
                        before: None,
                        after: None,
                        outcome: "ok",
                    })
                    .await;
                write(out, format!("token {name} revoked"))
            }
            Err(e) => Err(failed(crate::error_chain(&e))),
        },
    };
    store.close().await;
    result
}
