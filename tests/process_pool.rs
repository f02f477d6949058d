//! The shared behavioural suite on `ProcessPoolExecutor`, plus the faults only processes
//! have: workers that die, values that cannot cross, parents that die.

mod common;

use common::procs::{exited_with_all_threads as exited, forever, gone};
use std::time::{Duration, Instant};

use common::{Gate, LONG, eventually, marker, watchdog};
use concurrent_futures::{
    BuildError, Executor, ExitStatus, ProcessPoolExecutor, SubmitError, TaskError,
};
use serde::{Deserialize, Serialize};

executor_suite!(ProcessPoolExecutor::new(2));

fn pool(n: usize) -> ProcessPoolExecutor {
    ProcessPoolExecutor::new(n)
}

fn my_pid(_: ()) -> u32 {
    std::process::id()
}

fn abort_now(_: ()) -> u32 {
    std::process::abort()
}

fn exit_now(code: i32) -> u32 {
    std::process::exit(code)
}

fn segfault(_: ()) -> u32 {
    // SAFETY: raising a signal is always allowed; this one ends the process on purpose.
    unsafe {
        libc::raise(libc::SIGSEGV);
    }
    0
}

/// Writes this worker's pid to `marker`, then waits on the gate.
fn report_then_hold(args: (String, String)) -> u32 {
    let (marker, gate) = args;
    std::fs::write(&marker, std::process::id().to_string()).unwrap();
    common::hold((gate, 0));
    std::process::id()
}

#[test]
fn tasks_run_in_other_processes_and_callbacks_in_this_one() {
    let _w = watchdog("tasks_run_in_other_processes_and_callbacks_in_this_one");
    let pool = pool(2);
    let me = std::process::id();
    let fut = pool.submit(my_pid, ());
    let (tx, rx) = std::sync::mpsc::channel();
    fut.add_done_callback(move |_| tx.send(std::process::id()).unwrap());
    let worker = fut.result_timeout(LONG).unwrap();
    assert_ne!(worker, me);
    assert!(pool.pids().contains(&worker));
    assert_eq!(rx.recv_timeout(LONG), Ok(me), "callbacks run in the parent");
}

