//! [`Queue`], [`JoinableQueue`] and [`SimpleQueue`]: FIFO queues shared by processes.
//!
//! # How a queue works
//!
//! The queue is a ring of bytes in shared memory. An item is encoded (serde) and written as
//! one or more records (`len: u32, flags: u32, bytes`); a record is published only when it
//! is whole, and an item larger than a quarter of the ring is streamed as several records
//! (`FIRST` … `LAST`). Writers take `wlock` for a whole item and readers `rlock`, so the
//! records of two items never interleave; the ring's indexes and counters are under `m`.
//!
//! As in Python, `put` never waits for room in the ring: when the item does not fit now (or
//! earlier items of this process are still waiting), it goes to this process's backlog,
//! and a feeder thread (started on demand, gone when the backlog is empty) writes it as
//! readers make room. The last handle of a queue in a process waits for its backlog to be
//! written when it drops (Python's `join_thread` at exit), unless
//! [`Queue::cancel_join_thread`] was called. A bounded queue (`maxsize > 0`) counts items,
//! and `put` waits (or fails with `Full`) while `maxsize` items are in the queue.
//!
//! A writer that dies in the middle of an item leaves a partial item. Every item starts with
//! a `FIRST` record, so a reader that meets one while an item is incomplete drops the
//! partial item; and a reader waiting for the rest of an item checks every 100 ms whether
//! its writer is still alive, so it never waits forever. A reader that dies in the middle of
//! an item leaves the rest of it, which the next reader skips (up to the next `FIRST` or the
//! item's `LAST`).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{GetError, PutError, TaskDoneTooManyTimes};
use super::shm::{
    Guarded, GuardedFlag, Held, Layout, Locked, RawCond, RawMutex, Reentrant, Shared, Unlock,
    Wakeup, deadline_of,
};
use crate::remote::codec as protocol;

const FIRST: u32 = 1;
const LAST: u32 = 2;
const RECORD: usize = 8;
/// The default size of the ring.
const DEFAULT_BUFFER: usize = 1 << 20;
const MIN_BUFFER: usize = 4096;
/// How often a reader waiting for the rest of an item checks that its writer lives.
const WRITER_CHECK: Duration = Duration::from_millis(100);

#[repr(C)]
pub(crate) struct QueueHeader {
    m: RawMutex,
    /// Signalled when a record is published.
    readable: RawCond,
    /// Signalled when bytes or item slots are freed.
    writable: RawCond,
    /// Signalled when `unfinished` drops to zero.
    all_done: RawCond,
    /// Held by a writer for a whole item.
    wlock: RawMutex,
    /// Held by a reader for a whole item.
    rlock: RawMutex,
    maxsize: Guarded<u64>,
    /// Items put (slot taken) and not yet taken out.
    count: Guarded<u64>,
    /// Items put and not yet marked done (`JoinableQueue`).
    unfinished: Guarded<u64>,
    /// Byte positions (ever-growing; modulo the ring's size in it).
    head: Guarded<u64>,
    tail: Guarded<u64>,
    /// A reader took an item's first record and not its last (it may have died).
    reader_open: GuardedFlag,
}

// SAFETY: robust mutexes, condition variables, and plain values guarded by `m`; all-zero is
// an empty queue; the ring (the tail of the region) is only accessed under `m`.
unsafe impl Layout for QueueHeader {
    const KIND: u32 = 7;
}

/// The shared part: the region and the ring operations.
struct Ring {
    shared: Shared<QueueHeader>,
    cap: usize,
}

/// How a writer treats a full ring.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Write the whole item now or nothing.
    Never,
    /// Wait for room as long as it takes.
    Always,
}

impl Ring {
    fn new(maxsize: usize, buffer: usize) -> Ring {
        let cap = buffer.max(MIN_BUFFER);
        let shared = Shared::new(cap, |h: &QueueHeader, init| {
            h.m.init(init, Reentrant::No);
            h.readable.init(init);
            h.writable.init(init);
            h.all_done.init(init);
            h.wlock.init(init, Reentrant::No);
            h.rlock.init(init, Reentrant::No);
            h.m.with(|held| h.maxsize.set(held, maxsize as u64));
        });
        Ring { shared, cap }
    }

    fn h(&self) -> &QueueHeader {
        self.shared.get()
    }

    /// Bytes in the ring. Bounded by its size whatever the shared indexes say, so that a
    /// corrupted header cannot send a copy outside the ring.
    fn used(&self, held: &Held<'_>) -> usize {
        let h = self.h();
        (h.tail.get(held).wrapping_sub(h.head.get(held))).min(self.cap as u64) as usize
    }

