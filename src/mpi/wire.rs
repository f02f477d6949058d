//! What crosses between ranks, byte for byte. **API boundary**: every rank runs the same
//! executable (checked at start-up with the code fingerprint), so the format needs no
//! versioning, but a malformed message is an error, never undefined behaviour.
//!
//! A message is one MPI message of bytes. Its *last* byte says what it is, and the fields
//! are read from the end backwards; payloads (arguments and outcomes as `remote::codec`
//! encodes them, the same bytes the process pool sends) come first, as they are. Putting the header at the end is what lets
//! a large payload travel without a copy: the sender appends a few bytes to the buffer the
//! argument was encoded into and sends that buffer, and the receiver runs the task on a
//! slice of the buffer it received. No payload is ever encoded element by element.
//!
//! ```text
//! client → worker (tag TO_WORKER)              worker → client (tag TO_CLIENT)
//!   Start   [init arg] [init func tramp] has-init Hello  host [init outcome] outcome-len
//!           fingerprint, backoff cap µs                   ran-init, helper, pid, ok
//!   Table   bytes id len                        (a shared table, before the calls that need it)
//!   Release [id]*n n                            (the parent dropped these tables)
//!   Calls   payloads.. [id func tramp len]*n n   Done     outcomes.. [start end id len]*n
//!   (or CallsTimed)                                       sent n
//!   Revoke                                      Revoked  payloads.. [id func tramp len]*n n
//!   Ping                                        Pong
//!   Exit                                        Left     (after Exit: the last message)
//! ```
//!
//! `CallsTimed` is `Calls` whose run times rank 0 wants (it records a timeline): the worker
//! then reads its `CLOCK_MONOTONIC` at each such call's start and end, and when it sends
//! the `Done` that carries them (`sent`). Otherwise these fields are 0 and no clock is read.

use std::ops::Range;

use crate::remote::FnRef;

/// Tag of every message to a worker rank (one tag: MPI keeps them in order).
pub(crate) const TO_WORKER: i32 = 0x6366;
/// Tag of every message to the client (rank 0).
pub(crate) const TO_CLIENT: i32 = 0x6367;

/// Message kinds (the last byte).
pub(crate) mod kind {
    pub(crate) const START: u8 = 1;
    pub(crate) const CALLS: u8 = 2;
    /// `Calls`, timed (see the module docs).
    pub(crate) const CALLS_TIMED: u8 = 7;
    pub(crate) const REVOKE: u8 = 3;
    pub(crate) const PING: u8 = 4;
    pub(crate) const EXIT: u8 = 5;
    /// To an idle spawned worker between sessions: no more sessions, disconnect and exit.
    pub(crate) const QUIT: u8 = 6;
    /// A shared table's bytes, kept by the rank by id for the calls that name it.
    pub(crate) const TABLE: u8 = 9;
    /// The parent dropped these shared tables: let them go.
    pub(crate) const RELEASE: u8 = 10;
    pub(crate) const HELLO: u8 = 11;
    pub(crate) const DONE: u8 = 12;
    pub(crate) const REVOKED: u8 = 13;
    pub(crate) const PONG: u8 = 14;
    pub(crate) const LEFT: u8 = 15;
}

/// One call as it sits in a `Calls` (or `Revoked`) message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallHead {
    pub(crate) id: u64,
    pub(crate) target: FnRef,
    pub(crate) len: usize,
}

/// Appends the header fields of a message to the bytes already in `buf` (the payloads).
pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn call(&mut self, head: &CallHead) -> &mut Self {
        self.u64(head.id)
            .u64(head.target.func as u64)
            .u64(head.target.tramp as u64)
            .u64(head.len as u64)
    }

    /// Ends the message with its kind.
    pub(crate) fn finish(&mut self, kind: u8) {
        self.buf.push(kind);
    }
}

/// A message with no fields but its kind.
pub(crate) fn bare(kind: u8) -> Vec<u8> {
    vec![kind]
}

/// Reads a message's fields from the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    end: usize,
}

/// A message that does not parse.
pub(crate) type Malformed = super::error::MpiError;
use super::error::MpiError;

