//! Initializers with an argument from the parent (Python's `initializer=`, `initargs=`) on
//! every pool that takes one: the process pool, `multiprocessing::Pool`, the thread pool and
//! `AnyExecutor`'s builder. Python's `test_initializer` (concurrent.futures) and
//! `test_pool_initializer` (multiprocessing) behaviours: the initializer runs exactly once
//! per worker, with the parent's value, before any task, and again in every replacement;
//! one that panics (or whose argument cannot be decoded) breaks the pool.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::{LONG, watchdog};
use concurrent_futures::multiprocessing::Pool;
use concurrent_futures::{
    AnyExecutor, Backend, BuildError, Executor, ProcessPoolExecutor, SpecError, SubmitError,
    TaskError, ThreadPoolExecutor,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What the parent gives every worker: a name and a table of several MiB (so that the
/// argument crosses in shared memory, not inline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Setup {
    name: String,
    #[serde(with = "serde_bytes")]
    table: Vec<u8>,
}

const TABLE_LEN: usize = 6 << 20;

fn setup(name: &str, len: usize) -> Setup {
    Setup {
        name: name.to_string(),
        table: (0..len).map(|i| (i.wrapping_mul(31) % 251) as u8).collect(),
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0u64, |h, (i, &b)| {
        h.wrapping_mul(1_000_003) ^ (b as u64 + i as u64)
    })
}

/// Filled by the initializer, read by tasks.
static SETUP: OnceLock<Setup> = OnceLock::new();
/// How many times the initializer ran in this process.
static RUNS: AtomicUsize = AtomicUsize::new(0);

fn install(s: Setup) {
    RUNS.fetch_add(1, Ordering::SeqCst);
    SETUP
        .set(s)
        .expect("the initializer ran twice in one worker");
}

/// What a worker holds: (pid, initializer runs, name, table length, checksum).
type Seen = (u32, usize, String, usize, u64);

fn seen(_: ()) -> Seen {
    let s = SETUP.get().expect("a task ran before the initializer");
    (
        std::process::id(),
        RUNS.load(Ordering::SeqCst),
        s.name.clone(),
        s.table.len(),
        checksum(&s.table),
    )
}

fn expect_seen(got: &Seen, want: &Setup) {
    let (pid, runs, name, len, sum) = got;
    assert_ne!(*pid, std::process::id(), "it ran in this process");
    assert_eq!(*runs, 1, "worker {pid} ran the initializer {runs} times");
    assert_eq!(name, &want.name, "worker {pid}");
    assert_eq!(*len, want.table.len(), "worker {pid}");
    assert_eq!(*sum, checksum(&want.table), "worker {pid}");
}

/// Submits `seen` until every worker in `pids` answered (bounded by `LONG`).
fn from_every_worker<E: Executor>(pool: &E, pids: &[u32]) -> HashMap<u32, Seen> {
    let want: HashSet<u32> = pids.iter().copied().collect();
    let mut got = HashMap::new();
    let deadline = Instant::now() + LONG;
    while got.len() < want.len() {
        assert!(Instant::now() < deadline, "not every worker ran a task");
        let futs: Vec<_> = (0..8).map(|_| pool.submit(seen, ())).collect();
        for f in futs {
            let s = f.result_timeout(LONG).expect("the task ran");
            assert!(want.contains(&s.0), "a task ran outside the workers");
            got.insert(s.0, s);
        }
    }
    got
}

#[test]
fn each_worker_runs_the_initializer_once_with_the_parents_large_value() {
    let _w = watchdog("each_worker_runs_the_initializer_once_with_the_parents_large_value");
    let value = setup("large", TABLE_LEN);
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer_with(install, value.clone())
        .build()
        .unwrap();
    let pids = pool.pids();
    assert_eq!(pids.len(), 2);
    for s in from_every_worker(&pool, &pids).values() {
        expect_seen(s, &value);
    }
}

#[test]
fn a_small_value_crosses_inline() {
    let _w = watchdog("a_small_value_crosses_inline");
    let value = setup("small", 100);
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer_with(install, value.clone())
        .build()
        .unwrap();
    let pids = pool.pids();
    for s in from_every_worker(&pool, &pids).values() {
        expect_seen(s, &value);
    }
}

fn crash(_: ()) -> u32 {
    std::process::abort()
}

#[test]
fn a_worker_replaced_after_a_crash_runs_the_initializer_again() {
    let _w = watchdog("a_worker_replaced_after_a_crash_runs_the_initializer_again");
    let value = setup("after a crash", TABLE_LEN);
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer_with(install, value.clone())
        .build()
        .unwrap();
    let mut pids = HashSet::new();
    for _ in 0..3 {
        let before = pool.submit(seen, ()).result_timeout(LONG).unwrap();
        expect_seen(&before, &value);
        assert!(pids.insert(before.0), "a worker served after its crash");
        assert!(matches!(
            pool.submit(crash, ()).result_timeout(LONG),
            Err(TaskError::WorkerDied { .. })
        ));
    }
    let after = pool.submit(seen, ()).result_timeout(LONG).unwrap();
    expect_seen(&after, &value);
    assert!(pids.insert(after.0));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Small {
    id: u64,
    tag: String,
}

static SMALL: OnceLock<Small> = OnceLock::new();
static SMALL_RUNS: AtomicUsize = AtomicUsize::new(0);

fn install_small(s: Small) {
    SMALL_RUNS.fetch_add(1, Ordering::SeqCst);
    SMALL
        .set(s)
        .expect("the initializer ran twice in one worker");
}

fn seen_small(_: ()) -> (u32, usize, Small) {
    (
        std::process::id(),
        SMALL_RUNS.load(Ordering::SeqCst),
        SMALL
            .get()
            .expect("a task ran before the initializer")
            .clone(),
    )
}

#[test]
fn max_tasks_per_child_replacements_run_the_initializer_burst() {
    let _w = watchdog("max_tasks_per_child_replacements_run_the_initializer_burst");
    let value = Small {
        id: 42,
        tag: "per child".into(),
    };
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .max_tasks_per_child(1)
        .initializer_with(install_small, value.clone())
        .build()
        .unwrap();
    let n = 200;
    let futs: Vec<_> = (0..n).map(|_| pool.submit(seen_small, ())).collect();
    let mut pids = HashSet::new();
    for f in futs {
        let (pid, runs, got) = f.result_timeout(LONG).unwrap();
        assert_eq!(runs, 1, "worker {pid}");
        assert_eq!(got, value, "worker {pid}");
        assert!(pids.insert(pid), "worker {pid} ran two tasks");
    }
    assert_eq!(pids.len(), n);
}

fn panicking_init(s: Small) {
    panic!("no configuration for {}", s.tag);
}

#[test]
fn a_panicking_initializer_breaks_the_pool() {
    let _w = watchdog("a_panicking_initializer_breaks_the_pool");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer_with(
            panicking_init,
            Small {
                id: 1,
                tag: "db".into(),
            },
        )
        .build()
        .unwrap();
    match pool.try_submit(seen_small, ()) {
        Err(SubmitError::Broken(msg)) => assert!(msg.contains("no configuration for db"), "{msg}"),
        other => panic!("expected a broken pool, got {other:?}"),
    }
    assert!(matches!(
        pool.submit(seen_small, ()).result_timeout(LONG),
        Err(TaskError::Submit(SubmitError::Broken(_)))
    ));
}

/// Encodes, but never decodes.
#[derive(Debug)]
struct Undecodable(u32);

impl Serialize for Undecodable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let _ = u32::deserialize(d)?;
        Err(serde::de::Error::custom("this value refuses to be decoded"))
    }
}

