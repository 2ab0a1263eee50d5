//! Copy-on-write B+tree algorithms over [`crate::node::Node`]s.

pub(crate) mod changed;
pub(crate) mod cursor;
pub(crate) mod diff;
pub(crate) mod mutate;
pub(crate) mod parallel_insert;
pub(crate) mod root;
pub(crate) mod write_out;
