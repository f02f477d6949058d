//! The process pool beside its anchors, in the same run: raw ipc-channel ping-pong (the
//! floor any pool over ipc-channel stands on), procspawn's pool (crates.io) and CPython's
//! `ProcessPoolExecutor` / `multiprocessing.Pool` (`python3`, if present). Every figure is
//! the median of `ROUNDS` rounds; within a round the contenders run one after another, so
//! that a noisy machine slows all of them alike.
//!
//! `cargo bench --bench process_pool` (set `CF_BENCH_ROUNDS` to change the number of rounds)

use std::collections::BTreeMap;
use std::env;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use concurrent_futures::{Bytes, Executor, ProcessPoolExecutor};
use ipc_channel::ipc::{
    self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcReceiver, IpcSender,
};

const WORKERS: usize = 2;
const ROUND_TRIPS: usize = 2_000;
const TASKS: usize = 20_000;
const MAP_ITEMS: u64 = 1_000_000;
const BIG: usize = 64 << 20;
const CPU_JOBS: u64 = 8;
const CPU_N: u64 = 32;

const ENV_ECHO: &str = "CF_BENCH_ECHO";
const ENV_CASE: &str = "CF_BENCH_CASE";

fn trivial(x: u64) -> u64 {
    x + 1
}

fn length(b: Bytes) -> usize {
    b.len()
}

fn length_vec(b: Vec<u8>) -> usize {
    b.len()
}

fn length_buf(b: serde_bytes::ByteBuf) -> usize {
    b.len()
}

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Medians of the round-trip times of each contender, measured in alternating blocks of
/// `BLOCK` calls: on a VM the cost of a wake-up depends on whether the two processes share
/// a CPU (a few µs) or one must wake the other's idle CPU (tens of µs), and the scheduler
/// changes that placement over time; alternating exposes every contender to the same mix.
fn p50s(contenders: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    const BLOCK: usize = 50;
    let mut times = vec![Vec::with_capacity(ROUND_TRIPS); contenders.len()];
    for f in contenders.iter_mut() {
        for _ in 0..BLOCK {
            f(); // warm up
        }
    }
    for _ in 0..ROUND_TRIPS / BLOCK {
        for (f, times) in contenders.iter_mut().zip(&mut times) {
            for _ in 0..BLOCK {
                let t = Instant::now();
                f();
                times.push(t.elapsed().as_secs_f64());
            }
        }
    }
    times.into_iter().map(median).collect()
}

// ===== raw ipc-channel: a child process that echoes =====

type EchoHello = (IpcSender<u64>, IpcReceiver<u64>, IpcBytesSender);

/// The echo child: answers each number with its successor; `u64::MAX` announces a byte
/// buffer, answered with its length.
fn echo_child(server: String) {
    let (to_child, from_parent) = ipc::channel::<u64>().unwrap();
    let (to_parent, from_child) = ipc::channel::<u64>().unwrap();
    let (bytes_tx, bytes_rx): (IpcBytesSender, IpcBytesReceiver) = ipc::bytes_channel().unwrap();
    IpcSender::<EchoHello>::connect(server)
        .unwrap()
        .send((to_child, from_child, bytes_tx))
        .unwrap();
    while let Ok(v) = from_parent.recv() {
        let answer = if v == u64::MAX {
            bytes_rx.recv().map(|b| b.len() as u64).unwrap_or(0)
        } else {
            v + 1
        };
        if to_parent.send(answer).is_err() {
            break;
        }
    }
}

struct Echo {
    child: std::process::Child,
    tx: Option<IpcSender<u64>>,
    rx: IpcReceiver<u64>,
    bytes: IpcBytesSender,
}

impl Echo {
    fn start() -> Echo {
        let (server, name) = IpcOneShotServer::<EchoHello>::new().unwrap();
        let child = Command::new(env::current_exe().unwrap())
            .env(ENV_ECHO, name)
            .spawn()
            .unwrap();
        let (_, (tx, rx, bytes)) = server.accept().unwrap();
        Echo {
            child,
            tx: Some(tx),
            rx,
            bytes,
        }
    }

    fn ping(&self, v: u64) -> u64 {
        self.tx.as_ref().unwrap().send(v).unwrap();
        self.rx.recv().unwrap()
    }

