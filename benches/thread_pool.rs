//! Thread pool benchmarks, each beside its rayon anchor in the same run.
//!
//! `cargo bench --bench thread_pool` (criterion reports medians and confidence intervals;
//! compare the ratios within one run, not absolute times across machines).
//!
//! * `submit_1m`: submit 1,000,000 trivial tasks, then take every result. Anchors: rayon
//!   `spawn` + one shared channel, rayon `scope`, rayon `spawn` with a channel per task, and
//!   the `threadpool` crate's `execute` + one shared channel; and, as a floor, the same
//!   number of task-sized allocations kept, read and freed on one thread.
//! * `round_trip`: one task, submitted and waited for, warm and after 1 ms idle. Anchors:
//!   rayon `install`, rayon `spawn` + channel, `threadpool` `execute` + channel. Our pool is measured with and without
//!   caller-runs (`caller_runs(false)` shows the raw wake-up path).
//! * `map_1m_trivial`: `map` and `map_indexed` over 1,000,000 trivial items vs rayon
//!   `par_iter` (given the function itself, which it inlines, and given the same `fn` pointer
//!   as ours), and two plain loops on one thread: collecting the values, and calling the
//!   `fn` pointer and collecting `Ok` values into a `Result<Vec<_>, _>` as a consumer of
//!   `map` does (the floor of any iterator that yields a `Result` per item). `map` and a
//!   `for` loop over the items also run under `.progress_with` a hidden bar: the difference
//!   is what the progress wrapper costs per item (the loops in the calling thread's CPU
//!   time; each includes one start and stop of the bar's ticker thread).
//! * `map_10k_9us`: `map` and `map_indexed` over 10,000 items of ~9 µs vs rayon `par_iter`
//!   and the ideal two-way split (two threads, half each).

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use concurrent_futures::indicatif::ProgressBar;
use concurrent_futures::{Executor, ProgressExt, ThreadPoolExecutor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

const WORKERS: usize = 2;

fn ours() -> ThreadPoolExecutor {
    ThreadPoolExecutor::new(WORKERS)
}

fn ours_no_caller_runs() -> ThreadPoolExecutor {
    ThreadPoolExecutor::builder()
        .max_workers(WORKERS)
        .caller_runs(false)
        .build()
        .unwrap()
}

fn rayon_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .unwrap()
}

fn trivial(x: u64) -> u64 {
    x ^ 0x5a
}

fn submit_1m(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let mut g = c.benchmark_group("submit_1m");
    g.sample_size(10).throughput(Throughput::Elements(N));
    let pool = ours();
    g.bench_function("ours_spawn", |b| {
        b.iter(|| {
            let futs: Vec<_> = (0..N).map(|i| pool.spawn(move || i ^ 0x5a)).collect();
            let mut s = 0u64;
            for f in futs {
                s = s.wrapping_add(f.into_result().unwrap());
            }
            black_box(s)
        })
    });
    g.bench_function("ours_submit_fn", |b| {
        b.iter(|| {
            let futs: Vec<_> = (0..N).map(|i| pool.submit(trivial, i)).collect();
            let mut s = 0u64;
            for f in futs {
                s = s.wrapping_add(f.into_result().unwrap());
            }
            black_box(s)
        })
    });
    // The floor of one future per task, with no thread at all: allocate 1,000,000 shared
    // cells the size of a task's (state, listeners, value, closure), keep them all, then read
    // and free each one, as `submit` + `result` do with the pool's allocations.
    g.bench_function("floor_one_cell_per_task_no_threads", |b| {
        b.iter(|| {
            let cells: Vec<std::sync::Arc<[u64; 12]>> = (0..N)
                .map(|i| std::sync::Arc::new([i ^ 0x5a; 12]))
                .collect();
            let mut s = 0u64;
            for c in cells {
                s = s.wrapping_add(c[0]);
            }
            black_box(s)
        })
    });
    let rp = rayon_pool();
    g.bench_function("rayon_spawn_shared_channel", |b| {
        b.iter(|| {
            let (tx, rx) = mpsc::channel();
            for i in 0..N {
                let tx = tx.clone();
                rp.spawn(move || tx.send(i ^ 0x5a).unwrap());
            }
            drop(tx);
            black_box(rx.iter().fold(0u64, u64::wrapping_add))
        })
    });
    g.bench_function("rayon_scope", |b| {
        b.iter(|| {
            rp.scope(|s| {
                for i in 0..N {
                    s.spawn(move |_| {
                        black_box(i ^ 0x5a);
                    });
                }
            })
        })
    });
    // The `threadpool` crate: a shared job queue, no stealing; results through a channel.
    let tp = threadpool::ThreadPool::new(WORKERS);
    g.bench_function("threadpool_execute_shared_channel", |b| {
        b.iter(|| {
            let (tx, rx) = mpsc::channel();
            for i in 0..N {
                let tx = tx.clone();
                tp.execute(move || tx.send(i ^ 0x5a).unwrap());
            }
            drop(tx);
            black_box(rx.iter().fold(0u64, u64::wrapping_add))
        })
    });
    g.bench_function("rayon_spawn_channel_per_task", |b| {
        b.iter(|| {
            let rxs: Vec<_> = (0..N)
                .map(|i| {
                    let (tx, rx) = mpsc::sync_channel(1);
                    rp.spawn(move || tx.send(i ^ 0x5a).unwrap());
                    rx
                })
                .collect();
            black_box(
                rxs.into_iter()
                    .fold(0u64, |a, rx| a.wrapping_add(rx.recv().unwrap())),
            )
        })
    });
    g.finish();
}

