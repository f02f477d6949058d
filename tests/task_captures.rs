//! Tasks with captured values (`task!`, `Captured`): one task value runs unchanged on the
//! thread pool, the process pool, rayon and `AnyExecutor` (parsed from a string), through
//! `submit`, `map`, `map_unordered`, `submit_chunk`, the streams and `multiprocessing::Pool`;
//! captures cross to a worker process once per task and once per chunk (never per item);
//! a capture that cannot be encoded, or that holds shared state, is a typed `SubmitError`
//! that leaves other tasks alone; a closure that captures values is refused by the process
//! pool (it runs on threads); plain `fn` items and closures without captures keep working.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{LONG, double, watchdog};
use concurrent_futures::{
    AnyExecutor, Executor, MapOptions, SubmitError, Task, TaskError, ThreadPoolExecutor, task,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    scale: u64,
    label: String,
}

/// Captures of several types: a `String`, a `Vec`, a struct, a tuple and a `Vec<u8>`
/// larger than the 32 KiB a payload carries inline (it crosses in shared memory).
fn scorer() -> impl Task<u64, (u64, String, usize)> + Clone {
    let name = String::from("scores");
    let weights: Vec<u64> = (0..16).map(|i| i * 10).collect();
    let settings = Settings {
        scale: 3,
        label: "s".into(),
    };
    let pair = (7u8, String::from("seven"));
    let big = vec![1u8; 100 << 10];
    task!([name, weights, settings, pair, big] |i: u64| {
        let w = weights[(i % 16) as usize];
        let sum: u64 = big.iter().map(|&b| u64::from(b)).sum();
        (
            i * settings.scale + w + u64::from(pair.0) + sum,
            format!("{}-{}-{}", name, settings.label, pair.1),
            std::process::id() as usize,
        )
    })
}

fn expected(i: u64) -> u64 {
    i * 3 + (i % 16) * 10 + 7 + (100 << 10)
}

fn sorted(values: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    v
}

/// The same task value through every method of the trait, on any backend.
fn run_everywhere<E: Executor>(pool: &E, task: impl Task<u64, (u64, String, usize)> + Clone) {
    let (v, label, _) = pool.submit(task.clone(), 5).result_timeout(LONG).unwrap();
    assert_eq!((v, label.as_str()), (expected(5), "scores-s-seven"));

    let ordered: Vec<u64> = pool
        .map(task.clone(), 0..500)
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(ordered, (0..500).map(expected).collect::<Vec<_>>());

    let chunked: Vec<u64> = pool
        .map_with(task.clone(), 0..200, MapOptions::new().chunksize(7))
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(chunked, (0..200).map(expected).collect::<Vec<_>>());

    let mut unordered: Vec<u64> = pool
        .map_unordered(task.clone(), 0..300)
        .map(|r| r.unwrap().0)
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, sorted((0..300).map(expected)));

    let chunk = pool
        .submit_chunk(task, vec![1, 2, 3])
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(chunk.len(), 3);
}

#[test]
fn captures_of_several_types_on_the_thread_pool() {
    let _w = watchdog("captures_of_several_types_on_the_thread_pool");
    let pool = ThreadPoolExecutor::new(2);
    run_everywhere(&pool, scorer());
    // On threads the task runs in this process.
    let (_, _, pid) = pool.submit(scorer(), 1).result().unwrap();
    assert_eq!(pid, std::process::id() as usize);
}

#[test]
fn captures_of_several_types_on_rayon() {
    let _w = watchdog("captures_of_several_types_on_rayon");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    run_everywhere(&pool, scorer());
}

#[cfg(target_os = "linux")]
#[test]
fn captures_of_several_types_on_the_process_pool() {
    let _w = watchdog("captures_of_several_types_on_the_process_pool");
    let pool = concurrent_futures::ProcessPoolExecutor::new(2);
    run_everywhere(&pool, scorer());
    // The task really ran in another process.
    let (_, _, pid) = pool.submit(scorer(), 1).result().unwrap();
    assert_ne!(pid, std::process::id() as usize);
    let slow = pool.submit_with_timeout(scorer(), 4, LONG).result();
    assert_eq!(slow.unwrap().0, expected(4));
}