    fn fragment(&self) -> usize {
        self.cap / 4 - RECORD
    }

    /// Bytes the records of an item of `len` bytes take.
    fn footprint(&self, len: usize) -> usize {
        let frags = len.div_ceil(self.fragment()).max(1);
        len + frags * RECORD
    }

    /// Copies `bytes` into the ring at byte position `pos` (not published).
    fn put_bytes(&self, held: &Held<'_>, pos: u64, bytes: &[u8]) {
        let at = (pos % self.cap as u64) as usize;
        let first = bytes.len().min(self.cap - at);
        self.shared.write_tail(held, at, &bytes[..first]);
        self.shared.write_tail(held, 0, &bytes[first..]);
    }

    /// Copies from the ring at byte position `pos` into `out` (not consumed).
    fn take_bytes(&self, held: &Held<'_>, pos: u64, out: &mut [u8]) {
        let at = (pos % self.cap as u64) as usize;
        let first = out.len().min(self.cap - at);
        let (a, b) = out.split_at_mut(first);
        self.shared.read_tail(held, at, a);
        self.shared.read_tail(held, 0, b);
    }

    /// Writes a record and publishes it with one store of `tail`: a writer killed in the
    /// middle of the copy publishes nothing.
    fn put_record(&self, held: &Held<'_>, flags: u32, bytes: &[u8]) -> Wakeup<'_> {
        let h = self.h();
        let mut head = [0u8; RECORD];
        head[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(&flags.to_le_bytes());
        let tail = h.tail.get(held);
        self.put_bytes(held, tail, &head);
        self.put_bytes(held, tail + RECORD as u64, bytes);
        h.tail.set(held, tail + (RECORD + bytes.len()) as u64);
        h.readable.notify_later(u32::MAX)
    }

    /// Takes the next record, which the caller knows is there, consuming it with one store
    /// of `head`: a reader killed in the middle of the copy leaves it in the ring.
    fn take_record(&self, held: &Held<'_>) -> (u32, Vec<u8>, Wakeup<'_>) {
        let h = self.h();
        let mut rec = [0u8; RECORD];
        let pos = h.head.get(held);
        self.take_bytes(held, pos, &mut rec);
        let len = u32::from_le_bytes(rec[..4].try_into().unwrap_or_default()) as usize;
        let flags = u32::from_le_bytes(rec[4..].try_into().unwrap_or_default());
        // A length read back from shared memory: never beyond what the ring holds.
        let len = len.min(self.used(held).saturating_sub(RECORD));
        let mut bytes = vec![0u8; len];
        self.take_bytes(held, pos + RECORD as u64, &mut bytes);
        h.head.set(held, pos + (RECORD + len) as u64);
        (flags, bytes, h.writable.notify_later(u32::MAX))
    }

    fn wait(&self, cond: &RawCond, deadline: Option<Instant>) {
        cond.wait(&self.h().m, deadline);
    }

    /// Takes an item slot (bounded queues); false if `deadline` passed first.
    fn reserve(&self, deadline: Option<Instant>) -> bool {
        let h = self.h();
        h.m.with(|held| {
            loop {
                let max = h.maxsize.get(held);
                let count = h.count.get(held);
                if max == 0 || count < max {
                    h.count.set(held, count + 1);
                    h.unfinished.set(held, h.unfinished.get(held) + 1);
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                self.wait(&h.writable, deadline);
            }
        })
    }

    /// Gives back a slot taken for an item that was not written.
    fn unreserve(&self) {
        let h = self.h();
        h.m.with(|held| {
            h.count.set(held, h.count.get(held).saturating_sub(1));
            h.unfinished
                .set(held, h.unfinished.get(held).saturating_sub(1));
            h.writable.notify_all();
        });
    }

    /// Writes one item's records. With `Wait::Never`, writes all of it or nothing.
    fn write(&self, item: &[u8], wait: Wait) -> bool {
        let h = self.h();
        let got = match wait {
            Wait::Never => h.wlock.try_lock(),
            Wait::Always => h.wlock.lock(None),
        };
        match got {
            Locked::No => return false,
            Locked::OwnerDied => h.wlock.consistent(),
            Locked::Yes => {}
        }
        let _unlock = Unlock(&h.wlock);
        let chunks: Vec<&[u8]> = if item.is_empty() {
            vec![item]
        } else {
            item.chunks(self.fragment()).collect()
        };
        // Readers are woken once `m` is released (when `_wakeup` drops).
        let (written, _wakeup) = h.m.with(|held| {
            let mut wakeup = Wakeup::default();
            if wait == Wait::Never && self.cap - self.used(held) < self.footprint(item.len()) {
                return (false, wakeup);
            }
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.iter().enumerate() {
                while self.cap - self.used(held) < RECORD + chunk.len() {
                    wakeup.wake();
                    self.wait(&h.writable, None);
                }
                let flags = if i == 0 { FIRST } else { 0 } | if i == last { LAST } else { 0 };
                wakeup.add(self.put_record(held, flags, chunk));
            }
            (true, wakeup)
        });
        written
    }

    /// Reads one item; `None` if none started arriving before `deadline`. Once an item's
    /// first record is read, waits for the rest (its writer is alive, or is found dead).
    fn read(&self, deadline: Option<Instant>) -> Option<Vec<u8>> {
        let h = self.h();
        match h.rlock.lock(deadline) {
            Locked::No => return None,
            Locked::OwnerDied => h.rlock.consistent(),
            Locked::Yes => {}
        }
        let _unlock = Unlock(&h.rlock);
        // Writers are woken once `m` is released (when `_wakeup` drops), or before this
        // reader waits.
        let (got, _wakeup) = h.m.with(|held| {
            let mut item: Option<Vec<u8>> = None;
            let mut wakeup = Wakeup::default();
            loop {
                if self.used(held) >= RECORD {
                    let (flags, bytes, freed) = self.take_record(held);
                    wakeup.add(freed);
                    if flags & FIRST != 0 {
                        if item.is_some() || h.reader_open.get(held) {
                            // The item being read (or skipped) was abandoned: its writer
                            // died before its last record.
                            wakeup.add(self.item_gone(held));
                        }
                        item = Some(bytes);
                    } else if let Some(buf) = item.as_mut() {
                        buf.extend_from_slice(&bytes);
                    } else {
                        // The rest of an item whose reader died: skip it.
                        if flags & LAST != 0 && h.reader_open.get(held) {
                            h.reader_open.set(held, false);
                            wakeup.add(self.item_gone(held));
                        }
                        continue;
                    }
                    if flags & LAST != 0 {
                        h.reader_open.set(held, false);
                        wakeup.add(self.item_gone(held));
                        return (item, wakeup);
                    }
                    h.reader_open.set(held, true);
                    continue;
                }
                wakeup.wake();
                if item.is_some() {
                    self.wait(&h.readable, Some(Instant::now() + WRITER_CHECK));
                    if self.used(held) < RECORD && self.writer_died() {
                        h.reader_open.set(held, false);
                        wakeup.add(self.item_gone(held));
                        item = None;
                    }
                    continue;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return (None, wakeup);
                }
                self.wait(&h.readable, deadline);
            }
        });
        got
    }

    /// Whether the writer of the item being read died (called with `m` held; `try_lock`
    /// never waits, so the lock order `wlock` then `m` is not inverted).
    fn writer_died(&self) -> bool {
        let h = self.h();
        match h.wlock.try_lock() {
            Locked::No => false,
            Locked::OwnerDied => {
                h.wlock.consistent();
                h.wlock.unlock();
                true
            }
            Locked::Yes => {
                h.wlock.unlock();
                true
            }
        }
    }

    /// Counts an item out (taken whole, or dropped as partial); the writers' wake-up is
    /// returned, to be made once `m` is released.
    fn item_gone(&self, held: &Held<'_>) -> Wakeup<'_> {
        let h = self.h();
        h.count.set(held, h.count.get(held).saturating_sub(1));
        h.writable.notify_later(u32::MAX)
    }
}

/// This process's side of a queue: the backlog the feeder thread writes.
struct Feed {
    state: Mutex<FeedState>,
    idle: Condvar,
}

#[derive(Default)]
struct FeedState {
    backlog: VecDeque<Vec<u8>>,
    feeding: bool,
    closed: bool,
    cancel_join: bool,
}

/// One queue in one process: shared by every clone of the handle there.
struct Core {
    ring: Arc<Ring>,
    feed: Arc<Feed>,
}

impl Core {
    fn new(ring: Ring) -> Core {
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
    fn publish(&self, item: Vec<u8>) {
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
    fn flush(&self) {
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

/// Python's `multiprocessing.Queue`: a FIFO queue shared by processes and threads.
///
/// Items are encoded with serde (they must not contain shared primitives; pass those in a
/// [`Process`](super::Process)'s arguments). `maxsize` 0 means unbounded. Any number of
/// producers and consumers, in any processes: each item is received once, and the items of
/// one producer arrive in the order it put them.
///
/// `put` on an unbounded queue never waits (an item that does not fit in the shared buffer
/// now is written by a background thread of this process), and on a bounded queue it waits
/// while `maxsize` items are in the queue. `get` waits for an item. The `_nowait` and
/// `_timeout` variants return [`PutError::Full`] and [`GetError::Empty`] (Python's
/// `queue.Full` and `queue.Empty`). `qsize`, `empty` and `full` are snapshots that may be
/// stale at once, as in Python.
///
/// A process killed while it puts or gets costs the others nothing beyond its own items:
/// the items its `put` accepted and its background thread had not written yet are lost (and
/// stay counted by `qsize`, and against `maxsize`, as they hold CPython's semaphore); an
/// item it was writing is dropped whole by the next reader; an item it had taken out is
/// gone with it. Every other item arrives, and every waiter is woken.
///
/// ```
/// use concurrent_futures::multiprocessing::{Process, Queue};
///
/// fn producer(q: Queue<u32>) {
///     for i in [10, 20, 30] {
///         q.put(i).unwrap();
///     }
/// }
///
/// let q = Queue::new(0);
/// let p = Process::new(producer, q.clone());
/// p.start().unwrap();
/// let got: Vec<u32> = (0..3).map(|_| q.get().unwrap()).collect();
/// assert_eq!(got, vec![10, 20, 30]);
/// p.join().unwrap();
/// ```
pub struct Queue<T> {
    core: Arc<Core>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("maxsize", &self.maxsize())
            .field("qsize", &self.qsize())
            .finish()
    }
}

impl<T> Queue<T> {
    fn header(&self) -> &QueueHeader {
        self.core.ring.h()
    }

    /// The bound given at creation (0: unbounded).
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Queue::<u8>::new(3).maxsize(), 3);
    /// ```
    pub fn maxsize(&self) -> usize {
        let h = self.header();
        h.m.with(|held| h.maxsize.get(held)) as usize
    }

    /// The number of items in the queue (put and not yet taken, including those this or
    /// another process is still writing). Python's `qsize()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::new(0);
    /// q.put('a').unwrap();
    /// assert_eq!(q.qsize(), 1);
    /// ```
    pub fn qsize(&self) -> usize {
        let h = self.header();
        h.m.with(|held| h.count.get(held)) as usize
    }

    /// Whether the queue holds no items. Python's `empty()`.
    ///
    /// ```
    /// assert!(concurrent_futures::multiprocessing::Queue::<u8>::new(0).empty());
    /// ```
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether a bounded queue holds `maxsize` items. Python's `full()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::new(1);
    /// q.put(1u8).unwrap();
    /// assert!(q.full());
    /// ```
    pub fn full(&self) -> bool {
        let h = self.header();
        h.m.with(|held| {
            let max = h.maxsize.get(held);
            max > 0 && h.count.get(held) >= max
        })
    }

    /// Closes this process's handles on the queue for putting and getting (other processes
    /// are not affected); items already put are still written. Python's `close()`.
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::{GetError, PutError, Queue};
    /// let q = Queue::new(0);
    /// q.close();
    /// assert!(matches!(q.put(1), Err(PutError::Closed(1))));
    /// assert_eq!(q.get_nowait(), Err(GetError::Closed));
    /// ```
    pub fn close(&self) {
        self.core.feed.state.lock().closed = true;
    }

    /// Waits until every item this process put is written into the shared buffer (where
    /// other processes can get it). Python's `join_thread()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::new(0);
    /// q.put(1u8).unwrap();
    /// q.join_thread();
    /// ```
    pub fn join_thread(&self) {
        self.core.flush();
    }

    /// Lets this process's last handle drop without waiting for its unwritten items (they
    /// are lost). Python's `cancel_join_thread()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::<u8>::new(0);
    /// q.cancel_join_thread();
    /// ```
    pub fn cancel_join_thread(&self) {
        self.core.feed.state.lock().cancel_join = true;
    }

    fn closed(&self) -> bool {
        self.core.feed.state.lock().closed
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue holding at most `maxsize` items (0: unbounded). Python's `Queue(maxsize)`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::<String>::new(0);
    /// assert!(q.empty());
    /// ```
    pub fn new(maxsize: usize) -> Queue<T> {
        Queue::with_buffer(maxsize, DEFAULT_BUFFER)
    }

    /// As [`new`](Self::new), with a shared buffer of `bytes` bytes (default 1 MiB; at least
    /// 4 KiB). Items larger than a quarter of it are streamed through it in pieces.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::with_buffer(0, 4096);
    /// q.put(vec![7u8; 100_000]).unwrap(); // larger than the buffer: streamed
    /// # let q2 = q.clone();
    /// # let t = std::thread::spawn(move || q2.get().unwrap());
    /// # assert_eq!(t.join().unwrap().len(), 100_000);
    /// ```
    pub fn with_buffer(maxsize: usize, bytes: usize) -> Queue<T> {
        Queue {
            core: Arc::new(Core::new(Ring::new(maxsize, bytes))),
            _t: PhantomData,
        }
    }

    /// Puts an item, waiting while a bounded queue is full. Python's `put(obj)`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::new(0);
    /// q.put((1, "one".to_string())).unwrap();
    /// assert_eq!(q.get().unwrap(), (1, "one".to_string()));
    /// ```
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, None)
    }

    /// Puts an item if a bounded queue has room now. Python's `put_nowait(obj)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{PutError, Queue};
    /// let q = Queue::new(1);
    /// q.put_nowait(1).unwrap();
    /// assert!(matches!(q.put_nowait(2), Err(PutError::Full(2))));
    /// ```
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, Some(Instant::now()))
    }

    /// Puts an item, waiting at most `timeout` for room. Python's `put(obj, timeout=t)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{PutError, Queue};
    /// # use std::time::Duration;
    /// let q = Queue::new(1);
    /// q.put(1).unwrap();
    /// assert!(matches!(q.put_timeout(2, Duration::from_millis(10)), Err(PutError::Full(2))));
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(item, Some(deadline_of(timeout)))
    }

    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), PutError<T>> {
        if self.closed() {
            return Err(PutError::Closed(item));
        }
        let bytes = match protocol::encode(&item) {
            Ok(b) => b,
            Err(e) => return Err(PutError::Encode(item, e.to_string())),
        };
        if !self.core.ring.reserve(deadline) {
            return Err(PutError::Full(item));
        }
        self.core.publish(bytes);
        Ok(())
    }

    /// Takes the next item, waiting for one. Python's `get()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::Queue::new(0);
    /// q.put(5u64).unwrap();
    /// assert_eq!(q.get(), Ok(5));
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.get_until(None)
    }

