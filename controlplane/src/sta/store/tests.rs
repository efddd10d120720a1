//! The ticket table on a fake clock: `now` is an `Instant` the test moves.

use std::time::{Duration, Instant};

use gatehouse_wire::ticket::{StaTicket, TICKET_LEN, Ticket, TicketVersion};
use proptest::prelude::*;

use super::{COMPACT_SLACK, EXPIRED_GRACE, Sta, StaLimits};
use crate::sta::tests::{sample_data, seeded, sta_id};
use crate::sta::{StaError, TicketData, TicketKind};

struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Self(Instant::now())
    }

    fn at(&self, secs: f64) -> Instant {
        self.0 + Duration::from_secs_f64(secs)
    }
}

fn sta() -> Sta {
    Sta::new(sta_id("STA01"), StaLimits::default(), seeded(1))
}

fn small(max_tickets: usize) -> Sta {
    let limits = StaLimits {
        max_tickets,
        ..StaLimits::default()
    };
    Sta::new(sta_id("STA01"), limits, seeded(7))
}

fn data() -> TicketData {
    sample_data()
}

#[test]
fn issues_version_40_tickets_of_its_own_id_with_32_uppercase_alphanumerics() {
    let clock = Clock::new();
    let mut sta = sta();
    let issued = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    assert_eq!(issued.ticket.version, TicketVersion::V40);
    assert_eq!(issued.ticket.sta_id, sta_id("STA01"));
    assert_eq!(issued.lifetime, Duration::from_secs(100));
    let secret = issued.ticket.ticket.as_str();
    assert_eq!(secret.len(), TICKET_LEN);
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    );
    let text = issued.ticket.to_text();
    assert_eq!(StaTicket::decode(text.as_bytes()).unwrap(), issued.ticket);
}

#[test]
fn issued_tickets_differ() {
    let clock = Clock::new();
    let mut sta = sta();
    let a = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    let b = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    assert_ne!(a.ticket, b.ticket);
}

#[test]
fn redeems_single_use_ticket_once() {
    let clock = Clock::new();
    let mut sta = sta();
    let issued = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    let redeemed = sta.redeem(&issued.ticket, clock.at(1.0)).unwrap();
    assert_eq!(redeemed.data, data());
    assert_eq!(redeemed.kind, TicketKind::SingleUse);
    assert_eq!(
        sta.redeem(&issued.ticket, clock.at(2.0)),
        Err(StaError::Reused)
    );
    assert_eq!((sta.live(), sta.tombstones()), (0, 1));
}

#[test]
fn single_use_ticket_expires_at_100_seconds() {
    let clock = Clock::new();
    let mut sta = sta();
    let early = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    let late = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    assert!(sta.redeem(&early.ticket, clock.at(99.9)).is_ok());
    assert_eq!(
        sta.redeem(&late.ticket, clock.at(100.0)),
        Err(StaError::Expired)
    );
    // Once forgotten, it is unknown.
    assert_eq!(
        sta.redeem(&late.ticket, clock.at(100.0)),
        Err(StaError::UnknownTicket)
    );
}

#[test]
fn refreshable_ticket_lives_500_seconds_and_survives_redeem() {
    let clock = Clock::new();
    let mut sta = sta();
    let issued = sta
        .issue(data(), TicketKind::Refreshable, clock.at(0.0))
        .unwrap();
    assert_eq!(issued.lifetime, Duration::from_secs(500));
    for at in [1.0, 2.0, 499.9] {
        let redeemed = sta.redeem(&issued.ticket, clock.at(at)).unwrap();
        assert_eq!(redeemed.kind, TicketKind::Refreshable);
        assert_eq!(redeemed.data, data());
    }
    assert_eq!(
        sta.redeem(&issued.ticket, clock.at(500.0)),
        Err(StaError::Expired)
    );
}