#[test]
fn one_task_written_once_runs_on_backends_picked_from_a_string() {
    let _w = watchdog("one_task_written_once_runs_on_backends_picked_from_a_string");
    let task = scorer();
    #[cfg(target_os = "linux")]
    let specs = ["threads:2", "processes:2", "rayon:2"];
    #[cfg(not(target_os = "linux"))]
    let specs = ["threads:2", "rayon:2"];
    for spec in specs {
        let pool: AnyExecutor = spec.parse().unwrap();
        run_everywhere(&pool, task.clone());
    }
}

#[test]
fn a_task_is_usable_directly_and_its_captures_are_readable() {
    let k = 4u32;
    let t = task!([k, offset = k + 1] |x: u32| -> u32 { x * k + offset });
    assert_eq!(t.call(2), 13);
    assert_eq!(*t.captures(), (4, 5));
    // No captures at all is a task too.
    let none = task!([] |x: u32| x + 1);
    assert_eq!(none.call(1), 2);
}

// ----- captures cross once per chunk, and are encoded once per map -----

static DECODED: AtomicUsize = AtomicUsize::new(0);
static ENCODED: AtomicUsize = AtomicUsize::new(0);

/// A capture that counts its encodings (in the parent) and decodings (in the worker).
#[derive(Debug, Clone)]
struct Counted(u64);

impl Serialize for Counted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ENCODED.fetch_add(1, Ordering::SeqCst);
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODED.fetch_add(1, Ordering::SeqCst);
        u64::deserialize(d).map(Counted)
    }
}

#[cfg(target_os = "linux")]
#[test]
fn captures_cross_once_per_chunk_not_per_item() {
    let _w = watchdog("captures_cross_once_per_chunk_not_per_item");
    let pool = concurrent_futures::ProcessPoolExecutor::new(1);
    let counted = Counted(10);
    // Returns how many times the worker had decoded the captures when this item ran.
    let task = task!([counted] |x: u64| -> (u64, usize) {
        (x + counted.0, DECODED.load(Ordering::SeqCst))
    });
    // One task alone: its captures are encoded (serde may call `serialize` more than once
    // per encoding: to size it, then to write it), and decoded once by the worker.
    let before = ENCODED.load(Ordering::SeqCst);
    assert_eq!(pool.submit(task.clone(), 0).result(), Ok((10, 1)));
    let per_encoding = ENCODED.load(Ordering::SeqCst) - before;
    assert!(per_encoding > 0);
    let before = ENCODED.load(Ordering::SeqCst);
    let out: Vec<(u64, usize)> = pool
        .map_with(task.clone(), 0..1000u64, MapOptions::new().chunksize(100))
        .map(Result::unwrap)
        .collect();
    // Encoded once for the whole map of ten chunks, in this process.
    assert_eq!(ENCODED.load(Ordering::SeqCst) - before, per_encoding);
    // One worker, ten chunks of 100 items: chunk k is the worker's (k + 1)-th decoding
    // after the task above, once per chunk, never per item.
    for (i, (v, decodes)) in out.iter().enumerate() {
        assert_eq!(*v, i as u64 + 10);
        assert_eq!(*decodes, i / 100 + 2, "item {i}");
    }
    // The parent never decodes captures.
    assert_eq!(DECODED.load(Ordering::SeqCst), 0);
    pool.shutdown(true);
}

// ----- a capture that cannot cross is a typed error; the rest runs -----

/// A capture whose `Serialize` fails (or panics).
#[derive(Debug, Clone)]
struct Unencodable {
    panic: bool,
}

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        if self.panic {
            panic!("the capture's encoding panicked on purpose");
        }
        Err(serde::ser::Error::custom(
            "this capture refuses to be encoded",
        ))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bool::deserialize(d).map(|panic| Unencodable { panic })
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_capture_that_cannot_be_encoded_is_a_submit_error_and_others_run() {
    let _w = watchdog("a_capture_that_cannot_be_encoded_is_a_submit_error_and_others_run");
    let pool = concurrent_futures::ProcessPoolExecutor::new(2);
    let first = pool.submit(double, 1);
    for panic in [false, true] {
        let bad = Unencodable { panic };
        let task = task!([bad] |x: u64| x + u64::from(bad.panic));
        match pool.try_submit(task.clone(), 1) {
            Err(SubmitError::Codec(msg)) => {
                let want = if panic {
                    "panicked on purpose"
                } else {
                    "refuses to be encoded"
                };
                assert!(msg.contains(want), "{msg}");
            }
            other => panic!("expected a codec error, got {other:?}"),
        }
        // `submit` and `map` carry the same error; `map` stops at its first chunk.
        assert!(matches!(
            pool.submit(task.clone(), 1).result(),
            Err(TaskError::Submit(SubmitError::Codec(_)))
        ));
        let mapped: Vec<_> = pool.map(task.clone(), 0..10u64).collect();
        assert_eq!(mapped.len(), 1);
        assert!(matches!(
            mapped[0],
            Err(TaskError::Submit(SubmitError::Codec(_)))
        ));
        // On threads nothing is encoded: the same task runs.
        let threads = ThreadPoolExecutor::new(1);
        assert_eq!(threads.submit(task, 1).result(), Ok(1 + u64::from(panic)));
    }
    // The pool is unharmed.
    assert_eq!(first.result_timeout(LONG), Ok(2));
    assert_eq!(pool.submit(double, 21).result_timeout(LONG), Ok(42));
    let sum: u64 = pool.map(scorer(), 0..10).map(|r| r.unwrap().0).sum();
    assert_eq!(sum, (0..10).map(expected).sum());
}