/// Times `op` after sleeping `idle` before each call (the sleep is not timed).
fn timed_after_idle(iters: u64, idle: Duration, mut op: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if !idle.is_zero() {
            std::thread::sleep(idle);
        }
        let t = Instant::now();
        op();
        total += t.elapsed();
    }
    total
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip");
    g.sample_size(50).measurement_time(Duration::from_secs(4));
    let pool = ours();
    let plain = ours_no_caller_runs();
    let rp = rayon_pool();
    let tp = threadpool::ThreadPool::new(WORKERS);
    for (label, idle) in [
        ("warm", Duration::ZERO),
        ("after_1ms_idle", Duration::from_millis(1)),
    ] {
        g.bench_function(BenchmarkId::new("ours", label), |b| {
            b.iter_custom(|n| {
                timed_after_idle(n, idle, || {
                    black_box(pool.submit(trivial, 1).into_result().unwrap());
                })
            })
        });
        g.bench_function(BenchmarkId::new("ours_caller_runs_off", label), |b| {
            b.iter_custom(|n| {
                timed_after_idle(n, idle, || {
                    black_box(plain.submit(trivial, 1).into_result().unwrap());
                })
            })
        });
        g.bench_function(BenchmarkId::new("rayon_install", label), |b| {
            b.iter_custom(|n| {
                timed_after_idle(n, idle, || {
                    black_box(rp.install(|| trivial(1)));
                })
            })
        });
        g.bench_function(BenchmarkId::new("threadpool_execute_channel", label), |b| {
            b.iter_custom(|n| {
                timed_after_idle(n, idle, || {
                    let (tx, rx) = mpsc::sync_channel(1);
                    tp.execute(move || tx.send(trivial(1)).unwrap());
                    black_box(rx.recv().unwrap());
                })
            })
        });
        g.bench_function(BenchmarkId::new("rayon_spawn_channel", label), |b| {
            b.iter_custom(|n| {
                timed_after_idle(n, idle, || {
                    let (tx, rx) = mpsc::sync_channel(1);
                    rp.spawn(move || tx.send(trivial(1)).unwrap());
                    black_box(rx.recv().unwrap());
                })
            })
        });
    }
    g.finish();
}

