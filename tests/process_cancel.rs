//! `Future::cancel_running` on the process pool: a running task is stopped by killing its
//! worker (which the pool replaces), a task dispatched to a worker but not started there is
//! answered `Cancelled` without running, and nothing else is lost. Alone, in bursts of
//! hundreds with every task's side effects counted in a journal, racing the task's own end,
//! its worker's own death, `terminate`, another `cancel_running`; under CPU load.
//!
//! Tasks that must be cancelled wait on a gate, opened once their futures are done (then
//! none may finish any more) or never: if one were not stopped, its pool could not finish
//! and the test would fail on a timeout. (Each gate is declared after its pool, so that a
//! failing test opens it as it unwinds.)
//! The tests of this file take turns (one lock): they count this process's children.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::Instant;

use common::faults::CpuLoad;
use common::procs;
use common::{Gate, LONG, eventually, watchdog};
use concurrent_futures::{Executor, Future, ProcessPoolExecutor, State, TaskError};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

// ===== the journal of side effects =====

/// Appends one line (one `write` with `O_APPEND`: atomic between processes).
fn append(path: &str, line: String) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open journal");
    f.write_all(line.as_bytes()).expect("write journal");
}

/// A task: records its start (with its worker's pid), waits on the gate if it has one,
/// records its end, returns `2 * id`.
fn step((journal, id, gate): (String, u64, Option<String>)) -> u64 {
    append(&journal, format!("s {id} {}\n", std::process::id()));
    if let Some(gate) = gate {
        common::hold((gate, 0));
    }
    append(&journal, format!("f {id}\n"));
    id * 2
}

/// Records its start, then kills its own worker.
fn die((journal, id): (String, u64)) -> u64 {
    append(&journal, format!("s {id} {}\n", std::process::id()));
    // SAFETY: sending a signal to this very process is always allowed.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("killed")
}

/// What the tasks of one test recorded.
struct Journal {
    path: String,
}

#[derive(Default)]
struct Entries {
    /// Task id → pids of the workers that started it.
    starts: HashMap<u64, Vec<u32>>,
    /// Task id → times it finished.
    finishes: HashMap<u64, usize>,
}

impl Entries {
    fn started(&self, id: u64) -> usize {
        self.starts.get(&id).map_or(0, Vec::len)
    }
    fn finished(&self, id: u64) -> usize {
        self.finishes.get(&id).copied().unwrap_or(0)
    }
    fn pids(&self) -> Vec<u32> {
        self.starts.values().flatten().copied().collect()
    }

    /// Asserts that each of `ids` started once and finished once.
    fn ran_once(&self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            assert_eq!(
                (self.started(id), self.finished(id)),
                (1, 1),
                "task {id} ran once"
            );
        }
    }
}

/// Asserts that none of `pids`, nor any worker the journal saw, is left (alive or zombie).
fn nothing_left(pids: &mut Vec<u32>, e: &Entries) {
    pids.extend(e.pids());
    pids.sort_unstable();
    pids.dedup();
    assert_no_process_left(pids);
}

impl Journal {
    fn new(tag: &str) -> Journal {
        let path = common::marker(tag).to_string_lossy().into_owned();
        std::fs::write(&path, "").expect("create journal");
        Journal { path }
    }

    fn args(&self, id: u64, gate: Option<&Gate>) -> (String, u64, Option<String>) {
        (self.path.clone(), id, gate.map(Gate::path))
    }

