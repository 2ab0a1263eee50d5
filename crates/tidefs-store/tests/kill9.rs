//! Real crash: a writer process is killed with SIGKILL in the middle of its transactions,
//! several times; each time the pool reopens, fsck is clean, and the last commit the writer
//! acknowledged is there.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use tidefs_store::{OpenOptions, Pool, StoreError, TreeId};

const TREE: TreeId = TreeId(1);

/// The writer: commits batches forever, printing "acked N" after batch N is durable.
#[test]
#[ignore = "run by kill9_writer_loses_nothing_acknowledged as a child process"]
fn kill9_child_writer() {
    let Ok(dir) = std::env::var("TIDEFS_KILL9_POOL") else {
        return;
    };
    let dir = Path::new(&dir);
    let pool = if Pool::exists(dir) {
        Pool::open_at(dir, &OpenOptions::default()).unwrap()
    } else {
        let p = Pool::create_at(dir, &Default::default(), &OpenOptions::default()).unwrap();
        assert_eq!(p.write(|t| t.create_tree()).unwrap(), TREE);
        p.commit().unwrap();
        p
    };
    let start: u64 = pool
        .read()
        .tree(TREE)
        .unwrap()
        .get(b"batch")
        .unwrap()
        .map_or(0, |r| u64::from_le_bytes(r.value.try_into().unwrap()) + 1);
    for batch in start.. {
        pool.write(|t| -> Result<(), StoreError> {
            for i in 0..500u64 {
                let k = (batch * 500 + i).to_be_bytes();
                t.insert(TREE, &k, &[batch as u8; 64])?;
            }
            t.insert(TREE, b"batch", &batch.to_le_bytes())?;
            Ok(())
        })
        .unwrap();
        pool.commit().unwrap();
        println!("acked {batch}");
    }
}

#[test]
fn kill9_writer_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let pool_dir = dir.path().join("pool");
    let mut last_acked: Option<u64> = None;
    for round in 0..5u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "kill9_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TIDEFS_KILL9_POOL", &pool_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Let it acknowledge a few commits (more each round), then kill it mid-stream.
        let wanted = 3 + round * 2;
        let mut seen = 0;
        while let Some(Ok(line)) = lines.next() {
            if let Some(n) = line.strip_prefix("acked ") {
                last_acked = Some(n.parse().unwrap());
                seen += 1;
                if seen == wanted {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Anything it printed before dying was acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("acked ") {
                last_acked = Some(n.parse().unwrap());
            }
        }
        let acked = last_acked.expect("the writer acknowledged nothing");
        let pool = Pool::open_at(&pool_dir, &OpenOptions::default()).unwrap();
        assert_fsck_clean(&pool);
        let read = pool.read();
        let tree = read.tree(TREE).unwrap();
        let batch = u64::from_le_bytes(
            tree.get(b"batch")
                .unwrap()
                .unwrap()
                .value
                .try_into()
                .unwrap(),
        );
        assert!(
            batch >= acked,
            "round {round}: batch {acked} was acknowledged but the pool has only {batch}"
        );
        for b in 0..=batch {
            for i in [0u64, 250, 499] {
                let k = (b * 500 + i).to_be_bytes();
                assert_eq!(
                    tree.get(&k).unwrap().unwrap().value,
                    vec![b as u8; 64],
                    "batch {b} record {i}"
                );
            }
        }
    }
}
