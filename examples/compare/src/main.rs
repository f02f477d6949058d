//! The backend comparison: the same workloads on sequential code, `ThreadPoolExecutor`,
//! `ProcessPoolExecutor`, rayon, and CPython's `ThreadPoolExecutor` / `ProcessPoolExecutor`
//! (when `python3` is present), measured on this machine.
//!
//! ```text
//! cargo run --release -p compare                    # the full run (a few minutes)
//! cargo run --release -p compare -- --quick         # well under a minute
//! cargo run --release -p compare -- --out DIR       # where compare.json/.svg go
//! cargo run --release -p compare -- --render FILE   # the chart again, from a compare.json
//! cargo run --release -p compare -- --timeline [DIR] # also a task timeline per backend and workload
//! ```
//!
//! The files go to `compare/` in cargo's target directory (`CARGO_TARGET_DIR` if set), unless
//! `--out` says otherwise. With `--timeline`, after the measurements each workload runs once
//! more on a fresh thread pool and a fresh process pool that record their timelines, written
//! as `<backend>-<workload>-timeline.json` (Chrome trace events: Perfetto, `chrome://tracing`)
//! and `.svg` into DIR (default: the output directory). rayon records no timeline, and
//! neither do CPython's pools; the sequential runs have no workers to draw.
//!
//! Workloads: CPU-bound (recursive fib), I/O-bound (many concurrent sleeps standing in for
//! network waits), many tiny tasks (per-task overhead), skewed durations (work stealing),
//! a large payload per task (bytes through the process boundary), and a `map` over a long
//! iterator. What a row times is the same on every backend: handing the arguments over,
//! running the tasks, taking every result and freeing the arguments (each backend consumes
//! them), never building them, and no progress bar (the run's own bar moves between
//! measurements). Each workload runs once per backend to warm up, then `reps` times with the
//! backends interleaved, so that drift of the machine hits all alike; the table shows the
//! median wall time, the spread (min–max), the speedup over sequential Rust, tasks per
//! second, and CPU time (this process and its workers). A backend is named the fastest only
//! when its spread does not overlap another's; otherwise the advice says it is a tie.
//!
//! Pool sizes follow Python's defaults: threads `min(32, cpus + 4)`, processes and rayon
//! `cpus`.

mod chart;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use concurrent_futures::indicatif::{ProgressBar, ProgressStyle};
use concurrent_futures::{Bytes, Executor, ProcessPoolExecutor, ThreadPoolExecutor, Timeline};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

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
/// processes), not building them; and freeing them, on every backend: each consumes its
/// buffers (the task takes them by value), as CPython's rows do (`cpython.py` hands each task
/// a buffer of its own and keeps no reference to it).
fn payloads(work: &Work) -> Vec<Bytes> {
    match work {
        Work::Payload(bytes, n) => (0..*n).map(|_| Bytes::from(vec![1u8; *bytes])).collect(),
        _ => Vec::new(),
    }
}

