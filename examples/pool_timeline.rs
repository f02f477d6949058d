//! See a pool at work: statistics and a task timeline of a skewed workload, on the thread
//! pool and on the process pool.
//!
//! 64 tasks, one in eight 16 times longer than the others. On the thread pool they are
//! submitted from inside the pool (so they land on one worker's queue and the other
//! workers must steal them: triangles on the timeline). On the process pool they are
//! submitted from outside, and a few go wrong on purpose, to show how each ending is
//! drawn: one panics (red), one aborts its worker (black, then the worker's death and its
//! replacement's start are marked on that row), and one more runs past the time limit it
//! was submitted with (purple; its worker is killed and replaced too). A worker held by a
//! long task gives back what waits behind it to an idle one: a triangle on the row of the
//! worker that took it.
//!
//! For each pool the program writes `<pool>-timeline.json` (Chrome trace events: open it
//! in <https://ui.perfetto.dev> or `chrome://tracing`) and `<pool>-timeline.svg` (one row
//! per worker, one bar per task), and prints the pool's statistics.
//!
//! Run: `cargo run --release --example pool_timeline -- [--out DIR]`
//! (default DIR: `pool_timeline/` in cargo's target directory).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concurrent_futures::{
    Executor, PoolStats, ProcessPoolExecutor, TaskOutcome, ThreadPoolExecutor, Timeline,
};

const TASKS: u64 = 64;
const WORKERS: usize = 4;
const SHORT: Duration = Duration::from_millis(2);

/// Busy for `d` (a CPU-bound task, not a sleep).
fn work(d: Duration) -> u64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::hint::black_box(n);
    }
    n
}

/// The process pool's task: task `i` of the skewed workload, with its faults.
fn task(i: u64) -> u64 {
    match i {
        13 => panic!("task 13 fails"),
        29 => std::process::abort(),
        _ => work(duration(i)),
    }
}

fn duration(i: u64) -> Duration {
    if i.is_multiple_of(8) {
        SHORT * 16
    } else {
        SHORT
    }
}

fn out_dir() -> PathBuf {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--out" {
            return PathBuf::from(args.next().expect("--out needs a directory"));
        }
        if let Some(d) = a.strip_prefix("--out=") {
            return PathBuf::from(d);
        }
    }
    // target/<profile>/examples/pool_timeline -> target/pool_timeline
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("pool_timeline")))
        .unwrap_or_else(|| PathBuf::from("target/pool_timeline"))
}

/// Writes the timeline's two files and prints what the pool did.
fn report(
    dir: &Path,
    name: &str,
    wall: Duration,
    stats: &PoolStats,
    timeline: &Timeline,
) -> std::io::Result<()> {
    let json = dir.join(format!("{name}-timeline.json"));
    let svg = dir.join(format!("{name}-timeline.svg"));
    std::fs::write(&json, timeline.to_chrome_trace())?;
    std::fs::write(&svg, timeline.to_svg())?;
    println!("{name}: {} workers, {wall:.1?} wall", timeline.workers);
    println!(
        "  submitted {} = done {} + failed {} + cancelled {} (+ queued {} + running {})",
        stats.submitted, stats.done, stats.failed, stats.cancelled, stats.queued, stats.running
    );
    for (i, w) in stats.workers.iter().enumerate() {
        println!(
            "  worker {i}: ran {:3}, busy {:7.1?}, stole {:3}, gave away {:3}",
            w.tasks_run, w.busy, w.stolen, w.given_away
        );
    }
    if stats.bytes_sent > 0 {
        println!(
            "  bytes sent {}, received {}; worker deaths {}, restarts {}",
            stats.bytes_sent, stats.bytes_received, stats.worker_deaths, stats.worker_restarts
        );
    }
    let count = |o| timeline.tasks.iter().filter(|t| t.outcome == o).count();
    println!(
        "  timeline: {} tasks ({} ok, {} panicked, {} died, {} over their time limit), {} steals, {} marks",
        timeline.tasks.len(),
        count(TaskOutcome::Ok),
        count(TaskOutcome::Panicked),
        count(TaskOutcome::Died),
        count(TaskOutcome::TimeLimit),
        timeline.steals.len(),
        timeline.marks.len()
    );
    println!("  wrote {}", json.display());
    println!("  wrote {}", svg.display());
    Ok(())
}

fn threads(dir: &Path) -> std::io::Result<()> {
    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(WORKERS)
            .caller_runs(false)
            .record_timeline(true)
            .build()
            .expect("start the pool"),
    );
    let p = pool.clone();
    let started = Instant::now();
    // One task submits the workload from inside the pool: it all lands on one worker's
    // queue, and the idle workers steal from it.
    let tasks = pool
        .spawn(move || {
            (0..TASKS)
                .map(|i| p.spawn(move || work(duration(i))))
                .collect::<Vec<_>>()
        })
        .into_result()
        .expect("the submitting task");
    for t in tasks {
        t.into_result().expect("a task failed");
    }
    let wall = started.elapsed();
    pool.shutdown(true);
    report(dir, "threads", wall, &pool.stats(), &pool.take_timeline())
}

fn processes(dir: &Path) -> std::io::Result<()> {
    let pool = ProcessPoolExecutor::builder()
        .max_workers(WORKERS)
        .record_timeline(true)
        .build()
        .expect("start the pool");
    let started = Instant::now();
    let mut tasks: Vec<_> = (0..TASKS).map(|i| pool.submit(task, i)).collect();
    // One more, with a time limit shorter than its run.
    tasks.push(pool.submit_with_timeout(work, SHORT * 20, SHORT * 5));
    let failed = tasks.into_iter().filter(|t| t.result().is_err()).count();
    assert_eq!(failed, 3, "the panic, the abort and the time limit");
    let wall = started.elapsed();
    pool.shutdown(true);
    report(dir, "processes", wall, &pool.stats(), &pool.take_timeline())
}

fn main() -> std::io::Result<()> {
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    threads(&dir)?;
    processes(&dir)
}
