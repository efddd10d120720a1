//! User flow: the planes as separate processes (`gatehouse controlplane` and
//! `gatehouse dataplane` over one named segment in `/dev/shm`), and an
//! operator or a crash killing one of them with SIGKILL.
//!
//! - The control plane dies while 200 SOCKS sessions stream through the
//!   data plane (plaintext listener, `vda-sim` echoing a checksummed byte
//!   stream): every session keeps flowing with no byte lost, new handshakes
//!   are refused at once (reply `01`, reason `control_plane_down`) until a
//!   new control plane links, then launches with its tickets succeed and
//!   its `/sessions` view lists the 200 sessions again (the data plane
//!   re-announced them). The test prints the measured gap.
//! - The data plane dies under 200 open sessions: the control plane's view
//!   drops them all (`data_plane_gone`); a new data plane serves launches
//!   and the view follows it.
//! - Server-to-client access with the data plane's cores as the connector
//!   (TLS gateway, the real `access-client`): the data plane dies while
//!   alice holds her IIP; a new data plane on the same gateway address is
//!   told the listen set when it links and accepts on IIP:port while her
//!   client is still frozen (SIGSTOP: it cannot re-attach), then carries
//!   a new flow once the client is back, with no second login. IIPs in
//!   127.77.30.0/29, servers in 127.0.9.0/24.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a panic is a failed test; the gap is reported on stderr"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gatehouse_tests::access::{AccessClient, connect_from, echo_service, exchange, refused_soon};
use gatehouse_tests::gatehouse::{Event, count};
use gatehouse_tests::process::Process;
use gatehouse_tests::socks::{self, ICA_DETECT, REPLY_GENERAL_FAILURE, REPLY_SUCCEEDED};
use gatehouse_tests::temp::TempDir;
use gatehouse_tests::vda_sim::VdaSim;
use gatehouse_tests::{TIMEOUT, bins, sta};
use rustix::process::Signal;

/// One core (the machine is shared), a short drain, a plaintext gateway.
const CONFIG: &str = "[engine]\ncores = 1\ndrain_secs = 2\n[gateway]\nplaintext = true\n";

/// One core, a short drain, a TLS gateway, and one IIP pool owned by the
/// data plane's cores (connector `gateway`) with one app.
const S2C_CONFIG: &str = r#"
[engine]
cores = 1
drain_secs = 2

[server_to_client]
[[server_to_client.pools]]
name = "hq"
location = "hq"
cidr = "127.77.30.0/29"
connectors = ["gateway"]
[[server_to_client.apps]]
name = "vnc"
servers = ["127.0.9.0/24"]
ports = [5900]

[policy]
server_to_client_default = "allow"
"#;

/// The server-to-client app port.
const VNC: u16 = 5900;
/// alice's password.
const PASSWORD: &str = "correct horse battery";

/// Sessions streaming through the data plane.
const SESSIONS: usize = 200;
/// Bytes per write (and per echoed read) of a streaming session.
const CHUNK: usize = 4 * 1_024;
/// Pause between a session's round trips.
const PACE: Duration = Duration::from_millis(20);
/// Bytes every session must have moved in total, and after the kill.
const MIN_TOTAL: u64 = 256 * 1_024;
const MIN_AFTER_KILL: u64 = 64 * 1_024;
/// Launches refused during the gap, and the pause between them.
const PROBES: usize = 10;
const PROBE_PAUSE: Duration = Duration::from_millis(20);
/// A refusal while the control plane is down must be this fast.
const FAST_REFUSAL: Duration = Duration::from_millis(500);