fn run_on<E: Executor>(pool: &E, work: &Work, payload: Vec<Bytes>) -> usize {
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
        Work::Map(n, _) => finish(pool.map(cheap, 0..*n).map(|r| r.expect("an item failed"))),
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

/// Runs each workload once more on fresh pools of the measured sizes that record their
/// timelines, and writes each timeline into `dir` (the backends that can record one).
fn write_timelines(dir: &Path, list: &[Workload], sizes: &BTreeMap<String, usize>) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let write = |backend: &str, key: &str, timeline: Timeline, submitted: u64| {
        for (ext, text) in [
            ("json", timeline.to_chrome_trace()),
            ("svg", timeline.to_svg()),
        ] {
            let path = dir.join(format!("{backend}-{key}-timeline.{ext}"));
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        let inline = if timeline.tasks.len() as u64 == submitted {
            String::new()
        } else {
            // (A thread pool's waiting thread runs a task no worker has started yet.)
            " (the others ran on the thread that waited for them)".to_string()
        };
        println!(
            "timeline of {key} on {backend}: {} of {submitted} tasks on worker rows{inline}, {} steals, {} marks",
            timeline.tasks.len(),
            timeline.steals.len(),
            timeline.marks.len()
        );
    };
    for w in list {
        let threads = ThreadPoolExecutor::builder()
            .max_workers(sizes["threads"])
            .record_timeline(true)
            .build()
            .expect("a thread pool");
        run_on(&threads, &w.work, payloads(&w.work));
        threads.shutdown(true);
        write(
            "threads",
            w.key,
            threads.take_timeline(),
            threads.stats().submitted,
        );
        let processes = ProcessPoolExecutor::builder()
            .max_workers(sizes["processes"])
            .record_timeline(true)
            .build()
            .expect("a process pool");
        run_on(&processes, &w.work, payloads(&w.work));
        processes.shutdown(true);
        write(
            "processes",
            w.key,
            processes.take_timeline(),
            processes.stats().submitted,
        );
    }
    println!(
        "timelines (threads-*, processes-*) in {}; rayon and CPython's pools record none",
        dir.display()
    );
}

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

#[derive(Default, Clone, Serialize, Deserialize)]
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

fn measure(pools: &Pools, backend: &str, w: &Workload) -> (f64, f64) {
    let pids = if backend == "processes" {
        pools.processes.pids()
    } else {
        Vec::new()
    };
    let payload = payloads(&w.work);
    let (c, t) = (cpu_seconds(&pids), Instant::now());
    let done = match backend {
        "sequential" => run_sequential(&w.work, payload),
        "threads" => run_on(&pools.threads, &w.work, payload),
        "processes" => run_on(&pools.processes, &w.work, payload),
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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/cpython.py");
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

#[derive(Serialize, Deserialize)]
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

#[derive(Serialize, Deserialize)]
struct Report {
    tool: String,
    cpus: usize,
    quick: bool,
    reps: usize,
    pool_sizes: BTreeMap<String, usize>,
    python: bool,
    workloads: Vec<Entry>,
    summary: String,
}

/// One workload's results (without its argument lists).
#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    title: String,
    detail: String,
    tasks: usize,
    results: Vec<Row>,
    advice: String,
}

/// The command that runs this tool, recorded in its reports.
const TOOL: &str = "cargo run --release -p compare";

/// Where the files go by default: `compare/` in cargo's target directory, found from this
/// executable's path (`<target>/release/compare`), so that `CARGO_TARGET_DIR` and
/// `build.target-dir` are honoured. Cargo marks a target directory with `CACHEDIR.TAG`.
fn default_out_dir() -> PathBuf {
    match std::env::current_exe() {
        Ok(exe) => out_dir_for(&exe),
        Err(_) => PathBuf::from("target/compare"),
    }
}

fn out_dir_for(exe: &Path) -> PathBuf {
    let target = exe
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .or_else(|| exe.parent()?.parent());
    target.unwrap_or(Path::new("target")).join("compare")
}

/// Reads a report written by an earlier run.
fn read_report(path: &str) -> Report {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not a comparison report: {e}"))
}

fn main() {
    let mut quick = false;
    let mut out_dir = None;
    let mut render = None;
    // `Some(None)`: timelines into the output directory.
    let mut timeline: Option<Option<PathBuf>> = None;
    let mut args = std::env::args().skip(1).peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--timeline" => {
                let dir = args.next_if(|d| !d.starts_with("--")).map(PathBuf::from);
                timeline = Some(dir);
            }
            "--out" => out_dir = Some(PathBuf::from(args.next().expect("--out needs a directory"))),
            "--render" => render = Some(args.next().expect("--render needs a compare.json")),
            "--validate" => {
                // CI's check without python: is the file a well-formed report?
                let path = args.next().expect("--validate needs a file");
                let report = read_report(&path);
                assert!(!report.workloads.is_empty(), "{path}: no workloads");
                println!("{path}: well-formed");
                return;
            }
            "-h" | "--help" => {
                println!(
                    "usage: compare [--quick] [--out DIR] [--timeline [DIR]] [--render FILE.json] [--validate FILE.json]"
                );
                return;
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    if let Some(path) = render {
        // The table, the advice and the chart again from the figures of an earlier run.
        let mut report = read_report(&path);
        report.tool = TOOL.to_string();
        for e in &mut report.workloads {
            e.advice = advise(&e.key, &e.results);
        }
        report.summary = summarize(&report);
        print_table(&report);
        let dir = out_dir.unwrap_or_else(|| {
            Path::new(&path)
                .parent()
                .map_or_else(PathBuf::new, Path::to_path_buf)
        });
        write_files(&dir, &report);
        return;
    }
    let out_dir = out_dir.unwrap_or_else(default_out_dir);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let reps = if quick { 3 } else { 5 };
    let sizes = BTreeMap::from([
        ("threads".to_string(), 32.min(cpus + 4)),
        ("processes".to_string(), cpus),
        ("rayon".to_string(), cpus),
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

    let rust = ["sequential", "threads", "processes", "rayon"];
    let steps = (reps + 1) * list.len() * rust.len() + reps + 1;
    // The one bar shows the run's steps; it moves between measurements, never inside one.
    let overall = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
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
                let (wall, cpu) = measure(&pools, backend, w);
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

    let mut report = Report {
        tool: TOOL.to_string(),
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
        let advice = advise(w.key, &rows);
        report.workloads.push(Entry {
            key: w.key.to_string(),
            title: w.title.to_string(),
            detail: w.detail.clone(),
            tasks: w.tasks,
            results: rows,
            advice,
        });
    }
    report.summary = summarize(&report);
    print_table(&report);
    write_files(&out_dir, &report);
    if let Some(dir) = timeline {
        println!();
        write_timelines(
            &dir.unwrap_or_else(|| out_dir.clone()),
            &list,
            &report.pool_sizes,
        );
    }
    if !python {
        println!("(python3 not found or failed: the CPython columns are left out)");
    }
}

/// Writes `compare.json` and `compare.svg` into `dir`.
fn write_files(dir: &Path, report: &Report) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let json = dir.join("compare.json");
    let text = serde_json::to_string_pretty(report).expect("a report encodes as JSON");
    std::fs::write(&json, text + "\n")
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", json.display()));
    let svg = dir.join("compare.svg");
    std::fs::write(&svg, chart::render(report))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", svg.display()));
    println!(
        "\nraw figures: {}\nchart: {}",
        json.display(),
        svg.display()
    );
}

fn best(rows: &[Row]) -> &Row {
    rows.iter()
        .min_by(|a, b| a.median_wall_s.total_cmp(&b.median_wall_s))
        .expect("at least one backend")
}

fn row<'a>(rows: &'a [Row], backend: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.backend == backend)
}

/// Whether two backends' spreads (min–max wall time) overlap: then the runs do not tell
/// which is faster.
fn overlap(a: &Row, b: &Row) -> bool {
    a.min_wall_s <= b.max_wall_s && b.min_wall_s <= a.max_wall_s
}

/// "a, b and c".
fn and_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// How `slow` compares with `fast` in words: "a tie" inside the noise, a ratio otherwise.
fn versus(slow: &Row, fast: &Row, slow_name: &str, fast_name: &str) -> String {
    if overlap(slow, fast) {
        format!("{slow_name} and {fast_name}: a tie (spreads overlap)")
    } else {
        format!(
            "{slow_name} take {} the {fast_name}' time",
            fmt_ratio(slow.median_wall_s / fast.median_wall_s)
        )
    }
}

fn advise(key: &str, rows: &[Row]) -> String {
    let b = best(rows);
    let tied: Vec<&str> = rows
        .iter()
        .filter(|r| overlap(r, b))
        .map(|r| r.backend.as_str())
        .collect();
    let mut s = if tied.len() > 1 {
        format!(
            "a tie between {} (spreads overlap; the best median is {} sequential)",
            and_list(&tied),
            fmt_ratio(b.speedup)
        )
    } else {
        format!(
            "fastest: {} ({} sequential)",
            b.backend,
            fmt_ratio(b.speedup)
        )
    };
    if let (Some(t), Some(p)) = (row(rows, "threads"), row(rows, "processes")) {
        s += "; ";
        s += &versus(p, t, "processes", "threads");
    }
    if let (Some(t), Some(c)) = (row(rows, "threads"), row(rows, "cpython-threads")) {
        s += "; ";
        s += &versus(c, t, "CPython threads", "Rust threads");
    }
    if key == "io" {
        s += " (waits overlap: more threads, more overlap)";
    }
    s
}

fn summarize(r: &Report) -> String {
    let entry = |key: &str| r.workloads.iter().find(|e| e.key == key);
    let mut out = String::new();
    if let Some(e) = entry("tiny")
        && let (Some(t), Some(p)) = (row(&e.results, "threads"), row(&e.results, "processes"))
    {
        let per_task = |r: &Row| r.median_wall_s / e.tasks as f64 * 1e6;
        let (t, p) = (per_task(t), per_task(p));
        out += &format!(
            "processes buy isolation at ~{} µs per task (threads: ~{} µs): with small \
             arguments, tasks shorter than ~{} µs run faster on threads, and longer ones lose \
             less than 10% on processes",
            fmt_sig(p),
            fmt_sig(t),
            fmt_sig(10.0 * p)
        );
    }
    if let Some(e) = entry("payload")
        && let (Some(t), Some(p), Work::Payload(bytes, n)) = (
            row(&e.results, "threads"),
            row(&e.results, "processes"),
            workloads(r.quick)
                .into_iter()
                .find(|w| w.key == "payload")
                .map(|w| w.work)
                .unwrap_or(Work::Tiny(vec![])),
        )
    {
        let mib = (bytes * n) as f64 / f64::from(1 << 20);
        out += "; ";
        out += &if overlap(p, t) {
            "a large argument costs no measurable time more on processes than on threads (spreads overlap)".to_string()
        } else {
            format!(
                "a large argument costs ~{} ms per MiB more on processes (copied through shared memory)",
                fmt_sig((p.median_wall_s - t.median_wall_s) * 1e3 / mib)
            )
        };
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
                "  {:<18} {:>11} {:>19} {:>8} {:>12} {:>9}",
                row.backend,
                fmt_s(row.median_wall_s),
                format!("{}–{}", fmt_s(row.min_wall_s), fmt_s(row.max_wall_s)),
                format!("{}", fmt_ratio(row.speedup)),
                fmt_count(row.tasks_per_s),
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
        format!("{} ms", fmt_sig(s * 1e3))
    } else {
        format!("{} µs", fmt_sig(s * 1e6))
    }
}

/// A positive figure with three significant digits (two below 1), and no more decimals than
/// that needs: 1234, 12.3, 1.23, 0.45, 0.045, 0.0012.
fn fmt_sig(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return format!("{x:.0}");
    }
    let decimals = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        // 1.23 has two decimals; below 1, two significant digits: 0.45, 0.045.
        (1 - x.log10().floor() as i32).max(2) as usize
    };
    format!("{x:.decimals$}")
}