    fn read(&self) -> Entries {
        let text = std::fs::read_to_string(&self.path).expect("read journal");
        let mut e = Entries::default();
        // (A line being appended now may be read in part: only whole lines count.)
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let mut words = line.split_whitespace();
            match (words.next(), words.next().and_then(|w| w.parse().ok())) {
                (Some("s"), Some(id)) => {
                    let pid = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    e.starts.entry(id).or_default().push(pid);
                }
                (Some("f"), Some(id)) => *e.finishes.entry(id).or_default() += 1,
                _ => panic!("a malformed journal line: {line:?}"),
            }
        }
        e
    }

    /// Waits until task `id` has started; the pid of its worker.
    fn wait_started(&self, id: u64) -> u32 {
        eventually("the task starts", || self.read().started(id) > 0);
        self.read().starts[&id][0]
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// No worker of the pool is left: every pid that ran a task, and every pid the pool
/// reported, is gone (exited and reaped), and this process has no child left.
fn assert_no_process_left(pids: &[u32]) {
    for &pid in pids {
        assert!(procs::gone(pid), "worker {pid} is left (zombie or alive)");
    }
    assert!(
        procs::children().iter().all(|p| !pids.contains(p)),
        "a worker is still a child of this process"
    );
}

fn pool(n: usize) -> ProcessPoolExecutor {
    ProcessPoolExecutor::new(n)
}

// ===== alone =====

#[test]
fn a_running_task_is_stopped_by_replacing_its_worker() {
    let _t = turn();
    let _w = watchdog("a_running_task_is_stopped_by_replacing_its_worker");
    let journal = Journal::new("cancel-alone");
    let pool = pool(1);
    let gate = Gate::closed();
    let first_pids = pool.pids();
    let stuck = pool.submit(step, journal.args(1, Some(&gate)));
    // Queued behind it on the same worker (one batch each: the worker holds two).
    let behind: Vec<_> = (2..7)
        .map(|i| pool.submit(step, journal.args(i, None)))
        .collect();
    let pid = journal.wait_started(1);
    assert_eq!(first_pids, vec![pid]);

    assert!(!stuck.cancel(), "Python's cancel() refuses a running task");
    assert!(stuck.cancel_running());
    assert_eq!(stuck.result_timeout(LONG), Err(TaskError::Cancelled));
    assert_eq!(stuck.state(), State::Finished, "it had started");
    for (f, i) in behind.iter().zip(2..) {
        assert_eq!(f.result_timeout(LONG), Ok(2 * i), "task {i}, queued behind");
    }
    assert!(!stuck.cancel_running(), "finished");
    eventually("the killed worker is reaped", || procs::gone(pid));
    let now = pool.pids();
    assert_eq!(now.len(), 1);
    assert_ne!(now, vec![pid], "replaced");

    let e = journal.read();
    assert_eq!((e.started(1), e.finished(1)), (1, 0), "the cancelled task");
    e.ran_once(2..7);
    eventually("the replacement is counted", || {
        pool.stats().worker_restarts == 1
    });
    pool.shutdown(true);
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.done, stats.failed, stats.cancelled),
        (6, 5, 0, 1)
    );
    assert_eq!((stats.worker_deaths, stats.worker_restarts), (1, 1));
    assert!(stats.settled(), "{stats:?}");
    let mut all = e.pids();
    all.extend(now);
    assert_no_process_left(&all);
}

/// A worker that cannot answer (stopped with SIGSTOP) is killed by the pool once the grace
/// for an answer is over: the task is cancelled, the tasks queued behind it run once on the
/// replacement, and no process is left.
#[test]
fn a_worker_that_cannot_answer_is_killed_after_a_grace() {
    let _t = turn();
    let _w = watchdog("a_worker_that_cannot_answer_is_killed_after_a_grace");
    let journal = Journal::new("cancel-stopped");
    let pool = pool(1);
    let gate = Gate::closed();
    let stuck = pool.submit(step, journal.args(1, Some(&gate)));
    let behind: Vec<_> = (2..5)
        .map(|i| pool.submit(step, journal.args(i, None)))
        .collect();
    let pid = journal.wait_started(1);
    // SAFETY: plain kill(2) of a worker process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    assert!(stuck.cancel_running());
    assert_eq!(stuck.result_timeout(LONG), Err(TaskError::Cancelled));
    for (f, i) in behind.iter().zip(2..) {
        assert_eq!(f.result_timeout(LONG), Ok(2 * i), "task {i}, queued behind");
    }
    eventually("the stopped worker is reaped", || procs::gone(pid));
    let e = journal.read();
    assert_eq!((e.started(1), e.finished(1)), (1, 0), "the cancelled task");
    e.ran_once(2..5);
    let now = pool.pids();
    assert_ne!(now, vec![pid], "replaced");
    pool.shutdown(true);
    let stats = pool.stats();
    assert_eq!(
        (stats.done, stats.cancelled, stats.worker_deaths),
        (3, 1, 1)
    );
    assert!(stats.settled(), "{stats:?}");
    let mut all = e.pids();
    all.extend(now);
    assert_no_process_left(&all);
}