fn map_1m_trivial(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let mut g = c.benchmark_group("map_1m_trivial");
    g.sample_size(20).throughput(Throughput::Elements(N));
    let pool = ours();
    g.bench_function("ours_map", |b| {
        b.iter(|| {
            let v: Vec<u64> = pool.map(trivial, 0..N).collect::<Result<_, _>>().unwrap();
            black_box(v)
        })
    });
    // The same `map` under `.progress_with` a hidden bar: the wrapper's cost per item.
    g.bench_function("ours_map_progress_hidden", |b| {
        b.iter(|| {
            let v: Vec<u64> = pool
                .map(trivial, 0..N)
                .progress_with(ProgressBar::hidden())
                .collect::<Result<_, _>>()
                .unwrap();
            black_box(v)
        })
    });
    // Consumed through `fold` (as `sum`, `count`, `for_each` do), with and without the bar.
    g.bench_function("ours_map_fold", |b| {
        b.iter(|| {
            let last = pool.map(trivial, 0..N).fold(0, |_, r| r.unwrap());
            black_box(last)
        })
    });
    g.bench_function("ours_map_fold_progress_hidden", |b| {
        b.iter(|| {
            let last = pool
                .map(trivial, 0..N)
                .progress_with(ProgressBar::hidden())
                .fold(0, |_, r| r.unwrap());
            black_box(last)
        })
    });
    g.bench_function("ours_map_indexed_into_vec", |b| {
        b.iter(|| {
            let v: Vec<u64> = pool.map_indexed(trivial, 0..N).into_vec().unwrap();
            black_box(v)
        })
    });
    g.bench_function("ours_map_indexed_collect", |b| {
        b.iter(|| {
            let v: Vec<u64> = pool
                .map_indexed(trivial, 0..N)
                .collect::<Result<_, _>>()
                .unwrap();
            black_box(v)
        })
    });
    let rp = rayon_pool();
    g.bench_function("rayon_par_iter", |b| {
        b.iter(|| {
            let v: Vec<u64> = rp.install(|| (0..N).into_par_iter().map(trivial).collect());
            black_box(v)
        })
    });
    // `map` takes a `fn` pointer (a process pool sends it to another process), which no
    // compiler inlines: rayon given the same pointer, and one thread calling it in a loop.
    let f: fn(u64) -> u64 = black_box(trivial);
    g.bench_function("rayon_par_iter_fn_ptr", |b| {
        b.iter(|| {
            let v: Vec<u64> = rp.install(|| (0..N).into_par_iter().map(f).collect());
            black_box(v)
        })
    });
    // The floor of any `Iterator` of `Result`s, pool or not: one thread taking each item
    // through `next` into a `Result<Vec<_>, _>`.
    g.bench_function("plain_loop_results", |b| {
        b.iter(|| {
            let v: Vec<u64> = (0..N)
                .map(|x| Ok::<u64, concurrent_futures::TaskError>(f(x)))
                .collect::<Result<_, _>>()
                .unwrap();
            black_box(v)
        })
    });
    g.bench_function("plain_loop", |b| {
        b.iter(|| {
            let v: Vec<u64> = (0..N).map(trivial).collect();
            black_box(v)
        })
    });
    // The wrapper alone, item by item through `next` (as a `for` loop takes them), timed in
    // CPU time of the calling thread: one thread's loop, without the time a busy machine's
    // other processes take from it (the ticker's own thread is not counted; it wakes 20
    // times a second).
    g.bench_function("next_loop", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                for x in (0..N).map(trivial) {
                    black_box(x);
                }
            }
            thread_cpu() - start
        })
    });
    g.bench_function("next_loop_progress_hidden", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                for x in (0..N).map(trivial).progress_with(ProgressBar::hidden()) {
                    black_box(x);
                }
            }
            thread_cpu() - start
        })
    });
    g.finish();
}

/// CPU time of the calling thread so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on every
    // platform these benchmarks run on (POSIX), and on failure `ts` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Spins for `iters` rounds of cheap arithmetic (calibrated to ~9 µs below).
fn work(iters: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..iters {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

fn calibrate_9us() -> u64 {
    let mut iters = 1000;
    loop {
        let t = Instant::now();
        for _ in 0..100 {
            black_box(work(iters));
        }
        let per = t.elapsed() / 100;
        if per >= Duration::from_micros(9) {
            return iters;
        }
        iters = iters * 9_000 / (per.as_nanos().max(1) as u64) + 1;
    }
}

fn map_10k_9us(c: &mut Criterion) {
    const N: usize = 10_000;
    let iters = calibrate_9us();
    let items = vec![iters; N];
    let mut g = c.benchmark_group("map_10k_9us");
    g.sample_size(20).throughput(Throughput::Elements(N as u64));
    let pool = ours();
    g.bench_function("ours_map", |b| {
        b.iter(|| {
            let v: Vec<u64> = pool
                .map(work, items.iter().copied())
                .collect::<Result<_, _>>()
                .unwrap();
            black_box(v)
        })
    });
    g.bench_function("ours_map_indexed_into_vec", |b| {
        b.iter(|| {
            let v: Vec<u64> = pool.map_indexed(work, items.clone()).into_vec().unwrap();
            black_box(v)
        })
    });
    let rp = rayon_pool();
    g.bench_function("rayon_par_iter", |b| {
        b.iter(|| {
            let v: Vec<u64> = rp.install(|| items.par_iter().map(|&i| work(i)).collect());
            black_box(v)
        })
    });
    g.bench_function("ideal_two_way_split", |b| {
        b.iter(|| {
            let (a, z) = items.split_at(N / 2);
            std::thread::scope(|s| {
                let h = s.spawn(|| a.iter().map(|&i| work(i)).collect::<Vec<_>>());
                let mine: Vec<u64> = z.iter().map(|&i| work(i)).collect();
                black_box((h.join().unwrap(), mine))
            })
        })
    });
    g.finish();
}

criterion_group!(benches, submit_1m, round_trip, map_1m_trivial, map_10k_9us);
criterion_main!(benches);
