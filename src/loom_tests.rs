//! Loom models of the two concurrency protocols the crate rests on: the future's state
//! machine and the workers' sleep/wake protocol. They run the real code (the `sync` shim
//! swaps in loom's primitives) over every interleaving loom explores.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::SeqCst;

use loom::sync::atomic::AtomicUsize;
use loom::thread;

use crate::future::Future;
use std::sync::Arc;

use crate::sync::Mutex;
use crate::thread::sleep::Sleep;
use crate::{State, TaskError};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// Cancel racing the runner: exactly one wins, and a cancelled task never runs.
#[test]
fn loom_cancel_vs_run() {
    model(|| {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let (fut, cell) = Future::with_task(
            move || {
                r.fetch_add(1, SeqCst);
                7u32
            },
            false,
        );
        let runner = thread::spawn(move || Future::from_cell(cell).run_here());
        let cancelled = fut.cancel();
        runner.join().unwrap();
        match fut.state() {
            State::Cancelled => {
                assert!(cancelled);
                assert_eq!(ran.load(SeqCst), 0);
                assert_eq!(fut.result(), Err(TaskError::Cancelled));
            }
            State::Finished => {
                assert!(!cancelled);
                assert_eq!(ran.load(SeqCst), 1);
                assert_eq!(fut.result(), Ok(7));
            }
            s => panic!("unexpected state {s}"),
        }
    });
}

/// A callback added while the future completes runs exactly once.
#[test]
fn loom_callback_vs_completion() {
    model(|| {
        let fut: Future<u32> = Future::new();
        let setter = fut.handle();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let t = thread::spawn(move || setter.set_result(1).unwrap());
        fut.add_done_callback(move |f| {
            assert_eq!(f.result(), Ok(1));
            c.fetch_add(1, SeqCst);
        });
        t.join().unwrap();
        assert_eq!(calls.load(SeqCst), 1);
    });
}

/// A thread blocked in `result()` is always woken by completion.
#[test]
fn loom_blocking_wait_vs_completion() {
    model(|| {
        let fut: Future<u32> = Future::new();
        let setter = fut.handle();
        let t = thread::spawn(move || setter.set_result(5).unwrap());
        assert_eq!(fut.result(), Ok(5));
        t.join().unwrap();
    });
}

/// `into_result` waits for callbacks that borrow the value before moving it out.
#[test]
fn loom_take_waits_for_callbacks() {
    model(|| {
        let fut: Future<String> = Future::new();
        fut.add_done_callback(|f| assert_eq!(f.result_ref().unwrap(), "v"));
        let setter = fut.handle();
        let t = thread::spawn(move || setter.set_result("v".to_owned()).unwrap());
        assert_eq!(fut.into_result().unwrap(), "v");
        t.join().unwrap();
    });
}

/// A remote pool's reader completes with `finish_deferring` and hands the callbacks to
/// another thread: a callback added meanwhile runs exactly once (at once if the future was
/// already done, else in the job handed over), and `into_result` waits for that job.
#[test]
fn loom_deferred_callbacks_vs_registration() {
    model(|| {
        let fut: Future<u32> = Future::new();
        assert!(fut.core().claim());
        let setter = fut.handle();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let t = thread::spawn(move || {
            if let Some(job) = setter.finish_claimed_deferring(Ok(1)) {
                thread::spawn(job).join().unwrap();
            }
        });
        fut.add_done_callback(move |f| {
            assert_eq!(f.result(), Ok(1));
            c.fetch_add(1, SeqCst);
        });
        assert_eq!(fut.into_result(), Ok(1));
        assert_eq!(calls.load(SeqCst), 1);
        t.join().unwrap();
    });
}

/// Two setters race: exactly one succeeds, the value is the winner's.
#[test]
fn loom_concurrent_setters() {
    model(|| {
        let fut: Future<u32> = Future::new();
        let other = fut.handle();
        let t = thread::spawn(move || other.set_result(1).is_ok());
        let mine = fut.set_result(2).is_ok();
        let theirs = t.join().unwrap();
        assert!(mine ^ theirs);
        assert_eq!(fut.result(), Ok(if mine { 2 } else { 1 }));
    });
}

/// A toy pool over the real `Sleep`: a mutex-protected queue stands in for the deques.
struct ToyPool {
    queue: Mutex<VecDeque<u32>>,
    sleep: Sleep,
    done: AtomicUsize,
}

impl ToyPool {
    fn pop(&self) -> Option<u32> {
        crate::sync::lock(&self.queue).pop_front()
    }