#[test]
fn a_task_sent_but_not_started_never_runs_and_its_worker_stays() {
    let _t = turn();
    let _w = watchdog("a_task_sent_but_not_started_never_runs_and_its_worker_stays");
    let journal = Journal::new("cancel-unstarted");
    let pool = pool(1);
    let mut gate = Gate::closed();
    let blocker = pool.submit(step, journal.args(1, Some(&gate)));
    let pid = journal.wait_started(1);
    // The worker holds two batches: the blocker's and this one, not started behind it.
    let sent = pool.submit(step, journal.args(2, None));
    // No room left: this one stays in this process.
    let queued = pool.submit(step, journal.args(3, None));
    let after = pool.submit(step, journal.args(4, None));
    assert_eq!(sent.state(), State::Running, "sent to the worker");
    assert_eq!(queued.state(), State::Pending, "still queued here");

    assert!(queued.cancel_running(), "queued: cancelled as by cancel()");
    assert_eq!(queued.state(), State::Cancelled);
    assert!(sent.cancel_running(), "sent, not started");
    assert_eq!(sent.result_timeout(LONG), Err(TaskError::Cancelled));
    gate.open();
    assert_eq!(blocker.result_timeout(LONG), Ok(2));
    assert_eq!(after.result_timeout(LONG), Ok(8));
    assert_eq!(queued.result(), Err(TaskError::Cancelled));
    assert_eq!(pool.pids(), vec![pid], "the worker was not killed");

    let e = journal.read();
    assert_eq!(
        (e.started(2), e.started(3)),
        (0, 0),
        "cancelled before they ran"
    );
    assert_eq!((e.finished(1), e.finished(4)), (1, 1));
    pool.shutdown(true);
    let stats = pool.stats();
    assert_eq!(
        (stats.done, stats.cancelled, stats.worker_deaths),
        (2, 2, 0)
    );
    assert!(stats.settled(), "{stats:?}");
    assert_no_process_left(&[pid]);
}

#[test]
fn a_finished_task_is_not_cancelled() {
    let _t = turn();
    let _w = watchdog("a_finished_task_is_not_cancelled");
    let journal = Journal::new("cancel-finished");
    let pool = pool(1);
    let done = pool.submit(step, journal.args(1, None));
    assert_eq!(done.result_timeout(LONG), Ok(2));
    assert!(!done.cancel_running());
    assert!(!done.cancel());
    assert_eq!(done.result(), Ok(2));
    assert_eq!(pool.stats().worker_deaths, 0);
}