impl<'a> Reader<'a> {
    /// The reader of `buf`, and the message's kind.
    pub(crate) fn new(buf: &'a [u8]) -> Result<(Self, u8), Malformed> {
        let mut r = Reader {
            buf,
            end: buf.len(),
        };
        let kind = r.u8()?;
        Ok((r, kind))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.end < n {
            return Err(MpiError::Malformed("shorter than its header says"));
        }
        self.end -= n;
        Ok(&self.buf[self.end..self.end + n])
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    /// The bytes not read yet (the payloads).
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[..self.end]
    }

    /// `n` call heads (written in order, so read in reverse), and where each payload is in
    /// the message. Checks that the payloads exactly fill the rest.
    pub(crate) fn calls(&mut self, n: usize) -> Result<Vec<(CallHead, Range<usize>)>, Malformed> {
        let mut heads = Vec::with_capacity(n.min(self.end / 32));
        for _ in 0..n {
            let len = self.len()?;
            let tramp = self.u64()? as i64;
            let func = self.u64()? as i64;
            let id = self.u64()?;
            heads.push(CallHead {
                id,
                target: FnRef { func, tramp },
                len,
            });
        }
        heads.reverse();
        let ranges = self.payloads(heads.iter().map(|h| h.len))?;
        Ok(heads.into_iter().zip(ranges).collect())
    }

    /// `n` (start, end, id, length) heads of a `Done` message (after its `sent`): each
    /// outcome's id, where it is, and its run times (0 if untimed).
    pub(crate) fn outcomes(&mut self, n: usize) -> Result<Vec<Outcome>, Malformed> {
        let mut heads = Vec::with_capacity(n.min(self.end / 32));
        for _ in 0..n {
            let len = self.len()?;
            let id = self.u64()?;
            let end = self.u64()?;
            let start = self.u64()?;
            heads.push((id, len, [start, end]));
        }
        heads.reverse();
        let ranges = self.payloads(heads.iter().map(|h| h.1))?;
        Ok(heads
            .into_iter()
            .zip(ranges)
            .map(|((id, _, ran), range)| Outcome { id, range, ran })
            .collect())
    }

    fn len(&mut self) -> Result<usize, Malformed> {
        usize::try_from(self.u64()?).map_err(|_| MpiError::Malformed("a length out of range"))
    }

    /// Where payloads of these lengths, laid end to end from the start, are; they must
    /// exactly fill the bytes before the header.
    fn payloads(&self, lens: impl Iterator<Item = usize>) -> Result<Vec<Range<usize>>, Malformed> {
        let mut at = 0usize;
        let mut out = Vec::new();
        for len in lens {
            let end = at
                .checked_add(len)
                .filter(|&e| e <= self.end)
                .ok_or(MpiError::Malformed("a payload out of bounds"))?;
            out.push(at..end);
            at = end;
        }
        if at != self.end {
            return Err(MpiError::Malformed("stray bytes before the header"));
        }
        Ok(out)
    }
}

/// Builds a `Start`: the client's code fingerprint, the backoff cap, and the pool's
/// initializer (a function named as a task, and its encoded argument), if it has one.
pub(crate) fn start_message(
    fingerprint: u64,
    cap_micros: u64,
    init: Option<(FnRef, &[u8])>,
) -> Vec<u8> {
    let mut buf = init.map(|(_, arg)| arg.to_vec()).unwrap_or_default();
    let mut w = Writer::new(&mut buf);
    match init {
        Some((target, _)) => w.u64(target.func as u64).u64(target.tramp as u64).u8(1),
        None => w.u8(0),
    };
    w.u64(fingerprint).u64(cap_micros).finish(kind::START);
    buf
}

impl<'a> Reader<'a> {
    /// A `Table`: its id and its bytes, which must be exactly the length it names.
    pub(crate) fn table(&mut self) -> Result<(u64, &'a [u8]), Malformed> {
        let len = self.len()?;
        let id = self.u64()?;
        let bytes = self.rest();
        if bytes.len() != len || len == 0 {
            return Err(MpiError::Malformed(
                "a shared table of another length than named",
            ));
        }
        Ok((id, bytes))
    }

    /// A `Release`: the ids of the tables to let go.
    pub(crate) fn release(&mut self) -> Result<Vec<u64>, Malformed> {
        let n = self.u32()? as usize;
        if n.checked_mul(8) != Some(self.end) {
            return Err(MpiError::Malformed(
                "a release of another length than named",
            ));
        }
        let mut ids = (0..n).map(|_| self.u64()).collect::<Result<Vec<_>, _>>()?;
        ids.reverse();
        Ok(ids)
    }

