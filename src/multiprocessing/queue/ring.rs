//! The ring: a queue's shared region ([`QueueHeader`] and a tail of bytes) and the
//! operations on it: records written whole, items streamed in pieces, waits, the repair of
//! what a dead writer or reader left.

use std::time::{Duration, Instant};

use crate::multiprocessing::shm::{
    Guarded, GuardedFlag, Held, Locked, RawCond, RawMutex, Reentrant, Shared, Unlock, Wakeup,
    shared_header,
};

const FIRST: u32 = 1;
const LAST: u32 = 2;
const RECORD: usize = 8;

pub(super) const MIN_BUFFER: usize = 4096;
/// How often a reader waiting for the rest of an item checks that its writer lives.
const WRITER_CHECK: Duration = Duration::from_millis(100);

shared_header! {
    pub(crate) struct QueueHeader: KIND = 7;
    {
        pub(super) m: RawMutex,
        /// Signalled when a record is published.
        pub(super) readable: RawCond,
        /// Signalled when bytes or item slots are freed.
        pub(super) writable: RawCond,
        /// Signalled when `unfinished` drops to zero.
        pub(super) all_done: RawCond,
        /// Held by a writer for a whole item.
        pub(super) wlock: RawMutex,
        /// Held by a reader for a whole item.
        pub(super) rlock: RawMutex,
        pub(super) maxsize: Guarded<u64>,
        /// Items put (slot taken) and not yet taken out.
        pub(super) count: Guarded<u64>,
        /// Items put and not yet marked done (`JoinableQueue`).
        pub(super) unfinished: Guarded<u64>,
        /// Byte positions (ever-growing; modulo the ring's size in it).
        pub(super) head: Guarded<u64>,
        pub(super) tail: Guarded<u64>,
        /// A reader took an item's first record and not its last (it may have died).
        pub(super) reader_open: GuardedFlag,
    }
}

/// The shared part: the region and the ring operations.
pub(super) struct Ring {
    pub(super) shared: Shared<QueueHeader>,
    pub(super) cap: usize,
}

/// How a writer treats a full ring.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Write the whole item now or nothing.
    Never,
    /// Wait for room as long as it takes.
    Always,
}

impl Ring {
    pub(super) fn new(maxsize: usize, buffer: usize) -> Ring {
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

    pub(super) fn h(&self) -> &QueueHeader {
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

    pub(super) fn wait(&self, cond: &RawCond, deadline: Option<Instant>) {
        cond.wait(&self.h().m, deadline);
    }

    /// Takes an item slot (bounded queues); false if `deadline` passed first.
    pub(super) fn reserve(&self, deadline: Option<Instant>) -> bool {
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
    pub(super) fn unreserve(&self) {
        let h = self.h();
        h.m.with(|held| {
            h.count.set(held, h.count.get(held).saturating_sub(1));
            h.unfinished
                .set(held, h.unfinished.get(held).saturating_sub(1));
            h.writable.notify_all();
        });
    }

    /// Writes one item's records. With `Wait::Never`, writes all of it or nothing.
    pub(super) fn write(&self, item: &[u8], wait: Wait) -> bool {
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
    pub(super) fn read(&self, deadline: Option<Instant>) -> Option<Vec<u8>> {
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