/// A task that finished in its worker, whose result the worker has not sent yet (it sends
/// results once it has nothing left to run, or once a long call has held them back for a
/// millisecond, and the task behind it in the same batch runs on): the request wins, its
/// value is discarded, and the worker, busy with the next task, is left alone.
///
/// Whether the result is still in the worker when the request goes is a race this test
/// cannot hold still (the worker sends it a millisecond into the next call), so it runs
/// rounds until the request has won three times; a round the result wins must give the
/// value, and no round may harm the worker or the tasks around it.
#[test]
fn a_task_finished_but_not_yet_reported_is_cancelled_without_harm() {
    let _t = turn();
    let _w = watchdog("a_task_finished_but_not_yet_reported_is_cancelled_without_harm");
    let journal = Journal::new("cancel-unreported");
    let pool = pool(1);
    let (mut won, mut rounds) = (0u64, 0u64);
    let mut pid = None;
    while won < 3 {
        assert!(
            rounds < 200,
            "the request never found the result in the worker"
        );
        let id = |i: u64| 100 * rounds + i;
        let mut first = Gate::closed();
        let mut gate = Gate::closed();
        let blocker = pool.submit(step, journal.args(id(10), Some(&first)));
        journal.wait_started(id(10));
        let filler = pool.submit(step, journal.args(id(11), None));
        // The worker's window is full: these wait here, and eight pending go out two per
        // batch, so `quick` and `next` travel together.
        let quick = pool.submit(step, journal.args(id(1), None));
        let next = pool.submit(step, journal.args(id(2), Some(&gate)));
        let rest: Vec<_> = (12..18)
            .map(|i| (i, pool.submit(step, journal.args(id(i), None))))
            .collect();
        assert_eq!(quick.state(), State::Pending);
        first.open();
        let worker = journal.wait_started(id(2));
        assert_eq!(
            *pid.get_or_insert(worker),
            worker,
            "the worker was not killed"
        );
        assert_eq!(journal.read().finished(id(1)), 1);
        if quick.state() == State::Running && quick.cancel_running() {
            won += 1;
            assert_eq!(quick.result_timeout(LONG), Err(TaskError::Cancelled));
        } else {
            assert_eq!(quick.result_timeout(LONG), Ok(2 * id(1)));
        }
        gate.open();
        assert_eq!(
            next.result_timeout(LONG),
            Ok(2 * id(2)),
            "the task behind is not harmed"
        );
        for (i, f) in [(10, &blocker), (11, &filler)]
            .into_iter()
            .chain(rest.iter().map(|(i, f)| (*i, f)))
        {
            assert_eq!(f.result_timeout(LONG), Ok(2 * id(i)));
        }
        rounds += 1;
    }
    eprintln!("the request won {won} of {rounds} rounds");
    let pid = pid.unwrap();
    assert_eq!(pool.pids(), vec![pid], "the worker was not killed");
    pool.shutdown(true);
    let stats = pool.stats();
    assert_eq!(
        (stats.done, stats.cancelled, stats.worker_deaths),
        (10 * rounds - won, won, 0)
    );
    assert_no_process_left(&[pid]);
}

/// A `map` chunk is one task: cancelling it stops the whole chunk.
#[test]
fn cancelling_a_chunk_stops_the_whole_chunk() {
    let _t = turn();
    let _w = watchdog("cancelling_a_chunk_stops_the_whole_chunk");
    let journal = Journal::new("cancel-chunk");
    let pool = pool(1);
    let gate = Gate::closed();
    let items = vec![
        journal.args(1, None),
        journal.args(2, Some(&gate)),
        journal.args(3, None),
    ];
    let chunk = pool.submit_chunk(step, items).unwrap();
    journal.wait_started(2);
    assert!(chunk.cancel_running());
    assert!(matches!(
        chunk.result_ref_timeout(LONG),
        Err(TaskError::Cancelled)
    ));
    let e = journal.read();
    assert_eq!((e.finished(1), e.finished(2), e.started(3)), (1, 0, 0));
    assert_eq!(
        pool.submit(step, journal.args(4, None))
            .result_timeout(LONG),
        Ok(8)
    );
    pool.shutdown(true);
    assert_no_process_left(&journal.read().pids());
}

// ===== bursts =====

