//! `multiprocessing::Condition`: a wait returns only for a notification given to it (or its
//! timeout), `notify(n)` wakes at most `n`, `notify_all` every current waiter; with waiters
//! in threads and in child processes, also under CPU load. Ports CPython's `test_notify`,
//! `test_notify_all`, `test_notify_n` and `test_timeout` (`_test_multiprocessing.py`).
#![cfg(target_os = "linux")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{LONG, join, watchdog};
use concurrent_futures::multiprocessing::{Condition, Process, Semaphore, Value};

/// A bounded look for a wake-up that must not come: long enough to catch an extra waiter
/// woken by the notification just made (it is already running), short enough for the suite.
const QUIET: Duration = Duration::from_millis(300);

/// CPython's `f`: take the lock, say so, wait (with a timeout if given), say so.
fn f((cond, sleeping, woken, timeout_ms): (Condition, Semaphore, Semaphore, Option<u64>)) {
    let mut held = cond.acquire().unwrap();
    sleeping.release();
    match timeout_ms {
        Some(ms) => {
            held.wait_timeout(Duration::from_millis(ms));
        }
        None => held.wait(),
    }
    woken.release();
}

/// Waiters in `procs` child processes and `threads` threads of this one.
struct Waiters {
    procs: Vec<Process>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Waiters {
    fn start(
        procs: usize,
        threads: usize,
        args: &(Condition, Semaphore, Semaphore, Option<u64>),
    ) -> Waiters {
        let procs: Vec<Process> = (0..procs)
            .map(|_| {
                let p = Process::new(f, args.clone());
                p.start().unwrap();
                p
            })
            .collect();
        let threads = (0..threads)
            .map(|_| {
                let a = args.clone();
                std::thread::spawn(move || f(a))
            })
            .collect();
        Waiters { procs, threads }
    }

    fn join(self) {
        for p in &self.procs {
            assert_eq!(join(p), 0);
        }
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// Takes `n` from `sem`, each within `LONG`.
fn take(sem: &Semaphore, n: usize, what: &str) {
    for i in 0..n {
        sem.acquire_timeout(LONG)
            .unwrap_or_else(|| panic!("{what}: {i} of {n} within {LONG:?}"))
            .forget();
    }
}

/// Nothing more comes within `QUIET`.
fn no_more(sem: &Semaphore, what: &str) {
    assert!(sem.acquire_timeout(QUIET).is_none(), "{what}");
}

fn notify(cond: &Condition, n: usize) {
    cond.acquire().unwrap().notify(n);
}

#[test]
fn test_notify() {
    let _w = watchdog("test_notify");
    let (cond, sleeping, woken) = (Condition::new(), Semaphore::new(0), Semaphore::new(0));
    let waiters = Waiters::start(1, 1, &(cond.clone(), sleeping.clone(), woken.clone(), None));
    // Both are asleep (each said so holding the lock, which `notify` takes after them).
    take(&sleeping, 2, "both waiters start");
    no_more(&woken, "nobody wakes without a notify");
    notify(&cond, 1);
    take(&woken, 1, "notify(1) wakes one");
    no_more(&woken, "notify(1) wakes only one");
    notify(&cond, 1);
    take(&woken, 1, "the second notify(1) wakes the other");
    waiters.join();
}

#[test]
fn test_notify_all() {
    let _w = watchdog("test_notify_all");
    let (cond, sleeping, woken) = (Condition::new(), Semaphore::new(0), Semaphore::new(0));
    // Waiters that time out.
    let timed = Waiters::start(
        3,
        3,
        &(cond.clone(), sleeping.clone(), woken.clone(), Some(50)),
    );
    take(&sleeping, 6, "the timed waiters start");
    take(&woken, 6, "the timed waiters time out");
    timed.join();
    // Waiters without a timeout.
    let waiters = Waiters::start(3, 3, &(cond.clone(), sleeping.clone(), woken.clone(), None));
    take(&sleeping, 6, "the waiters start");
    no_more(&woken, "nobody wakes without a notify");
    cond.acquire().unwrap().notify_all();
    take(&woken, 6, "notify_all wakes everyone");
    waiters.join();
}

#[test]
fn test_notify_n() {
    let _w = watchdog("test_notify_n");
    let (cond, sleeping, woken) = (Condition::new(), Semaphore::new(0), Semaphore::new(0));
    let waiters = Waiters::start(3, 3, &(cond.clone(), sleeping.clone(), woken.clone(), None));
    take(&sleeping, 6, "the waiters start");
    no_more(&woken, "nobody wakes without a notify");
    notify(&cond, 2);
    take(&woken, 2, "notify(2) wakes two");
    no_more(&woken, "notify(2) wakes only two");
    notify(&cond, 4);
    take(&woken, 4, "notify(4) wakes the other four");
    // Nobody is left: a notify wakes nobody and is not kept for a later waiter.
    notify(&cond, 3);
    let late = Waiters::start(0, 1, &(cond.clone(), sleeping.clone(), woken.clone(), None));
    take(&sleeping, 1, "a late waiter starts");
    no_more(&woken, "a notify given before a wait does not end it");
    notify(&cond, 1);
    take(&woken, 1, "the late waiter's own notify");
    waiters.join();
    late.join();
}

#[test]
fn test_timeout() {
    let _w = watchdog("test_timeout");
    let cond = Condition::new();
    let mut held = cond.acquire().unwrap();
    let t = Instant::now();
    assert!(!held.wait_timeout(Duration::from_millis(100)));
    assert!(t.elapsed() >= Duration::from_millis(100));
}

/// A waiter of the stress test: `rounds` waits; each return must match a notify counted by
/// the notifier (`notifies`, under the lock); a return beyond them is counted in `extra`.
fn counted_waiter(
    (cond, sleeping, notifies, returns, extra, rounds): (
        Condition,
        Semaphore,
        Value<u64>,
        Value<u64>,
        Value<u64>,
        u32,
    ),
) {
    for _ in 0..rounds {
        let mut held = cond.acquire().unwrap();
        sleeping.release();
        held.wait();
        let r = returns.get() + 1;
        returns.set(r);
        if r > notifies.get() {
            extra.set(extra.get() + 1);
        }
    }
}

#[test]
fn notify_one_wakes_exactly_one_under_cpu_load() {
    let _w = watchdog("notify_one_wakes_exactly_one_under_cpu_load");
    const PROCS: usize = 3;
    const THREADS: usize = 3;
    const ROUNDS: u32 = 40;
    // Busy threads: waiters are preempted anywhere, between releasing the lock and sleeping
    // in particular.
    let stop = Arc::new(AtomicBool::new(false));
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    let busy: Vec<_> = (0..2 * cpus)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let (cond, sleeping) = (Condition::new(), Semaphore::new(0));
    let (notifies, returns, extra) = (Value::new(0u64), Value::new(0u64), Value::new(0u64));
    let args = (
        cond.clone(),
        sleeping.clone(),
        notifies.clone(),
        returns.clone(),
        extra.clone(),
        ROUNDS,
    );
    let procs: Vec<Process> = (0..PROCS)
        .map(|_| {
            let p = Process::new(counted_waiter, args.clone());
            p.start().unwrap();
            p
        })
        .collect();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let a = args.clone();
            std::thread::spawn(move || counted_waiter(a))
        })
        .collect();
    let total = (PROCS + THREADS) as u64 * u64::from(ROUNDS);
    for i in 0..total {
        // Someone waits (it said so holding the lock, which the notify takes after it).
        take(&sleeping, 1, "a waiter");
        let held = cond.acquire().unwrap();
        notifies.set(i + 1);
        held.notify(1);
        drop(held);
    }
    for p in &procs {
        assert_eq!(join(p), 0);
    }
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.join().unwrap();
    }
    assert_eq!(
        extra.get(),
        0,
        "waits that returned without a notify of their own"
    );
    assert_eq!(returns.get(), total, "every wait returned once");
}