/// A capture that encodes but that a worker cannot decode (its `Deserialize` fails, or
/// panics, in the worker).
#[derive(Debug, Clone)]
struct Undecodable {
    panic: bool,
}

impl Serialize for Undecodable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.panic.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if bool::deserialize(d)? {
            panic!("the capture's decoding panicked on purpose");
        }
        Err(serde::de::Error::custom(
            "this capture refuses to be decoded",
        ))
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_capture_a_worker_cannot_decode_fails_its_tasks_and_the_pool_lives() {
    let _w = watchdog("a_capture_a_worker_cannot_decode_fails_its_tasks_and_the_pool_lives");
    let pool = concurrent_futures::ProcessPoolExecutor::new(2);
    for panic in [false, true] {
        let bad = Undecodable { panic };
        let task = task!([bad] |x: u64| x + u64::from(bad.panic));
        let check = |e: &TaskError| match (panic, e) {
            (false, TaskError::Codec(msg)) => {
                assert!(msg.contains("refuses to be decoded"), "{msg}")
            }
            (true, TaskError::Panicked(p)) => {
                assert!(p.message().contains("decoding panicked"), "{}", p.message())
            }
            _ => panic!("unexpected {e:?}"),
        };
        check(
            &pool
                .submit(task.clone(), 1)
                .result_timeout(LONG)
                .unwrap_err(),
        );
        // Every item of every chunk fails; none is lost.
        let out: Vec<_> = pool
            .map_with(task.clone(), 0..20u64, MapOptions::new().chunksize(5))
            .collect();
        assert_eq!(out.len(), 20);
        for r in &out {
            check(r.as_ref().unwrap_err());
        }
    }
    // The workers are unharmed.
    let sum: u64 = pool.map(scorer(), 0..10).map(|r| r.unwrap().0).sum();
    assert_eq!(sum, (0..10).map(expected).sum());
}

