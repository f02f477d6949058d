//! Queues and pipes across processes: FIFO, many producers and consumers, full/empty,
//! timeouts, large items, EOF.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{LONG, join, watchdog};
use concurrent_futures::multiprocessing::{
    Connection, ConnectionError, Event, GetError, JoinableQueue, Lock, Pipe, Process, PutError,
    Queue, SimpleQueue, TaskDoneTooManyTimes,
};

fn produce((q, id, n): (Queue<(u32, u32)>, u32, u32)) {
    for i in 0..n {
        q.put((id, i)).unwrap();
    }
}

type Item = (u32, u32);

fn consume((q, out, n): (Queue<Item>, Queue<Vec<Item>>, usize)) {
    let got: Vec<_> = (0..n).map(|_| q.get_timeout(LONG).unwrap()).collect();
    out.put(got).unwrap();
}

#[test]
fn many_producers_and_consumers_in_different_processes() {
    let _w = watchdog("many_producers_and_consumers_in_different_processes");
    // A small buffer, so that producers wait for consumers and items are written by the
    // producers' feeder threads.
    let q = Queue::with_buffer(0, 4096);
    let out = Queue::new(0);
    let producers: Vec<_> = (0..3)
        .map(|id| Process::new(produce, (q.clone(), id, 2000)))
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| Process::new(consume, (q.clone(), out.clone(), 3000)))
        .collect();
    for p in producers.iter().chain(&consumers) {
        p.start().unwrap();
    }
    let mut all = Vec::new();
    for _ in 0..2 {
        let part = out.get_timeout(LONG).unwrap();
        // Each producer's items reach one consumer in the order they were put.
        let mut last: HashMap<u32, u32> = HashMap::new();
        for &(id, i) in &part {
            if let Some(prev) = last.insert(id, i) {
                assert!(i > prev, "producer {id}: {i} after {prev}");
            }
        }
        all.extend(part);
    }
    all.sort();
    let want: Vec<_> = (0..3)
        .flat_map(|id| (0..2000).map(move |i| (id, i)))
        .collect();
    assert_eq!(all, want, "every item exactly once");
    for p in producers.iter().chain(&consumers) {
        assert_eq!(join(p), 0);
    }
    assert!(q.empty());
}

#[test]
fn bounded_queue_full_and_empty() {
    let _w = watchdog("bounded_queue_full_and_empty");
    let q = Queue::new(2);
    assert!(q.empty() && !q.full());
    q.put(1).unwrap();
    q.put_nowait(2).unwrap();
    assert!(q.full());
    assert_eq!(q.qsize(), 2);
    assert!(matches!(q.put_nowait(3), Err(PutError::Full(3))));
    assert!(matches!(
        q.put_timeout(3, Duration::from_millis(20)),
        Err(PutError::Full(3))
    ));
    assert_eq!(q.get(), Ok(1));
    q.put_timeout(3, LONG).unwrap();
    assert_eq!(q.get_nowait(), Ok(2));
    assert_eq!(q.get_timeout(LONG), Ok(3));
    assert_eq!(q.get_nowait(), Err(GetError::Empty));
    assert_eq!(
        q.get_timeout(Duration::from_millis(20)),
        Err(GetError::Empty)
    );
}

fn fill_three((q, done): (Queue<u32>, Event)) {
    for i in [10, 20, 30] {
        q.put(i).unwrap();
    }
    done.set();
    q.put(40).unwrap(); // waits for room
}

#[test]
fn a_blocked_put_resumes_when_another_process_gets() {
    let _w = watchdog("a_blocked_put_resumes_when_another_process_gets");
    let (q, done) = (Queue::new(3), Event::new());
    let p = Process::new(fill_three, (q.clone(), done.clone()));
    p.start().unwrap();
    assert!(done.wait_timeout(LONG));
    assert_eq!(
        p.join_timeout(Duration::from_millis(30)),
        Ok(None),
        "blocked in put"
    );
    let got: Vec<_> = (0..4).map(|_| q.get_timeout(LONG).unwrap()).collect();
    assert_eq!(got, vec![10, 20, 30, 40]);
    assert_eq!(join(&p), 0);
}

