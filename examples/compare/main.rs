//! The backend comparison: the same workloads on sequential code, `ThreadPoolExecutor`,
//! `ProcessPoolExecutor`, rayon, and CPython's `ThreadPoolExecutor` / `ProcessPoolExecutor`
//! (when `python3` is present), measured on this machine.
//!
//! ```text
//! cargo run --release --example compare                  # the full run (a few minutes)
//! cargo run --release --example compare -- --quick       # well under a minute
//! cargo run --release --example compare -- --out DIR     # where compare.json/.svg go
//! ```
//!
//! Workloads: CPU-bound (recursive fib), I/O-bound (many concurrent sleeps standing in for
//! network waits), many tiny tasks (per-task overhead), skewed durations (work stealing),
//! a large payload per task (bytes through the process boundary), and a `map` over a long
//! iterator. Each workload runs once per backend to warm up, then `reps` times with the
//! backends interleaved, so that drift of the machine hits all alike; the table shows the
//! median wall time, the spread (min–max), the speedup over sequential Rust, tasks per
//! second, and CPU time (this process and its workers).
//!
//! Pool sizes follow Python's defaults: threads `min(32, cpus + 4)`, processes and rayon
//! `cpus`.

mod chart;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use concurrent_futures::indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use concurrent_futures::{Bytes, Executor, ProcessPoolExecutor, ProgressExt, ThreadPoolExecutor};
use rayon::prelude::*;
use serde::Serialize;

// ===== the work =====