#[test]
fn waiters_killed_in_their_wait_take_no_notification() {
    let _w = watchdog("waiters_killed_in_their_wait_take_no_notification");
    let (cond, sleeping, woken) = (Condition::new(), Semaphore::new(0), Semaphore::new(0));
    let args = (cond.clone(), sleeping.clone(), woken.clone(), None);
    // The oldest waiters, in children, killed while they wait: more of them than the
    // condition has slots, so that a later waiter must free the slots of the dead.
    for _ in 0..70 {
        let doomed = Process::new(f, args.clone());
        doomed.start().unwrap();
        take(&sleeping, 1, "the child waits");
        // The lock is free once the child sleeps (its wait released it): killed in the wait.
        drop(cond.acquire().unwrap());
        doomed.kill().unwrap();
        assert_ne!(join(&doomed), 0);
    }
    // A waiter in this process: notify(1) is for it, not for a dead one.
    let waiters = Waiters::start(0, 1, &args);
    take(&sleeping, 1, "the thread waits");
    notify(&cond, 1);
    take(&woken, 1, "notify(1) wakes the living waiter");
    waiters.join();
    // Nobody waits: a notify harms nothing, and the next waiter waits for its own.
    notify(&cond, 1);
    let waiters = Waiters::start(1, 0, &args);
    take(&sleeping, 1, "a child waits");
    no_more(&woken, "no notification was kept");
    notify(&cond, 1);
    take(&woken, 1, "its own notify wakes it");
    waiters.join();
}
