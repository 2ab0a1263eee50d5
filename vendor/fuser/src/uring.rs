//! tidefs addition: FUSE over io_uring (Linux 6.14+, with the fuse module's `enable_uring`
//! parameter set).
//!
//! Why: with `/dev/fuse`, a request made on one CPU is often read by a server thread asleep
//! on another, and the reply wakes the caller across CPUs again. On a virtual machine whose
//! idle CPUs halt, those wakeups cost more than serving a small request. Over io_uring the
//! kernel keeps a request queue per CPU and hands a request to the queue of the CPU that made
//! it; a server thread pinned to each CPU serves its queue, so small requests are served where
//! they were made.
//!
//! How: each queue's thread owns an io_uring and a few ring entries, each a 288-byte header
//! buffer and a payload buffer registered with the kernel (`FUSE_IO_URING_CMD_REGISTER`).
//! The kernel completes an entry's command when it puts a request in it; the thread rebuilds
//! the request as `/dev/fuse` would have delivered it, dispatches it like any other, writes
//! the reply into the entry and sends `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`, which returns the
//! reply and waits for the next request. While requests keep coming to any queue, every
//! queue's thread polls for the next one (yielding to anything runnable) instead of sleeping:
//! a CPU with a runnable thread is not idle, so the scheduler wakes the caller where it was
//! rather than on an idle CPU, which would move it away from its queue (see `Activity`).
//!
//! Requests that take long (large reads and writes, fsync) are handed to a small pool of
//! unpinned workers, so they neither hold up the small requests of their CPU nor wait for one
//! another: readahead sends several reads at once, from one CPU. A worker leaves the reply in
//! the entry and tells the queue's thread through an eventfd it reads with the ring.
//!
//! The kernel uses the queues only once every possible CPU's queue has an entry; queues of
//! CPUs that are possible but offline get one entry from the first thread and never see a
//! request. Forgets, interrupts and notifications still go through `/dev/fuse`, whose reader
//! threads keep running. The rings and buffers are built while the INIT request is answered,
//! before the kernel is told to use io_uring: if they cannot be built the mount goes on over
//! `/dev/fuse`. If an entry cannot be registered later, the kernel falls back itself; if a
//! queue's thread cannot even try, it makes the kernel fall back (`fall_back_to_dev_fuse`).

use std::fmt;
use std::io;
use std::io::IoSlice;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::opcode::UringCmd80;
use io_uring::squeue::Entry128;
use io_uring::types::Fd;
use log::debug;
use log::warn;
use parking_lot::Condvar;
use parking_lot::Mutex;

use crate::Filesystem;
use crate::channel::Channel;
use crate::ll::fuse_abi::fuse_opcode;
use crate::reply::ReplyEmpty;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;

/// An error of this transport: logged, and printed as one line on stderr (the process may
/// have no logger, and a failing queue must not go unnoticed).
macro_rules! report {
    ($($arg:tt)*) => {{
        let message = format!($($arg)*);
        log::error!("{message}");
        eprintln!("fuse io_uring: {message}");
    }};
}

/// `struct fuse_uring_req_header`: the request's in header (or the reply's out header), the
/// operation's first argument, then `struct fuse_uring_ent_in_out`.
const HEADER_BYTES: usize = 288;
const OP_IN_AT: usize = 128;
const OP_IN_BYTES: usize = 128;
/// `fuse_uring_ent_in_out.payload_sz`.
const PAYLOAD_SZ_AT: usize = 256 + 16;
const IN_HEADER_BYTES: usize = 40;
const OUT_HEADER_BYTES: usize = 16;
/// Room before the payload to put the in header and first argument back in front of it, so
/// a request is one contiguous message without copying its payload.
const HEADROOM: usize = IN_HEADER_BYTES + OP_IN_BYTES;
/// `fuse_read_in.size`, within the first argument.
const READ_SIZE_AT: usize = 16;

/// `io_uring_enter` flag: run pending work and reap completions (uapi value).
const IORING_ENTER_GETEVENTS: u32 = 1;
const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;

/// Ring entries per queue: one being served by the queue's thread, the others free for
/// requests that come meanwhile or held by workers.
const ENTRIES_PER_QUEUE: usize = 4;
/// Reads and writes at least this large go to a worker.
const LARGE_IO_BYTES: usize = 64 * 1024;
/// The `user_data` of the eventfd read through which workers report.
const WORKERS_DONE: u64 = u64::MAX;

/// Where a request taken from a ring entry leaves its reply for the queue's thread.
pub(crate) struct ReplySlot {
    reply: Mutex<SlotState>,
    replied: Condvar,
    /// The entry's payload area. A reply to a request that brought no payload (a read, say)
    /// is written there directly, saving a copy of its data.
    payload: *mut u8,
    payload_bytes: usize,
}

