//! The `tracing` feature: a subscriber layer that records every span and event checks that
//! each submitted task has one span that closes, with its stages and the outcome its future
//! has, and that workers' start, death, restart and steals are reported where they happen.
//!
//! The recorder is the process's global subscriber (the pools' threads must see it), so the
//! tests take turns (`serial`) and each starts from an empty record.
#![cfg(feature = "tracing")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use common::recorder::{
    self, Recorder, Records, SpanRec, count, open_task_spans, outcome_of, outcomes, task_spans,
    worker_events,
};
use common::{Gate, LONG, hold, watchdog};
use concurrent_futures::{Executor, TaskError, ThreadPoolExecutor};

/// The recorder, for the calling test alone (the tests take turns), emptied.
fn serial() -> (MutexGuard<'static, ()>, &'static Recorder) {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let rec = recorder::install();
    *rec.lock() = Records::default();
    (turn, rec)
}

#[test]
fn thread_pool_one_closed_span_per_task_with_its_outcome() {
    let _w = watchdog("thread_pool_one_closed_span_per_task_with_its_outcome");
    let (_turn, rec) = serial();
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .caller_runs(false)
        .build()
        .unwrap();
    // Both workers held, so that the tasks after them stay queued and can be cancelled.
    let (started, is_started) = mpsc::channel();
    let release = Arc::new(Mutex::new(()));
    let hold_guard = release.lock().unwrap();
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (started, release) = (started.clone(), release.clone());
            pool.spawn(move || {
                started.send(()).unwrap();
                drop(release.lock());
                0u32
            })
        })
        .collect();
    for _ in 0..2 {
        is_started.recv_timeout(LONG).expect("both workers hold");
    }
    let mut futs: Vec<_> = (0..40u32).map(|i| pool.spawn(move || i)).collect();
    futs.extend((0..5u32).map(|_| pool.spawn(|| -> u32 { panic!("boom") })));
    let cancelled: Vec<_> = (0..7u32).map(|i| pool.spawn(move || i)).collect();
    for f in &cancelled {
        assert!(f.cancel());
    }
    // One that stops on a request while it runs.
    let (running, is_running) = mpsc::channel();
    drop(hold_guard);
    let stopping = pool.spawn(move || {
        running.send(()).unwrap();
        let deadline = Instant::now() + LONG;
        while !concurrent_futures::cancelled() && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        1u32
    });
    is_running.recv_timeout(LONG).expect("it runs");
    assert!(stopping.cancel_running());
    let mut results: Vec<Result<u32, TaskError>> = holders
        .into_iter()
        .chain(futs)
        .chain(cancelled)
        .chain([stopping])
        .map(|f| f.result_timeout(LONG))
        .collect();
    assert!(
        results
            .iter()
            .all(|r| !matches!(r, Err(TaskError::Timeout)))
    );
    pool.shutdown(true);
    let n = results.len();
    assert_eq!(n, 2 + 40 + 5 + 7 + 1);
    let spans = rec.wait_for("every task span closed", |r| {
        let spans = task_spans(r, "thread");
        (spans.len() == n).then_some(spans)
    });
    assert_eq!(open_task_spans(&rec.lock()), 0);
    let expected = count(results.drain(..).map(|r| outcome_of(&r)));
    assert_eq!(expected["ok"], 42);
    assert_eq!(expected["panicked"], 5);
    assert_eq!(expected["cancelled"], 8);
    assert_eq!(outcomes(&spans), expected);
    // The tasks that ran were started on a worker (0 or 1).
    for s in &spans {
        for (name, fields) in &s.events {
            if name == "started" {
                assert!(["0", "1"].contains(&fields["worker"].as_str()), "{s:?}");
            }
        }
    }
    let r = rec.lock();
    let mut started: Vec<&str> = worker_events(&r, "worker_started", "thread")
        .iter()
        .map(|e| e.fields["worker"].as_str())
        .collect();
    started.sort_unstable();
    assert_eq!(started, ["0", "1"]);
    assert_eq!(worker_events(&r, "worker_exited", "thread").len(), 2);
}

