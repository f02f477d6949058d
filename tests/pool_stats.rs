//! Pool statistics, the task timeline and cooperative cancellation on the thread pool; the
//! task timeline of the process pool.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, mpsc};

use common::{LONG, eventually, watchdog};
use concurrent_futures::{
    Executor, Future, PoolStats, State, TaskError, TaskOutcome, ThreadPoolExecutor, cancelled,
};

/// A latch tasks wait on (with a timeout: a bug fails, never hangs).
#[derive(Clone, Default)]
struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    fn wait(&self) {
        let (m, cv) = &*self.0;
        let (g, t) = cv
            .wait_timeout_while(m.lock().unwrap(), LONG, |o| !*o)
            .unwrap();
        assert!(*g && !t.timed_out(), "latch never opened");
    }
}

fn pool(workers: usize) -> ThreadPoolExecutor {
    ThreadPoolExecutor::builder()
        .max_workers(workers)
        .caller_runs(false)
        .build()
        .unwrap()
}

fn check_settled(stats: &PoolStats) {
    assert!(stats.settled(), "counts do not add up: {stats:?}");
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
}

/// Two workers held by blocked tasks: the live snapshot shows them running and the rest
/// queued; then ok tasks, panics, cancellations while queued, and stops on request all
/// land in their counter, and the counts add up.
#[test]
fn counts_add_up_with_panics_and_cancellations() {
    let _w = watchdog("counts_add_up_with_panics_and_cancellations");
    let pool = pool(2);
    let latch = Latch::default();
    let (started, is_started) = mpsc::channel();
    let blockers: Vec<Future<u32>> = (0..2)
        .map(|_| {
            let latch = latch.clone();
            let started = started.clone();
            pool.spawn(move || {
                started.send(()).unwrap();
                latch.wait();
                1
            })
        })
        .collect();
    for _ in 0..2 {
        is_started.recv_timeout(LONG).unwrap();
    }
    let ran = Arc::new(AtomicUsize::new(0));
    let mut queued = Vec::new();
    for i in 0..30u32 {
        let ran = ran.clone();
        queued.push(pool.spawn(move || {
            ran.fetch_add(1, SeqCst);
            assert!(i % 5 != 0, "task {i} fails");
            i
        }));
    }
    let stats = pool.stats();
    assert_eq!(stats.submitted, 32);
    assert_eq!((stats.running, stats.queued), (2, 30), "{stats:?}");
    assert_eq!((stats.done, stats.failed, stats.cancelled), (0, 0, 0));
    assert!(stats.settled());
    // Cancel every third queued task.
    let mut cancelled_n = 0;
    for f in queued.iter().step_by(3) {
        assert!(f.cancel());
        cancelled_n += 1;
    }
    latch.open();
    for b in &blockers {
        assert_eq!(b.result_timeout(LONG), Ok(1));
    }
    let mut ok = 2;
    let mut failed = 0;
    for f in &queued {
        match f.result_timeout(LONG) {
            Ok(_) => ok += 1,
            Err(TaskError::Panicked(_)) => failed += 1,
            Err(TaskError::Cancelled) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    pool.shutdown(true);
    let stats = pool.stats();
    check_settled(&stats);
    assert_eq!(stats.submitted, 32);
    assert_eq!(
        (stats.done, stats.failed, stats.cancelled),
        (ok, failed, cancelled_n)
    );
    assert_eq!(ran.load(SeqCst) as u64, ok - 2 + failed);
    let run: u64 = stats.workers.iter().map(|w| w.tasks_run).sum();
    assert_eq!(run, ok + failed, "cancelled tasks never ran: {stats:?}");
    assert!(stats.workers.iter().any(|w| !w.busy.is_zero()));
}

/// `shutdown(cancel_futures=True)` cancels the queue: those tasks count as cancelled.
#[test]
fn shutdown_cancelling_counts_the_queue() {
    let _w = watchdog("shutdown_cancelling_counts_the_queue");
    let pool = pool(1);
    let latch = Latch::default();
    let (started, is_started) = mpsc::channel();
    let l = latch.clone();
    let blocker = pool.spawn(move || {
        started.send(()).unwrap();
        l.wait();
    });
    is_started.recv_timeout(LONG).unwrap();
    let rest: Vec<_> = (0..50).map(|i| pool.spawn(move || i)).collect();
    pool.shutdown_with(false, true);
    latch.open();
    blocker.result_timeout(LONG).unwrap();
    for f in &rest {
        assert_eq!(f.result_timeout(LONG), Err(TaskError::Cancelled));
    }
    pool.shutdown(true);
    let stats = pool.stats();
    check_settled(&stats);
    assert_eq!((stats.submitted, stats.done, stats.cancelled), (51, 1, 50));
}

/// Tasks that the waiting thread runs itself (caller-runs) are counted too, panics
/// included, in bursts.
#[test]
fn caller_runs_tasks_are_counted() {
    let _w = watchdog("caller_runs_tasks_are_counted");
    let pool = ThreadPoolExecutor::new(2);
    let mut failed = 0;
    for round in 0..20u64 {
        let futs: Vec<_> = (0..200u64)
            .map(|i| {
                pool.spawn(move || {
                    assert!((i + round) % 17 != 0);
                    i
                })
            })
            .collect();
        for f in futs {
            if f.into_result().is_err() {
                failed += 1;
            }
        }
    }
    pool.shutdown(true);
    let stats = pool.stats();
    check_settled(&stats);
    assert_eq!(stats.submitted, 4000);
    assert_eq!((stats.done, stats.failed), (4000 - failed, failed));
}

/// `map` (blocks of items on the thread pool) and submissions from inside tasks are
/// counted; the counts add up at quiescence.
#[test]
fn map_and_nested_submissions_add_up() {
    let _w = watchdog("map_and_nested_submissions_add_up");
    fn half(x: u64) -> u64 {
        assert!(x != 777, "item 777 fails");
        x / 2
    }
    let pool = Arc::new(ThreadPoolExecutor::new(2));
    let results: Vec<_> = pool.map(half, 0..5000u64).collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    let p = pool.clone();
    let outer = pool.spawn(move || {
        let inner: Vec<_> = (0..10u64).map(|i| p.spawn(move || i)).collect();
        inner
            .into_iter()
            .map(|f| f.into_result().unwrap())
            .sum::<u64>()
    });
    assert_eq!(outer.result_timeout(LONG), Ok(45));
    pool.shutdown(true);
    let stats = pool.stats();
    check_settled(&stats);
    assert!(stats.submitted >= 12, "{stats:?}");
    assert_eq!(
        stats.failed, 0,
        "map items fail one by one, not their helper"
    );
}

/// A task that fills its worker's queue while the other worker is idle: the idle one
/// steals, and both the statistics and the timeline say so.
#[test]
fn a_skewed_run_records_a_steal() {
    let _w = watchdog("a_skewed_run_records_a_steal");
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(2)
            .caller_runs(false)
            .record_timeline(true)
            .build()
            .unwrap(),
    );
    let p = pool.clone();
    let spawner = pool.spawn(move || {
        let me = std::thread::current().id();
        let (ran_elsewhere, seen) = mpsc::channel();
        let children: Vec<_> = (0..64)
            .map(|_| {
                let tx = ran_elsewhere.clone();
                p.spawn(move || {
                    if std::thread::current().id() != me {
                        let _ = tx.send(());
                    }
                })
            })
            .collect();
        // Hold this worker until the other one has stolen and run a child.
        seen.recv_timeout(LONG)
            .expect("no child ran on the other worker");
        children
    });
    for c in spawner.into_result().unwrap() {
        c.result_timeout(LONG).unwrap();
    }
    pool.shutdown(true);
    let stats = pool.stats();
    check_settled(&stats);
    assert_eq!(stats.submitted, 65);
    let stolen: u64 = stats.workers.iter().map(|w| w.stolen).sum();
    let given: u64 = stats.workers.iter().map(|w| w.given_away).sum();
    assert!(stolen >= 1, "{stats:?}");
    assert_eq!(stolen, given);
    let timeline = pool.take_timeline();
    assert!(!timeline.steals.is_empty());
    assert_eq!(timeline.tasks.len(), 65);
    let s = &timeline.steals[0];
    assert_ne!(s.thief, s.victim);
    assert!(s.tasks >= 1);
}

/// The Chrome trace parses as JSON and holds every task exactly once with its outcome;
/// the SVG is well-formed and has one bar per task.
#[test]
fn timeline_writers() {
    let _w = watchdog("timeline_writers");
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .caller_runs(false)
        .build()
        .unwrap();
    pool.start_recording();
    let (started, is_started) = mpsc::channel();
    let stopper = pool.spawn(move || {
        started.send(()).unwrap();
        while !cancelled() {
            std::thread::yield_now();
        }
        0u64
    });
    is_started.recv_timeout(LONG).unwrap();
    let futs: Vec<_> = (0..40u64)
        .map(|i| {
            pool.spawn(move || {
                assert!(i % 10 != 3, "task {i} fails");
                i
            })
        })
        .collect();
    for f in &futs {
        let _ = f.result_timeout(LONG);
    }
    assert!(stopper.cancel_running());
    assert_eq!(stopper.result_timeout(LONG), Err(TaskError::Cancelled));
    pool.shutdown(true);
    let timeline = pool.take_timeline();
    assert_eq!(timeline.tasks.len(), 41);
    let count = |o| timeline.tasks.iter().filter(|t| t.outcome == o).count();
    assert_eq!(
        (
            count(TaskOutcome::Ok),
            count(TaskOutcome::Panicked),
            count(TaskOutcome::Cancelled)
        ),
        (36, 4, 1)
    );
    assert!(timeline.tasks.iter().all(|t| t.start <= t.end));

    let json: serde_json::Value = serde_json::from_str(&timeline.to_chrome_trace()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    let tasks: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(tasks.len(), 41);
    for (e, t) in tasks.iter().zip(&timeline.tasks) {
        assert_eq!(e["tid"].as_u64().unwrap() as usize, t.worker);
        assert_eq!(e["args"]["outcome"], t.outcome.name());
        let ts = e["ts"].as_f64().unwrap();
        assert!((ts - t.start.as_secs_f64() * 1e6).abs() < 0.01);
        assert!(e["dur"].as_f64().unwrap() >= 0.0);
    }
    let names = events.iter().filter(|e| e["ph"] == "M").count();
    assert_eq!(names, 2);

    let svg = timeline.to_svg();
    well_formed(&svg);
    assert_eq!(svg.matches("<rect class=\"bar ").count(), 41);
    assert_eq!(svg.matches("<rect class=\"bar panicked\"").count(), 4);
    assert_eq!(svg.matches("<rect class=\"bar cancelled\"").count(), 1);
}

/// A minimal XML check: every tag closes in order, attribute values are quoted, text has
/// no bare `<` or `&`.
fn well_formed(xml: &str) {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = xml.trim();
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        assert!(
            !text.contains('&') || text.contains("&amp;"),
            "bare & in {text:?}"
        );
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "'<' inside a tag: {tag:?}");
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes: {tag:?}"
        );
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap();
            stack.push(name);
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert!(rest.trim().is_empty());
    assert!(xml.trim_start().starts_with("<svg"));
}

