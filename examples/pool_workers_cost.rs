//! What each worker of a process pool costs the parent and the machine: descriptors,
//! memory, start time, at 10, 100 and 1,000 workers. Ports no seed; the figures behind
//! the text on large pools. Every worker is this program re-executed.
//!
//! ```sh
//! ulimit -n 1024   # the usual soft limit: the pool raises it to the hard one itself
//! cargo run --release --example pool_workers_cost            # 10, 100, 1000 workers
//! cargo run --release --example pool_workers_cost -- 10 300  # other sizes
//! ```
//!
//! Per pool it prints: the parent's open descriptors and resident memory added by the
//! pool (per worker), the workers' resident and proportional memory (RSS counts the pages
//! they share with each other and the page cache in full; PSS divides shared pages among
//! their users), the time `new` took (every worker started and said hello), and the
//! time of a first round of one task per worker.

use std::time::Instant;

use concurrent_futures::{Executor, ProcessPoolExecutor};

fn pid_of(_: ()) -> u32 {
    std::process::id()
}

/// A field of `/proc/<pid>/<file>` in kB (`VmRSS:`, `Pss:`).
fn kb(pid: &str, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn soft_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit`.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100, 1000]
    } else {
        sizes
    };
    println!("soft descriptor limit at start: {}", soft_limit());
    println!(
        "{:>7} {:>11} {:>14} {:>14} {:>14} {:>10} {:>12}",
        "workers", "fds/worker", "parent RSS/w", "worker RSS", "worker PSS", "start", "first round"
    );
    for n in sizes {
        let fds = open_fds();
        let rss = kb("self", "status", "VmRSS:");
        let t = Instant::now();
        let pool = ProcessPoolExecutor::new(n);
        let start = t.elapsed();
        let t = Instant::now();
        let futs: Vec<_> = (0..n).map(|_| pool.submit(pid_of, ())).collect();
        for f in &futs {
            f.result().expect("a first task");
        }
        let round = t.elapsed();
        let added_fds = open_fds() - fds;
        let added_rss = kb("self", "status", "VmRSS:").saturating_sub(rss);
        let pids = pool.pids();
        let worker_rss: u64 = pids
            .iter()
            .map(|p| kb(&p.to_string(), "status", "VmRSS:"))
            .sum();
        let worker_pss: u64 = pids
            .iter()
            .map(|p| kb(&p.to_string(), "smaps_rollup", "Pss:"))
            .sum();
        let w = pids.len().max(1) as f64;
        println!(
            "{:>7} {:>11.2} {:>11.1} kB {:>11.0} kB {:>11.0} kB {:>7.0} ms {:>9.1} ms",
            pids.len(),
            added_fds as f64 / w,
            added_rss as f64 / w,
            worker_rss as f64 / w,
            worker_pss as f64 / w,
            start.as_secs_f64() * 1e3,
            round.as_secs_f64() * 1e3,
        );
        pool.shutdown(true);
    }
    println!("soft descriptor limit at the end: {}", soft_limit());
}
