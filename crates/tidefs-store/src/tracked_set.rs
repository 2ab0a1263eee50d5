//! A set of block numbers whose changes can be undone, so a savepoint costs O(changes)
//! instead of a copy of the whole set (a transaction may allocate many thousands of extents).

use rustc_hash::FxHashSet as HashSet;

#[derive(Default, Clone)]
pub(crate) struct TrackedSet {
    set: HashSet<u64>,
    /// While a savepoint is open: (added?, block) for every change, in order.
    log: Option<Vec<(bool, u64)>>,
}

impl TrackedSet {
    pub fn insert(&mut self, v: u64) -> bool {
        let added = self.set.insert(v);
        if let (true, Some(log)) = (added, &mut self.log) {
            log.push((true, v));
        }
        added
    }

    pub fn remove(&mut self, v: u64) -> bool {
        let removed = self.set.remove(&v);
        if let (true, Some(log)) = (removed, &mut self.log) {
            log.push((false, v));
        }
        removed
    }

    pub fn contains(&self, v: u64) -> bool {
        self.set.contains(&v)
    }

    /// Empties the set (outside savepoints only).
    pub fn take_all(&mut self) -> Vec<u64> {
        debug_assert!(self.log.is_none());
        self.set.drain().collect()
    }

    pub fn begin_savepoint(&mut self) {
        self.log = Some(Vec::new());
    }

    pub fn end_savepoint(&mut self) {
        self.log = None;
    }

    /// Undoes every change since the savepoint began.
    pub fn rollback(&mut self) {
        if let Some(log) = self.log.take() {
            for (added, v) in log.into_iter().rev() {
                if added {
                    self.set.remove(&v);
                } else {
                    self.set.insert(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_exactly_the_state_at_the_savepoint() {
        let mut s = TrackedSet::default();
        s.insert(1);
        s.insert(2);
        s.begin_savepoint();
        s.remove(1);
        s.insert(3);
        s.insert(1);
        s.remove(2);
        s.rollback();
        let mut v: Vec<u64> = s.take_all();
        v.sort();
        assert_eq!(v, [1, 2]);
    }
}
