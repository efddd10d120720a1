//! User flow: a fleet with several STAs. A ticket issued by a second
//! gatehouse (STA ID `STA02`, acting as a remote STA) is redeemed through
//! the first gateway, which finds `STA02` in its `[sta.remote]` map and asks
//! it over HTTP; the launch reaches the worker over TLS. The remote STA
//! consumes the ticket (a second use is refused as reused, which only the
//! issuing STA can know), and with the remote STA gone a ticket naming it
//! gets `01` and a `deny` with `sta_unreachable`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use gatehouse_tests::gatehouse::{Gatehouse, count};
use gatehouse_tests::socks::{self, REPLY_GENERAL_FAILURE, REPLY_NOT_ALLOWED, REPLY_SUCCEEDED};
use gatehouse_tests::vda_sim::VdaSim;

#[test]
fn a_ticket_from_a_remote_sta_is_redeemed_through_the_sta_id_map() {
    let sim = VdaSim::start();
    let remote = Gatehouse::start("[sta]\nid = \"STA02\"\n");
    let mut gateway =
        Gatehouse::start(&format!("[sta.remote]\nSTA02 = \"{}\"\n", remote.sta_url()));
    let tls = gateway.tls_client();

    let ticket = remote.issue(sim.ica());
    assert!(ticket.starts_with(";40;STA02;"), "{ticket}");
    let mut stream = socks::connect_tls(gateway.gateway(), &tls);
    assert_eq!(socks::launch(&mut stream, &ticket), REPLY_SUCCEEDED);
    socks::expect_detect_and_echo(&mut stream, b"hello via the remote sta");
    let worker = sim.ica().to_string();
    let redeemed = gateway.wait_for_event("ticket_redeemed", &[("worker", &worker)]);
    assert!(
        redeemed
            .field("ticket")
            .is_some_and(|masked| masked.starts_with(";40;STA02;")),
        "{}",
        redeemed.json
    );
    drop(stream);

    // The remote STA spent the ticket: the second use is refused as reused.
    let mut again = socks::connect_tls(gateway.gateway(), &tls);
    assert_eq!(socks::launch(&mut again, &ticket), REPLY_NOT_ALLOWED);
    socks::expect_closed(&mut again);
    gateway.wait_for_event("deny", &[("reason", "reused_ticket")]);

    // Without the remote STA, a ticket naming it cannot be checked.
    let orphan = remote.issue(sim.ica());
    let remote_events = remote.stop();
    assert_eq!(
        count(&remote_events, "ticket_redeemed", &[]),
        0,
        "the remote STA only answered over HTTP; the launch went through the gateway"
    );
    let mut stream = socks::connect_tls(gateway.gateway(), &tls);
    assert_eq!(socks::launch(&mut stream, &orphan), REPLY_GENERAL_FAILURE);
    socks::expect_closed(&mut stream);
    gateway.wait_for_event(
        "deny",
        &[("reason", "sta_unreachable"), ("fault", "control_plane")],
    );

    let events = gateway.stop();
    assert_eq!(count(&events, "ticket_redeemed", &[]), 1);
    assert_eq!(count(&events, "deny", &[]), 2);
    assert_eq!(sim.stop().code(), Some(0));
}
