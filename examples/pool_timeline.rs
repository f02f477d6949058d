//! See a pool at work: statistics and a task timeline of a skewed workload.
//!
//! 64 tasks, one in eight 16 times longer than the others, are submitted from inside the
//! pool (so they land on one worker's queue and the other workers must steal them). The
//! pool records its timeline; the program writes it as `timeline.json` (Chrome trace
//! events: open it in <https://ui.perfetto.dev> or `chrome://tracing`) and `timeline.svg`
//! (one row per worker, one bar per task, triangles where a worker stole), and prints the
//! pool's statistics.
//!
//! Run: `cargo run --release --example pool_timeline -- [--out DIR]`
//! (default DIR: `pool_timeline/` in cargo's target directory).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concurrent_futures::{Executor, ThreadPoolExecutor};

const TASKS: u64 = 64;
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

fn main() -> std::io::Result<()> {
    let dir = out_dir().join("thread_pool");
    std::fs::create_dir_all(&dir)?;

    let pool = Arc::new(
        ThreadPoolExecutor::builder()
            .max_workers(4)
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
                .map(|i| {
                    let d = if i % 8 == 0 { SHORT * 16 } else { SHORT };
                    p.spawn(move || work(d))
                })
                .collect::<Vec<_>>()
        })
        .into_result()
        .expect("the submitting task");
    for t in tasks {
        t.into_result().expect("a task failed");
    }
    let wall = started.elapsed();
    pool.shutdown(true);

    let stats = pool.stats();
    let timeline = pool.take_timeline();
    let json = dir.join("timeline.json");
    let svg = dir.join("timeline.svg");
    std::fs::write(&json, timeline.to_chrome_trace())?;
    std::fs::write(&svg, timeline.to_svg())?;

    println!(
        "thread pool, {} workers, {wall:.1?} wall",
        pool.max_workers()
    );
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
    println!(
        "  timeline: {} tasks, {} steals",
        timeline.tasks.len(),
        timeline.steals.len()
    );
    println!("  wrote {}", json.display());
    println!("  wrote {}", svg.display());
    Ok(())
}