// The payload pointer is written only while the queue's thread waits for the reply (see
// `SlotState::direct`).
unsafe impl Send for ReplySlot {}
unsafe impl Sync for ReplySlot {}

/// The reply: its bytes (or, when written into the payload area, just its out header), kept
/// from one request to the next.
#[derive(Default)]
struct SlotState {
    ready: bool,
    /// Set by the queue's thread while the payload area holds nothing of the request.
    direct: bool,
    /// How many bytes of the reply went into the payload area.
    in_payload: Option<usize>,
    bytes: Vec<u8>,
    /// Set when the request's handler returned without replying (it replies later, from
    /// a thread of its own): where to report the reply, which is then committed as a
    /// worker's would be.
    deferred: Option<(Arc<Finished>, usize)>,
}

/// A reply as the queue's thread finds it.
enum Reply<'a> {
    /// All of it, out header first.
    Bytes(&'a [u8]),
    /// The out header; the `usize` bytes after it are in the payload area already.
    InPayload(&'a [u8], usize),
}

impl fmt::Debug for ReplySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplySlot")
    }
}

impl ReplySlot {
    fn new(payload: *mut u8, payload_bytes: usize) -> ReplySlot {
        ReplySlot {
            reply: Mutex::new(SlotState::default()),
            replied: Condvar::new(),
            payload,
            payload_bytes,
        }
    }

    pub(crate) fn put(&self, data: &[IoSlice<'_>]) {
        let mut reply = self.reply.lock();
        let total: usize = data.iter().map(|d| d.len()).sum();
        reply.bytes.clear();
        reply.in_payload = None;
        if reply.direct
            && total >= OUT_HEADER_BYTES
            && total - OUT_HEADER_BYTES <= self.payload_bytes
        {
            let mut at = 0; // offset in the payload area
            for d in data {
                let header_part = (OUT_HEADER_BYTES - reply.bytes.len()).min(d.len());
                reply.bytes.extend_from_slice(&d[..header_part]);
                let rest = &d[header_part..];
                // SAFETY: within the payload area (checked above), which nothing else
                // touches while `direct` is set.
                unsafe {
                    std::ptr::copy_nonoverlapping(rest.as_ptr(), self.payload.add(at), rest.len())
                };
                at += rest.len();
            }
            reply.in_payload = Some(at);
        } else {
            for d in data {
                reply.bytes.extend_from_slice(d);
            }
        }
        self.set_ready(reply);
    }

    /// Marks the reply ready and tells whoever waits for it.
    fn set_ready(&self, mut reply: parking_lot::MutexGuard<'_, SlotState>) {
        reply.ready = true;
        let deferred = reply.deferred.take();
        drop(reply);
        self.replied.notify_one();
        if let Some((finished, entry)) = deferred {
            finished.push(entry);
        }
    }

    /// After the handler returned: true if the request has been replied to; otherwise the
    /// reply will report entry `entry` to `finished` when it comes.
    fn replied_or_defer(&self, finished: &Arc<Finished>, entry: usize) -> bool {
        let mut reply = self.reply.lock();
        if !reply.ready {
            reply.deferred = Some((finished.clone(), entry));
        }
        reply.ready
    }

    /// The payload area, for a reply of up to `len` data bytes to be written there directly,
    /// if the request left the area free (tidefs: `ReplyData::data_with`).
    ///
    /// # Safety
    /// Only the request's one reply may call this, once, and must then send its reply
    /// (`put_filled`, or `put`, which does not read the area).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn payload_area(&self, len: usize) -> Option<&mut [u8]> {
        if !self.reply.lock().direct || len > self.payload_bytes {
            return None;
        }
        // SAFETY: while `direct` is set nothing else touches the area (the queue's thread
        // clears it only once the reply is ready, and the request brought nothing there);
        // the caller is the one reply.
        Some(unsafe { std::slice::from_raw_parts_mut(self.payload, len) })
    }

    /// Sends a reply whose `n` data bytes are in the payload area already.
    pub(crate) fn put_filled(&self, unique: u64, n: usize) {
        let mut reply = self.reply.lock();
        let len = u32::try_from(OUT_HEADER_BYTES + n).expect("within the payload area");
        reply.bytes.clear();
        reply.bytes.extend_from_slice(&len.to_le_bytes());
        reply.bytes.extend_from_slice(&0i32.to_le_bytes()); // no error
        reply.bytes.extend_from_slice(&unique.to_le_bytes());
        reply.in_payload = Some(n);
        self.set_ready(reply);
    }