    /// Takes the next item if one is there. Python's `get_nowait()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{GetError, Queue};
    /// let q = Queue::<u8>::new(0);
    /// assert_eq!(q.get_nowait(), Err(GetError::Empty));
    /// ```
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.get_until(Some(Instant::now()))
    }

    /// Takes the next item, waiting at most `timeout`. Python's `get(timeout=t)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{GetError, Queue};
    /// # use std::time::Duration;
    /// let q = Queue::<u8>::new(0);
    /// assert_eq!(q.get_timeout(Duration::from_millis(10)), Err(GetError::Empty));
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_until(Some(deadline_of(timeout)))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, GetError> {
        if self.closed() {
            return Err(GetError::Closed);
        }
        // Our own items still in the backlog would never arrive while we wait with the
        // feeder stuck behind a full ring; they are written by the feeder thread meanwhile.
        let bytes = self.core.ring.read(deadline).ok_or(GetError::Empty)?;
        protocol::decode(&bytes).map_err(|e| GetError::Decode(e.to_string()))
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.core.ring.shared.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shared = Shared::<QueueHeader>::deserialize(deserializer)?;
        let cap = shared.tail_len();
        if cap < MIN_BUFFER {
            return Err(serde::de::Error::custom(
                "a shared queue's buffer is too small",
            ));
        }
        Ok(Queue {
            core: Arc::new(Core::new(Ring { shared, cap })),
            _t: PhantomData,
        })
    }
}

