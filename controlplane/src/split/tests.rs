use std::net::SocketAddr;
use std::path::PathBuf;

use gatehouse_channel::{ClientAddr, CoreId, Linked, SessionId, ToCore, WorkerAddr};

use super::*;
use crate::connector::tests::{Segment, addr, connect, local_sta, s2c};
use crate::sessions::SessionRecord;

fn record(session: u64) -> SessionRecord {
    let addr: SocketAddr = "127.0.0.1:1494".parse().unwrap();
    SessionRecord {
        session: SessionId(session),
        core: CoreId(0),
        client: ClientAddr("127.0.0.1:50000".parse().unwrap()),
        worker: WorkerAddr(addr),
        opened_at: SystemTime::now(),
        bytes_up: 0,
        bytes_down: 0,
        duration: Duration::ZERO,
    }
}

#[test]
fn a_plain_shm_name_lives_in_dev_shm_and_a_path_names_its_directory() {
    let plain = segment_name("gatehouse").unwrap();
    assert_eq!(plain.segment_path(), PathBuf::from("/dev/shm/gatehouse"));
    let path = segment_name("/run/gatehouse/seg").unwrap();
    assert_eq!(path.segment_path(), PathBuf::from("/run/gatehouse/seg"));
    assert_eq!(path.link_path(), PathBuf::from("/run/gatehouse/seg.link"));
    assert!(segment_name("").is_err());
    assert!(segment_name("/tmp/").is_err());
    assert!(segment_name(".hidden").is_err());
    let error = segment_name("a b").unwrap_err().to_string();
    assert!(error.starts_with("--shm \"a b\""), "{error}");
}

#[test]
fn a_new_data_plane_takes_over_an_empty_table_and_the_old_ones_sessions_close() {
    let sessions = Arc::new(SessionTable::new());
    let reconciler = Reconciler::new(sessions.clone());
    assert_eq!(
        reconciler.hand_over(Some(Generation(1))),
        Some(Handover {
            previous: None,
            closed: 0
        })
    );
    assert_eq!(reconciler.hand_over(Some(Generation(1))), None, "no change");
    sessions.open(record(1));
    sessions.open(record(2));
    assert_eq!(
        reconciler.hand_over(Some(Generation(2))),
        Some(Handover {
            previous: Some(Generation(1)),
            closed: 2
        })
    );
    assert_eq!(sessions.open_count(), 0);
    assert_eq!(sessions.recently_closed().len(), 2);
}

#[test]
fn without_a_data_plane_late_sessions_are_swept_and_with_one_they_stay() {
    let sessions = Arc::new(SessionTable::new());
    let reconciler = Reconciler::new(sessions.clone());
    reconciler.hand_over(Some(Generation(1)));
    sessions.open(record(1));
    assert_eq!(
        reconciler.sweep(),
        0,
        "a live data plane keeps its sessions"
    );
    assert_eq!(
        reconciler.hand_over(None),
        Some(Handover {
            previous: Some(Generation(1)),
            closed: 1
        })
    );
    // The dead data plane's last message arrives after the handover.
    sessions.open(record(2));
    assert_eq!(reconciler.sweep(), 1);
    assert_eq!(sessions.open_count(), 0);
}

#[tokio::test]
async fn the_data_planes_connector_role_gets_the_listen_set_on_each_link_and_no_orders_unlinked() {
    let s2c = s2c("split-replay").await;
    let sta = local_sta();
    let reconciler = Reconciler::new(Arc::new(SessionTable::new()));
    let mut segment = Segment::serve_role(
        &s2c,
        &sta,
        ConnectorRole {
            name: Arc::from("gateway"),
            link: Some(reconciler.link_state()),
        },
    );
    // carol's pool names no connector: the gateway's cores own it. No
    // data plane yet: her lease is not sent into a ring nobody reads,
    // nor when one has attached but not linked.
    let carol = connect(&s2c, "carol").await;
    let listen = ToCore::Listen(addr(&format!("{carol}:5900")));
    segment.quiet().await;
    reconciler.replaced_by(Generation(1));
    segment.quiet().await;
    // The link replays the listen set; later orders flow as they come.
    reconciler.linked(&Linked {
        peer_generation: Generation(1),
        peer_pid: 1,
    });
    assert_eq!(segment.next().await, listen);
    segment.quiet().await;
    s2c.disconnect("carol", SystemTime::now()).await.unwrap();
    assert_eq!(
        segment.next().await,
        ToCore::Unlisten(addr(&format!("{carol}:5900")))
    );
    assert_eq!(
        segment.next().await,
        ToCore::CloseFlows(carol.parse().unwrap())
    );
    assert_eq!(connect(&s2c, "carol").await, carol, "sticky");
    assert_eq!(segment.next().await, listen);

    // The data plane dies: nothing is sent while none is linked, and the
    // next one is told the whole set when it links.
    reconciler.gone("process_gone");
    assert_eq!(*reconciler.link_state().borrow(), None);
    s2c.disconnect("carol", SystemTime::now()).await.unwrap();
    assert_eq!(connect(&s2c, "carol").await, carol);
    segment.quiet().await;
    reconciler.replaced_by(Generation(2));
    segment.quiet().await;
    reconciler.linked(&Linked {
        peer_generation: Generation(2),
        peer_pid: 2,
    });
    assert_eq!(segment.next().await, listen);
    segment.quiet().await;

    // Replaced before the watch saw it gone: unlinked at the attach,
    // replayed at the link.
    reconciler.replaced_by(Generation(3));
    assert_eq!(*reconciler.link_state().borrow(), None);
    segment.quiet().await;
    reconciler.linked(&Linked {
        peer_generation: Generation(3),
        peer_pid: 3,
    });
    assert_eq!(segment.next().await, listen);
    assert_eq!(*reconciler.link_state().borrow(), Some(Generation(3)));
    segment.quiet().await;
}
