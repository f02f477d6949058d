//! The behavioural suite every backend must pass, written once over `E: Executor`.
//!
//! `executor_suite!(expr)` instantiates one `#[test]` per function below, each with a
//! fresh executor from `expr` (which must have at least two workers) and a watchdog.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use concurrent_futures::{
    Executor, Future, MapOptions, ReturnWhen, State, SubmitError, TaskError, TimeoutError,
    as_completed, wait,
};

use super::*;

/// Calls `$callback!($($args)*; every test of the suite)`: the one list of the suite's tests.
#[macro_export]
macro_rules! suite_tests {
    ($callback:ident!($($args:tt)*)) => {
        $crate::$callback! {$($args)*;
            states_follow_python, cancel_only_while_pending, cancelled_task_never_runs,
            result_reports_panic_message, result_timeout_leaves_future_unchanged,
            exception_mirrors_python, callbacks_run_once_in_order,
            callback_on_done_future_runs_on_caller, callback_panic_is_contained,
            wait_first_completed, wait_first_exception, wait_all_completed_and_timeout,
            wait_counts_duplicates_once, as_completed_yields_done_first_and_once,
            as_completed_timeout_reports_unfinished, await_does_not_block,
            result_by_value_and_by_ref, map_in_order_and_lazy, map_errors_per_item,
            map_chunksize_and_unordered, map_buffersize_follows_python, map_timeout,
            map_drop_cancels_unstarted,
            map_without_iteration_still_runs,
            submit_after_shutdown_fails, shutdown_runs_accepted_work,
            shutdown_cancel_futures, concurrent_submitters}
    };
}

#[macro_export]
macro_rules! executor_suite {
    ($make:expr) => {
        $crate::suite_tests!(executor_suite!(@tests $make));
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let _w = common::watchdog(stringify!($name));
                let pool = $make;
                common::suite::$name(&pool);
            }
        )*
    };
}

/// The suite as a table of `(name, test)` for executor type `$ty`, for a test binary that
/// runs them itself (one pool session each), such as the MPI one.
#[macro_export]
macro_rules! suite_table {
    ($ty:ty) => {
        $crate::suite_tests!(suite_table!(@table $ty))
    };
    (@table $ty:ty; $($name:ident),* $(,)?) => {
        &[$((stringify!($name), common::suite::$name::<$ty> as fn(&$ty))),*]
    };
}

/// Submits `hold` tasks until the pool takes no more: every worker runs one, every dispatch
/// window is full (process pools send a few tasks ahead), and the last one submitted is
/// still pending. Returns them all, in order; task `i` returns `i`. Whatever the test submits
/// next stays pending until the gate opens.
fn occupy<E: Executor>(pool: &E, gate: &Gate) -> Vec<Future<u64>> {
    let mut held = Vec::new();
    loop {
        let f = pool.submit(hold, (gate.path(), held.len() as u64));
        if held.len() < pool.max_workers() {
            eventually("a worker takes the task", || f.running());
        } else if f.state() == State::Pending {
            held.push(f);
            return held;
        }
        held.push(f);
    }
}

/// Submits one `hold` task and waits until it runs (leaving the other workers free).
fn hold_one<E: Executor>(pool: &E, gate: &Gate) -> Future<u64> {
    let f = pool.submit(hold, (gate.path(), 99));
    eventually("the held task runs", || f.running());
    f
}

pub fn states_follow_python<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let held = occupy(pool, &gate);
    let p = pool.submit(double, 4);
    assert_eq!(p.state(), State::Pending);
    assert!(!p.running() && !p.done() && !p.cancelled());
    assert_eq!(held[0].state(), State::Running);
    gate.open();
    for (i, h) in held.iter().enumerate() {
        assert_eq!(h.result_timeout(LONG), Ok(i as u64));
        assert_eq!(h.state(), State::Finished);
    }
    assert_eq!(p.result_timeout(LONG), Ok(8));
    assert!(p.done() && !p.running() && !p.cancelled());
}

