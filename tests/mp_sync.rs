//! Locks, semaphores, events, conditions, barriers and shared values across processes.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::{LONG, join, watchdog};
use concurrent_futures::multiprocessing::{
    Array, Barrier, BoundedSemaphore, Condition, Event, Lock, Process, Queue, RLock, Semaphore,
    TryAcquireError, Value,
};

fn start_all(ps: &[Process]) {
    for p in ps {
        p.start().unwrap();
    }
}

fn join_all(ps: &[Process]) {
    for p in ps {
        assert_eq!(join(p), 0);
    }
}

/// Read, yield, write: loses updates unless the lock makes it atomic.
fn increment((lock, counter, n): (Lock, Value<u64>, u32)) {
    for _ in 0..n {
        let _held = lock.acquire().unwrap();
        let v = counter.get();
        std::thread::yield_now();
        counter.set(v + 1);
    }
}

#[test]
fn lock_makes_read_modify_write_atomic_across_processes() {
    let _w = watchdog("lock_makes_read_modify_write_atomic_across_processes");
    let (lock, counter) = (Lock::new(), Value::new(0u64));
    let ps: Vec<_> = (0..4)
        .map(|_| Process::new(increment, (lock.clone(), counter.clone(), 500)))
        .collect();
    start_all(&ps);
    join_all(&ps);
    assert_eq!(counter.get(), 2000);
}

fn hold_until((lock, held, release): (Lock, Event, Event)) {
    let _g = lock.acquire().unwrap();
    held.set();
    release.wait();
}

#[test]
fn try_and_timed_acquire_see_a_lock_held_by_another_process() {
    let _w = watchdog("try_and_timed_acquire_see_a_lock_held_by_another_process");
    let (lock, held, release) = (Lock::new(), Event::new(), Event::new());
    let p = Process::new(hold_until, (lock.clone(), held.clone(), release.clone()));
    p.start().unwrap();
    assert!(held.wait_timeout(LONG));
    assert!(matches!(
        lock.try_acquire(),
        Err(TryAcquireError::WouldBlock)
    ));
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(30)),
        Err(TryAcquireError::WouldBlock)
    ));
    release.set();
    let g = lock.acquire_timeout(LONG);
    assert!(g.is_ok(), "released by the child");
    drop(g);
    join(&p);
}

fn die_holding((lock, held): (Lock, Event)) {
    let g = lock.acquire().unwrap();
    std::mem::forget(g);
    held.set();
    std::process::exit(0); // dies holding the lock
}

