//! The gateway's web side (PROTOCOLS.md §7): HTTP connections the data
//! plane detected on the gateway listener and forwarded here over a unix
//! socket (`<data_dir>/web.sock`), each behind a PROXY protocol v2 header
//! that names the client (`gatehouse_wire::proxy`).
//!
//! ```text
//! core: detect Http ─► PROXY v2 header + relay ─► web.sock ─► header (5 s, 512 bytes)
//!                                                           ─► hyper HTTP/1.1 ─► axum router
//!                                                              (Extension<WebClient>)
//! ```
//!
//! Pages ([`router`]): `GET /` redirects to `/vpn/index.html`, the login
//! page; the login flow of PROTOCOLS.md §7 ([`flow`]: `/cgi/login`,
//! `/cgi/dlge`, the push wait `/cgi/pushwait` and `/cgi/pushresend`,
//! `/cgi/setclient`, `/vpns/cvpnpage.html`, `/cgi/logout`) over
//! [`crate::login::Login`]; `/manageotp` ([`manageotp`]); the store front
//! ([`storefront`]: the home page's launch list, `/cgi/resources`,
//! `/cgi/launch` answering `.ica` files) over [`crate::broker::Broker`];
//! the store's SSO callback `POST /CitrixAuthService/AuthService.asmx`
//! ([`authservice`]). Pages are rendered on the server ([`pages`]) as
//! plain forms. Every request logs one `web_request` event (`peer`, `tls`,
//! `method`, `path`, `status`). A connection whose header is missing,
//! malformed or late is closed with a `web_refused` event; it never
//! reaches the router.
//!
//! Who calls it: [`crate::appliance`] binds the socket, builds the
//! [`WebState`] and passes the socket's path to the engine
//! ([`gatehouse_engine::WebForward`]).

pub mod access;
pub mod authservice;
pub mod cookies;
pub mod flow;
pub mod manageotp;
pub mod pages;
pub mod storefront;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_wire::Progress;
use gatehouse_wire::proxy::{self, MAX_HEADER, ProxyError};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::login::Login;

/// The socket's file name in the data directory.
pub const SOCKET_NAME: &str = "web.sock";

/// How long the data plane has to send the PROXY header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has to send a request's head.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The login page's path.
pub const LOGIN_PAGE: &str = "/vpn/index.html";

/// The logged-in user's home page.
pub const HOME_PAGE: &str = "/vpns/home.html";

/// Largest request body read (the forms are small).
pub const MAX_BODY_BYTES: usize = 16 * 1_024;

/// Most QR images of new devices kept at once.
pub const MAX_QR_IMAGES: usize = 1_024;

/// What the handlers share: the login service, the store front and the
/// QR images of new devices.
#[derive(Debug)]
pub struct WebState {
    /// The login decisions, sessions and devices.
    pub login: Arc<Login>,
    /// The store front (`None`: nothing is published; the home page says
    /// so and launches are refused).
    pub store: Option<storefront::StoreFront>,
    qr: Mutex<HashMap<String, QrImage>>,
}

/// A new device's QR code, for the session that added it.
#[derive(Debug, Clone)]
struct QrImage {
    session: String,
    png: Vec<u8>,
    expires: Instant,
}

impl WebState {
    /// The state over `login`.
    pub fn new(login: Arc<Login>) -> Self {
        Self {
            login,
            store: None,
            qr: Mutex::new(HashMap::new()),
        }
    }

    /// The same state with the store front `store`.
    pub fn with_store(mut self, store: storefront::StoreFront) -> Self {
        self.store = Some(store);
        self
    }

    fn put_qr(&self, id: String, image: QrImage) {
        let mut map = self.qr.lock();
        let now = Instant::now();
        map.retain(|_, image| image.expires > now);
        if map.len() >= MAX_QR_IMAGES {
            return;
        }
        map.insert(id, image);
    }

    fn qr(&self, id: &str, session: &str) -> Option<Vec<u8>> {
        let map = self.qr.lock();
        map.get(id)
            .filter(|image| image.session == session && image.expires > Instant::now())
            .map(|image| image.png.clone())
    }

    fn forget_qr(&self, session: &str) {
        self.qr.lock().retain(|_, image| image.session != session);
    }
}

/// Who is on the other end of a forwarded connection, from its PROXY
/// header; every handler can take it as `Extension<WebClient>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebClient {
    /// The client's address (`None` for a LOCAL header).
    pub peer: Option<SocketAddr>,
    /// Whether the client reached the gateway over TLS.
    pub tls: bool,
}

