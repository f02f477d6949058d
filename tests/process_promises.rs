//! Promises of the process pool that an attack once broke: a callback may wait on its own
//! pool; `max_tasks_per_child` is never exceeded; `terminate` is immediate and no task
//! reports a value after it. Each attacked alone, in bursts, and with every CPU busy.

mod common;

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::faults::CpuLoad;
use common::procs::{exited, gone};
use common::{LONG, eventually, marker, watchdog};
use concurrent_futures::{BuildError, Executor, ProcessPoolExecutor, TaskError};

/// The tests of this file take turns: each brings its own CPU load.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn double(x: u64) -> u64 {
    x * 2
}

// ===== a callback may wait on its own pool =====

/// The case: a pool of 2, 20 tasks queued, and a callback on the first that submits
/// a task (queued behind the others) and waits on it, untimed and timed; meanwhile the main
/// thread waits on another future with a timeout. The callback gets its results, and the
/// main thread's wait returns.
fn callback_waits_on_a_queued_task(task_ms: u64) {
    let pool = Arc::new(ProcessPoolExecutor::new(2));
    let futures: Vec<_> = (0..20).map(|_| pool.submit(sleep_ms, task_ms)).collect();
    let (tx, rx) = mpsc::channel();
    let inner = pool.clone();
    futures[0].add_done_callback(move |_| {
        let untimed = inner.submit(double, 21).result();
        let timed = inner.submit(double, 4).result_timeout(LONG);
        let _ = tx.send((untimed, timed));
    });
    // A timed wait on a task that runs late: it returns, with its value or `Timeout`, and
    // is never left running the callback above past its deadline.
    let start = Instant::now();
    let outcome = futures[5].result_timeout(Duration::from_secs(2));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "a 2 s wait took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(outcome, Ok(ms) if ms == task_ms) || outcome == Err(TaskError::Timeout),
        "{outcome:?}"
    );
    let (untimed, timed) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the callback's waits never returned: the pool is wedged");
    assert_eq!(untimed, Ok(42));
    assert_eq!(timed, Ok(8));
    for f in &futures {
        assert_eq!(f.result_timeout(LONG), Ok(task_ms));
    }
}

#[test]
fn a_callback_may_wait_on_a_queued_task_of_its_own_pool() {
    let _w = watchdog("a_callback_may_wait_on_a_queued_task_of_its_own_pool");
    let _t = turn();
    callback_waits_on_a_queued_task(300);
    for _ in 0..5 {
        callback_waits_on_a_queued_task(20);
    }
    let _load = CpuLoad::start();
    for _ in 0..5 {
        callback_waits_on_a_queued_task(20);
    }
}

/// Many callbacks at once, each waiting on a task of its own pool, while other callbacks
/// wait for them: none of it stops the pool, and each callback runs exactly once.
fn callbacks_wait_in_a_burst(n: u64) {
    let pool = Arc::new(ProcessPoolExecutor::new(2));
    let (tx, rx) = mpsc::channel();
    let futures: Vec<_> = (0..n).map(|i| pool.submit(double, i)).collect();
    for (i, f) in futures.iter().enumerate() {
        let (inner, tx) = (pool.clone(), tx.clone());
        f.add_done_callback(move |f| {
            let nested = inner.submit(double, 1000 + i as u64).result_timeout(LONG);
            let _ = tx.send((i, f.result(), nested));
        });
    }
    drop(tx);
    let mut seen = vec![0; n as usize];
    for _ in 0..n {
        let (i, own, nested) = rx
            .recv_timeout(LONG)
            .expect("a callback never finished: the pool is wedged");
        assert_eq!(own, Ok(2 * i as u64));
        assert_eq!(nested, Ok(2 * (1000 + i as u64)));
        seen[i] += 1;
    }
    assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
}

#[test]
fn bursts_of_callbacks_that_wait_on_their_pool() {
    let _w = watchdog("bursts_of_callbacks_that_wait_on_their_pool");
    let _t = turn();
    callbacks_wait_in_a_burst(200);
    let _load = CpuLoad::start();
    callbacks_wait_in_a_burst(200);
}