    /// The first fields of a `Start`: the client's code fingerprint and the backoff cap.
    /// They are what a rank of another build is judged by, so they stay at the end of the
    /// message, where every build reads them; the rest is read only by a rank of the same
    /// build ([`start_init`](Self::start_init)).
    pub(crate) fn start(&mut self) -> Result<(u64, u64), Malformed> {
        let cap_micros = self.u64()?;
        let fingerprint = self.u64()?;
        Ok((fingerprint, cap_micros))
    }

    /// The rest of a `Start`: the initializer and its argument, if there is one.
    pub(crate) fn start_init(&mut self) -> Result<Option<(FnRef, &'a [u8])>, Malformed> {
        Ok(match self.u8()? {
            0 => None,
            _ => {
                let tramp = self.u64()? as i64;
                let func = self.u64()? as i64;
                Some((FnRef { func, tramp }, self.rest()))
            }
        })
    }

    /// The first fields of a `Hello`: the rank runs the same build, its pid, and whether a
    /// helper answers while it runs a task. (As for `Start`, a rank of another build is
    /// judged by these, at the end of the message; the rest is read with
    /// [`hello_rest`](Self::hello_rest) only when the build is the same.)
    pub(crate) fn hello(&mut self) -> Result<(bool, u32, bool), Malformed> {
        let ok = self.u8()? != 0;
        let pid = self.u32()?;
        let helper = self.u8()? != 0;
        Ok((ok, pid, helper))
    }

    /// The rest of a `Hello` of the same build: its host, and its initializer's encoded
    /// outcome if it ran one.
    pub(crate) fn hello_rest(&mut self) -> Result<(&'a [u8], Option<&'a [u8]>), Malformed> {
        let ran = self.u8()? != 0;
        let len = self.len()?;
        let rest = self.rest();
        let split = rest
            .len()
            .checked_sub(len)
            .ok_or(MpiError::Malformed("an initializer outcome out of bounds"))?;
        let (host, outcome) = rest.split_at(split);
        Ok((host, ran.then_some(outcome)))
    }
}

/// Builds a `Hello`: this rank runs the same build (`ok`), its pid, whether a helper
/// answers while it runs a task, its host, and its initializer's encoded outcome (if it
/// ran one). A rank of another build sends what every build reads: its host and the first
/// fields.
pub(crate) fn hello_message(
    ok: bool,
    pid: u32,
    helper: bool,
    host: &str,
    init: Option<&[u8]>,
) -> Vec<u8> {
    let mut buf = host.as_bytes().to_vec();
    let mut w = Writer::new(&mut buf);
    if ok {
        w.buf.extend_from_slice(init.unwrap_or_default());
        w.u64(init.map_or(0, <[u8]>::len) as u64)
            .u8(init.is_some() as u8);
    }
    w.u8(helper as u8).u32(pid).u8(ok as u8).finish(kind::HELLO);
    buf
}

/// Builds a `Table`: a shared table's id and bytes (copied: the table stays the parent's).
pub(crate) fn table_message(id: u64, bytes: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(bytes.len() + 17);
    buf.extend_from_slice(bytes);
    Writer::new(&mut buf)
        .u64(id)
        .u64(bytes.len() as u64)
        .finish(kind::TABLE);
    buf
}

/// Builds a `Release` of the tables `ids`.
pub(crate) fn release_message(ids: &[u64]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(8 * ids.len() + 5);
    let mut w = Writer::new(&mut buf);
    for &id in ids {
        w.u64(id);
    }
    w.u32(ids.len() as u32).finish(kind::RELEASE);
    buf
}

/// Builds a `Calls` (or `Revoked`) message from calls and their payloads. A single call
/// reuses its payload's buffer (no copy); several are copied into one buffer.
pub(crate) fn calls_message(kind: u8, mut calls: Vec<(CallHead, Vec<u8>)>) -> Vec<u8> {
    let n = calls.len();
    let mut buf = if n == 1 {
        let (_, payload) = &mut calls[0];
        std::mem::take(payload)
    } else {
        let total: usize = calls.iter().map(|(_, p)| p.len()).sum();
        let mut buf = Vec::with_capacity(total + 32 * n + 5);
        for (_, p) in &calls {
            buf.extend_from_slice(p);
        }
        buf
    };
    let mut w = Writer::new(&mut buf);
    for (head, _) in &calls {
        w.call(head);
    }
    w.u32(n as u32).finish(kind);
    buf
}