    /// Lets a reply be written straight into the payload area (the request has none there).
    fn set_direct(&self, direct: bool) {
        self.reply.lock().direct = direct;
    }

    fn is_ready(&self) -> bool {
        self.reply.lock().ready
    }

    /// Waits for the reply (a file system may reply from another thread, later) and hands
    /// it to `f`.
    fn take<T>(&self, f: impl FnOnce(Reply<'_>) -> T) -> T {
        let mut reply = self.reply.lock();
        while !reply.ready {
            self.replied.wait(&mut reply);
        }
        reply.ready = false;
        reply.direct = false;
        match reply.in_payload {
            Some(n) => f(Reply::InPayload(&reply.bytes, n)),
            None => f(Reply::Bytes(&reply.bytes)),
        }
    }
}

/// One ring entry: buffers the kernel reads and writes while the entry is registered, so
/// they are allocated once and never move.
struct Entry {
    qid: u16,
    header: Box<[u8]>,
    /// `HEADROOM` bytes, then the payload area registered with the kernel.
    buf: Box<[u8]>,
    iov: Box<[libc::iovec; 2]>,
    slot: Arc<ReplySlot>,
}

// The iovecs point into the entry's own boxes, which move with it unchanged.
unsafe impl Send for Entry {}

impl Entry {
    fn new(qid: u16, payload_bytes: usize) -> Entry {
        let mut header = vec![0u8; HEADER_BYTES].into_boxed_slice();
        let mut buf = vec![0u8; HEADROOM + payload_bytes].into_boxed_slice();
        // SAFETY: HEADROOM is within buf, whose heap block never moves.
        let slot = Arc::new(ReplySlot::new(
            unsafe { buf.as_mut_ptr().add(HEADROOM) },
            payload_bytes,
        ));
        let iov = Box::new([
            libc::iovec {
                iov_base: header.as_mut_ptr().cast(),
                iov_len: HEADER_BYTES,
            },
            libc::iovec {
                // SAFETY: HEADROOM is within buf.
                iov_base: unsafe { buf.as_mut_ptr().add(HEADROOM) }.cast(),
                iov_len: payload_bytes,
            },
        ]);
        Entry {
            qid,
            header,
            buf,
            iov,
            slot,
        }
    }
}

/// Entries whose requests a worker has served, for the queue's thread to commit.
struct Finished {
    entries: Mutex<Vec<usize>>,
    changed: Condvar,
    /// Read by the queue's ring, so that its thread wakes up.
    eventfd: OwnedFd,
}

impl Finished {
    fn new() -> io::Result<Finished> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Finished {
            entries: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            // SAFETY: a new descriptor, owned from here on.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn push(&self, entry: usize) {
        self.entries.lock().push(entry);
        self.changed.notify_all();
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer. An eventfd write only fails when its
        // counter would overflow, and the queue's thread reads it long before.
        let _ = unsafe { libc::write(self.eventfd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
}

/// When any queue last took a request. Every queue's thread polls while any queue is busy:
/// a CPU whose thread sleeps looks idle to the scheduler, which then moves a process that is
/// making requests onto it, away from the queue whose thread is polling for them (measured:
/// with each thread polling only after its own requests, one creating process kept both
/// threads busy, moving whenever one thread's window ran out).
struct Activity {
    start: Instant,
    last_nanos: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_nanos: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_nanos() as u64;
        self.last_nanos
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    fn since_last(&self) -> Duration {
        let last = self.last_nanos.load(std::sync::atomic::Ordering::Relaxed);
        self.start
            .elapsed()
            .saturating_sub(Duration::from_nanos(last))
    }
}

/// A request handed to a worker: where it lies in its entry's payload buffer (which the
/// queue's thread leaves alone until the worker reports) and where to reply.
struct Job {
    msg: *const u8,
    len: usize,
    slot: Arc<ReplySlot>,
    finished: Arc<Finished>,
    entry: usize,
    unique: u64,
}

// The message stays in place, untouched by its queue's thread, until the job is finished.
unsafe impl Send for Job {}

/// One queue's thread: its io_uring and its entries, all for the queue of one online CPU
/// (and one entry each for offline CPUs' queues, see the module comment).
pub(crate) struct Queue {
    // Dropped first: the kernel lets go of the buffers below when the ring closes.
    ring: IoUring<Entry128, cqueue::Entry>,
    cpu: usize,
    name: String,
    entries: Vec<Entry>,
    payload_bytes: usize,
    finished: Arc<Finished>,
    /// Where the ring reads the eventfd's counter into.
    eventfd_buf: Box<[u8; 8]>,
    /// Requests with a worker now.
    at_workers: usize,
}

/// The rings of all queues, built while INIT is answered and served by [`Queues::spawn`].
pub(crate) struct Queues {
    queues: Vec<Queue>,
}

impl fmt::Debug for Queues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Queues({})", self.queues.len())
    }
}

impl Queues {
    /// Builds a ring per online CPU with entries for its queue (the first also gets one for
    /// each possible CPU that is offline). `payload_bytes` must be at least what the kernel
    /// needs for the largest request or reply (max_write, max_pages pages).
    pub(crate) fn build(payload_bytes: usize) -> io::Result<Queues> {
        let possible = read_cpu_list("/sys/devices/system/cpu/possible")?;
        let online = read_cpu_list("/sys/devices/system/cpu/online")?;
        let online: Vec<usize> = online
            .into_iter()
            .filter(|c| possible.contains(c))
            .collect();
        let Some(&first) = online.first() else {
            return Err(io::Error::other("no online CPU"));
        };
        let page = page_size::get();
        let payload_bytes = payload_bytes.div_ceil(page) * page;
        let mut queues = Vec::with_capacity(online.len());
        for &cpu in &online {
            let q = qid(cpu)?;
            let mut entries: Vec<Entry> = (0..ENTRIES_PER_QUEUE)
                .map(|_| Entry::new(q, payload_bytes))
                .collect();
            if cpu == first {
                for &offline in possible.iter().filter(|c| !online.contains(c)) {
                    entries.push(Entry::new(qid(offline)?, payload_bytes));
                }
            }
            // Disabled until its thread enables it: the thread that serves a ring must be
            // its only submitter, which lets completions run in that thread when it waits.
            let ring = IoUring::<Entry128, cqueue::Entry>::builder()
                .setup_r_disabled()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .build((entries.len() * 2 + 2).next_power_of_two() as u32)?;
            queues.push(Queue {
                ring,
                cpu,
                name: format!("fuser-ring-{cpu}"),
                entries,
                payload_bytes,
                finished: Arc::new(Finished::new()?),
                eventfd_buf: Box::new([0; 8]),
                at_workers: 0,
            });
        }
        Ok(Queues { queues })
    }