#[test]
fn a_lock_whose_holder_died_reports_it_once() {
    let _w = watchdog("a_lock_whose_holder_died_reports_it_once");
    let (lock, held) = (Lock::new(), Event::new());
    let p = Process::new(die_holding, (lock.clone(), held.clone()));
    p.start().unwrap();
    assert!(held.wait_timeout(LONG));
    join(&p);
    match lock.acquire_timeout(LONG) {
        Err(TryAcquireError::OwnerDied(e)) => drop(e.into_inner()),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    // Recovered: later acquisitions are normal.
    assert!(lock.acquire().is_ok());
    assert!(lock.try_acquire().is_ok());
}

#[test]
fn value_lock_reports_a_dead_holder_and_get_set_carry_on() {
    let _w = watchdog("value_lock_reports_a_dead_holder");
    fn die_in_value((v, held): (Value<i32>, Event)) {
        let mut g = v.get_lock().unwrap();
        *g = 41;
        std::mem::forget(g);
        held.set();
        std::process::exit(0);
    }
    let (v, held) = (Value::new(0i32), Event::new());
    let p = Process::new(die_in_value, (v.clone(), held.clone()));
    p.start().unwrap();
    assert!(held.wait_timeout(LONG));
    join(&p);
    match v.get_lock() {
        Err(died) => *died.into_inner() += 1,
        Ok(_) => panic!("the dead holder was not reported"),
    }
    assert_eq!(v.get(), 42);
}

#[test]
fn rlock_is_reentrant_and_exclusive() {
    let lock = RLock::new();
    let outer = lock.acquire().unwrap();
    let inner = lock.acquire().unwrap();
    let other = lock.clone();
    let blocked =
        std::thread::spawn(move || matches!(other.try_acquire(), Err(TryAcquireError::WouldBlock)))
            .join()
            .unwrap();
    assert!(blocked, "another thread must wait");
    drop(inner);
    drop(outer);
    let other = lock.clone();
    assert!(
        std::thread::spawn(move || other.try_acquire().is_ok())
            .join()
            .unwrap()
    );
}

fn occupy((sem, busy, peak, go): (Semaphore, Value<u32>, Value<u32>, Event)) {
    go.wait();
    let _permit = sem.acquire();
    let now = {
        let mut b = busy.get_lock().unwrap();
        *b += 1;
        *b
    };
    {
        let mut p = peak.get_lock().unwrap();
        *p = (*p).max(now);
    }
    std::thread::sleep(Duration::from_millis(20));
    *busy.get_lock().unwrap() -= 1;
}

#[test]
fn semaphore_bounds_concurrency_across_processes() {
    let _w = watchdog("semaphore_bounds_concurrency_across_processes");
    let (sem, busy, peak, go) = (
        Semaphore::new(2),
        Value::new(0u32),
        Value::new(0u32),
        Event::new(),
    );
    let ps: Vec<_> = (0..5)
        .map(|_| {
            Process::new(
                occupy,
                (sem.clone(), busy.clone(), peak.clone(), go.clone()),
            )
        })
        .collect();
    start_all(&ps);
    go.set();
    join_all(&ps);
    assert!(
        peak.get() <= 2,
        "at most two holders at once, saw {}",
        peak.get()
    );
    assert_eq!(sem.get_value(), 2);
}

#[test]
fn semaphore_timeouts_and_bounds() {
    let s = Semaphore::new(1);
    let g = s.acquire();
    assert!(s.try_acquire().is_none());
    assert!(s.acquire_timeout(Duration::from_millis(20)).is_none());
    drop(g);
    assert!(s.try_acquire().is_some());
    let b = BoundedSemaphore::new(1);
    b.acquire().forget();
    assert!(b.release().is_ok());
    assert!(b.release().is_err(), "beyond the initial value");
    assert_eq!(b.get_value(), 1);
}

fn event_waiter((e, timeout_ms, out): (Event, Option<u64>, Queue<bool>)) {
    let set = match timeout_ms {
        Some(ms) => e.wait_timeout(Duration::from_millis(ms)),
        None => {
            e.wait();
            e.is_set()
        }
    };
    out.put(set).unwrap();
}

#[test]
fn event_wait_with_and_without_timeout_across_processes() {
    let _w = watchdog("event_wait_with_and_without_timeout_across_processes");
    let (e, out) = (Event::new(), Queue::new(0));
    let timed = Process::new(event_waiter, (e.clone(), Some(20), out.clone()));
    timed.start().unwrap();
    assert_eq!(out.get_timeout(LONG), Ok(false), "timed out before set");
    let blocking = Process::new(event_waiter, (e.clone(), None, out.clone()));
    blocking.start().unwrap();
    e.set();
    assert_eq!(out.get_timeout(LONG), Ok(true));
    join(&timed);
    join(&blocking);
    e.clear();
    assert!(!e.is_set());
}

fn wait_for_flag((cond, flag, out): (Condition, Value<u32>, Queue<u32>)) {
    let mut g = cond.acquire().unwrap();
    let ok = g.wait_for(|| flag.get() == 1, Some(LONG));
    drop(g);
    out.put(u32::from(ok)).unwrap();
}

#[test]
fn condition_notifies_another_process() {
    let _w = watchdog("condition_notifies_another_process");
    let (cond, flag, out) = (Condition::new(), Value::new(0u32), Queue::new(0));
    let p = Process::new(wait_for_flag, (cond.clone(), flag.clone(), out.clone()));
    p.start().unwrap();
    {
        let g = cond.acquire().unwrap();
        flag.set(1);
        g.notify_all();
    }
    assert_eq!(out.get_timeout(LONG), Ok(1));
    join(&p);
}

fn barrier_party((b, out): (Barrier, Queue<u32>)) {
    out.put(b.wait().unwrap()).unwrap();
}

#[test]
fn barrier_releases_all_parties_with_distinct_indexes() {
    let _w = watchdog("barrier_releases_all_parties_with_distinct_indexes");
    let (b, out) = (Barrier::new(3), Queue::new(0));
    let ps: Vec<_> = (0..3)
        .map(|_| Process::new(barrier_party, (b.clone(), out.clone())))
        .collect();
    start_all(&ps);
    let mut got: Vec<u32> = (0..3).map(|_| out.get_timeout(LONG).unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![0, 1, 2]);
    join_all(&ps);
}

#[test]
fn barrier_timeout_abort_and_reset() {
    let _w = watchdog("barrier_timeout_abort_and_reset");
    let b = Barrier::new(2);
    assert!(b.wait_timeout(Duration::from_millis(10)).is_err());
    assert!(b.broken());
    b.reset();
    assert!(!b.broken());
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || b2.wait());
    common::eventually("a party waits", || b.n_waiting() == 1);
    b.abort();
    assert!(
        waiter.join().unwrap().is_err(),
        "abort wakes the waiter with an error"
    );
    b.reset();
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || b2.wait());
    common::eventually("a party waits", || b.n_waiting() == 1);
    b.reset();
    assert!(
        waiter.join().unwrap().is_err(),
        "reset breaks the current waiters"
    );
}