fn never_runs(_: Undecodable) {
    unreachable!("its argument cannot be decoded")
}

#[test]
fn an_argument_that_fails_to_decode_breaks_the_pool() {
    let _w = watchdog("an_argument_that_fails_to_decode_breaks_the_pool");
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer_with(never_runs, Undecodable(7))
        .build()
        .unwrap();
    match pool.try_submit(seen_small, ()) {
        Err(SubmitError::Broken(msg)) => {
            assert!(msg.contains("refuses to be decoded"), "{msg}")
        }
        other => panic!("expected a broken pool, got {other:?}"),
    }
}

/// Never encodes.
#[derive(Debug)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unencodable)
    }
}

fn takes_unencodable(_: Unencodable) {}

#[test]
fn an_argument_that_fails_to_encode_fails_the_build() {
    let _w = watchdog("an_argument_that_fails_to_encode_fails_the_build");
    let built = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer_with(takes_unencodable, Unencodable)
        .build();
    match built {
        Err(BuildError::Initializer(SubmitError::Codec(msg))) => {
            assert!(msg.contains("refuses to be encoded"), "{msg}")
        }
        other => panic!("expected a build error, got {other:?}"),
    }
    let pool = Pool::with_initargs(1, takes_unencodable, Unencodable, None);
    assert!(matches!(
        pool,
        Err(BuildError::Initializer(SubmitError::Codec(_)))
    ));
}