    /// Starts a thread per queue, pinned to its CPU, which registers the entries and serves
    /// requests until the connection ends, and the workers for long requests.
    pub(crate) fn spawn<FS: Filesystem>(
        self,
        ch: &Channel,
        poll: Duration,
        event_loop: impl Fn(String) -> SessionEventLoop<FS>,
    ) -> io::Result<Vec<JoinHandle<io::Result<()>>>> {
        let fd = ch.as_fd().as_raw_fd();
        let (jobs, waiting) = mpsc::channel::<Job>();
        let waiting = Arc::new(Mutex::new(waiting));
        let mut threads = Vec::with_capacity(self.queues.len() * 2);
        for n in 0..self.queues.len() {
            let se = event_loop(format!("fuser-worker-{n}"));
            let waiting = waiting.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fuser-worker-{n}"))
                    .spawn(move || {
                        work(&waiting, &se);
                        Ok(())
                    })?,
            );
        }
        let activity = Arc::new(Activity::new());
        for queue in self.queues {
            let se = event_loop(queue.name.clone());
            let activity = activity.clone();
            let jobs = jobs.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(queue.name.clone())
                    .spawn(move || queue.serve(fd, poll, &activity, &jobs, &se))?,
            );
        }
        Ok(threads)
    }
}

/// A worker: serves the requests handed to it until every queue has ended.
fn work<FS: Filesystem>(waiting: &Mutex<mpsc::Receiver<Job>>, se: &SessionEventLoop<FS>) {
    loop {
        let Ok(job) = waiting.lock().recv() else {
            return;
        };
        // SAFETY: see `Job`.
        let msg = unsafe { std::slice::from_raw_parts(job.msg, job.len) };
        match RequestWithSender::from_ring(se.ch.sender(), job.slot.clone(), msg) {
            Some(req) => dispatch(&req, se, &job.slot, job.unique),
            None => error_reply(&job.slot, job.unique, libc::EIO),
        }
        if job.slot.replied_or_defer(&job.finished, job.entry) {
            job.finished.push(job.entry);
        }
    }
}

