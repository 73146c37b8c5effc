//! The Perplexity client: the Agent API (and chat completions, for OpenAI-compatible
//! endpoints) behind [`chat_core::ChatProvider`], streaming token by token, and never losing
//! or repeating a word.
//!
//! Every request goes to the Agent API (`POST /v1/agent`) unless chat completions are asked
//! for ([`PerplexityConfig::api`] = [`Api::Sonar`]): Perplexity retired its Sonar chat
//! completions on 2026-09-27. Sonar model names keep working, mapped as Perplexity's
//! migration guide says (`sonar` is `perplexity/sonar` with the `web_search` tool,
//! `sonar-pro` and the reasoning models the `low` effort, `sonar-deep-research` the `medium`
//! effort); Sonar options are written where the Agent API reads them, and those it has no
//! field for are refused before anything is sent.
//!
//! [`PerplexityProvider`] sends each request through a [`resilience::Retrier`] (circuit
//! breaker, key pool, backoff with the server's hints, retry budget, total deadline) over a
//! hyper client (rustls with the webpki roots, HTTP/2 by ALPN, connection reuse), parses the
//! stream with `sse-parse`, and decodes it with borrowed serde types into `ChatEvent`s:
//! answer deltas, reasoning deltas (the inline `<think>` block, or the Agent API's reasoning
//! events) kept apart, sources once (and again only if they change), usage, done.
//! [`PerplexityConfig`] holds every setting; [`SonarOptions`] writes Perplexity's options.
//!
//! The reliability rules, exactly:
//! - **Commit point**: the first answer text delta handed to the caller. Events before it
//!   (sources, reasoning) are held until then. Before it, a failure (connect error, a timeout
//!   before the headers or the first event, 408/409/429/5xx, a stream that ends early) is
//!   retried with backoff, rotating keys on 429 (cooldown) and 401/403 (disabled).
//! - **Fallback**: when the streaming attempts are spent on transient failures, or the server
//!   will not stream, one non-streaming request (with the same protections) answers, and is
//!   delivered as the same events (sources, one text delta, usage, done) marked `fallback`.
//! - **After the commit point** nothing is replayed silently. By default
//!   ([`AfterCommit::Fail`]) the stream ends with an error for which
//!   `is_interrupted()` holds, carrying the exact text delivered so far and the usage if known.
//!   With [`AfterCommit::Restart`], it emits `ChatEvent::Restart` and then a new attempt's
//!   events from the start. A stream that ends without its final event is interrupted, not
//!   a success.
//! - Every deadline is typed: connect, headers, first event, idle gap, total.
//! - Dropping the stream cancels the request: the connection is closed and the key's
//!   in-flight slot freed.
//!
//! One dependency streams an answer, with four keys rotating:
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use provider_perplexity::{ChatEvent, ChatProvider, PerplexityProvider};
//!
//! # #[tokio::main] async fn main() -> Result<(), provider_perplexity::Error> {
//! let keys = ["pplx-key-1", "pplx-key-2", "pplx-key-3", "pplx-key-4"];
//! let provider = PerplexityProvider::builder().keys(keys).model("sonar").build()?;
//! let mut stream = provider.chat_stream(provider.request("Explain quantum computing"));
//! while let Some(event) = stream.next().await {
//!     if let ChatEvent::TextDelta(text) = event? {
//!         print!("{text}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! `PerplexityProvider::from_env()` reads the keys from `PERPLEXITY_API_KEY` (and `_1`, `_2`,
//! ... or `PERPLEXITY_API_KEYS`).
//!
//! **Offline** (no key, no network: tests, CI, trying it out) needs a second crate, the
//! simulator, which speaks both APIs on loopback. Add it (`pplx-sim = "0.5"`, under
//! `[dev-dependencies]` for tests), start it, and point the builder at it:
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let keys = ["pplx-key-1"];
//! let mut sim_config = pplx_sim::SimConfig::default();
//! sim_config.keys = keys.iter().map(|key| (*key).to_owned()).collect();
//! let simulator = pplx_sim::Simulator::start(sim_config).await?;
//! let provider = provider_perplexity::PerplexityProvider::builder()
//!     .keys(keys)
//!     .base_url(simulator.base_url())
//!     .build()?;
//! # let _ = provider; Ok(()) }
//! ```
//!
//! `examples/stream.rs` runs the first example that way (`cargo run -p pplx-provider-perplexity
//! --example stream`).
//!
//! **Tuning**: the builder sets the common knobs ([`PerplexityBuilder::max_attempts`], which
//! counts the first request, [`PerplexityBuilder::retry_delays`], timeouts, the fallback, the
//! after-commit policy); [`PerplexityBuilder::configure`] reaches every field of
//! [`PerplexityConfig`], whose types ([`BackoffPolicy`], [`BreakerConfig`],
//! [`KeyPoolConfig`], [`BudgetConfig`]) are re-exported here, as are the figures
//! ([`KeyStats`], [`BreakerStats`]) and each answer's [`ChatResponse::attempts`] and
//! [`ChatResponse::key_rotations`].
//!
//! **Operating many workers**: [`PerplexityConfig::budget`] caps what Perplexity reports it
//! charged, per day, month or in total, shared by every process given the same
//! [`PerplexityConfig::spend_ledger`] (a refusal is [`ErrorKind::Budget`], before anything is
//! sent; [`PerplexityProvider::spend`] shows the period). Every answer is a `chat {model}`
//! `tracing` span with the OpenTelemetry GenAI conventions' fields (`tracing-opentelemetry`
//! exports it), and the feature `otel` records the GenAI client metrics through the
//! `opentelemetry` API's global meter.
//!
//! What it does not do: cache (see the cache crate), or parse anything but Perplexity's (and
//! OpenAI-compatible) chat formats.
#![deny(missing_docs)]