/// Python's `multiprocessing.JoinableQueue`: a [`Queue`] (all its methods, through `Deref`)
/// that also counts unfinished items: consumers call [`task_done`](Self::task_done) for each
/// item they processed, and [`join`](Self::join) waits until every item put was.
///
/// ```
/// use concurrent_futures::multiprocessing::{JoinableQueue, Process};
///
/// fn consumer(q: JoinableQueue<u32>) {
///     while let Ok(n) = q.get() {
///         if n == 0 { q.task_done().unwrap(); break; }
///         q.task_done().unwrap();
///     }
/// }
///
/// let q = JoinableQueue::new(0);
/// let p = Process::new(consumer, q.clone());
/// p.start().unwrap();
/// for n in [3, 2, 1, 0] {
///     q.put(n).unwrap();
/// }
/// q.join(); // every item was processed
/// p.join().unwrap();
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("maxsize", &self.maxsize())
            .field("qsize", &self.qsize())
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A joinable queue holding at most `maxsize` items (0: unbounded).
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::JoinableQueue::<u8>::new(3);
    /// assert_eq!(q.maxsize(), 3);
    /// ```
    pub fn new(maxsize: usize) -> JoinableQueue<T> {
        JoinableQueue {
            queue: Queue::new(maxsize),
        }
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken with `get` as processed. Python's `task_done()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::JoinableQueue::new(0);
    /// q.put(1u8).unwrap();
    /// q.get().unwrap();
    /// assert!(q.task_done().is_ok());
    /// assert!(q.task_done().is_err()); // one item, two task_done calls
    /// ```
    pub fn task_done(&self) -> Result<(), TaskDoneTooManyTimes> {
        let h = self.queue.header();
        h.m.with(|held| {
            let n = h.unfinished.get(held);
            if n == 0 {
                return Err(TaskDoneTooManyTimes);
            }
            h.unfinished.set(held, n - 1);
            if n == 1 {
                h.all_done.notify_all();
            }
            Ok(())
        })
    }

    /// Waits until every item put was marked done. Python's `join()`.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::JoinableQueue::<u8>::new(0);
    /// q.join(); // nothing was put: returns at once
    /// ```
    pub fn join(&self) {
        self.join_until(None);
    }

    /// As [`join`](Self::join), for at most `timeout`; false if items are still unfinished.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let q = concurrent_futures::multiprocessing::JoinableQueue::new(0);
    /// q.put(1u8).unwrap();
    /// assert!(!q.join_timeout(Duration::from_millis(10)));
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(Some(deadline_of(timeout)))
    }

    fn join_until(&self, deadline: Option<Instant>) -> bool {
        let ring = &self.queue.core.ring;
        let h = ring.h();
        h.m.with(|held| {
            loop {
                if h.unfinished.get(held) == 0 {
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                ring.wait(&h.all_done, deadline);
            }
        })
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(JoinableQueue {
            queue: Queue::deserialize(deserializer)?,
        })
    }
}

