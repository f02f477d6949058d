//! Task timelines: what ran where and when, recorded by a pool on request
//! ([`ThreadPoolBuilder::record_timeline`](crate::ThreadPoolBuilder::record_timeline),
//! [`ThreadPoolExecutor::start_recording`](crate::ThreadPoolExecutor::start_recording),
//! and the same on the process pool), written as Chrome trace-event JSON (Perfetto,
//! `chrome://tracing`) or drawn as an SVG (one row per worker, one bar per task, marks where
//! a worker process died or was started).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::stats::Outcome;
use crate::sync::{self, Mutex};

/// How a task on a timeline ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// It returned a value.
    Ok,
    /// It panicked (or failed otherwise).
    Panicked,
    /// It stopped on a cancellation request
    /// ([`Future::cancel_running`](crate::Future::cancel_running)).
    Cancelled,
    /// Its worker died while running it (process pools).
    Died,
    /// It ran past its time limit and its worker was killed (process pool:
    /// [`submit_with_timeout`](crate::ProcessPoolExecutor::submit_with_timeout),
    /// [`task_timeout`](crate::ProcessPoolBuilder::task_timeout)).
    TimeLimit,
}

impl TaskOutcome {
    /// The lower-case name used in the trace and the SVG (`ok`, `panicked`, ...).
    ///
    /// ```
    /// assert_eq!(concurrent_futures::TaskOutcome::Panicked.name(), "panicked");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            TaskOutcome::Ok => "ok",
            TaskOutcome::Panicked => "panicked",
            TaskOutcome::Cancelled => "cancelled",
            TaskOutcome::Died => "died",
            TaskOutcome::TimeLimit => "time-limit",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            TaskOutcome::Ok => "#4c9a2a",
            TaskOutcome::Panicked => "#d1372b",
            TaskOutcome::Cancelled => "#e9a31b",
            TaskOutcome::Died => "#333333",
            TaskOutcome::TimeLimit => "#8e44ad",
        }
    }

    pub(crate) fn from_outcome(o: Outcome) -> Self {
        match o {
            Outcome::Ok => TaskOutcome::Ok,
            Outcome::Failed => TaskOutcome::Panicked,
            Outcome::Cancelled => TaskOutcome::Cancelled,
        }
    }
}

/// One task's run: on which worker, from when to when (since the start of the pool's
/// recording clock), and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskSpan {
    /// The worker's index (row).
    pub worker: usize,
    /// When the task started.
    pub start: Duration,
    /// When it ended.
    pub end: Duration,
    /// How it ended.
    pub outcome: TaskOutcome,
    /// What ran: `"task"`, or `"map"` for a helper of a thread pool's `map` (which runs a
    /// run of items) or a chunk of a process pool's `map`.
    pub name: &'static str,
}

/// What happened to a worker process at a [`Mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MarkKind {
    /// The worker died: it crashed, exited on its own, or was killed (a time limit).
    Died,
    /// A new worker process started on this row, replacing one that died or retired
    /// ([`max_tasks_per_child`](crate::ProcessPoolBuilder::max_tasks_per_child)).
    Started,
}

impl MarkKind {
    /// The name used in the trace and the SVG (`worker died`, `worker started`).
    ///
    /// ```
    /// assert_eq!(concurrent_futures::MarkKind::Died.name(), "worker died");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            MarkKind::Died => "worker died",
            MarkKind::Started => "worker started",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            MarkKind::Died => "#d1372b",
            MarkKind::Started => "#1f5fbf",
        }
    }
}

/// An event of a worker's life on its row: a worker process died, or a new one started
/// there (process pool). A row is a worker slot: a replacement takes the row of the worker
/// it replaces, so a pool of `n` workers always draws `n` rows.
///
/// ```
/// use concurrent_futures::{Executor, MarkKind, ProcessPoolExecutor};
/// fn exit(_: ()) -> u8 { std::process::exit(3) }
/// let pool = ProcessPoolExecutor::builder().max_workers(1).record_timeline(true).build().unwrap();
/// assert!(pool.submit(exit, ()).result().is_err());
/// pool.shutdown(true);
/// let died = &pool.take_timeline().marks[0];
/// assert_eq!((died.kind, died.worker), (MarkKind::Died, 0));
/// assert!(died.pid.is_some());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mark {
    /// The row.
    pub worker: usize,
    /// When.
    pub at: Duration,
    /// What happened.
    pub kind: MarkKind,
    /// The process that died or started.
    pub pid: Option<u32>,
}