/// A callback that waits for something only other callbacks make: `Pool::map_async`
/// gathers its chunks in callbacks of their own. Those run while the first one waits (a
/// callback that blocks does not hold up the others).
#[test]
fn a_callback_may_wait_for_the_work_of_other_callbacks() {
    use concurrent_futures::multiprocessing::Pool;
    let _w = watchdog("a_callback_may_wait_for_the_work_of_other_callbacks");
    let _t = turn();
    let run = || {
        let pool = Arc::new(Pool::new(2));
        let (tx, rx) = mpsc::channel();
        let inner = pool.clone();
        let _first = pool.apply_async(double, 1).callback(move |_| {
            let all = inner.map_async(double, 0..100u64).get_timeout(LONG);
            let _ = tx.send(all.map(|v| v.iter().sum::<u64>()));
        });
        let sum = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the callback never got map_async's result");
        assert_eq!(sum, Ok(9900));
    };
    for _ in 0..20 {
        run();
    }
    let _load = CpuLoad::start();
    for _ in 0..20 {
        run();
    }
}

fn hold(path: String) -> u64 {
    common::hold((path, 7))
}

/// A thread in `result_timeout` that reads results is never made to run another future's
/// callback: that callback blocks until this thread's wait has returned, and is run on
/// neither this thread nor the manager thread.
fn timed_wait_is_not_held_by_a_callback() {
    let pool = ProcessPoolExecutor::new(2);
    let mut gate = common::Gate::closed();
    let a = pool.submit(hold, gate.path());
    let b = pool.submit(hold, gate.path());
    eventually("both tasks run", || {
        a.running() && b.running() && pool.pids().len() == 2
    });
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (tx, rx) = mpsc::channel();
    let main = std::thread::current().id();
    a.add_done_callback(move |_| {
        let me = std::thread::current();
        let released = release_rx.recv_timeout(Duration::from_secs(10)).is_ok();
        let _ = tx.send((me.id() == main, me.name().map(str::to_owned), released));
    });
    gate.open();
    // `b` is running: this thread reads results itself, `a`'s among them, likely.
    assert_eq!(b.result_timeout(LONG), Ok(7));
    let _ = release_tx.send(());
    let (on_main, name, released) = rx.recv_timeout(LONG).expect("the callback ran");
    assert!(!on_main, "the waiting thread ran another future's callback");
    assert_ne!(name.as_deref(), Some("cf-process-manager"));
    assert!(released, "the callback ran before the wait returned");
}

#[test]
fn a_timed_wait_never_runs_another_futures_callback() {
    let _w = watchdog("a_timed_wait_never_runs_another_futures_callback");
    let _t = turn();
    for _ in 0..10 {
        timed_wait_is_not_held_by_a_callback();
    }
    let _load = CpuLoad::start();
    for _ in 0..10 {
        timed_wait_is_not_held_by_a_callback();
    }
}

// ===== max_tasks_per_child =====

/// Records its run in the journal, then returns its worker's pid.
fn pid_of_run((journal, id, ms): (String, u64, u64)) -> u32 {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&journal)
        .expect("open journal");
    f.write_all(format!("{id}\n").as_bytes())
        .expect("write journal");
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms));
    }
    std::process::id()
}