pub fn cancel_only_while_pending<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let held = occupy(pool, &gate);
    let pending = pool.submit(double, 1);
    assert!(pending.cancel(), "a pending future cancels");
    assert!(pending.cancelled() && pending.done());
    assert!(pending.cancel(), "cancelling twice still returns true");
    assert!(!held[0].cancel(), "a running future does not cancel");
    gate.open();
    assert!(held[0].result_timeout(LONG).is_ok());
    assert!(!held[0].cancel(), "a finished future does not cancel");
    assert_eq!(pending.result_timeout(LONG), Err(TaskError::Cancelled));
    assert_eq!(pending.state(), State::Cancelled);
}

pub fn cancelled_task_never_runs<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let held = occupy(pool, &gate);
    let marks: Vec<_> = (0..4).map(|_| marker("cancel")).collect();
    let futs: Vec<_> = marks
        .iter()
        .map(|m| pool.submit(touch, m.to_string_lossy().into_owned()))
        .collect();
    for f in &futs {
        assert!(f.cancel());
    }
    gate.open();
    for h in &held {
        h.result_timeout(LONG).unwrap();
    }
    // A task queued after the cancelled ones has run, so the workers went past them.
    let last = marker("after");
    let after = pool.submit(touch, last.to_string_lossy().into_owned());
    assert_eq!(after.result_timeout(LONG), Ok(true));
    pool.shutdown(true);
    for m in &marks {
        assert!(!m.exists(), "a cancelled task ran");
    }
    let _ = std::fs::remove_file(last);
}

pub fn result_reports_panic_message<E: Executor>(pool: &E) {
    let err = pool
        .submit(always_panic, ())
        .result_timeout(LONG)
        .unwrap_err();
    let p = err.panic().expect("a panic error");
    assert_eq!(p.message(), "task exploded");
    let loc = p.location().expect("panic location");
    assert!(loc.contains("common/mod.rs"), "location {loc}");
    assert!(err.to_string().contains("task exploded"));
    // The worker survived.
    assert_eq!(pool.submit(double, 21).result_timeout(LONG), Ok(42));
}

pub fn result_timeout_leaves_future_unchanged<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let held = occupy(pool, &gate);
    let p = pool.submit(double, 1);
    assert_eq!(
        p.result_timeout(Duration::from_millis(10)),
        Err(TaskError::Timeout)
    );
    assert_eq!(p.exception_timeout(Duration::ZERO), Err(TaskError::Timeout));
    assert_eq!(
        p.result_ref_timeout(Duration::ZERO),
        Err(TaskError::Timeout)
    );
    assert!(!p.wait_timeout(Duration::from_millis(1)));
    assert_eq!(p.state(), State::Pending);
    gate.open();
    assert_eq!(p.result_timeout(LONG), Ok(2));
    drop(held);
}

pub fn exception_mirrors_python<E: Executor>(pool: &E) {
    assert_eq!(pool.submit(double, 1).exception(), Ok(None));
    let e = pool.submit(always_panic, ()).exception().unwrap();
    assert!(matches!(e, Some(TaskError::Panicked(_))));
    let mut gate = Gate::closed();
    let held = occupy(pool, &gate);
    let p = pool.submit(double, 1);
    assert!(p.cancel());
    assert_eq!(p.exception(), Err(TaskError::Cancelled));
    gate.open();
    drop(held);
}

pub fn callbacks_run_once_in_order<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let held = occupy(pool, &gate);
    let p = pool.submit(double, 5);
    let calls = Arc::new(Mutex::new(Vec::new()));
    for id in 1..=3 {
        let calls = calls.clone();
        p.add_done_callback(move |f| {
            assert_eq!(f.result(), Ok(10));
            calls.lock().unwrap().push(id);
        });
    }
    gate.open();
    assert!(p.wait_timeout(LONG));
    // `into_result` returns once the callbacks have run.
    assert_eq!(p.into_result(), Ok(10));
    assert_eq!(*calls.lock().unwrap(), vec![1, 2, 3]);
    drop(held);
}

pub fn callback_on_done_future_runs_on_caller<E: Executor>(pool: &E) {
    let f = pool.submit(double, 2);
    assert_eq!(f.result_timeout(LONG), Ok(4));
    let (tx, rx) = mpsc::channel();
    let me = thread::current().id();
    f.add_done_callback(move |f| tx.send((thread::current().id(), f.result())).unwrap());
    // Ran synchronously: the message is already there.
    assert_eq!(rx.try_recv(), Ok((me, Ok(4))));
    // Also for a cancelled future.
    let c: Future<u64> = Future::new();
    assert!(c.cancel());
    let (tx, rx) = mpsc::channel();
    c.add_done_callback(move |f| tx.send(f.cancelled()).unwrap());
    assert_eq!(rx.try_recv(), Ok(true));
}