/// Nobody waits on these futures: their results reach the callbacks only if the manager
/// thread reads them, whether it was asleep (after a quiet spell) or still looking on its own
/// (right after other submissions, when a submission does not wake it). Bursts of
/// submissions and quiet spells of several lengths alternate, 600 tasks in all.
#[test]
fn results_nobody_waits_for_still_reach_their_callbacks() {
    let _w = watchdog("results_nobody_waits_for_still_reach_their_callbacks");
    let pool = pool(2);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut sent = 0u64;
    for round in 0..60u64 {
        for i in 0..10u64 {
            let fut = pool.submit(common::double, round * 10 + i);
            let tx = tx.clone();
            fut.add_done_callback(move |f| {
                let _ = tx.send(f.result());
            });
            sent += 1;
        }
        // Every result of the burst arrives with no thread waiting on the pool.
        for _ in 0..10 {
            let got = rx
                .recv_timeout(LONG)
                .expect("a result nobody waited for was never read");
            assert!(got.is_ok(), "{got:?}");
        }
        // A quiet spell: none, short (the manager still looks on its own), long (it sleeps).
        let quiet = Duration::from_micros([0, 50, 400, 3_000][round as usize % 4]);
        let until = Instant::now() + quiet;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    assert_eq!(sent, 600);
}

#[test]
fn a_panicking_task_fails_alone_and_the_worker_lives() {
    let _w = watchdog("a_panicking_task_fails_alone_and_the_worker_lives");
    let pool = pool(1);
    let before = pool.pids();
    let err = pool
        .submit(common::always_panic, ())
        .result_timeout(LONG)
        .unwrap_err();
    assert_eq!(err.panic().unwrap().message(), "task exploded");
    assert_eq!(pool.submit(common::double, 4).result_timeout(LONG), Ok(8));
    assert_eq!(pool.pids(), before, "the same worker serves on");
}

fn assert_dies_alone(task: fn(()) -> u32, expect: impl Fn(&ExitStatus) -> bool) {
    let pool = pool(2);
    let bystanders: Vec<_> = (0..50).map(|i| pool.submit(common::fib, i % 15)).collect();
    let victim = pool.submit(task, ());
    match victim.result_timeout(LONG) {
        Err(TaskError::WorkerDied { pid, status }) => {
            assert!(pid > 0);
            assert!(expect(&status), "unexpected status {status}");
            eventually("the dead worker is reaped", || gone(pid));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    for (i, f) in bystanders.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(common::fib(i as u64 % 15)));
    }
    // The pool replaced the worker and goes on.
    assert_eq!(pool.submit(common::double, 21).result_timeout(LONG), Ok(42));
    eventually("two workers again", || pool.pids().len() == 2);
}

#[test]
fn abort_fails_only_the_task_it_held() {
    let _w = watchdog("abort_fails_only_the_task_it_held");
    assert_dies_alone(abort_now, |s| *s == ExitStatus::Signal(libc::SIGABRT));
}

#[test]
fn segfault_fails_only_the_task_it_held() {
    let _w = watchdog("segfault_fails_only_the_task_it_held");
    assert_dies_alone(segfault, |s| *s == ExitStatus::Signal(libc::SIGSEGV));
}

fn exit_3(_: ()) -> u32 {
    exit_now(3)
}

#[test]
fn process_exit_fails_only_the_task_it_held() {
    let _w = watchdog("process_exit_fails_only_the_task_it_held");
    assert_dies_alone(exit_3, |s| *s == ExitStatus::Code(3));
}

#[test]
fn sigkill_from_outside_fails_only_the_task_it_held() {
    let _w = watchdog("sigkill_from_outside_fails_only_the_task_it_held");
    let pool = pool(2);
    let mut gate = Gate::closed();
    let mark = marker("victim");
    let victim = pool.submit(
        report_then_hold,
        (mark.to_string_lossy().into_owned(), gate.path()),
    );
    eventually("the victim reports its pid", || {
        std::fs::read_to_string(&mark).is_ok_and(|s| !s.is_empty())
    });
    let pid: u32 = std::fs::read_to_string(&mark).unwrap().parse().unwrap();
    let others: Vec<_> = (0..20).map(|i| pool.submit(common::double, i)).collect();
    // SAFETY: plain kill(2) of a process we started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    assert_eq!(
        victim.result_timeout(LONG),
        Err(TaskError::WorkerDied {
            pid,
            status: ExitStatus::Signal(libc::SIGKILL)
        })
    );
    for (i, f) in others.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
    }
    gate.open();
    let _ = std::fs::remove_file(mark);
}

/// A value whose serialization always fails.
#[derive(Debug, Clone, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

fn takes_unencodable(_: Unencodable) -> u8 {
    1
}

fn returns_unencodable(_: ()) -> Unencodable {
    Unencodable
}

#[test]
fn an_argument_that_cannot_be_encoded_fails_at_submit() {
    let _w = watchdog("an_argument_that_cannot_be_encoded_fails_at_submit");
    let pool = pool(1);
    match pool.try_submit(takes_unencodable, Unencodable) {
        Err(SubmitError::Codec(msg)) => assert!(msg.contains("refuses"), "{msg}"),
        other => panic!("expected a codec error, got {other:?}"),
    }
    assert!(matches!(
        pool.submit(takes_unencodable, Unencodable)
            .result_timeout(LONG),
        Err(TaskError::Submit(SubmitError::Codec(_)))
    ));
    assert_eq!(pool.submit(common::double, 1).result_timeout(LONG), Ok(2));
}

#[test]
fn a_result_that_cannot_be_encoded_fails_that_task() {
    let _w = watchdog("a_result_that_cannot_be_encoded_fails_that_task");
    let pool = pool(1);
    match pool.submit(returns_unencodable, ()).result_timeout(LONG) {
        Err(TaskError::Codec(msg)) => assert!(msg.contains("refuses"), "{msg}"),
        other => panic!("expected a codec error, got {other:?}"),
    }
    assert_eq!(pool.submit(common::double, 1).result_timeout(LONG), Ok(2));
}

