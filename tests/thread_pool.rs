//! The shared behavioural suite on `ThreadPoolExecutor`, plus what only a thread pool does.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use common::{Gate, LONG, eventually, watchdog};
use concurrent_futures::{
    BuildError, Executor, Future, State, SubmitError, TaskError, ThreadPoolExecutor,
};

executor_suite!(ThreadPoolExecutor::new(2));

mod one_worker {
    //! The suite again with caller-runs off, so only workers run tasks.
    use super::*;
    executor_suite!(
        ThreadPoolExecutor::builder()
            .max_workers(2)
            .caller_runs(false)
            .build()
            .unwrap()
    );
}

#[test]
fn spawn_runs_capturing_closures() {
    let _w = watchdog("spawn_runs_capturing_closures");
    let pool = ThreadPoolExecutor::new(3);
    let data = Arc::new(vec![1u64, 2, 3]);
    let futs: Vec<_> = (0..10)
        .map(|i| {
            let data = data.clone();
            pool.spawn(move || data.iter().sum::<u64>() * i)
        })
        .collect();
    let got: Vec<u64> = futs
        .iter()
        .map(|f| f.result_timeout(LONG).unwrap())
        .collect();
    assert_eq!(got, (0..10).map(|i| 6 * i).collect::<Vec<_>>());
}

#[test]
fn zero_workers_is_an_error() {
    assert!(matches!(
        ThreadPoolExecutor::builder().max_workers(0).build(),
        Err(BuildError::ZeroWorkers)
    ));
    let e = ThreadPoolExecutor::builder()
        .max_workers(0)
        .build()
        .unwrap_err();
    assert_eq!(e.to_string(), "max_workers must be greater than 0");
}

#[test]
#[should_panic(expected = "max_workers must be greater than 0")]
fn new_with_zero_workers_panics_clearly() {
    let _ = ThreadPoolExecutor::new(0);
}

#[test]
fn default_workers_is_pythons_min_32_cpus_plus_4() {
    let pool = ThreadPoolExecutor::builder().build().unwrap();
    assert_eq!(pool.max_workers(), (num_cpus() + 4).min(32));
    assert_eq!(
        ThreadPoolExecutor::default().max_workers(),
        pool.max_workers()
    );
}

fn num_cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn threads_are_named_with_the_prefix() {
    let _w = watchdog("threads_are_named_with_the_prefix");
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .thread_name_prefix("fetch")
        .caller_runs(false)
        .build()
        .unwrap();
    let name = pool.spawn(|| thread::current().name().unwrap().to_owned());
    let name = name.result_timeout(LONG).unwrap();
    assert!(name == "fetch_0" || name == "fetch_1", "{name}");
    let default = ThreadPoolExecutor::new(1);
    assert!(
        default
            .thread_name_prefix()
            .starts_with("ThreadPoolExecutor-")
    );
}