pub fn callback_panic_is_contained<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let held = occupy(pool, &gate);
    let p = pool.submit(double, 3);
    let (tx, rx) = mpsc::channel();
    p.add_done_callback(|_| panic!("callback exploded"));
    p.add_done_callback(move |f| tx.send(f.result()).unwrap());
    gate.open();
    assert_eq!(rx.recv_timeout(LONG), Ok(Ok(6)));
    // Workers are fine.
    assert_eq!(pool.submit(double, 4).result_timeout(LONG), Ok(8));
    drop(held);
}

pub fn wait_first_completed<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let h = hold_one(pool, &gate);
    let quick = pool.submit(double, 1);
    let res = wait([&h, &quick], Some(LONG), ReturnWhen::FirstCompleted);
    assert_eq!(res.done, vec![&quick]);
    assert_eq!(res.not_done, vec![&h]);
    gate.open();
}

pub fn wait_first_exception<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let h = hold_one(pool, &gate);
    let ok = pool.submit(double, 1);
    assert_eq!(ok.result_timeout(LONG), Ok(2));
    let bad = pool.submit(always_panic, ());
    let res = wait([&h, &ok, &bad], Some(LONG), ReturnWhen::FirstException);
    assert!(res.done.contains(&&bad) && res.done.contains(&&ok));
    assert_eq!(res.not_done, vec![&h]);
    gate.open();
    // Without a failure, FirstException waits for all.
    let fs: Vec<_> = (0..4).map(|i| pool.submit(double, i)).collect();
    let res = wait(&fs, Some(LONG), ReturnWhen::FirstException);
    assert_eq!(res.done.len(), 4);
}

pub fn wait_all_completed_and_timeout<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let h = hold_one(pool, &gate);
    let q = pool.submit(double, 1);
    // `q` done first (bounded), so that the short wait below only times out on `h`.
    assert_eq!(q.result_timeout(LONG), Ok(2));
    let res = wait(
        [&h, &q],
        Some(Duration::from_millis(20)),
        ReturnWhen::AllCompleted,
    );
    assert_eq!(
        res.not_done,
        vec![&h],
        "timeout leaves the held task not done"
    );
    assert_eq!(res.done, vec![&q]);
    gate.open();
    let res = wait([&h, &q], Some(LONG), ReturnWhen::AllCompleted);
    assert_eq!(res.done.len(), 2);
    assert!(res.not_done.is_empty());
}

pub fn wait_counts_duplicates_once<E: Executor>(pool: &E) {
    let a = pool.submit(double, 1);
    let b = pool.submit(double, 2);
    let res = wait([&a, &a, &b, &a], Some(LONG), ReturnWhen::AllCompleted);
    assert_eq!(res.done.len(), 2);
    let set: HashSet<_> = res.done.into_iter().collect();
    assert!(set.contains(&a) && set.contains(&b));
}

pub fn as_completed_yields_done_first_and_once<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let a = pool.submit(double, 1);
    assert_eq!(a.result_timeout(LONG), Ok(2));
    let h = hold_one(pool, &gate);
    let mut it = as_completed([&h, &a, &a, &h], Some(LONG));
    assert_eq!(it.next(), Some(Ok(&a)), "the done future comes first");
    gate.open();
    assert_eq!(it.next(), Some(Ok(&h)));
    assert_eq!(it.next(), None, "each future once");
}

pub fn as_completed_timeout_reports_unfinished<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let a = pool.submit(double, 1);
    assert!(a.wait_timeout(LONG));
    let h = hold_one(pool, &gate);
    let got: Vec<_> = as_completed([&a, &h], Some(Duration::from_millis(20))).collect();
    assert_eq!(
        got,
        vec![
            Ok(&a),
            Err(TimeoutError {
                unfinished: 1,
                total: 2
            })
        ]
    );
    gate.open();
}

/// Drives a future to completion on this thread (a minimal executor).
fn block_on<F: std::future::Future>(mut fut: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    // SAFETY: `fut` is a local that is never moved after being pinned here.
    let mut fut = unsafe { Pin::new_unchecked(&mut fut) };
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park_timeout(LONG);
    }
}