#[test]
fn shutdown_terminate_and_kill_leave_no_process() {
    let _w = watchdog("shutdown_terminate_and_kill_leave_no_process");
    for how in 0..4 {
        let pool = pool(2);
        let pids = pool.pids();
        assert_eq!(pids.len(), 2);
        let fut = pool.submit(common::double, 1);
        match how {
            0 => pool.shutdown(true),
            1 => pool.terminate(),
            2 => pool.kill(),
            _ => drop(pool),
        }
        if how == 0 {
            assert_eq!(fut.result(), Ok(2), "shutdown runs accepted work");
        } else {
            assert!(fut.wait_timeout(LONG), "the future is settled");
        }
        for pid in pids {
            assert!(gone(pid), "worker {pid} left behind (variant {how})");
        }
    }
}

#[test]
fn terminate_fails_running_and_cancels_pending() {
    let _w = watchdog("terminate_fails_running_and_cancels_pending");
    let pool = pool(1);
    let mut gate = Gate::closed();
    let held = pool.submit(common::hold, (gate.path(), 1));
    eventually("held", || held.running());
    let pending: Vec<_> = (0..5).map(|i| pool.submit(common::double, i)).collect();
    pool.terminate();
    assert!(matches!(
        held.result_timeout(LONG),
        Err(TaskError::Broken(_))
    ));
    for p in &pending {
        // Still in this process: cancelled. Already sent to the worker: failed with it.
        let r = p.result_timeout(LONG);
        assert!(
            p.cancelled() || matches!(r, Err(TaskError::Broken(_))),
            "{r:?}"
        );
    }
    gate.open();
}

/// Waits on the gate, then ends its process.
fn hold_then_abort(gate: String) -> u32 {
    common::hold((gate, 0));
    std::process::abort()
}

/// An initializer: a worker started once `armed` exists waits on the gate first.
fn start_behind_gate(args: (String, String)) {
    let (armed, gate) = args;
    if std::path::Path::new(&armed).exists() {
        common::hold((gate, 0));
    }
}

/// A one-worker pool whose worker dies with a task sent to it and not started (queued again,
/// RUNNING) and a task pending behind it, while its replacement waits on `start`: that
/// queued task, the pending one.
fn requeued_and_pending(
    start: &Gate,
) -> (
    ProcessPoolExecutor,
    concurrent_futures::Future<u32>,
    concurrent_futures::Future<u32>,
) {
    let armed = marker("armed");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer_with(
            start_behind_gate,
            (armed.to_string_lossy().into_owned(), start.path()),
        )
        .build()
        .unwrap();
    std::fs::write(&armed, b"").unwrap();
    let mut gate = Gate::closed();
    let dies = pool.submit(hold_then_abort, gate.path());
    // The worker has room for a second batch: this one is sent, and waits behind `dies`.
    let requeued = pool.submit(my_pid, ());
    let pending = pool.submit(my_pid, ());
    eventually("dies runs", || dies.running());
    gate.open();
    assert!(matches!(
        dies.result_timeout(LONG),
        Err(TaskError::WorkerDied { .. })
    ));
    let _ = std::fs::remove_file(&armed);
    (pool, requeued, pending)
}

#[test]
fn shutdown_cancel_futures_lets_a_task_already_running_run() {
    let _w = watchdog("shutdown_cancel_futures_lets_a_task_already_running_run");
    let mut start = Gate::closed();
    let (pool, requeued, pending) = requeued_and_pending(&start);
    pool.shutdown_with(false, true);
    assert!(pending.cancelled(), "not sent yet: cancelled");
    assert!(
        !requeued.cancelled(),
        "RUNNING: as in Python, it cannot be cancelled"
    );
    start.open();
    let pid = requeued
        .result_timeout(LONG)
        .expect("it runs on the replacement");
    assert_ne!(pid, std::process::id());
    pool.shutdown(true);
    let stats = pool.stats();
    assert_eq!((stats.cancelled, stats.done, stats.failed), (1, 1, 1));
}