fn fib(n: u32) -> u64 {
    if n < 2 {
        n as u64
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

fn io_wait(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn tiny(x: u64) -> u64 {
    x.wrapping_mul(2_654_435_761)
}

fn cheap(x: u64) -> u64 {
    (x * x + 7) % 1_000_003
}

fn checksum(b: Bytes) -> u64 {
    b.len() as u64 + u64::from(b[0])
}

/// Consumes every result (so that none is optimized away) and counts them.
fn finish<T>(results: impl Iterator<Item = T>) -> usize {
    results.fold(0, |n, r| {
        std::hint::black_box(r);
        n + 1
    })
}

/// What a workload submits.
#[derive(Clone, Serialize)]
#[serde(tag = "kind", content = "args", rename_all = "lowercase")]
enum Work {
    Cpu(Vec<u32>),
    Skewed(Vec<u32>),
    Io(Vec<u64>),
    Tiny(Vec<u64>),
    /// Bytes per task, tasks.
    Payload(usize, usize),
    /// Items, chunk size (for CPython's process pool).
    Map(u64, usize),
}

#[derive(Clone, Serialize)]
struct Workload {
    key: &'static str,
    title: &'static str,
    detail: String,
    tasks: usize,
    #[serde(flatten)]
    work: Work,
}

fn workloads(quick: bool) -> Vec<Workload> {
    // The same sizes run on CPython, ~50-100× slower on CPU work: sized for both.
    let (cpu_n, cpu_tasks) = if quick { (27, 16) } else { (30, 32) };
    let (io_ms, io_tasks) = if quick { (20, 32) } else { (20, 96) };
    let tiny_tasks = if quick { 5_000 } else { 20_000 };
    let (small, big, skew_tasks) = if quick { (22, 28, 32) } else { (24, 30, 64) };
    let (bytes, payload_tasks) = if quick { (4 << 20, 8) } else { (4 << 20, 32) };
    let map_items = if quick { 100_000 } else { 300_000 };
    let skewed: Vec<u32> = (0..skew_tasks)
        .map(|i| if i % 8 == 0 { big } else { small })
        .collect();
    vec![
        Workload {
            key: "cpu",
            title: "CPU-bound",
            detail: format!("{cpu_tasks} × fib({cpu_n})"),
            tasks: cpu_tasks,
            work: Work::Cpu(vec![cpu_n; cpu_tasks]),
        },
        Workload {
            key: "io",
            title: "I/O-bound",
            detail: format!("{io_tasks} waits of {io_ms} ms"),
            tasks: io_tasks,
            work: Work::Io(vec![io_ms; io_tasks]),
        },
        Workload {
            key: "tiny",
            title: "tiny tasks",
            detail: format!("{tiny_tasks} submits of a multiply"),
            tasks: tiny_tasks,
            work: Work::Tiny((0..tiny_tasks as u64).collect()),
        },
        Workload {
            key: "skewed",
            title: "skewed durations",
            detail: format!("{skew_tasks} tasks, 1 in 8 is fib({big}), the rest fib({small})"),
            tasks: skew_tasks,
            work: Work::Skewed(skewed),
        },
        Workload {
            key: "payload",
            title: "large payload",
            detail: format!("{payload_tasks} tasks × {} MiB argument", bytes >> 20),
            tasks: payload_tasks,
            work: Work::Payload(bytes, payload_tasks),
        },
        Workload {
            key: "map",
            title: "map over a long iterator",
            detail: format!("map of {map_items} cheap items"),
            tasks: map_items as usize,
            work: Work::Map(map_items, 1000),
        },
    ]
}

// ===== backends =====

const BACKENDS: [&str; 6] = [
    "sequential",
    "threads",
    "processes",
    "rayon",
    "cpython-threads",
    "cpython-processes",
];

struct Pools {
    threads: ThreadPoolExecutor,
    processes: ProcessPoolExecutor,
    rayon: rayon::ThreadPool,
}

fn submit_all<E: Executor, A: concurrent_futures::Payload + Clone>(
    pool: &E,
    f: fn(A) -> u64,
    args: &[A],
) -> usize {
    let futures: Vec<_> = args.iter().map(|a| pool.submit(f, a.clone())).collect();
    finish(
        futures
            .iter()
            .map(|fut| fut.result_ref().expect("a task failed")),
    )
}

/// The arguments of the payload workload, made before the clock starts: what is timed is
/// handing them to the tasks (a move for threads, a copy through shared memory for
/// processes), not building them.
fn payloads(work: &Work) -> Vec<Bytes> {
    match work {
        Work::Payload(bytes, n) => (0..*n).map(|_| Bytes::from(vec![1u8; *bytes])).collect(),
        _ => Vec::new(),
    }
}

fn run_on<E: Executor>(pool: &E, work: &Work, payload: Vec<Bytes>, bar: &ProgressBar) -> usize {
    match work {
        Work::Cpu(a) | Work::Skewed(a) => submit_all(pool, fib, a),
        Work::Io(a) => submit_all(pool, io_wait, a),
        Work::Tiny(a) => submit_all(pool, tiny, a),
        Work::Payload(..) => {
            let futures: Vec<_> = payload
                .into_iter()
                .map(|b| pool.submit(checksum, b))
                .collect();
            finish(
                futures
                    .iter()
                    .map(|f| f.result_ref().expect("a task failed")),
            )
        }
        Work::Map(n, _) => {
            bar.reset();
            bar.set_length(*n);
            finish(
                pool.map(cheap, 0..*n)
                    .progress_with(bar.clone())
                    .map(|r| r.expect("an item failed")),
            )
        }
    }
}

fn run_sequential(work: &Work, payload: Vec<Bytes>) -> usize {
    match work {
        Work::Cpu(a) | Work::Skewed(a) => finish(a.iter().map(|&n| fib(n))),
        Work::Io(a) => finish(a.iter().map(|&ms| io_wait(ms))),
        Work::Tiny(a) => finish(a.iter().map(|&x| tiny(x))),
        Work::Payload(..) => finish(payload.into_iter().map(checksum)),
        Work::Map(n, _) => finish((0..*n).map(cheap)),
    }
}

fn rayon_tasks<A: Copy + Send + Sync>(
    pool: &rayon::ThreadPool,
    f: fn(A) -> u64,
    args: &[A],
) -> usize {
    // rayon's way to run independent tasks and collect their results: spawn + channel.
    let (tx, rx) = mpsc::channel();
    pool.scope(|s| {
        for &a in args {
            let tx = tx.clone();
            s.spawn(move |_| tx.send(f(a)).expect("receiver alive"));
        }
    });
    drop(tx);
    rx.iter().count()
}

fn run_rayon(pool: &rayon::ThreadPool, work: &Work, payload: Vec<Bytes>) -> usize {
    match work {
        Work::Cpu(a) | Work::Skewed(a) => rayon_tasks(pool, fib, a),
        Work::Io(a) => rayon_tasks(pool, io_wait, a),
        Work::Tiny(a) => rayon_tasks(pool, tiny, a),
        Work::Payload(..) => pool.install(|| {
            payload
                .into_par_iter()
                .map(checksum)
                .collect::<Vec<_>>()
                .len()
        }),
        Work::Map(n, _) => {
            pool.install(|| (0..*n).into_par_iter().map(cheap).collect::<Vec<_>>().len())
        }
    }
}

// ===== measuring =====

/// CPU seconds of this process and of `pids`: the sum over their threads of the time on a
/// CPU that the scheduler accounts (`/proc/PID/task/*/schedstat`, nanoseconds).
fn cpu_seconds(pids: &[u32]) -> f64 {
    let of = |pid: String| -> f64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return 0.0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .sum::<f64>()
            / 1e9
    };
    of("self".into()) + pids.iter().map(|p| of(p.to_string())).sum::<f64>()
}

#[derive(Default, Clone, Serialize)]
struct Samples {
    wall_s: Vec<f64>,
    cpu_s: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn measure(pools: &Pools, backend: &str, w: &Workload, bar: &ProgressBar) -> (f64, f64) {
    let pids = if backend == "processes" {
        pools.processes.pids()
    } else {
        Vec::new()
    };
    let payload = payloads(&w.work);
    let (c, t) = (cpu_seconds(&pids), Instant::now());
    let done = match backend {
        "sequential" => run_sequential(&w.work, payload),
        "threads" => run_on(&pools.threads, &w.work, payload, bar),
        "processes" => run_on(&pools.processes, &w.work, payload, bar),
        "rayon" => run_rayon(&pools.rayon, &w.work, payload),
        other => unreachable!("not a Rust backend: {other}"),
    };
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(
        done, w.tasks,
        "{backend} did not finish every task of {}",
        w.key
    );
    (wall, cpu_seconds(&pids) - c)
}

/// Runs the CPython script once (every workload, both Python backends); None without python3.
fn cpython(spec: &str, warmup: bool) -> Option<Vec<(String, String, f64, f64)>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/compare/cpython.py");
    let spec = spec.replacen('{', &format!("{{\"warmup\": {warmup}, "), 1);
    let child = Command::new("python3")
        .arg(script)
        .arg(spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let rows = BufReader::new(&out.stdout[..])
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            Some((
                v["workload"].as_str()?.to_string(),
                v["backend"].as_str()?.to_string(),
                v["wall"].as_f64()?,
                v["cpu"].as_f64()?,
            ))
        })
        .collect();
    Some(rows)
}

// ===== report =====

#[derive(Serialize)]
struct Row {
    backend: String,
    median_wall_s: f64,
    min_wall_s: f64,
    max_wall_s: f64,
    speedup: f64,
    tasks_per_s: f64,
    median_cpu_s: f64,
    samples: Samples,
}

#[derive(Serialize)]
struct Report {
    tool: &'static str,
    cpus: usize,
    quick: bool,
    reps: usize,
    pool_sizes: BTreeMap<&'static str, usize>,
    python: bool,
    workloads: Vec<Entry>,
    summary: String,
}

/// One workload's results (without its argument lists).
#[derive(Serialize)]
struct Entry {
    key: &'static str,
    title: &'static str,
    detail: String,
    tasks: usize,
    results: Vec<Row>,
    advice: String,
}

fn main() {
    let mut quick = false;
    let mut out_dir = PathBuf::from("target/compare");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out_dir = PathBuf::from(args.next().expect("--out needs a directory")),
            "--validate" => {
                // CI's check without python: is the file well-formed JSON of this shape?
                let path = args.next().expect("--validate needs a file");
                let text = std::fs::read_to_string(&path).expect("read the JSON file");
                let v: serde_json::Value = serde_json::from_str(&text).expect("well-formed JSON");
                assert!(v["workloads"].as_array().is_some_and(|w| !w.is_empty()));
                println!("{path}: well-formed");
                return;
            }
            "-h" | "--help" => {
                println!("usage: compare [--quick] [--out DIR] [--validate FILE]");
                return;
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    let cpus = num_cpus::get();
    let reps = if quick { 3 } else { 5 };
    let sizes = BTreeMap::from([
        ("threads", 32.min(cpus + 4)),
        ("processes", cpus),
        ("rayon", cpus),
    ]);
    let pools = Pools {
        threads: ThreadPoolExecutor::new(sizes["threads"]),
        processes: ProcessPoolExecutor::new(sizes["processes"]),
        rayon: rayon::ThreadPoolBuilder::new()
            .num_threads(sizes["rayon"])
            .build()
            .expect("rayon pool"),
    };
    let list = workloads(quick);
    let spec = serde_json::json!({ "workloads": list }).to_string();
    println!(
        "concurrent-futures backend comparison on {cpus} CPUs ({} run, {reps} repetitions after a warm-up, \
         backends interleaved; threads: {}, processes: {}, rayon: {})",
        if quick { "quick" } else { "full" },
        sizes["threads"],
        sizes["processes"],
        sizes["rayon"]
    );

    let multi = MultiProgress::new();
    let rust = ["sequential", "threads", "processes", "rayon"];
    let steps = (reps + 1) * list.len() * rust.len() + reps + 1;
    let overall = multi.add(ProgressBar::new(steps as u64)).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let map_bar = multi.add(ProgressBar::new(0));
    let mut samples: BTreeMap<(&str, String), Samples> = BTreeMap::new();
    let mut python = true;
    for rep in 0..=reps {
        let warmup = rep == 0;
        for w in &list {
            for backend in rust {
                overall.set_message(format!(
                    "{} on {backend}{}",
                    w.key,
                    if warmup { " (warm-up)" } else { "" }
                ));
                let (wall, cpu) = measure(&pools, backend, w, &map_bar);
                if !warmup {
                    let s = samples.entry((w.key, backend.to_string())).or_default();
                    s.wall_s.push(wall);
                    s.cpu_s.push(cpu);
                }
                overall.inc(1);
            }
        }
        if python && !warmup {
            overall.set_message("CPython's pools");
            match cpython(&spec, rep == 1) {
                Some(rows) => {
                    for (key, backend, wall, cpu) in rows {
                        if let Some(w) = list.iter().find(|w| w.key == key) {
                            let s = samples.entry((w.key, backend)).or_default();
                            s.wall_s.push(wall);
                            s.cpu_s.push(cpu);
                        }
                    }
                }
                None => python = false,
            }
        }
        overall.inc(1);
    }
    overall.finish_and_clear();
    map_bar.finish_and_clear();

    let mut report = Report {
        tool: "cargo run --release --example compare",
        cpus,
        quick,
        reps,
        pool_sizes: sizes,
        python,
        workloads: Vec::new(),
        summary: String::new(),
    };
    for w in &list {
        let seq = median(&samples[&(w.key, "sequential".to_string())].wall_s);
        let mut rows = Vec::new();
        for backend in BACKENDS {
            let Some(s) = samples.get(&(w.key, backend.to_string())) else {
                continue;
            };
            let m = median(&s.wall_s);
            rows.push(Row {
                backend: backend.to_string(),
                median_wall_s: m,
                min_wall_s: s.wall_s.iter().copied().fold(f64::INFINITY, f64::min),
                max_wall_s: s.wall_s.iter().copied().fold(0.0, f64::max),
                speedup: seq / m,
                tasks_per_s: w.tasks as f64 / m,
                median_cpu_s: median(&s.cpu_s),
                samples: s.clone(),
            });
        }
        let advice = advise(w, &rows);
        report.workloads.push(Entry {
            key: w.key,
            title: w.title,
            detail: w.detail.clone(),
            tasks: w.tasks,
            results: rows,
            advice,
        });
    }
    report.summary = summarize(&report);
    print_table(&report);
    std::fs::create_dir_all(&out_dir).expect("create the output directory");
    let json = out_dir.join("compare.json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&report).expect("encode"),
    )
    .expect("write JSON");
    let svg = out_dir.join("compare.svg");
    std::fs::write(&svg, chart::render(&report)).expect("write SVG");
    println!(
        "\nraw figures: {}\nchart: {}",
        json.display(),
        svg.display()
    );
    if !python {
        println!("(python3 not found or failed: the CPython columns are left out)");
    }
}

fn best(rows: &[Row]) -> &Row {
    rows.iter()
        .min_by(|a, b| a.median_wall_s.total_cmp(&b.median_wall_s))
        .expect("at least one backend")
}

fn row<'a>(rows: &'a [Row], backend: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.backend == backend)
}