    fn send_bytes(&self, b: &[u8]) -> u64 {
        self.tx.as_ref().unwrap().send(u64::MAX).unwrap();
        self.bytes.send(b).unwrap();
        self.rx.recv().unwrap()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        drop(self.tx.take());
        let _ = self.child.wait();
    }
}

// ===== procspawn's 20k tasks, in a child process (it runs out of file descriptors) =====

fn procspawn_tasks_child() {
    let pool = procspawn::Pool::new(WORKERS).unwrap();
    let t = Instant::now();
    let mut handles = Vec::with_capacity(TASKS);
    let submitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for i in 0..TASKS as u64 {
            handles.push(pool.spawn(i, trivial));
        }
    }));
    if submitted.is_err() {
        println!("failed after {} tasks", handles.len());
        pool.kill();
        return;
    }
    for h in handles {
        if h.join().is_err() {
            println!("failed: a task's join failed");
            pool.kill();
            return;
        }
    }
    println!("ok {}", TASKS as f64 / t.elapsed().as_secs_f64());
    pool.shutdown();
}

/// Tasks per second, or why procspawn failed.
fn procspawn_tasks() -> Result<f64, String> {
    let out = Command::new(env::current_exe().unwrap())
        .env(ENV_CASE, "procspawn_tasks")
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("no output").trim().to_owned();
    match line.strip_prefix("ok ") {
        Some(rate) => rate.parse().map_err(|_| line.clone()),
        None => Err(line),
    }
}

// ===== CPython =====

fn cpython_round() -> Option<BTreeMap<String, f64>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/cpython_process_pool.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .args([ROUND_TRIPS, TASKS, MAP_ITEMS as usize, BIG].map(|v| v.to_string()))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "cpython run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect(),
    )
}

// ===== the table =====

/// Samples per (measure, contender), in the order first seen.
#[derive(Default)]
struct Table {
    rows: Vec<(&'static str, &'static str, &'static str, Vec<f64>)>,
    notes: Vec<String>,
}

impl Table {
    fn add(&mut self, measure: &'static str, who: &'static str, unit: &'static str, v: f64) {
        match self
            .rows
            .iter_mut()
            .find(|(m, w, _, _)| *m == measure && *w == who)
        {
            Some(row) => row.3.push(v),
            None => self.rows.push((measure, who, unit, vec![v])),
        }
    }

    fn get(&self, measure: &str, who: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|(m, w, _, _)| *m == measure && *w == who)
            .map(|r| median(r.3.clone()))
    }

    fn print(&self) {
        println!(
            "\n{:<34} {:<44} {:>14}  {:>10}",
            "measure (median)", "contender", "value", "ours ×"
        );
        for (measure, who, unit, samples) in &self.rows {
            let m = median(samples.clone());
            let ours = self.get(measure, "concurrent_futures").unwrap_or(f64::NAN);
            // "ours ×": how many times better ours is (time: theirs/ours; rate: ours/theirs).
            let better = if unit.ends_with("/s") {
                ours / m
            } else {
                m / ours
            };
            let value = match *unit {
                "µs" => format!("{:.1} µs", m * 1e6),
                "ms" => format!("{:.2} ms", m * 1e3),
                "tasks/s" => format!("{:.0}k/s", m / 1e3),
                "items/s" => format!("{:.2}M/s", m / 1e6),
                "GB/s" => format!("{:.2} GB/s", m / 1e9),
                "×" => format!("{m:.2}×"),
                _ => format!("{m}"),
            };
            let ratio = if *who == "concurrent_futures" || *unit == "×" {
                String::new()
            } else {
                format!("{better:.2}×")
            };
            println!("{measure:<34} {who:<44} {value:>14}  {ratio:>10}");
        }
        for n in &self.notes {
            println!("note: {n}");
        }
    }
}