/// Why a forwarded connection was closed before HTTP.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The PROXY header is malformed.
    #[error("malformed proxy header")]
    Proxy(#[from] ProxyError),
    /// The header did not arrive in time.
    #[error("no proxy header within {HEADER_TIMEOUT:?}")]
    Timeout,
    /// The socket closed before the header was complete.
    #[error("connection closed before the proxy header")]
    Closed,
    /// Reading failed.
    #[error("reading the proxy header failed")]
    Io(#[from] io::Error),
}

/// The web router over `state`: the pages and the `web_request` log.
pub fn router(state: Arc<WebState>) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `devices` merged in (the push device endpoints,
/// [`crate::push::router`], when push is enabled), under the same
/// `web_request` log.
pub fn router_with(state: Arc<WebState>, devices: Router) -> Router {
    Router::new()
        .route("/", get(root))
        .route(LOGIN_PAGE, get(flow::login_page))
        .route("/cgi/login", post(flow::login))
        .route("/cgi/dlge", post(flow::dlge))
        .route(flow::PUSH_WAIT, get(flow::push_wait).post(flow::push_wait))
        .route("/cgi/pushresend", post(flow::push_resend))
        .route("/cgi/setclient", get(flow::setclient))
        .route("/vpns/cvpnpage.html", get(flow::cvpnpage))
        .route(HOME_PAGE, get(storefront::home))
        .route(storefront::RESOURCES_PATH, get(storefront::resources))
        .route(storefront::LAUNCH_PATH, post(storefront::launch))
        .route(authservice::PATH, post(authservice::get_access_information))
        .route("/cgi/logout", get(flow::logout))
        .route("/manageotp", get(manageotp::show))
        .route("/manageotp/add", post(manageotp::add))
        .route("/manageotp/test", post(manageotp::test))
        .route("/manageotp/remove", post(manageotp::remove))
        .route("/manageotp/qr/{id}", get(manageotp::qr))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .merge(devices)
        .layer(middleware::from_fn(log_request))
}

/// Binds the web socket at `path`, replacing a stale socket file of an
/// earlier run.
///
/// Errors: the path exists and is not a socket, or binding failed.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    UnixListener::bind(path)
}

/// Serves forwarded connections on `listener` with `router` until `stop`
/// turns true, then waits for the connections in flight.
pub async fn serve(listener: UnixListener, router: Router, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, router.clone()));
                }
                Err(error) => {
                    tracing::warn!(error = %error, "web_accept_failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// One forwarded connection: the PROXY header, then HTTP/1.1.
async fn connection(mut stream: UnixStream, router: Router) {
    let (client, leftover) =
        match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await {
            Ok(Ok(read)) => read,
            Ok(Err(error)) => {
                tracing::info!(reason = "bad_proxy_header", error = %error, "web_refused");
                return;
            }
            Err(_) => {
                tracing::info!(reason = "proxy_header_timeout", "web_refused");
                return;
            }
        };
    let service = TowerToHyperService::new(router.layer(Extension(client)));
    let io = TokioIo::new(Prefixed {
        prefix: leftover,
        at: 0,
        inner: stream,
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_HEAD_TIMEOUT)
        .serve_connection(io, service)
        .await;
    if let Err(error) = served {
        tracing::debug!(error = %error, "web_connection_error");
    }
}

/// Reads the PROXY header; returns the client and the bytes read past it.
async fn read_header(stream: &mut UnixStream) -> Result<(WebClient, Vec<u8>), WebError> {
    let mut buf = Vec::with_capacity(MAX_HEADER);
    let mut chunk = [0; MAX_HEADER];
    loop {
        if let Progress::Done { value, consumed } = proxy::decode(&buf)? {
            let client = WebClient {
                peer: value.addresses.map(|addresses| addresses.source),
                tls: value.tls,
            };
            return Ok((client, buf.split_off(consumed)));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(WebError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A stream that first yields `prefix` (bytes read past the header).
struct Prefixed {
    prefix: Vec<u8>,
    at: usize,
    inner: UnixStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.prefix.get(this.at..).filter(|rest| !rest.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Logs one `web_request` event per request.
async fn log_request(
    Extension(client): Extension<WebClient>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let peer = client.peer.map(|peer| peer.to_string()).unwrap_or_default();
    tracing::info!(
        peer,
        tls = client.tls,
        method = %method,
        path,
        status = response.status().as_u16(),
        "web_request"
    );
    response
}

async fn root() -> Response {
    (StatusCode::FOUND, [(header::LOCATION, LOGIN_PAGE)]).into_response()
}

/// Fuzz entry points for the web side's parsers of outside input (the
/// PROXY header has its own in `gatehouse_wire`).
pub mod fuzz {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::cookies;
    use crate::login::SessionToken;

    /// Parses `data` as a form body and, when it is a valid header value,
    /// as a `Cookie` header whose session value is then read as a token.
    /// Must not panic.
    pub fn form_and_cookies(data: &[u8]) {
        let form = cookies::form(data);
        for name in ["login", "passwd", "passwd1", "response", "csrf", "device"] {
            let _ = cookies::field(&form, name);
        }
        if let Ok(value) = HeaderValue::from_bytes(data) {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, value);
            if let Some(value) = cookies::get(&headers, cookies::SESSION) {
                let _ = SessionToken::from_cookie(value);
            }
            let _ = cookies::get(&headers, cookies::PENDING);
        }
    }

    #[cfg(test)]
    mod tests {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn the_form_and_cookie_parsers_survive_arbitrary_bytes(
                data in proptest::collection::vec(any::<u8>(), 0..512),
            ) {
                form_and_cookies(&data);
            }

            #[test]
            fn the_parsers_survive_cookie_shaped_text(text in "[A-Za-z0-9_=;% +&\"-]{0,200}") {
                form_and_cookies(text.as_bytes());
                form_and_cookies(format!("NSC_AAAC={text}").as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod flow_tests;

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use gatehouse_wire::proxy::Addresses;
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::login::LoginSection;

    async fn start() -> (
        std::path::PathBuf,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-web-{}-{}",
            std::process::id(),
            getrandom::u64().unwrap()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.sock");
        let listener = bind(&path).unwrap();
        let (state, _) = state(&dir, LoginSection::default()).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, router(state), stop_rx));
        (path, stop_tx, task)
    }

    /// A web state over a store in `dir` with local users (cheap Argon2
    /// parameters) and store devices.
    pub(super) async fn state(
        dir: &Path,
        section: LoginSection,
    ) -> (Arc<WebState>, crate::auth::local::LocalUsers) {
        use crate::auth::devices::OtpDevices;
        use crate::auth::local::LocalUsers;
        use crate::auth::password::{PasswordHasher, PasswordParams};
        use crate::auth::seal::OtpKey;
        use crate::login::{Login, UserDevices, local_directory};
        use crate::store::Store;

        let store = Store::open(dir).await.unwrap();
        let hasher = PasswordHasher::new(PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let users = LocalUsers::new(store.clone(), Arc::new(hasher));
        let devices = OtpDevices::new(store.clone(), OtpKey::from_bytes([9; 32]), "Gatehouse");
        let login = Login::new(
            section,
            local_directory(users.clone()),
            UserDevices::Store(devices),
            None,
            store,
            "Gatehouse",
        );
        (Arc::new(WebState::new(Arc::new(login))), users)
    }

    pub(super) fn header(peer: SocketAddr, tls: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let destination: SocketAddr = if peer.is_ipv4() {
            "127.0.0.1:8443".parse().unwrap()
        } else {
            "[::1]:8443".parse().unwrap()
        };
        proxy::encode(
            Addresses {
                source: peer,
                destination,
            },
            tls,
            &mut out,
        )
        .unwrap();
        out
    }

    pub(super) async fn exchange(path: &Path, bytes: &[u8]) -> String {
        let mut stream = UnixStream::connect(path).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn the_root_redirects_to_the_login_page_behind_a_proxy_header() {
        let (path, stop, task) = start().await;
        let mut request = header("192.0.2.7:50000".parse().unwrap(), true);
        request.extend_from_slice(b"GET / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let answer = exchange(&path, &request).await;
        assert!(answer.starts_with("HTTP/1.1 302"), "{answer}");
        assert!(answer.contains("location: /vpn/index.html"), "{answer}");
        let mut page = header("192.0.2.7:50001".parse().unwrap(), true);
        page.extend_from_slice(
            b"GET /vpn/index.html HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        );
        let answer = exchange(&path, &page).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#"name="passwd1""#), "{answer}");
        assert!(answer.contains("x-frame-options: DENY"), "{answer}");
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_without_a_proxy_header_never_reaches_http() {
        let (path, stop, task) = start().await;
        let answer = exchange(&path, b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n").await;
        assert_eq!(answer, "", "closed without an answer");
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn an_unknown_page_is_not_found() {
        let (path, stop, task) = start().await;
        let mut request = header("[2001:db8::1]:4000".parse().unwrap(), false);
        request.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let answer = exchange(&path, &request).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn binding_replaces_a_stale_socket_but_not_a_file() {
        let dir = std::env::temp_dir().join(format!("gatehouse-web-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            drop(bind(&path).unwrap());
            drop(bind(&path).unwrap());
        });
        let file = dir.join("plain");
        std::fs::write(&file, b"x").unwrap();
        runtime.block_on(async {
            assert!(bind(&file).is_err());
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