/// A steal: worker `thief` took `tasks` queued tasks from worker `victim`'s queue.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Steal {
    /// The worker that stole.
    pub thief: usize,
    /// The worker whose queue it stole from.
    pub victim: usize,
    /// How many tasks it took.
    pub tasks: u64,
    /// When.
    pub at: Duration,
}

/// What a pool recorded: tasks, steals and the workers' deaths and starts, per worker.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::builder().max_workers(2).record_timeline(true).build().unwrap();
/// let futs: Vec<_> = (0..8).map(|i| pool.spawn(move || i * 2)).collect();
/// for f in &futs { f.result().unwrap(); }
/// pool.shutdown(true);
///
/// let timeline = pool.take_timeline();
/// assert_eq!(timeline.workers, 2);
/// // Tasks a waiting thread ran itself are not on a worker's row.
/// assert!(timeline.tasks.len() <= 8);
/// let json = timeline.to_chrome_trace(); // open in Perfetto or chrome://tracing
/// assert!(json.starts_with("{\"traceEvents\":["));
/// let svg = timeline.to_svg();
/// assert!(svg.starts_with("<svg"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeline {
    /// Number of workers (rows).
    pub workers: usize,
    /// The tasks, sorted by start.
    pub tasks: Vec<TaskSpan>,
    /// The steals, sorted by time.
    pub steals: Vec<Steal>,
    /// Deaths and starts of worker processes, sorted by time (process pool).
    pub marks: Vec<Mark>,
}

