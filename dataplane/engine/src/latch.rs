//! A core-local one-shot latch: fire once, wake every waiter.
//!
//! The drain deadline uses it to cut every open session of a core at once.
//! Waiters park their wakers in a slot table that reuses freed slots, so a
//! core that serves many sessions over time does not grow it without bound;
//! re-polling a waiter whose waker did not change allocates nothing.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Fires once; every [`Latch::wait`] future then completes.
#[derive(Debug, Default)]
pub(crate) struct Latch {
    fired: Cell<bool>,
    slots: RefCell<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Latch {
    /// Whether [`Latch::fire`] has been called.
    pub(crate) fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Fires the latch and wakes every waiter. Later calls do nothing.
    pub(crate) fn fire(&self) {
        if self.fired.replace(true) {
            return;
        }
        let wakers = std::mem::take(&mut self.slots.borrow_mut().wakers);
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    /// A future that completes once the latch has fired.
    pub(crate) fn wait(&self) -> Wait<'_> {
        Wait {
            latch: self,
            slot: None,
        }
    }
}

/// The future of [`Latch::wait`].
#[derive(Debug)]
pub(crate) struct Wait<'a> {
    latch: &'a Latch,
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let latch = self.latch;
        if latch.fired.get() {
            return Poll::Ready(());
        }
        let mut slots = latch.slots.borrow_mut();
        match self.slot {
            Some(index) => match slots.wakers.get_mut(index) {
                Some(Some(waker)) if waker.will_wake(cx.waker()) => {}
                Some(entry) => *entry = Some(cx.waker().clone()),
                None => {}
            },
            None => {
                let index = match slots.free.pop() {
                    Some(index) => {
                        if let Some(entry) = slots.wakers.get_mut(index) {
                            *entry = Some(cx.waker().clone());
                        }
                        index
                    }
                    None => {
                        slots.wakers.push(Some(cx.waker().clone()));
                        slots.wakers.len() - 1
                    }
                };
                drop(slots);
                self.slot = Some(index);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let Some(index) = self.slot else { return };
        if self.latch.fired.get() {
            return;
        }
        let mut slots = self.latch.slots.borrow_mut();
        if let Some(entry) = slots.wakers.get_mut(index) {
            *entry = None;
            slots.free.push(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn fire_wakes_every_waiter_and_completes_them() {
        let latch = Latch::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut a = Box::pin(latch.wait());
        let mut b = Box::pin(latch.wait());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        latch.fire();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(b.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn dropped_waiters_free_their_slot_for_reuse() {
        let latch = Latch::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count);
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut wait = Box::pin(latch.wait());
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(latch.slots.borrow().wakers.len(), 1);
    }
}
