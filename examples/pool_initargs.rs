//! A large read-only table given to every worker once: `initializer_with` on a process
//! pool, against the same job on threads sharing an `Arc`, and against sending the table
//! with every task (what `initializer_with` avoids).
//!
//! ```sh
//! cargo run --release --example pool_initargs -- 7       # 32 MiB, 64 tasks, 2 workers; medians of 7 runs
//! ```

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use concurrent_futures::{Executor, ProcessPoolExecutor, ThreadPoolExecutor};

const TABLE: usize = 32 << 20;
const TASKS: u64 = 64;
const WORKERS: usize = 2;

static SHARED: OnceLock<Vec<u8>> = OnceLock::new();

fn load(table: Vec<u8>) {
    SHARED.set(table).expect("loaded once per worker");
}

/// The same, from `Bytes` (one block to encode and decode, not a sequence of bytes).
fn load_bytes(table: concurrent_futures::Bytes) {
    SHARED.set(table.0).expect("loaded once per worker");
}

/// Task `i` reads its 1/64th of the table, and one byte in every 4 KiB page of the rest.
fn read(table: &[u8], i: u64) -> u64 {
    let chunk = table.len() / TASKS as usize;
    let own = &table[i as usize * chunk..(i as usize + 1) * chunk];
    let mut sum = own.iter().map(|&b| u64::from(b)).sum::<u64>();
    sum += table
        .iter()
        .step_by(4096)
        .map(|&b| u64::from(b))
        .sum::<u64>();
    sum
}

fn from_static(i: u64) -> u64 {
    read(SHARED.get().expect("the initializer ran"), i)
}

fn from_argument((table, i): (concurrent_futures::Bytes, u64)) -> u64 {
    read(&table, i)
}

fn table() -> Vec<u8> {
    (0..TABLE).map(|i| (i % 251) as u8).collect()
}

fn threads(table: &Arc<Vec<u8>>) -> (Duration, u64) {
    let start = Instant::now();
    let pool = ThreadPoolExecutor::new(WORKERS);
    let futs: Vec<_> = (0..TASKS)
        .map(|i| {
            let table = table.clone();
            pool.spawn(move || read(&table, i))
        })
        .collect();
    let sum = futs.into_iter().map(|f| f.result().unwrap()).sum();
    (start.elapsed(), sum)
}

fn processes_initargs(table: &[u8]) -> (Duration, u64) {
    let start = Instant::now();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(WORKERS)
        .initializer_with(load, table.to_vec())
        .build()
        .unwrap();
    let sum = pool.map(from_static, 0..TASKS).map(Result::unwrap).sum();
    pool.shutdown(true);
    (start.elapsed(), sum)
}

fn processes_initargs_bytes(table: &[u8]) -> (Duration, u64) {
    let start = Instant::now();
    let pool = ProcessPoolExecutor::builder()
        .max_workers(WORKERS)
        .initializer_with(load_bytes, concurrent_futures::Bytes::from(table.to_vec()))
        .build()
        .unwrap();
    let sum = pool.map(from_static, 0..TASKS).map(Result::unwrap).sum();
    pool.shutdown(true);
    (start.elapsed(), sum)
}

fn processes_per_task(table: &[u8]) -> (Duration, u64) {
    let start = Instant::now();
    let pool = ProcessPoolExecutor::new(WORKERS);
    let bytes = concurrent_futures::Bytes::from(table.to_vec());
    let futs: Vec<_> = (0..TASKS)
        .map(|i| pool.submit(from_argument, (bytes.clone(), i)))
        .collect();
    let sum = futs.into_iter().map(|f| f.result().unwrap()).sum();
    pool.shutdown(true);
    (start.elapsed(), sum)
}

fn nothing(i: u64) -> u64 {
    i
}

/// The same pool's start and 64 empty tasks: what the table adds is the difference.
fn processes_baseline() -> (Duration, u64) {
    let start = Instant::now();
    let pool = ProcessPoolExecutor::new(WORKERS);
    let sum: u64 = pool.map(nothing, 0..TASKS).map(Result::unwrap).sum();
    pool.shutdown(true);
    (start.elapsed(), sum)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let table = table();
    let shared = Arc::new(table.clone());
    let want: u64 = (0..TASKS).map(|i| read(&table, i)).sum();
    type Job<'a> = (&'a str, u64, Box<dyn Fn() -> (Duration, u64) + 'a>);
    let jobs: [Job; 5] = [
        (
            "processes, no table (baseline)",
            (0..TASKS).sum(),
            Box::new(processes_baseline),
        ),
        ("threads, captured Arc", want, Box::new(|| threads(&shared))),
        (
            "processes, initializer_with",
            want,
            Box::new(|| processes_initargs(&table)),
        ),
        (
            "processes, initializer_with Bytes",
            want,
            Box::new(|| processes_initargs_bytes(&table)),
        ),
        (
            "processes, table in every task",
            want,
            Box::new(|| processes_per_task(&table)),
        ),
    ];
    println!(
        "{} MiB table, {TASKS} tasks, {WORKERS} workers, pool start included; median of {runs} runs",
        TABLE >> 20
    );
    for (name, want, job) in &jobs {
        let times: Vec<_> = (0..runs)
            .map(|_| {
                let (t, sum) = job();
                assert_eq!(sum, *want, "{name}: wrong result");
                t
            })
            .collect();
        println!("{name:32} {:>9.1} ms", median(times).as_secs_f64() * 1e3);
    }
}