#[test]
fn multiprocessing_pool_takes_initargs_and_reruns_them_per_child() {
    let _w = watchdog("multiprocessing_pool_takes_initargs_and_reruns_them_per_child");
    let value = setup("mp", TABLE_LEN);
    let pool = Pool::with_initargs(2, install, value.clone(), Some(1)).unwrap();
    let all = pool.map(seen, vec![(); 6]).unwrap();
    let pids: HashSet<u32> = all.iter().map(|s| s.0).collect();
    assert_eq!(pids.len(), 6, "maxtasksperchild=1: a fresh worker per task");
    for s in &all {
        expect_seen(s, &value);
    }
    let broken = Pool::with_initargs(
        1,
        panicking_init,
        Small {
            id: 0,
            tag: "mp".into(),
        },
        None,
    )
    .unwrap();
    assert!(matches!(
        broken.apply(seen_small, ()),
        Err(TaskError::Submit(SubmitError::Broken(_)))
    ));
}

thread_local! {
    static THREAD_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static THREAD_SMALL: std::cell::RefCell<Option<Small>> = const { std::cell::RefCell::new(None) };
}

fn install_on_thread(s: Small) {
    THREAD_RUNS.set(THREAD_RUNS.get() + 1);
    THREAD_SMALL.set(Some(s));
}

fn seen_on_thread() -> (String, usize, Option<Small>) {
    let name = std::thread::current()
        .name()
        .unwrap_or_default()
        .to_string();
    (
        name,
        THREAD_RUNS.get(),
        THREAD_SMALL.with_borrow(Clone::clone),
    )
}

#[test]
fn thread_pool_initializer_with_gives_each_thread_the_value_once() {
    let _w = watchdog("thread_pool_initializer_with_gives_each_thread_the_value_once");
    let value = Small {
        id: 3,
        tag: "threads".into(),
    };
    let pool = ThreadPoolExecutor::builder()
        .max_workers(3)
        .thread_name_prefix("initargs")
        .initializer_with(install_on_thread, value.clone())
        .build()
        .unwrap();
    let mut names = HashSet::new();
    let deadline = Instant::now() + LONG;
    while names.len() < 3 {
        assert!(Instant::now() < deadline, "not every thread ran a task");
        let futs: Vec<_> = (0..30).map(|_| pool.spawn(seen_on_thread)).collect();
        for f in futs {
            let (name, runs, got) = f.result_timeout(LONG).unwrap();
            if !name.starts_with("initargs") {
                continue; // run by the waiting thread (caller runs)
            }
            assert_eq!(runs, 1, "thread {name}");
            assert_eq!(got.as_ref(), Some(&value), "thread {name}");
            names.insert(name);
        }
    }
    let broken = ThreadPoolExecutor::builder()
        .max_workers(1)
        .initializer_with(panicking_init, value)
        .build()
        .unwrap();
    let refused = broken.spawn(|| ()).result_timeout(LONG);
    assert!(
        matches!(
            refused,
            Err(TaskError::Broken(_)) | Err(TaskError::Submit(SubmitError::Broken(_)))
        ),
        "{refused:?}"
    );
}