/// Python's `multiprocessing.SimpleQueue`: an unbounded queue without the background
/// writer: `put` writes into the shared buffer itself, waiting for room if it is full.
///
/// ```
/// let q = concurrent_futures::multiprocessing::SimpleQueue::new();
/// q.put("x".to_string()).unwrap();
/// assert!(!q.empty());
/// assert_eq!(q.get().unwrap(), "x");
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimpleQueue { .. }")
    }
}

impl<T: Serialize + DeserializeOwned> Default for SimpleQueue<T> {
    fn default() -> Self {
        SimpleQueue::new()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// ```
    /// assert!(concurrent_futures::multiprocessing::SimpleQueue::<u8>::new().empty());
    /// ```
    pub fn new() -> SimpleQueue<T> {
        SimpleQueue {
            queue: Queue::new(0),
        }
    }

    /// Puts an item, writing it now (waiting for room in the buffer if needed).
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::SimpleQueue::new();
    /// q.put(1u8).unwrap();
    /// ```
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        if self.queue.closed() {
            return Err(PutError::Closed(item));
        }
        let bytes = match protocol::encode(&item) {
            Ok(b) => b,
            Err(e) => return Err(PutError::Encode(item, e.to_string())),
        };
        let ring = &self.queue.core.ring;
        ring.reserve(None);
        if !ring.write(&bytes, Wait::Always) {
            ring.unreserve();
        }
        Ok(())
    }

    /// Takes the next item, waiting for one.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::SimpleQueue::new();
    /// q.put(2u8).unwrap();
    /// assert_eq!(q.get(), Ok(2));
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.queue.get()
    }

    /// Whether the queue is empty.
    ///
    /// ```
    /// assert!(concurrent_futures::multiprocessing::SimpleQueue::<u8>::new().empty());
    /// ```
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Closes this process's handle (see [`Queue::close`]).
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::SimpleQueue::<u8>::new();
    /// q.close();
    /// assert!(q.get().is_err());
    /// ```
    pub fn close(&self) {
        self.queue.close();
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SimpleQueue {
            queue: Queue::deserialize(deserializer)?,
        })
    }
}