#[test]
fn established_sessions_survive_a_killed_control_plane_and_launches_resume() {
    let sim = VdaSim::start();
    let rig = Rig::new();
    let mut control = rig.control_plane();
    let mut data = rig.data_plane();
    data.wait_linked(1);

    // 200 sessions with tickets of the first control plane, streaming.
    let tickets: Vec<String> = (0..SESSIONS).map(|_| control.issue(sim.ica())).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Dropped before the planes: a failing test stops its streams first.
    let _stop_on_drop = StopOnDrop(stop.clone());
    let streams: Vec<Streamer> = tickets
        .into_iter()
        .enumerate()
        .map(|(i, ticket)| Streamer::start(data.addr, ticket, i as u64, stop.clone()))
        .collect();
    wait_until("every session streams", || {
        streams.iter().all(|s| s.progress() >= 4 * CHUNK as u64)
    });
    wait_until("the control plane sees 200 sessions", || {
        control.open_sessions() == SESSIONS
    });
    let stale = control.issue(sim.ica());

    // kill -9 the control plane.
    let before: Vec<u64> = streams.iter().map(Streamer::progress).collect();
    let killed = Instant::now();
    control.kill();
    let mut slowest = Duration::ZERO;
    for _ in 0..PROBES {
        let started = Instant::now();
        let reply = try_launch(data.addr, &stale);
        let took = started.elapsed();
        assert_eq!(reply, REPLY_GENERAL_FAILURE, "refused while down");
        assert!(took < FAST_REFUSAL, "a refusal took {took:?}");
        slowest = slowest.max(took);
        thread::sleep(PROBE_PAUSE);
    }

    // A new control plane; launches with its tickets work again.
    let restarting = Instant::now();
    let control = rig.control_plane();
    let ready = restarting.elapsed();
    let mut attempts = 0;
    let deadline = Instant::now() + TIMEOUT;
    let mut launch = loop {
        assert!(
            Instant::now() < deadline,
            "no launch succeeded after the restart"
        );
        attempts += 1;
        let ticket = control.issue(sim.ica());
        let mut stream = socks::connect_plain(data.addr);
        match socks::launch(&mut stream, &ticket) {
            REPLY_SUCCEEDED => break stream,
            REPLY_GENERAL_FAILURE => thread::sleep(Duration::from_millis(5)),
            other => panic!("launch after the restart answered {other:#04x}"),
        }
    };
    let first_launch = killed.elapsed();
    socks::expect_detect_and_echo(&mut launch, b"after the restart");
    drop(launch);
    let linked = data.wait_linked(2);
    let down_ms = linked.json["fields"]["down_ms"].as_u64().unwrap();
    eprintln!(
        "control plane kill -9: refusals during the gap answered within {slowest:?} \
         ({PROBES} probes, reply 01); the data plane refused for {down_ms} ms; the new \
         process started {:?} after the kill (the probes), was ready {ready:?} later, and the \
         first launch succeeded {:?} after its start ({first_launch:?} after the kill, \
         {attempts} attempts)",
        restarting - killed,
        first_launch - (restarting - killed),
    );

    // Every established session kept streaming, and the new control
    // plane's view lists them (re-announced by the data plane).
    wait_until("every session streams after the kill", || {
        streams
            .iter()
            .zip(&before)
            .all(|(s, b)| s.progress() >= b + MIN_AFTER_KILL && s.progress() >= MIN_TOTAL)
    });
    wait_until("the new control plane sees the 200 sessions", || {
        control.open_sessions() == SESSIONS
    });
    stop.store(true, Ordering::Release);
    let mut moved = 0;
    for streamer in streams {
        let totals = streamer.finish();
        assert_eq!(totals.up, totals.down, "bytes echoed = bytes sent");
        assert_eq!(totals.up_hash, totals.down_hash, "checksums match");
        moved += totals.up;
    }
    eprintln!("{SESSIONS} sessions moved {moved} bytes each way through the restart");

    let events = data.events();
    // The kill's outage is logged once: between the last link with the
    // first control plane and the link with the second. A silence of the
    // first one before the kill (a starved heartbeat on a loaded machine)
    // is its own outage, logged and healed by a relink of the same
    // generation; it is reported, not counted here.
    let linked = |event: &Event, generation: u64| {
        event.message() == "control_plane_linked"
            && event.json["fields"]["generation"].as_u64() == Some(generation)
    };
    let last_first = events.iter().rposition(|event| linked(event, 1)).unwrap();
    let second = events.iter().position(|event| linked(event, 2)).unwrap();
    assert!(
        last_first < second,
        "the first control plane linked last before the second"
    );
    let is_down = |event: &&Event| event.message() == "control_plane_down";
    let downs = events[last_first..second].iter().filter(is_down).count();
    assert_eq!(downs, 1, "the outage is logged once");
    let earlier: Vec<&Event> = events[..last_first].iter().filter(is_down).collect();
    for event in &earlier {
        assert_eq!(
            event.field("reason"),
            Some("silent"),
            "an earlier outage healed by a relink"
        );
    }
    if !earlier.is_empty() {
        eprintln!(
            "{} silence(s) of the first control plane before the kill",
            earlier.len()
        );
    }
    let refused = events
        .iter()
        .filter(|event| event.is("session_closed", &[("reason", "control_plane_down")]))
        .count();
    assert!(refused >= PROBES, "{refused} refusals logged");
    control.stop();
    data.stop();
    assert_eq!(sim.stop().code(), Some(0));
}

