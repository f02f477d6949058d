use super::*;

#[test]
fn by_value_round_trip_outside_a_pool() {
    let table = Shared::from((0..10_000u32).collect::<Vec<_>>());
    let bytes = postcard::to_allocvec(&table).unwrap();
    let back: Shared<[u32]> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, table);
    // Not whole `u32`s: an error, not a panic.
    let odd = postcard::to_allocvec(&Shared::from(vec![1u8, 2, 3])).unwrap();
    assert!(postcard::from_bytes::<Shared<[u32]>>(&odd).is_err());
    let empty = postcard::to_allocvec(&Shared::<[u64]>::new(Vec::new())).unwrap();
    assert!(
        postcard::from_bytes::<Shared<[u64]>>(&empty)
            .unwrap()
            .is_empty()
    );
}

#[cfg(all(target_os = "linux", not(miri)))]
#[test]
fn by_id_in_a_context_and_an_unknown_id_is_an_error() {
    let table = Shared::from(vec![5u64; 1000]);
    let (bytes, tables) = collect(|| postcard::to_allocvec(&(table.clone(), table.clone())));
    let bytes = bytes.unwrap();
    assert!(bytes.len() < 40, "{} bytes", bytes.len());
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].len(), 8000);
    let file = tables[0].file().unwrap();
    assert!(file.write_sealed());
    assert!(file.write_at(0, b"x").is_err());
    // This process was never given the table: its id names nothing here.
    assert!(postcard::from_bytes::<(Shared<[u64]>, Shared<[u64]>)>(&bytes).is_err());
}

#[cfg(all(feature = "mpi", target_os = "linux", not(miri)))]
#[test]
fn mpi_context_makes_no_file_and_a_received_copy_is_found_by_id() {
    let table = Shared::from((0..1000u64).collect::<Vec<_>>());
    let (bytes, tables) = collect_bytes(|| postcard::to_allocvec(&table.clone()));
    let bytes = bytes.unwrap();
    assert!(bytes.len() < 40, "{} bytes", bytes.len());
    assert_eq!(tables.len(), 1);
    assert!(tables[0].file().is_none(), "no sealed file for MPI");
    // A rank's copy: taken from an unaligned buffer, found by id, then let go.
    let mut sent = vec![0u8];
    sent.extend_from_slice(tables[0].bytes());
    install_bytes(tables[0].id(), &sent[1..]);
    let back: Shared<[u64]> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, table);
    assert!(
        postcard::from_bytes::<Shared<[[u8; 3]]>>(&bytes).is_err(),
        "not whole items"
    );
    drop(back);
    uninstall(&[tables[0].id()]);
    assert!(postcard::from_bytes::<Shared<[u64]>>(&bytes).is_err());
}

#[cfg(all(target_os = "linux", not(miri)))]
#[test]
fn a_panic_while_encoding_leaves_no_context_behind() {
    let table = Shared::from(vec![1u8; 64]);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        collect(|| {
            let _ = postcard::to_allocvec(&table);
            panic!("an encoding panics");
        })
    }));
    assert!(panicked.is_err());
    assert!(context::active().is_none());
    // Outside a context, by value again.
    let bytes = postcard::to_allocvec(&table).unwrap();
    assert_eq!(postcard::from_bytes::<Shared<[u8]>>(&bytes).unwrap(), table);
}
