//! The MPI pool beside its anchors, in the same run: a raw MPI ping-pong of 8 bytes
//! (rsmpi, blocking send and receive: the floor any pool over MPI stands on) and the crate's
//! own `ProcessPoolExecutor`, plus the idle CPU of every rank. Each contender runs as its own
//! job (`mpirun -n 3 --oversubscribe`, or alone for the process pool); the jobs take turns
//! within each of `CF_BENCH_ROUNDS` rounds (default 5), and every figure is the median over
//! rounds, so that a noisy machine slows all of them alike.
//!
//! With Open MPI every job runs with `--mca mpi_yield_when_idle 0`: on an oversubscribed
//! node Open MPI would otherwise make each empty poll yield the CPU; the pool turns that off
//! for itself, so the anchors run without it too.
//!
//! `cargo bench --bench mpi --features mpi`

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use concurrent_futures::{Executor, MpiPoolExecutor, ProcessPoolExecutor};

const ROUND_TRIPS: usize = 5_000;
const TASKS: u64 = 20_000;
const MAP_ITEMS: u64 = 5_000_000;
const IDLE: Duration = Duration::from_secs(2);
const JOB: &str = "CF_BENCH_MPI_JOB";

fn trivial(x: u64) -> u64 {
    x + 1
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

/// CPU time (user + system) of a process so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // SAFETY: `sysconf` has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    Duration::from_secs_f64(ticks / hz)
}

/// Share of a core each process used over `IDLE` while nothing happened.
fn idle_cpu(pids: &[u32]) -> Vec<f64> {
    let before: Vec<Duration> = pids.iter().map(|&p| cpu_time(p)).collect();
    let start = Instant::now();
    std::thread::sleep(IDLE); // the quiet period being measured
    let wall = start.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .map(|(&p, b)| (cpu_time(p) - b).as_secs_f64() / wall)
        .collect()
}

fn report(name: &str, value: f64) {
    println!("metric {name} {value}");
}

/// Round trip, throughput and map figures of any pool, through the same generic code.
fn measure<E: Executor>(pool: &E, tag: &str) {
    for i in 0..200 {
        pool.submit(trivial, i).result().unwrap();
    }
    let mut rt = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS as u64 {
        let t = Instant::now();
        std::hint::black_box(pool.submit(trivial, i).result().unwrap());
        rt.push(t.elapsed().as_secs_f64() * 1e6);
    }
    report(&format!("{tag}_rt_p50_us"), percentile(rt.clone(), 0.5));
    report(&format!("{tag}_rt_p90_us"), percentile(rt, 0.9));
    let t = Instant::now();
    let futs: Vec<_> = (0..TASKS).map(|i| pool.submit(trivial, i)).collect();
    for f in &futs {
        f.result().unwrap();
    }
    report(
        &format!("{tag}_tasks_per_s"),
        TASKS as f64 / t.elapsed().as_secs_f64(),
    );
    let t = Instant::now();
    let sum: u64 = pool.map(trivial, 0..MAP_ITEMS).map(Result::unwrap).sum();
    std::hint::black_box(sum);
    report(
        &format!("{tag}_map_items_per_s"),
        MAP_ITEMS as f64 / t.elapsed().as_secs_f64(),
    );
}