pub fn await_does_not_block<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let mut held = occupy(pool, &gate);
    let mut first = held.remove(0);
    // Polling a running future returns Pending at once.
    let noop = Waker::noop();
    let mut cx = Context::from_waker(noop);
    assert!(Pin::new(&mut first).poll(&mut cx).is_pending());
    gate.open();
    assert_eq!(block_on(first), Ok(0));
    assert_eq!(block_on(pool.submit(double, 8)), Ok(16));
    let err = block_on(pool.submit(always_panic, ())).unwrap_err();
    assert!(err.panic().is_some());
}

pub fn result_by_value_and_by_ref<E: Executor>(pool: &E) {
    let f = pool.submit(echo_bytes, vec![7u8; 1000]);
    assert_eq!(f.result_ref(), Ok(&1000));
    assert_eq!(f.result(), Ok(1000));
    assert_eq!(f.result(), Ok(1000), "result() can be called again");
    assert_eq!(f.into_result(), Ok(1000));
}

pub fn map_in_order_and_lazy<E: Executor>(pool: &E) {
    let out: Vec<u64> = pool.map(double, 0..1000).map(Result::unwrap).collect();
    assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
    // An endless input is consumed lazily.
    let first: Vec<u64> = pool.map(double, 0..).take(50).map(Result::unwrap).collect();
    assert_eq!(first, (0..50).map(|x| x * 2).collect::<Vec<_>>());
    // Empty input.
    assert_eq!(pool.map(double, Vec::new()).count(), 0);
}

pub fn map_errors_per_item<E: Executor>(pool: &E) {
    let out: Vec<_> = pool
        .map_with(fail_on_odd, 0..10, MapOptions::new().chunksize(3))
        .collect();
    assert_eq!(out.len(), 10);
    for (i, r) in out.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(r, &Ok(i as u64));
        } else {
            let p = r.as_ref().unwrap_err().panic().unwrap().clone();
            assert_eq!(p.message(), format!("odd input {i}"));
        }
    }
    // Collecting into a Result stops at the first error.
    let r: Result<Vec<u64>, _> = pool.map(fail_on_odd, 0..10).collect();
    assert!(r.is_err());
}

pub fn map_chunksize_and_unordered<E: Executor>(pool: &E) {
    let opts = MapOptions::new().chunksize(7).buffersize(2);
    let out: Vec<u64> = pool
        .map_with(double, 0..100, opts)
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, (0..100).map(|x| x * 2).collect::<Vec<_>>());
    let mut un: Vec<u64> = pool
        .map_unordered(double, 0..500)
        .map(Result::unwrap)
        .collect();
    un.sort_unstable();
    assert_eq!(un, (0..500).map(|x| x * 2).collect::<Vec<_>>());
    let errs = pool
        .map_unordered(fail_on_odd, 0..10)
        .filter(Result::is_err)
        .count();
    assert_eq!(errs, 5);
}

pub fn to_string(x: u64) -> String {
    x.to_string()
}

pub fn add(pair: (u64, u64)) -> u64 {
    pair.0 + pair.1
}

