//! Group commit: many writes share one transaction, committed when it is old enough or big
//! enough. This is the runtime side (a thread with a clock); the pool itself has no clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::pool::Pool;

/// When the background committer commits.
#[derive(Debug, Clone, Copy)]
pub struct CommitPolicy {
    /// Commit changes at most this long after they were made.
    pub interval: Duration,
    /// Commit as soon as about this many bytes wait to be written.
    pub dirty_bytes_max: u64,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy {
            interval: Duration::from_secs(5),
            dirty_bytes_max: 256 << 20,
        }
    }
}

/// A thread that commits a pool's open transaction by policy.
pub struct GroupCommitter {
    stop: Arc<(Mutex<bool>, Condvar)>,
    kick: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    policy: CommitPolicy,
}

impl GroupCommitter {
    /// Starts committing `pool` by `policy`. Failed commits are reported through `on_error`.
    pub fn spawn(
        pool: Pool,
        policy: CommitPolicy,
        on_error: impl Fn(&crate::StoreError) + Send + 'static,
    ) -> GroupCommitter {
        GroupCommitter::spawn_flushing(pool, policy, || (), on_error)
    }

    /// [`GroupCommitter::spawn`], calling `flush` on the commit thread whenever the interval
    /// is up, before looking for changes to commit: writes that a caller still buffers
    /// (a kernel's page cache, say) are then committed within the interval too.
    pub fn spawn_flushing(
        pool: Pool,
        policy: CommitPolicy,
        mut flush: impl FnMut() + Send + 'static,
        on_error: impl Fn(&crate::StoreError) + Send + 'static,
    ) -> GroupCommitter {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let kick = Arc::new(AtomicBool::new(false));
        let (stop2, kick2) = (stop.clone(), kick.clone());
        let poll = policy
            .interval
            .min(Duration::from_millis(100))
            .max(Duration::from_millis(1));
        let thread = std::thread::Builder::new()
            .name("tidefs-commit".into())
            .spawn(move || {
                let mut waited = Duration::ZERO;
                loop {
                    {
                        let (lock, cv) = &*stop2;
                        let mut stopped = lock.lock();
                        if !*stopped {
                            cv.wait_for(&mut stopped, poll);
                        }
                        if *stopped {
                            break;
                        }
                    }
                    waited += poll;
                    let timed = waited >= policy.interval;
                    if timed {
                        flush();
                    }
                    let due = timed
                        || kick2.swap(false, Ordering::AcqRel)
                        || pool.uncommitted_bytes() >= policy.dirty_bytes_max;
                    if due {
                        waited = Duration::ZERO;
                        if pool.has_uncommitted() {
                            if let Err(e) = pool.commit() {
                                on_error(&e);
                            }
                        }
                    }
                }
            })
            .expect("spawning the commit thread");
        GroupCommitter {
            stop,
            kick,
            thread: Some(thread),
            policy,
        }
    }

    /// Asks for a commit soon (e.g. after a large write).
    pub fn kick(&self) {
        self.kick.store(true, Ordering::Release);
        self.stop.1.notify_all();
    }

    pub fn policy(&self) -> CommitPolicy {
        self.policy
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    use super::*;
    use crate::{CreateOptions, MemDevice, OpenOptions};

    fn pool() -> Pool {
        Pool::create(
            Arc::new(MemDevice::new()),
            &CreateOptions::default(),
            &OpenOptions::default(),
        )
        .unwrap()
    }

    /// Waits for `done`, failing after a minute (a hang, not a slow machine).
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn policy() -> CommitPolicy {
        CommitPolicy {
            interval: Duration::from_millis(20),
            dirty_bytes_max: u64::MAX,
        }
    }

    #[test]
    fn changes_are_committed_by_the_interval() {
        let pool = pool();
        let _committer = GroupCommitter::spawn(pool.clone(), policy(), |e| panic!("{e}"));
        pool.write(|t| t.create_tree().map(drop)).unwrap();
        assert!(pool.has_uncommitted());
        wait_until("the change is committed", || !pool.has_uncommitted());
    }

    #[test]
    fn what_the_flush_brings_in_is_committed_in_the_same_round() {
        // The flush stands for a kernel handing over cached writes: they arrive only when
        // asked for, and must not wait for a later interval.
        let pool = pool();
        let flushes = Arc::new(AtomicUsize::new(0));
        let committer = {
            let (pool, flushes) = (pool.clone(), flushes.clone());
            GroupCommitter::spawn_flushing(
                pool.clone(),
                policy(),
                move || {
                    if flushes.fetch_add(1, Ordering::SeqCst) == 0 {
                        pool.write(|t| t.create_tree().map(drop)).unwrap();
                    }
                },
                |e| panic!("{e}"),
            )
        };
        wait_until("a second flush", || flushes.load(Ordering::SeqCst) >= 2);
        // The second flush comes an interval after the first; the first's change was
        // committed right after it, before the thread waited again.
        assert!(!pool.has_uncommitted());
        drop(committer);
        let flushed = flushes.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            flushes.load(Ordering::SeqCst),
            flushed,
            "flushing after stop"
        );
    }
}
