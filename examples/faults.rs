//! What a process pool does when its workers fail: each kind of fault in a burst of
//! faulty tasks mixed with ordinary ones, submitted at once; every ordinary task's side
//! effect is counted. Prints the table of the README's fault section.
//!
//! ```sh
//! cargo run --release --example faults            # 20 faults among 400 tasks per kind
//! cargo run --release --example faults -- 50 1000 # 50 faults among 1,000 tasks per kind
//! ```

#[path = "../tests/common/faults.rs"]
mod faults;
#[path = "../tests/common/procs.rs"]
mod procs;

use faults::{Fault, burst};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let n_faults = args.next().and_then(Result::ok).unwrap_or(20);
    let total = args
        .next()
        .and_then(Result::ok)
        .unwrap_or(400)
        .max(n_faults);
    let workers = 2;
    println!(
        "{n_faults} faulty tasks among {total} submitted at once, {workers} workers, per kind of fault\n"
    );
    println!(
        "| fault | tried | right error | ordinary tasks lost | ran twice | never ran | processes left | fds left | memfds left |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut clean = true;
    for fault in Fault::ALL {
        let r = burst(fault, n_faults, total - n_faults, workers);
        clean &= r.right_error == r.faults
            && r.ordinary_lost == 0
            && r.ran_twice == 0
            && r.never_ran == 0
            && r.leaked_processes == 0
            && r.leaked_fds <= 0
            && r.leaked_memfds <= 0;
        println!(
            "| {} | {} | {} | {} of {} | {} | {} | {} | {} | {} |",
            describe(fault),
            r.faults,
            r.right_error,
            r.ordinary_lost,
            r.ordinary,
            r.ran_twice,
            r.never_ran,
            r.leaked_processes,
            r.leaked_fds.max(0),
            r.leaked_memfds.max(0),
        );
    }
    if !clean {
        eprintln!("\nsome fault cost more than its own task");
        std::process::exit(1);
    }
}

fn describe(fault: Fault) -> &'static str {
    match fault {
        Fault::Kill => "SIGKILL",
        Fault::Abort => "`abort()`",
        Fault::Segfault => "SIGSEGV",
        Fault::Exit => "`process::exit(7)`",
        Fault::StackOverflow => "stack overflow",
        Fault::Hang => "hangs past `task_timeout`",
        Fault::Forge => "forges results for others' tasks",
        Fault::HugeMessage => "sends a 300 KiB message",
        Fault::BadLength => "sends a record longer than its message",
        Fault::Truncate => "truncates every shared memory file",
        Fault::ForgeLog => "forges its result log, then dies",
    }
}