/// Dispatches a request taken from a ring. A panic in the file system fails the request
/// with EIO (fuser's reply does so when it is dropped unsent) and the thread goes on: over
/// /dev/fuse another reader would take the next request, but a queue has only its thread.
fn dispatch<FS: Filesystem>(
    req: &RequestWithSender<'_>,
    se: &SessionEventLoop<FS>,
    slot: &ReplySlot,
    unique: u64,
) {
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| req.dispatch(se)));
    if served.is_err() {
        report!(
            "{}: the file system panicked serving request {unique}",
            se.thread_name
        );
        if !slot.is_ready() {
            error_reply(slot, unique, libc::EIO);
        }
    }
}

/// What became of a request the queue's thread took.
enum Taken {
    /// Served; its reply is in the slot.
    Served,
    /// With a worker, or to be answered later from another thread: reported through
    /// `Finished` once replied to.
    Handed,
}

impl Queue {
    fn serve<FS: Filesystem>(
        mut self,
        fd: RawFd,
        poll: Duration,
        activity: &Activity,
        jobs: &mpsc::Sender<Job>,
        se: &SessionEventLoop<FS>,
    ) -> io::Result<()> {
        let result = self.serve_until_end(fd, poll, activity, jobs, se);
        // Workers may still be writing into the entries' buffers.
        let mut finished = self.finished.entries.lock();
        while finished.len() < self.at_workers {
            self.finished.changed.wait(&mut finished);
        }
        result
    }

    fn serve_until_end<FS: Filesystem>(
        &mut self,
        fd: RawFd,
        poll: Duration,
        activity: &Activity,
        jobs: &mpsc::Sender<Job>,
        se: &SessionEventLoop<FS>,
    ) -> io::Result<()> {
        if let Err(e) = self.register(fd) {
            // The kernel waits for every queue before it uses any: without this one's
            // entries it would wait for ever. Make it fall back to /dev/fuse instead.
            report!(
                "{}: cannot register with the kernel ({e}); requests go through /dev/fuse",
                self.name
            );
            fall_back_to_dev_fuse(fd);
            return Err(e);
        }
        let mut done = Vec::with_capacity(self.entries.len() + 1);
        loop {
            let polling = !poll.is_zero() && activity.since_last() < poll;
            let entered = if polling {
                self.poll_once()
            } else {
                self.ring.submit_and_wait(1)
            };
            match entered {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                    // Short of kernel memory for the moment: try again shortly.
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Err(e) => return Err(e),
            }
            done.clear();
            done.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            if done.is_empty() {
                // Polling found nothing: let anything runnable on this CPU go first.
                std::thread::yield_now();
                continue;
            }
            // Only small requests keep the threads polling: requests handed to workers take
            // long enough that a wakeup is cheap beside them, and polling through a stream of
            // large reads or writes took the CPU their copies need (tidefs).
            let mut served_small = false;
            for &(tag, res) in &done {
                if tag == WORKERS_DONE {
                    let finished = std::mem::take(&mut *self.finished.entries.lock());
                    for i in finished {
                        self.at_workers -= 1;
                        self.commit(fd, i)?;
                    }
                    self.read_eventfd()?;
                    continue;
                }
                let i = tag as usize;
                if res < 0 {
                    let errno = -res;
                    // The connection ended (unmount) or the ring is being torn down.
                    if matches!(errno, libc::ENOTCONN | libc::ECANCELED | libc::ENODEV) {
                        debug!("{}: connection ended", self.name);
                        return Ok(());
                    }
                    let err = io::Error::from_raw_os_error(errno);
                    report!("{}: entry {i}: {err}", self.name);
                    return Err(err);
                }
                match self.take(i, jobs, se) {
                    Taken::Served => {
                        served_small = true;
                        self.commit(fd, i)?
                    }
                    Taken::Handed => self.at_workers += 1,
                }
            }
            if served_small {
                activity.touch();
            }
        }
    }

    /// Enables the ring on this thread, pins it to its CPU and registers every entry (and the
    /// read of the workers' eventfd) with the kernel.
    fn register(&mut self, fd: RawFd) -> io::Result<()> {
        if std::env::var_os("FUSER_IO_URING_FAILPOINT").is_some_and(|v| v == "register") {
            // For tests of the fallback below.
            return Err(io::Error::other(
                "failpoint FUSER_IO_URING_FAILPOINT=register",
            ));
        }
        self.ring.submitter().register_enable_rings()?;
        if let Err(e) = pin_to_cpu(self.cpu) {
            warn!("{}: not pinned to CPU {}: {e}", self.name, self.cpu);
        }
        for i in 0..self.entries.len() {
            let entry = &self.entries[i];
            let sqe = command(
                fd,
                FUSE_IO_URING_CMD_REGISTER,
                entry.qid,
                0,
                Some(&*entry.iov),
            )
            .user_data(i as u64);
            self.push(sqe)?;
        }
        self.read_eventfd()?;
        self.ring.submit()?;
        Ok(())
    }