#[test]
fn thread_pool_reports_the_steal_the_statistics_count() {
    let _w = watchdog("thread_pool_reports_the_steal_the_statistics_count");
    let (_turn, rec) = serial();
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(2)
            .caller_runs(false)
            .build()
            .unwrap(),
    );
    // One task queues 8 tasks on its own worker's deque, then waits for all of them: only
    // the other worker can run them, by stealing.
    const K: usize = 8;
    let ran = Arc::new(AtomicUsize::new(0));
    let (p, r2) = (pool.clone(), ran.clone());
    let outer = pool.spawn(move || {
        let (done, all_done) = mpsc::channel();
        for _ in 0..K {
            let (done, ran) = (done.clone(), r2.clone());
            p.spawn(move || {
                ran.fetch_add(1, Ordering::SeqCst);
                done.send(()).unwrap();
            });
        }
        for _ in 0..K {
            all_done.recv_timeout(LONG).expect("the sibling ran them");
        }
    });
    outer.result_timeout(LONG).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), K);
    pool.shutdown(true);
    let stats = pool.stats();
    let stolen: u64 = stats.workers.iter().map(|w| w.stolen).sum();
    assert!(stolen >= 1, "{stats:?}");
    let r = rec.lock();
    let steals = worker_events(&r, "steal", "thread");
    assert!(!steals.is_empty());
    let mut total = 0;
    for s in &steals {
        assert_ne!(s.fields["thief"], s.fields["victim"], "{s:?}");
        total += s.fields["count"].parse::<u64>().unwrap();
    }
    assert_eq!(total, stolen, "the events add up to the statistics");
}

#[test]
fn a_task_run_by_the_thread_waiting_for_it_is_started_on_no_worker() {
    let _w = watchdog("a_task_run_by_the_thread_waiting_for_it_is_started_on_no_worker");
    let (_turn, rec) = serial();
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .caller_runs(true)
        .build()
        .unwrap();
    // The only worker is held, so the next task is still queued when the caller waits for
    // it, and the caller runs it itself.
    let (started, is_started) = mpsc::channel();
    let release = Arc::new(Mutex::new(()));
    let guard = release.lock().unwrap();
    let r = release.clone();
    let holder = pool.spawn(move || {
        started.send(()).unwrap();
        drop(r.lock());
    });
    is_started.recv_timeout(LONG).expect("the worker holds");
    let me = std::thread::current().id();
    let inline = pool.spawn(move || std::thread::current().id() == me);
    // (A timed wait never runs the task itself; the watchdog bounds this one.)
    assert_eq!(inline.result(), Ok(true), "the caller ran it");
    drop(guard);
    holder.result_timeout(LONG).unwrap();
    drop((holder, inline));
    pool.shutdown(true);
    let spans = rec.wait_for("both spans closed", |r| {
        let spans = task_spans(r, "thread");
        (spans.len() == 2).then_some(spans)
    });
    assert_eq!(outcomes(&spans)["ok"], 2);
    let workers: Vec<Option<String>> = spans
        .iter()
        .flat_map(|s| s.events.iter())
        .filter(|(n, _)| n == "started")
        .map(|(_, f)| f.get("worker").cloned())
        .collect();
    assert_eq!(workers.len(), 2);
    assert!(workers.contains(&Some("0".into())), "{workers:?}");
    assert!(workers.contains(&None), "{workers:?}");
}

fn identity(x: u64) -> u64 {
    x
}

#[test]
fn thread_pool_map_has_a_span_per_block_share_not_per_item() {
    let _w = watchdog("thread_pool_map_has_a_span_per_block_share_not_per_item");
    let (_turn, rec) = serial();
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .caller_runs(false)
        .build()
        .unwrap();
    const N: u64 = 20_000;
    let sum: u64 = pool.map(identity, 0..N).map(Result::unwrap).sum();
    assert_eq!(sum, N * (N - 1) / 2);
    pool.shutdown(true);
    let r = rec.lock();
    let blocks: Vec<&SpanRec> = r.done.iter().filter(|s| s.name == "map_block").collect();
    assert!(!blocks.is_empty());
    assert!(blocks.len() < 1000, "{} spans for {N} items", blocks.len());
    assert!(r.open.values().all(|s| s.name != "map_block"));
    for b in &blocks {
        assert!(b.fields["items"].parse::<u64>().unwrap() >= 1, "{b:?}");
        assert!(["0", "1"].contains(&b.fields["worker"].as_str()), "{b:?}");
    }
    assert_eq!(
        task_spans(&r, "thread").len(),
        0,
        "map's items are not tasks"
    );
}

