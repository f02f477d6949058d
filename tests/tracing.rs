//! The `tracing` feature: a subscriber layer that records every span and event checks that
//! each submitted task has one span that closes, with its stages and the outcome its future
//! has, and that workers' start, death, restart and steals are reported where they happen.
//!
//! The recorder is the process's global subscriber (the pools' threads must see it), so the
//! tests take turns (`serial`) and each starts from an empty record.
#![cfg(feature = "tracing")]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use common::{Gate, LONG, hold, watchdog};
use concurrent_futures::{Executor, TaskError, ThreadPoolExecutor};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// Field values, as text.
type Fields = HashMap<String, String>;

#[derive(Debug, Clone)]
struct SpanRec {
    name: String,
    fields: Fields,
    closed: bool,
    /// (event name, its fields), in order.
    events: Vec<(String, Fields)>,
}

#[derive(Debug, Clone)]
struct EventRec {
    name: String,
    fields: Fields,
}

#[derive(Default)]
struct Records {
    /// By the span's id (ids are not reused while a span is open; a closed span's entry is
    /// moved to `done`).
    open: HashMap<u64, SpanRec>,
    done: Vec<SpanRec>,
    /// Events outside any span.
    events: Vec<EventRec>,
}

struct Recorder {
    records: Mutex<Records>,
    changed: Condvar,
}

struct FieldText<'a>(&'a mut Fields);

impl Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// The layer: records into the global `Recorder`.
struct Recording(&'static Recorder);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recording {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut FieldText(&mut fields));
        let rec = SpanRec {
            name: attrs.metadata().name().into(),
            fields,
            closed: false,
            events: Vec::new(),
        };
        self.0.lock().open.insert(id.into_u64(), rec);
        self.0.changed.notify_all();
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(s) = self.0.lock().open.get_mut(&id.into_u64()) {
            values.record(&mut FieldText(&mut s.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut FieldText(&mut fields));
        let name = event.metadata().name().to_string();
        let parent = ctx.event_span(event).map(|s| s.id().into_u64());
        let mut r = self.0.lock();
        match parent.and_then(|p| r.open.get_mut(&p)) {
            Some(span) => span.events.push((name, fields)),
            None => r.events.push(EventRec { name, fields }),
        }
        drop(r);
        self.0.changed.notify_all();
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        let mut r = self.0.lock();
        if let Some(mut s) = r.open.remove(&id.into_u64()) {
            s.closed = true;
            r.done.push(s);
        }
        drop(r);
        self.0.changed.notify_all();
    }
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (at most `LONG`) until `cond` holds of the records, and returns it.
    fn wait_for<T>(&self, what: &str, cond: impl Fn(&Records) -> Option<T>) -> T {
        let deadline = Instant::now() + LONG;
        let mut r = self.lock();
        loop {
            if let Some(t) = cond(&r) {
                return t;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting until {what}");
            r = self.changed.wait_timeout(r, left).unwrap().0;
        }
    }
}

/// Installs the recorder (once) and gives the calling test the records to itself, emptied.
fn serial() -> (MutexGuard<'static, ()>, &'static Recorder) {
    static TURN: Mutex<()> = Mutex::new(());
    static RECORDER: OnceLock<&'static Recorder> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let rec = *RECORDER.get_or_init(|| {
        let rec: &'static Recorder = Box::leak(Box::new(Recorder {
            records: Mutex::new(Records::default()),
            changed: Condvar::new(),
        }));
        tracing_subscriber::registry()
            .with(Recording(rec))
            .try_init()
            .expect("the only global subscriber");
        rec
    });
    *rec.lock() = Records::default();
    (turn, rec)
}

/// The closed task spans of `pool` ("thread", "process").
fn task_spans(r: &Records, pool: &str) -> Vec<SpanRec> {
    r.done
        .iter()
        .filter(|s| s.name == "task" && s.fields.get("pool").map(String::as_str) == Some(pool))
        .cloned()
        .collect()
}

fn open_task_spans(r: &Records) -> usize {
    r.open.values().filter(|s| s.name == "task").count()
}

/// Outcome of each span's one `finished` event, counted; checks the stages of each span.
fn outcomes(spans: &[SpanRec]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for s in spans {
        let names: Vec<&str> = s.events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"queued"), "{s:?}");
        assert_eq!(names.last(), Some(&"finished"), "{s:?}");
        assert_eq!(
            names.iter().filter(|n| **n == "finished").count(),
            1,
            "{s:?}"
        );
        assert_eq!(names.iter().filter(|n| **n == "queued").count(), 1, "{s:?}");
        let outcome = s.events.last().unwrap().1["outcome"].clone();
        if outcome != "cancelled" {
            assert!(
                names.contains(&"started"),
                "a task that ran was started: {s:?}"
            );
        }
        assert!(s.fields.contains_key("task"), "{s:?}");
        *counts.entry(outcome).or_insert(0) += 1;
    }
    counts
}

/// The outcome name a span should carry for a future's result.
fn outcome_of<T>(r: &Result<T, TaskError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(TaskError::Panicked(_)) => "panicked",
        Err(TaskError::Cancelled) => "cancelled",
        Err(TaskError::WorkerDied { .. }) => "worker_died",
        Err(TaskError::TimeLimit(_)) => "time_limit",
        Err(_) => "failed",
    }
}

fn count<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for n in names {
        *counts.entry(n.to_string()).or_insert(0) += 1;
    }
    counts
}

fn worker_events<'a>(r: &'a Records, name: &str, pool: &str) -> Vec<&'a EventRec> {
    r.events
        .iter()
        .filter(|e| e.name == name && e.fields.get("pool").map(String::as_str) == Some(pool))
        .collect()
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
