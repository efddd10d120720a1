//! Ring tests on heap memory: no OS calls, so they run under Miri too.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::heap::HeapRegion;

fn ring_in(region: &HeapRegion, slots: u32) -> (Producer, Consumer) {
    assert!(region.len() >= ring_bytes(slots));
    // SAFETY: (test) the region is aligned to 4096, zeroed, large enough
    // (asserted) and outlives the returned ends, which are the only ones.
    unsafe {
        let make = || RawRing::new(region.base(), slots);
        (Producer::new(make()), Consumer::new(make()))
    }
}

fn message(seq: u64) -> [u8; 16] {
    let mut m = [0; 16];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m[8..].copy_from_slice(&(!seq).to_le_bytes());
    m
}

fn seq_of(slot: &[u8; SLOT_BYTES]) -> u64 {
    let seq = u64::from_le_bytes(slot[..8].try_into().unwrap());
    assert_eq!(u64::from_le_bytes(slot[8..16].try_into().unwrap()), !seq);
    seq
}

#[test]
fn passes_a_million_messages_in_order_between_two_threads() {
    let total: u64 = if cfg!(miri) { 2_000 } else { 1_000_000 };
    let region = HeapRegion::zeroed(ring_bytes(1_024));
    let (mut producer, mut consumer) = ring_in(&region, 1_024);
    let deadline = Instant::now() + Duration::from_secs(120);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut seq = 0;
            while seq < total {
                match producer.try_push(&message(seq)) {
                    Ok(_) => seq += 1,
                    Err(PushError::Full) => {
                        assert!(Instant::now() < deadline, "consumer stalled");
                        std::thread::yield_now();
                    }
                    Err(PushError::Corrupt) => panic!("corrupt ring"),
                }
            }
        });
        let mut slot = [0; SLOT_BYTES];
        let mut expected = 0;
        while expected < total {
            if consumer.try_pop(&mut slot).unwrap() {
                assert_eq!(seq_of(&slot), expected);
                expected += 1;
            } else {
                assert!(Instant::now() < deadline, "producer stalled");
                std::thread::yield_now();
            }
        }
        assert!(!consumer.try_pop(&mut slot).unwrap());
    });
}

#[test]
fn refuses_a_push_into_a_full_ring_without_blocking() {
    let region = HeapRegion::zeroed(ring_bytes(4));
    let (mut producer, mut consumer) = ring_in(&region, 4);
    for seq in 0..4 {
        let _ = producer.try_push(&message(seq)).unwrap();
    }
    assert_eq!(producer.try_push(&message(4)), Err(PushError::Full));
    assert_eq!(producer.try_push(&message(4)), Err(PushError::Full));
    let mut slot = [0; SLOT_BYTES];
    assert!(consumer.try_pop(&mut slot).unwrap());
    assert_eq!(seq_of(&slot), 0);
    let _ = producer.try_push(&message(4)).unwrap();
    for seq in 1..=4 {
        assert!(consumer.try_pop(&mut slot).unwrap());
        assert_eq!(seq_of(&slot), seq);
    }
    assert!(!consumer.try_pop(&mut slot).unwrap());
}

#[test]
fn wraps_around_the_slots_many_times() {
    let region = HeapRegion::zeroed(ring_bytes(2));
    let (mut producer, mut consumer) = ring_in(&region, 2);
    let mut slot = [0; SLOT_BYTES];
    for seq in 0..1_000 {
        let _ = producer.try_push(&message(seq)).unwrap();
        assert!(consumer.try_pop(&mut slot).unwrap());
        assert_eq!(seq_of(&slot), seq);
    }
}

#[test]
fn wakes_only_an_armed_consumer_and_once_per_burst() {
    let region = HeapRegion::zeroed(ring_bytes(8));
    let (mut producer, mut consumer) = ring_in(&region, 8);
    assert_eq!(producer.try_push(&message(0)), Ok(MustWake(false)));
    let mut slot = [0; SLOT_BYTES];
    assert!(consumer.try_pop(&mut slot).unwrap());
    assert!(consumer.arm(), "empty ring: sleep");
    assert_eq!(producer.try_push(&message(1)), Ok(MustWake(true)));
    assert_eq!(producer.try_push(&message(2)), Ok(MustWake(false)));
    consumer.disarm();
    assert!(consumer.try_pop(&mut slot).unwrap());
}

