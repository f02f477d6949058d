//! Processes killed (SIGKILL) at each point of each shared primitive's use: holding it,
//! waiting in it, in the middle of a put, a get, a notify or a task_done. After each kill a
//! live process is waiting in the same primitive, and the next operation must wake it
//! within the timeout; what the dead process held is counted as lost.
//!
//! Every scenario runs a few rounds in `cargo test`; the table in the README comes from
//!
//! ```text
//! CF_FAULT_ROUNDS=50 cargo test --release --test mp_faults -- --ignored --nocapture fault_table
//! ```
#![cfg(target_os = "linux")]

mod common;

use common::procs::{children, park_forever};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{LONG, eventually, watchdog};
use concurrent_futures::multiprocessing::{
    Array, Barrier, BoundedSemaphore, BrokenBarrierError, Condition, Connection, ConnectionError,
    Event, GetError, JoinableQueue, Lock, Pipe, Process, Queue, RLock, Semaphore, SimpleQueue,
    TryAcquireError, Value, active_children,
};
use parking_lot::Mutex;

/// The tests of this file run one at a time: each checks that it leaves no child behind.
static SERIAL: Mutex<()> = Mutex::new(());

/// Rounds per scenario in `cargo test`.
const ROUNDS: u32 = 3;

// ===== harness =====

/// What one round of a scenario came to: how many items or permits the dead process took
/// with it, or why the others did not survive.
type Round = Result<u64, String>;

struct Row {
    primitive: &'static str,
    point: &'static str,
    lost_what: &'static str,
    tried: u32,
    survived: u32,
    lost: u64,
    failures: Vec<String>,
}

fn run(
    primitive: &'static str,
    point: &'static str,
    lost_what: &'static str,
    rounds: u32,
    round: fn(&mut Rng) -> Round,
) -> Row {
    let mut rng = Rng::new();
    let mut row = Row {
        primitive,
        point,
        lost_what,
        tried: 0,
        survived: 0,
        lost: 0,
        failures: Vec::new(),
    };
    for _ in 0..rounds {
        row.tried += 1;
        match round(&mut rng) {
            Ok(lost) => {
                row.survived += 1;
                row.lost += lost;
            }
            Err(e) => row.failures.push(e),
        }
        let left = children();
        assert!(
            left.is_empty(),
            "{primitive}/{point}: children left: {left:?}"
        );
        assert!(active_children().is_empty());
    }
    row
}

/// Asserts every round survived and at most `max_lost` things were lost per round.
fn check(row: Row, max_lost: u64) {
    assert!(
        row.failures.is_empty(),
        "{} / {}: {:?}",
        row.primitive,
        row.point,
        row.failures
    );
    assert_eq!(row.survived, row.tried);
    assert!(
        row.lost <= max_lost.saturating_mul(u64::from(row.tried)),
        "{} / {}: lost {} {} in {} rounds",
        row.primitive,
        row.point,
        row.lost,
        row.lost_what,
        row.tried
    );
}

/// A small xorshift generator, seeded from the clock: where each kill lands.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Whether the main thread of `pid` sleeps in a futex wait (the kernel's view, from
/// `/proc/PID/syscall`, or its state if that file is not readable).
fn asleep(pid: u32) -> bool {
    asleep_in(pid, Some(libc::SYS_futex))
}

/// Whether the main thread of `pid` sleeps in system call `call` (any, if `None`).
fn asleep_in(pid: u32, call: Option<i64>) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
        Ok(s) => match s
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<i64>().ok())
        {
            Some(n) => call.is_none_or(|c| c == n),
            None => false,
        },
        Err(_) => std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('S'))
            })
            .unwrap_or(false),
    }
}

fn start<A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(
    f: fn(A),
    args: A,
) -> Process {
    let p = Process::new(f, args);
    p.start().expect("start");
    p
}

fn pid(p: &Process) -> u32 {
    p.pid().expect("started")
}

/// Starts `f` with the arguments `args` makes around a fresh `ready` event, and waits until
/// the child signalled it and sleeps in the kernel.
fn start_settled<A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(
    f: fn(A),
    args: impl FnOnce(Event) -> A,
) -> Result<Process, String> {
    let ready = Event::new();
    let p = start(f, args(ready.clone()));
    settled(&p, &ready)?;
    Ok(p)
}

/// Waits until `p` signalled `ready` and sleeps in the kernel.
fn settled(p: &Process, ready: &Event) -> Result<(), String> {
    if !ready.wait_timeout(LONG) {
        return Err("a child never got ready".into());
    }
    let pid = pid(p);
    eventually("the child sleeps in a futex", || asleep(pid));
    Ok(())
}