/// `long` tasks that never end by themselves (cancelled: half at once, whatever their
/// state, half once they are seen running), mixed with `quick` ones that must each run
/// exactly once and return their value.
fn burst(workers: usize, long: u64, quick: u64) {
    let journal = Journal::new("cancel-burst");
    let pool = pool(workers);
    let mut gate = Gate::closed();
    let mut pids = pool.pids();
    let mut longs: Vec<(u64, Future<u64>)> = Vec::new();
    let mut quicks: Vec<(u64, Future<u64>)> = Vec::new();
    let mut cancelled_at_once = 0;
    let per_long = quick / long.max(1);
    let mut id = 0;
    for l in 0..long {
        id += 1;
        let fut = pool.submit(step, journal.args(id, Some(&gate)));
        if l % 2 == 0 {
            assert!(fut.cancel_running(), "a long task {id} cancelled at once");
            cancelled_at_once += 1;
        }
        longs.push((id, fut));
        for _ in 0..per_long {
            id += 1;
            quicks.push((id, pool.submit(step, journal.args(id, None))));
        }
    }
    // The other long tasks are cancelled as they are seen running; each holds its worker
    // until then.
    let mut cancelled_running = 0;
    let mut asked: Vec<bool> = (0..long).map(|l| l % 2 == 0).collect();
    let deadline = Instant::now() + LONG * 3 / 2;
    while !longs.iter().all(|(_, f)| f.done()) {
        assert!(Instant::now() < deadline, "the burst did not end");
        let e = journal.read();
        for ((id, f), asked) in longs.iter().zip(&mut asked) {
            if !*asked && e.started(*id) > 0 {
                assert!(f.cancel_running(), "long task {id}, running");
                *asked = true;
                cancelled_running += 1;
            }
        }
        pids.extend(pool.pids());
        std::thread::yield_now();
    }
    assert_eq!(cancelled_at_once + cancelled_running, long as usize);
    // Every cancelled future is done only once its worker answered (dropped the task, or
    // died): none of them may run on now, even with the gate open.
    gate.open();
    for (id, f) in &quicks {
        assert_eq!(f.result_timeout(LONG), Ok(2 * id), "quick task {id}");
    }
    for (id, f) in &longs {
        assert_eq!(
            f.result_timeout(LONG),
            Err(TaskError::Cancelled),
            "long task {id}"
        );
    }
    let e = journal.read();
    let mut started_long = 0;
    for (id, _) in &longs {
        assert!(e.started(*id) <= 1, "long task {id} started twice");
        assert_eq!(e.finished(*id), 0, "cancelled task {id} finished");
        started_long += e.started(*id);
    }
    e.ran_once(quicks.iter().map(|(id, _)| *id));
    // Every long task that started was stopped by killing its worker, and only those.
    eventually("every replacement is counted", || {
        let s = pool.stats();
        s.worker_restarts == s.worker_deaths
    });
    pids.extend(pool.pids());
    pool.shutdown(true);
    let stats = pool.stats();
    assert_eq!(stats.submitted, long + quick);
    assert_eq!((stats.done, stats.failed), (quick, 0));
    assert_eq!(stats.cancelled, long);
    // A worker dies for each long task it took, and for nothing else. A task taken can be
    // stopped before its first instruction (its worker killed between taking it and the
    // task's first line), so the journal may miss a start the pool counted: the tasks the
    // pool counts as run beyond the quick ones are the long ones taken.
    let taken: u64 = stats.workers.iter().map(|w| w.tasks_run).sum::<u64>() - quick;
    assert_eq!(stats.worker_deaths, taken, "{stats:?}");
    assert!(
        (started_long as u64..=started_long as u64 + cancelled_at_once as u64).contains(&taken),
        "{started_long} long tasks started, {taken} taken: {stats:?}"
    );
    assert!(stats.settled(), "{stats:?}");
    nothing_left(&mut pids, &e);
    eprintln!(
        "burst: {long} long tasks ({cancelled_at_once} cancelled at once, {cancelled_running} \
         once running, {started_long} started), {quick} quick; {} workers in all",
        pids.len()
    );
}

#[test]
fn bursts_of_cancellations_lose_nothing_else() {
    let _t = turn();
    let _w = watchdog("bursts_of_cancellations_lose_nothing_else");
    burst(3, 300, 300);
}

#[test]
fn bursts_of_cancellations_under_cpu_load() {
    let _t = turn();
    let _w = watchdog("bursts_of_cancellations_under_cpu_load");
    let _load = CpuLoad::start();
    burst(2, 100, 200);
}

// ===== races =====

