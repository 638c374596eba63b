//! The certstream feed as a certificate source: the `feed` thread reads the
//! WebSocket (`reader`), the `worker-N` pool turns its frames into matched
//! certificates (`worker`), reading the servers' dialects with `peek` (every
//! frame) and `parse` (matches only), whose message types live in `message`.

mod message;
mod parse;
mod peek;
pub mod reader;
pub(crate) mod worker;

pub use message::{MessageKind, ParseError, Peek};
pub use parse::{parse_certificate, parse_matched};
pub use peek::peek;