/// Recording off records nothing.
#[test]
fn recording_is_off_by_default() {
    let pool = pool(2);
    let futs: Vec<_> = (0..10).map(|i| pool.spawn(move || i)).collect();
    for f in &futs {
        f.result_timeout(LONG).unwrap();
    }
    pool.shutdown(true);
    let t = pool.take_timeline();
    assert!(t.tasks.is_empty() && t.steals.is_empty());
    assert_eq!(pool.stats().done, 10);
}

/// `cancel_running` stops a running task that looks, refuses nothing that `cancel`
/// accepts, and leaves a task that never looks to finish with its value.
#[test]
fn cancel_running_semantics() {
    let _w = watchdog("cancel_running_semantics");
    let pool = pool(1);
    let latch = Latch::default();
    let (started, is_started) = mpsc::channel();
    let l = latch.clone();
    let s = started.clone();
    let ignores = pool.spawn(move || {
        s.send(()).unwrap();
        l.wait();
        7
    });
    let never_ran = Arc::new(AtomicUsize::new(0));
    let n = never_ran.clone();
    let queued = pool.spawn(move || n.fetch_add(1, SeqCst));
    is_started.recv_timeout(LONG).unwrap();
    assert!(!ignores.cancel(), "Python's cancel refuses a running task");
    assert!(ignores.cancel_running());
    assert!(queued.cancel_running());
    assert_eq!(queued.state(), State::Cancelled);
    latch.open();
    // It never looked: its value stands.
    assert_eq!(ignores.result_timeout(LONG), Ok(7));
    assert!(!ignores.cancel_running(), "finished");
    assert_eq!(queued.result_timeout(LONG), Err(TaskError::Cancelled));

    let looks = pool.spawn(move || {
        started.send(()).unwrap();
        while !cancelled() {
            std::thread::yield_now();
        }
        99
    });
    is_started.recv_timeout(LONG).unwrap();
    assert_eq!(looks.state(), State::Running);
    assert!(looks.cancel_running());
    assert_eq!(looks.result_timeout(LONG), Err(TaskError::Cancelled));
    assert_eq!(looks.state(), State::Finished);
    assert!(!cancelled(), "no task runs on this thread");
    pool.shutdown(true);
    assert_eq!(never_ran.load(SeqCst), 0);
    let stats = pool.stats();
    check_settled(&stats);
    assert_eq!((stats.done, stats.cancelled), (1, 2));

    // A future no pool runs cannot see a request.
    let own: Future<u32> = Future::new();
    assert_eq!(own.set_running_or_notify_cancel(), Ok(true));
    assert!(!own.cancel_running());
}