/// Racing the task's own end: exactly one outcome. `true` means `Cancelled` (a value the
/// task produced is discarded), `false` means the task's value; the task never runs
/// twice, and the ordinary tasks submitted around it all run once.
#[test]
fn racing_the_tasks_end_gives_exactly_one_outcome() {
    let _t = turn();
    let _w = watchdog("racing_the_tasks_end_gives_exactly_one_outcome");
    let journal = Journal::new("cancel-race-end");
    // One worker: the ordinary task sent behind each raced one runs on the same worker.
    let pool = pool(1);
    let mut raced = Vec::new();
    let mut ordinary = Vec::new();
    for round in 0..300u64 {
        let id = 2 * round + 1;
        let fut = pool.submit(step, journal.args(id, None));
        ordinary.push((id + 1, pool.submit(step, journal.args(id + 1, None))));
        // A varying delay spreads the request over the task's life.
        for _ in 0..(round % 30) * 600 {
            std::hint::spin_loop();
        }
        let said = fut.cancel_running();
        raced.push((id, said, fut));
    }
    let (mut yes, mut no) = (0, 0);
    for (id, said, fut) in &raced {
        let outcome = fut.result_timeout(LONG);
        if *said {
            yes += 1;
            assert_eq!(outcome, Err(TaskError::Cancelled), "task {id}");
        } else {
            no += 1;
            assert_eq!(outcome, Ok(2 * id), "task {id}");
        }
    }
    // (Some requests come right after the task was sent, long before it can end: they
    // stop it there, which leaves its state `Finished`, not `Cancelled`.)
    assert!(
        raced
            .iter()
            .any(|(_, said, f)| *said && f.state() == State::Finished),
        "no request stopped a task sent to a worker"
    );
    for (id, fut) in &ordinary {
        assert_eq!(fut.result_timeout(LONG), Ok(2 * id), "ordinary task {id}");
    }
    let e = journal.read();
    for (id, said, _) in &raced {
        assert!(
            e.started(*id) <= 1 && e.finished(*id) <= 1,
            "task {id} ran twice"
        );
        if !said {
            assert_eq!(e.finished(*id), 1, "task {id}");
        }
    }
    e.ran_once(ordinary.iter().map(|(id, _)| *id));
    let mut pids = pool.pids();
    pool.shutdown(true);
    let stats = pool.stats();
    assert_eq!((stats.done, stats.cancelled), (300 + no, yes), "{stats:?}");
    assert!(stats.settled(), "{stats:?}");
    nothing_left(&mut pids, &e);
    eprintln!("racing the end: {yes} cancelled, {no} finished first");
}

/// Racing the worker's own death: the task fails once, with `Cancelled` if the request
/// won, else with `WorkerDied`; the tasks queued behind it run once elsewhere.
#[test]
fn racing_the_workers_own_death_gives_exactly_one_outcome() {
    let _t = turn();
    let _w = watchdog("racing_the_workers_own_death_gives_exactly_one_outcome");
    let journal = Journal::new("cancel-race-death");
    let pool = pool(2);
    let mut pids = Vec::new();
    let mut raced = Vec::new();
    let mut ordinary = Vec::new();
    for round in 0..60u64 {
        let id = 3 * round + 1;
        let fut = pool.submit(die, (journal.path.clone(), id));
        ordinary.push((id + 1, pool.submit(step, journal.args(id + 1, None))));
        ordinary.push((id + 2, pool.submit(step, journal.args(id + 2, None))));
        for _ in 0..(round % 17) * 500 {
            std::hint::spin_loop();
        }
        raced.push((id, fut.cancel_running(), fut));
        pids.extend(pool.pids());
    }
    for (id, said, fut) in &raced {
        match fut.result_timeout(LONG) {
            Err(TaskError::Cancelled) => assert!(said, "task {id}"),
            Err(TaskError::WorkerDied { .. }) => assert!(!said, "task {id}"),
            other => panic!("task {id}: {other:?}"),
        }
    }
    assert!(
        raced
            .iter()
            .any(|(_, said, f)| *said && f.state() == State::Finished),
        "no request stopped a task sent to a worker"
    );
    for (id, fut) in &ordinary {
        assert_eq!(fut.result_timeout(LONG), Ok(2 * id), "ordinary task {id}");
    }
    let e = journal.read();
    for (id, _, _) in &raced {
        assert!(e.started(*id) <= 1, "task {id} started twice");
    }
    e.ran_once(ordinary.iter().map(|(id, _)| *id));
    pids.extend(pool.pids());
    pool.shutdown(true);
    assert!(pool.stats().settled());
    nothing_left(&mut pids, &e);
}

