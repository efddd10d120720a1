//! Launch tickets in bulk from a Secure Ticket Authority, before the timed
//! part of `connrate --sta-url` (the XML of `docs/STA.md`).
//!
//! Every SOCKS5 CONNECT through the gateway spends one single-use ticket, so
//! the load tool asks the STA for all of them up front: `RequestTicket` with
//! `ICAAddress` = the worker, over a few keep-alive HTTP/1.1 connections in
//! parallel, each sending up to `pipeline` requests at once
//! ([`TicketPlan::pipeline`]; 1 by default: against `gatehouse run`,
//! pipelined answers come back one delayed ACK apart, about 20 times slower
//! than lockstep on several connections). The pieces are
//! sans-IO where they can be ([`StaUrl::parse`], [`request_ticket_document`],
//! [`encode_post`], [`decode_answer`], [`decode_ticket`]); [`fetch`] drives
//! them on tokio.
//!
//! Bounded: at most [`MAX_TICKETS`] tickets, a head of at most
//! [`MAX_HEAD_BYTES`] and a body of at most [`MAX_BODY_BYTES`] per answer,
//! [`FETCH_DEADLINE`] for the whole fetch, [`MAX_RECONNECTS`] lost
//! connections per parallel connection. Any answer other than a ticket (an
//! HTTP error, a `ResponseError` such as `sta-full`) stops the fetch.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gatehouse_wire::Progress;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::net;
use crate::socks::SocksHost;

/// Most tickets one run may ask for.
pub const MAX_TICKETS: usize = 2_000_000;
/// Tickets fetched when `--tickets` is not given: more than a 6 s run through
/// one gateway on this kind of machine needs, few enough to fetch in seconds.
pub const DEFAULT_TICKETS: usize = 200_000;
/// Parallel HTTP connections to the STA when not given.
pub const DEFAULT_CONNECTIONS: usize = 4;
/// Requests written at once on one connection before reading the answers,
/// when not given.
pub const DEFAULT_PIPELINE: usize = 1;
/// Most requests written at once on one connection.
pub const MAX_PIPELINE: usize = 256;
/// Longest HTTP answer head accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Longest HTTP answer body accepted (the STA's own request limit).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest the whole fetch may take.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(90);
/// Longest one pipelined batch (write and all answers) may take.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections one fetch task may lose (closed, reset) before it gives up.
pub const MAX_RECONNECTS: u32 = 10;

/// Why tickets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StaError {
    /// The STA URL is not `http://IP:PORT/PATH`.
    #[error("sta url {0:?} is not http://IP:PORT/PATH")]
    BadUrl(String),
    /// The HTTP answer head is longer than [`MAX_HEAD_BYTES`].
    #[error("sta answer head longer than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// The HTTP answer body is longer than [`MAX_BODY_BYTES`].
    #[error("sta answer body of {0} bytes, more than {MAX_BODY_BYTES}")]
    BodyTooLarge(usize),
    /// The HTTP answer head cannot be read.
    #[error("malformed sta answer: {0}")]
    MalformedAnswer(&'static str),
    /// The answer is chunked or has no length; this client reads only
    /// `Content-Length` bodies.
    #[error("sta answer without content-length")]
    NoLength,
    /// The STA answered with an error (or a status other than 200).
    #[error("sta refused: http {status}, error {error_id:?}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// `ErrorId` of a `ResponseError`, or `"none"`.
        error_id: String,
    },
    /// The answer is not a `ResponseTicket` with valid fields.
    #[error("sta answer is not a usable ticket: {0}")]
    NotATicket(&'static str),
    /// A connection to the STA failed, too often.
    #[error("sta connection failed")]
    Io(#[from] std::io::Error),
    /// The STA closed a connection before answering, too often.
    #[error("sta closed the connection before answering")]
    Closed,
    /// The fetch took longer than [`FETCH_DEADLINE`].
    #[error("fetching tickets took longer than {} s", FETCH_DEADLINE.as_secs())]
    Timeout,
}

impl StaError {
    /// Whether the error is the connection's (retry on a new one) rather than
    /// the STA's answer (stop).
    fn is_transport(&self) -> bool {
        matches!(self, StaError::Io(_) | StaError::Closed)
    }
}

/// Where the STA endpoint is: `http://IP:PORT/PATH` (no DNS: the load tool
/// talks to the addresses it is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaUrl {
    /// The internal listener.
    pub addr: SocketAddr,
    /// The request path, e.g. `/scripts/ctxsta.dll`.
    pub path: String,
}