fn main() {
    // A procspawn child runs its task here and exits; our own workers never get this far
    // (they are taken over before `main`).
    procspawn::init();
    if let Ok(server) = env::var(ENV_ECHO) {
        return echo_child(server);
    }
    if env::var(ENV_CASE).as_deref() == Ok("procspawn_tasks") {
        return procspawn_tasks_child();
    }
    if env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let rounds: usize = env::var("CF_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let mut table = Table::default();
    let big = vec![7u8; BIG];
    let big_bytes = Bytes::from(big.clone());
    let big_buf = serde_bytes::ByteBuf::from(big.clone());
    let mut python = true;
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        // --- pool start to first result ---
        let t = Instant::now();
        let pool = ProcessPoolExecutor::new(WORKERS);
        assert_eq!(pool.submit(trivial, 1).result(), Ok(2));
        table.add(
            "start to first result (2 workers)",
            "concurrent_futures",
            "ms",
            t.elapsed().as_secs_f64(),
        );
        let t = Instant::now();
        let ps = procspawn::Pool::new(WORKERS).unwrap();
        assert_eq!(ps.spawn(1, trivial).join().unwrap(), 2);
        table.add(
            "start to first result (2 workers)",
            "procspawn 1.0 Pool",
            "ms",
            t.elapsed().as_secs_f64(),
        );

        // --- round trip ---
        let echo = Echo::start();
        let rt = p50s(&mut [
            &mut || {
                black_box(echo.ping(black_box(1)));
            },
            &mut || {
                // (Recording off; a relaxed store, so that the contenders differ only in it.)
                pool.stop_recording();
                black_box(pool.submit(trivial, black_box(1)).result().unwrap());
            },
            &mut || {
                black_box(ps.spawn(black_box(1), trivial).join().unwrap());
            },
            &mut || {
                // The same pool recording its timeline: what recording costs.
                pool.start_recording();
                black_box(pool.submit(trivial, black_box(1)).result().unwrap());
            },
        ]);
        pool.stop_recording();
        let measure = "round trip p50, trivial task";
        table.add(measure, "raw ipc-channel ping-pong", "µs", rt[0]);
        table.add(measure, "concurrent_futures", "µs", rt[1]);
        table.add(measure, "procspawn 1.0 Pool", "µs", rt[2]);
        table.add(measure, "concurrent_futures, recording", "µs", rt[3]);
        black_box(pool.take_timeline());

        // --- 20k tasks at once ---
        let t = Instant::now();
        let futures: Vec<_> = (0..TASKS as u64).map(|i| pool.submit(trivial, i)).collect();
        for f in futures {
            black_box(f.into_result().unwrap());
        }
        table.add(
            "20,000 tasks submitted at once",
            "concurrent_futures",
            "tasks/s",
            TASKS as f64 / t.elapsed().as_secs_f64(),
        );
        pool.start_recording();
        let t = Instant::now();
        let futures: Vec<_> = (0..TASKS as u64).map(|i| pool.submit(trivial, i)).collect();
        for f in futures {
            black_box(f.into_result().unwrap());
        }
        table.add(
            "20,000 tasks submitted at once",
            "concurrent_futures, recording",
            "tasks/s",
            TASKS as f64 / t.elapsed().as_secs_f64(),
        );
        pool.stop_recording();
        assert_eq!(pool.take_timeline().tasks.len(), TASKS);
        match procspawn_tasks() {
            Ok(rate) => table.add(
                "20,000 tasks submitted at once",
                "procspawn 1.0 Pool",
                "tasks/s",
                rate,
            ),
            Err(why) if round == 0 => table.notes.push(format!(
                "procspawn, 20,000 tasks: {why} (file descriptors: 3 per queued task)"
            )),
            Err(_) => {}
        }

        // --- map of 1M items ---
        let t = Instant::now();
        let n = pool
            .map(trivial, 0..MAP_ITEMS)
            .filter(Result::is_ok)
            .count();
        assert_eq!(n as u64, MAP_ITEMS);
        table.add(
            "map of 1M trivial items",
            "concurrent_futures",
            "items/s",
            MAP_ITEMS as f64 / t.elapsed().as_secs_f64(),
        );
        pool.start_recording();
        let t = Instant::now();
        let n = pool
            .map(trivial, 0..MAP_ITEMS)
            .filter(Result::is_ok)
            .count();
        assert_eq!(n as u64, MAP_ITEMS);
        pool.stop_recording();
        table.add(
            "map of 1M trivial items",
            "concurrent_futures, recording",
            "items/s",
            MAP_ITEMS as f64 / t.elapsed().as_secs_f64(),
        );
        black_box(pool.take_timeline());

        // --- 64 MiB argument ---
        let gbps = |f: &mut dyn FnMut()| {
            let t = Instant::now();
            f();
            BIG as f64 / t.elapsed().as_secs_f64()
        };
        let raw: Vec<f64> = (0..3)
            .map(|_| gbps(&mut || assert_eq!(echo.send_bytes(&big), BIG as u64)))
            .collect();
        table.add(
            "64 MiB argument",
            "raw ipc-channel bytes",
            "GB/s",
            median(raw),
        );
        // The argument is made before the clock starts: what is timed is the transfer
        // (as for the raw anchor, which sends a buffer it has), not a 64 MiB clone.
        let send = || {
            let mut arg = Some(big_bytes.clone());
            gbps(&mut || {
                let arg = arg.take().expect("one call");
                assert_eq!(pool.submit(length, arg).result(), Ok(BIG))
            })
        };
        let send_vec = || {
            let mut arg = Some(big.clone());
            gbps(&mut || {
                let arg = arg.take().expect("one call");
                assert_eq!(pool.submit(length_vec, arg).result(), Ok(BIG))
            })
        };
        table.add(
            "64 MiB argument",
            "concurrent_futures, first of the pool (Vec<u8>)",
            "GB/s",
            send_vec(),
        );
        let again: Vec<f64> = (0..3).map(|_| send_vec()).collect();
        table.add(
            "64 MiB argument",
            "concurrent_futures",
            "GB/s",
            median(again),
        );
        let bytes: Vec<f64> = (0..3).map(|_| send()).collect();
        table.add(
            "64 MiB argument",
            "concurrent_futures, Bytes",
            "GB/s",
            median(bytes),
        );
        let arg = big_buf.clone();
        let t = Instant::now();
        assert_eq!(ps.spawn(arg, length_buf).join().unwrap(), BIG);
        table.add(
            "64 MiB argument",
            "procspawn 1.0 Pool (serde_bytes)",
            "GB/s",
            BIG as f64 / t.elapsed().as_secs_f64(),
        );
        drop(echo);

        // --- CPU-bound jobs ---
        let t = Instant::now();
        for _ in 0..CPU_JOBS {
            black_box(fib(black_box(CPU_N)));
        }
        let sequential = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let futures: Vec<_> = (0..CPU_JOBS).map(|_| pool.submit(fib, CPU_N)).collect();
        for f in futures {
            black_box(f.into_result().unwrap());
        }
        table.add(
            "8 CPU-bound jobs, speed-up vs sequential",
            "concurrent_futures",
            "×",
            sequential / t.elapsed().as_secs_f64(),
        );
        let t = Instant::now();
        let handles: Vec<_> = (0..CPU_JOBS).map(|_| ps.spawn(CPU_N, fib)).collect();
        for h in handles {
            black_box(h.join().unwrap());
        }
        table.add(
            "8 CPU-bound jobs, speed-up vs sequential",
            "procspawn 1.0 Pool",
            "×",
            sequential / t.elapsed().as_secs_f64(),
        );
        pool.shutdown(true);
        ps.shutdown();

        // --- CPython ---
        if python {
            match cpython_round() {
                Some(py) => {
                    let py_rows: [(&str, &str, &str, &str); 6] = [
                        (
                            "start_fork_s",
                            "start to first result (2 workers)",
                            "CPython ProcessPoolExecutor (fork)",
                            "ms",
                        ),
                        (
                            "start_spawn_s",
                            "start to first result (2 workers)",
                            "CPython ProcessPoolExecutor (spawn)",
                            "ms",
                        ),
                        (
                            "round_trip_p50_s",
                            "round trip p50, trivial task",
                            "CPython ProcessPoolExecutor",
                            "µs",
                        ),
                        (
                            "tasks_per_s",
                            "20,000 tasks submitted at once",
                            "CPython ProcessPoolExecutor",
                            "tasks/s",
                        ),
                        (
                            "map_items_per_s",
                            "map of 1M trivial items",
                            "CPython Pool.map, chunksize 1000",
                            "items/s",
                        ),
                        (
                            "big_arg_bytes_per_s",
                            "64 MiB argument",
                            "CPython ProcessPoolExecutor",
                            "GB/s",
                        ),
                    ];
                    for (key, measure, who, unit) in py_rows {
                        if let Some(&v) = py.get(key) {
                            table.add(measure, who, unit, v);
                        }
                    }
                }
                None => {
                    table
                        .notes
                        .push("python3 not available: CPython rows left out".into());
                    python = false;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    table.rows.sort_by_key(|r| {
        [
            "start to first result (2 workers)",
            "round trip p50, trivial task",
            "20,000 tasks submitted at once",
            "map of 1M trivial items",
            "64 MiB argument",
            "8 CPU-bound jobs, speed-up vs sequential",
        ]
        .iter()
        .position(|m| *m == r.0)
    });
    table.print();
}