/// SIGKILLs `p` and reaps it.
fn kill(p: &Process) {
    p.kill().expect("kill");
    p.join_timeout(LONG)
        .expect("started")
        .expect("a killed child is reaped");
}

/// The live waiter's verdict: exit code 0 if it was served as it should be.
fn verdict(p: &Process) -> Result<(), String> {
    match p.join_timeout(LONG).expect("started") {
        Some(0) => Ok(()),
        Some(code) => Err(format!("the live waiter failed (exit code {code})")),
        None => {
            let _ = p.kill();
            let _ = p.join_timeout(LONG);
            Err("the live waiter was never woken".into())
        }
    }
}

fn exit(ok: bool) -> ! {
    std::process::exit(if ok { 0 } else { 1 })
}

/// Runs `f` on a thread and waits for it at most `LONG`: an operation that a dead process
/// wedged fails the round instead of hanging the test (the thread is then left blocked).
fn within<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LONG)
        .map_err(|_| format!("{what} did not return: wedged by the dead process"))
}

/// How many more times, after a kill, a live waiter sleeps and the next operation must wake
/// it. One is not enough: glibc's process-shared condition variable survives the first
/// wake-up after a waiter's death and hangs at the second (it waits for the dead waiter to
/// leave its group).
const AGAIN: usize = 3;

/// `AGAIN` times: `prepare`, then a thread of this process sleeps in `wait`, then `wake`
/// runs (bounded); `wait` must return true within `LONG`.
fn served_again(
    prepare: impl Fn(),
    wait: impl Fn() -> bool + Clone + Send + 'static,
    wake: impl Fn() + Clone + Send + 'static,
) -> Result<(), String> {
    for _ in 0..AGAIN {
        prepare();
        served_once(wait.clone(), wake.clone())?;
    }
    Ok(())
}

/// A thread of this process sleeps in `wait`, then `wake` runs (bounded); `wait` must
/// return true within `LONG`.
fn served_once(
    wait: impl FnOnce() -> bool + Send + 'static,
    wake: impl FnOnce() + Send + 'static,
) -> Result<(), String> {
    {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: `gettid` has no preconditions.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            let _ = tx.send(wait());
        });
        let tid = tid_rx.recv_timeout(LONG).map_err(|_| "no waiter thread")?;
        eventually("the waiter thread sleeps in a futex", || {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok())
                == Some(libc::SYS_futex)
        });
        within("the next wake-up", wake)?;
        match rx.recv_timeout(LONG) {
            Ok(true) => {}
            Ok(false) => return Err("a later waiter was served wrongly".into()),
            Err(_) => return Err("a later waiter was never woken".into()),
        }
    }
    Ok(())
}

// ===== Lock, RLock =====

fn hold_lock((lock, ready): (Lock, Event)) {
    std::mem::forget(lock.acquire());
    ready.set();
    park_forever();
}

fn lock_expect_owner_died((lock, ready): (Lock, Event)) {
    ready.set();
    let got = lock.acquire_timeout(LONG);
    let ok = matches!(got, Err(TryAcquireError::OwnerDied(_)));
    drop(got);
    exit(ok);
}

fn lock_expect_ok((lock, ready): (Lock, Event)) {
    ready.set();
    let got = lock.acquire_timeout(LONG);
    let ok = got.is_ok();
    drop(got);
    exit(ok);
}

fn lock_holder_killed(_: &mut Rng) -> Round {
    let lock = Lock::new();
    let v = start_settled(hold_lock, |ready| (lock.clone(), ready))?;
    let w = start_settled(lock_expect_owner_died, |ready| (lock.clone(), ready))?;
    kill(&v);
    verdict(&w)?;
    lock.try_acquire()
        .map(drop)
        .map_err(|_| "the lock stayed taken".to_string())?;
    Ok(0)
}

fn lock_waiter_killed(_: &mut Rng) -> Round {
    let lock = Lock::new();
    let held = lock.acquire().map_err(|_| "fresh lock")?;
    let v = start_settled(lock_expect_ok, |ready| (lock.clone(), ready))?;
    let w = start_settled(lock_expect_ok, |ready| (lock.clone(), ready))?;
    kill(&v);
    drop(held);
    verdict(&w)?;
    Ok(0)
}

fn hold_rlock((lock, ready): (RLock, Event)) {
    std::mem::forget(lock.acquire());
    std::mem::forget(lock.acquire());
    ready.set();
    park_forever();
}

fn rlock_expect_owner_died((lock, ready): (RLock, Event)) {
    ready.set();
    let got = lock.acquire_timeout(LONG);
    let ok = matches!(got, Err(TryAcquireError::OwnerDied(_)));
    drop(got);
    exit(ok);
}