#[test]
fn initializer_runs_once_per_worker() {
    let _w = watchdog("initializer_runs_once_per_worker");
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let pool = ThreadPoolExecutor::builder()
        .max_workers(3)
        .initializer(move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let futs: Vec<_> = (0..50).map(|i| pool.spawn(move || i)).collect();
    for f in &futs {
        f.result_timeout(LONG).unwrap();
    }
    pool.shutdown(true);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[test]
fn failing_initializer_breaks_the_pool() {
    let _w = watchdog("failing_initializer_breaks_the_pool");
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .initializer(|| panic!("no database"))
        .build()
        .unwrap();
    let f = pool.spawn(|| 1);
    match f.result_timeout(LONG) {
        Err(TaskError::Broken(msg)) => assert!(msg.contains("no database"), "{msg}"),
        Err(TaskError::Submit(SubmitError::Broken(msg))) => {
            assert!(msg.contains("no database"), "{msg}")
        }
        other => panic!("expected a broken pool, got {other:?}"),
    }
    eventually("the pool reports broken", || {
        matches!(pool.try_spawn(|| 1), Err(SubmitError::Broken(_)))
    });
    let err = pool.try_spawn(|| 2).unwrap_err();
    assert!(err.to_string().contains("broken"), "{err}");
}

#[test]
fn nested_submit_does_not_deadlock_on_one_worker() {
    let _w = watchdog("nested_submit_does_not_deadlock_on_one_worker");
    let pool = Arc::new(ThreadPoolExecutor::new(1));
    let p = pool.clone();
    let outer = pool.spawn(move || {
        // Submitted from inside the only worker: goes to its local deque; waiting on it
        // runs it inline instead of deadlocking.
        let inner: Vec<_> = (0..10).map(|i| p.spawn(move || i * i)).collect();
        inner.iter().map(|f| f.result().unwrap()).sum::<u64>()
    });
    assert_eq!(outer.result_timeout(LONG), Ok(285));
}

#[test]
fn waiting_thread_runs_a_pending_task_itself() {
    let _w = watchdog("waiting_thread_runs_a_pending_task_itself");
    let pool = ThreadPoolExecutor::new(1);
    let mut gate = Gate::closed();
    let held = pool.submit(common::hold, (gate.path(), 1));
    eventually("held", || held.running());
    let me = thread::current().id();
    let p = pool.spawn(move || thread::current().id());
    assert_eq!(p.result(), Ok(me), "result() ran the pending task here");
    gate.open();
    assert_eq!(held.result_timeout(LONG), Ok(1));
}

#[test]
fn caller_runs_off_keeps_tasks_on_workers() {
    let _w = watchdog("caller_runs_off_keeps_tasks_on_workers");
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .caller_runs(false)
        .build()
        .unwrap();
    let mut gate = Gate::closed();
    let held = pool.submit(common::hold, (gate.path(), 1));
    eventually("held", || held.running());
    let me = thread::current().id();
    let p = pool.spawn(move || thread::current().id());
    let (tx, rx) = mpsc::channel();
    let opener = thread::spawn(move || {
        rx.recv().unwrap();
        gate.open();
    });
    assert_eq!(p.state(), State::Pending);
    tx.send(()).unwrap();
    let ran_on = p.result().unwrap();
    assert_ne!(ran_on, me);
    opener.join().unwrap();
}

#[test]
fn callback_of_pending_future_runs_on_the_completing_worker() {
    let _w = watchdog("callback_of_pending_future_runs_on_the_completing_worker");
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .thread_name_prefix("cbw")
        .build()
        .unwrap();
    let mut gate = Gate::closed();
    let held = pool.submit(common::hold, (gate.path(), 1));
    eventually("held", || held.running());
    let (tx, rx) = mpsc::channel();
    held.add_done_callback(move |_| {
        tx.send(thread::current().name().map(str::to_owned))
            .unwrap()
    });
    gate.open();
    assert_eq!(rx.recv_timeout(LONG).unwrap().as_deref(), Some("cbw_0"));
}

#[test]
fn external_work_is_not_starved_by_local_work() {
    let _w = watchdog("external_work_is_not_starved_by_local_work");
    // One worker keeps feeding its own deque forever (each task resubmits itself from
    // inside the worker); an external task must still run.
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(1)
            .caller_runs(false)
            .build()
            .unwrap(),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    fn chain(pool: Arc<ThreadPoolExecutor>, stop: Arc<std::sync::atomic::AtomicBool>) {
        if !stop.load(Ordering::SeqCst) {
            let p = pool.clone();
            drop(pool.spawn(move || chain(p, stop)));
        }
    }
    let (p, s) = (pool.clone(), stop.clone());
    pool.spawn(move || chain(p, s));
    let external = pool.spawn(|| 42);
    assert_eq!(external.result_timeout(LONG), Ok(42));
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn submit_racing_shutdown_never_loses_a_task() {
    let _w = watchdog("submit_racing_shutdown_never_loses_a_task");
    for _ in 0..50 {
        let pool = Arc::new(ThreadPoolExecutor::new(2));
        let start = Arc::new(Barrier::new(5));
        let submitters: Vec<_> = (0..4)
            .map(|_| {
                let (pool, start) = (pool.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    (0..200).map(|i| pool.spawn(move || i)).collect::<Vec<_>>()
                })
            })
            .collect();
        start.wait();
        pool.shutdown_with(false, false);
        for s in submitters {
            for (i, f) in s.join().unwrap().into_iter().enumerate() {
                match f.result_timeout(LONG) {
                    Ok(v) => assert_eq!(v, i),
                    Err(TaskError::Submit(SubmitError::Shutdown)) => {}
                    Err(e) => panic!("task {i}: {e}"),
                }
            }
        }
    }
}

/// Rounds of the racing tests (Miri interprets a few hundred times slower than native).
const RACES: usize = if cfg!(miri) { 200 } else { 20_000 };

#[test]
fn cancel_racing_start_is_exclusive() {
    let _w = watchdog("cancel_racing_start_is_exclusive");
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .caller_runs(false)
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut cancelled = 0;
    for _ in 0..RACES {
        let r = runs.clone();
        let f = pool.spawn(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        if f.cancel() {
            cancelled += 1;
            assert_eq!(f.result(), Err(TaskError::Cancelled));
        } else {
            assert!(f.wait_timeout(LONG));
            assert_eq!(f.result(), Ok(()));
        }
    }
    pool.shutdown(true);
    assert_eq!(runs.load(Ordering::SeqCst) + cancelled, RACES);
}

#[test]
fn callback_racing_completion_runs_once() {
    let _w = watchdog("callback_racing_completion_runs_once");
    let pool = ThreadPoolExecutor::new(2);
    let calls = Arc::new(AtomicUsize::new(0));
    let futs: Vec<Future<u32>> = (0..RACES as u32)
        .map(|i| {
            let f = pool.spawn(move || i);
            let c = calls.clone();
            f.add_done_callback(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            });
            f
        })
        .collect();
    for f in futs {
        f.into_result().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), RACES);
}

#[test]
fn dropping_the_pool_waits_for_accepted_work() {
    let _w = watchdog("dropping_the_pool_waits_for_accepted_work");
    let pool = ThreadPoolExecutor::new(2);
    let futs: Vec<_> = (0..100)
        .map(|i| pool.spawn(move || common::fib(i % 18)))
        .collect();
    drop(pool);
    assert!(futs.iter().all(Future::done));
}

#[test]
fn shutdown_from_inside_a_task_does_not_deadlock() {
    let _w = watchdog("shutdown_from_inside_a_task_does_not_deadlock");
    let pool = Arc::new(ThreadPoolExecutor::new(2));
    let p = pool.clone();
    let f = pool.spawn(move || p.shutdown(true));
    assert_eq!(f.result_timeout(LONG), Ok(()));
    assert!(pool.try_spawn(|| ()).is_err());
}

#[test]
fn stack_size_is_applied() {
    let _w = watchdog("stack_size_is_applied");
    fn depth(n: u64) -> u64 {
        let pad = std::hint::black_box([n; 64]);
        if n == 0 {
            0
        } else {
            1 + depth(n - 1) + (pad[63] - n)
        }
    }
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .stack_size(256 << 20)
        .build()
        .unwrap();
    // ~600 bytes per frame in debug builds: far beyond a default 2 MiB stack.
    let f = pool.spawn(|| depth(200_000));
    assert_eq!(f.result_timeout(LONG), Ok(200_000));
}

#[test]
fn a_million_tasks() {
    let _w = watchdog("a_million_tasks");
    let pool = ThreadPoolExecutor::new(2);
    let futs: Vec<_> = (0..1_000_000u64)
        .map(|i| pool.spawn(move || i ^ 1))
        .collect();
    let mut sum = 0u64;
    for f in futs {
        sum = sum.wrapping_add(f.into_result().unwrap());
    }
    let expected = (0..1_000_000u64).fold(0u64, |a, i| a.wrapping_add(i ^ 1));
    assert_eq!(sum, expected);
}

#[test]
fn timeouts_do_not_change_state_of_running_tasks() {
    let _w = watchdog("timeouts_do_not_change_state_of_running_tasks");
    let pool = ThreadPoolExecutor::new(1);
    let mut gate = Gate::closed();
    let held = pool.submit(common::hold, (gate.path(), 5));
    eventually("held", || held.running());
    assert_eq!(
        held.result_timeout(Duration::from_millis(5)),
        Err(TaskError::Timeout)
    );
    assert!(held.running());
    gate.open();
    assert_eq!(held.result_timeout(LONG), Ok(5));
}

// ===== `map` on the thread pool: blocks split among the workers and the caller =====

/// A value that counts its drops, to check that every item and result is dropped once.
#[derive(serde::Serialize, serde::Deserialize)]
struct Tracked {
    value: u64,
    /// Which counter of `LIVE` to update (one per test).
    slot: usize,
}

static LIVE: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

impl Tracked {
    fn new(value: u64, slot: usize) -> Tracked {
        LIVE[slot].fetch_add(1, Ordering::SeqCst);
        Tracked { value, slot }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        LIVE[self.slot].fetch_sub(1, Ordering::SeqCst);
    }
}

fn tracked_double(t: Tracked) -> Tracked {
    if t.value % 1000 == 999 {
        panic!("item {} fails", t.value);
    }
    Tracked::new(t.value * 2, t.slot)
}

#[test]
fn map_of_many_items_is_in_order_across_blocks() {
    let _w = watchdog("map_of_many_items_is_in_order_across_blocks");
    let pool = ThreadPoolExecutor::new(2);
    const N: u64 = 300_000;
    // Exact-size input (a range), and one of unknown length (a filter).
    let out: Vec<u64> = pool.map(common::double, 0..N).map(Result::unwrap).collect();
    assert_eq!(out, (0..N).map(|x| x * 2).collect::<Vec<_>>());
    let odd = (0..N).filter(|x| x % 3 != 0);
    let out: Vec<u64> = pool
        .map(common::double, odd.clone())
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, odd.map(|x| x * 2).collect::<Vec<_>>());
    // The fold path (sum) and `size_hint` of an exact input.
    let it = pool.map(common::double, vec![1u64; 50_000]);
    assert_eq!(it.size_hint(), (50_000, Some(50_000)));
    assert_eq!(it.map(Result::unwrap).sum::<u64>(), 100_000);
}