fn echo_len((q, out): (Queue<Vec<u8>>, Queue<(usize, u64)>)) {
    let v = q.get_timeout(LONG).unwrap();
    out.put((v.len(), v.iter().map(|&b| u64::from(b)).sum()))
        .unwrap();
}

#[test]
fn items_larger_than_the_buffer_are_streamed() {
    let _w = watchdog("items_larger_than_the_buffer_are_streamed");
    let (q, out) = (Queue::with_buffer(0, 8192), Queue::new(0));
    let p = Process::new(echo_len, (q.clone(), out.clone()));
    p.start().unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let sum = big.iter().map(|&b| u64::from(b)).sum();
    q.put(big).unwrap();
    assert_eq!(out.get_timeout(LONG), Ok((1_000_000, sum)));
    assert_eq!(join(&p), 0);
}

#[test]
fn put_everything_before_any_consumer_starts() {
    let _w = watchdog("put_everything_before_any_consumer_starts");
    // Python's pattern: fill the queue, then start the workers. `put` must not wait for
    // room (the buffer holds far fewer items than are put).
    let q = Queue::with_buffer(0, 4096);
    for i in 0..5000u32 {
        q.put((0, i)).unwrap();
    }
    let out = Queue::new(0);
    let p = Process::new(consume, (q.clone(), out.clone(), 5000));
    p.start().unwrap();
    let got = out.get_timeout(LONG).unwrap();
    assert_eq!(got, (0..5000).map(|i| (0, i)).collect::<Vec<_>>());
    assert_eq!(join(&p), 0);
}

fn work_off(q: JoinableQueue<u32>) {
    for _ in 0..3 {
        q.get_timeout(LONG).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn joinable_queue_join_waits_for_task_done_in_another_process() {
    let _w = watchdog("joinable_queue_join_waits_for_task_done");
    let q = JoinableQueue::new(0);
    for i in 0..3 {
        q.put(i).unwrap();
    }
    assert!(
        !q.join_timeout(Duration::from_millis(20)),
        "nothing done yet"
    );
    let p = Process::new(work_off, q.clone());
    p.start().unwrap();
    assert!(q.join_timeout(LONG));
    assert_eq!(join(&p), 0);
    assert_eq!(q.task_done(), Err(TaskDoneTooManyTimes));
}

#[test]
fn simple_queue_and_close() {
    let q = SimpleQueue::new();
    q.put(1u8).unwrap();
    assert!(!q.empty());
    assert_eq!(q.get(), Ok(1));
    q.close();
    assert!(matches!(q.put(2), Err(PutError::Closed(2))));
    assert_eq!(q.get(), Err(GetError::Closed));
}

fn pipe_child(conn: Connection<String>) {
    let got = conn.recv().unwrap();
    conn.send(format!("echo: {got}")).unwrap();
    for i in 0..3 {
        conn.send(format!("msg {i}")).unwrap();
    }
    // Returning drops the child's end: the parent sees EOF after the messages.
}

#[test]
fn pipe_send_recv_and_eof_across_processes() {
    let _w = watchdog("pipe_send_recv_and_eof_across_processes");
    let (parent, child) = Pipe::new(true).unwrap();
    let p = Process::new(pipe_child, child);
    p.start().unwrap();
    assert_eq!(parent.poll(Some(Duration::ZERO)), Ok(false));
    parent.send("hi".to_string()).unwrap();
    assert_eq!(parent.poll(Some(LONG)), Ok(true));
    assert_eq!(parent.recv().unwrap(), "echo: hi");
    for i in 0..3 {
        assert_eq!(parent.recv().unwrap(), format!("msg {i}"));
    }
    assert_eq!(parent.recv(), Err(ConnectionError::Eof));
    assert_eq!(join(&p), 0);
    assert_eq!(parent.send("late".into()), Err(ConnectionError::BrokenPipe));
}

fn die_silently(_conn: Connection<u32>) {
    std::process::abort();
}

#[test]
fn pipe_reports_eof_when_the_other_process_dies() {
    let _w = watchdog("pipe_reports_eof_when_the_other_process_dies");
    let (parent, child) = Pipe::new(true).unwrap();
    let p = Process::new(die_silently, child);
    p.start().unwrap();
    assert_eq!(parent.recv(), Err(ConnectionError::Eof));
    assert_eq!(join(&p), -libc::SIGABRT);
}

#[test]
fn one_way_pipe() {
    let (reader, writer) = Pipe::new(false).unwrap();
    assert!(reader.readable() && !reader.writable());
    assert!(writer.writable() && !writer.readable());
    assert_eq!(reader.send(1u32), Err(ConnectionError::ReadOnly));
    assert_eq!(writer.recv(), Err(ConnectionError::WriteOnly));
    writer.send(2).unwrap();
    assert_eq!(reader.recv(), Ok(2));
    writer.close();
    assert_eq!(writer.send(3), Err(ConnectionError::Closed));
    assert_eq!(reader.recv(), Err(ConnectionError::Eof));
}

fn lock_from_pipe((conn, out): (Connection<Lock>, Queue<bool>)) {
    let lock = conn.recv().unwrap();
    out.put(lock.try_acquire().is_err()).unwrap();
}

#[test]
fn a_lock_sent_through_a_pipe_is_shared() {
    let _w = watchdog("a_lock_sent_through_a_pipe_is_shared");
    let (parent, child) = Pipe::new(true).unwrap();
    let out = Queue::new(0);
    let p = Process::new(lock_from_pipe, (child, out.clone()));
    p.start().unwrap();
    let lock = Lock::new();
    let held = lock.acquire().unwrap();
    parent.send(lock.clone()).unwrap();
    assert_eq!(
        out.get_timeout(LONG),
        Ok(true),
        "the child sees our lock held"
    );
    drop(held);
    assert_eq!(join(&p), 0);
}

fn put_big_then_hang((q, put): (Queue<Vec<u8>>, Event)) {
    // Far larger than the buffer and nobody reads yet: the feeder streams it and waits for
    // room in the middle of the item.
    q.put(vec![9u8; 1 << 20]).unwrap();
    put.set();
    loop {
        std::thread::park();
    }
}

/// True if process `pid` has a thread named `queue-feeder` that is sleeping.
fn feeder_sleeps(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .is_ok_and(|stat| stat.contains("(queue-feeder) S"))
    })
}