impl StaUrl {
    /// Parses `http://IP:PORT/PATH` (`[IPv6]:PORT` for IPv6); the path is
    /// `/` when absent and may not hold spaces or control characters.
    pub fn parse(text: &str) -> Result<Self, StaError> {
        let bad = || StaError::BadUrl(text.to_owned());
        let rest = text.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = authority.parse().map_err(|_| bad())?;
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad());
        }
        Ok(Self {
            addr,
            path: path.to_owned(),
        })
    }
}

impl FromStr for StaUrl {
    type Err = StaError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// The `RequestTicket` document for a launch ticket whose `ICAAddress` is
/// `worker` (`host:port`, escaped here).
pub fn request_ticket_document(worker: &str) -> String {
    let mut out = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><CtxSTAProtocol version="4.0"><RequestTicket><AllowedTicketType>STA-v4</AllowedTicketType><TicketData><Value name="ICAAddress">"#,
    );
    escape_xml_into(&mut out, worker);
    out.push_str("</Value></TicketData></RequestTicket></CtxSTAProtocol>");
    out
}

/// One keep-alive HTTP/1.1 `POST` of `document` (`text/xml`) to `url`.
pub fn encode_post(url: &StaUrl, document: &str) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
        url.path,
        url.addr,
        document.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(document.as_bytes());
    out
}

/// The parts of an HTTP answer this client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Offset of the body in the decoded input.
    pub body_start: usize,
    /// Body length (`Content-Length`).
    pub body_len: usize,
    /// Whether the server closes the connection after this answer.
    pub close: bool,
}

/// Decodes one HTTP/1.x answer with a `Content-Length` body: done with the
/// whole answer's length as `consumed`, need-more, or a typed rejection
/// (chunked or length-less bodies are refused).
pub fn decode_answer(input: &[u8]) -> Result<Progress<HttpAnswer>, StaError> {
    let window = &input[..input.len().min(MAX_HEAD_BYTES)];
    let Some(head_len) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        if input.len() >= MAX_HEAD_BYTES {
            return Err(StaError::HeadTooLarge);
        }
        return Ok(Progress::NeedMore {
            at_least: input.len() + 1,
        });
    };
    let head = std::str::from_utf8(&input[..head_len])
        .map_err(|_| StaError::MalformedAnswer("head is not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(StaError::MalformedAnswer("not an http/1 status line"));
    }
    let status: u16 = parts
        .next()
        .filter(|code| code.len() == 3)
        .and_then(|code| code.parse().ok())
        .ok_or(StaError::MalformedAnswer("no status code"))?;
    let mut length: Option<usize> = None;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(StaError::MalformedAnswer("header line without a colon"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let parsed: usize = value
                .parse()
                .map_err(|_| StaError::MalformedAnswer("content-length is not a number"))?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(StaError::MalformedAnswer("conflicting content-length"));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(StaError::NoLength);
        } else if name.eq_ignore_ascii_case("connection") {
            let tokens = value.split(',').map(str::trim);
            for token in tokens {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        }
    }
    let body_len = length.ok_or(StaError::NoLength)?;
    if body_len > MAX_BODY_BYTES {
        return Err(StaError::BodyTooLarge(body_len));
    }
    let body_start = head_len + 4;
    let total = body_start + body_len;
    if input.len() < total {
        return Ok(Progress::NeedMore { at_least: total });
    }
    Ok(Progress::Done {
        value: HttpAnswer {
            status,
            body_start,
            body_len,
            close,
        },
        consumed: total,
    })
}

/// Reads the ticket out of an answer: the text form `;VER;STA_ID;TICKET` of
/// a `ResponseTicket` (HTTP 200). A `ResponseError` or another status is
/// [`StaError::Refused`] with its `ErrorId`.
pub fn decode_ticket(status: u16, body: &[u8]) -> Result<SocksHost, StaError> {
    let body = std::str::from_utf8(body).map_err(|_| StaError::NotATicket("body is not utf-8"))?;
    if status != 200 || body.contains("<ResponseError>") {
        let error_id = element(body, "ErrorId").unwrap_or("none").to_owned();
        return Err(StaError::Refused { status, error_id });
    }
    if !body.contains("<ResponseTicket>") {
        return Err(StaError::NotATicket("no ResponseTicket"));
    }
    let field = |tag, what| element(body, tag).ok_or(StaError::NotATicket(what));
    let version = field("TicketVersion", "no TicketVersion")?;
    let authority = field("AuthorityID", "no AuthorityID")?;
    let ticket = field("Ticket", "no Ticket")?;
    let version_ok =
        (1..=4).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_digit());
    let authority_ok = (1..=16).contains(&authority.len())
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let ticket_ok = (1..=64).contains(&ticket.len())
        && ticket
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !(version_ok && authority_ok && ticket_ok) {
        return Err(StaError::NotATicket("malformed ticket fields"));
    }
    SocksHost::new(format!(";{version};{authority};{ticket}"))
        .map_err(|_| StaError::NotATicket("ticket text does not fit a socks domain"))
}

