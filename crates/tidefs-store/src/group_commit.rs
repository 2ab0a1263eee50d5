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
                    let due = waited >= policy.interval
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