fn rlock_holder_killed(_: &mut Rng) -> Round {
    let lock = RLock::new();
    let v = start_settled(hold_rlock, |ready| (lock.clone(), ready))?;
    let w = start_settled(rlock_expect_owner_died, |ready| (lock.clone(), ready))?;
    kill(&v);
    verdict(&w)?;
    lock.try_acquire()
        .map(drop)
        .map_err(|_| "the lock stayed taken".to_string())?;
    Ok(0)
}

// ===== Semaphore =====

fn sem_take((s, ready): (Semaphore, Event)) {
    ready.set();
    match s.acquire_timeout(LONG) {
        Some(g) => {
            g.forget();
            exit(true)
        }
        None => exit(false),
    }
}

fn sem_hold((s, ready): (Semaphore, Event)) {
    s.acquire().forget();
    ready.set();
    park_forever();
}

fn semaphore_waiter_killed(_: &mut Rng) -> Round {
    let s = Semaphore::new(0);
    let v = start_settled(sem_take, |ready| (s.clone(), ready))?;
    let w = start_settled(sem_take, |ready| (s.clone(), ready))?;
    kill(&v);
    let s2 = s.clone();
    within("release", move || s2.release())?;
    verdict(&w)?;
    if s.get_value() != 0 {
        return Err("the permit was not taken by the live waiter".into());
    }
    let (s1, s2) = (s.clone(), s.clone());
    served_again(
        || {},
        move || s1.acquire_timeout(LONG).map(|g| g.forget()).is_some(),
        move || s2.release(),
    )?;
    Ok(0)
}

fn semaphore_holder_killed(_: &mut Rng) -> Round {
    let s = Semaphore::new(1);
    let v = start_settled(sem_hold, |ready| (s.clone(), ready))?;
    let w = start_settled(sem_take, |ready| (s.clone(), ready))?;
    kill(&v);
    // The dead holder's permit is gone with it (as in Python): a new one serves the waiter.
    let lost = u64::from(s.get_value() == 0);
    let s2 = s.clone();
    within("release", move || s2.release())?;
    verdict(&w)?;
    let (s1, s2) = (s.clone(), s.clone());
    served_again(
        || {},
        move || s1.acquire_timeout(LONG).map(|g| g.forget()).is_some(),
        move || s2.release(),
    )?;
    Ok(lost)
}

fn bsem_take((s, ready): (BoundedSemaphore, Event)) {
    ready.set();
    match s.acquire_timeout(LONG) {
        Some(g) => {
            g.forget();
            exit(true)
        }
        None => exit(false),
    }
}

fn bounded_semaphore_waiter_killed(_: &mut Rng) -> Round {
    let s = BoundedSemaphore::new(1);
    s.acquire().forget();
    let v = start_settled(bsem_take, |ready| (s.clone(), ready))?;
    let w = start_settled(bsem_take, |ready| (s.clone(), ready))?;
    kill(&v);
    let s2 = s.clone();
    within("release", move || s2.release())?.map_err(|_| "released too many times".to_string())?;
    verdict(&w)?;
    let (s1, s2) = (s.clone(), s.clone());
    served_again(
        || {},
        move || s1.acquire_timeout(LONG).map(|g| g.forget()).is_some(),
        move || s2.release().expect("within the bound"),
    )?;
    Ok(0)
}

// ===== Event =====

fn event_wait((e, ready): (Event, Event)) {
    ready.set();
    exit(e.wait_timeout(LONG));
}

fn event_waiter_killed(_: &mut Rng) -> Round {
    let e = Event::new();
    let v = start_settled(event_wait, |ready| (e.clone(), ready))?;
    let w = start_settled(event_wait, |ready| (e.clone(), ready))?;
    kill(&v);
    let e2 = e.clone();
    within("Event::set", move || e2.set())?;
    verdict(&w)?;
    let (e1, e2) = (e.clone(), e.clone());
    served_again(
        || e.clear(),
        move || e1.wait_timeout(LONG),
        move || e2.set(),
    )?;
    Ok(0)
}

fn event_setter((e, n): (Event, Value<u64>)) {
    loop {
        e.set();
        e.clear();
        *n.get_lock().unwrap_or_else(|d| d.into_inner()) += 1;
    }
}

fn event_setter_killed(rng: &mut Rng) -> Round {
    let e = Event::new();
    let n = Value::new(0u64);
    let v = start(event_setter, (e.clone(), n.clone()));
    let k = 1 + rng.below(2000);
    eventually("the setter ran", || n.get() >= k);
    kill(&v);
    e.clear();
    let w = start_settled(event_wait, |ready| (e.clone(), ready))?;
    let e2 = e.clone();
    within("Event::set", move || e2.set())?;
    verdict(&w)?;
    let (e1, e2) = (e.clone(), e.clone());
    served_again(
        || e.clear(),
        move || e1.wait_timeout(LONG),
        move || e2.set(),
    )?;
    Ok(0)
}