#[test]
fn terminate_fails_a_task_queued_again_after_it_was_sent() {
    let _w = watchdog("terminate_fails_a_task_queued_again_after_it_was_sent");
    let mut start = Gate::closed();
    let (pool, requeued, pending) = requeued_and_pending(&start);
    pool.terminate();
    assert!(pending.cancelled());
    assert!(matches!(
        requeued.result_timeout(LONG),
        Err(TaskError::Broken(_))
    ));
    start.open();
    let stats = pool.stats();
    assert_eq!((stats.cancelled, stats.done, stats.failed), (1, 0, 2));
}

#[test]
fn map_of_many_items_in_chunks() {
    let _w = watchdog("map_of_many_items_in_chunks");
    let pool = pool(2);
    let n = 200_000u64;
    let sum: u64 = pool.map(common::double, 0..n).map(Result::unwrap).sum();
    assert_eq!(sum, n * (n - 1));
}

fn failing_init() {
    panic!("no configuration found");
}

#[test]
fn a_failing_initializer_breaks_the_pool() {
    let _w = watchdog("a_failing_initializer_breaks_the_pool");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer(failing_init)
        .build()
        .unwrap();
    match pool.try_submit(common::double, 1) {
        Err(SubmitError::Broken(msg)) => assert!(msg.contains("no configuration"), "{msg}"),
        other => panic!("expected a broken pool, got {other:?}"),
    }
}

static INIT_MARK: &str = "CF_TEST_INIT_MARK";

fn set_mark() {
    // SAFETY: runs in the worker before any task, on its only thread running user code.
    unsafe { std::env::set_var(INIT_MARK, "ready") };
}

fn read_mark(_: ()) -> String {
    std::env::var(INIT_MARK).unwrap_or_default()
}

#[test]
fn the_initializer_runs_in_each_worker_before_tasks() {
    let _w = watchdog("the_initializer_runs_in_each_worker_before_tasks");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer(set_mark)
        .build()
        .unwrap();
    for _ in 0..10 {
        assert_eq!(
            pool.submit(read_mark, ()).result_timeout(LONG).unwrap(),
            "ready"
        );
    }
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let _w = watchdog("max_tasks_per_child_replaces_workers");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..6 {
        pids.insert(pool.submit(my_pid, ()).result_timeout(LONG).unwrap());
    }
    assert!(
        pids.len() >= 3,
        "only {} worker pids for 6 tasks",
        pids.len()
    );
}

#[test]
fn zero_workers_is_an_error() {
    assert!(matches!(
        ProcessPoolExecutor::builder().max_workers(0).build(),
        Err(BuildError::ZeroWorkers)
    ));
}

