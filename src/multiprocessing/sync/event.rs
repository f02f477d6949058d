//! [`Event`]: a flag shared by processes, and waits for it to be set.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::multiprocessing::shm::{
    GuardedFlag, Handle, RawCond, RawMutex, Reentrant, deadline_of, shared_header,
};

shared_header! {
    pub(crate) struct EventHeader: KIND = 3;
    {
        m: RawMutex,
        changed: RawCond,
        flag: GuardedFlag,
    }
}

/// Python's `multiprocessing.Event`: a flag that processes and threads wait for.
///
/// ```
/// use concurrent_futures::multiprocessing::Event;
/// use std::time::Duration;
/// let e = Event::new();
/// assert!(!e.wait_timeout(Duration::from_millis(10))); // not set: times out
/// e.set();
/// assert!(e.is_set());
/// e.wait(); // returns at once
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    shared: Handle<EventHeader>,
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Event {
    /// A new event, not set.
    ///
    /// ```
    /// assert!(!concurrent_futures::multiprocessing::Event::new().is_set());
    /// ```
    pub fn new() -> Event {
        Event {
            shared: Handle::new(0, |h: &EventHeader, init| {
                h.m.init(init, Reentrant::No);
                h.changed.init(init);
            }),
        }
    }

    fn header(&self) -> &EventHeader {
        self.shared.get()
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// ```
    /// let e = concurrent_futures::multiprocessing::Event::new();
    /// e.set();
    /// assert!(e.is_set());
    /// ```
    pub fn set(&self) {
        let h = self.header();
        // The wake-up is made once the mutex is released.
        let _wakeup = h.m.with(|held| {
            h.flag.set(held, true);
            h.changed.notify_later(u32::MAX)
        });
    }

    /// Clears the flag.
    ///
    /// ```
    /// let e = concurrent_futures::multiprocessing::Event::new();
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// ```
    pub fn clear(&self) {
        let h = self.header();
        h.m.with(|held| h.flag.set(held, false));
    }

    /// Whether the flag is set.
    ///
    /// ```
    /// assert!(!concurrent_futures::multiprocessing::Event::new().is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        let h = self.header();
        h.m.with(|held| h.flag.get(held))
    }

    /// Waits until the flag is set.
    ///
    /// ```
    /// let e = concurrent_futures::multiprocessing::Event::new();
    /// e.set();
    /// e.wait();
    /// ```
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the flag; returns whether it is set. Python's
    /// `wait(timeout)`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let e = concurrent_futures::multiprocessing::Event::new();
    /// assert!(!e.wait_timeout(Duration::from_millis(5)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(deadline_of(timeout)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let h = self.header();
        h.m.with(|held| {
            loop {
                if h.flag.get(held) {
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                h.changed.wait(&h.m, deadline);
            }
        })
    }
}