#[test]
fn the_control_plane_drops_the_sessions_of_a_killed_data_plane_and_follows_its_successor() {
    let sim = VdaSim::start();
    let rig = Rig::new();
    let mut control = rig.control_plane();
    let mut data = rig.data_plane();
    data.wait_linked(1);

    let mut open: Vec<TcpStream> = (0..SESSIONS)
        .map(|_| launch_echo(data.addr, &control.issue(sim.ica())))
        .collect();
    wait_until("the control plane sees 200 sessions", || {
        control.open_sessions() == SESSIONS
    });

    let killed = Instant::now();
    data.kill();
    wait_until("the control plane's view empties", || {
        control.open_sessions() == 0
    });
    let emptied = killed.elapsed();
    let gone = control.wait_for("data_plane_gone", |event| {
        event.message() == "data_plane_gone"
    });
    assert_eq!(gone.json["fields"]["sessions_closed"].as_u64(), Some(200));
    // The clients see their connections end.
    for stream in &mut open {
        socks::expect_closed(stream);
    }
    drop(open);

    let mut data = rig.data_plane();
    data.wait_linked(1);
    let again: Vec<TcpStream> = (0..5)
        .map(|_| launch_echo(data.addr, &control.issue(sim.ica())))
        .collect();
    wait_until("the view lists the new data plane's 5 sessions", || {
        control.open_sessions() == 5
    });
    drop(again);
    wait_until("the view empties as they close", || {
        control.open_sessions() == 0
    });
    eprintln!("data plane kill -9: the control plane's view emptied {emptied:?} after the kill");
    control.stop();
    data.stop();
    assert_eq!(sim.stop().code(), Some(0));
}

#[test]
fn a_restarted_data_plane_listens_on_the_addresses_leased_before_it_came() {
    let rig = Rig::with_config(S2C_CONFIG);
    let mut control = rig.control_plane();
    let mut data = rig.data_plane();
    data.wait_linked(1);
    rig.add_user("alice");

    // alice's IIP is bound by the data plane's cores; a server reaches her.
    let service = echo_service();
    let mut alice = AccessClient::start(
        data.addr,
        &rig.certificate(),
        "alice",
        PASSWORD,
        Some((VNC, service)),
        None,
    );
    let iip = alice.connected();
    assert!(iip.starts_with("127.77.30."), "{iip}");
    let bound = format!("{iip}:{VNC}");
    data.wait_for("s2c_listening on the IIP", |event| {
        event.is("s2c_listening", &[("addr", &bound)])
    });
    let mut flow = connect_from("127.0.9.5", &iip, VNC);
    assert_eq!(exchange(&mut flow, b"hello client"), b"hello client");

    // Freeze alice's client (it can neither re-attach nor log in), then
    // kill -9 the data plane: its listeners go with it.
    alice.signal(Signal::STOP);
    let gateway = data.addr;
    data.kill();
    control.wait_for("data_plane_gone", |event| {
        event.message() == "data_plane_gone"
    });
    assert!(
        refused_soon(&iip, VNC),
        "{bound} accepts with no data plane"
    );
    drop(data);

    // A new data plane on the same gateway address is told the listen set
    // when it links: IIP:port accepts while alice's client is frozen.
    let mut data = rig.data_plane_on(gateway);
    data.wait_linked(1);
    let pid = u64::from(data.process.pid());
    control.wait_for("data_plane_linked of the new data plane", |event| {
        event.message() == "data_plane_linked" && event.json["fields"]["pid"].as_u64() == Some(pid)
    });
    data.wait_for("s2c_listening on the IIP after the restart", |event| {
        event.is("s2c_listening", &[("addr", &bound)])
    });
    drop(connect_from("127.0.9.5", &iip, VNC));

    // alice's client comes back: its control connection re-attaches
    // through the new data plane, with the same IIP and the same web
    // session, and a server reaches her again.
    alice.signal(Signal::CONT);
    assert_eq!(alice.connected(), iip, "the same IIP after the restart");
    let mut again = connect_from("127.0.9.5", &iip, VNC);
    assert_eq!(exchange(&mut again, b"hello again"), b"hello again");
    drop(again);
    drop(flow);
    drop(alice);
    let data_events = data.stop();
    let events = control.stop();
    assert_eq!(
        count(
            &events,
            "login",
            &[("user", "alice"), ("outcome", "success")]
        ),
        1,
        "alice logged in once"
    );
    assert!(count(&events, "s2c_client_attached", &[("user", "alice")]) >= 2);
    assert!(count(&data_events, "s2c_listening", &[("addr", &bound)]) >= 1);
}