/// An endless input that counts how many items were taken from it.
fn counted(taken: &Arc<std::sync::atomic::AtomicUsize>) -> impl Iterator<Item = u64> + use<> {
    let taken = taken.clone();
    (0u64..).inspect(move |_| {
        taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
}

/// CPython 3.14's `test_map_buffersize*` (Lib/test/test_concurrent_futures/executor.py),
/// ported: `buffersize` tasks are submitted at once, and each step submits one more before
/// it yields; the input's consumption is counted by an iterator that records how far it
/// was pulled.
pub fn map_buffersize_follows_python<E: Executor>(pool: &E) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let with = |b: usize| MapOptions::new().buffersize(b);
    // test_map_buffersize, test_map_buffersize_on_multiple_iterables
    for b in [1, 2, 4, 8] {
        let out: Vec<String> = pool
            .map_with(to_string, 0..4, with(b))
            .map(Result::unwrap)
            .collect();
        assert_eq!(out, ["0", "1", "2", "3"], "buffersize {b}");
        let out: Vec<u64> = pool
            .map_with(add, (0..4).zip(0..4), with(b))
            .map(Result::unwrap)
            .collect();
        assert_eq!(out, [0, 2, 4, 6], "buffersize {b}");
    }
    // test_map_buffersize_on_infinite_iterable, ..._on_multiple_infinite_iterables
    let mut res = pool.map_with(to_string, 0u64.., with(2));
    for want in ["0", "1", "2"] {
        assert_eq!(res.next(), Some(Ok(want.to_string())));
    }
    drop(res);
    let mut res = pool.map_with(add, (0u64..).zip(0u64..), with(2));
    for want in [0, 2, 4] {
        assert_eq!(res.next(), Some(Ok(want)));
    }
    drop(res);
    // test_map_buffersize_on_empty_iterable
    assert!(
        pool.map_with(to_string, std::iter::empty(), with(2))
            .next()
            .is_none()
    );
    // test_map_buffersize_when_buffer_is_full: only `buffersize` items taken
    let taken = Arc::new(AtomicUsize::new(0));
    let res = pool.map_with(to_string, counted(&taken), with(2));
    assert_eq!(
        taken.load(SeqCst),
        2,
        "should have taken only `buffersize` items"
    );
    drop(res);
    // test_map_buffersize_when_buffer_becomes_not_full: one `next` submits one more
    for b in [1, 2, 3] {
        let taken = Arc::new(AtomicUsize::new(0));
        let mut res = pool.map_with(to_string, counted(&taken), with(b));
        assert_eq!(res.next(), Some(Ok("0".to_string())));
        assert_eq!(
            taken.load(SeqCst),
            b + 1,
            "buffersize {b}: `buffersize + 1` taken"
        );
        for i in 1..20u64 {
            assert_eq!(res.next(), Some(Ok(i.to_string())));
            assert_eq!(
                taken.load(SeqCst),
                b + 1 + i as usize,
                "buffersize {b}, step {i}"
            );
        }
    }
    // With a `chunksize`, `buffersize` counts chunks, as Python's tasks.
    let taken = Arc::new(AtomicUsize::new(0));
    let mut res = pool.map_with(to_string, counted(&taken), with(3).chunksize(5));
    for i in 0..100u64 {
        assert_eq!(res.next(), Some(Ok(i.to_string())));
        let chunk = i as usize / 5;
        assert_eq!(taken.load(SeqCst), 5 * (3 + chunk + 1), "step {i}");
    }
}

pub fn map_timeout<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let inputs = vec![(gate.path(), 1), (gate.path(), 2)];
    let opts = MapOptions::new()
        .timeout(Duration::from_millis(30))
        .chunksize(1);
    let out: Vec<_> = pool.map_with(hold, inputs.clone(), opts).collect();
    assert_eq!(out, vec![Err(TaskError::Timeout)]);
    let opts = MapOptions::new()
        .timeout(Duration::from_millis(30))
        .chunksize(1);
    let out: Vec<_> = pool.map_unordered_with(hold, inputs, opts).collect();
    assert_eq!(out, vec![Err(TaskError::Timeout)]);
    gate.open();
}

pub fn map_drop_cancels_unstarted<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let marks: Vec<String> = (0..32)
        .map(|_| marker("map").to_string_lossy().into_owned())
        .collect();
    // The first item finishes at once; the others wait on the gate, then leave a mark.
    let items: Vec<(Option<String>, String)> = marks
        .iter()
        .enumerate()
        .map(|(i, m)| ((i > 0).then(|| gate.path()), m.clone()))
        .collect();
    let mut m = pool.map_with(hold_then_touch, items, MapOptions::new().chunksize(1));
    assert_eq!(m.next(), Some(Ok(true)));
    drop(m); // iteration began: what has not started is cancelled
    gate.open();
    pool.shutdown(true);
    let ran = marks[1..]
        .iter()
        .filter(|m| std::path::Path::new(m).exists())
        .count();
    // What was running (or, in a process pool, already sent to a worker) finishes; the
    // rest never runs.
    assert!(
        ran <= marks.len() / 2,
        "{ran} of {} items ran after the map was dropped",
        marks.len() - 1
    );
    for m in &marks {
        let _ = std::fs::remove_file(m);
    }
}