#[test]
fn refresh_kills_the_old_ticket_and_starts_a_fresh_lifetime() {
    let clock = Clock::new();
    let mut sta = sta();
    let old = sta
        .issue(data(), TicketKind::Refreshable, clock.at(0.0))
        .unwrap();
    let new = sta.refresh(&old.ticket, clock.at(400.0)).unwrap();
    assert_ne!(new.ticket, old.ticket);
    assert_eq!(new.lifetime, Duration::from_secs(500));
    assert_eq!(
        sta.redeem(&old.ticket, clock.at(401.0)),
        Err(StaError::Reused)
    );
    assert_eq!(
        sta.refresh(&old.ticket, clock.at(401.0)),
        Err(StaError::Reused)
    );
    // 899.9 s is past the old expiry (500 s) but inside the new one (900 s).
    assert_eq!(
        sta.redeem(&new.ticket, clock.at(899.9)).unwrap().data,
        data()
    );
    assert_eq!(
        sta.redeem(&new.ticket, clock.at(900.0)),
        Err(StaError::Expired)
    );
    assert_eq!(sta.live(), 0);
}

#[test]
fn refresh_of_a_single_use_ticket_is_refused_and_leaves_it_usable() {
    let clock = Clock::new();
    let mut sta = sta();
    let issued = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    assert_eq!(
        sta.refresh(&issued.ticket, clock.at(1.0)),
        Err(StaError::NotRefreshable)
    );
    assert!(sta.redeem(&issued.ticket, clock.at(2.0)).is_ok());
}

#[test]
fn revoked_tickets_are_refused() {
    let clock = Clock::new();
    let mut sta = sta();
    let reconnect = sta
        .issue(data(), TicketKind::Refreshable, clock.at(0.0))
        .unwrap();
    sta.revoke(&reconnect.ticket, clock.at(1.0)).unwrap();
    assert_eq!(
        sta.redeem(&reconnect.ticket, clock.at(2.0)),
        Err(StaError::Revoked)
    );
    assert_eq!(
        sta.refresh(&reconnect.ticket, clock.at(2.0)),
        Err(StaError::Revoked)
    );
    assert_eq!(
        sta.revoke(&reconnect.ticket, clock.at(2.0)),
        Err(StaError::Revoked)
    );
    assert_eq!(sta.live(), 0);
}

#[test]
fn ticket_of_another_sta_is_wrong_authority() {
    let clock = Clock::new();
    let mut sta = sta();
    let issued = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    let foreign = StaTicket {
        sta_id: sta_id("STA02"),
        ..issued.ticket.clone()
    };
    assert_eq!(
        sta.redeem(&foreign, clock.at(1.0)),
        Err(StaError::WrongAuthority)
    );
    assert_eq!(
        sta.refresh(&foreign, clock.at(1.0)),
        Err(StaError::WrongAuthority)
    );
    assert_eq!(
        sta.revoke(&foreign, clock.at(1.0)),
        Err(StaError::WrongAuthority)
    );
    // The real one is untouched.
    assert!(sta.redeem(&issued.ticket, clock.at(1.0)).is_ok());
}