// ===== Condition =====

fn cond_wait((c, flag, ready): (Condition, Value<u32>, Event)) {
    let mut g = c.acquire().unwrap_or_else(|d| d.into_inner());
    ready.set();
    let ok = g.wait_for(|| flag.get() == 1, Some(LONG));
    drop(g);
    exit(ok);
}

fn cond_notifier((c, n): (Condition, Value<u64>)) {
    loop {
        let g = c.acquire().unwrap_or_else(|d| d.into_inner());
        g.notify_all();
        g.notify(1);
        drop(g);
        *n.get_lock().unwrap_or_else(|d| d.into_inner()) += 1;
    }
}

fn notify_one(c: &Condition, flag: &Value<u32>) -> Result<(), String> {
    let (c, flag) = (c.clone(), flag.clone());
    within("Condition::notify", move || {
        let g = c.acquire().unwrap_or_else(|d| d.into_inner());
        flag.set(1);
        g.notify(1);
    })
}

fn condition_waiter_killed(_: &mut Rng) -> Round {
    let (c, flag) = (Condition::new(), Value::new(0u32));
    let v = start_settled(cond_wait, |ready| (c.clone(), flag.clone(), ready))?;
    let w = start_settled(cond_wait, |ready| (c.clone(), flag.clone(), ready))?;
    kill(&v);
    // notify(1), not notify_all: the one wake-up must reach the live waiter.
    notify_one(&c, &flag)?;
    verdict(&w)?;
    let (c1, f1) = (c.clone(), flag.clone());
    let (c2, f2) = (c.clone(), flag.clone());
    served_again(
        || flag.set(0),
        move || {
            let mut g = c1.acquire().unwrap_or_else(|d| d.into_inner());
            g.wait_for(|| f1.get() == 1, Some(LONG))
        },
        move || {
            let g = c2.acquire().unwrap_or_else(|d| d.into_inner());
            f2.set(1);
            g.notify(1);
        },
    )?;
    Ok(0)
}

fn condition_notifier_killed(rng: &mut Rng) -> Round {
    let (c, flag, n) = (Condition::new(), Value::new(0u32), Value::new(0u64));

    let v = start(cond_notifier, (c.clone(), n.clone()));
    let k = 1 + rng.below(2000);
    eventually("the notifier ran", || n.get() >= k);
    kill(&v);
    let w = start_settled(cond_wait, |ready| (c.clone(), flag.clone(), ready))?;
    notify_one(&c, &flag)?;
    verdict(&w)?;
    let (c1, f1) = (c.clone(), flag.clone());
    let (c2, f2) = (c.clone(), flag.clone());
    served_again(
        || flag.set(0),
        move || {
            let mut g = c1.acquire().unwrap_or_else(|d| d.into_inner());
            g.wait_for(|| f1.get() == 1, Some(LONG))
        },
        move || {
            let g = c2.acquire().unwrap_or_else(|d| d.into_inner());
            f2.set(1);
            g.notify(1);
        },
    )?;
    Ok(0)
}

// ===== Barrier =====

fn barrier_wait((b, ready): (Barrier, Event)) {
    ready.set();
    exit(b.wait_timeout(LONG).is_ok());
}

fn barrier_waiter_killed(_: &mut Rng) -> Round {
    let b = Barrier::new(3);
    let v = start_settled(barrier_wait, |ready| (b.clone(), ready))?;
    let w = start_settled(barrier_wait, |ready| (b.clone(), ready))?;
    kill(&v);
    // The dead party counts as arrived (as in Python): the third arrival completes the round.
    let b2 = b.clone();
    let mine = within("Barrier::wait", move || b2.wait_timeout(LONG))?;
    if mine.is_err() {
        return Err("the round broke".into());
    }
    verdict(&w)?;
    // Later rounds: a thread waits, a second one sleeps, this one completes the round.
    for _ in 0..AGAIN {
        let b1 = b.clone();
        let first = std::thread::spawn(move || b1.wait_timeout(LONG).is_ok());
        eventually("a party waits", || b.n_waiting() == 1);
        let (b2, b3) = (b.clone(), b.clone());
        served_once(
            move || b2.wait_timeout(LONG).is_ok(),
            move || {
                let _ = b3.wait_timeout(LONG);
            },
        )?;
        if !first.join().unwrap_or(false) {
            return Err("a later round broke".into());
        }
    }
    Ok(0)
}

/// A barrier action that never returns: it marks that it started, then sleeps.
fn stall() {
    let _ = std::fs::File::create(stall_marker(std::os::unix::process::parent_id()));
    park_forever();
}

fn stall_marker(parent: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cf-barrier-action-{parent}"))
}