    fn has_work(&self) -> bool {
        !crate::sync::lock(&self.queue).is_empty()
    }

    fn submit(&self, job: u32) {
        crate::sync::lock(&self.queue).push_back(job);
        self.sleep.notify_one();
    }

    /// A worker that exits after the pool has processed `total` jobs.
    fn worker(&self, index: usize, total: usize) {
        let mut searching = false;
        while self.done.load(SeqCst) < total {
            if self.pop().is_some() {
                self.sleep.found_work(&mut searching, || self.has_work());
                if self.done.fetch_add(1, SeqCst) + 1 == total {
                    // Last job: wake the others so they can see there is nothing left.
                    self.sleep.notify_all();
                }
                continue;
            }
            self.sleep.start_searching(&mut searching);
            self.sleep.sleep(index, &mut searching, || {
                self.has_work() || self.done.load(SeqCst) >= total
            });
        }
    }
}

fn toy(workers: usize) -> Arc<ToyPool> {
    Arc::new(ToyPool {
        queue: Mutex::new(VecDeque::new()),
        sleep: Sleep::new(workers),
        done: AtomicUsize::new(0),
    })
}

/// One worker, one job pushed while it goes to sleep: the job is always run (a lost
/// wake-up would leave the worker parked forever, which loom reports as a deadlock).
#[test]
fn loom_sleep_no_lost_wakeup() {
    model(|| {
        let pool = toy(1);
        let p = pool.clone();
        let w = thread::spawn(move || p.worker(0, 1));
        pool.submit(1);
        w.join().unwrap();
        assert_eq!(pool.done.load(SeqCst), 1);
    });
}

/// Two workers, two jobs: both run, whatever the interleaving of searching and sleeping.
#[test]
fn loom_sleep_two_workers_two_jobs() {
    model(|| {
        let pool = toy(2);
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let p = pool.clone();
                thread::spawn(move || p.worker(i, 2))
            })
            .collect();
        pool.submit(1);
        pool.submit(2);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(pool.done.load(SeqCst), 2);
        assert_eq!(pool.sleep.sleepers(), 0);
    });
}

fn plus_one(x: u32) -> u32 {
    x + 1
}

/// A consumer waiting for a piece a worker runs is always woken (it sleeps on the block's
/// condvar, the runner fences and checks `waiting`), and every piece runs once, whether the
/// consumer or the worker claims it; with workers claiming at the front or at the back.
#[test]
fn loom_block_piece_wait_vs_run() {
    use crate::thread::map_block::{MapBlock, Ready};
    for from_back in [false, true] {
        model(move || {
            let block = Arc::new(MapBlock::for_model(plus_one, vec![1u32, 2], 1, from_back));
            let b = block.clone();
            let worker = thread::spawn(move || b.run_as_worker());
            // Piece 0: the consumer may claim it; piece 1: it only waits.
            assert!(matches!(block.wait_piece(0, true, None), Ready::Done));
            assert!(matches!(block.wait_piece(1, false, None), Ready::Done));
            worker.join().unwrap();
            // SAFETY: both pieces are done (seen above), so both slots hold results; `u32`
            // is `Copy`, so reading them moves nothing out.
            let (r0, r1) = unsafe { (*block.result_ptr(0), *block.result_ptr(1)) };
            assert_eq!((r0, r1), (2, 3));
        });
    }
}

/// Closing a block wakes a consumer waiting for a piece nobody runs, and the piece reports
/// the reason; closing racing a runner leaves the piece either done or closed, never both.
#[test]
fn loom_block_close_vs_wait_and_run() {
    use crate::thread::map_block::{MapBlock, Ready};
    model(|| {
        let block = Arc::new(MapBlock::for_model(plus_one, vec![1u32], 1, true));
        let closer = {
            let b = block.clone();
            thread::spawn(move || b.close(TaskError::Cancelled))
        };
        let runner = {
            let b = block.clone();
            thread::spawn(move || b.run_as_worker())
        };
        match block.wait_piece(0, false, None) {
            Ready::Done => {
                // SAFETY: the piece is done: its slot holds the result (a `Copy` value).
                assert_eq!(unsafe { *block.result_ptr(0) }, 2);
            }
            Ready::Closed(e) => assert_eq!(e, TaskError::Cancelled),
            Ready::TimedOut => panic!("no deadline was set"),
        }
        closer.join().unwrap();
        runner.join().unwrap();
    });
}