#[test]
fn map_takes_an_endless_input_lazily() {
    let _w = watchdog("map_takes_an_endless_input_lazily");
    let pool = ThreadPoolExecutor::new(2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        p.fetch_add(1, Ordering::SeqCst);
    });
    let mut it = pool.map(common::double, endless);
    for i in 0..100_000u64 {
        assert_eq!(it.next(), Some(Ok(i * 2)));
    }
    drop(it);
    // A bounded window ahead: two blocks at most.
    let taken = pulled.load(Ordering::SeqCst);
    assert!(
        taken <= 100_000 + 2 * (1 << 14),
        "took {taken} items for 100000 results"
    );
}

#[test]
fn map_failures_are_per_item_and_every_value_is_dropped_once() {
    let _w = watchdog("map_failures_are_per_item_and_every_value_is_dropped_once");
    // (Miri interprets a few hundred times slower: a twentieth of the items there.)
    const ITEMS: u64 = if cfg!(miri) { 1_000 } else { 20_000 };
    let pool = ThreadPoolExecutor::new(2);
    let items: Vec<Tracked> = (0..ITEMS).map(|i| Tracked::new(i, 0)).collect();
    let mut failed = 0;
    for (i, r) in pool.map(tracked_double, items).enumerate() {
        match r {
            Ok(t) => assert_eq!(t.value, 2 * i as u64),
            Err(e) => {
                assert_eq!(i % 1000, 999, "item {i} failed: {e}");
                let p = e.panic().expect("a panic").clone();
                assert_eq!(p.message(), format!("item {i} fails"));
                failed += 1;
            }
        }
    }
    assert_eq!(failed, ITEMS / 1000);
    assert_eq!(
        LIVE[0].load(Ordering::SeqCst),
        0,
        "leaked or double-dropped"
    );
    // Stopping early, at several points, drops the items not run and the results not taken.
    for stop in [0, 1, 63, 64, 1000, 5000]
        .into_iter()
        .filter(|&s| s < ITEMS)
    {
        let items: Vec<Tracked> = (0..ITEMS).map(|i| Tracked::new(i, 1)).collect();
        let mut it = pool.map(tracked_double, items);
        for _ in 0..stop {
            assert!(it.next().is_some());
        }
        drop(it);
        pool.spawn(|| ()).result_timeout(LONG).unwrap();
        eventually("every item and result is dropped", || {
            LIVE[1].load(Ordering::SeqCst) == 0
        });
    }
}

