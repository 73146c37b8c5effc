//! The terminal client's own library: its history of questions and answers, kept apart from
//! the binary so that tests (and tools) can read what `pplx` recorded.
//!
//! What the programs share (config, keys, simulator, cache) is in `pplx-setup`, not here.
#![deny(missing_docs)]

pub mod history;