/// The configuration directory and the segment both planes share; the
/// segment's files are removed on drop.
struct Rig {
    dir: TempDir,
    config: PathBuf,
    shm: PathBuf,
}

impl Rig {
    fn new() -> Self {
        Self::with_config(CONFIG)
    }

    fn with_config(text: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = TempDir::new("split");
        let config = dir.path().join("gatehouse.toml");
        std::fs::write(&config, text).unwrap();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("gatehouse-e2e-{}-{n}-{nanos}", std::process::id());
        Self {
            dir,
            config,
            shm: Path::new("/dev/shm").join(name),
        }
    }

    fn control_plane(&self) -> Plane {
        Plane::start(self, "controlplane", "--admin-listen", "admin", None)
    }

    fn data_plane(&self) -> Plane {
        Plane::start(self, "dataplane", "--gateway-listen", "gateway", None)
    }

    /// A data plane whose gateway listens on `gateway` (a predecessor's).
    fn data_plane_on(&self, gateway: SocketAddr) -> Plane {
        Plane::start(
            self,
            "dataplane",
            "--gateway-listen",
            "gateway",
            Some(gateway),
        )
    }

    /// The certificate the data plane generated into the data directory.
    fn certificate(&self) -> PathBuf {
        self.dir.path().join("data/tls/gateway.crt")
    }

    /// `gatehouse user add NAME` on the planes' configuration and data
    /// directory, with [`PASSWORD`].
    fn add_user(&self, name: &str) {
        let mut child = Command::new(bins::gatehouse())
            .current_dir(self.dir.path())
            .args(["user", "--config"])
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["add", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gatehouse runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "gatehouse user add {name}");
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.shm);
        let mut link = self.shm.clone().into_os_string();
        link.push(".link");
        let _ = std::fs::remove_file(link);
    }
}

/// One running plane, stopped by PID when dropped.
struct Plane {
    process: Process,
    /// The admin listener (control plane) or the gateway (data plane).
    addr: SocketAddr,
}

impl Plane {
    /// Starts `gatehouse SUBCOMMAND` listening (`listen_flag`) on `listen`
    /// (default `127.0.0.1:0`); the bound address is `addr_field` of its
    /// `gatehouse_ready` event.
    fn start(
        rig: &Rig,
        subcommand: &str,
        listen_flag: &str,
        addr_field: &str,
        listen: Option<SocketAddr>,
    ) -> Self {
        let listen = listen.map_or_else(|| "127.0.0.1:0".to_owned(), |addr| addr.to_string());
        let mut child = Command::new(bins::gatehouse())
            .current_dir(rig.dir.path())
            .args(["--log-format", "json", subcommand, "--shm"])
            .arg(&rig.shm)
            .arg("--config")
            .arg(&rig.config)
            .arg("--data-dir")
            .arg(rig.dir.path().join("data"))
            .args([listen_flag, &listen])
            // The connector role's binds at debug.
            .env("RUST_LOG", "info,gatehouse_engine::connector=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gatehouse starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut process = Process::new(subcommand, child, stderr);
        let ready = process.wait_for("gatehouse_ready", |line| {
            Event::parse(line, Instant::now())
                .is_some_and(|event| event.message() == "gatehouse_ready")
        });
        let ready = Event::parse(&ready.text, ready.at).unwrap();
        let addr = ready
            .field(addr_field)
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("no {addr_field} in {}", ready.json));
        Self { process, addr }
    }

    /// A launch ticket to `ica` from this control plane's STA.
    fn issue(&self, ica: SocketAddr) -> String {
        sta::issue(self.addr, ica)
    }

    /// `GET /sessions` on this control plane: the open count.
    fn open_sessions(&self) -> usize {
        let body = http_get(self.addr, "/sessions");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let open = json["open"].as_u64().unwrap();
        assert_eq!(json["sessions"].as_array().unwrap().len() as u64, open);
        open as usize
    }