#[test]
fn never_issued_ticket_is_unknown() {
    let clock = Clock::new();
    let mut sta = sta();
    let guess = StaTicket {
        version: TicketVersion::V40,
        sta_id: sta_id("STA01"),
        ticket: Ticket::decode(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap(),
    };
    assert_eq!(
        sta.redeem(&guess, clock.at(0.0)),
        Err(StaError::UnknownTicket)
    );
}

#[test]
fn full_table_refuses_until_tickets_expire() {
    let clock = Clock::new();
    let mut sta = small(3);
    for _ in 0..3 {
        sta.issue(data(), TicketKind::SingleUse, clock.at(0.0))
            .unwrap();
    }
    assert_eq!(
        sta.issue(data(), TicketKind::SingleUse, clock.at(50.0)),
        Err(StaError::Full)
    );
    assert!(
        sta.issue(data(), TicketKind::SingleUse, clock.at(100.0))
            .is_ok()
    );
    assert_eq!(sta.live(), 1);
}

#[test]
fn sweep_forgets_tombstones_and_keeps_expired_tickets_as_expired_for_the_grace() {
    let clock = Clock::new();
    let mut sta = sta();
    let spent = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    let late = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    sta.issue(data(), TicketKind::Refreshable, clock.at(0.0))
        .unwrap();
    sta.redeem(&spent.ticket, clock.at(1.0)).unwrap();
    assert_eq!(sta.sweep(clock.at(99.0)), 0);
    // The spent ticket's tombstone leaves; the unredeemed one becomes an
    // `Expired` tombstone.
    assert_eq!(sta.sweep(clock.at(100.0)), 1);
    assert_eq!((sta.live(), sta.tombstones()), (1, 1));
    assert_eq!(
        sta.redeem(&late.ticket, clock.at(150.0)),
        Err(StaError::Expired)
    );
    let grace = EXPIRED_GRACE.as_secs_f64();
    assert_eq!(sta.sweep(clock.at(100.0 + grace - 1.0)), 0);
    assert_eq!(sta.sweep(clock.at(100.0 + grace)), 1);
    assert_eq!((sta.live(), sta.tombstones()), (1, 0));
    assert_eq!(
        sta.redeem(&late.ticket, clock.at(100.0 + grace)),
        Err(StaError::UnknownTicket)
    );
    assert_eq!(sta.sweep(clock.at(500.0)), 0);
    assert_eq!((sta.live(), sta.tombstones()), (0, 1));
    assert_eq!(sta.sweep(clock.at(500.0 + grace)), 1);
    assert_eq!((sta.live(), sta.tombstones(), sta.queued()), (0, 0, 0));
    assert_eq!(
        sta.redeem(&spent.ticket, clock.at(500.0 + grace)),
        Err(StaError::UnknownTicket)
    );
}

#[test]
fn memory_stays_bounded_when_issuing_ten_times_the_limit_over_time() {
    let clock = Clock::new();
    let max = 50;
    let mut sta = small(max);
    // One ticket every 2.5 s: after 100 s the first ones expire, so issuing
    // 10 × max never hits the bound, and the table never exceeds it.
    for i in 0..10 * max {
        let issued = sta
            .issue(data(), TicketKind::SingleUse, clock.at(i as f64 * 2.5))
            .unwrap();
        if i % 2 == 0 {
            sta.redeem(&issued.ticket, clock.at(i as f64 * 2.5))
                .unwrap();
        }
        assert!(sta.live() <= max);
        assert!(sta.tombstones() <= max);
        assert!(sta.queued() <= 2 * max, "queued {}", sta.queued());
    }
}

#[test]
fn stale_queue_entries_are_compacted_when_tombstones_overflow() {
    let clock = Clock::new();
    let max = 10;
    let mut sta = small(max);
    // All at one instant: nothing expires, tombstones fill up and further
    // spent tickets are forgotten, leaving stale queue entries behind.
    for _ in 0..5_000 {
        let issued = sta
            .issue(data(), TicketKind::SingleUse, clock.at(0.0))
            .unwrap();
        sta.redeem(&issued.ticket, clock.at(0.0)).unwrap();
        assert!(sta.live() <= max && sta.tombstones() <= max);
        assert!(
            sta.queued() <= 4 * max + COMPACT_SLACK + 1,
            "queued {}",
            sta.queued()
        );
    }
    assert_eq!(sta.tombstones(), max);
}

#[test]
fn time_going_backwards_is_taken_as_the_latest_time_seen() {
    let clock = Clock::new();
    let mut sta = sta();
    let issued = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    sta.sweep(clock.at(200.0));
    assert_eq!(
        sta.redeem(&issued.ticket, clock.at(1.0)),
        Err(StaError::Expired)
    );
}

#[test]
fn broken_random_source_issues_nothing() {
    let clock = Clock::new();
    let mut sta = Sta::new(sta_id("STA01"), StaLimits::default(), |buf: &mut [u8]| {
        buf.fill(0xFF);
    });
    assert_eq!(
        sta.issue(data(), TicketKind::SingleUse, clock.at(0.0)),
        Err(StaError::Random)
    );
    assert_eq!(sta.live(), 0);
}

#[test]
fn repeating_random_source_is_refused() {
    let clock = Clock::new();
    let mut sta = Sta::new(sta_id("STA01"), StaLimits::default(), |buf: &mut [u8]| {
        buf.fill(7);
    });
    assert!(
        sta.issue(data(), TicketKind::SingleUse, clock.at(0.0))
            .is_ok()
    );
    assert_eq!(
        sta.issue(data(), TicketKind::SingleUse, clock.at(0.0)),
        Err(StaError::Random)
    );
}

#[test]
fn oversized_data_is_refused() {
    let clock = Clock::new();
    let mut sta = sta();
    let mut big = data();
    big.values.insert("Big".to_owned(), "x".repeat(5_000));
    assert!(matches!(
        sta.issue(big, TicketKind::SingleUse, clock.at(0.0)),
        Err(StaError::DataTooLarge { .. })
    ));
}

#[test]
fn lifetimes_are_clamped() {
    let limits = StaLimits {
        ticket_ttl: Duration::ZERO,
        refreshable_ttl: Duration::from_secs(10_000_000),
        max_tickets: 0,
    };
    let sta = Sta::new(sta_id("STA01"), limits, seeded(3));
    assert_eq!(sta.limits().ticket_ttl, super::MIN_TTL);
    assert_eq!(sta.limits().refreshable_ttl, super::MAX_TTL);
    assert_eq!(sta.limits().max_tickets, 1);
}

#[test]
fn debug_output_holds_no_secret() {
    let clock = Clock::new();
    let mut sta = sta();
    let issued = sta
        .issue(data(), TicketKind::SingleUse, clock.at(0.0))
        .unwrap();
    let debug = format!("{sta:?}");
    assert!(!debug.contains(issued.ticket.ticket.as_str()));
    assert!(debug.contains("STA01"));
}

#[derive(Debug, Clone)]
enum Op {
    Issue(bool),
    Redeem(usize),
    Refresh(usize),
    Revoke(usize),
    Advance(u16),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<bool>().prop_map(Op::Issue),
        any::<usize>().prop_map(Op::Redeem),
        any::<usize>().prop_map(Op::Refresh),
        any::<usize>().prop_map(Op::Revoke),
        (0_u16..200).prop_map(Op::Advance),
        Just(Op::Sweep),
    ]
}

