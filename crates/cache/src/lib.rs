//! A response cache in front of any [`ChatProvider`](chat_core::ChatProvider), aware of
//! streams: in memory by default (moka: bounded by bytes, time to live, time idle), or in
//! Redis (feature `redis`) so that several processes share it.
//!
//! [`CachedProvider`] wraps a provider:
//! - A **hit** returns at once; a streaming hit replays the stored events with their original
//!   boundaries and every field (sources, reasoning, usage), the `Done` marked `cached`.
//! - A **miss** streams from the provider and is stored only once complete and successful:
//!   never a partial, interrupted or failed answer (after a restart, only the final attempt).
//! - **Coalescing**: identical requests in flight at the same time share one upstream call. A
//!   caller who joins late gets the events so far, then the live ones; every caller sees the
//!   whole answer exactly once; one caller dropping its stream does not cancel the others (the
//!   upstream call is cancelled when the last one leaves); an upstream failure reaches every
//!   caller as the same error.
//! - The **key** is a SHA-256 of the normalised request: who answers (provider, API, model
//!   after alias mapping, from `ChatProvider::answerer`), the messages, sampling and every
//!   option, with object keys sorted. Never the API key, the stream flag or request ids.
//!   A request whose provider says its answer goes stale in minutes
//!   (`ChatProvider::cacheable`) is not cached unless [`CacheConfig::cache_recent`].
//! - Per request, `ChatRequest::cache` bypasses or refreshes; [`CachedProvider::stats`]
//!   counts hits, misses, coalesced requests and stores.
//! - With Redis slow or down, the cache is a miss with a warning: a request never fails
//!   because of the cache.
//!
//! ```
//! use cache::{CacheConfig, CachedProvider};
//! use chat_core::{ChatEvent, ChatProvider, ChatRequest, ChatResponse, ChatStream, Error};
//!
//! struct Fixed;
//!
//! #[async_trait::async_trait]
//! impl ChatProvider for Fixed {
//!     async fn chat(&self, _: ChatRequest) -> Result<ChatResponse, Error> {
//!         let mut response = ChatResponse::default();
//!         response.text = "42".into();
//!         Ok(response)
//!     }
//!     fn chat_stream(&self, _: ChatRequest) -> ChatStream {
//!         unimplemented!("not used here")
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! let cached = CachedProvider::new(Fixed, CacheConfig::default())?;
//! let first = cached.chat(ChatRequest::new("sonar", "the answer?")).await?;
//! let second = cached.chat(ChatRequest::new("sonar", "the answer?")).await?;
//! assert_eq!((first.cached, second.cached, second.text.as_str()), (false, true, "42"));
//! assert_eq!(cached.stats().hits, 1);
//! # Ok(()) }
//! ```
//!
//! What it does not do: HTTP, SSE or anything vendor-specific (it sees only the core's
//! types), or cache failures.
#![deny(missing_docs)]

mod key;
mod provider;
#[cfg(feature = "redis")]
mod redis_store;
mod store;

#[cfg(feature = "test-support")]
pub mod testing;

pub use provider::{CacheConfig, CacheStats, CachedProvider};
pub use store::Backend;