/// What to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketPlan {
    /// The STA endpoint.
    pub sta: StaUrl,
    /// `ICAAddress` of every ticket: the worker (`host:port`).
    pub worker: String,
    /// Tickets to fetch, 1 to [`MAX_TICKETS`].
    pub count: usize,
    /// HTTP connections in parallel, at least 1.
    pub connections: usize,
    /// Requests written at once per connection, 1 to [`MAX_PIPELINE`].
    pub pipeline: usize,
}

/// Fetched tickets, handed out one per connection.
#[derive(Debug)]
pub struct TicketBatch {
    tickets: Vec<SocksHost>,
    next: AtomicUsize,
    /// How long the fetch took.
    pub elapsed: Duration,
}

impl TicketBatch {
    /// A batch of the given tickets (fetched in `elapsed`).
    pub fn new(tickets: Vec<SocksHost>, elapsed: Duration) -> Self {
        Self {
            tickets,
            next: AtomicUsize::new(0),
            elapsed,
        }
    }

    /// The next unused ticket; `None` once all are handed out.
    pub fn take(&self) -> Option<&SocksHost> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        self.tickets.get(index)
    }

    /// Tickets fetched.
    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    /// Whether no ticket was fetched.
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    /// Tickets handed out so far.
    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed).min(self.tickets.len())
    }

    /// Whether every ticket has been handed out (or asked for past the end).
    pub fn exhausted(&self) -> bool {
        self.next.load(Ordering::Relaxed) > self.tickets.len()
    }
}

/// Fetches `plan.count` tickets over `plan.connections` parallel keep-alive
/// connections; fails on the first answer that is not a ticket, after
/// [`MAX_RECONNECTS`] lost connections on one of them, or at
/// [`FETCH_DEADLINE`]. Call it inside a tokio runtime.
pub async fn fetch(plan: &TicketPlan) -> Result<TicketBatch, StaError> {
    let started = Instant::now();
    let shared = Arc::new(FetchShared {
        sta: plan.sta.addr,
        request: encode_post(&plan.sta, &request_ticket_document(&plan.worker)),
        count: plan.count.min(MAX_TICKETS),
        pipeline: plan.pipeline.clamp(1, MAX_PIPELINE),
        reserved: AtomicUsize::new(0),
        abort: AtomicBool::new(false),
        deadline: started + FETCH_DEADLINE,
    });
    let tasks: Vec<_> = (0..plan.connections.max(1))
        .map(|_| tokio::spawn(fetch_on_one_connection(Arc::clone(&shared))))
        .collect();
    let mut tickets = Vec::with_capacity(shared.count);
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(mut got)) => tickets.append(&mut got),
            Ok(Err(error)) => failure = failure.or(Some(error)),
            Err(_) => failure = failure.or(Some(StaError::Closed)),
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    Ok(TicketBatch::new(tickets, started.elapsed()))
}

/// What the fetch tasks share.
#[derive(Debug)]
struct FetchShared {
    sta: SocketAddr,
    request: Vec<u8>,
    count: usize,
    pipeline: usize,
    /// Tickets asked for and not lost (returned when a batch comes back short).
    reserved: AtomicUsize,
    /// Set by the first task that meets an answer other than a ticket.
    abort: AtomicBool,
    deadline: Instant,
}

