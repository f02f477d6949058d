//! `map` on a process pool holds a bounded number of bytes of results ahead of its consumer
//! (`MapOptions::buffer_bytes`), not only a bounded number of chunks. Each measurement runs
//! in a child process of its own (this binary re-run), whose peak resident memory (VmHWM)
//! is the figure.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use concurrent_futures::{Bytes, Executor, MapOptions, ProcessPoolExecutor};

const HELPER: &str = "CF_MAP_MEMORY_HELPER";
const MIB: usize = 1 << 20;
const RESULTS: u64 = 2_000;

/// 1 MiB as one byte string (`Bytes`: not a sequence of a million `u8`s for serde).
fn big(tag: u64) -> Bytes {
    Bytes(vec![tag as u8; MIB])
}

/// Peak resident memory of this process, in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// Runs the helper with `CF_MAP_MEMORY_HELPER=<bound>` and returns its peak RSS. Bounded by
/// `HELPER_LIMIT` (a loaded machine runs it slowly: the shared watchdog's minute is short).
fn peak_with(bound: &str) -> usize {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["map_memory_helper", "--exact", "--ignored", "--nocapture"])
        .env(HELPER, bound)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(HELPER_LIMIT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: `kill` sends a signal; the child is not reaped yet (its waiter holds it).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("the helper did not finish within {HELPER_LIMIT:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("PEAK "))
        .unwrap_or_else(|| {
            panic!(
                "helper failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(out.status.success());
    line[5..].trim().parse().unwrap()
}

const HELPER_LIMIT: Duration = Duration::from_secs(300);

/// 2,000 results of 1 MiB through `map`: every one correct and in order, and the parent's
/// peak memory stays far below the plateau of a 64-chunk window of them (1.6 to 1.8 GB with
/// 10,000 results before the byte bound); a smaller explicit bound gives a smaller peak.
#[test]
fn map_holds_a_bounded_number_of_bytes_ahead() {
    let default = peak_with("default");
    let small = peak_with(&(16 * MIB).to_string());
    eprintln!(
        "peak RSS: default bound {} MiB, 16 MiB bound {} MiB",
        default / MIB,
        small / MIB
    );
    assert!(
        default < 600 * MIB,
        "peak {} MiB with the default bound",
        default / MIB
    );
    assert!(
        small < default && small < 200 * MIB,
        "peak {} MiB with a 16 MiB bound (default: {} MiB)",
        small / MIB,
        default / MIB
    );
}

#[test]
#[ignore = "helper process for map_holds_a_bounded_number_of_bytes_ahead"]
fn map_memory_helper() {
    let Some(bound) = std::env::var_os(HELPER) else {
        return;
    };
    let opts = match bound.to_str().unwrap() {
        "default" => MapOptions::new(),
        n => MapOptions::new().buffer_bytes(n.parse().unwrap()),
    };
    let pool = ProcessPoolExecutor::new(2);
    let mut next = 0u64;
    for r in pool.map_with(big, 0..RESULTS, opts) {
        let v = r.expect("a result");
        // (A few bytes checked: a debug build reads a MiB slowly.)
        let want = next as u8;
        assert!(v.len() == MIB && [0, MIB / 2, MIB - 1].iter().all(|&i| v[i] == want));
        next += 1;
    }
    assert_eq!(next, RESULTS);
    pool.shutdown(true);
    println!("PEAK {}", peak_rss());
}