impl Timeline {
    /// An empty timeline of `workers` rows.
    ///
    /// ```
    /// let t = concurrent_futures::Timeline::new(3);
    /// assert_eq!((t.workers, t.tasks.len()), (3, 0));
    /// ```
    pub fn new(workers: usize) -> Self {
        Timeline {
            workers,
            tasks: Vec::new(),
            steals: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// When the last task ended (or the last steal or mark happened).
    ///
    /// ```
    /// assert_eq!(concurrent_futures::Timeline::new(1).end(), std::time::Duration::ZERO);
    /// ```
    pub fn end(&self) -> Duration {
        let t = self.tasks.iter().map(|t| t.end).max().unwrap_or_default();
        let s = self.steals.iter().map(|s| s.at).max().unwrap_or_default();
        let m = self.marks.iter().map(|m| m.at).max().unwrap_or_default();
        t.max(s).max(m)
    }

    /// Chrome trace-event JSON: one complete (`"X"`) event per task on thread `worker` of
    /// process 1, an instant (`"i"`) event per steal on the thief's thread and per mark
    /// (`worker died`, `worker started`, with the pid) on its row, and the names of the
    /// rows. Times are in microseconds. Opens in <https://ui.perfetto.dev> and
    /// `chrome://tracing`.
    ///
    /// ```
    /// use concurrent_futures::Timeline;
    /// let t = Timeline::new(1);
    /// assert_eq!(
    ///     t.to_chrome_trace(),
    ///     "{\"traceEvents\":[\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\"worker 0\"}}\n],\"displayTimeUnit\":\"ms\"}\n"
    /// );
    /// ```
    pub fn to_chrome_trace(&self) -> String {
        let mut out = String::from("{\"traceEvents\":[\n");
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !std::mem::take(&mut first) {
                out.push_str(",\n");
            }
        };
        for w in 0..self.workers {
            sep(&mut out);
            let _ = write!(
                out,
                "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":{w},\"args\":{{\"name\":\"worker {w}\"}}}}"
            );
        }
        for t in &self.tasks {
            sep(&mut out);
            let _ = write!(
                out,
                "{{\"name\":\"{}\",\"cat\":\"{}\",\"ph\":\"X\",\"ts\":{},\"dur\":{},\"pid\":1,\"tid\":{},\"args\":{{\"outcome\":\"{}\"}}}}",
                t.name,
                t.outcome.name(),
                micros(t.start),
                micros(t.end.saturating_sub(t.start)),
                t.worker,
                t.outcome.name()
            );
        }
        for s in &self.steals {
            sep(&mut out);
            let _ = write!(
                out,
                "{{\"name\":\"steal\",\"ph\":\"i\",\"s\":\"t\",\"ts\":{},\"pid\":1,\"tid\":{},\"args\":{{\"from\":{},\"tasks\":{}}}}}",
                micros(s.at),
                s.thief,
                s.victim,
                s.tasks
            );
        }
        for m in &self.marks {
            sep(&mut out);
            let _ = write!(
                out,
                "{{\"name\":\"{}\",\"ph\":\"i\",\"s\":\"t\",\"ts\":{},\"pid\":1,\"tid\":{},\"args\":{{\"pid\":{}}}}}",
                m.kind.name(),
                micros(m.at),
                m.worker,
                m.pid.map_or_else(|| "null".to_owned(), |p| p.to_string())
            );
        }
        out.push_str("\n],\"displayTimeUnit\":\"ms\"}\n");
        out
    }

    /// A self-contained SVG: one row per worker, one bar per task coloured by outcome (ok
    /// green, panicked red, cancelled amber, time limit purple, died black; hover a bar for
    /// its times), a triangle above a row where that worker stole, a red line with a cross
    /// where a worker process died and a blue one with a flag where a new one started, a
    /// time axis and a legend.
    ///
    /// ```
    /// let svg = concurrent_futures::Timeline::new(2).to_svg();
    /// assert!(svg.contains("worker 1") && svg.ends_with("</svg>\n"));
    /// ```
    pub fn to_svg(&self) -> String {
        const LEFT: f64 = 80.0;
        const RIGHT: f64 = 24.0;
        const TOP: f64 = 44.0;
        const ROW: f64 = 26.0;
        const BAR: f64 = 18.0;
        const WIDTH: f64 = 1000.0;
        let plot = WIDTH - LEFT - RIGHT;
        let rows = self.workers.max(1) as f64;
        let axis_y = TOP + rows * ROW + 6.0;
        let height = axis_y + 40.0;
        let span = self.end().as_secs_f64().max(1e-6);
        let (step, unit, scale) = axis_step(span);
        let x = |d: Duration| LEFT + d.as_secs_f64() / span * plot;

        let mut out = String::new();
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(
            out,
            "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>"
        );
        // Legend: every outcome; steals and marks when there are any.
        let mut entries: Vec<(Option<TaskOutcome>, Option<MarkKind>, &str)> = [
            TaskOutcome::Ok,
            TaskOutcome::Panicked,
            TaskOutcome::Cancelled,
            TaskOutcome::TimeLimit,
            TaskOutcome::Died,
        ]
        .into_iter()
        .map(|o| (Some(o), None, o.name()))
        .collect();
        if !self.steals.is_empty() {
            entries.push((None, None, "steal"));
        }
        for kind in [MarkKind::Died, MarkKind::Started] {
            if self.marks.iter().any(|m| m.kind == kind) {
                entries.push((None, Some(kind), kind.name()));
            }
        }
        let mut lx = LEFT;
        for (outcome, mark, label) in entries {
            let swatch = match (outcome, mark) {
                (Some(o), _) => format!(
                    "<rect x=\"{lx}\" y=\"12\" width=\"12\" height=\"12\" fill=\"{}\"/>",
                    o.colour()
                ),
                (None, Some(kind)) => mark_glyph(kind, lx + 6.0, 12.0, 12.0),
                (None, None) => format!("<path d=\"M{lx} 12 l12 0 l-6 10 z\" fill=\"#1f5fbf\"/>"),
            };
            let _ = writeln!(
                out,
                "{swatch}<text x=\"{}\" y=\"22\">{label}</text>",
                lx + 16.0
            );
            // About 7 px per character at this size, and a gap.
            lx += 16.0 + 7.0 * label.chars().count() as f64 + 18.0;
        }
        // Rows.
        for w in 0..self.workers {
            let y = TOP + w as f64 * ROW;
            let fill = if w % 2 == 0 { "#f3f3f3" } else { "#fafafa" };
            let _ = writeln!(
                out,
                "<rect x=\"{LEFT}\" y=\"{y}\" width=\"{plot}\" height=\"{ROW}\" fill=\"{fill}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">worker {w}</text>",
                LEFT - 8.0,
                y + ROW / 2.0 + 4.0
            );
        }
        // Tasks: failures last, so that a short one is not hidden under the next bar.
        let (ok, failed): (Vec<&TaskSpan>, Vec<&TaskSpan>) = self
            .tasks
            .iter()
            .partition(|t| t.outcome == TaskOutcome::Ok);
        for t in ok.into_iter().chain(failed) {
            let x0 = x(t.start);
            // A failure is never too short to see.
            let min = if t.outcome == TaskOutcome::Ok {
                1.0
            } else {
                3.0
            };
            let w = (x(t.end) - x0).max(min);
            let y = TOP + t.worker as f64 * ROW + (ROW - BAR) / 2.0;
            let _ = writeln!(
                out,
                "<rect class=\"bar {}\" x=\"{x0:.2}\" y=\"{y}\" width=\"{w:.2}\" height=\"{BAR}\" fill=\"{}\" stroke=\"#ffffff\" stroke-width=\"0.5\"><title>{} on worker {}: {:.1} to {:.1} {unit} ({})</title></rect>",
                t.outcome.name(),
                t.outcome.colour(),
                t.name,
                t.worker,
                t.start.as_secs_f64() * scale,
                t.end.as_secs_f64() * scale,
                t.outcome.name()
            );
        }
        // Steals: a triangle at the top edge of the thief's row.
        for s in &self.steals {
            let cx = x(s.at);
            let y = TOP + s.thief as f64 * ROW;
            let _ = writeln!(
                out,
                "<path class=\"steal\" d=\"M{:.2} {y} l8 0 l-4 7 z\" fill=\"#1f5fbf\"><title>worker {} stole {} task(s) from worker {} at {:.1} {unit}</title></path>",
                cx - 4.0,
                s.thief,
                s.tasks,
                s.victim,
                s.at.as_secs_f64() * scale
            );
        }
        // Marks: a line across the worker's row, topped by a cross (died) or a flag
        // (started).
        for m in &self.marks {
            let y = TOP + m.worker as f64 * ROW;
            let glyph = mark_glyph(m.kind, x(m.at), y, ROW);
            let title = format!(
                "{}{} on row {} at {:.1} {unit}",
                m.kind.name(),
                m.pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                m.worker,
                m.at.as_secs_f64() * scale
            );
            let _ = writeln!(
                out,
                "<g class=\"mark {}\"><title>{title}</title>{glyph}</g>",
                if m.kind == MarkKind::Died {
                    "died"
                } else {
                    "started"
                }
            );
        }
        // Time axis.
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"#000000\"/>",
            LEFT + plot
        );
        let mut k = 0u32;
        loop {
            let t = step * f64::from(k);
            if t > span * (1.0 + 1e-9) {
                break;
            }
            let tx = LEFT + t / span * plot;
            let _ = writeln!(
                out,
                "<line x1=\"{tx:.2}\" y1=\"{axis_y}\" x2=\"{tx:.2}\" y2=\"{}\" stroke=\"#000000\"/><text x=\"{tx:.2}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                axis_y + 5.0,
                axis_y + 18.0,
                trim(t * scale)
            );
            k += 1;
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">time ({unit})</text>",
            LEFT + plot,
            axis_y + 34.0
        );
        out.push_str("</svg>\n");
        out
    }
}

