//! `access-client`: the user's side of server-to-client access.
//!
//! ```text
//! access-client --gateway 127.0.0.1:8443 --ca gateway.crt [--server-name localhost]
//!     --user alice --password-env ACCESS_PASSWORD [--fqdn pc1.corp.example]
//!     [--forward 5900=127.0.0.1:15900 ...]
//! ```
//!
//! Logs in (`POST /cgi/login`), leases its IIP (`POST /access/v1/connect`)
//! and holds the control connection (`GET /access/v1/control`),
//! reconnecting with backoff (250 ms doubling to 8 s). For each flow it
//! connects the local service (`--forward PORT=ADDR`, else
//! `127.0.0.1:PORT`) to a SOCKS5-through-TLS data connection carrying the
//! flow's ticket and relays both ways. SIGTERM or SIGINT: releases the IIP
//! (`POST /access/v1/disconnect`), logs out, exits 0.
//!
//! Prints one line per event on stdout for tests to follow: `iip=IP
//! pool=NAME sticky=BOOL`, `fqdn=NAME`, `control iip=IP` (flows can come), `flow=ID port=P`, `flow_closed=ID
//! up=N down=N`, `flow_failed=ID error=...`, `control_lost error=...`,
//! `released`.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool whose output is its interface"
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use gatehouse_access_client::{ClientError, Gateway, http, socks};
use hyper::Method;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// First reconnect delay; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Limit for connecting to a local service.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "access-client",
    about = "Server-to-client access: the user's side"
)]
struct Cli {
    /// The gateway listener, HOST:PORT.
    #[arg(long)]
    gateway: String,
    /// PEM CA (or the self-signed certificate) the gateway's certificate
    /// must chain to.
    #[arg(long)]
    ca: PathBuf,
    /// The name the certificate must carry (default: the gateway's host).
    #[arg(long)]
    server_name: Option<String>,
    /// The login name.
    #[arg(long)]
    user: String,
    /// The environment variable holding the password.
    #[arg(long, default_value = "ACCESS_PASSWORD")]
    password_env: String,
    /// Registers this machine name with the IIP.
    #[arg(long)]
    fqdn: Option<String>,
    /// `PORT=HOST:PORT`: where a flow to the client port goes (repeatable).
    #[arg(long = "forward", value_parser = parse_forward)]
    forwards: Vec<(u16, SocketAddr)>,
}

