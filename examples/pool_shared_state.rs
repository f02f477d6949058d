//! One job, every backend, every way of sharing state: 64 items scored against a 32 MB
//! read-only table (4 Mi `u64`, each item compared with every entry) and a settings
//! struct. Prints the median time of each way, then `shared-table processes/threads = X`:
//! `Shared` on a process pool against an `Arc` on the thread pool, in the same run.
//!
//! ```sh
//! cargo run --release --example pool_shared_state -- 7    # medians of 7 runs (default 5)
//! cargo run --release --features mpi --example pool_shared_state   # with the MPI pool
//! ```
//!
//! The pools are started before the clock starts, except where the state is given to the
//! pool's initializer (`initializer_with`): that way costs a pool start each time, so its
//! rows include it. A debug build runs a 1 MB table once, to stay quick.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use concurrent_futures::{Executor, ProcessPoolExecutor, Shared, ThreadPoolExecutor};
use serde::{Deserialize, Serialize};

const ITEMS: u64 = 64;
const WORKERS: usize = 2;
/// A way whose runs took this long in all is not run again (the whole `Vec` on processes).
const SLOW: Duration = Duration::from_secs(4);

/// The settings every task needs with the table.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Settings {
    mix: u64,
    scale: u64,
}

const SETTINGS: Settings = Settings {
    mix: 0x9E37_79B9_7F4A_7C15,
    scale: 3,
};

/// Item `i`'s score: its key compared with every entry of the table (the top bits of
/// their difference, summed).
fn score(table: &[u64], cfg: &Settings, i: u64) -> u64 {
    let key = (i + 1).wrapping_mul(cfg.mix);
    let sum: u64 = table.iter().map(|&x| (x ^ key) >> 56).sum();
    sum * cfg.scale
}

// ===== the tasks, one per way of sharing =====

/// The whole table in every argument.
fn score_vec((table, cfg, i): (Vec<u64>, Settings, u64)) -> u64 {
    score(&table, &cfg, i)
}

/// The table in the crate's zero-copy type.
fn score_shared((table, cfg, i): (Shared<[u64]>, Settings, u64)) -> u64 {
    score(&table, &cfg, i)
}

/// The table put into a `static` by the pool's initializer, once per worker.
static LOADED: OnceLock<(Vec<u64>, Settings)> = OnceLock::new();

fn load(state: (Vec<u64>, Settings)) {
    let _ = LOADED.set(state);
}

fn score_static(i: u64) -> u64 {
    let (table, cfg) = LOADED.get().expect("the initializer ran");
    score(table, cfg, i)
}

/// The same for the thread pool: every thread's initializer gets an `Arc` of it.
static LOADED_ARC: OnceLock<(Arc<Vec<u64>>, Settings)> = OnceLock::new();

fn load_arc(state: (Arc<Vec<u64>>, Settings)) {
    let _ = LOADED_ARC.set(state);
}

fn score_static_arc(i: u64) -> u64 {
    let (table, cfg) = LOADED_ARC.get().expect("the initializer ran");
    score(table, cfg, i)
}

// ===== the ways, on each backend =====

type Run<'a> = Box<dyn Fn() -> (Duration, u64) + 'a>;

fn timed(f: impl FnOnce() -> u64) -> (Duration, u64) {
    let start = Instant::now();
    let sum = f();
    (start.elapsed(), sum)
}