fn fill((a, base): (Array<f64>, f64)) {
    for (i, x) in a.get_lock().unwrap().iter_mut().enumerate() {
        *x = base + i as f64;
    }
}

#[test]
fn array_is_shared_with_children() {
    let _w = watchdog("array_is_shared_with_children");
    let a = Array::<f64>::zeroed(4);
    let p = Process::new(fill, (a.clone(), 0.5));
    p.start().unwrap();
    join(&p);
    assert_eq!(a.to_vec(), vec![0.5, 1.5, 2.5, 3.5]);
    assert_eq!(a.get(3), Some(3.5));
    assert_eq!(a.get(4), None);
}

#[test]
fn primitives_refuse_to_be_encoded_as_data() {
    use concurrent_futures::multiprocessing::PutError;
    let q: Queue<Lock> = Queue::new(0);
    match q.put(Lock::new()) {
        Err(PutError::Encode(_, msg)) => assert!(msg.contains("Process"), "{msg}"),
        other => panic!("expected an encoding error, got {:?}", other.map(|_| ())),
    }
}

/// The test process's pid, in the test process and in its children alike.
fn test_pid() -> u32 {
    if concurrent_futures::multiprocessing::current_process().name() == "MainProcess" {
        std::process::id()
    } else {
        std::os::unix::process::parent_id()
    }
}

fn action_log() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cf-barrier-action-log-{}", test_pid()))
}

/// A barrier action: appends this process's pid to the log.
fn log_round() {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(action_log())
        .expect("open the log");
    writeln!(f, "{}", std::process::id()).expect("write the log");
}

fn explode() {
    panic!("the action failed");
}

#[test]
fn barrier_action_runs_once_per_round_in_the_last_arriving_process() {
    let _w = watchdog("barrier_action_runs_once_per_round_in_the_last_arriving_process");
    let _ = std::fs::remove_file(action_log());
    let (b, out) = (Barrier::with_action(3, log_round), Queue::new(0));
    // Two rounds: the parent's thread and one child wait first, the other child arrives
    // last and runs the action.
    for _ in 0..2 {
        let b2 = b.clone();
        let here = std::thread::spawn(move || b2.wait_timeout(LONG));
        let first = Process::new(barrier_party, (b.clone(), out.clone()));
        first.start().unwrap();
        common::eventually("two parties wait", || b.n_waiting() == 2);
        let last = Process::new(barrier_party, (b.clone(), out.clone()));
        last.start().unwrap();
        let mut got = vec![
            out.get_timeout(LONG).unwrap(),
            out.get_timeout(LONG).unwrap(),
        ];
        got.push(here.join().unwrap().unwrap());
        got.sort();
        assert_eq!(got, vec![0, 1, 2]);
        join_all(&[first, last]);
    }
    let log = std::fs::read_to_string(action_log()).unwrap();
    let _ = std::fs::remove_file(action_log());
    let runners: Vec<&str> = log.lines().collect();
    assert_eq!(runners.len(), 2, "one action per round: {log:?}");
    assert!(
        runners.iter().all(|p| *p != std::process::id().to_string()),
        "the last arriving process ran it, not this one: {log:?}"
    );
}

#[test]
fn a_panicking_barrier_action_breaks_the_round_for_every_party() {
    let _w = watchdog("a_panicking_barrier_action_breaks_the_round_for_every_party");
    let b = Barrier::with_action(2, explode);
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || b2.wait_timeout(LONG));
    common::eventually("a party waits", || b.n_waiting() == 1);
    assert!(
        b.wait_timeout(LONG).is_err(),
        "the party that ran the action"
    );
    assert!(waiter.join().unwrap().is_err(), "the party that waited");
    assert!(b.broken());
    b.reset();
    assert!(!b.broken());
}