/// Racing `terminate` (and `shutdown`): the task ends once, `Cancelled` if the request
/// won, else `Broken`; nothing hangs, no process is left.
#[test]
fn racing_terminate_and_shutdown_gives_exactly_one_outcome() {
    let _t = turn();
    let _w = watchdog("racing_terminate_and_shutdown_gives_exactly_one_outcome");
    let journal = Journal::new("cancel-race-terminate");
    for round in 0..16u64 {
        let pool = Arc::new(pool(1));
        // (Declared after the pool: a failing round opens it, so that the pool can end.)
        let never = Gate::closed();
        let fut = Arc::new(pool.submit(step, journal.args(round, Some(&never))));
        let pid = journal.wait_started(round);
        let barrier = Arc::new(Barrier::new(2));
        let (done_tx, done_rx) = mpsc::channel();
        let stopper = {
            let (pool, barrier) = (pool.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                if round % 2 == 0 {
                    pool.terminate();
                } else {
                    // Waits for the task: only the cancellation can end it.
                    pool.shutdown(true);
                }
                let _ = done_tx.send(());
            })
        };
        barrier.wait();
        let said = fut.cancel_running();
        done_rx
            .recv_timeout(LONG)
            .expect("terminate or shutdown returned");
        stopper.join().unwrap();
        match fut.result_timeout(LONG) {
            Err(TaskError::Cancelled) => assert!(said, "round {round}"),
            Err(TaskError::Broken(_)) => assert!(!said && round % 2 == 0, "round {round}"),
            other => panic!("round {round}: {other:?}"),
        }
        assert!(pool.pids().is_empty());
        assert_no_process_left(&[pid]);
    }
    let e = journal.read();
    for round in 0..16 {
        assert_eq!(
            (e.started(round), e.finished(round)),
            (1, 0),
            "round {round}"
        );
    }
}

/// Many threads at once, then again: the task is stopped once (one worker killed), every
/// call made before its future is done says true, and a call after it says false.
#[test]
fn from_many_threads_at_once_the_task_is_stopped_once() {
    let _t = turn();
    let _w = watchdog("from_many_threads_at_once_the_task_is_stopped_once");
    let journal = Journal::new("cancel-threads");
    let pool = pool(2);
    let never = Gate::closed();
    let mut pids = pool.pids();
    for round in 0..20u64 {
        let fut = Arc::new(pool.submit(step, journal.args(round, Some(&never))));
        journal.wait_started(round);
        let barrier = Arc::new(Barrier::new(8));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (fut, barrier) = (fut.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    fut.cancel_running()
                })
            })
            .collect();
        let yes = callers
            .into_iter()
            .map(|c| c.join().unwrap())
            .filter(|&said| said)
            .count();
        assert!(yes >= 1, "round {round}");
        assert_eq!(fut.result_timeout(LONG), Err(TaskError::Cancelled));
        assert!(!fut.cancel_running(), "called again: finished");
        pids.extend(pool.pids());
    }
    eventually("every replacement is counted", || {
        pool.stats().worker_restarts == 20
    });
    pids.extend(pool.pids());
    pool.shutdown(true);
    let stats = pool.stats();
    assert_eq!((stats.cancelled, stats.worker_deaths), (20, 20));
    nothing_left(&mut pids, &journal.read());
}

/// From a done-callback of another future of the same pool (callbacks run on the pool's
/// callback threads).
#[test]
fn from_a_done_callback_of_another_future() {
    let _t = turn();
    let _w = watchdog("from_a_done_callback_of_another_future");
    let journal = Journal::new("cancel-callback");
    let pool = pool(2);
    let never = Gate::closed();
    let stuck = Arc::new(pool.submit(step, journal.args(1, Some(&never))));
    journal.wait_started(1);
    let (tx, rx) = mpsc::channel();
    let trigger = pool.submit(step, journal.args(2, None));
    let target = stuck.clone();
    trigger.add_done_callback(move |_| {
        let said = target.cancel_running();
        // The callback may wait on the cancelled future: it is done already.
        let outcome = target.result_timeout(LONG);
        let _ = tx.send((said, outcome));
    });
    let (said, outcome) = rx.recv_timeout(LONG).expect("the callback ran");
    assert!(said);
    assert_eq!(outcome, Err(TaskError::Cancelled));
    assert_eq!(trigger.result_timeout(LONG), Ok(4));
    let mut pids = pool.pids();
    pool.shutdown(true);
    pids.extend(journal.read().pids());
    assert_no_process_left(&pids);
}
