//! A simulated device that keeps what was *written* apart from what is *durable*, so
//! tests can cut the power at any moment and look at what a real disk could hold after it:
//! everything flushed, plus any subset of the later writes, in any order, with the last
//! one possibly torn at a sector boundary.

use std::io;

use parking_lot::Mutex;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::device::{copy_out, BlockDevice};

/// The size of the unit a torn write is cut at (a disk sector).
const SECTOR_BYTES: usize = 512;

#[derive(Default)]
struct State {
    /// What reads see: every write applied.
    written: Vec<u8>,
    /// What survived the last flush.
    durable: Vec<u8>,
    /// Writes since the last flush, in issue order.
    unflushed: Vec<(u64, Vec<u8>)>,
    /// Operations (writes and flushes) so far.
    ops: u64,
    /// When set, the device dies at this operation: it and every later one fail.
    fail_at_op: Option<u64>,
}

/// A fault-injecting in-memory device.
#[derive(Default)]
pub struct FaultDevice {
    state: Mutex<State>,
}

impl FaultDevice {
    pub fn new() -> FaultDevice {
        FaultDevice::default()
    }

    /// A device whose written and durable contents are `image`.
    pub fn from_image(image: Vec<u8>) -> FaultDevice {
        FaultDevice {
            state: Mutex::new(State {
                written: image.clone(),
                durable: image,
                ..State::default()
            }),
        }
    }

    /// Makes the device die at operation number `op` (counting writes and flushes from
    /// now): that operation and all later ones fail as after a power cut.
    pub fn fail_after_ops(&self, op: u64) {
        let mut s = self.state.lock();
        s.fail_at_op = Some(s.ops + op);
    }

    /// Operations issued so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Whether the device has died.
    pub fn is_dead(&self) -> bool {
        let s = self.state.lock();
        matches!(s.fail_at_op, Some(at) if s.ops >= at)
    }

    /// What a disk could hold after a power cut now: the durable image plus a random
    /// subset of the unflushed writes applied in random order, one of them possibly torn.
    pub fn crash_image(&self, rng: &mut impl Rng) -> Vec<u8> {
        let s = self.state.lock();
        let mut image = s.durable.clone();
        let mut pending: Vec<&(u64, Vec<u8>)> = s.unflushed.iter().collect();
        pending.shuffle(rng);
        let keep = rng.gen_range(0..=pending.len());
        let torn = if keep > 0 && rng.gen_bool(0.5) {
            Some(rng.gen_range(0..keep))
        } else {
            None
        };
        for (i, (offset, data)) in pending.into_iter().take(keep).enumerate() {
            let mut len = data.len();
            if torn == Some(i) {
                let sectors = data.len().div_ceil(SECTOR_BYTES);
                len = (rng.gen_range(0..sectors) * SECTOR_BYTES).min(data.len());
            }
            apply(&mut image, *offset, &data[..len]);
        }
        image
    }

    /// The durable image only (a power cut that lost every unflushed write).
    pub fn durable_image(&self) -> Vec<u8> {
        self.state.lock().durable.clone()
    }

    fn tick(s: &mut State) -> io::Result<()> {
        if matches!(s.fail_at_op, Some(at) if s.ops >= at) {
            return Err(io::Error::other("simulated power cut"));
        }
        s.ops += 1;
        Ok(())
    }
}

fn apply(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[offset as usize..end].copy_from_slice(data);
}

impl BlockDevice for FaultDevice {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let s = self.state.lock();
        copy_out(&s.written, offset, buf);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock();
        FaultDevice::tick(&mut s)?;
        apply(&mut s.written, offset, buf);
        s.unflushed.push((offset, buf.to_vec()));
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        FaultDevice::tick(&mut s)?;
        let pending = std::mem::take(&mut s.unflushed);
        for (offset, data) in pending {
            apply(&mut s.durable, offset, &data);
        }
        Ok(())
    }

    fn size_bytes(&self) -> io::Result<u64> {
        Ok(self.state.lock().written.len() as u64)
    }

    fn grow(&self, bytes: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        if (s.written.len() as u64) < bytes {
            s.written.resize(bytes as usize, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn unflushed_writes_may_be_lost_and_flushed_ones_never_are() {
        let dev = FaultDevice::new();
        dev.write_at(0, &[1u8; 1024]).unwrap();
        dev.flush().unwrap();
        dev.write_at(0, &[2u8; 1024]).unwrap();
        let mut seen_lost = false;
        let mut seen_kept = false;
        for seed in 0..64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let image = dev.crash_image(&mut rng);
            assert!(image[..1024].iter().all(|&b| b == 1 || b == 2));
            seen_lost |= image[1023] == 1;
            seen_kept |= image[1023] == 2;
        }
        assert!(seen_lost && seen_kept);
    }

    #[test]
    fn a_dead_device_fails_every_later_operation() {
        let dev = FaultDevice::new();
        dev.fail_after_ops(1);
        dev.write_at(0, &[1]).unwrap();
        assert!(dev.write_at(0, &[2]).is_err());
        assert!(dev.flush().is_err());
        assert_eq!(dev.durable_image(), Vec::<u8>::new());
    }
}