#[cfg(target_os = "linux")]
mod process {
    use super::*;
    use concurrent_futures::ProcessPoolExecutor;

    fn square(x: u64) -> u64 {
        x * x
    }

    fn panics(_: ()) -> u64 {
        panic!("boom")
    }

    fn abort_now(_: ()) -> u64 {
        std::process::abort()
    }

    /// Aborts when `i` is a multiple of 10.
    fn abort_on_tens(i: u64) -> u64 {
        if i.is_multiple_of(10) {
            std::process::abort()
        }
        i
    }

    #[test]
    fn a_burst_of_worker_deaths_matches_the_statistics() {
        let _w = watchdog("a_burst_of_worker_deaths_matches_the_statistics");
        let (_turn, rec) = serial();
        let pool = ProcessPoolExecutor::new(2);
        const N: u64 = 200;
        let futs: Vec<_> = (0..N).map(|i| pool.submit(abort_on_tens, i)).collect();
        let results: Vec<_> = futs.into_iter().map(|f| f.result_timeout(LONG)).collect();
        pool.shutdown(true);
        let expected = count(results.iter().map(outcome_of));
        assert_eq!(expected["worker_died"], 20);
        assert_eq!(expected["ok"], 180);
        let spans = rec.wait_for("every task span closed", |r| {
            let spans = task_spans(r, "process");
            (spans.len() == N as usize).then_some(spans)
        });
        assert_eq!(outcomes(&spans), expected);
        let stats = pool.stats();
        assert_eq!(stats.worker_deaths, 20, "{stats:?}");
        // The replacements' exits at shutdown are reported once every worker is reaped.
        rec.wait_for("every worker's end", |r| {
            let started = worker_events(r, "worker_started", "process").len();
            let ended = worker_events(r, "worker_died", "process").len()
                + worker_events(r, "worker_exited", "process").len();
            (started == ended).then_some(())
        });
        let r = rec.lock();
        assert_eq!(worker_events(&r, "worker_died", "process").len(), 20);
        let restarted: u64 = worker_events(&r, "worker_restarted", "process")
            .iter()
            .map(|e| e.fields["count"].parse::<u64>().unwrap())
            .sum();
        assert_eq!(restarted, stats.worker_restarts);
        assert_eq!(
            worker_events(&r, "worker_started", "process").len() as u64,
            2 + stats.worker_restarts
        );
    }

    #[test]
    fn a_running_process_task_cancelled_ends_its_span_as_cancelled() {
        let _w = watchdog("a_running_process_task_cancelled_ends_its_span_as_cancelled");
        let (_turn, rec) = serial();
        let pool = ProcessPoolExecutor::new(1);
        let gate = Gate::closed();
        let stuck = pool.submit(hold, (gate.path(), 1));
        common::eventually("the task is sent", || stuck.running());
        assert!(stuck.cancel_running());
        assert_eq!(stuck.result_timeout(LONG), Err(TaskError::Cancelled));
        assert_eq!(pool.submit(square, 3).result_timeout(LONG), Ok(9));
        pool.shutdown(true);
        let spans = rec.wait_for("both spans closed", |r| {
            let spans = task_spans(r, "process");
            (spans.len() == 2).then_some(spans)
        });
        let counts = outcomes(&spans);
        assert_eq!((counts["cancelled"], counts["ok"]), (1, 1));
        let cancelled = spans
            .iter()
            .find(|s| s.events.last().unwrap().1["outcome"] == "cancelled")
            .unwrap();
        assert!(
            cancelled.events.iter().any(|(n, _)| n == "started"),
            "{cancelled:?}"
        );
        // Its worker was killed (or dropped it unstarted): the events say what the
        // statistics count.
        let stats = pool.stats();
        rec.wait_for("every worker's end", |r| {
            let started = worker_events(r, "worker_started", "process").len();
            let ended = worker_events(r, "worker_died", "process").len()
                + worker_events(r, "worker_exited", "process").len();
            (started == ended).then_some(())
        });
        let r = rec.lock();
        assert_eq!(
            worker_events(&r, "worker_died", "process").len() as u64,
            stats.worker_deaths
        );
    }