#[test]
fn a_writer_killed_mid_item_loses_only_that_item() {
    let _w = watchdog("a_writer_killed_mid_item_loses_only_that_item");
    let (q, put) = (Queue::with_buffer(0, 4096), Event::new());
    let p = Process::new(put_big_then_hang, (q.clone(), put.clone()));
    p.start().unwrap();
    assert!(put.wait_timeout(LONG));
    // Wait until the child's feeder thread sleeps: it wrote what fits and waits for room,
    // in the middle of the item.
    let pid = p.pid().unwrap();
    common::eventually("the feeder waits for room mid-item", || feeder_sleeps(pid));
    p.kill().unwrap();
    assert_eq!(join(&p), -libc::SIGKILL);
    // The partial item (if any of it was written) is dropped once its writer is found dead:
    // the reader neither hangs nor returns a torn item.
    assert_eq!(
        q.get_timeout(Duration::from_millis(300)),
        Err(GetError::Empty)
    );
    // The queue works on: the next writer and reader see whole items.
    q.put(vec![1, 2, 3]).unwrap();
    assert_eq!(q.get_timeout(LONG), Ok(vec![1, 2, 3]));
    assert!(q.empty(), "the lost item is not counted any more");
}

#[test]
fn an_item_after_a_dead_writers_partial_item_arrives_whole() {
    let _w = watchdog("an_item_after_a_dead_writers_partial_item_arrives_whole");
    let (q, put) = (Queue::with_buffer(0, 4096), Event::new());
    let p = Process::new(put_big_then_hang, (q.clone(), put.clone()));
    p.start().unwrap();
    assert!(put.wait_timeout(LONG));
    let pid = p.pid().unwrap();
    common::eventually("the feeder waits for room mid-item", || feeder_sleeps(pid));
    p.kill().unwrap();
    assert_eq!(join(&p), -libc::SIGKILL);
    // A writer comes first this time: the reader meets the new item's first record after the
    // dead writer's partial item, drops the partial one and gets the new one whole.
    q.put(vec![4, 5, 6]).unwrap();
    assert_eq!(q.get_timeout(LONG), Ok(vec![4, 5, 6]));
    assert!(q.empty(), "the lost item is not counted any more");
}
