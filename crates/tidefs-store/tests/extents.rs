//! Extent data: big batches written in parallel (and as vectored runs on a file device) read
//! back exactly, survive a reopen, and bad writes are refused.

use std::sync::Arc;

use tidefs_store::{
    CreateOptions, Extent, OpenOptions, Pool, StoreError, BLOCK_BYTES, EXTENT_BLOCKS_PACKED,
};

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn mem_pool() -> Pool {
    Pool::create(
        Arc::new(tidefs_store::MemDevice::new()),
        &CreateOptions::default(),
        &OpenOptions::default(),
    )
    .unwrap()
}

fn write_and_check(pool: &Pool) -> Vec<(Extent, Vec<u8>)> {
    // Two-megabyte extents, plus an odd-sized one, in one batch (parallel path), from
    // separate buffers.
    let sizes = [512u32, 512, 3, 512, 129];
    let datas: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, b)| pattern(i as u8, *b as usize * BLOCK_BYTES))
        .collect();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    let extents = pool
        .write(|t| -> Result<Vec<Extent>, StoreError> {
            let extents: Vec<Extent> = sizes
                .iter()
                .map(|b| t.alloc_extent(*b))
                .collect::<Result<_, _>>()?;
            let writes: Vec<(Extent, &[u8])> = extents
                .iter()
                .copied()
                .zip(datas.iter().map(|d| &d[..]))
                .collect();
            t.write_extents(&writes)?;
            for (i, e) in extents.iter().enumerate() {
                t.insert_with_extent(tree, &(i as u64).to_be_bytes(), *e, b"rec")?;
            }
            Ok(extents)
        })
        .unwrap();
    extents.into_iter().zip(datas).collect()
}

fn check(pool: &Pool, written: &[(Extent, Vec<u8>)]) {
    let read = pool.read();
    for (e, want) in written {
        let mut got = vec![0u8; want.len()];
        read.read_extent(*e, 0, &mut got).unwrap();
        assert!(
            got == *want,
            "extent at block {} reads back differently",
            e.block
        );
    }
}

#[test]
fn parallel_extent_writes_read_back_on_a_memory_device() {
    let pool = mem_pool();
    let written = write_and_check(&pool);
    pool.commit().unwrap();
    check(&pool, &written);
}

#[test]
fn direct_extent_writes_read_back_on_a_file_device_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let written = {
        let pool = Pool::create_at(
            dir.path(),
            &CreateOptions::default(),
            &OpenOptions::default(),
        )
        .unwrap();
        let w = write_and_check(&pool);
        pool.commit().unwrap();
        check(&pool, &w);
        w
    };
    let pool = Pool::open_at(dir.path(), &OpenOptions::default()).unwrap();
    check(&pool, &written);
    let report = tidefs_store::fsck(&pool, &mut |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn extent_writes_past_the_end_or_into_committed_extents_are_refused() {
    let pool = mem_pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    let big = vec![1u8; 3 << 20];
    let e = pool
        .write(|t| -> Result<Extent, StoreError> {
            let a = t.alloc_extent(512)?;
            let b = t.alloc_extent(512)?;
            let err = t
                .write_extents(&[(a, &big[..2 << 20]), (b, &big)])
                .unwrap_err();
            assert!(err.to_string().contains("past the end"), "{err}");
            t.insert_with_extent(tree, b"k", a, b"v")?;
            t.remove(tree, b"k").map(|_| a)
        })
        .unwrap();
    pool.commit().unwrap();
    let err = pool
        .write(|t| t.write_extents(&[(e, &big[..1 << 20]), (e, &big[..1 << 20])]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not allocated by this transaction"),
        "{err}"
    );
}

#[test]
fn packed_extents_lie_back_to_back_and_are_written_as_runs() {
    // Extents of EXTENT_BLOCKS_PACKED blocks, allocated in a row, fill space-page ranges
    // without holes; written from one buffer they go down as vectored runs (split
    // between two threads, possibly mid-run) and must read back exactly.
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::create_at(
        dir.path(),
        &CreateOptions::default(),
        &OpenOptions::default(),
    )
    .unwrap();
    let ext_bytes = EXTENT_BLOCKS_PACKED as usize * BLOCK_BYTES;
    let count = 7;
    let data = pattern(9, ext_bytes * count);
    let buf = data.clone();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    let (extents, sum) = pool
        .write(|t| -> Result<(Vec<Extent>, u64), StoreError> {
            let extents: Vec<Extent> = (0..count)
                .map(|_| t.alloc_extent(EXTENT_BLOCKS_PACKED))
                .collect::<Result<_, _>>()?;
            let writes: Vec<(Extent, &[u8])> =
                extents.iter().copied().zip(buf.chunks(ext_bytes)).collect();
            // `work` runs while the data is written; its result comes back.
            let sum =
                t.write_extents_with(&writes, || data.iter().map(|b| u64::from(*b)).sum::<u64>())?;
            for (i, e) in extents.iter().enumerate() {
                t.insert_with_extent(tree, &(i as u64).to_be_bytes(), *e, b"rec")?;
            }
            Ok((extents, sum))
        })
        .unwrap();
    assert_eq!(sum, data.iter().map(|b| u64::from(*b)).sum::<u64>());
    let adjacent = extents
        .windows(2)
        .filter(|w| w[0].block + u64::from(w[0].blocks) == w[1].block)
        .count();
    assert!(
        adjacent >= count / 2,
        "only {adjacent} of {} neighbouring extents are back to back: {extents:?}",
        count - 1
    );
    pool.commit().unwrap();
    let written: Vec<(Extent, Vec<u8>)> = extents
        .iter()
        .copied()
        .zip(data.chunks(ext_bytes).map(|c| c.to_vec()))
        .collect();
    check(&pool, &written);
    drop(pool);
    let pool = Pool::open_at(dir.path(), &OpenOptions::default()).unwrap();
    check(&pool, &written);
}

#[test]
fn get_with_reads_an_extent_records_payload_in_place() {
    let pool = mem_pool();
    let tree = pool.write(|t| t.create_tree()).unwrap();
    let data = pattern(9, BLOCK_BYTES);
    let e = pool
        .write(|t| -> Result<Extent, StoreError> {
            let e = t.alloc_extent(1)?;
            t.write_extents(&[(e, &data[..])])?;
            t.insert_with_extent(tree, b"k", e, b"payload")?;
            Ok(e)
        })
        .unwrap();
    pool.commit().unwrap();
    let read = pool.read();
    let view = read.tree(tree).unwrap();
    // The caller's bytes, after the extent reference, as `get` gives them.
    assert_eq!(
        view.get_with(b"k", |v| v.to_vec()).unwrap(),
        Some(b"payload".to_vec())
    );
    let record = view.get(b"k").unwrap().unwrap();
    assert_eq!(
        (record.value, record.extent),
        (b"payload".to_vec(), Some(e))
    );
    assert_eq!(view.get_with(b"j", |v| v.len()).unwrap(), None);
}