#[test]
fn pool_start_to_first_result_is_quick_enough_to_use() {
    let _w = watchdog("pool_start_to_first_result_is_quick_enough_to_use");
    let t = Instant::now();
    let pool = pool(2);
    assert_eq!(pool.submit(common::double, 1).result_timeout(LONG), Ok(2));
    // Not a benchmark: only catches a start-up that hangs on a timeout somewhere.
    assert!(t.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_worker_killed_while_idle_costs_no_task() {
    let _w = watchdog("a_worker_killed_while_idle_costs_no_task");
    let pool = pool(1);
    let pid = pool.pids()[0];
    // SAFETY: plain kill(2) of a process we started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    eventually("the worker has exited", || exited(pid));
    // Sending to it fails; the task goes to its replacement instead.
    assert_eq!(
        pool.submit(my_pid, ())
            .result_timeout(LONG)
            .map(|p| p != pid),
        Ok(true)
    );
    eventually("the dead worker is reaped", || gone(pid));
}

#[test]
fn a_task_over_its_time_limit_is_stopped_and_the_rest_complete() {
    let _w = watchdog("a_task_over_its_time_limit_is_stopped_and_the_rest_complete");
    let limit = Duration::from_millis(200);
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .task_timeout(limit)
        .build()
        .unwrap();
    let stuck = pool.submit(forever, ());
    let others: Vec<_> = (0..100).map(|i| pool.submit(common::double, i)).collect();
    assert_eq!(stuck.result_timeout(LONG), Err(TaskError::TimeLimit(limit)));
    for (i, f) in others.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
    }
    eventually("the stopped worker was replaced", || pool.pids().len() == 2);
    assert_eq!(pool.submit(common::double, 5).result_timeout(LONG), Ok(10));
}

fn reverse_bytes(b: concurrent_futures::Bytes) -> concurrent_futures::Bytes {
    let mut v = b.into_vec();
    v.reverse();
    v.into()
}

fn reverse_vec(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

#[test]
fn large_payloads_cross_intact_both_ways() {
    let _w = watchdog("large_payloads_cross_intact_both_ways");
    let pool = pool(2);
    // Large blocks are kept and reused: a smaller payload in a larger block must arrive
    // with its own length and content.
    let sizes = [
        0usize,
        1,
        (1 << 20) - 1,
        1 << 20,
        8 << 20,
        5 << 20,
        (3 << 20) + 17,
        3 << 20,
    ];
    for size in sizes {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let mut expected = data.clone();
        expected.reverse();
        let got = pool
            .submit(reverse_bytes, data.clone().into())
            .into_result()
            .unwrap()
            .into_vec();
        assert_eq!(got.len(), size);
        assert!(got == expected, "payload of {size} bytes corrupted");
        // A plain `Vec<u8>` (sent as one block of bytes) both ways.
        let got = pool.submit(reverse_vec, expected).into_result().unwrap();
        assert!(got == data, "Vec<u8> payload of {size} bytes corrupted");
    }
    // Many in flight at once, twice (the second time in reused blocks).
    for round in 0..2u8 {
        let sent: Vec<Vec<u8>> = (0..6u8)
            .map(|k| vec![k.wrapping_mul(37).wrapping_add(round); (2 << 20) + usize::from(k)])
            .collect();
        let futures: Vec<_> = sent
            .iter()
            .map(|d| pool.submit(reverse_bytes, d.clone().into()))
            .collect();
        for (f, d) in futures.into_iter().zip(&sent) {
            let got = f.result_timeout(LONG).unwrap().into_vec();
            assert!(got == *d, "payload of {} bytes corrupted", d.len());
        }
    }
}

#[test]
fn idle_worker_takes_tasks_queued_behind_a_long_one() {
    let _w = watchdog("idle_worker_takes_tasks_queued_behind_a_long_one");
    let pool = pool(2);
    let mut gate = Gate::closed();
    let long = pool.submit(common::hold, (gate.path(), 99));
    // One at a time and all at once: some land in the window of the worker that runs the
    // long task, behind it; the other worker must take them over.
    let one_by_one: Vec<_> = (0..30).map(|i| pool.submit(common::double, i)).collect();
    for (i, f) in one_by_one.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
    }
    let burst: Vec<_> = (0..2000).map(|i| pool.submit(common::double, i)).collect();
    for (i, f) in burst.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
    }
    let mapped: Vec<u64> = pool
        .map(common::double, 0..5000)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(mapped, (0..5000).map(|i| 2 * i).collect::<Vec<_>>());
    assert!(long.running(), "the long task is still running");
    gate.open();
    assert_eq!(long.result_timeout(LONG), Ok(99));
}

/// Appends a line to the file at `path` (one per run), then aborts the process if asked.
fn log_run(args: (String, bool)) -> u8 {
    use std::io::Write;
    let (path, abort) = args;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(b"ran\n").unwrap();
    drop(f);
    if abort {
        std::process::abort();
    }
    1
}