#[test]
fn any_executor_gives_the_initializer_to_the_backend_it_picks() {
    let _w = watchdog("any_executor_gives_the_initializer_to_the_backend_it_picks");
    let value = setup("any", TABLE_LEN);
    let pool = AnyExecutor::builder("processes:2")
        .unwrap()
        .initializer_with(install, value.clone())
        .start()
        .unwrap()
        .unwrap();
    let AnyExecutor::Processes(inner) = &pool else {
        panic!("not a process pool");
    };
    for s in from_every_worker(&pool, &inner.pids()).values() {
        expect_seen(s, &value);
    }
    // A plain initializer too, and a panicking one breaks the pool on each backend.
    for spec in ["processes:1", "threads:1"] {
        let pool = AnyExecutor::builder(spec)
            .unwrap()
            .initializer_with(
                panicking_init,
                Small {
                    id: 0,
                    tag: "any".into(),
                },
            )
            .start()
            .unwrap()
            .unwrap();
        // (A thread pool may accept the task before its thread fails: it fails then.)
        let refused = pool.submit(common::double, 1).result_timeout(LONG);
        assert!(
            matches!(
                refused,
                Err(TaskError::Broken(_)) | Err(TaskError::Submit(SubmitError::Broken(_)))
            ),
            "{spec}: {refused:?}"
        );
    }
    // rayon has no initializer that could break the pool: refused up front.
    match AnyExecutor::builder("rayon:1")
        .unwrap()
        .initializer(plain_init)
        .start()
    {
        Err(SpecError::Unsupported {
            backend: Backend::Rayon,
            ..
        }) => {}
        other => panic!("expected a refusal, got {:?}", other.map(|p| p.is_some())),
    }
    // The shared-state check applies to an initializer's argument on processes.
    match AnyExecutor::builder("processes:1")
        .unwrap()
        .initializer_with(
            takes_counter,
            std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
        )
        .start()
    {
        Err(SpecError::Start(BuildError::Initializer(SubmitError::SharedState { .. }))) => {}
        other => panic!("expected a refusal, got {:?}", other.map(|p| p.is_some())),
    }
}

fn plain_init() {}

fn takes_counter(_: std::sync::Arc<std::sync::atomic::AtomicU64>) {}

#[test]
fn a_burst_of_pools_with_failing_initializers_breaks_each_and_leaves_no_process() {
    let _w =
        watchdog("a_burst_of_pools_with_failing_initializers_breaks_each_and_leaves_no_process");
    let large = setup("burst", 64 << 10); // over the inline limit: a shared file each time
    let mut pids = Vec::new();
    for i in 0..200 {
        let built = if i % 2 == 0 {
            ProcessPoolExecutor::builder()
                .max_workers(1)
                .initializer_with(
                    panicking_init,
                    Small {
                        id: i,
                        tag: "burst".into(),
                    },
                )
                .build()
        } else {
            ProcessPoolExecutor::builder()
                .max_workers(1)
                .initializer_with(never_runs_large, (Undecodable(1), large.clone()))
                .build()
        };
        let pool = built.unwrap();
        pids.extend(pool.pids());
        let refused = pool.try_submit(seen_small, ());
        assert!(
            matches!(refused, Err(SubmitError::Broken(_))),
            "pool {i}: {refused:?}"
        );
    }
    for pid in pids {
        common::eventually("a broken pool's worker is reaped", || {
            common::procs::gone(pid)
        });
    }
}

fn never_runs_large(_: (Undecodable, Setup)) {
    unreachable!("its argument cannot be decoded")
}
