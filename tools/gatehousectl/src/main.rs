//! `gatehousectl`: a command-line client of the Gatehouse REST API
//! (`/api/v1` on the internal listener, docs/API.md).
//!
//! ```text
//! gatehousectl [--url URL] [--token TOKEN] [--json] RESOURCE VERB [ARGS]
//! ```
//!
//! `--url` defaults to `http://127.0.0.1:8080`, the token comes from
//! `--token` or `GATEHOUSE_TOKEN`. Answers print as a table (one row per
//! item, one column per field) or, with `--json`, as the API's JSON.
//! Items to create or replace are given as `FIELD=VALUE` pairs (a value
//! that parses as JSON is taken as JSON, a repeated field makes a list) or
//! whole with `--data JSON`. Exit 0 on success, 1 when the API refuses
//! (its code and message on stderr), 2 for bad usage.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool prints its results and errors"
)]

mod table;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

/// A command-line client of the Gatehouse REST API.
#[derive(Debug, Parser)]
#[command(name = "gatehousectl", version, about)]
struct Cli {
    /// The internal listener's base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The API token (`gh_…`).
    #[arg(long, global = true, env = "GATEHOUSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    resource: Resource,
}

#[derive(Debug, Subcommand)]
enum Resource {
    /// Open sessions: list, get ID, kill ID.
    Sessions {
        #[command(subcommand)]
        verb: SessionVerb,
    },
    /// Registered workers: list, get NAME, forget NAME.
    Workers {
        #[command(subcommand)]
        verb: WorkerVerb,
    },
    /// The gateway's listeners.
    Listeners,
    /// Delivery groups.
    Groups(Section),
    /// Desktops (one per worker).
    Desktops(Section),
    /// Published desktops and applications.
    Resources(Section),
    /// Permanent desktop assignments.
    Assignments(Section),
    /// Assignments the broker made on first use: list, undo DESKTOP USER.
    FirstUse {
        #[command(subcommand)]
        verb: FirstUseVerb,
    },
    /// Remote STA servers.
    StaServers(Section),
    /// Access policies (rules tried in order; a new one goes last).
    Policies(Section),
    /// Server-to-client apps.
    S2cApps(Section),
    /// Client IP (IIP) pools.
    IipPools(Section),
    /// Every IIP pool's capacity, users, leases and undersized warning.
    PoolStatus,
    /// Client IP leases.
    Leases,
    /// A user's OTP devices: list USER, delete USER DEVICE.
    OtpDevices {
        #[command(subcommand)]
        verb: DeviceVerb,
    },
    /// API tokens: list, create NAME --role ROLE, revoke NAME.
    Tokens {
        #[command(subcommand)]
        verb: TokenVerb,
    },
    /// The audit log, newest first.
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Reload the configuration (as SIGHUP).
    Reload,
}

#[derive(Debug, Subcommand)]
enum SessionVerb {
    /// List the open sessions.
    List,
    /// Show one session.
    Get { id: String },
    /// Kill a session: its relay is cut.
    Kill { id: String },
}

#[derive(Debug, Subcommand)]
enum WorkerVerb {
    /// List the workers.
    List,
    /// Show one worker.
    Get { name: String },
    /// Forget a worker until it registers again.
    Forget { name: String },
}

#[derive(Debug, Subcommand)]
enum FirstUseVerb {
    /// List the assignments made on first use.
    List,
    /// Undo one: the user's next launch brokers afresh.
    Undo { desktop: String, user: String },
}

#[derive(Debug, Subcommand)]
enum DeviceVerb {
    /// List a user's devices.
    List { user: String },
    /// Remove a user's device.
    Delete { user: String, device: String },
}

#[derive(Debug, Subcommand)]
enum TokenVerb {
    /// List the tokens.
    List,
    /// Create a token; prints it once.
    Create {
        name: String,
        /// `admin` or `read-only`.
        #[arg(long)]
        role: String,
    },
    /// Revoke a token.
    Revoke { name: String },
}

/// The verbs of a configuration-backed collection.
#[derive(Debug, clap::Args)]
struct Section {
    #[command(subcommand)]
    verb: SectionVerb,
}

#[derive(Debug, Subcommand)]
enum SectionVerb {
    /// List the items.
    List,
    /// Show one item.
    Get { key: String },
    /// Create an item from FIELD=VALUE pairs or --data.
    Create(ItemArgs),
    /// Replace the item KEY from FIELD=VALUE pairs or --data.
    Update {
        key: String,
        #[command(flatten)]
        item: ItemArgs,
    },
    /// Delete the item KEY.
    Delete { key: String },
}

