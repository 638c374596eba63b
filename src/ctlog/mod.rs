//! Certificate Transparency logs themselves, beside the certstream feed: the trusted
//! log list (`loglist`) and the tracking of which entry indices the feed delivered
//! (`gaps`). Both modules are pure: no I/O, no threads of their own.

pub mod gaps;
pub mod loglist;