#[test]
fn no_task_runs_twice_when_a_worker_dies_mid_batch() {
    let _w = watchdog("no_task_runs_twice_when_a_worker_dies_mid_batch");
    let pool = pool(1);
    let mut gate = Gate::closed();
    let held = pool.submit(common::hold, (gate.path(), 0));
    // Queued behind the held task, these go out in batches; the worker runs a batch back to
    // back and sends the results together, so when task 20 aborts the process the results
    // of those just before it may die with it.
    let marks: Vec<_> = (0..40).map(|i| marker(&format!("run{i}"))).collect();
    let futures: Vec<_> = marks
        .iter()
        .enumerate()
        .map(|(i, m)| pool.submit(log_run, (m.to_string_lossy().into_owned(), i == 20)))
        .collect();
    gate.open();
    assert_eq!(held.result_timeout(LONG), Ok(0));
    for (i, f) in futures.iter().enumerate() {
        let outcome = f.result_timeout(LONG);
        match i {
            20 => assert!(
                matches!(outcome, Err(TaskError::WorkerDied { .. })),
                "task 20: {outcome:?}"
            ),
            21.. => assert_eq!(outcome, Ok(1), "task {i}"),
            // Finished, but the result may have been lost with the worker.
            _ => assert!(
                matches!(outcome, Ok(1) | Err(TaskError::WorkerDied { .. })),
                "task {i}: {outcome:?}"
            ),
        }
    }
    for (i, m) in marks.iter().enumerate() {
        let runs = std::fs::read_to_string(m)
            .unwrap_or_default()
            .lines()
            .count();
        assert_eq!(runs, 1, "task {i} ran {runs} times");
        let _ = std::fs::remove_file(m);
    }
}

#[test]
fn a_worker_retired_after_a_blocking_wait_is_replaced() {
    // The thread blocked in `result()` reads the result itself; the worker then retires
    // (max_tasks_per_child). The manager must still read its exit and start a replacement,
    // or the next task waits forever.
    let _w = watchdog("a_worker_retired_after_a_blocking_wait_is_replaced");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..6)
        .map(|_| pool.submit(my_pid, ()).result().unwrap())
        .collect();
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2]);
    assert_ne!(pids[3], pids[4]);
}

// ===== nested waits =====

/// A callback of a future whose result the manager thread read (nobody waits on it) runs
/// on a thread of the pool's callbacks, not on the manager thread, and may wait on another
/// task of the same pool: the manager thread goes on reading results meanwhile.
#[test]
fn a_callback_of_a_result_the_manager_read_may_wait_on_its_own_pool() {
    let _w = watchdog("a_callback_of_a_result_the_manager_read_may_wait_on_its_own_pool");
    let pool = std::sync::Arc::new(pool(2));
    let (tx, rx) = std::sync::mpsc::channel();
    let inner = pool.clone();
    let mut gate = Gate::closed();
    let first = pool.submit(common::hold, (gate.path(), 2));
    first.add_done_callback(move |f| {
        let on = std::thread::current().name().map(str::to_owned);
        let nested = inner.submit(common::double, 20).result_timeout(LONG);
        let timed = inner
            .submit(common::double, 30)
            .result_timeout(Duration::from_secs(20));
        let _ = tx.send((f.result(), nested, timed, on));
    });
    gate.open();
    let (own, nested, timed, thread) = rx.recv_timeout(LONG).expect("the callback ran");
    assert_eq!(thread.as_deref(), Some("cf-process-callbacks"));
    assert_eq!(own, Ok(2));
    assert_eq!(nested, Ok(40));
    assert_eq!(timed, Ok(60));
    drop(first);
    // The pool is still whole.
    assert_eq!(pool.submit(common::double, 5).result(), Ok(10));
}

/// A task may start a pool of its own in its worker (a nested pool: grandchildren).
fn nested_pool_sum(n: u64) -> u64 {
    let inner = ProcessPoolExecutor::new(1);
    inner
        .map(common::double, 0..n)
        .map(|r| r.expect("nested task"))
        .sum()
}

#[test]
fn a_task_may_run_a_pool_of_its_own() {
    let _w = watchdog("a_task_may_run_a_pool_of_its_own");
    let pool = pool(1);
    assert_eq!(
        pool.submit(nested_pool_sum, 10).result_timeout(LONG),
        Ok(90)
    );
}

