//! A `tracing` layer that records every span and event, for the tests of the `tracing`
//! feature (tests/tracing.rs, and the MPI check in tests/mpi.rs), with the checks they share.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use concurrent_futures::TaskError;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use super::LONG;

/// Field values, as text.
pub type Fields = HashMap<String, String>;

#[derive(Debug, Clone)]
pub struct SpanRec {
    pub name: String,
    pub fields: Fields,
    pub closed: bool,
    /// (event name, its fields), in order.
    pub events: Vec<(String, Fields)>,
}

#[derive(Debug, Clone)]
pub struct EventRec {
    pub name: String,
    pub fields: Fields,
}

#[derive(Default)]
pub struct Records {
    /// By the span's id (ids are not reused while a span is open; a closed span's entry is
    /// moved to `done`).
    pub open: HashMap<u64, SpanRec>,
    pub done: Vec<SpanRec>,
    /// Events outside any span.
    pub events: Vec<EventRec>,
}

pub struct Recorder {
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
    pub fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (at most `LONG`) until `cond` holds of the records, and returns it.
    pub fn wait_for<T>(&self, what: &str, cond: impl Fn(&Records) -> Option<T>) -> T {
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

/// The closed task spans of `pool` ("thread", "process").
pub fn task_spans(r: &Records, pool: &str) -> Vec<SpanRec> {
    r.done
        .iter()
        .filter(|s| s.name == "task" && s.fields.get("pool").map(String::as_str) == Some(pool))
        .cloned()
        .collect()
}

pub fn open_task_spans(r: &Records) -> usize {
    r.open.values().filter(|s| s.name == "task").count()
}

/// Outcome of each span's one `finished` event, counted; checks the stages of each span.
pub fn outcomes(spans: &[SpanRec]) -> HashMap<String, usize> {
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
pub fn outcome_of<T>(r: &Result<T, TaskError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(TaskError::Panicked(_)) => "panicked",
        Err(TaskError::Cancelled) => "cancelled",
        Err(TaskError::WorkerDied { .. }) => "worker_died",
        Err(TaskError::TimeLimit(_)) => "time_limit",
        Err(_) => "failed",
    }
}

pub fn count<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for n in names {
        *counts.entry(n.to_string()).or_insert(0) += 1;
    }
    counts
}

pub fn worker_events<'a>(r: &'a Records, name: &str, pool: &str) -> Vec<&'a EventRec> {
    r.events
        .iter()
        .filter(|e| e.name == name && e.fields.get("pool").map(String::as_str) == Some(pool))
        .collect()
}

/// Installs the recorder as the process's global subscriber (once; the pools' threads must
/// see it) and returns it.
pub fn install() -> &'static Recorder {
    static RECORDER: OnceLock<&'static Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let rec: &'static Recorder = Box::leak(Box::new(Recorder {
            records: Mutex::new(Records::default()),
            changed: Condvar::new(),
        }));
        tracing_subscriber::registry()
            .with(Recording(rec))
            .try_init()
            .expect("the only global subscriber");
        rec
    })
}