fn barrier_broken((b, ready): (Barrier, Event)) {
    ready.set();
    exit(b.wait_timeout(LONG) == Err(BrokenBarrierError));
}

fn barrier_last_party(b: Barrier) {
    let _ = b.wait();
}

fn barrier_action_runner_killed(_: &mut Rng) -> Round {
    let marker = stall_marker(std::process::id());
    let _ = std::fs::remove_file(&marker);
    let b = Barrier::with_action(3, stall);

    let w = start_settled(barrier_broken, |ready| (b.clone(), ready))?;
    let b2 = b.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(b2.wait_timeout(LONG));
    });
    eventually("two parties wait", || b.n_waiting() == 2);
    let v = start(barrier_last_party, b.clone());
    eventually("the last party runs the action", || marker.exists());
    kill(&v);
    let _ = std::fs::remove_file(&marker);
    match rx.recv_timeout(LONG) {
        Ok(Err(BrokenBarrierError)) => {}
        Ok(Ok(_)) => return Err("the round passed without its action".into()),
        Err(_) => return Err("a party stayed stuck after the action's death".into()),
    }
    verdict(&w)?;
    if !b.broken() {
        return Err("the barrier is not broken".into());
    }
    b.reset();
    // The round is lost with the action's process: the barrier broke.
    Ok(1)
}

// ===== Queue, JoinableQueue =====

fn queue_get((q, ready, want): (Queue<u64>, Event, u64)) {
    ready.set();
    exit(q.get_timeout(LONG) == Ok(want));
}

const SENTINEL: u64 = u64::MAX;

fn queue_getter_killed(_: &mut Rng) -> Round {
    let q = Queue::new(0);
    let v = start_settled(queue_get, |ready| (q.clone(), ready, SENTINEL))?;
    let w = start_settled(queue_get, |ready| (q.clone(), ready, SENTINEL))?;
    kill(&v);
    let q2 = q.clone();
    within("Queue::put", move || {
        q2.put(SENTINEL).expect("put");
        q2.join_thread();
    })?;
    verdict(&w)?;
    let (q1, q2) = (q.clone(), q.clone());
    served_again(
        || {},
        move || q1.get_timeout(LONG) == Ok(SENTINEL),
        move || {
            q2.put(SENTINEL).expect("put");
            q2.join_thread();
        },
    )?;
    Ok(0)
}

/// Puts numbered items of 1.5 KiB forever, recording how many `put` returned.
fn produce_forever((q, n): (Queue<(u64, Vec<u8>)>, Value<u64>)) {
    for i in 0.. {
        q.put((i, vec![i as u8; 1536])).expect("put");
        n.set(i + 1);
    }
}

fn big_get((q, ready): (Queue<(u64, Vec<u8>)>, Event)) {
    ready.set();
    exit(matches!(q.get_timeout(LONG), Ok((SENTINEL, _))));
}

fn queue_producer_killed_mid_put(rng: &mut Rng) -> Round {
    // A small ring: the producer keeps waiting for room, items are written by its feeder
    // thread, and the kill lands anywhere in `put`, in the feeder's write, or in between.
    let q = Queue::with_buffer(0, 4096);
    let n = Value::new(0u64);
    let v = start(produce_forever, (q.clone(), n.clone()));
    let k = 1 + rng.below(300);
    let mut got = Vec::new();
    while (got.len() as u64) < k {
        match q.get_timeout(LONG) {
            Ok((i, body)) if body.len() == 1536 && body.iter().all(|&b| b == i as u8) => {
                got.push(i)
            }
            Ok((i, _)) => return Err(format!("item {i} arrived damaged")),
            Err(e) => return Err(format!("get before the kill: {e:?}")),
        }
    }
    kill(&v);
    let put = n.get();
    // Whatever was written whole arrives; the rest is lost with the producer.
    loop {
        match q.get_timeout(Duration::from_millis(200)) {
            Ok((i, body)) if body.len() == 1536 && body.iter().all(|&b| b == i as u8) => {
                got.push(i)
            }
            Ok((i, _)) => return Err(format!("item {i} arrived damaged")),
            Err(GetError::Empty) => break,
            Err(e) => return Err(format!("get after the kill: {e:?}")),
        }
    }
    if got.windows(2).any(|w| w[1] != w[0] + 1) || got.first() != Some(&0) {
        return Err(format!(
            "items out of order or missing in the middle: {got:?}"
        ));
    }
    // A new consumer waits, a new producer puts: the consumer must get it.
    let w = start_settled(big_get, |ready| (q.clone(), ready))?;
    let q2 = q.clone();
    within("Queue::put by a new producer", move || {
        q2.put((SENTINEL, Vec::new())).expect("put");
        q2.join_thread();
    })?;
    verdict(&w)?;
    // Items `put` accepted and the feeder never wrote are lost, and still counted by
    // `qsize` (as in Python, where they hold the queue's semaphore).
    let lost = put.saturating_sub(got.len() as u64);
    let phantoms = q.qsize() as u64;
    if phantoms + 1 < lost || phantoms > lost + 1 {
        return Err(format!("{phantoms} items counted, {lost} lost"));
    }
    let (q1, q2) = (q.clone(), q.clone());
    served_again(
        || {},
        move || matches!(q1.get_timeout(LONG), Ok((SENTINEL, _))),
        move || {
            q2.put((SENTINEL, Vec::new())).expect("put");
            q2.join_thread();
        },
    )?;
    Ok(lost)
}