/// Hundreds of running tasks stopped at once: each stops exactly once, each future fails
/// with `Cancelled`, and the tasks' side effects are counted.
#[test]
fn cancel_running_in_bursts() {
    let _w = watchdog("cancel_running_in_bursts");
    let pool = pool(2);
    let started = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicUsize::new(0));
    let futs: Vec<_> = (0..300)
        .map(|_| {
            let started = started.clone();
            let stopped = stopped.clone();
            pool.spawn(move || {
                started.fetch_add(1, SeqCst);
                while !cancelled() {
                    std::thread::yield_now();
                }
                stopped.fetch_add(1, SeqCst);
            })
        })
        .collect();
    // Both workers are inside a task before the burst begins.
    eventually("two tasks run", || started.load(SeqCst) == 2);
    let mut stopped_running = 0;
    for f in &futs {
        // Queued ones are cancelled; running ones asked to stop.
        assert!(f.cancel_running());
        if f.result_timeout(LONG) == Err(TaskError::Cancelled) && f.state() == State::Finished {
            stopped_running += 1;
        }
    }
    for f in &futs {
        assert_eq!(f.result_timeout(LONG), Err(TaskError::Cancelled));
    }
    pool.shutdown(true);
    assert_eq!(started.load(SeqCst), stopped.load(SeqCst));
    assert_eq!(stopped.load(SeqCst), stopped_running);
    assert!(
        stopped_running >= 2,
        "the two running tasks stopped on request"
    );
    let stats = pool.stats();
    check_settled(&stats);
    assert_eq!((stats.submitted, stats.cancelled), (300, 300));
    let run: u64 = stats.workers.iter().map(|w| w.tasks_run).sum();
    assert_eq!(run as usize, stopped_running);
    eventually("the pool is idle", || pool.stats().running == 0);
}