// ===== per-task time limits =====

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn a_task_time_limit_stops_that_task_only() {
    let _w = watchdog("a_task_time_limit_stops_that_task_only");
    let pool = pool(1);
    let limit = Duration::from_millis(100);
    let stuck = pool.submit_with_timeout(forever, (), limit);
    let behind: Vec<_> = (0..5u64).map(|i| pool.submit(common::double, i)).collect();
    assert_eq!(stuck.result_timeout(LONG), Err(TaskError::TimeLimit(limit)));
    for (i, f) in behind.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
    }
    // A limit generous enough lets the task finish.
    let ok = pool.submit_with_timeout(sleep_ms, 1, Duration::from_secs(20));
    assert_eq!(ok.result_timeout(LONG), Ok(1));
}

/// The limit belongs to the task that runs: a short task with a tight limit, followed on
/// the same worker by a long task without one, does not get the long one killed.
#[test]
fn a_limit_is_timed_from_its_own_task_start() {
    let _w = watchdog("a_limit_is_timed_from_its_own_task_start");
    let pool = pool(1);
    let limit = Duration::from_millis(200);
    let mut gate = Gate::closed();
    let short = pool.submit_with_timeout(common::double, 4, limit);
    let long = pool.submit(common::hold, (gate.path(), 7));
    assert_eq!(short.result_timeout(LONG), Ok(8));
    // Well past the short task's limit, the long one still runs.
    assert_eq!(long.result_timeout(limit * 5), Err(TaskError::Timeout));
    gate.open();
    assert_eq!(long.result_timeout(LONG), Ok(7));
}

/// A task's own limit replaces the pool's, both ways.
#[test]
fn a_task_limit_replaces_the_pools() {
    let _w = watchdog("a_task_limit_replaces_the_pools");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .task_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut gate = Gate::closed();
    let running = marker("limit");
    let longer = pool.submit_with_timeout(
        report_then_hold,
        (running.to_string_lossy().into_owned(), gate.path()),
        LONG,
    );
    // Once the long task runs, the watchdog may sleep until its far deadline: a task
    // submitted then, under the pool's limit, must still be watched.
    eventually("the long task runs", || running.exists());
    let pooled = pool.submit(forever, ());
    assert_eq!(
        pooled.result_timeout(LONG),
        Err(TaskError::TimeLimit(Duration::from_millis(100)))
    );
    assert_eq!(
        longer.result_timeout(Duration::from_millis(300)),
        Err(TaskError::Timeout)
    );
    gate.open();
    assert!(longer.result_timeout(LONG).is_ok());
    let _ = std::fs::remove_file(&running);
}

#[test]
fn map_of_a_slow_input_yields_each_result_before_the_item_after_next() {
    let _w = watchdog("map_of_a_slow_input_yields_each_result_before_the_item_after_next");
    let pool = ProcessPoolExecutor::new(1);
    common::suite::map_of_a_slow_input_yields_each_result_before_the_item_after_next(&pool);
}