fn parse_forward(text: &str) -> Result<(u16, SocketAddr), String> {
    let (port, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("expected PORT=HOST:PORT, got {text:?}"))?;
    let port = port.parse().map_err(|_| format!("bad port in {text:?}"))?;
    let addr = addr
        .parse()
        .map_err(|_| format!("bad address in {text:?}"))?;
    Ok((port, addr))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("access-client: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("access-client: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let password = std::env::var(&cli.password_env)
        .with_context(|| format!("set the password in ${}", cli.password_env))?;
    let host = cli
        .gateway
        .rsplit_once(':')
        .map_or(cli.gateway.as_str(), |(host, _)| host);
    let name = cli.server_name.clone().unwrap_or_else(|| host.to_owned());
    let gateway = Gateway::new(&cli.gateway, &cli.ca, &name)?;
    let forwards: HashMap<u16, SocketAddr> = cli.forwards.iter().copied().collect();
    let mut cookie = http::login(&gateway, &cli.user, &password).await?;
    let mut backoff = FIRST_BACKOFF;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let session = tokio::select! {
            result = session(&gateway, &cookie, cli.fqdn.as_deref(), &forwards) => result,
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        match session {
            Ok(()) => {
                println!("control_lost error=closed");
                backoff = FIRST_BACKOFF;
            }
            Err(error) => {
                println!("control_lost error={}", squash(&error));
                if let ClientError::Refused { status: 401, .. } = error {
                    // The web session ended: log in again.
                    if let Ok(fresh) = http::login(&gateway, &cli.user, &password).await {
                        cookie = fresh;
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    release(&gateway, &cookie).await
}

/// Leases the IIP, registers the name, and serves the control connection
/// until it ends.
async fn session(
    gateway: &Gateway,
    cookie: &str,
    fqdn: Option<&str>,
    forwards: &HashMap<u16, SocketAddr>,
) -> Result<(), ClientError> {
    let reply = http::send(
        gateway,
        Method::POST,
        "/access/v1/connect",
        Some(cookie),
        "",
        Vec::new(),
    )
    .await?;
    if !reply.status.is_success() {
        return Err(reply.refused());
    }
    let leased = reply.json()?;
    println!(
        "iip={} pool={} sticky={}",
        leased["iip"].as_str().unwrap_or(""),
        leased["pool"].as_str().unwrap_or(""),
        leased["sticky"].as_bool().unwrap_or(false)
    );
    if let Some(fqdn) = fqdn {
        let body = serde_json::json!({ "fqdn": fqdn }).to_string().into_bytes();
        let reply = http::send(
            gateway,
            Method::POST,
            "/access/v1/fqdn",
            Some(cookie),
            "application/json",
            body,
        )
        .await?;
        if !reply.status.is_success() {
            return Err(reply.refused());
        }
        println!("fqdn={fqdn}");
    }
    let response = http::open(
        gateway,
        Method::GET,
        "/access/v1/control",
        Some(cookie),
        "",
        Vec::new(),
    )
    .await?;
    if !response.status().is_success() {
        return Err(ClientError::Refused {
            status: response.status().as_u16(),
            body: String::new(),
        });
    }
    let mut body = response.into_body();
    let mut pending = Vec::new();
    while let Some(line) = http::next_line(&mut body, &mut pending).await? {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(iip) = event["iip"].as_str() {
            println!("control iip={iip}");
            continue;
        }
        let (Some(flow), Some(port), Some(ticket)) = (
            event["flow"].as_u64(),
            event["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
            event["ticket"].as_str(),
        ) else {
            continue;
        };
        println!("flow={flow} port={port}");
        let local = forwards
            .get(&port)
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)));
        tokio::spawn(relay_flow(gateway.clone(), flow, local, ticket.to_owned()));
    }
    Ok(())
}

/// Connects the local service and the flow's data connection, then relays.
async fn relay_flow(gateway: Gateway, flow: u64, local: SocketAddr, ticket: String) {
    let opened = async {
        let service =
            tokio::time::timeout(LOCAL_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(local))
                .await
                .map_err(|_| anyhow!("local service {local}: timeout"))?
                .with_context(|| format!("local service {local}"))?;
        let data = socks::open(&gateway, &ticket).await?;
        anyhow::Ok((service, data))
    };
    match opened.await {
        Ok((mut service, mut data)) => {
            match tokio::io::copy_bidirectional(&mut data, &mut service).await {
                Ok((up, down)) => println!("flow_closed={flow} up={down} down={up}"),
                Err(error) => println!("flow_closed={flow} error={}", squash(&error)),
            }
        }
        Err(error) => println!("flow_failed={flow} error={}", squash(&*error)),
    }
}

/// Releases the IIP and logs out.
async fn release(gateway: &Gateway, cookie: &str) -> anyhow::Result<()> {
    let reply = http::send(
        gateway,
        Method::POST,
        "/access/v1/disconnect",
        Some(cookie),
        "",
        Vec::new(),
    )
    .await?;
    if !reply.status.is_success() {
        bail!(reply.refused());
    }
    let _ = http::send(
        gateway,
        Method::GET,
        "/cgi/logout",
        Some(cookie),
        "",
        Vec::new(),
    )
    .await;
    println!("released");
    Ok(())
}

/// An error on one line without spaces (for the event lines).
fn squash(error: &dyn std::fmt::Display) -> String {
    error.to_string().replace(char::is_whitespace, "_")
}