/// Gets items forever, recording how many it got.
fn consume_forever((q, n): (Queue<u64>, Value<u64>)) {
    let mut c = 0;
    while q.get().is_ok() {
        c += 1;
        n.set(c);
    }
}

fn queue_getter_killed_mid_get(rng: &mut Rng) -> Round {
    // All of them fit in the ring (16 bytes each): the kill lands long before the end.
    const N: u64 = 50_000;
    let q = Queue::new(0);
    let n = Value::new(0u64);
    for i in 0..N {
        q.put(i).map_err(|e| format!("{e:?}"))?;
    }
    let v = start(consume_forever, (q.clone(), n.clone()));
    let k = 1 + rng.below(1000);
    eventually("the consumer ran", || n.get() >= k);
    kill(&v);
    let taken = n.get();
    q.join_thread();
    let mut rest = Vec::new();
    while let Ok(i) = q.get_nowait() {
        rest.push(i);
    }
    if rest.windows(2).any(|w| w[1] != w[0] + 1) || rest.last().is_some_and(|&l| l != N - 1) {
        return Err(format!("the items left are not the queue's tail: {rest:?}"));
    }
    // (If the consumer got everything before the kill landed, it died waiting.)
    let first_left = rest.first().copied().unwrap_or(N);
    let lost = first_left
        .checked_sub(taken)
        .ok_or("an item was got twice")?;
    let w = start_settled(queue_get, |ready| (q.clone(), ready, SENTINEL))?;
    let q2 = q.clone();
    within("Queue::put", move || {
        q2.put(SENTINEL).expect("put");
        q2.join_thread();
    })?;
    verdict(&w)?;
    let (q1, q2) = (q.clone(), q.clone());
    served_again(
        || {},
        move || q1.get_timeout(LONG) == Ok(SENTINEL),
        move || {
            q2.put(SENTINEL).expect("put");
            q2.join_thread();
        },
    )?;
    Ok(lost)
}

fn simple_get((q, ready): (SimpleQueue<u64>, Event)) {
    ready.set();
    exit(q.get() == Ok(SENTINEL));
}

fn simple_queue_getter_killed(_: &mut Rng) -> Round {
    let q = SimpleQueue::new();
    let v = start_settled(simple_get, |ready| (q.clone(), ready))?;
    let w = start_settled(simple_get, |ready| (q.clone(), ready))?;
    kill(&v);
    let q2 = q.clone();
    within("SimpleQueue::put", move || q2.put(SENTINEL).expect("put"))?;
    verdict(&w)?;
    let (q1, q2) = (q.clone(), q.clone());
    served_again(
        || {},
        move || q1.get() == Ok(SENTINEL),
        move || q2.put(SENTINEL).expect("put"),
    )?;
    Ok(0)
}

/// Gets and marks done forever, recording how many it marked done.
fn work_forever((q, n): (JoinableQueue<u64>, Value<u64>)) {
    let mut c = 0;
    while q.get().is_ok() {
        if q.task_done().is_err() {
            exit(false);
        }
        c += 1;
        n.set(c);
    }
}

fn joiner((q, ready): (JoinableQueue<u64>, Event)) {
    ready.set();
    exit(q.join_timeout(LONG));
}

