//! The multiprocessing toolkit beside CPython's `multiprocessing` (fork context), in the same
//! run, rounds interleaved: start + join of a process, a queue streaming items from a child,
//! a pipe ping-pong, an uncontended lock, two processes incrementing a shared `Value` under
//! its lock, and a semaphore ping-pong between two processes (each hand-off wakes a process
//! asleep in `acquire`: the wait/wake path of every blocking primitive). Medians over rounds (`CF_BENCH_ROUNDS`, default 5) and the ratio
//! CPython / ours (above 1: we are faster).
//!
//! Run: `cargo bench --bench multiprocessing`

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use concurrent_futures::multiprocessing::{
    Connection, Lock, Pipe, Process, Queue, Semaphore, Value,
};

const STARTS: usize = 20;
const ITEMS: u64 = 200_000;
const TRIPS: u64 = 10_000;
const PAIRS: u64 = 1_000_000;
const INCREMENTS: u64 = 100_000;
const HANDOFFS: u64 = 10_000;

fn noop(_: ()) {}

fn producer((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).expect("put");
    }
}

fn echo((conn, n): (Connection<u64>, u64)) {
    for _ in 0..n {
        let v = conn.recv().expect("recv");
        conn.send(v).expect("send");
    }
}

fn increment((v, n): (Value<i64>, u64)) {
    for _ in 0..n {
        *v.get_lock().expect("holder died") += 1;
    }
}

fn ping((ping, pong, n): (Semaphore, Semaphore, u64)) {
    for _ in 0..n {
        ping.acquire().forget();
        pong.release();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One round of ours: seconds per measurement.
fn ours() -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    let starts: Vec<f64> = (0..STARTS)
        .map(|_| {
            let t = Instant::now();
            let p = Process::new(noop, ());
            p.start().expect("start");
            p.join().expect("join");
            t.elapsed().as_secs_f64()
        })
        .collect();
    out.insert("start_join_s", median(starts));

    let q = Queue::new(0);
    let t = Instant::now();
    let p = Process::new(producer, (q.clone(), ITEMS));
    p.start().expect("start");
    for _ in 0..ITEMS {
        q.get().expect("get");
    }
    p.join().expect("join");
    out.insert("queue_s", t.elapsed().as_secs_f64());

    let (a, b) = Pipe::new(true).expect("pipe");
    let p = Process::new(echo, (b, TRIPS));
    p.start().expect("start");
    let t = Instant::now();
    for i in 0..TRIPS {
        a.send(i).expect("send");
        a.recv().expect("recv");
    }
    out.insert("pipe_s", t.elapsed().as_secs_f64());
    p.join().expect("join");

    let lock = Lock::new();
    let t = Instant::now();
    for _ in 0..PAIRS {
        drop(std::hint::black_box(lock.acquire().expect("lock")));
    }
    out.insert("lock_s", t.elapsed().as_secs_f64());

    let v = Value::new(0i64);
    let t = Instant::now();
    let ps: Vec<_> = (0..2)
        .map(|_| Process::new(increment, (v.clone(), INCREMENTS)))
        .collect();
    for p in &ps {
        p.start().expect("start");
    }
    for p in &ps {
        p.join().expect("join");
    }
    assert_eq!(v.get(), 2 * INCREMENTS as i64);
    out.insert("value_s", t.elapsed().as_secs_f64());

    let (to_child, to_parent) = (Semaphore::new(0), Semaphore::new(0));
    let p = Process::new(ping, (to_child.clone(), to_parent.clone(), HANDOFFS));
    p.start().expect("start");
    let t = Instant::now();
    for _ in 0..HANDOFFS {
        to_child.release();
        to_parent.acquire().forget();
    }
    out.insert("semaphore_s", t.elapsed().as_secs_f64());
    p.join().expect("join");
    out
}

fn cpython() -> Option<BTreeMap<String, f64>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/cpython_multiprocessing.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .args([STARTS as u64, ITEMS, TRIPS, PAIRS, INCREMENTS, HANDOFFS].map(|n| n.to_string()))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect(),
    )
}

fn main() {
    let rounds: usize = std::env::var("CF_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let mut mine: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut theirs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut python = true;
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        for (k, v) in ours() {
            mine.entry(k).or_default().push(v);
        }
        if python {
            match cpython() {
                Some(m) => {
                    for (k, v) in m {
                        theirs.entry(k).or_default().push(v);
                    }
                }
                None => python = false,
            }
        }
    }
    println!(
        "multiprocessing, {} CPUs, medians of {rounds} rounds (ratio = CPython / ours)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let rows: [(&str, &str, &str, f64); 6] = [
        ("start_join_s", "Process start + join", "ms", 1e3),
        (
            "queue_s",
            "Queue, child -> parent",
            "k items/s",
            ITEMS as f64 / 1e3,
        ),
        ("pipe_s", "Pipe round trip", "µs", 1e6 / TRIPS as f64),
        ("lock_s", "Lock acquire + release", "ns", 1e9 / PAIRS as f64),
        (
            "value_s",
            "Value += 1 under its lock, 2 processes",
            "k incr/s",
            2.0 * INCREMENTS as f64 / 1e3,
        ),
        (
            "semaphore_s",
            "Semaphore ping-pong between 2 processes (round trip)",
            "µs",
            1e6 / HANDOFFS as f64,
        ),
    ];
    println!("| measure | ours | CPython | ratio |");
    println!("|---|---|---|---|");
    for (key, name, unit, scale) in rows {
        let rate = unit.ends_with("/s");
        let show = |secs: f64| if rate { scale / secs } else { secs * scale };
        let m = median(mine[key].clone());
        let (c, ratio) = match theirs.get(key) {
            Some(v) => {
                let c = median(v.clone());
                (format!("{:.2} {unit}", show(c)), format!("{:.1}×", c / m))
            }
            None => ("—".to_string(), "—".to_string()),
        };
        println!("| {name} | {:.2} {unit} | {c} | {ratio} |", show(m));
    }
    if !python {
        println!("(python3 not available or failed: CPython columns left out)");
    }
}