/// Submits `tasks` at once to a pool of `workers` with `max_tasks_per_child(n)`; checks that
/// every worker ran at most `n` tasks and every task ran exactly once.
fn per_child_limit_holds(workers: usize, n: usize, tasks: u64) {
    let journal = marker("journal").to_string_lossy().into_owned();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(workers)
        .max_tasks_per_child(n)
        .build()
        .unwrap();
    // A few slow tasks among them, so that stealing takes work back from busy workers.
    let futures: Vec<_> = (0..tasks)
        .map(|i| {
            let ms = if i % 17 == 0 { 5 } else { 0 };
            pool.submit(pid_of_run, (journal.clone(), i, ms))
        })
        .collect();
    let mut per_pid: HashMap<u32, usize> = HashMap::new();
    for f in &futures {
        *per_pid.entry(f.result_timeout(LONG).unwrap()).or_default() += 1;
    }
    drop(pool);
    let most = per_pid.values().copied().max().unwrap();
    assert!(
        most <= n,
        "a worker ran {most} tasks with max_tasks_per_child({n}): {per_pid:?}"
    );
    assert!(per_pid.len() >= (tasks as usize).div_ceil(n));
    let runs = std::fs::read_to_string(&journal).unwrap();
    let _ = std::fs::remove_file(&journal);
    let mut count: HashMap<u64, usize> = HashMap::new();
    for line in runs.lines() {
        *count.entry(line.parse().unwrap()).or_default() += 1;
    }
    assert_eq!(count.len() as u64, tasks, "tasks that never ran");
    assert!(count.values().all(|&c| c == 1), "a task ran twice");
}

#[test]
fn max_tasks_per_child_is_never_exceeded() {
    let _w = watchdog("max_tasks_per_child_is_never_exceeded");
    let _t = turn();
    per_child_limit_holds(2, 1, 200);
    per_child_limit_holds(2, 10, 250);
    let _load = CpuLoad::start();
    per_child_limit_holds(2, 1, 200);
    per_child_limit_holds(3, 10, 300);
}

/// CPython's `test_max_tasks_per_child`: one worker, three tasks each; the first three run
/// in one process, the fourth in another.
#[test]
fn cpython_max_tasks_per_child() {
    let _w = watchdog("cpython_max_tasks_per_child");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    let pid = |_: ()| std::process::id();
    let first = pool.submit(pid, ()).result_timeout(LONG).unwrap();
    for _ in 1..3 {
        assert_eq!(pool.submit(pid, ()).result_timeout(LONG), Ok(first));
    }
    let fourth = pool.submit(pid, ()).result_timeout(LONG).unwrap();
    assert_ne!(fourth, first);
    eventually("the first worker exited", || exited(first));
}

#[test]
fn max_tasks_per_child_of_zero_is_an_error() {
    assert!(matches!(
        ProcessPoolExecutor::builder()
            .max_tasks_per_child(0)
            .build(),
        Err(BuildError::ZeroTasksPerChild)
    ));
}

// ===== terminate is immediate =====

/// Writes this worker's pid to the file `mark`, whole (renamed into place, so that a
/// reader never sees it empty).
fn mark_pid(mark: &str) {
    let tmp = format!("{mark}.tmp");
    std::fs::write(&tmp, std::process::id().to_string()).unwrap();
    std::fs::rename(&tmp, mark).unwrap();
}

/// Ignores SIGTERM, writes its pid to `mark`, then runs forever.
fn ignores_sigterm(mark: String) -> u32 {
    // SAFETY: setting a signal's disposition to SIG_IGN is always allowed.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    mark_pid(&mark);
    common::procs::park_forever()
}

static TERM_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn note_sigterm(_: libc::c_int) {
    TERM_SEEN.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Handles SIGTERM and runs on: it returns its pid only after SIGTERM came (too late).
fn handles_sigterm(mark: String) -> u32 {
    let handler: extern "C" fn(libc::c_int) = note_sigterm;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGTERM, handler as libc::sighandler_t) };
    mark_pid(&mark);
    while !TERM_SEEN.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::process::id()
}

/// Handles SIGTERM and keeps running forever.
fn handles_sigterm_forever(mark: String) -> u32 {
    handles_sigterm(mark);
    common::procs::park_forever()
}

/// Runs forever without touching signals.
fn endless(mark: String) -> u32 {
    mark_pid(&mark);
    common::procs::park_forever()
}