fn cheap_failing(x: u64) -> u64 {
    assert!(x % 100_000 != 99_999, "item {x} fails");
    x ^ 0x5a
}

/// A million cheap items, across many blocks: per-item failures, order, and every value
/// dropped once when the iterator stops early.
#[test]
fn a_long_map_of_cheap_items_keeps_order_failures_and_drops() {
    let _w = watchdog("a_long_map_of_cheap_items_keeps_order_failures_and_drops");
    let pool = ThreadPoolExecutor::new(2);
    const N: u64 = 1_000_000;
    let mut failed = 0;
    for (i, r) in pool.map(cheap_failing, 0..N).enumerate() {
        let i = i as u64;
        if i % 100_000 == 99_999 {
            let e = r.expect_err("item should fail");
            assert_eq!(
                e.panic().expect("a panic").message(),
                format!("item {i} fails")
            );
            failed += 1;
        } else {
            assert_eq!(r, Ok(i ^ 0x5a));
        }
    }
    assert_eq!(failed, 10);
    for stop in [100_000, 250_001] {
        let items: Vec<Tracked> = (0..300_000).map(|i| Tracked::new(i, 3)).collect();
        let mut it = pool.map(tracked_double, items);
        for i in 0..stop {
            match it.next() {
                Some(Ok(t)) => assert_eq!(t.value, 2 * i),
                Some(Err(e)) => assert_eq!(i % 1000, 999, "item {i} failed: {e}"),
                None => panic!("ended at {i}"),
            }
        }
        drop(it);
        eventually("every item and result is dropped", || {
            LIVE[3].load(Ordering::SeqCst) == 0
        });
    }
}