// ===== the process pool's timeline =====

#[cfg(target_os = "linux")]
mod process_timeline {
    use super::{check_settled, well_formed};
    use crate::common::{self, Gate, LONG, eventually, marker, watchdog};
    use concurrent_futures::{
        Executor, MarkKind, ProcessPoolExecutor, TaskError, TaskOutcome, Timeline,
    };
    use std::time::{Duration, Instant};

    fn report_then_hold(args: (String, String)) -> u32 {
        let (marker, gate) = args;
        std::fs::write(&marker, std::process::id().to_string()).unwrap();
        common::hold((gate, 0));
        std::process::id()
    }

    fn abort_on_tenth(x: u64) -> u64 {
        if x % 10 == 9 {
            std::process::abort();
        }
        x
    }

    fn sleep_ms(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    fn count(t: &Timeline, o: TaskOutcome) -> usize {
        t.tasks.iter().filter(|s| s.outcome == o).count()
    }

    fn marks(t: &Timeline, k: MarkKind) -> usize {
        t.marks.iter().filter(|m| m.kind == k).count()
    }

    /// Bars on one row never overlap (a worker runs one call at a time, and a replacement
    /// starts after the death of the worker before it), every bar starts before it ends, and
    /// every row is one of the pool's.
    fn check_rows(t: &Timeline) {
        for s in &t.tasks {
            assert!(s.worker < t.workers && s.start <= s.end, "{s:?}");
        }
        for row in 0..t.workers {
            let bars: Vec<_> = t.tasks.iter().filter(|s| s.worker == row).collect();
            for w in bars.windows(2) {
                assert!(
                    w[0].end <= w[1].start,
                    "overlapping bars on row {row}: {w:?}"
                );
            }
        }
        assert!(t.marks.iter().all(|m| m.worker < t.workers));
    }

    /// One bar per task with its outcome: values, panics, a task over its time limit, a task
    /// whose worker is killed from outside; a death mark for each killed worker and a start
    /// mark for each replacement, on the same row; the counts agree with the statistics.
    #[test]
    fn one_bar_per_task_with_its_outcome() {
        let _w = watchdog("process_timeline_one_bar_per_task_with_its_outcome");
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .record_timeline(true)
            .build()
            .unwrap();
        let mut gate = Gate::closed();
        let mark = marker("timeline-victim");
        let victim = pool.submit(
            report_then_hold,
            (mark.to_string_lossy().into_owned(), gate.path()),
        );
        eventually("the victim reports its pid", || {
            std::fs::read_to_string(&mark).is_ok_and(|s| !s.is_empty())
        });
        let pid: u32 = std::fs::read_to_string(&mark).unwrap().parse().unwrap();
        let ok: Vec<_> = (0..20).map(|i| pool.submit(common::double, i)).collect();
        let panics: Vec<_> = (0..3)
            .map(|_| pool.submit(common::always_panic, ()))
            .collect();
        let late =
            pool.submit_with_timeout(common::hold, (gate.path(), 1), Duration::from_millis(100));
        // SAFETY: plain kill(2) of a worker process this test started.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        assert!(matches!(
            victim.result_timeout(LONG),
            Err(TaskError::WorkerDied { pid: p, .. }) if p == pid
        ));
        assert_eq!(
            late.result_timeout(LONG),
            Err(TaskError::TimeLimit(Duration::from_millis(100)))
        );
        for (i, f) in ok.iter().enumerate() {
            assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
        }
        for f in &panics {
            assert!(matches!(
                f.result_timeout(LONG),
                Err(TaskError::Panicked(_))
            ));
        }
        gate.open();
        pool.shutdown(true);
        let _ = std::fs::remove_file(mark);