/// The statistics add up with results, panics, a worker's death and cancellations, and
/// count the bytes that crossed, the death and the restart.
#[test]
fn stats_add_up_with_deaths_panics_and_cancellations() {
    let _w = watchdog("stats_add_up_with_deaths_panics_and_cancellations");
    let pool = pool(2);
    // Outcomes seen: [ok, failed, cancelled].
    let mut seen = [0u64; 3];
    let tally = |seen: &mut [u64; 3], r: Result<u64, TaskError>| match r {
        Ok(_) => seen[0] += 1,
        Err(TaskError::Cancelled) => seen[2] += 1,
        Err(_) => seen[1] += 1,
    };
    let firsts: Vec<_> = (0..40u64)
        .map(|i| pool.submit(common::fail_on_odd, i))
        .collect();
    let big = pool.submit(common::echo_bytes, vec![7u8; 1 << 20]);
    for f in firsts {
        tally(&mut seen, f.result_timeout(LONG));
    }
    assert_eq!(big.result_timeout(LONG), Ok(1 << 20));
    seen[0] += 1;
    let died = pool.submit(abort_now, ());
    assert!(matches!(
        died.result_timeout(LONG),
        Err(TaskError::WorkerDied { .. })
    ));
    seen[1] += 1;
    eventually("the dead worker is replaced", || {
        pool.stats().worker_restarts >= 1
    });
    // Both workers held, tasks behind them, half of those cancelled while queued: they
    // are dropped when their turn comes.
    let mut gate = Gate::closed();
    let held: Vec<_> = (0..2)
        .map(|i| pool.submit(common::hold, (gate.path(), i)))
        .collect();
    let behind: Vec<_> = (0..100u64)
        .map(|i| pool.submit(common::double, i))
        .collect();
    let cancelled_here = behind.iter().step_by(2).filter(|f| f.cancel()).count();
    assert!(cancelled_here > 0);
    gate.open();
    for f in held.into_iter().chain(behind) {
        tally(&mut seen, f.result_timeout(LONG));
    }
    assert_eq!(seen[2], cancelled_here as u64);
    // (A result is counted by the thread that read it, just after completing the future.)
    eventually("the counts add up", || pool.stats().settled());
    // Both workers held, many tasks behind them: shutting down with cancel_futures
    // cancels what is still queued.
    let mut gate = Gate::closed();
    let held: Vec<_> = (0..2)
        .map(|i| pool.submit(common::hold, (gate.path(), i)))
        .collect();
    let behind: Vec<_> = (0..200u64)
        .map(|i| pool.submit(common::double, i))
        .collect();
    pool.shutdown_with(false, true);
    gate.open();
    for f in held.into_iter().chain(behind) {
        tally(&mut seen, f.result_timeout(LONG));
    }
    pool.shutdown(true);
    let stats = pool.stats();
    assert!(stats.settled(), "{stats:?}");
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    assert_eq!(stats.submitted, 40 + 1 + 1 + 2 + 100 + 2 + 200);
    assert_eq!([stats.done, stats.failed, stats.cancelled], seen);
    assert!(seen[2] > 0, "some of the 200 were still queued: {stats:?}");
    assert_eq!(stats.worker_deaths, 1, "{stats:?}");
    assert!(stats.worker_restarts >= 1);
    assert!(
        stats.bytes_sent > 1 << 20,
        "the 1 MiB argument crossed: {stats:?}"
    );
    assert!(stats.bytes_received > 0);
}

/// A quick task's result does not wait for the long task that follows it in its worker:
/// with more work queued than workers, a worker gets tasks in batches and sends their
/// results together, but never holds one back for the length of the next call. Here the
/// next call never ends while the quick task's future is awaited (its gate opens after).
#[test]
fn a_quick_result_is_not_held_back_by_the_long_call_after_it() {
    let _w = watchdog("a_quick_result_is_not_held_back_by_the_long_call_after_it");
    for _ in 0..3 {
        let pool = pool(1);
        let (mut first, mut second, mut long) = (Gate::closed(), Gate::closed(), Gate::closed());
        // Two held tasks fill the worker's two batches; the rest waits in the parent and
        // goes in batches of two: the quick task, then the long one behind it.
        let held: Vec<_> = [&first, &second]
            .iter()
            .map(|g| pool.submit(common::hold, (g.path(), 0)))
            .collect();
        let quick = pool.submit(common::double, 21);
        let stuck = pool.submit(common::hold, (long.path(), 7));
        let rest: Vec<_> = (0..6).map(|i| pool.submit(common::double, i)).collect();
        first.open();
        second.open();
        for f in &held {
            assert_eq!(f.result_timeout(LONG), Ok(0));
        }
        assert_eq!(
            quick.result_timeout(LONG),
            Ok(42),
            "the quick task's result waited for the call after it"
        );
        long.open();
        assert_eq!(stuck.result_timeout(LONG), Ok(7));
        for (i, f) in rest.iter().enumerate() {
            assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
        }
        pool.shutdown(true);
    }
}
