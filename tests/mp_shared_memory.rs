//! `SharedMemory`: named blocks that other processes attach to by name.
#![cfg(target_os = "linux")]

mod common;

use common::{LONG, join, watchdog};
use concurrent_futures::multiprocessing::{Event, Process, SharedMemory, SharedMemoryError};

/// Attaches by name (no handle inherited: only the name crosses), checks the bytes, writes
/// its own, and exits with 0 if all went well.
fn attach_and_answer((name, ready): (String, Event)) {
    let ok = (|| {
        let block = SharedMemory::attach(&name).ok()?;
        let mut got = [0u8; 5];
        block.read(0, &mut got).ok()?;
        (got == *b"hello" && block.size() == 4096).then_some(())?;
        block.write(4091, b"world").ok()?;
        Some(())
    })();
    ready.set();
    std::process::exit(if ok.is_some() { 0 } else { 1 });
}

#[test]
fn another_process_attaches_by_name_and_sees_and_makes_changes() {
    let _w = watchdog("another_process_attaches_by_name_and_sees_and_makes_changes");
    let block = SharedMemory::create(None, 4096).unwrap();
    block.write(0, b"hello").unwrap();
    let ready = Event::new();
    let p = Process::new(attach_and_answer, (block.name().to_string(), ready.clone()));
    p.start().unwrap();
    assert!(ready.wait_timeout(LONG));
    assert_eq!(join(&p), 0);
    let mut got = [0u8; 5];
    block.read(4091, &mut got).unwrap();
    assert_eq!(&got, b"world");
    block.unlink().unwrap();
}

#[test]
fn names_sizes_and_errors() {
    let name = format!("cf_test_block_{}", std::process::id());
    let block = SharedMemory::create(Some(&format!("/{name}")), 10).unwrap();
    assert_eq!(
        block.name(),
        name,
        "the leading slash is not part of the name"
    );
    assert_eq!(block.size(), 10);
    assert!(matches!(
        SharedMemory::create(Some(&name), 10),
        Err(SharedMemoryError::Exists(_))
    ));
    assert!(matches!(
        SharedMemory::create(None, 0),
        Err(SharedMemoryError::ZeroSize)
    ));
    for bad in ["", "/", "a/b", "x\0y"] {
        assert!(
            matches!(
                SharedMemory::attach(bad),
                Err(SharedMemoryError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        block.write(8, &[1, 2, 3]),
        Err(SharedMemoryError::OutOfRange {
            offset: 8,
            len: 3,
            size: 10
        })
    ));
    assert!(
        block.read(usize::MAX, &mut [0u8; 2]).is_err(),
        "no overflow"
    );
    // Closing a handle leaves the block; unlinking removes the name, not the mapping.
    let other = SharedMemory::attach(&name).unwrap();
    other.write(0, &[42]).unwrap();
    other.close();
    block.unlink().unwrap();
    assert!(matches!(
        SharedMemory::attach(&name),
        Err(SharedMemoryError::NotFound(_))
    ));
    let mut first = [0u8];
    block.read(0, &mut first).unwrap();
    assert_eq!(first, [42], "the mapping outlives the name");
    assert!(matches!(
        block.unlink(),
        Err(SharedMemoryError::NotFound(_))
    ));
}
