//! One program, any backend, chosen on the command line:
//!
//! ```sh
//! cargo run --example pool_any_backend -- threads:2
//! cargo run --example pool_any_backend -- processes:2
//! CF_EXECUTOR=processes cargo run --example pool_any_backend
//! cargo run --features mpi --example pool_any_backend -- mpi:2   # workers spawned by MPI
//! ```
//!
//! The work is written once, generic over `Executor`; `AnyExecutor` is parsed from the
//! first argument (or from `CF_EXECUTOR` when there is none).

use concurrent_futures::{AnyExecutor, Executor, SpecError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Range {
    start: u64,
    end: u64,
}

/// Counts the primes in a range (deliberately naive: CPU-bound work).
fn count_primes(r: Range) -> u64 {
    let is_prime = |n: u64| {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    };
    (r.start..r.end).filter(|&n| is_prime(n)).count() as u64
}

fn primes_below<E: Executor>(pool: &E, limit: u64) -> u64 {
    let step = 10_000;
    let ranges = (0..limit).step_by(step as usize).map(|start| Range {
        start,
        end: (start + step).min(limit),
    });
    pool.map(count_primes, ranges).map(Result::unwrap).sum()
}

fn main() {
    let pool = match std::env::args().nth(1) {
        Some(spec) => spec.parse::<AnyExecutor>(),
        None => AnyExecutor::from_default_env(),
    };
    let pool = pool.unwrap_or_else(|e: SpecError| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let n = primes_below(&pool, 1_000_000);
    let (backend, workers) = (pool.backend(), pool.max_workers());
    println!("{n} primes below 1,000,000 on {backend} ({workers} workers)");
    assert_eq!(n, 78_498);
}
