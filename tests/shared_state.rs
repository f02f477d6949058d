//! Shared state never crosses to a worker process silently: with serde's `rc` feature on
//! (this crate's tests turn it on, as any crate of a program may), `Arc<Mutex<_>>` is a
//! `Payload`, and so are `Mutex`, `RwLock` and the atomics without it. The process pool
//! (and the MPI pool, whose local fallback `tests/mpi.rs` checks) refuses them at
//! submission, at any depth of the argument's or result's type, with
//! `SubmitError::SharedState`. `Rc`, `Cell` and `RefCell` alone are not `Send`/`Sync`, so
//! not `Payload`s at all (a compile error); inside a `Mutex` they are refused here.
#![cfg(target_os = "linux")]

mod common;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use common::{LONG, watchdog};
use concurrent_futures::{
    BuildError, Executor, ProcessPoolExecutor, SubmitError, TaskError, ThreadPoolExecutor,
};
use serde::{Deserialize, Serialize};

fn bump(total: Arc<Mutex<u64>>) -> u64 {
    let mut t = total.lock().unwrap();
    *t += 1;
    *t
}

fn bump_pair((n, total): (u64, Arc<Mutex<u64>>)) -> u64 {
    *total.lock().unwrap() += n;
    n
}

fn make_counter(n: u64) -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(n))
}

#[derive(Serialize, Deserialize)]
struct Wrapper<T> {
    id: u64,
    inner: T,
}

fn cell_in_struct(w: Wrapper<Mutex<Cell<u8>>>) -> u64 {
    w.id
}

fn refcell_in_vec(v: Vec<Option<Mutex<RefCell<u8>>>>) -> usize {
    v.len()
}

fn read_lock(v: RwLock<Vec<u8>>) -> usize {
    v.read().unwrap().len()
}

fn shared_of(r: Result<impl std::fmt::Debug, SubmitError>) -> String {
    match r {
        Err(SubmitError::SharedState { type_name, shared }) => {
            let msg = SubmitError::SharedState {
                type_name: type_name.clone(),
                shared: shared.clone(),
            }
            .to_string();
            assert!(msg.contains(&*type_name), "{msg}");
            assert!(msg.contains("initializer_with"), "{msg}");
            shared.to_string()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_process_pool_refuses_shared_state_anywhere_in_the_type() {
    let _w = watchdog("the_process_pool_refuses_shared_state_anywhere_in_the_type");
    let pool = ProcessPoolExecutor::new(1);
    let total = Arc::new(Mutex::new(0u64));
    for _ in 0..3 {
        // (the verdict is cached only when clean: a refusal stays a refusal)
        assert_eq!(shared_of(pool.try_submit(bump, total.clone())), "Arc");
    }
    assert_eq!(
        shared_of(pool.try_submit(bump_pair, (1, total.clone()))),
        "Arc"
    );
    assert_eq!(shared_of(pool.try_submit(make_counter, 1)), "Arc");
    assert_eq!(
        shared_of(pool.try_submit(
            cell_in_struct,
            Wrapper {
                id: 1,
                inner: Mutex::new(Cell::new(0)),
            }
        )),
        "Mutex"
    );
    assert_eq!(
        shared_of(pool.try_submit(refcell_in_vec, vec![Some(Mutex::new(RefCell::new(0)))])),
        "Mutex"
    );
    assert_eq!(
        shared_of(pool.try_submit(read_lock, RwLock::new(vec![1, 2]))),
        "RwLock"
    );
    assert_eq!(
        shared_of(pool.submit_chunk(bump, vec![total.clone(), total.clone()])),
        "Arc"
    );
    assert_eq!(
        shared_of(pool.try_submit_with_timeout(bump, total.clone(), Duration::from_secs(5))),
        "Arc"
    );
    // `submit` puts the refusal in the future, `map` in its first item.
    assert!(matches!(
        pool.submit(bump, total.clone()).result_timeout(LONG),
        Err(TaskError::Submit(SubmitError::SharedState { .. }))
    ));
    // (`map` ends at the first item it cannot submit.)
    let mapped: Vec<_> = pool.map(bump, vec![total.clone(); 3]).collect();
    assert!(matches!(
        mapped.first(),
        Some(Err(TaskError::Submit(SubmitError::SharedState { .. })))
    ));
    assert!(mapped.iter().all(Result::is_err), "{mapped:?}");
    // Nothing ran, nothing diverged, and the pool still takes plain values.
    assert_eq!(*total.lock().unwrap(), 0);
    assert_eq!(pool.submit(common::double, 21).result_timeout(LONG), Ok(42));
}

fn init_counter(_: (u8, Arc<Mutex<u64>>)) {}

#[test]
fn an_initializer_argument_with_shared_state_fails_the_build() {
    let _w = watchdog("an_initializer_argument_with_shared_state_fails_the_build");
    let built = ProcessPoolExecutor::builder()
        .max_workers(1)
        .initializer_with(init_counter, (0, Arc::new(Mutex::new(0))))
        .build();
    match built {
        Err(BuildError::Initializer(SubmitError::SharedState { shared, .. })) => {
            assert_eq!(&*shared, "Arc")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn threads_share_an_arc_argument_instead_of_copying_it() {
    let _w = watchdog("threads_share_an_arc_argument_instead_of_copying_it");
    // On threads the `Arc` is moved, still shared: no copy, nothing refused.
    let pool = ThreadPoolExecutor::new(2);
    let total = Arc::new(Mutex::new(0u64));
    let futs: Vec<_> = (0..10).map(|_| pool.submit(bump, total.clone())).collect();
    for f in futs {
        f.result_timeout(LONG).unwrap();
    }
    assert_eq!(*total.lock().unwrap(), 10);
    let counter = pool.submit(make_counter, 5).result_timeout(LONG).unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), 5);
}
