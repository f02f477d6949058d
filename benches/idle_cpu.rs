//! CPU burned by an idle pool, and by a pool fed one tiny task every 250 µs, beside rayon in
//! the same run. Reports the pool threads' CPU time per second of wall time (medians of 5
//! interleaved rounds), read from `/proc/self/task/*/schedstat` (Linux).
//!
//! `cargo bench --bench idle_cpu`

use std::time::{Duration, Instant};

use concurrent_futures::{Executor, ThreadPoolExecutor};

const WORKERS: usize = 2;
const ROUNDS: usize = 5;
const WINDOW: Duration = Duration::from_secs(1);

/// Nanoseconds on CPU of every thread of this process except the calling (main) thread.
fn pool_cpu_ns() -> u64 {
    let me = std::process::id().to_string();
    let mut total = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy() == me {
                continue;
            }
            if let Ok(s) = std::fs::read_to_string(entry.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

fn trivial(x: u64) -> u64 {
    x + 1
}

/// CPU ms per wall second while `feed` is called every `every` (or never, if `None`).
fn measure(every: Option<Duration>, mut feed: impl FnMut()) -> f64 {
    feed(); // make sure every worker has started and gone idle again
    std::thread::sleep(Duration::from_millis(50));
    let cpu0 = pool_cpu_ns();
    let t0 = Instant::now();
    match every {
        None => std::thread::sleep(WINDOW),
        Some(period) => {
            let mut next = t0;
            while t0.elapsed() < WINDOW {
                feed();
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
        }
    }
    let cpu = pool_cpu_ns() - cpu0;
    cpu as f64 / 1e6 / t0.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let every = Some(Duration::from_micros(250));
    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("concurrent_futures ThreadPoolExecutor", vec![], vec![]),
        ("rayon ThreadPool (spawn)", vec![], vec![]),
    ];
    for _ in 0..ROUNDS {
        {
            let pool = ThreadPoolExecutor::new(WORKERS);
            rows[0]
                .1
                .push(measure(None, || drop(pool.submit(trivial, 1))));
            rows[0]
                .2
                .push(measure(every, || drop(pool.submit(trivial, 1))));
        }
        {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(WORKERS)
                .build()
                .unwrap();
            rows[1].1.push(measure(None, || {
                pool.spawn(|| {
                    std::hint::black_box(trivial(1));
                })
            }));
            rows[1].2.push(measure(every, || {
                pool.spawn(|| {
                    std::hint::black_box(trivial(1));
                })
            }));
        }
    }
    println!(
        "pool threads' CPU, ms per second (median of {ROUNDS}, {WORKERS} workers, {} CPUs)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<40} {:>10} {:>22}",
        "pool", "idle", "1 task every 250 µs"
    );
    for (name, idle, fed) in rows {
        println!("{name:<40} {:>10.1} {:>22.1}", median(idle), median(fed));
    }
}