impl FetchShared {
    /// Reserves up to `pipeline` tickets; 0 when all are reserved.
    fn reserve(&self) -> usize {
        let mut current = self.reserved.load(Ordering::Relaxed);
        loop {
            let batch = self.pipeline.min(self.count.saturating_sub(current));
            if batch == 0 {
                return 0;
            }
            match self.reserved.compare_exchange_weak(
                current,
                current + batch,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return batch,
                Err(actual) => current = actual,
            }
        }
    }
}

async fn fetch_on_one_connection(shared: Arc<FetchShared>) -> Result<Vec<SocksHost>, StaError> {
    let mut got = Vec::new();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut lost = 0;
    loop {
        if shared.abort.load(Ordering::Relaxed) {
            return Ok(got);
        }
        if Instant::now() >= shared.deadline {
            return Err(StaError::Timeout);
        }
        let batch = shared.reserve();
        if batch == 0 {
            return Ok(got);
        }
        let before = got.len();
        let outcome = match stream.as_mut() {
            Some(open) => run_batch(open, &shared, batch, &mut buf, &mut got).await,
            None => match timeout(net::CONNECT_TIMEOUT, TcpStream::connect(shared.sta)).await {
                Ok(Ok(fresh)) => {
                    // Requests and answers are small: no Nagle delay on our side.
                    let _ = fresh.set_nodelay(true);
                    let open = stream.insert(fresh);
                    buf.clear();
                    run_batch(open, &shared, batch, &mut buf, &mut got).await
                }
                Ok(Err(error)) => Err(StaError::Io(error)),
                Err(_) => Err(StaError::Io(std::io::ErrorKind::TimedOut.into())),
            },
        };
        let answered = got.len() - before;
        if answered < batch {
            shared
                .reserved
                .fetch_sub(batch - answered, Ordering::Relaxed);
        }
        match outcome {
            Ok(true) => {}
            Ok(false) => stream = None,
            Err(error) if error.is_transport() => {
                stream = None;
                lost += 1;
                if lost > MAX_RECONNECTS {
                    shared.abort.store(true, Ordering::Relaxed);
                    return Err(error);
                }
            }
            Err(error) => {
                shared.abort.store(true, Ordering::Relaxed);
                return Err(error);
            }
        }
    }
}

/// Writes `batch` requests at once and reads their answers; `Ok(false)` when
/// the server closes the connection (answers after that are lost).
async fn run_batch(
    stream: &mut TcpStream,
    shared: &FetchShared,
    batch: usize,
    buf: &mut Vec<u8>,
    got: &mut Vec<SocksHost>,
) -> Result<bool, StaError> {
    let limit = shared.deadline.min(Instant::now() + BATCH_TIMEOUT);
    match timeout_at(limit, pipelined(stream, &shared.request, batch, buf, got)).await {
        Ok(outcome) => outcome,
        Err(_) if Instant::now() >= shared.deadline => Err(StaError::Timeout),
        Err(_) => Err(StaError::Io(std::io::ErrorKind::TimedOut.into())),
    }
}

async fn pipelined(
    stream: &mut TcpStream,
    request: &[u8],
    batch: usize,
    buf: &mut Vec<u8>,
    got: &mut Vec<SocksHost>,
) -> Result<bool, StaError> {
    let wire = request.repeat(batch);
    stream.write_all(&wire).await?;
    let mut chunk = vec![0u8; 32 * 1024];
    for _ in 0..batch {
        loop {
            match decode_answer(buf)? {
                Progress::Done { value, consumed } => {
                    let body = &buf[value.body_start..value.body_start + value.body_len];
                    got.push(decode_ticket(value.status, body)?);
                    buf.drain(..consumed);
                    if value.close {
                        return Ok(false);
                    }
                    break;
                }
                Progress::NeedMore { .. } => {
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        return Err(StaError::Closed);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
    Ok(true)
}

/// The text of the first `<tag>…</tag>`, trimmed; `None` if absent.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(xml[start..end].trim())
}

fn escape_xml_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