/// The gate for `gated`: items other than 0 wait for it (bounded), then count themselves.
static GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());
static GATED_RAN: AtomicUsize = AtomicUsize::new(0);

fn gated(i: u64) -> u64 {
    if i > 0 {
        let (open, cv) = &GATE;
        let guard = open.lock().unwrap();
        let (guard, timeout) = cv.wait_timeout_while(guard, LONG, |open| !*open).unwrap();
        assert!(!timeout.timed_out(), "the gate never opened");
        drop(guard);
        GATED_RAN.fetch_add(1, Ordering::SeqCst);
    }
    i
}

#[test]
fn dropping_a_started_map_cancels_the_pieces_not_started() {
    let _w = watchdog("dropping_a_started_map_cancels_the_pieces_not_started");
    let pool = ThreadPoolExecutor::new(2);
    let mut it = pool.map(gated, 0..1000u64);
    assert_eq!(it.next(), Some(Ok(0)));
    drop(it);
    {
        let (open, cv) = &GATE;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    pool.shutdown(true);
    // Only what the two workers had started ran (the caller needed item 0 only).
    let ran = GATED_RAN.load(Ordering::SeqCst);
    assert!(ran <= 2, "{ran} gated items ran after the map was dropped");
}

#[test]
fn map_on_a_pool_shut_down_with_cancel_reports_cancelled_items() {
    let _w = watchdog("map_on_a_pool_shut_down_with_cancel_reports_cancelled_items");
    // Caller-runs off and one worker kept busy: the blocks stay queued until cancelled.
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .caller_runs(false)
        .build()
        .unwrap();
    let mut gate = Gate::closed();
    let blocker = pool.submit(common::hold, (gate.path(), 7));
    eventually("the worker runs the blocker", || blocker.running());
    let it = pool.map(common::double, 0..10u64);
    pool.shutdown_with(false, true);
    gate.open();
    let out: Vec<_> = it.collect();
    assert_eq!(out, vec![Err(TaskError::Cancelled); 10]);
    assert_eq!(blocker.result_timeout(LONG), Ok(7));
}

// ===== `map_indexed`: inputs split by position =====

#[test]
fn map_indexed_splits_ranges_and_vectors_in_order() {
    let _w = watchdog("map_indexed_splits_ranges_and_vectors_in_order");
    let pool = ThreadPoolExecutor::new(2);
    let out = pool.map_indexed(|x: u64| x ^ 5, 0..200_000u64).into_vec();
    assert_eq!(out, Ok((0..200_000u64).map(|x| x ^ 5).collect()));
    let out = pool.map_indexed(|x: i32| x * 2, -500..500i32).into_vec();
    assert_eq!(out, Ok((-500..500).map(|x| x * 2).collect()));
    let words: Vec<String> = (0..10_000).map(|i| format!("w{i}")).collect();
    let it = pool.map_indexed(|s: String| s.len(), words.clone());
    assert_eq!(it.len(), 10_000);
    let lens: Vec<usize> = it.map(Result::unwrap).collect();
    assert_eq!(lens, words.iter().map(String::len).collect::<Vec<_>>());
    // Captures are allowed.
    let offset = 10u8;
    assert_eq!(
        pool.map_indexed(move |x: u8| x + offset, 0..3u8).into_vec(),
        Ok(vec![10, 11, 12])
    );
    // Empty inputs.
    assert_eq!(pool.map_indexed(|x: u8| x, 5..5u8).into_vec(), Ok(vec![]));
    assert_eq!(pool.map_indexed(|x: u8| x, Vec::new()).count(), 0);
    let (hi, lo) = (3i8, -3i8);
    assert_eq!(pool.map_indexed(|x: i8| x, hi..lo).into_vec(), Ok(vec![]));
}

#[test]
fn map_indexed_failures_are_per_item() {
    let _w = watchdog("map_indexed_failures_are_per_item");
    let pool = ThreadPoolExecutor::new(2);
    let out: Vec<_> = pool
        .map_indexed(|x: u64| common::fail_on_odd(x), 0..5000u64)
        .collect();
    assert_eq!(out.len(), 5000);
    for (i, r) in out.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(r, &Ok(i as u64));
        } else {
            let p = r.as_ref().unwrap_err().panic().unwrap().clone();
            assert_eq!(p.message(), format!("odd input {i}"));
        }
    }
    let first = pool
        .map_indexed(|x: u64| common::fail_on_odd(x + 2), 0..5000u64)
        .into_vec()
        .unwrap_err();
    assert_eq!(first.panic().unwrap().message(), "odd input 3");
    // Every item and result is dropped once, whether iteration finishes, stops early, or
    // never starts.
    for stop in [None, Some(0), Some(1), Some(2500)] {
        let items: Vec<Tracked> = (0..5000).map(|i| Tracked::new(i, 2)).collect();
        let mut it = pool.map_indexed(tracked_double, items);
        match stop {
            None => assert_eq!(it.by_ref().filter(Result::is_err).count(), 5),
            Some(n) => {
                for _ in 0..n {
                    assert!(it.next().is_some());
                }
            }
        }
        drop(it);
        pool.spawn(|| ()).result_timeout(LONG).unwrap();
        eventually("every item and result is dropped", || {
            LIVE[2].load(Ordering::SeqCst) == 0
        });
    }
}