        let stats = pool.stats();
        check_settled(&stats);
        assert_eq!((stats.submitted, stats.done, stats.failed), (25, 20, 5));
        let t = pool.take_timeline();
        assert_eq!(t.workers, 2);
        assert_eq!(t.tasks.len(), 25, "{:?}", t.tasks);
        assert_eq!(
            [
                count(&t, TaskOutcome::Ok),
                count(&t, TaskOutcome::Panicked),
                count(&t, TaskOutcome::TimeLimit),
                count(&t, TaskOutcome::Died)
            ],
            [20, 3, 1, 1]
        );
        assert!(t.tasks.iter().all(|s| s.name == "task"));
        check_rows(&t);
        // Two deaths (the kill, the time limit), two replacements: as the statistics say.
        assert_eq!(marks(&t, MarkKind::Died) as u64, stats.worker_deaths);
        assert_eq!(marks(&t, MarkKind::Started) as u64, stats.worker_restarts);
        assert_eq!((stats.worker_deaths, stats.worker_restarts), (2, 2));
        // The killed worker's mark names it, on the row of the task it died in, after the
        // task's start; its replacement starts on that row after it.
        let died = t
            .tasks
            .iter()
            .find(|s| s.outcome == TaskOutcome::Died)
            .unwrap();
        let death = t
            .marks
            .iter()
            .find(|m| m.kind == MarkKind::Died && m.pid == Some(pid))
            .expect("the killed worker's death");
        assert_eq!(death.worker, died.worker);
        assert!(death.at >= died.start && died.end >= death.at);
        assert!(t.marks.iter().any(|m| m.kind == MarkKind::Started
            && m.worker == death.worker
            && m.at >= death.at
            && m.pid != Some(pid)));
        // The task over its limit ran about its limit.
        let limited = t
            .tasks
            .iter()
            .find(|s| s.outcome == TaskOutcome::TimeLimit)
            .unwrap();
        assert!(
            limited.end - limited.start >= Duration::from_millis(100),
            "{limited:?}"
        );