/// Builds a message of one call (`calls_message` of one), in the payload's own buffer.
pub(crate) fn call_message(kind: u8, head: CallHead, mut payload: Vec<u8>) -> Vec<u8> {
    Writer::new(&mut payload).call(&head).u32(1).finish(kind);
    payload
}

/// One outcome of a `Done` message, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) id: u64,
    /// Where its bytes are in the message.
    pub(crate) range: Range<usize>,
    /// When the worker started and ended the call (its `CLOCK_MONOTONIC`; 0 if untimed).
    pub(crate) ran: [u64; 2],
}

/// Builds a `Done` message from outcomes `(id, bytes, run times)`, taking them out of
/// `outcomes` (whose capacity stays for the next ones); `sent` is the worker's clock now if
/// any call was timed, else 0. A single outcome reuses its buffer.
pub(crate) fn done_message(outcomes: &mut Vec<(u64, Vec<u8>, [u64; 2])>, sent: u64) -> Vec<u8> {
    let n = outcomes.len();
    if n == 1 {
        // One result: its header goes after it, in the room its encoding left.
        let (id, mut buf, [start, end]) = outcomes.swap_remove(0);
        let len = buf.len() as u64;
        Writer::new(&mut buf)
            .u64(start)
            .u64(end)
            .u64(id)
            .u64(len)
            .u64(sent)
            .u32(1)
            .finish(kind::DONE);
        return buf;
    }
    let heads: Vec<(u64, usize, [u64; 2])> = outcomes
        .iter()
        .map(|(id, o, ran)| (*id, o.len(), *ran))
        .collect();
    let mut buf = {
        let total: usize = heads.iter().map(|h| h.1).sum();
        let mut buf = Vec::with_capacity(total + 32 * n + 13);
        for (_, o, _) in outcomes.drain(..) {
            buf.extend_from_slice(&o);
        }
        buf
    };
    let mut w = Writer::new(&mut buf);
    for (id, len, [start, end]) in heads {
        w.u64(start).u64(end).u64(id).u64(len as u64);
    }
    w.u64(sent).u32(n as u32).finish(kind::DONE);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: u64, len: usize) -> CallHead {
        CallHead {
            id,
            target: FnRef { func: -5, tramp: 7 },
            len,
        }
    }

    #[test]
    fn calls_round_trip_one_and_many() {
        for n in [1usize, 3] {
            let calls: Vec<_> = (0..n)
                .map(|i| (head(i as u64 + 10, i + 1), vec![i as u8; i + 1]))
                .collect();
            let msg = calls_message(kind::CALLS, calls);
            let (mut r, k) = Reader::new(&msg).unwrap();
            assert_eq!(k, kind::CALLS);
            let count = r.u32().unwrap() as usize;
            let parsed = r.calls(count).unwrap();
            assert_eq!(parsed.len(), n);
            for (i, (h, range)) in parsed.iter().enumerate() {
                assert_eq!(h.id, i as u64 + 10);
                assert_eq!((h.target.func, h.target.tramp), (-5, 7));
                assert_eq!(&msg[range.clone()], &vec![i as u8; i + 1][..]);
            }
        }
    }

    #[test]
    fn one_call_and_one_result_are_built_in_their_own_buffers_as_the_general_path_builds_them() {
        let one = call_message(kind::CALLS, head(4, 2), vec![5, 6]);
        assert_eq!(
            one,
            calls_message(kind::CALLS, vec![(head(4, 2), vec![5, 6])])
        );
        // Done: the single-result path against the many-results layout, by hand.
        let msg = done_message(&mut vec![(8, vec![1, 2], [3, 4])], 5);
        let mut want = vec![1, 2];
        Writer::new(&mut want)
            .u64(3)
            .u64(4)
            .u64(8)
            .u64(2)
            .u64(5)
            .u32(1)
            .finish(kind::DONE);
        assert_eq!(msg, want);
        let (mut r, _) = Reader::new(&msg).unwrap();
        let n = r.u32().unwrap() as usize;
        assert_eq!(r.u64().unwrap(), 5);
        let out = r.outcomes(n).unwrap();
        assert_eq!((out[0].id, &msg[out[0].range.clone()]), (8, &[1u8, 2][..]));
        assert_eq!(out[0].ran, [3, 4]);
    }

    #[test]
    fn start_round_trip_with_and_without_an_initializer() {
        let target = FnRef { func: -9, tramp: 3 };
        for init in [
            None,
            Some((target, &[1u8, 2, 3][..])),
            Some((target, &[][..])),
        ] {
            let msg = start_message(0xfeed, 1000, init);
            let (mut r, k) = Reader::new(&msg).unwrap();
            assert_eq!(k, kind::START);
            assert_eq!(r.start().unwrap(), (0xfeed, 1000));
            assert_eq!(r.start_init().unwrap(), init);
        }
    }

    #[test]
    fn hello_round_trip_and_what_another_build_reads() {
        for init in [None, Some(&[7u8, 8][..]), Some(&[][..])] {
            let msg = hello_message(true, 42, true, "nodeA", init);
            let (mut r, k) = Reader::new(&msg).unwrap();
            assert_eq!(k, kind::HELLO);
            assert_eq!(r.hello().unwrap(), (true, 42, true));
            assert_eq!(r.hello_rest().unwrap(), (&b"nodeA"[..], init));
        }
        // Another build: the first fields and the host, as every build has sent them.
        let msg = hello_message(false, 7, false, "nodeB", None);
        let mut old = b"nodeB".to_vec();
        Writer::new(&mut old).u8(0).u32(7).u8(0).finish(kind::HELLO);
        assert_eq!(msg, old);
    }

    #[test]
    fn done_round_trip() {
        let msg = done_message(
            &mut vec![
                (1, vec![9; 3], [10, 11]),
                (2, vec![], [0, 0]),
                (3, vec![7], [12, 13]),
            ],
            14,
        );
        let (mut r, k) = Reader::new(&msg).unwrap();
        assert_eq!(k, kind::DONE);
        let n = r.u32().unwrap() as usize;
        assert_eq!(r.u64().unwrap(), 14);
        let out = r.outcomes(n).unwrap();
        assert_eq!(out.iter().map(|o| o.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(&msg[out[0].range.clone()], &[9, 9, 9]);
        assert!(out[1].range.is_empty());
        assert_eq!(
            out.iter().map(|o| o.ran).collect::<Vec<_>>(),
            vec![[10, 11], [0, 0], [12, 13]]
        );
    }

    #[test]
    fn table_and_release_round_trip_and_a_wrong_length_is_an_error() {
        let msg = table_message(9, &[1, 2, 3]);
        let (mut r, k) = Reader::new(&msg).unwrap();
        assert_eq!(k, kind::TABLE);
        assert_eq!(r.table().unwrap(), (9, &[1u8, 2, 3][..]));
        let mut short = table_message(9, &[1, 2, 3]);
        short.remove(0);
        let (mut r, _) = Reader::new(&short).unwrap();
        assert!(r.table().is_err());
        let msg = release_message(&[4, 5]);
        let (mut r, k) = Reader::new(&msg).unwrap();
        assert_eq!(k, kind::RELEASE);
        assert_eq!(r.release().unwrap(), vec![4, 5]);
        let mut long = release_message(&[4, 5]);
        long.insert(0, 0);
        let (mut r, _) = Reader::new(&long).unwrap();
        assert!(r.release().is_err());
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(Reader::new(&[]).is_err());
        let mut msg = done_message(&mut vec![(1, vec![1, 2, 3], [0, 0])], 0);
        msg.remove(0); // a payload byte short
        let (mut r, _) = Reader::new(&msg).unwrap();
        let n = r.u32().unwrap() as usize;
        r.u64().unwrap();
        assert!(r.outcomes(n).is_err());
        // A count far larger than the message.
        let mut buf = Vec::new();
        Writer::new(&mut buf).u32(u32::MAX).finish(kind::CALLS);
        let (mut r, _) = Reader::new(&buf).unwrap();
        let n = r.u32().unwrap() as usize;
        assert!(r.calls(n).is_err());
    }
}