#[test]
fn arming_a_ring_with_unread_messages_says_stay_awake() {
    let region = HeapRegion::zeroed(ring_bytes(8));
    let (mut producer, mut consumer) = ring_in(&region, 8);
    let _ = producer.try_push(&message(0)).unwrap();
    assert!(!consumer.arm());
    // `armed` was cleared: the next push does not ring.
    assert_eq!(producer.try_push(&message(1)), Ok(MustWake(false)));
}

#[test]
fn a_restarted_producer_resumes_at_the_published_tail() {
    let region = HeapRegion::zeroed(ring_bytes(8));
    let (mut producer, mut consumer) = ring_in(&region, 8);
    let _ = producer.try_push(&message(0)).unwrap();
    let _ = producer.try_push(&message(1)).unwrap();
    // SAFETY: (test) same region; the old producer is not used again.
    let mut producer = unsafe { Producer::new(RawRing::new(region.base(), 8)) };
    let _ = producer.try_push(&message(2)).unwrap();
    let mut slot = [0; SLOT_BYTES];
    for seq in 0..3 {
        assert!(consumer.try_pop(&mut slot).unwrap());
        assert_eq!(seq_of(&slot), seq);
    }
}

#[test]
fn reset_drops_unread_messages() {
    let region = HeapRegion::zeroed(ring_bytes(8));
    let (mut producer, _old_consumer) = ring_in(&region, 8);
    let _ = producer.try_push(&message(0)).unwrap();
    // SAFETY: (test) same region.
    let ring = unsafe { RawRing::new(region.base(), 8) };
    assert_eq!(ring.fill(), 1);
    ring.reset_unshared();
    assert_eq!(ring.fill(), 0);
    // SAFETY: (test) the first consumer is not used again.
    let mut consumer = unsafe { Consumer::new(ring) };
    assert!(!consumer.try_pop(&mut [0; SLOT_BYTES]).unwrap());
}

#[test]
fn indices_no_producer_could_write_are_reported_not_followed() {
    let region = HeapRegion::zeroed(ring_bytes(4));
    let (mut producer, mut consumer) = ring_in(&region, 4);
    // A peer stores a tail far beyond the head.
    // SAFETY: (test) the tail is the first u64 of the control block.
    unsafe { region.base().cast::<u64>().write(1_000) };
    assert_eq!(consumer.try_pop(&mut [0; SLOT_BYTES]), Err(Corrupt));
    // The producer sees a head it never released.
    // SAFETY: (test) the head is the u64 at offset 128.
    unsafe { region.base().add(128).cast::<u64>().write(5_000) };
    // Its cached view says "room"; once full by its count it reloads.
    for seq in 0..4 {
        let _ = producer.try_push(&message(seq));
    }
    assert_eq!(producer.try_push(&message(9)), Err(PushError::Corrupt));
}

#[derive(Debug, Clone)]
enum Op {
    Push,
    Pop,
    Arm,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]
    #[test]
    fn random_operations_match_a_queue(ops in proptest::collection::vec(
        prop_oneof![3 => Just(Op::Push), 3 => Just(Op::Pop), 1 => Just(Op::Arm)], 0..200)
    ) {
        let region = HeapRegion::zeroed(ring_bytes(4));
        let (mut producer, mut consumer) = ring_in(&region, 4);
        let mut model = VecDeque::new();
        let mut armed = false;
        let mut next = 0;
        for op in ops {
            match op {
                Op::Push => match producer.try_push(&message(next)) {
                    Ok(MustWake(wake)) => {
                        prop_assert!(model.len() < 4);
                        prop_assert_eq!(wake, armed);
                        armed = false;
                        model.push_back(next);
                        next += 1;
                    }
                    Err(e) => {
                        prop_assert_eq!(e, PushError::Full);
                        prop_assert_eq!(model.len(), 4);
                    }
                },
                Op::Pop => {
                    let mut slot = [0; SLOT_BYTES];
                    let got = consumer.try_pop(&mut slot).unwrap();
                    match model.pop_front() {
                        Some(seq) => {
                            prop_assert!(got);
                            prop_assert_eq!(seq_of(&slot), seq);
                        }
                        None => prop_assert!(!got),
                    }
                }
                Op::Arm => {
                    let sleep = consumer.arm();
                    prop_assert_eq!(sleep, model.is_empty());
                    armed = sleep;
                }
            }
        }
    }
}