/// The raw anchor: ranks 0 and 1 ping-pong 8 bytes with blocking MPI calls; rank 2 waits
/// without spinning. Then rank 1 waits in a blocking receive while rank 0 sleeps, to show
/// what that costs an idle rank.
fn raw_job() {
    use mpi::point_to_point::{Destination, Source};
    use mpi::topology::Communicator;
    let universe = mpi::initialize().expect("MPI init");
    let world = universe.world();
    let rank = world.rank();
    let mut buf = [0u8; 8];
    match rank {
        0 => {
            let peer = world.process_at_rank(1);
            let mut rt = Vec::with_capacity(ROUND_TRIPS);
            for i in 0..(ROUND_TRIPS + 200) {
                let t = Instant::now();
                peer.send(&buf[..]);
                peer.receive_into(&mut buf[..]);
                if i >= 200 {
                    rt.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            report("raw_rt_p50_us", percentile(rt.clone(), 0.5));
            report("raw_rt_p90_us", percentile(rt, 0.9));
            let mut pid = [0u32; 1];
            peer.receive_into(&mut pid[..]);
            // Rank 1 now waits in MPI_Recv for the final message.
            report("raw_blocked_recv_cpu", idle_cpu(&pid)[0]);
            peer.send(&buf[..]);
        }
        1 => {
            let peer = world.process_at_rank(0);
            for _ in 0..(ROUND_TRIPS + 200) {
                peer.receive_into(&mut buf[..]);
                peer.send(&buf[..]);
            }
            peer.send(&[std::process::id()][..]);
            peer.receive_into(&mut buf[..]);
        }
        _ => {}
    }
    // A barrier that does not spin, so that rank 2 leaves the cores to the others.
    use mpi::collective::CommunicatorCollectives;
    let mut req = world.immediate_barrier();
    loop {
        match req.test() {
            Ok(_) => break,
            Err(r) => {
                req = r;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// The same ping-pong with the calls the pool makes: `MPI_THREAD_SERIALIZED`, `MPI_Isend`
/// completed by testing, and polling with `MPI_Improbe` + `MPI_Mrecv` (no blocking receive).
/// The difference to `raw_job` is what MPI itself charges for that mode; the difference to
/// the pool is the pool's own cost.
fn polled_job() {
    use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
    use mpi::topology::Communicator;
    let (universe, _) =
        mpi::initialize_with_threading(mpi::Threading::Serialized).expect("MPI init");
    let world = universe.world();
    let rank = world.rank();
    let buf = [0u8; 8];
    let poll = |from: i32| loop {
        if let Some(m) = world.process_at_rank(from).immediate_matched_probe() {
            let (v, _) = m.matched_receive_vec::<u8>();
            break v;
        }
    };
    if rank < 2 {
        let peer = 1 - rank;
        let mut rt = Vec::with_capacity(ROUND_TRIPS);
        for i in 0..(ROUND_TRIPS + 200) {
            let t = Instant::now();
            if rank == 0 {
                mpi::request::scope(|s| {
                    let mut r = world.process_at_rank(peer).immediate_send(s, &buf[..]);
                    while let Err(again) = r.test() {
                        r = again;
                    }
                });
                std::hint::black_box(poll(peer));
            } else {
                std::hint::black_box(poll(peer));
                mpi::request::scope(|s| {
                    let mut r = world.process_at_rank(peer).immediate_send(s, &buf[..]);
                    while let Err(again) = r.test() {
                        r = again;
                    }
                });
            }
            if i >= 200 {
                rt.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        if rank == 0 {
            report("polled_rt_p50_us", percentile(rt, 0.5));
        }
    }
    use mpi::collective::CommunicatorCollectives;
    let mut req = world.immediate_barrier();
    loop {
        match req.test() {
            Ok(_) => break,
            Err(r) => {
                req = r;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn pool_job() {
    let Some(pool) = MpiPoolExecutor::start() else {
        return;
    };
    measure(&pool, "mpi");
    let mut pids = vec![std::process::id()];
    pids.extend(pool.ranks().iter().map(|r| r.pid));
    for (i, cpu) in idle_cpu(&pids).into_iter().enumerate() {
        report(&format!("mpi_idle_cpu_rank{i}"), cpu);
    }
    pool.shutdown(true);
}

/// The same pool recording its timeline throughout: what recording costs on MPI.
fn recording_job() {
    let Some(pool) = MpiPoolExecutor::start() else {
        return;
    };
    pool.start_recording();
    measure(&pool, "mpirec");
    pool.stop_recording();
    // Every task was recorded; a map records one bar per chunk.
    let recorded = pool.take_timeline().tasks.len();
    assert!(
        recorded as u64 > ROUND_TRIPS as u64 + TASKS,
        "{recorded} bars"
    );
    pool.shutdown(true);
}

fn process_job() {
    let pool = ProcessPoolExecutor::new(2);
    measure(&pool, "proc");
}

fn run(mut cmd: Command, job: &str) -> BTreeMap<String, f64> {
    let out = cmd
        .env(JOB, job)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot start the job (is mpirun installed?)");
    assert!(out.status.success(), "job {job} failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("metric "))
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn mpirun(n: u32) -> Command {
    let mut cmd = Command::new("mpirun");
    let version = Command::new("mpirun").arg("--version").output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Open MPI")) {
        cmd.arg("--oversubscribe");
        cmd.args(["--mca", "mpi_yield_when_idle", "0"]);
        // SAFETY: `geteuid` has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--allow-run-as-root");
        }
        cmd.args(["-x", JOB]);
    }
    cmd.args(["-n", &n.to_string()])
        .arg(std::env::current_exe().expect("current exe"));
    cmd
}

fn main() {
    match std::env::var(JOB).as_deref() {
        Ok("raw") => return raw_job(),
        Ok("polled") => return polled_job(),
        Ok("pool") => return pool_job(),
        Ok("recording") => return recording_job(),
        Ok("process") => return process_job(),
        _ => {}
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("CF_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        let jobs = [
            run(mpirun(3), "raw"),
            run(mpirun(3), "polled"),
            run(mpirun(3), "pool"),
            run(mpirun(3), "recording"),
            run(
                Command::new(std::env::current_exe().expect("exe")),
                "process",
            ),
        ];
        for m in jobs {
            for (k, v) in m {
                all.entry(k).or_default().push(v);
            }
        }
    }
    let med = |k: &str| {
        all.get(k)
            .map(|v| percentile(v.clone(), 0.5))
            .unwrap_or(f64::NAN)
    };
    println!(
        "\nMPI pool under mpirun -n 3 --oversubscribe (1 client + 2 workers), medians of {rounds} rounds\n"
    );
    println!("| measure | MpiPoolExecutor | raw MPI (rsmpi) | ProcessPoolExecutor(2) | ratio |");
    println!("|---|---|---|---|---|");
    println!(
        "| round trip p50, trivial task | {:.1} µs | {:.1} µs (8-byte ping-pong) | {:.1} µs | {:.2}× raw |",
        med("mpi_rt_p50_us"),
        med("raw_rt_p50_us"),
        med("proc_rt_p50_us"),
        med("mpi_rt_p50_us") / med("raw_rt_p50_us")
    );
    println!(
        "| the same ping-pong as the pool makes it (SERIALIZED, MPI_Isend + MPI_Improbe polling) | | {:.1} µs | | {:.2}× this |",
        med("polled_rt_p50_us"),
        med("mpi_rt_p50_us") / med("polled_rt_p50_us")
    );
    println!(
        "| round trip p90 | {:.1} µs | {:.1} µs | {:.1} µs | |",
        med("mpi_rt_p90_us"),
        med("raw_rt_p90_us"),
        med("proc_rt_p90_us")
    );
    println!(
        "| {TASKS} trivial tasks at once | {:.0}k tasks/s | | {:.0}k tasks/s | {:.2}× processes |",
        med("mpi_tasks_per_s") / 1e3,
        med("proc_tasks_per_s") / 1e3,
        med("mpi_tasks_per_s") / med("proc_tasks_per_s")
    );
    println!(
        "| `map` of {MAP_ITEMS} items (chunks sized automatically) | {:.1}M items/s | | {:.1}M items/s | {:.2}× processes |",
        med("mpi_map_items_per_s") / 1e6,
        med("proc_map_items_per_s") / 1e6,
        med("mpi_map_items_per_s") / med("proc_map_items_per_s")
    );
    println!(
        "| idle CPU, rank 0 / 1 / 2 | {:.1}% / {:.1}% / {:.1}% of a core | {:.0}% (a rank blocked in MPI_Recv) | | |",
        100.0 * med("mpi_idle_cpu_rank0"),
        100.0 * med("mpi_idle_cpu_rank1"),
        100.0 * med("mpi_idle_cpu_rank2"),
        100.0 * med("raw_blocked_recv_cpu")
    );
    println!("\nThe same pool recording its timeline (jobs alternate within each round)\n");
    println!("| measure | recording off | recording on | on / off | each round, off; on |");
    println!("|---|---|---|---|---|");
    let rounds_of = |k: &str, scale: f64| {
        let v = all.get(k).map(Vec::as_slice).unwrap_or_default();
        let v: Vec<String> = v.iter().map(|x| format!("{:.1}", x * scale)).collect();
        v.join(", ")
    };
    for (name, key, unit, scale) in [
        ("round trip p50", "rt_p50_us", "µs", 1.0),
        ("tasks at once", "tasks_per_s", "k tasks/s", 1e-3),
        ("`map`", "map_items_per_s", "M items/s", 1e-6),
    ] {
        let (off, on) = (med(&format!("mpi_{key}")), med(&format!("mpirec_{key}")));
        println!(
            "| {name} | {:.1} {unit} | {:.1} {unit} | {:.2} | {}; {} |",
            off * scale,
            on * scale,
            on / off,
            rounds_of(&format!("mpi_{key}"), scale),
            rounds_of(&format!("mpirec_{key}"), scale),
        );
    }
}
