//! Time comes from an injectable clock so that tests are deterministic; nothing in this
//! crate reads the system time except [`SystemClock`].

use std::sync::atomic::{AtomicI64, Ordering};

/// A point in time: seconds and nanoseconds since the Unix epoch, as `struct timespec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    pub const fn new(sec: i64, nsec: u32) -> Timespec {
        Timespec { sec, nsec }
    }
}

/// Where the file system gets "now" from.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timespec;
}

/// The real wall clock, at the kernel's timestamp granularity: Linux file systems stamp
/// files from the coarse clock (one tick, a few milliseconds), and so does tidefs. That is
/// not only for likeness: a FUSE kernel with the writeback cache compares a file's times
/// with its coarse clock on every write and, when they differ, keeps new times to send at
/// close, one more request per written file.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timespec {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        Timespec::new(t.tv_sec, t.tv_nsec as u32)
    }
}

/// A clock for tests: it says what it was last set to, in nanoseconds since the epoch,
/// and advances only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicI64,
}

impl ManualClock {
    pub fn new(start: Timespec) -> ManualClock {
        ManualClock {
            nanos: AtomicI64::new(start.sec * 1_000_000_000 + i64::from(start.nsec)),
        }
    }

    pub fn set(&self, t: Timespec) {
        self.nanos
            .store(t.sec * 1_000_000_000 + i64::from(t.nsec), Ordering::SeqCst);
    }

    pub fn advance_nanos(&self, nanos: i64) {
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timespec {
        let n = self.nanos.load(Ordering::SeqCst);
        Timespec::new(
            n.div_euclid(1_000_000_000),
            n.rem_euclid(1_000_000_000) as u32,
        )
    }
}