/// A pool whose workers each run one of the tasks above (and more queued behind them):
/// `terminate` returns within the grace (1 s) plus a generous margin, every worker is gone,
/// and no task reports a value.
fn terminate_is_immediate(stop: fn(&ProcessPoolExecutor)) {
    let kinds: [fn(String) -> u32; 4] = [
        ignores_sigterm,
        handles_sigterm,
        handles_sigterm_forever,
        endless,
    ];
    let pool = ProcessPoolExecutor::new(kinds.len());
    let marks: Vec<_> = (0..kinds.len())
        .map(|i| marker(&format!("term{i}")))
        .collect();
    let running: Vec<_> = kinds
        .iter()
        .zip(&marks)
        .map(|(&f, m)| pool.submit(f, m.to_string_lossy().into_owned()))
        .collect();
    let queued: Vec<_> = (0..50).map(|i| pool.submit(double, i)).collect();
    eventually("every hostile task runs", || {
        marks.iter().all(|m| m.exists())
    });
    let pids: Vec<u32> = marks
        .iter()
        .map(|m| std::fs::read_to_string(m).unwrap().parse().unwrap())
        .collect();
    for m in &marks {
        let _ = std::fs::remove_file(m);
    }
    let start = Instant::now();
    stop(&pool);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "terminate took {took:?}");
    for f in &running {
        let outcome = f.result_timeout(LONG);
        assert!(
            matches!(outcome, Err(TaskError::Broken(_))),
            "a running task after terminate: {outcome:?}"
        );
    }
    // Queued behind tasks that never finish before terminate: cancelled if still in the
    // parent, failed if sent (even if a worker that ran on after SIGTERM ran them).
    for f in &queued {
        let outcome = f.result_timeout(LONG);
        assert!(
            matches!(
                outcome,
                Err(TaskError::Cancelled) | Err(TaskError::Broken(_))
            ),
            "a queued task after terminate: {outcome:?}"
        );
    }
    assert!(pool.pids().is_empty());
    for pid in pids {
        assert!(gone(pid), "worker {pid} left behind");
    }
    drop(pool);
}

#[test]
fn terminate_is_immediate_whatever_the_tasks_do_with_sigterm() {
    let _w = watchdog("terminate_is_immediate_whatever_the_tasks_do_with_sigterm");
    let _t = turn();
    // terminate() in a thread of its own, so that a hang fails the test instead of
    // hanging it.
    let run = |stop: fn(&ProcessPoolExecutor)| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            terminate_is_immediate(stop);
            let _ = tx.send(());
        });
        match rx.recv_timeout(Duration::from_secs(25)) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("terminate never returned"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the attack failed"),
        }
    };
    run(ProcessPoolExecutor::terminate);
    run(ProcessPoolExecutor::kill);
    let _load = CpuLoad::start();
    for _ in 0..3 {
        run(ProcessPoolExecutor::terminate);
    }
}

/// A pool that was terminated from a callback (not a thread that joins): dropping it does
/// not wait for a task that ignores SIGTERM either.
#[test]
fn dropping_a_pool_terminated_from_a_callback_is_immediate() {
    let _w = watchdog("dropping_a_pool_terminated_from_a_callback_is_immediate");
    let _t = turn();
    let pool = Arc::new(ProcessPoolExecutor::new(2));
    let mark = marker("term-cb");
    let stuck = pool.submit(ignores_sigterm, mark.to_string_lossy().into_owned());
    eventually("the task runs", || mark.exists());
    let pid: u32 = std::fs::read_to_string(&mark).unwrap().parse().unwrap();
    let _ = std::fs::remove_file(&mark);
    let (tx, rx) = mpsc::channel();
    let inner = pool.clone();
    pool.submit(double, 1).add_done_callback(move |_| {
        inner.terminate();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("terminate in a callback never returned");
    eventually("the callback let go of the pool", || {
        Arc::strong_count(&pool) == 1
    });
    let start = Instant::now();
    drop(Arc::into_inner(pool).expect("the only handle"));
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        stuck.result_timeout(LONG),
        Err(TaskError::Broken(_))
    ));
    eventually("the worker is gone", || gone(pid));
}
