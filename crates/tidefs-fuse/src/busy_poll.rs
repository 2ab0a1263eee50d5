//! Busy polling of the FUSE channel while requests keep coming.
//!
//! A request made by a process on one CPU and read by a server thread asleep on another
//! costs a cross-CPU wakeup; in a virtual machine, where an idle CPU halts, that wakeup
//! costs more than serving a small request (a created file takes six requests). So while
//! requests keep arriving, the main channel is made non-blocking: its thread (fuser retries
//! a read that would block) spins on the request queue and picks the next request up at
//! once. After a window without requests a watcher thread makes the channel blocking
//! again, so an idle mount costs no CPU.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

/// The busy-polling switch of one mount.
pub struct BusyPoll {
    /// How long the channel stays non-blocking after the last request; zero: never.
    window: Duration,
    /// A duplicate of the session's channel: it shares the open file description, whose
    /// O_NONBLOCK flag is what is switched.
    channel: OnceLock<OwnedFd>,
    requests: AtomicU64,
    /// Set when requests come through io_uring queues instead of the channel.
    off: AtomicBool,
    /// Mirrors `state.spinning`, read without the lock on every request.
    spinning: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    spinning: bool,
    stopped: bool,
}

impl BusyPoll {
    pub fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            channel: OnceLock::new(),
            requests: AtomicU64::new(0),
            off: AtomicBool::new(false),
            spinning: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    /// Gives the channel to switch (a duplicate of the session's descriptor).
    pub fn attach(&self, channel: OwnedFd) {
        let _ = self.channel.set(channel);
    }

    /// Never polls: requests do not come through the channel (over io_uring the queues'
    /// threads poll for them themselves).
    pub fn turn_off(&self) {
        self.off.store(true, Ordering::Relaxed);
    }

    /// Whether the channel is in its busy-polling phase.
    #[cfg(test)]
    fn is_spinning(&self) -> bool {
        self.spinning.load(Ordering::Acquire)
    }

    /// Counts a request; the first one after an idle spell starts the polling.
    pub fn touch(&self) {
        if self.window.is_zero() || self.off.load(Ordering::Relaxed) {
            return;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !self.spinning.load(Ordering::Relaxed) {
            self.start();
        }
    }

    fn start(&self) {
        let mut state = self.state.lock();
        if state.spinning || state.stopped {
            return;
        }
        let Some(channel) = self.channel.get() else {
            return;
        };
        if set_nonblocking(channel, true).is_ok() {
            state.spinning = true;
            self.spinning.store(true, Ordering::Release);
            self.changed.notify_all();
        }
    }

    /// The watcher, run on a thread of its own until [`BusyPoll::stop`]: makes the channel
    /// blocking again once a window has passed without a request.
    pub fn watch(&self) {
        let mut state = self.state.lock();
        while !state.stopped {
            if !state.spinning {
                self.changed.wait(&mut state);
                continue;
            }
            let seen = self.requests.load(Ordering::Relaxed);
            self.changed.wait_for(&mut state, self.window);
            if state.spinning && self.requests.load(Ordering::Relaxed) == seen {
                if let Some(channel) = self.channel.get() {
                    let _ = set_nonblocking(channel, false);
                }
                state.spinning = false;
                self.spinning.store(false, Ordering::Release);
            }
        }
    }

    /// Ends [`BusyPoll::watch`] and leaves the channel blocking.
    pub fn stop(&self) {
        let mut state = self.state.lock();
        state.stopped = true;
        if let Some(channel) = self.channel.get() {
            let _ = set_nonblocking(channel, false);
        }
        state.spinning = false;
        self.spinning.store(false, Ordering::Release);
        self.changed.notify_all();
    }
}

fn set_nonblocking(fd: impl AsFd, on: bool) -> rustix::io::Result<()> {
    let flags = fcntl_getfl(&fd)?;
    let flags = if on {
        flags | OFlags::NONBLOCK
    } else {
        flags - OFlags::NONBLOCK
    };
    fcntl_setfl(&fd, flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn nonblocking(fd: &OwnedFd) -> bool {
        fcntl_getfl(fd).unwrap().contains(OFlags::NONBLOCK)
    }

    /// Waits (without a deadline on the outcome) until `cond` holds; gives up after a
    /// minute so a broken switch fails instead of hanging.
    fn eventually(cond: impl Fn() -> bool) -> bool {
        for _ in 0..60_000 {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn requests_switch_the_channel_to_polling_and_idleness_switches_it_back() {
        let (reader, _writer) = rustix::pipe::pipe().unwrap();
        let probe = reader.try_clone().unwrap();
        let poll = Arc::new(BusyPoll::new(Duration::from_millis(5)));
        poll.attach(reader);
        let watcher = {
            let poll = poll.clone();
            std::thread::spawn(move || poll.watch())
        };
        assert!(!nonblocking(&probe), "blocking before any request");
        poll.touch();
        assert!(poll.is_spinning());
        assert!(nonblocking(&probe), "the first request starts polling");
        assert!(
            eventually(|| !nonblocking(&probe) && !poll.is_spinning()),
            "an idle window ends polling"
        );
        poll.touch();
        assert!(nonblocking(&probe), "the next request starts it again");
        poll.stop();
        watcher.join().unwrap();
        assert!(!nonblocking(&probe), "stopping leaves the channel blocking");
        poll.touch();
        assert!(!nonblocking(&probe), "a stopped switch stays off");
    }

    #[test]
    fn a_zero_window_never_polls() {
        let (reader, _writer) = rustix::pipe::pipe().unwrap();
        let probe = reader.try_clone().unwrap();
        let poll = BusyPoll::new(Duration::ZERO);
        poll.attach(reader);
        poll.touch();
        assert!(!nonblocking(&probe));
        assert!(!poll.is_spinning());
    }
}