    /// Submits what is queued and runs the ring's pending work (which is how requests arrive)
    /// without waiting.
    fn poll_once(&mut self) -> io::Result<usize> {
        let to_submit = self.ring.submission().len() as u32;
        // SAFETY: no argument is passed.
        unsafe {
            self.ring.submitter().enter::<libc::sigset_t>(
                to_submit,
                0,
                IORING_ENTER_GETEVENTS,
                None,
            )
        }
    }

    fn push(&mut self, sqe: Entry128) -> io::Result<()> {
        // SAFETY: the buffers and iovecs the entry points at live as long as the ring (both
        // are owned by this queue, and the ring is dropped first).
        while unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }

    /// Asks the ring to read the workers' eventfd.
    fn read_eventfd(&mut self) -> io::Result<()> {
        let sqe = opcode::Read::new(
            Fd(self.finished.eventfd.as_raw_fd()),
            self.eventfd_buf.as_mut_ptr(),
            8,
        )
        .build()
        .user_data(WORKERS_DONE);
        self.push(sqe.into())
    }

    /// Takes the request in entry `i`: serves it here, or hands it to a worker if it may
    /// take long.
    fn take<FS: Filesystem>(
        &mut self,
        i: usize,
        jobs: &mpsc::Sender<Job>,
        se: &SessionEventLoop<FS>,
    ) -> Taken {
        let payload_bytes = self.payload_bytes;
        let name = &self.name;
        let entry = &mut self.entries[i];
        let h = &entry.header;
        let len = u32_at(h, 0) as usize;
        let opcode = u32_at(h, 4);
        let unique = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let payload_sz = u32_at(h, PAYLOAD_SZ_AT) as usize;
        let Some(arg0) = len
            .checked_sub(IN_HEADER_BYTES + payload_sz)
            .filter(|&a| a <= OP_IN_BYTES && payload_sz <= payload_bytes)
        else {
            report!("{name}: malformed request (length {len}, payload {payload_sz})");
            error_reply(&entry.slot, unique, libc::EIO);
            return Taken::Served;
        };
        // The in header and first argument go back in front of the payload.
        let start = HEADROOM - IN_HEADER_BYTES - arg0;
        let (front, _) = entry.buf.split_at_mut(HEADROOM);
        front[start..start + IN_HEADER_BYTES].copy_from_slice(&h[..IN_HEADER_BYTES]);
        front[HEADROOM - arg0..].copy_from_slice(&h[OP_IN_AT..OP_IN_AT + arg0]);
        entry.slot.set_direct(payload_sz == 0);
        let msg = &entry.buf[start..HEADROOM + payload_sz];
        let long = match opcode {
            op if op == fuse_opcode::FUSE_READ as u32 => {
                arg0 >= READ_SIZE_AT + 4
                    && u32_at(h, OP_IN_AT + READ_SIZE_AT) as usize >= LARGE_IO_BYTES
            }
            op if op == fuse_opcode::FUSE_WRITE as u32 => payload_sz >= LARGE_IO_BYTES,
            op => op == fuse_opcode::FUSE_FSYNC as u32 || op == fuse_opcode::FUSE_FSYNCDIR as u32,
        };
        if long {
            let job = Job {
                msg: msg.as_ptr(),
                len: msg.len(),
                slot: entry.slot.clone(),
                finished: self.finished.clone(),
                entry: i,
                unique,
            };
            if jobs.send(job).is_ok() {
                return Taken::Handed;
            }
        }
        match RequestWithSender::from_ring(se.ch.sender(), entry.slot.clone(), msg) {
            Some(req) if opcode == fuse_opcode::FUSE_DESTROY as u32 => {
                req.reply::<ReplyEmpty>().ok();
            }
            Some(req) => dispatch(&req, se, &entry.slot, unique),
            None => error_reply(&entry.slot, unique, libc::EIO),
        }
        // A handler may reply later from another thread (tidefs takes snapshots so: they
        // wait for requests this thread must serve); the entry then waits like a worker's.
        if entry.slot.replied_or_defer(&self.finished, i) {
            Taken::Served
        } else {
            Taken::Handed
        }
    }

