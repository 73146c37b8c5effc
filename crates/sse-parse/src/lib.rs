//! A zero-copy, byte-level parser for Server-Sent Events, exact to the WHATWG HTML rules
//! ("event stream interpretation").
//!
//! [`EventParser`] takes the body's chunks as they arrive, whatever their boundaries, and
//! hands out [`Item`]s: each [`Event`] as soon as the blank line that ends it is complete, and
//! each valid `retry` field. Fields that lie within the chunk come back as views into it; with
//! the `bytes` feature, [`EventParser::feed_bytes`] gives `Bytes` slices the caller can keep, and
//! the `stream` feature adds [`EventStream`], a `futures_core::Stream` over a body of
//! `Result<Bytes, E>`. [`Limits`] bound the memory a stream can take; past them comes a typed
//! [`Error`], never growth or a panic.
//!
//! What the parser follows exactly: CR, LF and CRLF line ends (also a CRLF split across chunks),
//! one leading BOM stripped, comments, fields without a colon, one space stripped after the
//! colon, data lines joined with LF, no dispatch without data, the event type reset at every
//! blank line, the last event ID kept across events (ignored when it holds NUL), `retry` only
//! when all ASCII digits, unknown fields ignored, and an unfinished event at the end discarded.
//!
//! ```
//! use sse_parse::{EventParser, Item};
//!
//! let mut parser = EventParser::new();
//! let mut seen = Vec::new();
//! for chunk in [&b"event: greet\r\ndata: hel"[..], b"lo\r", b"\n\r\ndata: x\n\n"] {
//!     parser
//!         .feed(chunk, |item| {
//!             if let Item::Event(event) = item {
//!                 seen.push((event.event_type_str().unwrap().to_owned(), event.data_lossy().into_owned()));
//!             }
//!         })
//!         .expect("within the limits");
//! }
//! assert_eq!(seen, [("greet".into(), "hello".into()), ("message".into(), "x".into())]);
//! assert!(!parser.finish(), "nothing was left unfinished");
//! ```
//!
//! What it does not do: no IO, no async runtime, no reconnection, and no UTF-8 decoding on the
//! hot path (the accessors validate on request).
#![deny(missing_docs)]

mod error;
mod event;
mod parser;
#[cfg(feature = "stream")]
mod stream;

pub use error::Error;
pub use event::{Event, Item};
pub use parser::{EventParser, Limits};
#[cfg(feature = "stream")]
pub use stream::EventStream;