/// The ways every `Executor` offers: the whole `Vec` in each argument, and `Shared`.
fn by_argument<'a, E: Executor>(pool: &'a E, table: &'a [u64]) -> [(&'static str, Run<'a>); 2] {
    [
        (
            "whole Vec in each argument",
            Box::new(move || {
                let vecs: Vec<_> = (0..ITEMS).map(|i| (table.to_vec(), SETTINGS, i)).collect();
                timed(|| pool.map(score_vec, vecs).map(Result::unwrap).sum())
            }),
        ),
        (
            "Shared<[u64]>",
            Box::new(move || {
                let own = table.to_vec();
                timed(|| {
                    let shared = Shared::new(own);
                    pool.map(
                        score_shared,
                        (0..ITEMS).map(|i| (shared.clone(), SETTINGS, i)),
                    )
                    .map(Result::unwrap)
                    .sum()
                })
            }),
        ),
    ]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // On MPI worker ranks (under `mpirun`), serve and leave.
    #[cfg(feature = "mpi")]
    let mpi = match concurrent_futures::MpiPoolExecutor::builder().start() {
        Ok(Some(pool)) => Some(pool),
        Ok(None) => return,
        Err(e) => {
            println!("MPI: skipped ({e})");
            None
        }
    };
    let (len, runs) = if cfg!(debug_assertions) {
        (1 << 17, 1)
    } else {
        let runs = std::env::args().nth(1).and_then(|a| a.parse().ok());
        (4 << 20, runs.unwrap_or(5))
    };
    let table: Vec<u64> = (0..len as u64)
        .map(|i| i.wrapping_mul(0x2545_F491_4F6C_DD1D))
        .collect();
    let want: u64 = (0..ITEMS).map(|i| score(&table, &SETTINGS, i)).sum();
    let threads = ThreadPoolExecutor::new(WORKERS);
    let processes = ProcessPoolExecutor::new(WORKERS);
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .unwrap();

    let mut rows: Vec<(&str, &str, Run<'_>)> = Vec::new();
    rows.push((
        "threads",
        "Arc captured (spawn)",
        Box::new(|| {
            let own = table.clone();
            timed(|| {
                let table = Arc::new(own);
                let futs: Vec<_> = (0..ITEMS)
                    .map(|i| {
                        let table = table.clone();
                        threads.spawn(move || score(&table, &SETTINGS, i))
                    })
                    .collect();
                futs.into_iter().map(|f| f.result().unwrap()).sum()
            })
        }),
    ));
    rows.push((
        "threads",
        "initializer_with Arc (+ start)",
        Box::new(|| {
            let state = (Arc::new(table.clone()), SETTINGS);
            timed(|| {
                let pool = ThreadPoolExecutor::builder()
                    .max_workers(WORKERS)
                    .initializer_with(load_arc, state)
                    .build()
                    .unwrap();
                pool.map(score_static_arc, 0..ITEMS)
                    .map(Result::unwrap)
                    .sum()
            })
        }),
    ));
    for (way, run) in by_argument(&threads, &table) {
        rows.push(("threads", way, run));
    }
    rows.push((
        "processes",
        "initializer_with (+ start)",
        Box::new(|| {
            let state = (table.clone(), SETTINGS);
            timed(|| {
                let pool = ProcessPoolExecutor::builder()
                    .max_workers(WORKERS)
                    .initializer_with(load, state)
                    .build()
                    .unwrap();
                pool.map(score_static, 0..ITEMS).map(Result::unwrap).sum()
            })
        }),
    ));
    for (way, run) in by_argument(&processes, &table) {
        rows.push(("processes", way, run));
    }
    rows.push((
        "rayon",
        "borrowed (par_iter)",
        Box::new(|| {
            use rayon::prelude::*;
            timed(|| {
                rayon.install(|| {
                    (0..ITEMS)
                        .into_par_iter()
                        .map(|i| score(&table, &SETTINGS, i))
                        .sum()
                })
            })
        }),
    ));
    for (way, run) in by_argument(&rayon, &table) {
        rows.push(("rayon", way, run));
    }
    #[cfg(feature = "mpi")]
    if let Some(mpi) = &mpi {
        for (way, run) in by_argument(mpi, &table) {
            // Started alone (not by `mpirun`), the pool runs on local processes.
            let backend = if mpi.ranks().is_empty() {
                "MPI (local processes)"
            } else {
                "MPI"
            };
            rows.push((backend, way, run));
        }
    }
    #[cfg(not(feature = "mpi"))]
    println!("MPI: skipped (built without the `mpi` feature)");

    println!(
        "{} MB table, {ITEMS} items, {WORKERS} workers; median of {runs} run(s)",
        (len * 8) >> 20
    );
    println!("| backend | way of sharing | median |");
    println!("|---|---|---:|");
    // Round after round, every way once a round, so that a change in the machine's load
    // meets every way alike. A way whose runs took `SLOW` in all is not run again.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); rows.len()];
    for _ in 0..runs {
        for ((backend, way, run), times) in rows.iter().zip(&mut times) {
            if times.iter().sum::<Duration>() < SLOW {
                let (t, sum) = run();
                assert_eq!(sum, want, "{backend}, {way}: wrong result");
                times.push(t);
            }
        }
    }
    let mut medians = Vec::new();
    for ((backend, way, _), times) in rows.iter().zip(times) {
        let n = times.len();
        let m = median(times);
        let note = match n {
            1 if runs > 1 => " (1 run)".to_string(),
            n if n < runs => format!(" ({n} runs)"),
            _ => String::new(),
        };
        println!(
            "| {backend} | {way} | {:.1} ms{note} |",
            m.as_secs_f64() * 1e3
        );
        medians.push((*backend, *way, m));
    }
    let of = |backend: &str, way: &str| {
        medians
            .iter()
            .find(|(b, w, _)| *b == backend && *w == way)
            .map(|(_, _, m)| m.as_secs_f64())
            .expect("measured")
    };
    let x = of("processes", "Shared<[u64]>") / of("threads", "Arc captured (spawn)");
    println!("shared-table processes/threads = {x:.2}");
}