/// A ratio such as a speedup: "1.76×", "90×", "0.45×", "0.0021×" (never "0×").
fn fmt_ratio(x: f64) -> String {
    if (1.0..10.0).contains(&x) {
        format!("{x:.2}×")
    } else {
        format!("{}×", fmt_sig(x))
    }
}

/// A count or a rate: "12", "2.5", "1,234", "2,825,000" (digits grouped by thousands).
fn fmt_count(x: f64) -> String {
    if !x.is_finite() || x < 0.0 {
        return "?".to_string();
    }
    if x < 100.0 {
        return fmt_sig(x);
    }
    let digits = format!("{x:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_never_zero() {
        assert_eq!(fmt_ratio(0.45), "0.45×");
        assert_eq!(fmt_ratio(0.045), "0.045×");
        assert_eq!(fmt_ratio(0.000_055), "0.000055×");
        assert_eq!(fmt_ratio(1.0), "1.00×");
        assert_eq!(fmt_ratio(1.764), "1.76×");
        assert_eq!(fmt_ratio(17.64), "17.6×");
        assert_eq!(fmt_ratio(90.4), "90.4×");
        assert_eq!(fmt_ratio(182.3), "182×");
    }

    #[test]
    fn counts_and_rates() {
        assert_eq!(fmt_count(2.5), "2.50");
        assert_eq!(fmt_count(12.34), "12.3");
        assert_eq!(fmt_count(644.56), "645");
        assert_eq!(fmt_count(1234.0), "1,234");
        assert_eq!(fmt_count(2_825_000.4), "2,825,000");
        assert_eq!(fmt_s(0.0496), "49.6 ms");
        assert_eq!(fmt_s(0.000_025), "25.0 µs");
        assert_eq!(fmt_s(0.000_002_5), "2.50 µs");
    }

    fn result(backend: &str, min: f64, median: f64, max: f64) -> Row {
        Row {
            backend: backend.to_string(),
            median_wall_s: median,
            min_wall_s: min,
            max_wall_s: max,
            speedup: 4.2 / median, // sequential takes 4.2 in these tests
            tasks_per_s: 1.0 / median,
            median_cpu_s: 0.0,
            samples: Samples::default(),
        }
    }

    #[test]
    fn no_winner_inside_the_noise() {
        let rows = [
            result("sequential", 4.0, 4.2, 4.4),
            result("threads", 3.5, 3.7, 4.1),
            result("processes", 30.0, 36.0, 40.0),
        ];
        let advice = advise("payload", &rows);
        assert!(
            advice.starts_with("a tie between sequential and threads"),
            "{advice}"
        );
        assert!(!advice.contains("fastest"), "{advice}");
        assert!(
            advice.contains("processes take 9.73× the threads' time"),
            "{advice}"
        );
        let rows = [
            result("sequential", 4.0, 4.2, 4.4),
            result("threads", 3.0, 3.1, 3.2),
            result("processes", 3.1, 3.3, 3.5),
        ];
        let advice = advise("payload", &rows);
        assert!(
            advice.starts_with("a tie between threads and processes"),
            "{advice}"
        );
        assert!(advice.contains("processes and threads: a tie"), "{advice}");
        let rows = [
            result("sequential", 4.0, 4.2, 4.4),
            result("threads", 1.0, 1.1, 1.2),
        ];
        let advice = advise("payload", &rows);
        assert!(
            advice.starts_with("fastest: threads (3.82× sequential)"),
            "{advice}"
        );
    }

    #[test]
    fn files_go_to_the_target_directory() {
        let target = std::env::temp_dir().join(format!("compare-test-{}", std::process::id()));
        let profile = target.join("x86_64-unknown-linux-gnu").join("release");
        std::fs::create_dir_all(&profile).expect("create a target directory");
        std::fs::write(
            target.join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55",
        )
        .expect("mark it");
        assert_eq!(
            out_dir_for(&profile.join("compare")),
            target.join("compare")
        );
        std::fs::remove_dir_all(&target).expect("clean up");
        // Without the mark: the directory above the profile's.
        assert_eq!(
            out_dir_for(Path::new("/elsewhere/release/compare")),
            Path::new("/elsewhere/compare")
        );
        // This very test runs from cargo's target directory.
        let exe = std::env::current_exe().expect("the test's path");
        let dir = out_dir_for(&exe);
        assert!(
            dir.parent()
                .is_some_and(|t| t.join("CACHEDIR.TAG").is_file()),
            "{dir:?}"
        );
    }

    #[test]
    fn reports_read_back_and_render() {
        let text = include_str!("../../../docs/compare.json");
        let report: Report = serde_json::from_str(text).expect("docs/compare.json is a report");
        let svg = chart::render(&report);
        // Every bar's value is printed as text, not only in a tooltip.
        for e in &report.workloads {
            for r in e.results.iter().filter(|r| r.backend != "sequential") {
                let label = format!(">{}</text>", fmt_ratio(r.speedup));
                assert!(svg.contains(&label), "no label {label} for {}", r.backend);
            }
        }
    }
}
