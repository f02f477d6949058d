//! What the `tracing` feature costs per task on the thread pool: submit a batch of trivial
//! tasks, then take every result, under four subscribers:
//!
//! * `none`: no subscriber at all (the spans are disabled at their call sites);
//! * `filtered`: `tracing-subscriber`'s `fmt` at level INFO (the task spans, at TRACE, are
//!   filtered out; the filter is a level hint, checked once per call site);
//! * `discard`: a subscriber that wants every span and event and does nothing with them
//!   (the cost of the crate's own hooks: creating, entering and closing a span, three events);
//! * `registry`: `tracing-subscriber`'s registry with no layer (what a real subscriber pays
//!   at the least: span data kept in its slab).
//!
//! A global subscriber can be set once per process, so the program runs itself once per
//! subscriber, `--repeat` times in turn (the machine's speed drifts), and prints for each
//! the median time per task over all its rounds, and its ratio to `none`. Built without the
//! feature, it measures the pool without the hooks (`off`).
//!
//! Run: `cargo run --release --features tracing --example pool_tracing_cost -- [--tasks N]
//! [--rounds R] [--repeat K]` (default: 100,000 tasks, 5 rounds, 3 repeats), and
//! `cargo run --release --example pool_tracing_cost` for `off`.

use std::process::Command;
use std::sync::atomic::AtomicU64;
#[cfg(feature = "tracing")]
use std::sync::atomic::Ordering;
use std::time::Instant;

use concurrent_futures::{Executor, ThreadPoolExecutor};
#[cfg(feature = "tracing")]
use tracing::span::{Attributes, Id, Record};
#[cfg(feature = "tracing")]
use tracing::{Event, Metadata, Subscriber};

#[cfg(feature = "tracing")]
const MODES: &[&str] = &["none", "filtered", "discard", "registry"];
#[cfg(not(feature = "tracing"))]
const MODES: &[&str] = &["off"];

fn trivial(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// Wants everything, keeps nothing.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
struct Discard(AtomicU64);

#[cfg(feature = "tracing")]
impl Subscriber for Discard {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// Nanoseconds per task of `rounds` rounds of `tasks` tasks.
fn measure(tasks: usize, rounds: usize) -> Vec<f64> {
    let pool = ThreadPoolExecutor::new(2);
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let futs: Vec<_> = (0..tasks as u64).map(|i| pool.submit(trivial, i)).collect();
            for f in futs {
                std::hint::black_box(f.into_result().expect("a trivial task"));
            }
            start.elapsed().as_nanos() as f64 / tasks as f64
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(feature = "tracing")]
fn install(mode: &str) {
    match mode {
        "none" => {}
        "filtered" => tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .init(),
        "discard" => tracing::subscriber::set_global_default(Discard(AtomicU64::new(0)))
            .expect("the only subscriber"),
        "registry" => tracing::subscriber::set_global_default(tracing_subscriber::registry())
            .expect("the only subscriber"),
        other => panic!("unknown mode {other}"),
    }
}

#[cfg(not(feature = "tracing"))]
fn install(mode: &str) {
    assert_eq!(mode, "off", "built without the `tracing` feature");
}

fn main() {
    let tasks = arg("--tasks", 100_000);
    let rounds = arg("--rounds", 5);
    let repeat = arg("--repeat", 3);
    if let Some(mode) = std::env::args().skip_while(|a| a != "--mode").nth(1) {
        install(&mode);
        for ns in measure(tasks, rounds) {
            println!("{ns}");
        }
        return;
    }
    println!(
        "{tasks} trivial tasks submitted on 2 threads, then every result taken; \
         median of {repeat} x {rounds} rounds per subscriber"
    );
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for _ in 0..repeat {
        for (mode, times) in MODES.iter().zip(&mut times) {
            let out = Command::new(std::env::current_exe().expect("this program"))
                .args(["--mode", mode])
                .args([
                    "--tasks",
                    &tasks.to_string(),
                    "--rounds",
                    &rounds.to_string(),
                ])
                .output()
                .expect("run a mode");
            assert!(out.status.success(), "{mode}: {out:?}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            times.extend(stdout.lines().map(|l| l.parse::<f64>().expect("a time")));
        }
    }
    println!("{:<10} {:>10} {:>8}", "subscriber", "ns/task", "ratio");
    let base = median(times[0].clone());
    for (mode, times) in MODES.iter().zip(times) {
        let ns = median(times);
        println!("{mode:<10} {ns:>10.1} {:>8.2}", ns / base);
    }
}