static INDEXED_GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());
static INDEXED_RAN: AtomicUsize = AtomicUsize::new(0);

#[test]
fn dropping_a_started_map_indexed_cancels_the_rest() {
    let _w = watchdog("dropping_a_started_map_indexed_cancels_the_rest");
    let pool = ThreadPoolExecutor::new(2);
    let items: Vec<u64> = (0..10_000).collect();
    let mut it = pool.map_indexed(
        |i: u64| {
            if i >= 1000 {
                let (open, cv) = &INDEXED_GATE;
                let g = open.lock().unwrap();
                let (_g, t) = cv.wait_timeout_while(g, LONG, |open| !*open).unwrap();
                assert!(!t.timed_out(), "the gate never opened");
                INDEXED_RAN.fetch_add(1, Ordering::SeqCst);
            }
            i
        },
        items,
    );
    assert_eq!(it.next(), Some(Ok(0)));
    drop(it);
    {
        let (open, cv) = &INDEXED_GATE;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    pool.shutdown(true);
    // Items from 1000 on wait for the gate: only the pieces the two workers had started
    // when the iterator was dropped ran (a piece is a small part of the input).
    let ran = INDEXED_RAN.load(Ordering::SeqCst);
    assert!(
        ran < 1000,
        "{ran} gated items ran after the iterator was dropped"
    );
}

#[test]
fn map_indexed_left_unused_still_runs_and_refuses_after_shutdown() {
    let _w = watchdog("map_indexed_left_unused_still_runs_and_refuses_after_shutdown");
    let pool = ThreadPoolExecutor::new(2);
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    drop(pool.map_indexed(
        move |_: u32| {
            h.fetch_add(1, Ordering::SeqCst);
        },
        0..1000u32,
    ));
    pool.shutdown(true);
    assert_eq!(hits.load(Ordering::SeqCst), 1000);
    let out: Vec<_> = pool.map_indexed(|x: u32| x, 0..10u32).collect();
    assert_eq!(out, vec![Err(TaskError::Submit(SubmitError::Shutdown))]);
    assert_eq!(
        pool.map_indexed(|x: u32| x, 0..10u32).into_vec(),
        Err(TaskError::Submit(SubmitError::Shutdown))
    );
}

#[test]
fn map_iterators_can_move_to_another_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let pool = ThreadPoolExecutor::new(2);
    let m = pool.map(common::double, 0..10u64);
    assert_send(&m);
    let mi = pool.map_indexed(|x: u64| x * 2, 0..10u64);
    assert_send(&mi);
    let total: u64 = thread::scope(|s| {
        s.spawn(move || mi.map(Result::unwrap).sum::<u64>())
            .join()
            .unwrap()
    });
    assert_eq!(total, 90);
    assert_eq!(m.map(Result::unwrap).sum::<u64>(), 90);
}