/// A mark's drawing at `x`, over a row from `y` of height `h`: a line across it, topped by a
/// cross (died) or a flag pointing right (started).
fn mark_glyph(kind: MarkKind, x: f64, y: f64, h: f64) -> String {
    let c = kind.colour();
    let line = format!(
        "<line x1=\"{x:.2}\" y1=\"{y:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"{c}\" stroke-width=\"2\"/>",
        y + h
    );
    let top = match kind {
        MarkKind::Died => format!(
            "<path d=\"M{:.2} {:.2} l7 7 m0 -7 l-7 7\" stroke=\"{c}\" stroke-width=\"2\"/>",
            x - 3.5,
            y - 3.5
        ),
        MarkKind::Started => format!(
            "<path d=\"M{x:.2} {:.2} l7 3.5 l-7 3.5 z\" fill=\"{c}\"/>",
            y - 3.5
        ),
    };
    line + &top
}

/// Microseconds with nanosecond precision, as JSON.
fn micros(d: Duration) -> String {
    format!("{}.{:03}", d.as_micros(), d.subsec_nanos() % 1000)
}

/// A tick step of 1, 2 or 5 times a power of ten giving 5 to 10 ticks over `span`
/// seconds, with the unit to print it in and the factor from seconds to that unit.
fn axis_step(span: f64) -> (f64, &'static str, f64) {
    let raw = span / 6.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * pow)
        .find(|s| span / s <= 10.0)
        .unwrap_or(10.0 * pow);
    let (unit, scale) = if span >= 1.0 {
        ("s", 1.0)
    } else if span >= 1e-3 {
        ("ms", 1e3)
    } else {
        ("µs", 1e6)
    };
    (step, unit, scale)
}