    /// Waits (bounded) for this data plane's `control_plane_linked` event
    /// with `generation`.
    fn wait_linked(&mut self, generation: u64) -> Event {
        self.wait_for("control_plane_linked", |event| {
            event.message() == "control_plane_linked"
                && event.json["fields"]["generation"].as_u64() == Some(generation)
        })
    }

    /// The first event, already read or still to come (bounded wait), for
    /// which `matches` holds.
    fn wait_for(&mut self, what: &str, matches: impl Fn(&Event) -> bool) -> Event {
        if let Some(seen) = self.events().into_iter().find(|event| matches(event)) {
            return seen;
        }
        let line = self.process.wait_for(what, |line| {
            Event::parse(line, Instant::now()).is_some_and(|event| matches(&event))
        });
        Event::parse(&line.text, line.at).unwrap()
    }

    fn events(&self) -> Vec<Event> {
        self.process
            .lines()
            .iter()
            .filter_map(|line| Event::parse(&line.text, line.at))
            .collect()
    }

    /// SIGKILL by PID.
    fn kill(&mut self) {
        self.process.signal(Signal::KILL);
    }

    /// SIGTERM by PID; asserts a clean exit; every event of the run.
    fn stop(mut self) -> Vec<Event> {
        assert_eq!(self.process.stop().code(), Some(0), "exit 0 on SIGTERM");
        self.events()
    }
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A session streaming a checksummed byte stream through the gateway on
/// its own thread until told to stop; the worker echoes every byte.
struct Streamer {
    seed: u64,
    progress: Arc<AtomicU64>,
    thread: thread::JoinHandle<std::io::Result<(TcpStream, Totals)>>,
}

/// What a session sent and received, with an FNV-1a hash of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Totals {
    up: u64,
    down: u64,
    up_hash: u64,
    down_hash: u64,
}

impl Streamer {
    fn start(gateway: SocketAddr, ticket: String, seed: u64, stop: Arc<AtomicBool>) -> Self {
        let progress = Arc::new(AtomicU64::new(0));
        let counter = progress.clone();
        let thread = thread::spawn(move || {
            let mut stream = launch_echo(gateway, &ticket);
            let mut totals = Totals {
                up: 0,
                down: 0,
                up_hash: FNV_OFFSET,
                down_hash: FNV_OFFSET,
            };
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut chunk = vec![0_u8; CHUNK];
            let mut echoed = vec![0_u8; CHUNK];
            // Bounded: the test stops the streams well within this.
            let give_up = Instant::now() + 3 * TIMEOUT;
            while !stop.load(Ordering::Acquire) {
                if Instant::now() > give_up {
                    return Err(std::io::Error::other("never told to stop"));
                }
                for byte in &mut chunk {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *byte = state as u8;
                }
                stream.write_all(&chunk)?;
                totals.up += CHUNK as u64;
                totals.up_hash = fnv(totals.up_hash, &chunk);
                stream.read_exact(&mut echoed)?;
                totals.down += CHUNK as u64;
                totals.down_hash = fnv(totals.down_hash, &echoed);
                counter.fetch_add(CHUNK as u64, Ordering::Relaxed);
                thread::sleep(PACE);
            }
            Ok((stream, totals))
        });
        Self {
            seed,
            progress,
            thread,
        }
    }

    fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    fn finish(self) -> Totals {
        match self.thread.join().expect("the session thread") {
            Ok((_, totals)) => totals,
            Err(error) => panic!("session {}: {error}", self.seed),
        }
    }
}

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;

fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01B3);
    }
    hash
}

/// A SOCKS launch through `gateway` that must succeed, past the worker's
/// detect string.
fn launch_echo(gateway: SocketAddr, ticket: &str) -> TcpStream {
    let mut stream = socks::connect_plain(gateway);
    assert_eq!(socks::launch(&mut stream, ticket), REPLY_SUCCEEDED);
    let mut detect = [0_u8; ICA_DETECT.len()];
    stream.read_exact(&mut detect).unwrap();
    assert_eq!(detect, ICA_DETECT);
    stream
}

/// A SOCKS launch through `gateway`: its reply code.
fn try_launch(gateway: SocketAddr, ticket: &str) -> u8 {
    let mut stream = socks::connect_plain(gateway);
    socks::launch(&mut stream, ticket)
}

/// `GET path` on `addr` (HTTP/1.1, `Connection: close`): the body of a 200.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// Polls `condition` every 10 ms for at most [`TIMEOUT`].
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {TIMEOUT:?}");
        thread::sleep(Duration::from_millis(10));
    }
}