#[derive(Debug, clap::Args)]
struct ItemArgs {
    /// The whole item as JSON.
    #[arg(long)]
    data: Option<String>,
    /// FIELD=VALUE pairs.
    fields: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gatehousectl: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// A request: method, path under `/api/v1`, body.
struct Call {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

fn call(method: &'static str, path: impl Into<String>) -> Call {
    Call {
        method,
        path: path.into(),
        body: None,
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let request = match &cli.resource {
        Resource::Sessions { verb } => match verb {
            SessionVerb::List => call("GET", "sessions"),
            SessionVerb::Get { id } => call("GET", format!("sessions/{}", seg(id))),
            SessionVerb::Kill { id } => call("DELETE", format!("sessions/{}", seg(id))),
        },
        Resource::Workers { verb } => match verb {
            WorkerVerb::List => call("GET", "workers"),
            WorkerVerb::Get { name } => call("GET", format!("workers/{}", seg(name))),
            WorkerVerb::Forget { name } => call("DELETE", format!("workers/{}", seg(name))),
        },
        Resource::Listeners => call("GET", "listeners"),
        Resource::Groups(s) => section("delivery-groups", s)?,
        Resource::Desktops(s) => section("desktops", s)?,
        Resource::Resources(s) => section("resources", s)?,
        Resource::Assignments(s) => section("assignments", s)?,
        Resource::FirstUse { verb } => match verb {
            FirstUseVerb::List => call("GET", "first-use-assignments"),
            FirstUseVerb::Undo { desktop, user } => call(
                "DELETE",
                format!("first-use-assignments/{}/{}", seg(desktop), seg(user)),
            ),
        },
        Resource::StaServers(s) => section("sta-servers", s)?,
        Resource::Policies(s) => section("policies", s)?,
        Resource::S2cApps(s) => section("server-to-client-apps", s)?,
        Resource::IipPools(s) => section("iip-pools", s)?,
        Resource::PoolStatus => call("GET", "iip-pool-status"),
        Resource::Leases => call("GET", "iip-leases"),
        Resource::OtpDevices { verb } => match verb {
            DeviceVerb::List { user } => call("GET", format!("users/{}/otp-devices", seg(user))),
            DeviceVerb::Delete { user, device } => call(
                "DELETE",
                format!("users/{}/otp-devices/{}", seg(user), seg(device)),
            ),
        },
        Resource::Tokens { verb } => match verb {
            TokenVerb::List => call("GET", "tokens"),
            TokenVerb::Create { name, role } => Call {
                method: "POST",
                path: "tokens".to_owned(),
                body: Some(serde_json::json!({"name": name, "role": role})),
            },
            TokenVerb::Revoke { name } => call("DELETE", format!("tokens/{}", seg(name))),
        },
        Resource::Audit { limit } => call("GET", format!("audit?limit={limit}")),
        Resource::Reload => call("POST", "reload"),
    };
    let answer = send(cli, &request)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", table::render(&answer));
    }
    Ok(())
}

fn section(collection: &str, section: &Section) -> anyhow::Result<Call> {
    Ok(match &section.verb {
        SectionVerb::List => call("GET", collection),
        SectionVerb::Get { key } => call("GET", format!("{collection}/{}", seg(key))),
        SectionVerb::Create(item) => Call {
            method: "POST",
            path: collection.to_owned(),
            body: Some(item_of(item)?),
        },
        SectionVerb::Update { key, item } => Call {
            method: "PUT",
            path: format!("{collection}/{}", seg(key)),
            body: Some(item_of(item)?),
        },
        SectionVerb::Delete { key } => call("DELETE", format!("{collection}/{}", seg(key))),
    })
}

/// The item of `--data` or the FIELD=VALUE pairs.
fn item_of(args: &ItemArgs) -> anyhow::Result<Value> {
    if let Some(data) = &args.data {
        if !args.fields.is_empty() {
            bail!("give either --data or FIELD=VALUE pairs");
        }
        return serde_json::from_str(data).context("--data is not JSON");
    }
    let mut map = Map::new();
    for pair in &args.fields {
        let Some((field, text)) = pair.split_once('=') else {
            bail!("{pair:?} is not FIELD=VALUE");
        };
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
        match map.get_mut(field) {
            Some(Value::Array(list)) => list.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                map.insert(field.to_owned(), value);
            }
        }
    }
    Ok(Value::Object(map))
}

/// `text` as one path segment.
fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Sends `request`; the answer's JSON, or the API's error as an error.
fn send(cli: &Cli, request: &Call) -> anyhow::Result<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("{}/api/v1/{}", cli.url.trim_end_matches('/'), request.path);
    let token = cli.token.as_deref().unwrap_or_default();
    let bearer = format!("Bearer {token}");
    let response = match (request.method, &request.body) {
        ("GET", _) => agent.get(&url).header("Authorization", &bearer).call(),
        ("DELETE", _) => agent.delete(&url).header("Authorization", &bearer).call(),
        (method, body) => {
            let text = body.as_ref().map(Value::to_string).unwrap_or_default();
            let builder = if method == "PUT" {
                agent.put(&url)
            } else {
                agent.post(&url)
            };
            builder
                .header("Authorization", &bearer)
                .content_type("application/json")
                .send(text.as_bytes())
        }
    }
    .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .read_to_string()
        .context("cannot read the answer")?;
    let value: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let code = value["code"].as_str().unwrap_or("http_error");
    let message = value["message"].as_str().unwrap_or("");
    match value["field"].as_str() {
        Some(field) => bail!("http {status} {code}: {message} (field {field})"),
        None => bail!("http {status} {code}: {message}"),
    }
}