/// A tick label without trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// What a worker records.
enum Event {
    Task {
        start_ns: u64,
        end_ns: u64,
        outcome: TaskOutcome,
        name: &'static str,
    },
    Steal {
        victim: usize,
        tasks: u64,
        at_ns: u64,
    },
    Mark {
        kind: MarkKind,
        at_ns: u64,
        pid: Option<u32>,
    },
}

/// A pool's recording: one buffer per worker (locked only by its worker while recording,
/// and by `take`; on the process pool, by the thread that reads that worker's results).
pub(crate) struct Recorder {
    epoch: Instant,
    rows: Box<[CachePadded<Mutex<Vec<Event>>>]>,
}

impl Recorder {
    pub(crate) fn new(workers: usize) -> Self {
        Recorder {
            epoch: Instant::now(),
            rows: (0..workers)
                .map(|_| CachePadded::new(Mutex::new(Vec::new())))
                .collect(),
        }
    }

    /// Nanoseconds since the pool started.
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn task(
        &self,
        worker: usize,
        start_ns: u64,
        end_ns: u64,
        outcome: TaskOutcome,
        name: &'static str,
    ) {
        self.push(
            worker,
            Event::Task {
                start_ns,
                end_ns,
                outcome,
                name,
            },
        );
    }

    /// A worker process died or started on row `worker` at `at_ns`.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn mark(&self, worker: usize, kind: MarkKind, at_ns: u64, pid: Option<u32>) {
        self.push(worker, Event::Mark { kind, at_ns, pid });
    }

    fn push(&self, worker: usize, event: Event) {
        if let Some(row) = self.rows.get(worker) {
            sync::lock(row).push(event);
        }
    }

    pub(crate) fn steal(&self, thief: usize, victim: usize, tasks: u64) {
        self.steal_at(thief, victim, tasks, self.now_ns());
    }

    /// A steal at `at_ns` on the timeline (a remote pool's own clock).
    pub(crate) fn steal_at(&self, thief: usize, victim: usize, tasks: u64, at_ns: u64) {
        self.push(
            thief,
            Event::Steal {
                victim,
                tasks,
                at_ns,
            },
        );
    }

    /// Takes what was recorded so far.
    pub(crate) fn take(&self) -> Timeline {
        let mut t = Timeline::new(self.rows.len());
        for (worker, row) in self.rows.iter().enumerate() {
            for e in std::mem::take(&mut *sync::lock(row)) {
                match e {
                    Event::Task {
                        start_ns,
                        end_ns,
                        outcome,
                        name,
                    } => t.tasks.push(TaskSpan {
                        worker,
                        start: Duration::from_nanos(start_ns),
                        end: Duration::from_nanos(end_ns),
                        outcome,
                        name,
                    }),
                    Event::Steal {
                        victim,
                        tasks,
                        at_ns,
                    } => t.steals.push(Steal {
                        thief: worker,
                        victim,
                        tasks,
                        at: Duration::from_nanos(at_ns),
                    }),
                    Event::Mark { kind, at_ns, pid } => t.marks.push(Mark {
                        worker,
                        at: Duration::from_nanos(at_ns),
                        kind,
                        pid,
                    }),
                }
            }
        }
        t.tasks.sort_by_key(|s| (s.start, s.worker));
        t.steals.sort_by_key(|s| (s.at, s.thief));
        t.marks.sort_by_key(|m| (m.at, m.worker));
        t
    }
}
