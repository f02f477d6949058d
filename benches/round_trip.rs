//! The process pool's round trip alone: one trivial task submitted and waited for, again
//! and again, with no other contender in the process (the `process_pool` bench runs it among
//! raw ipc-channel and procspawn, whose blocks change where the scheduler places the
//! processes). Blocks of 50 calls with the pool's timeline recording off and on alternate,
//! so both see the same machine. Each round starts a fresh pool (the placement of its
//! processes changes from one to the next); the figures are medians over rounds.
//!
//! `cargo bench --bench round_trip` (`CF_BENCH_ROUNDS`, default 5). Also a quick check that
//! two builds do not differ: build each once and run them alternately.

use std::hint::black_box;
use std::time::Instant;

use concurrent_futures::{Executor, ProcessPoolExecutor};

const BLOCK: usize = 50;
const BLOCKS: usize = 400;

fn trivial(x: u64) -> u64 {
    x + 1
}

/// Turns the pool's timeline recording on or off (one relaxed store). To measure a build
/// from before the timeline existed, make this and [`recorded`] no-ops (`recorded` returning
/// `BLOCK * BLOCKS / 2`).
fn record(pool: &ProcessPoolExecutor, on: bool) {
    if on {
        pool.start_recording();
    } else {
        pool.stop_recording();
    }
}

/// The number of tasks on the pool's timeline (taking it).
fn recorded(pool: &ProcessPoolExecutor) -> usize {
    pool.take_timeline().tasks.len()
}

/// The value at quantile `q` of `v` (sorted here).
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q) as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let rounds: usize = std::env::var("CF_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    // Per round: p10, p50, p90 with recording off, then on.
    let mut per_round: Vec<[f64; 6]> = Vec::new();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        let pool = ProcessPoolExecutor::new(2);
        for i in 0..(BLOCK as u64 * 20) {
            black_box(pool.submit(trivial, i).result().unwrap());
        }
        let mut times = [
            Vec::with_capacity(BLOCK * BLOCKS / 2),
            Vec::with_capacity(BLOCK * BLOCKS / 2),
        ];
        for block in 0..BLOCKS {
            let recording = block % 2 == 1;
            record(&pool, recording);
            for i in 0..BLOCK as u64 {
                let t = Instant::now();
                black_box(pool.submit(trivial, black_box(i)).result().unwrap());
                times[usize::from(recording)].push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        record(&pool, false);
        assert_eq!(recorded(&pool), BLOCK * BLOCKS / 2);
        pool.shutdown(true);
        let [off, on] = &mut times;
        per_round.push([
            quantile(off, 0.1),
            quantile(off, 0.5),
            quantile(off, 0.9),
            quantile(on, 0.1),
            quantile(on, 0.5),
            quantile(on, 0.9),
        ]);
    }
    let med = |i: usize| quantile(&mut per_round.iter().map(|r| r[i]).collect::<Vec<_>>(), 0.5);
    let p50s = |i: usize| {
        per_round
            .iter()
            .map(|r| format!("{:.1}", r[i]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("process pool round trip, trivial task, 2 workers; medians of {rounds} rounds (µs)");
    println!("| recording | p10 | p50 | p90 | p50 of each round |");
    println!("|---|---|---|---|---|");
    println!(
        "| off | {:.1} | {:.1} | {:.1} | {} |",
        med(0),
        med(1),
        med(2),
        p50s(1)
    );
    println!(
        "| on | {:.1} | {:.1} | {:.1} | {} |",
        med(3),
        med(4),
        med(5),
        p50s(4)
    );
    println!("on / off, p50: {:.2}", med(4) / med(1));
}