fn advise(w: &Workload, rows: &[Row]) -> String {
    let b = best(rows);
    let mut s = format!("fastest: {} ({:.2}× sequential)", b.backend, b.speedup);
    if let (Some(t), Some(p)) = (row(rows, "threads"), row(rows, "processes")) {
        let ratio = p.median_wall_s / t.median_wall_s;
        s += &format!("; processes take {ratio:.2}× the threads' time");
    }
    if let (Some(t), Some(c)) = (row(rows, "threads"), row(rows, "cpython-threads")) {
        s += &format!(
            "; Rust threads {:.0}× CPython threads",
            c.median_wall_s / t.median_wall_s
        );
    }
    if w.key == "io" {
        s += " (waits overlap: more threads, more overlap)";
    }
    s
}

fn summarize(r: &Report) -> String {
    let entry = |key: &str| r.workloads.iter().find(|e| e.key == key);
    let wall = |e: &Entry, b: &str| row(&e.results, b).map(|r| r.median_wall_s);
    let mut out = String::new();
    if let Some(e) = entry("tiny")
        && let (Some(t), Some(p)) = (wall(e, "threads"), wall(e, "processes"))
    {
        let (t, p) = (t / e.tasks as f64 * 1e6, p / e.tasks as f64 * 1e6);
        out += &format!(
            "processes buy isolation at ~{p:.1} µs per task (threads: ~{t:.2} µs): with small \
             arguments, tasks shorter than ~{:.0} µs run faster on threads, and longer ones lose \
             less than 10% on processes",
            10.0 * p
        );
    }
    if let Some(e) = entry("payload")
        && let (Some(t), Some(p), Work::Payload(bytes, n)) = (
            wall(e, "threads"),
            wall(e, "processes"),
            workloads(r.quick)
                .into_iter()
                .find(|w| w.key == "payload")
                .map(|w| w.work)
                .unwrap_or(Work::Tiny(vec![])),
        )
    {
        let mib = (bytes * n) as f64 / f64::from(1 << 20);
        out += &format!(
            "; a large argument costs ~{:.2} ms per MiB more on processes (copied through shared memory)",
            (p - t) * 1e3 / mib
        );
    }
    out
}

fn print_table(r: &Report) {
    for e in &r.workloads {
        println!("\n{} — {}", e.title, e.detail);
        println!(
            "  {:<18} {:>11} {:>19} {:>8} {:>12} {:>9}",
            "backend", "wall (p50)", "spread (min–max)", "speedup", "tasks/s", "CPU"
        );
        for row in &e.results {
            println!(
                "  {:<18} {:>11} {:>19} {:>7.2}× {:>12.0} {:>9}",
                row.backend,
                fmt_s(row.median_wall_s),
                format!("{}–{}", fmt_s(row.min_wall_s), fmt_s(row.max_wall_s)),
                row.speedup,
                row.tasks_per_s,
                fmt_s(row.median_cpu_s),
            );
        }
        println!("  → {}", e.advice);
    }
    if !r.summary.is_empty() {
        println!("\n{}", r.summary);
    }
}

fn fmt_s(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}
