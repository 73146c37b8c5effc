//! What the `pplx` terminal client and the `pplx-mcp` server share, as a library: the config
//! file, the environment's keys and base URL, the cache choice, and the built-in simulator
//! when there is no key. A program that wants to behave like them (same config file, same
//! variables, same defaults) calls [`setup`] and gets a ready provider.
//!
//! - [`config::load`] reads `config.toml` into a [`config::FileConfig`] (every field
//!   optional; unknown keys are errors, so typos are caught).
//! - [`setup`] combines [`SetupOptions`] (the command line), the file and the environment
//!   into a [`Setup`]: the provider with its cache in front, the default model, and, with
//!   no key, the built-in simulator (feature `simulator`).
//! - [`environment`] reads the other variables the programs use (`PERPLEXITY_TIMEOUT_MS`,
//!   `PERPLEXITY_LOG_LEVEL`, lists such as `ALLOWED_HOSTS`), each checked in one place.
//! - [`Error`] is the one error both fail with; [`Error::is_usage`] tells a program which
//!   exit code to use.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), pplx_setup::Error> {
//! let file = pplx_setup::config::load(None)?;
//! let setup = pplx_setup::setup(&pplx_setup::SetupOptions::default(), file).await?;
//! if let Some(notice) = &setup.notice {
//!     eprintln!("example: {notice}");
//! }
//! println!("asking {} by default", setup.model);
//! # Ok(()) }
//! ```
//!
//! What it does not do: print (a program says [`Setup::notice`] its own way), keep a
//! history, parse a command line, or talk to the network before the first question (except
//! to a Redis cache, when one is configured).
#![deny(missing_docs)]

pub mod config;
pub mod environment;
mod error;
mod setup;
#[cfg(feature = "otel")]
pub mod telemetry;

pub use error::Error;
/// The built-in simulator held by [`Setup::simulator`]; it stops when dropped.
#[cfg(feature = "simulator")]
pub use pplx_sim::Simulator;
pub use setup::{SHARED_SECRET_ENV, Setup, SetupOptions, apply_file, setup};
