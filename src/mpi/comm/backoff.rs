//! [`Backoff`]: how an idle loop waits between two polls.

use std::time::{Duration, Instant};

/// How an idle loop waits between two polls: it spins at first (a reply is often only
/// microseconds away), then yields, then sleeps for a time that doubles up to `cap`. Any
/// progress resets it. So a busy rank answers within microseconds, and an idle one wakes
/// about once per `cap` (a cap of 1 ms costs about 1% of a core).
pub(crate) struct Backoff {
    last_progress: Instant,
    sleep: Duration,
    cap: Duration,
    /// Pauses since the clock was last read (it is read once per `CLOCK_EVERY` while
    /// spinning: a read costs about as much as a poll).
    unclocked: u32,
    /// Still in the spinning phase, as of the last reading of the clock.
    spinning: bool,
}

const SPIN_FOR: Duration = Duration::from_micros(20);
const YIELD_FOR: Duration = Duration::from_micros(300);
const FIRST_SLEEP: Duration = Duration::from_micros(20);
/// While spinning, the clock is read once per this many pauses.
const CLOCK_EVERY: u32 = 16;

impl Backoff {
    pub(crate) fn new(cap: Duration) -> Self {
        Backoff {
            last_progress: Instant::now(),
            sleep: FIRST_SLEEP,
            cap,
            unclocked: 0,
            spinning: true,
        }
    }

    /// Something happened: poll eagerly again.
    pub(crate) fn reset(&mut self) {
        self.last_progress = Instant::now();
        self.sleep = FIRST_SLEEP;
        self.unclocked = 0;
        self.spinning = true;
    }

    /// Spins or yields inline, or returns how long to sleep (the caller sleeps the way it
    /// can be woken early).
    pub(crate) fn pause(&mut self) -> Option<Duration> {
        if self.spinning && self.unclocked < CLOCK_EVERY {
            // One `pause` only (it takes up to ~140 cycles on recent x86): the poll that
            // follows is what notices a message. Four of them cost ~0.1 µs a round trip.
            self.unclocked += 1;
            std::hint::spin_loop();
            return None;
        }
        self.unclocked = 0;
        let idle = self.last_progress.elapsed();
        self.spinning = idle < SPIN_FOR;
        if self.spinning {
            std::hint::spin_loop();
            None
        } else if idle < YIELD_FOR {
            std::thread::yield_now();
            None
        } else {
            let d = self.sleep.min(self.cap);
            self.sleep = (self.sleep * 2).min(self.cap);
            Some(d)
        }
    }

    /// [`pause`](Self::pause), sleeping with `thread::sleep`.
    pub(crate) fn wait(&mut self) {
        if let Some(d) = self.pause() {
            std::thread::sleep(d);
        }
    }
}