        let json: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
        let events = json["traceEvents"].as_array().unwrap();
        assert_eq!(events.iter().filter(|e| e["ph"] == "X").count(), 25);
        let deaths: Vec<_> = events
            .iter()
            .filter(|e| e["name"] == "worker died")
            .collect();
        assert_eq!(deaths.len(), 2);
        assert!(deaths.iter().any(|e| e["args"]["pid"] == u64::from(pid)));
        let svg = t.to_svg();
        well_formed(&svg);
        assert_eq!(svg.matches("<rect class=\"bar ").count(), 25);
        assert_eq!(svg.matches("<rect class=\"bar time-limit\"").count(), 1);
        assert_eq!(svg.matches("<g class=\"mark died\"").count(), 2);
        assert_eq!(svg.matches("<g class=\"mark started\"").count(), 2);
    }

    /// A task that holds its worker while another task waits behind it there, and the
    /// other worker runs dry: the idle worker is given what the held one has not started.
    /// Every short task ends while the first worker is still held (so the one behind it was
    /// stolen); the statistics count it on both workers, and the timeline draws it.
    #[test]
    fn a_held_worker_gives_its_backlog_to_the_idle_one() {
        let _w = watchdog("process_timeline_a_held_worker_gives_its_backlog_to_the_idle_one");
        let pool = ProcessPoolExecutor::builder()
            .max_workers(2)
            .record_timeline(true)
            .build()
            .unwrap();
        let (mut gate_a, mut gate_b) = (Gate::closed(), Gate::closed());
        let (mark_a, mark_b) = (marker("steal-a"), marker("steal-b"));
        let hold = |mark: &std::path::Path, gate: &Gate| {
            let f = pool.submit(
                report_then_hold,
                (mark.to_string_lossy().into_owned(), gate.path()),
            );
            eventually("the held task reports its pid", || {
                std::fs::read_to_string(mark).is_ok_and(|s| !s.is_empty())
            });
            f
        };
        // One held task per worker: then the next task waits behind the first one (the
        // workers tie; the first wins), the one after behind the second, the rest in the
        // parent.
        let held_a = hold(&mark_a, &gate_a);
        let held_b = hold(&mark_b, &gate_b);
        let short: Vec<_> = (0..20).map(|i| pool.submit(common::double, i)).collect();
        gate_b.open();
        for (i, f) in short.iter().enumerate() {
            assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64), "task {i}");
        }
        gate_a.open();
        let (pid_a, pid_b) = (
            held_a.result_timeout(LONG).unwrap(),
            held_b.result_timeout(LONG).unwrap(),
        );
        assert_ne!(pid_a, pid_b, "one held task per worker");
        pool.shutdown(true);
        for m in [mark_a, mark_b] {
            let _ = std::fs::remove_file(m);
        }

        let stats = pool.stats();
        check_settled(&stats);
        assert_eq!((stats.submitted, stats.done), (22, 22));
        assert_eq!(stats.workers.len(), 2, "{stats:?}");
        let w = &stats.workers;
        assert_eq!(w.iter().map(|w| w.tasks_run).sum::<u64>(), 22, "{stats:?}");
        assert!(w.iter().all(|w| w.busy > Duration::ZERO), "{stats:?}");
        // One worker gave, the other took, as many.
        let victim = w
            .iter()
            .position(|w| w.given_away > 0)
            .expect("a give-back");
        let thief = 1 - victim;
        assert!(w[victim].given_away >= 1);
        assert_eq!(w[thief].stolen, w[victim].given_away, "{stats:?}");
        assert_eq!((w[thief].given_away, w[victim].stolen), (0, 0), "{stats:?}");
        // The held worker's row has its long task and at most what it started before.
        let t = pool.take_timeline();
        assert_eq!(t.tasks.len(), 22);
        check_rows(&t);
        assert!(!t.steals.is_empty());
        for s in &t.steals {
            assert_eq!((s.thief, s.victim), (thief, victim), "{s:?}");
        }
        let drawn: u64 = t.steals.iter().map(|s| s.tasks).sum();
        assert_eq!(drawn, w[thief].stolen);
        let svg = t.to_svg();
        well_formed(&svg);
        assert!(svg.contains("class=\"steal\""));
        let json: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
        let events = json["traceEvents"].as_array().unwrap();
        assert_eq!(
            events.iter().filter(|e| e["name"] == "steal").count(),
            t.steals.len()
        );
    }

    /// A burst of crashes: 300 tasks, every tenth aborts its worker. Every task has exactly
    /// one bar (none runs twice, none is lost), thirty of them died, and each death has its
    /// mark and its replacement.
    #[test]
    fn a_burst_of_crashes_adds_up() {
        let _w = watchdog("process_timeline_a_burst_of_crashes_adds_up");
        let pool = ProcessPoolExecutor::builder()
            .max_workers(3)
            .record_timeline(true)
            .build()
            .unwrap();
        let futs: Vec<_> = (0..300).map(|i| pool.submit(abort_on_tenth, i)).collect();
        let mut died = 0;
        for (i, f) in futs.iter().enumerate() {
            match f.result_timeout(LONG) {
                Ok(v) => assert_eq!(v, i as u64),
                Err(TaskError::WorkerDied { .. }) => {
                    assert_eq!(i % 10, 9);
                    died += 1;
                }
                Err(e) => panic!("task {i}: {e}"),
            }
        }
        assert_eq!(died, 30);
        pool.shutdown(true);
        let stats = pool.stats();
        check_settled(&stats);
        let t = pool.take_timeline();
        assert_eq!(t.workers, 3);
        assert_eq!(t.tasks.len(), 300);
        assert_eq!(count(&t, TaskOutcome::Ok), 270);
        assert_eq!(count(&t, TaskOutcome::Died), 30);
        check_rows(&t);
        assert_eq!(marks(&t, MarkKind::Died), 30);
        assert_eq!(stats.worker_deaths, 30);
        assert_eq!(marks(&t, MarkKind::Started) as u64, stats.worker_restarts);
    }

    /// `cancel_running` on a running task kills its worker: the task's bar ends as
    /// cancelled where the death was seen, the death and the replacement are marked, and the
    /// task queued behind it runs on the replacement, once.
    #[test]
    fn a_task_cancelled_while_running_is_a_cancelled_bar() {
        let _w = watchdog("process_timeline_a_task_cancelled_while_running_is_a_cancelled_bar");
        let pool = ProcessPoolExecutor::builder()
            .max_workers(1)
            .record_timeline(true)
            .build()
            .unwrap();
        let gate = Gate::closed();
        let mark = marker("timeline-cancelled");
        let held = pool.submit(
            report_then_hold,
            (mark.to_string_lossy().into_owned(), gate.path()),
        );
        let behind = pool.submit(common::double, 21);
        eventually("the task runs", || {
            std::fs::read_to_string(&mark).is_ok_and(|s| !s.is_empty())
        });
        assert!(held.cancel_running());
        assert_eq!(held.result_timeout(LONG), Err(TaskError::Cancelled));
        assert_eq!(behind.result_timeout(LONG), Ok(42));
        pool.shutdown(true);
        drop(gate);
        let _ = std::fs::remove_file(mark);
        let t = pool.take_timeline();
        let outcomes: Vec<_> = t.tasks.iter().map(|s| s.outcome).collect();
        assert_eq!(outcomes, [TaskOutcome::Cancelled, TaskOutcome::Ok]);
        check_rows(&t);
        let kinds: Vec<_> = t.marks.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [MarkKind::Died, MarkKind::Started]);
        assert_eq!(t.tasks[0].end, t.marks[0].at);
        let stats = pool.stats();
        check_settled(&stats);
        assert_eq!(
            (stats.cancelled, stats.done, stats.worker_deaths),
            (1, 1, 1)
        );
    }

    /// A worker retired by `max_tasks_per_child` did not die: its replacement's start is
    /// marked on the same row, and no death.
    #[test]
    fn a_retired_worker_is_replaced_on_its_row() {
        let _w = watchdog("process_timeline_a_retired_worker_is_replaced_on_its_row");
        let pool = ProcessPoolExecutor::builder()
            .max_workers(1)
            .max_tasks_per_child(2)
            .record_timeline(true)
            .build()
            .unwrap();
        for i in 0..6 {
            assert_eq!(
                pool.submit(common::double, i).result_timeout(LONG),
                Ok(2 * i)
            );
        }
        // The third worker retires after its second task; wait for its replacement, so
        // that the count below is not a race with it.
        eventually("the last replacement starts", || {
            pool.stats().worker_restarts == 3
        });
        pool.shutdown(true);
        let stats = pool.stats();
        let t = pool.take_timeline();
        assert_eq!(t.tasks.len(), 6);
        check_rows(&t);
        assert_eq!((marks(&t, MarkKind::Died), stats.worker_deaths), (0, 0));
        assert_eq!(marks(&t, MarkKind::Started), 3);
        assert!(t.marks.iter().all(|m| m.worker == 0));
    }

    /// The bars are the worker's own run times, on the parent's clock: a task that sleeps
    /// 50 ms is a bar of at least 50 ms, inside the time the parent waited for it.
    #[test]
    fn bars_are_the_workers_run_times() {
        let _w = watchdog("process_timeline_bars_are_the_workers_run_times");
        let before_build = Instant::now();
        let pool = ProcessPoolExecutor::builder()
            .max_workers(1)
            .record_timeline(true)
            .build()
            .unwrap();
        let built = before_build.elapsed();
        assert_eq!(pool.submit(sleep_ms, 50).result_timeout(LONG), Ok(50));
        let bound = before_build.elapsed();
        pool.shutdown(true);
        let t = pool.take_timeline();
        assert_eq!(t.tasks.len(), 1);
        let bar = &t.tasks[0];
        assert!(bar.end - bar.start >= Duration::from_millis(50), "{bar:?}");
        // (The timeline's zero is at the end of `build`.)
        assert!(
            bar.end <= bound,
            "{bar:?} ends after the result arrived ({bound:?})"
        );
        assert!(bar.end - bar.start <= bound - built + Duration::from_millis(1));
    }

    /// Off by default; on and off at run time; `map` chunks are bars named `map`, one per
    /// chunk the statistics count.
    #[test]
    fn recording_on_and_off_and_map_chunks() {
        let _w = watchdog("process_timeline_recording_on_and_off_and_map_chunks");
        let pool = ProcessPoolExecutor::new(2);
        for f in (0..10)
            .map(|i| pool.submit(common::double, i))
            .collect::<Vec<_>>()
        {
            f.result_timeout(LONG).unwrap();
        }
        let t = pool.take_timeline();
        assert!(t.tasks.is_empty() && t.marks.is_empty());
        pool.start_recording();
        let sum: u64 = pool
            .map_with(
                common::double,
                0..1000u64,
                concurrent_futures::MapOptions::new().chunksize(100),
            )
            .map(Result::unwrap)
            .sum();
        assert_eq!(sum, 999 * 1000);
        pool.stop_recording();
        pool.submit(common::double, 1).result_timeout(LONG).unwrap();
        pool.shutdown(true);
        let t = pool.take_timeline();
        assert_eq!(t.tasks.len(), 10, "{:?}", t.tasks);
        assert!(
            t.tasks
                .iter()
                .all(|s| s.name == "map" && s.outcome == TaskOutcome::Ok)
        );
        check_rows(&t);
        assert_eq!(pool.stats().submitted, 10 + 10 + 1);
    }
}