mod answer;
mod api;
mod builder;
mod client;
mod config;
mod decode;
mod delivery;
mod endpoint;
mod options;
mod provider;
mod runs;
mod scan;
mod spend;
mod telemetry;
mod think;
mod wire;

#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use api::Api;
pub use api::agent::{DEFAULT_PRESET, EFFORTS, PRESETS, is_effort};
pub use api::sonar::SONAR_MODELS;
pub use api::translate::{ANTHROPIC_MAX_OUTPUT_TOKENS, RESERVED_FUNCTION_NAMES};
pub use builder::PerplexityBuilder;
pub use config::{
    AfterCommit, BASE_URL_ENV, CAPTURE_MESSAGE_CONTENT_ENV, KEY_ENV, KEYS_ENV, MODEL_NAMES,
    ModelAliases, ModelFamily, PerplexityConfig, Proxy, RateTier, Timeouts, base_url_from_env,
    capture_message_content_from_env, keys_from, keys_from_env,
};
pub use options::{
    AgentOptions, ImageSearch, JsonSchema, MAX_FALLBACK_MODELS, MAX_STEPS, ReasoningEffort,
    Recency, SearchContextSize, SearchFilters, SearchMode, SearchRequest, SearchType, ServiceTier,
    SonarOptions, SonarSearchType, UserLocation, WebSearch, parse_answer,
};
pub use provider::PerplexityProvider;

// What a caller needs, so that this crate alone is enough to stream an answer.
pub use chat_core::{
    Attachment, AttachmentKind, ChatEvent, ChatProvider, ChatRequest, ChatResponse, ChatStream,
    Error, ErrorKind, FinishReason, Message, Report, Role, SearchResult, Sources, TimeoutPhase,
    Tool, ToolCall, Usage,
};
// What tuning needs: the retry, breaker, key-pool and spending settings (and the seams for
// state shared between processes, `PerplexityConfig::shared_state` and `spend_ledger`), and
// the figures they report.
pub use resilience::shared::SharedState;
pub use resilience::spend::{Spend, SpendLedger};
pub use resilience::{
    ApiKey, BackoffPolicy, BreakerConfig, BreakerStats, BudgetConfig, Jitter, KeyPoolConfig,
    KeyStats, SlidingWindow, SpendLimit, SpendPeriod,
};