proptest! {
    /// Under any sequence of operations: the bounds hold, a single-use
    /// ticket is redeemed at most once, and nothing is redeemed at or past
    /// its expiry.
    #[test]
    fn invariants_hold_under_random_operations(ops in proptest::collection::vec(op(), 1..200)) {
        let clock = Clock::new();
        let max = 8;
        let mut sta = small(max);
        let mut now = 0.0;
        let mut issued: Vec<(StaTicket, TicketKind, f64, bool)> = Vec::new();
        for op in ops {
            match op {
                Op::Issue(refreshable) => {
                    let kind = if refreshable { TicketKind::Refreshable } else { TicketKind::SingleUse };
                    match sta.issue(data(), kind, clock.at(now)) {
                        Ok(ticket) => {
                            let ttl = ticket.lifetime.as_secs_f64();
                            issued.push((ticket.ticket, kind, now + ttl, false));
                        }
                        Err(error) => prop_assert_eq!(error, StaError::Full),
                    }
                }
                Op::Redeem(pick) if !issued.is_empty() => {
                    let at = pick % issued.len();
                    let (ticket, kind, expires, redeemed) = issued[at].clone();
                    if let Ok(answer) = sta.redeem(&ticket, clock.at(now)) {
                        prop_assert!(now < expires);
                        prop_assert_eq!(answer.kind, kind);
                        if kind == TicketKind::SingleUse {
                            prop_assert!(!redeemed, "single-use ticket redeemed twice");
                            issued[at].3 = true;
                        }
                    }
                }
                Op::Refresh(pick) if !issued.is_empty() => {
                    let at = pick % issued.len();
                    let (ticket, kind, expires, _) = issued[at].clone();
                    if let Ok(new) = sta.refresh(&ticket, clock.at(now)) {
                        prop_assert!(now < expires);
                        prop_assert_eq!(kind, TicketKind::Refreshable);
                        issued[at].2 = f64::NEG_INFINITY; // the old one is dead
                        issued.push((new.ticket, kind, now + new.lifetime.as_secs_f64(), false));
                    }
                }
                Op::Revoke(pick) if !issued.is_empty() => {
                    let at = pick % issued.len();
                    let ticket = issued[at].0.clone();
                    if sta.revoke(&ticket, clock.at(now)).is_ok() {
                        issued[at].2 = f64::NEG_INFINITY;
                        issued[at].3 = true;
                    }
                }
                Op::Advance(secs) => now += f64::from(secs),
                Op::Sweep => {
                    sta.sweep(clock.at(now));
                }
                Op::Redeem(_) | Op::Refresh(_) | Op::Revoke(_) => {}
            }
            prop_assert!(sta.live() <= max);
            prop_assert!(sta.tombstones() <= max);
            prop_assert!(sta.queued() <= 4 * max + COMPACT_SLACK + 1);
        }
    }
}
