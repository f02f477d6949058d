//! A queue's side in one process: the backlog of items that did not fit in the ring, and
//! the feeder thread that writes them as readers make room.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::ring::{Ring, Wait};

/// This process's side of a queue: the backlog the feeder thread writes.
pub(super) struct Feed {
    pub(super) state: Mutex<FeedState>,
    idle: Condvar,
}

#[derive(Default)]
pub(super) struct FeedState {
    backlog: VecDeque<Vec<u8>>,
    feeding: bool,
    pub(super) closed: bool,
    pub(super) cancel_join: bool,
}

/// One queue in one process: shared by every clone of the handle there.
pub(super) struct Core {
    pub(super) ring: Arc<Ring>,
    pub(super) feed: Arc<Feed>,
}

impl Core {
    pub(super) fn new(ring: Ring) -> Core {
        Core {
            ring: Arc::new(ring),
            feed: Arc::new(Feed {
                state: Mutex::new(FeedState::default()),
                idle: Condvar::new(),
            }),
        }
    }

    /// Publishes an encoded item whose slot is taken: now if it fits and nothing of ours is
    /// waiting, else through the feeder.
    pub(super) fn publish(&self, item: Vec<u8>) {
        let mut st = self.feed.state.lock();
        if !st.feeding && self.ring.write(&item, Wait::Never) {
            return;
        }
        st.backlog.push_back(item);
        if !st.feeding {
            st.feeding = true;
            let (ring, feed) = (self.ring.clone(), self.feed.clone());
            let started = std::thread::Builder::new()
                .name("queue-feeder".into())
                .spawn(move || feeder(ring, feed));
            if started.is_err() {
                // No thread: write here, in order.
                let backlog = std::mem::take(&mut st.backlog);
                st.feeding = false;
                drop(st);
                for item in backlog {
                    self.ring.write(&item, Wait::Always);
                }
            }
        }
    }

    /// Waits until this process's backlog is written.
    pub(super) fn flush(&self) {
        let mut st = self.feed.state.lock();
        while st.feeding {
            self.feed.idle.wait(&mut st);
        }
    }
}

fn feeder(ring: Arc<Ring>, feed: Arc<Feed>) {
    loop {
        let item = {
            let mut st = feed.state.lock();
            match st.backlog.pop_front() {
                Some(item) => item,
                None => {
                    st.feeding = false;
                    feed.idle.notify_all();
                    return;
                }
            }
        };
        ring.write(&item, Wait::Always);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.feed.state.lock().cancel_join {
            return;
        }
        self.flush();
    }
}