    /// Puts the reply to entry `i`'s request in place and sends it back to the kernel, which
    /// then gives the entry the next request.
    fn commit(&mut self, fd: RawFd, i: usize) -> io::Result<()> {
        let payload_bytes = self.payload_bytes;
        let name = &self.name;
        let Entry {
            qid,
            header,
            buf,
            slot,
            ..
        } = &mut self.entries[i];
        let unique = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        slot.take(|reply| {
            let args = match reply {
                Reply::InPayload(out_header, n) => {
                    header[..OUT_HEADER_BYTES].copy_from_slice(out_header);
                    n
                }
                Reply::Bytes(reply) => {
                    let (out_header, args) = reply.split_at(OUT_HEADER_BYTES.min(reply.len()));
                    if out_header.len() == OUT_HEADER_BYTES && args.len() <= payload_bytes {
                        header[..OUT_HEADER_BYTES].copy_from_slice(out_header);
                        buf[HEADROOM..HEADROOM + args.len()].copy_from_slice(args);
                        args.len()
                    } else {
                        report!("{name}: a reply of {} bytes does not fit", reply.len());
                        write_error_header(header, unique, libc::EIO);
                        0
                    }
                }
            };
            header[PAYLOAD_SZ_AT..PAYLOAD_SZ_AT + 4].copy_from_slice(&(args as u32).to_le_bytes());
        });
        let sqe =
            command(fd, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, *qid, unique, None).user_data(i as u64);
        self.push(sqe)
    }
}

/// Makes the kernel give up io_uring for this connection, so that requests come through
/// /dev/fuse again: it does so when a registration fails, and one for a queue that does not
/// exist always does.
fn fall_back_to_dev_fuse(fd: RawFd) {
    let refused = || -> io::Result<()> {
        let mut ring = IoUring::<Entry128, cqueue::Entry>::builder().build(2)?;
        let mut header = vec![0u8; HEADER_BYTES];
        let mut payload = vec![0u8; FUSE_MIN_PAYLOAD];
        let iov = [
            libc::iovec {
                iov_base: header.as_mut_ptr().cast(),
                iov_len: header.len(),
            },
            libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            },
        ];
        let sqe = command(fd, FUSE_IO_URING_CMD_REGISTER, u16::MAX, 0, Some(&iov));
        // SAFETY: the buffers outlive the wait for the command's completion below.
        unsafe { ring.submission().push(&sqe) }.map_err(|_| io::Error::other("queue full"))?;
        ring.submit_and_wait(1)?;
        Ok(())
    };
    if let Err(e) = refused() {
        report!("cannot make the kernel fall back to /dev/fuse ({e}): requests may hang");
    }
}

/// A payload buffer's least size (the kernel's FUSE_MIN_READ_BUFFER).
const FUSE_MIN_PAYLOAD: usize = 8192;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn error_reply(slot: &ReplySlot, unique: u64, errno: i32) {
    let mut h = [0u8; OUT_HEADER_BYTES];
    write_error_header(&mut h, unique, errno);
    slot.put(&[IoSlice::new(&h)]);
}

/// `struct fuse_out_header` of an error reply.
fn write_error_header(h: &mut [u8], unique: u64, errno: i32) {
    h[0..4].copy_from_slice(&(OUT_HEADER_BYTES as u32).to_le_bytes());
    h[4..8].copy_from_slice(&(-errno).to_le_bytes());
    h[8..16].copy_from_slice(&unique.to_le_bytes());
}

/// An `IORING_OP_URING_CMD` for the fuse device carrying `struct fuse_uring_cmd_req`
/// (flags, commit id, queue id); a registration also points at the entry's two iovecs.
fn command(
    fd: RawFd,
    op: u32,
    qid: u16,
    commit_id: u64,
    iov: Option<&[libc::iovec; 2]>,
) -> Entry128 {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_le_bytes());
    cmd[16..18].copy_from_slice(&qid.to_le_bytes());
    let mut sqe = UringCmd80::new(Fd(fd), op).cmd(cmd);
    if let Some(iov) = iov {
        sqe = sqe.addr(Some(iov.as_ptr() as u64));
    }
    let sqe = sqe.build();
    if iov.is_none() {
        return sqe;
    }
    // The kernel wants the iovec count in the SQE's `len` (offset 24), which the io-uring
    // crate's UringCmd80 does not set.
    // SAFETY: Entry128 is a repr(C) wrapper of the 128-byte SQE.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[24..28].copy_from_slice(&2u32.to_le_bytes());
    unsafe { std::mem::transmute(raw) }
}

fn qid(cpu: usize) -> io::Result<u16> {
    u16::try_from(cpu).map_err(|_| io::Error::other(format!("CPU {cpu} out of range")))
}

fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it (checked above).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(io::Error::other("CPU number too large"));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Parses a kernel CPU list such as `0-3,5,7-8`.
fn read_cpu_list(path: &str) -> io::Result<Vec<usize>> {
    parse_cpu_list(std::fs::read_to_string(path)?.trim())
        .ok_or_else(|| io::Error::other(format!("{path}: not a CPU list")))
}

fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-4,7"), Some(vec![0, 2, 3, 4, 7]));
        assert_eq!(parse_cpu_list("0-x"), None);
    }

    /// A reply filled in place lands in the payload area, header apart; a request that
    /// brought a payload gets its reply copied as usual. (tidefs)
    #[test]
    fn a_reply_given_later_reports_its_entry_as_finished() {
        use crate::reply::{Reply as _, ReplyEmpty, ReplySender};
        let mut area = vec![0u8; 64];
        let slot = Arc::new(ReplySlot::new(area.as_mut_ptr(), area.len()));
        let finished = Arc::new(Finished::new().unwrap());
        let reply = |unique: u64| {
            ReplyEmpty::new(
                crate::ll::RequestId(unique),
                ReplySender::Ring(slot.clone()),
            )
        };
        // Replied before the handler returned: committed at once, nothing reported.
        reply(1).ok();
        assert!(slot.replied_or_defer(&finished, 3));
        slot.take(|_| ());
        assert!(finished.entries.lock().is_empty());
        // Replied later from another thread: the entry is reported when the reply comes.
        let later = reply(2);
        assert!(!slot.replied_or_defer(&finished, 4));
        assert!(finished.entries.lock().is_empty());
        std::thread::spawn(move || later.ok()).join().unwrap();
        assert_eq!(*finished.entries.lock(), [4]);
        slot.take(|r| match r {
            Reply::Bytes(b) => assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 2),
            Reply::InPayload(..) => panic!("an empty reply has no payload"),
        });
        // Reported once: the next request's reply is not deferred.
        reply(5).ok();
        assert!(slot.replied_or_defer(&finished, 4));
        assert_eq!(finished.entries.lock().len(), 1);
    }

    #[test]
    fn data_filled_in_place_goes_into_the_payload_area() {
        use crate::reply::{Reply as _, ReplyData, ReplySender};
        let mut area = vec![0u8; 64];
        let slot = Arc::new(ReplySlot::new(area.as_mut_ptr(), area.len()));
        let reply_with = |direct: bool, unique: u64| {
            slot.set_direct(direct);
            ReplyData::new(
                crate::ll::RequestId(unique),
                ReplySender::Ring(slot.clone()),
            )
        };
        reply_with(true, 7).data_with(16, |buf| {
            buf[..5].copy_from_slice(b"hello");
            Ok(5)
        });
        slot.take(|r| match r {
            Reply::InPayload(header, 5) => {
                assert_eq!(u32_at(header, 0), 21);
                assert_eq!(u32_at(header, 4), 0);
                assert_eq!(u64::from_le_bytes(header[8..16].try_into().unwrap()), 7);
            }
            _ => panic!("not in the payload area"),
        });
        assert_eq!(&area[..5], b"hello");
        // Not direct: the data comes back as bytes after the header.
        reply_with(false, 8).data_with(16, |buf| {
            buf[..3].copy_from_slice(b"abc");
            Ok(3)
        });
        slot.take(|r| match r {
            Reply::Bytes(b) => assert_eq!(&b[16..], b"abc"),
            _ => panic!("payload area used while the request's payload is there"),
        });
        // An error from the filler is the reply.
        reply_with(true, 9).data_with(16, |_| Err(crate::Errno::ENOENT));
        slot.take(|r| match r {
            Reply::InPayload(header, 0) | Reply::Bytes(header) => {
                assert_eq!(u32_at(header, 4) as i32, -libc::ENOENT);
            }
            _ => panic!("error reply carried data"),
        });
        // Too big for the area: a buffer of its own.
        reply_with(true, 10).data_with(100, |buf| {
            buf[99] = 1;
            Ok(100)
        });
        slot.take(|r| match r {
            Reply::Bytes(b) => assert_eq!(b.len(), 116),
            Reply::InPayload(..) => panic!("100 bytes do not fit the area"),
        });
    }

    #[test]
    fn register_command_carries_iovec_count_and_queue() {
        let iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2];
        let sqe = command(5, FUSE_IO_URING_CMD_REGISTER, 3, 9, Some(&iov));
        let raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
        assert_eq!(u32_at(&raw, 24), 2);
        assert_eq!(
            u64::from_le_bytes(raw[16..24].try_into().unwrap()),
            iov.as_ptr() as u64
        );
        assert_eq!(
            u64::from_le_bytes(raw[48 + 8..48 + 16].try_into().unwrap()),
            9
        );
        assert_eq!(
            u16::from_le_bytes(raw[48 + 16..48 + 18].try_into().unwrap()),
            3
        );
    }
}