    #[test]
    fn process_pool_spans_outcomes_and_a_worker_death_and_restart() {
        let _w = watchdog("process_pool_spans_outcomes_and_a_worker_death_and_restart");
        let (_turn, rec) = serial();
        let pool = ProcessPoolExecutor::new(1);
        let mut gate = Gate::closed();
        // The one worker is held; what is queued behind its window can be cancelled.
        let held = pool.submit(hold, (gate.path(), 7));
        let ok: Vec<_> = (0..20).map(|i| pool.submit(square, i)).collect();
        let bad: Vec<_> = (0..3).map(|_| pool.submit(panics, ())).collect();
        let doomed: Vec<_> = (0..10).map(|i| pool.submit(square, i)).collect();
        let cancelled = doomed.iter().filter(|f| f.cancel()).count();
        assert!(
            cancelled > 0,
            "tasks beyond the worker's window stay queued"
        );
        gate.open();
        let mut results: Vec<Result<u64, TaskError>> = [held]
            .into_iter()
            .chain(ok)
            .chain(bad)
            .chain(doomed)
            .map(|f| f.result_timeout(LONG))
            .collect();
        // A worker killed while it runs a task: that task fails, the worker is replaced.
        let killed = pool.submit(abort_now, ()).result_timeout(LONG);
        let Err(TaskError::WorkerDied { pid, .. }) = &killed else {
            panic!("{killed:?}")
        };
        let dead_pid = pid.to_string();
        results.push(killed);
        results.push(pool.submit(square, 3).result_timeout(LONG));
        pool.shutdown(true);
        let n = results.len();
        let spans = rec.wait_for("every task span closed", |r| {
            let spans = task_spans(r, "process");
            (spans.len() == n).then_some(spans)
        });
        assert_eq!(open_task_spans(&rec.lock()), 0);
        let expected = count(results.iter().map(outcome_of));
        assert_eq!(expected["cancelled"], cancelled);
        assert_eq!(expected["panicked"], 3);
        assert_eq!(expected["worker_died"], 1);
        assert_eq!(outcomes(&spans), expected);
        // The killed task was started on the worker that died.
        let died_task = spans
            .iter()
            .find(|s| s.events.last().unwrap().1["outcome"] == "worker_died")
            .unwrap();
        assert!(
            died_task
                .events
                .iter()
                .any(|(n, f)| n == "started" && f["worker"] == dead_pid),
            "{died_task:?}"
        );
        // At shutdown the replacement exits (asked to: not a death).
        rec.wait_for("the replacement's exit", |r| {
            (worker_events(r, "worker_exited", "process").len() == 1).then_some(())
        });
        let r = rec.lock();
        let deaths = worker_events(&r, "worker_died", "process");
        assert_eq!(deaths.len(), 1, "{:?}", r.events);
        assert_eq!(deaths[0].fields["worker"], dead_pid);
        assert!(
            deaths[0].fields["cause"].contains("signal"),
            "{:?}",
            deaths[0]
        );
        let restarts = worker_events(&r, "worker_restarted", "process");
        assert_eq!(restarts.len(), 1);
        assert_eq!(restarts[0].fields["count"], "1");
        let started = worker_events(&r, "worker_started", "process");
        assert_eq!(started.len(), 2, "the first worker and its replacement");
        assert!(started.iter().any(|e| e.fields["worker"] == dead_pid));
    }
}