fn joinable_worker_killed_mid_task_done(rng: &mut Rng) -> Round {
    const N: u64 = 50_000;
    let q = JoinableQueue::new(0);
    let n = Value::new(0u64);
    for i in 0..N {
        q.put(i).map_err(|e| format!("{e:?}"))?;
    }
    q.join_thread();
    let v = start(work_forever, (q.clone(), n.clone()));
    let k = 1 + rng.below(1000);
    eventually("the worker ran", || n.get() >= k);
    kill(&v);
    let mut rest = 0;
    while q.get_nowait().is_ok() {
        rest += 1;
    }
    for _ in 0..rest {
        q.task_done().map_err(|_| "task_done refused")?;
    }
    // One more item, taken and not done yet, so that the joiner below surely waits.
    q.put(SENTINEL).map_err(|e| format!("{e:?}"))?;
    q.join_thread();
    if q.get_timeout(LONG) != Ok(SENTINEL) {
        return Err("the extra item did not come back".into());
    }
    // Items the worker took and did not mark done stay unfinished (as in Python): the live
    // joiner waits for them; our task_done calls stand in for the dead worker's.
    let w = start_settled(joiner, |ready| (q.clone(), ready))?;
    let q2 = q.clone();
    let lost: u64 = within("JoinableQueue::task_done", move || {
        let mut k = 0;
        while q2.task_done().is_ok() {
            k += 1;
        }
        k
    })?;
    verdict(&w)?;
    let (q1, q2) = (q.clone(), q.clone());
    served_again(
        || {
            q.put(SENTINEL).expect("put");
            q.join_thread();
            assert_eq!(q.get_timeout(LONG), Ok(SENTINEL));
        },
        move || q1.join_timeout(LONG),
        move || q2.task_done().expect("one unfinished item"),
    )?;
    Ok(lost
        .checked_sub(1)
        .ok_or("the extra item was not unfinished")?)
}

// ===== Value, Array =====

fn value_hold((v, ready): (Value<u64>, Event)) {
    let mut g = v.get_lock().unwrap_or_else(|d| d.into_inner());
    *g = 41;
    std::mem::forget(g);
    ready.set();
    park_forever();
}

fn value_expect((v, ready): (Value<u64>, Event)) {
    ready.set();
    let ok = match v.get_lock() {
        Err(died) => *died.into_inner() == 41,
        Ok(_) => false,
    };
    exit(ok);
}

fn value_holder_killed(_: &mut Rng) -> Round {
    let v = Value::new(0u64);
    let p = start_settled(value_hold, |ready| (v.clone(), ready))?;
    let w = start_settled(value_expect, |ready| (v.clone(), ready))?;
    kill(&p);
    verdict(&w)?;
    let v2 = v.clone();
    if within("Value::get", move || v2.get())? != 41 {
        return Err("the value changed".into());
    }
    Ok(0)
}

fn array_writer((a, n): (Array<u64>, Value<u64>)) {
    for round in 1.. {
        for x in a.get_lock().unwrap_or_else(|d| d.into_inner()).iter_mut() {
            *x = round;
        }
        n.set(round);
    }
}

fn array_writer_killed(rng: &mut Rng) -> Round {
    let a = Array::<u64>::zeroed(64);
    let n = Value::new(0u64);
    let p = start(array_writer, (a.clone(), n.clone()));
    let k = 1 + rng.below(2000);
    eventually("the writer ran", || n.get() >= k);
    kill(&p);
    let a2 = a.clone();
    let seen = within("Array::get_lock", move || {
        let died = a2.get_lock().is_err();
        (died, a2.to_vec())
    })?;
    if seen.1.len() != 64 {
        return Err("the array's length changed".into());
    }
    // The writer died between two elements only if it died holding the lock.
    let torn = seen.1.iter().any(|&x| x != seen.1[0]);
    if torn && !seen.0 {
        return Err("a half-written array without an owner-died report".into());
    }
    Ok(0)
}

// ===== Pipe =====

fn pipe_recv((c, ready): (Connection<u64>, Event)) {
    ready.set();
    let _ = c.recv();
    exit(false);
}

fn pipe_peer_killed(_: &mut Rng) -> Round {
    let (a, b): (Connection<u64>, Connection<u64>) =
        Pipe::new(true).map_err(|e| format!("{e:?}"))?;
    let r1 = Event::new();
    let v = start(pipe_recv, (b, r1.clone()));
    if !r1.wait_timeout(LONG) {
        return Err("the child never got ready".into());
    }
    let v_pid = pid(&v);
    eventually("the child waits in recv", || asleep_in(v_pid, None));
    kill(&v);
    match within("Connection::recv", move || a.recv())? {
        Err(ConnectionError::Eof) => Ok(0),
        other => Err(format!("expected EOF, got {other:?}")),
    }
}

// ===== the scenarios =====

type Scenario = (
    &'static str,
    &'static str,
    &'static str,
    u64,
    fn(&mut Rng) -> Round,
);