static AHEAD_PULLED: AtomicUsize = AtomicUsize::new(0);

/// Python's `buffersize` counts tasks (here chunks of `chunksize` items) submitted and not
/// yet yielded; each step submits the next before it yields: while chunk `k` is drained,
/// exactly `buffersize + k + 1` chunks were taken. (Before, the thread pool's blocks took the
/// next block only once the front one was drained.)
#[test]
fn map_buffersize_bounds_the_items_taken_ahead() {
    let _w = watchdog("map_buffersize_bounds_the_items_taken_ahead");
    let pool = ThreadPoolExecutor::new(2);
    let input = (0u64..).inspect(|_| {
        AHEAD_PULLED.fetch_add(1, Ordering::SeqCst);
    });
    let opts = concurrent_futures::MapOptions::new()
        .chunksize(5)
        .buffersize(3);
    let mut it = pool.map_with(common::double, input, opts);
    for i in 0..100u64 {
        assert_eq!(it.next(), Some(Ok(2 * i)));
        let chunk = i as usize / 5;
        assert_eq!(
            AHEAD_PULLED.load(Ordering::SeqCst),
            5 * (3 + chunk + 1),
            "after {i}"
        );
    }
}

#[test]
fn map_with_a_huge_chunksize_takes_what_there_is() {
    let _w = watchdog("map_with_a_huge_chunksize_takes_what_there_is");
    let pool = ThreadPoolExecutor::new(2);
    let opts = concurrent_futures::MapOptions::new().chunksize(usize::MAX);
    // No upper bound known: nothing may reserve `chunksize` items up front.
    let unknown_length = (0u64..).take_while(|x| *x < 1000).filter(|x| x % 2 == 0);
    let out: Vec<u64> = pool
        .map_with(common::double, unknown_length, opts)
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        out,
        (0..1000u64)
            .filter(|x| x % 2 == 0)
            .map(|x| x * 2)
            .collect::<Vec<_>>()
    );
}

#[test]
fn map_of_a_slow_input_yields_each_result_before_the_item_after_next() {
    let _w = watchdog("map_of_a_slow_input_yields_each_result_before_the_item_after_next");
    let pool = ThreadPoolExecutor::new(2);
    common::suite::map_of_a_slow_input_yields_each_result_before_the_item_after_next(&pool);
}

/// `size_hint` counts down exactly while the results are read one by one, most of them
/// from the middle of a block (a run the pool lends the iterator).
#[test]
fn map_size_hint_counts_down_exactly_inside_blocks() {
    let _w = watchdog("map_size_hint_counts_down_exactly_inside_blocks");
    let pool = ThreadPoolExecutor::new(2);
    let n = 50_000u64;
    let mut it = pool.map(common::double, 0..n);
    for i in 0..n {
        let left = (n - i) as usize;
        assert_eq!(it.size_hint(), (left, Some(left)), "before item {i}");
        assert_eq!(it.next(), Some(Ok(2 * i)));
    }
    assert_eq!(it.size_hint(), (0, Some(0)));
    assert_eq!(it.next(), None);
}
