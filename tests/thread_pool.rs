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
fn default_workers_is_cpu_count() {
    let pool = ThreadPoolExecutor::builder().build().unwrap();
    assert_eq!(pool.max_workers(), num_cpus());
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
    for _ in 0..20_000 {
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
    assert_eq!(runs.load(Ordering::SeqCst) + cancelled, 20_000);
}

#[test]
fn callback_racing_completion_runs_once() {
    let _w = watchdog("callback_racing_completion_runs_once");
    let pool = ThreadPoolExecutor::new(2);
    let calls = Arc::new(AtomicUsize::new(0));
    let futs: Vec<Future<u32>> = (0..20_000)
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
    assert_eq!(calls.load(Ordering::SeqCst), 20_000);
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