/// (primitive, where the process is killed, what it may take with it, the most it may
/// take per round, the round).
const SCENARIOS: &[Scenario] = &[
    ("Lock", "holding", "—", 0, lock_holder_killed),
    ("Lock", "waiting", "—", 0, lock_waiter_killed),
    ("RLock", "holding (twice)", "—", 0, rlock_holder_killed),
    ("Semaphore", "waiting", "—", 0, semaphore_waiter_killed),
    (
        "BoundedSemaphore",
        "waiting",
        "—",
        0,
        bounded_semaphore_waiter_killed,
    ),
    (
        "Semaphore",
        "holding a permit",
        "permits it held",
        1,
        semaphore_holder_killed,
    ),
    ("Event", "waiting", "—", 0, event_waiter_killed),
    ("Event", "mid-set/clear", "—", 0, event_setter_killed),
    ("Condition", "waiting", "—", 0, condition_waiter_killed),
    ("Condition", "mid-notify", "—", 0, condition_notifier_killed),
    ("Barrier", "waiting", "—", 0, barrier_waiter_killed),
    (
        "Barrier",
        "running the action",
        "rounds broken",
        1,
        barrier_action_runner_killed,
    ),
    ("Queue", "waiting in get", "—", 0, queue_getter_killed),
    (
        "SimpleQueue",
        "waiting in get",
        "—",
        0,
        simple_queue_getter_killed,
    ),
    (
        "Queue",
        "mid-put (producer)",
        "items put, never written",
        u64::MAX,
        queue_producer_killed_mid_put,
    ),
    (
        "Queue",
        "mid-get (consumer)",
        "items it had taken out",
        1,
        queue_getter_killed_mid_get,
    ),
    (
        "JoinableQueue",
        "mid-task_done",
        "items taken, never done",
        1,
        joinable_worker_killed_mid_task_done,
    ),
    ("Value", "holding its lock", "—", 0, value_holder_killed),
    ("Array", "mid-write", "—", 0, array_writer_killed),
    ("Pipe", "waiting in recv", "—", 0, pipe_peer_killed),
];

fn scenario(name: &str, point: &str) -> Row {
    let _serial = SERIAL.lock();
    let &(primitive, point, lost_what, _, round) = SCENARIOS
        .iter()
        .find(|s| s.0 == name && s.1.starts_with(point))
        .expect("a scenario");
    run(primitive, point, lost_what, ROUNDS, round)
}

fn max_lost(name: &str, point: &str) -> u64 {
    SCENARIOS
        .iter()
        .find(|s| s.0 == name && s.1.starts_with(point))
        .map(|s| s.3)
        .unwrap_or(0)
}

macro_rules! fault_test {
    ($test:ident, $name:literal, $point:literal) => {
        #[test]
        fn $test() {
            let _w = watchdog(stringify!($test));
            check(scenario($name, $point), max_lost($name, $point));
        }
    };
}

fault_test!(lock_holder, "Lock", "holding");
fault_test!(lock_waiter, "Lock", "waiting");
fault_test!(rlock_holder, "RLock", "holding");
fault_test!(semaphore_waiter, "Semaphore", "waiting");
fault_test!(semaphore_holder, "Semaphore", "holding");
fault_test!(event_waiter, "Event", "waiting");
fault_test!(event_setter_dies, "Event", "mid-set");
fault_test!(condition_waiter, "Condition", "waiting");
fault_test!(condition_notifier, "Condition", "mid-notify");
fault_test!(barrier_waiter, "Barrier", "waiting");
fault_test!(barrier_action_runner, "Barrier", "running");
fault_test!(queue_getter_waiting, "Queue", "waiting");
fault_test!(simple_queue_getter_waiting, "SimpleQueue", "waiting");
fault_test!(bounded_semaphore_waiter, "BoundedSemaphore", "waiting");
fault_test!(queue_producer_mid_put, "Queue", "mid-put");
fault_test!(queue_consumer_mid_get, "Queue", "mid-get");
fault_test!(joinable_mid_task_done, "JoinableQueue", "mid-task_done");
fault_test!(value_holder, "Value", "holding");
fault_test!(array_writer_dies, "Array", "mid-write");
fault_test!(pipe_peer, "Pipe", "waiting");

/// Prints the README's table: every scenario, `CF_FAULT_ROUNDS` rounds (default 20).
#[test]
#[ignore = "prints the README's fault table; run with --ignored --nocapture"]
fn fault_table() {
    let rounds = std::env::var("CF_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let _serial = SERIAL.lock();
    let started = Instant::now();
    println!("| primitive | killed while | tried | survived | lost |");
    println!("|---|---|---|---|---|");
    let mut failed = Vec::new();
    for &(primitive, point, lost_what, _, round) in SCENARIOS {
        let row = run(primitive, point, lost_what, rounds, round);
        let lost = if row.lost == 0 {
            "nothing".to_string()
        } else {
            format!("{}: {}", row.lost, row.lost_what)
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            row.primitive, row.point, row.tried, row.survived, lost
        );
        failed.extend(row.failures);
    }
    println!(
        "({} rounds per row, {:.0} s; tried: processes killed; survived: the live waiter \
         was served and the primitive works after)",
        rounds,
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "{failed:?}");
}