pub fn map_without_iteration_still_runs<E: Executor>(pool: &E) {
    let marks: Vec<String> = (0..10)
        .map(|_| marker("eager").to_string_lossy().into_owned())
        .collect();
    // As Python's `executor.map(f, range(10))` with the result discarded.
    drop(pool.map(touch, marks.clone()));
    pool.shutdown(true);
    for m in &marks {
        assert!(std::path::Path::new(m).exists(), "{m} did not run");
        let _ = std::fs::remove_file(m);
    }
}

pub fn submit_after_shutdown_fails<E: Executor>(pool: &E) {
    pool.shutdown(true);
    assert_eq!(
        pool.try_submit(double, 1).unwrap_err(),
        SubmitError::Shutdown
    );
    assert_eq!(
        pool.submit(double, 1).result_timeout(LONG),
        Err(TaskError::Submit(SubmitError::Shutdown))
    );
    let out: Vec<_> = pool.map(double, 0..100).collect();
    assert_eq!(out, vec![Err(TaskError::Submit(SubmitError::Shutdown))]);
    pool.shutdown(true); // idempotent
}

pub fn shutdown_runs_accepted_work<E: Executor>(pool: &E) {
    let futs: Vec<_> = (0..200).map(|i| pool.submit(fib, i % 16)).collect();
    pool.shutdown(true);
    for (i, f) in futs.iter().enumerate() {
        assert!(f.done(), "shutdown(wait) returned before task {i} finished");
        assert_eq!(f.result(), Ok(fib(i as u64 % 16)));
    }
}

pub fn shutdown_cancel_futures<E: Executor>(pool: &E) {
    let mut gate = Gate::closed();
    let held = occupy(pool, &gate);
    let pending: Vec<_> = (0..5).map(|i| pool.submit(double, i)).collect();
    pool.shutdown_with(false, true);
    for p in &pending {
        assert!(p.cancelled(), "pending work is cancelled");
    }
    gate.open();
    pool.shutdown(true);
    let (last, started) = held.split_last().unwrap();
    for (i, h) in started.iter().enumerate() {
        assert_eq!(h.result(), Ok(i as u64), "started work finishes");
    }
    assert!(
        last.cancelled(),
        "occupy's last task was pending, so it is cancelled"
    );
}

pub fn concurrent_submitters<E: Executor + Sync>(pool: &E) {
    let total: u64 = thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                s.spawn(move || {
                    let futs: Vec<_> = (0..2000)
                        .map(|i| pool.submit(double, t * 10_000 + i))
                        .collect();
                    futs.iter()
                        .map(|f| f.result_timeout(LONG).unwrap())
                        .sum::<u64>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let expected: u64 = (0..4u64)
        .flat_map(|t| (0..2000).map(move |i| (t * 10_000 + i) * 2))
        .sum();
    assert_eq!(total, expected);
}

/// Not in the suite (it needs one worker on the process pool): `map` over a slow input, an
/// item every 50 ms (the source's own pace, simulated; nothing waits on it), where item
/// `k + 2` is only produced once result `k` was received: with default options, `map` sends
/// a slow input's items on as they come and yields a result before it takes more input
/// than the next item, so the consumer gets every result. Before, `map` held the items for
/// a whole chunk or block (the process pool's window, the thread pool's block of 64), and
/// the source waited for a result that was never yielded: each wait below times out.
pub fn map_of_a_slow_input_yields_each_result_before_the_item_after_next<E: Executor>(pool: &E) {
    const N: u64 = 12;
    let (ack_tx, ack_rx) = mpsc::channel::<u64>();
    let mut missed = None;
    let mut next_item = 0u64;
    let input = std::iter::from_fn(|| {
        if next_item == N || missed.is_some() {
            return None;
        }
        let k = next_item;
        if k >= 2 {
            // Item `k` only once result `k - 2` arrived.
            match ack_rx.recv_timeout(LONG) {
                Ok(j) => assert_eq!(j, k - 2),
                Err(_) => {
                    missed = Some(k);
                    return None;
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
        next_item += 1;
        Some(k)
    });
    let mut got = 0;
    for (i, r) in pool.map(double, input).enumerate() {
        assert_eq!(r, Ok(2 * i as u64));
        got += 1;
        let _ = ack_tx.send(i as u64);
    }
    assert_eq!(
        got, N,
        "a result was held back until an item that could not come"
    );
}