#[cfg(target_os = "linux")]
#[test]
fn a_burst_of_refused_captures_among_good_tasks_runs_every_good_one_once() {
    let _w = watchdog("a_burst_of_refused_captures_among_good_tasks_runs_every_good_one_once");
    let pool = concurrent_futures::ProcessPoolExecutor::new(2);
    let bad = task!([bad = Unencodable { panic: false }] |x: u64| {
        (x + u64::from(bad.panic), String::new(), 0)
    });
    let good = scorer();
    let futures: Vec<_> = (0..600u64)
        .map(|i| {
            if i % 2 == 0 {
                (i, pool.submit(bad.clone(), i))
            } else {
                (i, pool.submit(good.clone(), i))
            }
        })
        .collect();
    let mut good = 0;
    for (i, f) in futures {
        match f.result_timeout(LONG) {
            Ok((v, _, _)) => {
                assert_eq!((i % 2, v), (1, expected(i)));
                good += 1;
            }
            Err(TaskError::Submit(SubmitError::Codec(_))) => assert_eq!(i % 2, 0),
            Err(e) => panic!("task {i}: unexpected {e:?}"),
        }
    }
    assert_eq!(good, 300);
    // Each good task ran exactly once: the pool counted 300 done, no failure of its own.
    let stats = pool.stats();
    assert_eq!(stats.done, 300, "{stats:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn shared_state_in_captures_is_refused_by_the_process_pool() {
    use std::sync::{Arc, Mutex};
    let _w = watchdog("shared_state_in_captures_is_refused_by_the_process_pool");
    let total = Arc::new(Mutex::new(0u64));
    let task = task!([total = total.clone()] |x: u64| {
        *total.lock().unwrap() += x;
        x
    });
    let pool = concurrent_futures::ProcessPoolExecutor::new(1);
    match pool.try_submit(task.clone(), 1) {
        Err(SubmitError::SharedState { type_name, shared }) => {
            assert_eq!(&*shared, "Arc");
            assert!(type_name.contains("Mutex"), "{type_name}");
        }
        other => panic!("expected a shared-state refusal, got {other:?}"),
    }
    assert!(matches!(
        pool.map(task.clone(), 0..4u64).next(),
        Some(Err(TaskError::Submit(SubmitError::SharedState { .. })))
    ));
    // On threads the `Arc` is shared, not copied: the total is seen.
    let threads = ThreadPoolExecutor::new(2);
    let sum: u64 = threads.map(task, 1..=10u64).map(Result::unwrap).sum();
    assert_eq!(sum, 55);
    assert_eq!(*total.lock().unwrap(), 55);
}

// ----- closures -----

#[cfg(target_os = "linux")]
#[test]
fn a_closure_that_captures_values_is_refused_by_the_process_pool_with_a_typed_error() {
    let _w = watchdog("a_closure_that_captures_values_is_refused_by_the_process_pool");
    let k = 3u64;
    let closure = move |x: u64| x * k;
    let pool = concurrent_futures::ProcessPoolExecutor::new(1);
    match pool.try_submit(closure, 2) {
        Err(e @ SubmitError::CapturingClosure { .. }) => {
            assert!(e.to_string().contains("task!"), "{e}");
        }
        other => panic!("expected the capturing-closure refusal, got {other:?}"),
    }
    assert!(matches!(
        pool.map(closure, 0..3u64).next(),
        Some(Err(TaskError::Submit(SubmitError::CapturingClosure { .. })))
    ));
    assert!(matches!(
        pool.submit_with_timeout(closure, 1, LONG).result(),
        Err(TaskError::Submit(SubmitError::CapturingClosure { .. }))
    ));
    let any: AnyExecutor = "processes:1".parse().unwrap();
    assert!(matches!(
        any.try_submit(closure, 1),
        Err(SubmitError::CapturingClosure { .. })
    ));
    // The same closure runs on threads; written with `task!`, on processes too.
    assert_eq!(
        ThreadPoolExecutor::new(1).submit(closure, 2).result(),
        Ok(6)
    );
    assert_eq!(pool.submit(task!([k] |x: u64| x * k), 2).result(), Ok(6));
}

/// A task type implemented by hand: runs on threads; a worker process cannot name it.
struct ByHand(Vec<u64>);

impl Task<usize, u64> for ByHand {
    fn call(&self, i: usize) -> u64 {
        self.0[i]
    }
}

#[test]
fn a_task_implemented_by_hand_runs_on_threads_and_is_refused_by_processes() {
    let _w = watchdog("a_task_implemented_by_hand_runs_on_threads_and_is_refused_by_processes");
    let threads = ThreadPoolExecutor::new(2);
    let out: Vec<u64> = threads
        .map(ByHand(vec![4, 5, 6]), 0..3)
        .map(Result::unwrap)
        .collect();
    assert_eq!(out, [4, 5, 6]);
    #[cfg(target_os = "linux")]
    {
        let pool = concurrent_futures::ProcessPoolExecutor::new(1);
        match pool.try_submit(ByHand(vec![1]), 0) {
            Err(SubmitError::Unsendable(msg)) => assert!(msg.contains("task!"), "{msg}"),
            other => panic!("expected Unsendable, got {other:?}"),
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn fn_items_pointers_and_closures_without_captures_run_in_worker_processes() {
    let _w = watchdog("fn_items_pointers_and_closures_without_captures_run_in_workers");
    let pool = concurrent_futures::ProcessPoolExecutor::new(2);
    let pid = |_: ()| std::process::id();
    assert_ne!(pool.submit(pid, ()).result(), Ok(std::process::id()));
    // A fn item, a fn pointer, a closure without captures, and a closure whose only
    // capture is a fn item (still zero-sized).
    let ptr: fn(u64) -> u64 = double;
    let item = double;
    let via_item = move |x: u64| item(x) + 1;
    assert_eq!(pool.submit(double, 2).result(), Ok(4));
    assert_eq!(pool.submit(ptr, 3).result(), Ok(6));
    assert_eq!(pool.submit(|x: u64| x * 5, 3).result(), Ok(15));
    assert_eq!(pool.submit(via_item, 3).result(), Ok(7));
    let mapped: Vec<u64> = pool.map(via_item, 0..100).map(Result::unwrap).collect();
    assert_eq!(mapped, (0..100).map(|x| x * 2 + 1).collect::<Vec<_>>());
    let mapped: Vec<u64> = pool
        .map_unordered(|x: u64| x + 1, 0..100)
        .map(Result::unwrap)
        .collect();
    assert_eq!(mapped.iter().sum::<u64>(), (1..=100).sum());
}

#[cfg(target_os = "linux")]
#[test]
fn a_panicking_captured_task_fails_its_item_only() {
    let _w = watchdog("a_panicking_captured_task_fails_its_item_only");
    let pool = concurrent_futures::ProcessPoolExecutor::new(2);
    let bad_item = 13u64;
    let task = task!([bad_item] |x: u64| {
        assert!(x != *bad_item, "item {x} is bad");
        x
    });
    let out: Vec<Result<u64, TaskError>> = pool
        .map_with(task, 0..50u64, MapOptions::new().chunksize(10))
        .collect();
    for (i, r) in out.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, i as u64),
            Err(TaskError::Panicked(p)) => {
                assert_eq!(i, 13);
                assert!(p.message().contains("item 13 is bad"), "{}", p.message());
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

// ----- the streams and multiprocessing::Pool -----

#[test]
fn streams_take_captured_tasks() {
    use concurrent_futures::ExecutorStreamExt;
    use futures_core::Stream;
    use std::future::poll_fn;
    use std::pin::Pin;
    let _w = watchdog("streams_take_captured_tasks");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    #[cfg(target_os = "linux")]
    let specs = ["threads:2", "processes:2"];
    #[cfg(not(target_os = "linux"))]
    let specs = ["threads:2"];
    for spec in specs {
        let pool: AnyExecutor = spec.parse().unwrap();
        let task = scorer();
        let out = rt.block_on(async {
            let mut ordered = Vec::new();
            let mut s = pool.map_stream(task.clone(), 0..50).chunksize(8);
            while let Some(r) =
                tokio::time::timeout(LONG, poll_fn(|cx| Pin::new(&mut s).poll_next(cx)))
                    .await
                    .expect("the stream stalled")
            {
                ordered.push(r.unwrap().0);
            }
            let mut unordered = Vec::new();
            let mut s = pool.map_unordered_stream(task.clone(), 0..50);
            while let Some(r) =
                tokio::time::timeout(LONG, poll_fn(|cx| Pin::new(&mut s).poll_next(cx)))
                    .await
                    .expect("the stream stalled")
            {
                unordered.push(r.unwrap().0);
            }
            unordered.sort_unstable();
            (ordered, unordered)
        });
        assert_eq!(out.0, (0..50).map(expected).collect::<Vec<_>>(), "{spec}");
        assert_eq!(out.1, sorted((0..50).map(expected)), "{spec}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn multiprocessing_pool_takes_captured_tasks() {
    use concurrent_futures::multiprocessing::Pool;
    let _w = watchdog("multiprocessing_pool_takes_captured_tasks");
    let pool = Pool::new(2);
    let task = scorer();
    assert_eq!(pool.apply(task.clone(), 2).unwrap().0, expected(2));
    let want: Vec<u64> = (0..40).map(expected).collect();
    let got: Vec<u64> = pool
        .map(task.clone(), 0..40)
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(got, want);
    let got: Vec<u64> = pool
        .map_async(task.clone(), 0..40)
        .get_timeout(LONG)
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(got, want);
    let mut got: Vec<u64> = pool
        .imap_unordered(task.clone(), 0..40)
        .map(|r| r.unwrap().0)
        .collect();
    got.sort_unstable();
    assert_eq!(got, sorted((0..40).map(expected)));
    assert_eq!(
        pool.apply_async(task, 3).get_timeout(LONG).unwrap().0,
        expected(3)
    );
    pool.close();
    pool.join().unwrap();
}

#[test]
fn rayon_spec_is_a_backend() {
    // (Guards the specs above: "rayon:2" parses only with the `rayon` feature, which the
    // tests build with.)
    assert!("rayon:2".parse::<AnyExecutor>().is_ok());
    let _ = Duration::ZERO;
}
