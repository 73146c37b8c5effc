//! The Perplexity client: Sonar chat completions and the Agent API behind
//! [`chat_core::ChatProvider`], streaming token by token, and never losing or repeating a word.
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
mod options;
mod scan;
mod think;
mod wire;

/// Entry points for the benches (feature `bench-internals`). Not a public API.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench {
    use std::collections::VecDeque;

    use chat_core::ChatEvent;

    /// Decodes the data of a Sonar stream's events as a stream does (with `scan`, through
    /// the targeted scanner first, as the client does; without, serde only); the text's
    /// length.
    ///
    /// # Panics
    /// On a chunk the decoder refuses (the bench's input is the simulator's).
    pub fn decode_sonar(events: &[&[u8]], scan: bool) -> usize {
        let mut decoder = crate::decode::Decoder::bounded(crate::Api::Sonar, usize::MAX);
        decoder.set_scan(scan);
        let mut out = VecDeque::new();
        let mut text = 0;
        for data in events {
            if let Err(error) = decoder.feed_bytes(b"", data, &mut out) {
                panic!("the decoder refused a chunk: {error}");
            }
            for event in out.drain(..) {
                if let ChatEvent::TextDelta(delta) = event {
                    text += delta.len();
                }
            }
        }
        text
    }
}

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): everything a server's
/// bytes reach without a socket. Not a public API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::VecDeque;

    use crate::Api;

    /// Feeds `events` (event type, data) to a decoder of `api` with a small answer bound,
    /// as a stream does, until the end or the first error; then decodes `body` as a whole
    /// response.
    pub fn decode(api: Api, events: &[(&[u8], &str)], body: &[u8]) {
        let mut decoder = crate::decode::Decoder::bounded(api, 64 << 10);
        let mut out = VecDeque::new();
        for (event_type, data) in events {
            if decoder.feed(event_type, data, &mut out).is_err() {
                break;
            }
            out.clear();
        }
        let _ = decoder.usage();
        let _ = crate::api::full_response(api, body);
    }

    /// The parsers of an error response: hints, message, parameter.
    pub fn error_response(status: u16, headers: [&str; 2], content_type: &str, body: &[u8]) {
        let _ = resilience::parse_retry_after(
            Some(headers[0]),
            Some(headers[1]),
            std::time::SystemTime::now(),
        );
        let _ = crate::wire::error_message(status, content_type, body);
        let _ = crate::wire::error_param(body);
    }
}

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use resilience::{CircuitBreaker, Classify, FailureClass, KeyPool, Retrier, RetryBudget};
use tokio::time::Instant;
use tracing::Instrument;

pub use api::Api;
pub use api::agent::{DEFAULT_PRESET, EFFORTS, PRESETS, is_effort};
pub use api::sonar::SONAR_MODELS;
pub use builder::PerplexityBuilder;
pub use config::{
    AfterCommit, BASE_URL_ENV, KEY_ENV, KEYS_ENV, ModelAliases, ModelFamily, PerplexityConfig,
    Proxy, Timeouts, base_url_from_env, keys_from, keys_from_env,
};
pub use options::{
    AgentOptions, JsonSchema, MAX_FALLBACK_MODELS, ReasoningEffort, SearchContextSize,
    SearchFilters, SearchMode, SearchRequest, SearchType, SonarOptions, SonarSearchType,
    UserLocation, WebSearch, parse_answer,
};

// What a caller needs, so that this crate alone is enough to stream an answer.
pub use chat_core::{
    Attachment, AttachmentKind, ChatEvent, ChatProvider, ChatRequest, ChatResponse, ChatStream,
    Error, ErrorKind, FinishReason, Message, Report, Role, SearchResult, Sources, TimeoutPhase,
    Tool, ToolCall, Usage,
};
// What tuning needs: the retry, breaker and key-pool settings (and the seam for state shared
// between processes, `PerplexityConfig::shared_state`), and the figures they report.
pub use resilience::shared::SharedState;
pub use resilience::{
    ApiKey, BackoffPolicy, BreakerConfig, BreakerStats, BudgetConfig, Jitter, KeyPoolConfig,
    KeyStats, SlidingWindow,
};

use crate::client::{HttpClient, Live};

/// The Perplexity provider. Cheap to clone; clones share connections, keys and breaker.
#[derive(Clone)]
pub struct PerplexityProvider {
    shared: Arc<Shared>,
}

struct Shared {
    config: PerplexityConfig,
    base_url: String,
    client: HttpClient,
    /// One retrier per API and model family (index 0: models outside every family, then
    /// `config.families` in order), all sharing the key pool and the retry budget, each with
    /// its own circuit breaker: deep research timing out must not cut off quick answers.
    retriers: Vec<[Retrier; 2]>,
    /// The server refused `background` once (a 400 naming it): Agent streams are plain
    /// from then on, as with the `stream` fallback.
    background_refused: std::sync::atomic::AtomicBool,
    /// The endpoint has no async jobs (a 404 or 405 to a create): deep research is asked
    /// plainly from then on.
    jobs_refused: std::sync::atomic::AtomicBool,
}

/// Where one request goes and under which rules.
struct Route {
    model: String,
    api: Api,
    timeouts: Timeouts,
    retrier: Retrier,
}

impl std::fmt::Debug for PerplexityProvider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PerplexityProvider")
            .field("base_url", &self.shared.base_url)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl PerplexityProvider {
    /// A provider for `config`.
    ///
    /// # Errors
    /// A config error: no key, or a base URL that is not `https://` (or loopback `http://`).
    pub fn new(config: PerplexityConfig) -> Result<Self, Error> {
        if config.keys.is_empty() {
            return Err(Error::config(
                "no API key: set PERPLEXITY_API_KEY (or PERPLEXITY_API_KEYS)",
            ));
        }
        let base_url = client::check_base_url(&config.base_url, config.allow_insecure_http)?;
        let keys = KeyPool::new(config.keys.clone(), config.key_pool);
        let shared_state = config.shared_state.clone().or_else(|| {
            // A rate limit alone still spaces this process's requests.
            config.key_rpm.map(|_| {
                Arc::new(resilience::shared::LocalState::new())
                    as Arc<dyn resilience::shared::SharedState>
            })
        });
        if let Some(state) = &shared_state {
            keys.share(state.clone(), config.key_rpm);
        }
        let retriers = retriers(&config, &base_url, &keys, shared_state.as_ref());
        let client = client::http_client(
            config.timeouts.connect,
            &config.proxy,
            &config.root_certificates,
        )?;
        Ok(PerplexityProvider {
            shared: Arc::new(Shared {
                client,
                base_url,
                config,
                retriers,
                background_refused: std::sync::atomic::AtomicBool::new(false),
                jobs_refused: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The same request, connection pool, decoding and stop rule as
    /// [`chat_stream`](ChatProvider::chat_stream), without the reliability layers: no retrier
    /// (breaker, key pool, budget, backoff), no fallback, no commit-point bookkeeping, no
    /// request span. Only for the benches' like-for-like rows (feature `bench-internals`).
    #[cfg(feature = "bench-internals")]
    #[doc(hidden)]
    pub fn stream_without_layers(&self, request: ChatRequest) -> ChatStream {
        let this = self.clone();
        Box::pin(async_stream::stream! {
            let route = this.shared.route(&request.model);
            let key = this.shared.config.keys[0].clone();
            let body = Bytes::from(api::request_body(route.api, &request, &route.model, true));
            let response = match client::send_to(
                &this.shared.client,
                &this.shared.base_url,
                route.api.protocol().path(),
                body,
                &key,
                true,
                &route.timeouts,
            )
            .await
            {
                Ok(response) => response,
                Err(error) => {
                    yield Err(error);
                    return;
                }
            };
            let mut live = Live::new(
                response,
                route.api,
                route.timeouts,
                this.shared.config.max_event_bytes,
                this.shared.config.max_answer_bytes,
                None,
            );
            loop {
                match live.next().await {
                    Ok(Some(ChatEvent::Done(response))) => {
                        // As the layered stream ends: once the connection is back in the pool.
                        let released = live.release();
                        yield Ok(ChatEvent::Done(response));
                        if let Some(released) = released {
                            let _ = released.await;
                        }
                        return;
                    }
                    Ok(Some(event)) => yield Ok(event),
                    Ok(None) => return,
                    Err(error) => {
                        yield Err(error);
                        return;
                    }
                }
            }
        })
    }

    /// Starts `request` as an Agent API background run and returns its id at once, without
    /// waiting for the answer: the run goes on server-side (and bills) until it ends; read it
    /// with [`attach`](PerplexityProvider::attach), or cancel it with the Agent API.
    ///
    /// # Errors
    /// A config error when the request's model is not answered by the Agent API (only it runs
    /// in the background); the request's own failure (typed as for
    /// [`chat`](ChatProvider::chat)); a protocol error when the server names no run.
    pub async fn start_run(&self, request: ChatRequest) -> Result<String, Error> {
        let route = self.shared.route(&request.model);
        if route.api != Api::Agent {
            return Err(Error::config(format!(
                "{:?} is answered by chat completions, which runs nothing in the background: ask a provider/model, an effort level (fast, low, medium, high, xhigh), or api = agent",
                route.model
            )));
        }
        if let Some(refused) = refused(&self.shared.config, &route, &request) {
            return Err(refused);
        }
        let request = request.with_option("background", true);
        let body = Bytes::from(api::request_body(route.api, &request, &route.model, false));
        let deadline = resilience::backoff::later(Instant::now(), route.timeouts.headers);
        let response = self
            .shared
            .complete(&route, body, deadline, &Tally::default())
            .await?;
        if response.id.is_empty() {
            return Err(Error::protocol(
                "the server started a run without naming it",
            ));
        }
        Ok(response.id)
    }

    /// The answer of the background run `run_id` (asked of `model`, whose deadlines apply),
    /// streamed from its first event: live while the run goes on, whole if it has ended, read
    /// again after a cut like any Agent API stream. Leaving this stream does not cancel the
    /// run (it was started to run on its own). A run the service no longer has is an error
    /// (404).
    pub fn attach(&self, run_id: &str, model: &str) -> ChatStream {
        let mut route = self.shared.route(model);
        route.api = Api::Agent;
        let span =
            tracing::info_span!("perplexity", api = "agent", model = %route.model, run = %run_id);
        let answer = answer::attach(self.shared.clone(), route, run_id.to_owned());
        Box::pin(tracing_futures::Instrument::instrument(answer, span))
    }

    /// The model an alias stands for, and the API that will answer it (an explicit
    /// [`PerplexityConfig::api`] wins over what the name implies).
    pub fn resolve(&self, model: &str) -> (String, Api) {
        let model = self.shared.config.aliases.resolve(model).to_owned();
        let api = self.shared.config.api_for(&model);
        (model, api)
    }

    /// Per-key figures (never the keys).
    pub fn key_stats(&self) -> Vec<KeyStats> {
        self.shared.retriers[0][0].keys().stats()
    }

    /// The figures of the circuit breaker that guards `model` (an alias is resolved): there
    /// is one per API and model family.
    pub fn breaker_stats(&self, model: &str) -> BreakerStats {
        self.shared.route(model).retrier.breaker().stats()
    }

    /// The configuration in use.
    pub fn config(&self) -> &PerplexityConfig {
        &self.shared.config
    }

    /// Perplexity's Search API (`POST /search`): ranked web results, no answer. The request
    /// gets the same protections as a chat request.
    ///
    /// # Errors
    /// As for a chat request.
    pub async fn search(
        &self,
        request: &SearchRequest,
    ) -> Result<Vec<chat_core::SearchResult>, Error> {
        let route = Route {
            model: String::new(),
            api: Api::Sonar,
            timeouts: self.shared.config.timeouts,
            retrier: self.shared.retriers[0][Api::Sonar.index()].clone(),
        };
        let deadline = resilience::backoff::later(Instant::now(), route.timeouts.total);
        let body = Bytes::from(
            serde_json::to_vec(request)
                .map_err(|error| Error::config(format!("search request: {error}")))?,
        );
        self.shared
            .post(
                &route,
                api::search::PATH,
                body,
                deadline,
                &Tally::default(),
                api::search::results,
            )
            .instrument(tracing::info_span!("perplexity_search"))
            .await
    }
}

impl Shared {
    /// `error` with any configured key in its message redacted: a server's message is
    /// quoted, and a gateway may echo the key it was sent.
    fn redact(&self, error: Error) -> Error {
        error.redacted(self.config.keys.iter().map(ApiKey::expose))
    }

    /// The model (alias resolved), its API, deadlines and retrier.
    fn route(&self, model: &str) -> Route {
        let model = self.config.aliases.resolve(model).to_owned();
        let api = self.config.api_for(&model);
        let family = self.config.family_index(&model);
        let retrier = self.retriers[family.map_or(0, |index| index + 1)][api.index()].clone();
        Route {
            timeouts: self.config.timeouts_for(&model),
            model,
            api,
            retrier,
        }
    }

    /// A whole (non-streaming) response body, within the size limit and the idle deadline.
    async fn read_body(
        &self,
        timeouts: &Timeouts,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<Bytes, Error> {
        let body = http_body_util::Limited::new(response.into_body(), self.config.max_event_bytes);
        let collected = tokio::time::timeout(timeouts.idle, http_body_util::BodyExt::collect(body))
            .await
            .map_err(|_| Error::timeout(TimeoutPhase::Idle))?
            .map_err(|error| Error::incomplete("the response body broke").with_source(error))?;
        Ok(collected.to_bytes())
    }

    /// One non-streaming request, retried under the same protections.
    async fn complete(
        &self,
        route: &Route,
        body: Bytes,
        deadline: Instant,
        tally: &Tally,
    ) -> Result<ChatResponse, Error> {
        let api = route.api;
        let mut response = self
            .post(
                route,
                api.protocol().path(),
                body,
                deadline,
                tally,
                |bytes| api::full_response(api, bytes),
            )
            .await?;
        tally.stamp(&mut response);
        Ok(response)
    }

    /// One JSON request to `path`, retried under the client's protections, its whole body
    /// decoded by `decode`; every try is counted in `tally`.
    async fn post<T>(
        &self,
        route: &Route,
        path: &str,
        body: Bytes,
        deadline: Instant,
        tally: &Tally,
        decode: impl Fn(&[u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let (value, _key) = self
            .post_keyed(route, path, body, deadline, tally, decode)
            .await?;
        Ok(value)
    }

    /// [`post`](Shared::post), also giving the key that answered (a background run it
    /// started is polled, and cancelled, with that key).
    async fn post_keyed<T>(
        &self,
        route: &Route,
        path: &str,
        body: Bytes,
        deadline: Instant,
        tally: &Tally,
        decode: impl Fn(&[u8]) -> Result<T, Error>,
    ) -> Result<(T, ApiKey), Error> {
        let (value, _lease) = route
            .retrier
            .run_until(deadline, |attempt| {
                tally.note(&attempt);
                let body = body.clone();
                let decode = &decode;
                async move {
                    let response = client::send_to(
                        &self.client,
                        &self.base_url,
                        path,
                        body,
                        &attempt.key,
                        false,
                        &route.timeouts,
                    )
                    .await
                    .map_err(|error| self.redact(error))?;
                    let value = decode(&self.read_body(&route.timeouts, response).await?)
                        .map_err(|error| self.redact(error))?;
                    Ok::<_, Error>((value, attempt.key.clone()))
                }
            })
            .await?;
        Ok(value)
    }

    /// Connects and reads until the commit point: the events held until then, ending with the
    /// first text delta (or `Done`, for an empty answer).
    async fn open(
        &self,
        route: &Route,
        body: Bytes,
        run: Option<&str>,
        attempt: resilience::Attempt,
        cancel: &CancelOnDrop,
    ) -> Result<(Live, Vec<ChatEvent>), Error> {
        let api = route.api;
        let response = match run {
            // An existing background run, read from its first event.
            Some(id) => {
                client::get(
                    &self.client,
                    &self.base_url,
                    &api::agent::resume_path(id, 0),
                    &attempt.key,
                    true,
                    &route.timeouts,
                )
                .await
            }
            None => {
                client::send_to(
                    &self.client,
                    &self.base_url,
                    api.protocol().path(),
                    body,
                    &attempt.key,
                    true,
                    &route.timeouts,
                )
                .await
            }
        }
        .map_err(|error| self.redact(error))?;
        if !client::is_event_stream(&response) {
            return Err(Error::not_streaming(
                None,
                "the server answered a stream request without a stream",
            ));
        }
        // The Agent API names its run in its first event: the stream records it in the
        // slot as soon as it arrives, so that a caller leaving at any point can cancel it.
        let run = api
            .protocol()
            .has_runs()
            .then(|| (cancel.run.clone(), attempt.key.clone()));
        let mut live = Live::new(
            response,
            api,
            route.timeouts,
            self.config.max_event_bytes,
            self.config.max_answer_bytes,
            run,
        );
        let held = self.hold_until_commit(&mut live, cancel).await?;
        Ok((live, held))
    }

    /// Reads `live` to the commit point: the events before it, ending with the first text
    /// delta (or `Done`, for an empty answer). A stream that ends or breaks before it
    /// abandons its run (another attempt, or the fallback, answers).
    async fn hold_until_commit(
        &self,
        live: &mut Live,
        cancel: &CancelOnDrop,
    ) -> Result<Vec<ChatEvent>, Error> {
        let mut held = Vec::new();
        loop {
            match live.next().await {
                Ok(Some(
                    event @ (ChatEvent::TextDelta(_) | ChatEvent::ToolCall(_) | ChatEvent::Done(_)),
                )) => {
                    held.push(event);
                    return Ok(held);
                }
                Ok(Some(event)) => held.push(event),
                Ok(None) => {
                    cancel.fire();
                    return Err(Error::incomplete("the stream ended before its final event"));
                }
                Err(error) => {
                    cancel.fire();
                    return Err(self.redact(error));
                }
            }
        }
    }
}

/// One retrier per model family (the defaults first) and API, `[sonar, agent]`: each with
/// the family's total deadline and slow-call threshold and a breaker of its own (shared, when
/// state is, under one name per base URL, API and family in every process), all drawing on
/// one key pool and one retry budget.
fn retriers(
    config: &PerplexityConfig,
    base_url: &str,
    keys: &KeyPool,
    shared_state: Option<&Arc<dyn resilience::shared::SharedState>>,
) -> Vec<[Retrier; 2]> {
    let budget = Arc::new(RetryBudget::new(config.budget));
    let mut limits = vec![(
        "default",
        config.timeouts.total,
        config.breaker.slow_call_duration,
    )];
    limits.extend(config.families.iter().map(|family| {
        (
            family.name.as_str(),
            family.timeouts.total,
            family.slow_call,
        )
    }));
    let endpoint = without_userinfo(base_url);
    limits
        .into_iter()
        .map(|(family, total, slow_call)| {
            let retrier = |api: &str| {
                let policy = BackoffPolicy {
                    total_deadline: total,
                    ..config.backoff
                };
                let mut breaker = config.breaker;
                breaker.slow_call_duration = slow_call;
                let breaker = Arc::new(CircuitBreaker::new(breaker));
                if let Some(state) = shared_state {
                    breaker.share(state.clone(), format!("{endpoint} {api}/{family}"));
                }
                Retrier::new(policy, budget.clone(), breaker, keys.clone())
            };
            Api::ALL.map(|api| retrier(api.as_str()))
        })
        .collect()
}

/// The tries one answer took, and how often the key changed between them, for
/// [`ChatResponse::attempts`] and [`ChatResponse::key_rotations`]. Atomics, so that a
/// borrowed tally keeps the stream `Send`.
#[derive(Debug)]
struct Tally {
    attempts: std::sync::atomic::AtomicU32,
    rotations: std::sync::atomic::AtomicU32,
    /// The key index of the last try (`usize::MAX` before the first).
    last_key: std::sync::atomic::AtomicUsize,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            attempts: std::sync::atomic::AtomicU32::new(0),
            rotations: std::sync::atomic::AtomicU32::new(0),
            last_key: std::sync::atomic::AtomicUsize::new(usize::MAX),
        }
    }
}

impl Tally {
    fn note(&self, attempt: &resilience::Attempt) {
        use std::sync::atomic::Ordering::Relaxed;
        self.attempts.fetch_add(1, Relaxed);
        let last = self.last_key.swap(attempt.key_index, Relaxed);
        if last != usize::MAX && last != attempt.key_index {
            self.rotations.fetch_add(1, Relaxed);
        }
    }

    fn stamp(&self, response: &mut ChatResponse) {
        use std::sync::atomic::Ordering::Relaxed;
        response.attempts = self.attempts.load(Relaxed);
        response.key_rotations = self.rotations.load(Relaxed);
    }
}

/// Whether a streaming failure should fall back to one non-streaming request: the attempts
/// were spent on transient failures, or the server will not stream.
fn falls_back(error: &Error) -> bool {
    // By its kind: the server answered without a stream, or its error named the `stream`
    // parameter (see `client::send_to`).
    let refuses_stream = error.kind() == ErrorKind::NotStreaming;
    let transient = error.failure_class() == FailureClass::Transient
        && !(error.kind() == ErrorKind::Timeout
            && error.timeout_phase() == Some(TimeoutPhase::Total));
    refuses_stream || transient
}

/// A URL without `user:password@` (looked for in the authority only, where it can be), to
/// name an endpoint where others can read it.
fn without_userinfo(url: &str) -> String {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        // The base URL was checked before; nothing of an unparsable one is shared.
        return String::new();
    };
    let scheme = uri.scheme_str().unwrap_or_default();
    let authority = config::public_authority(&uri).unwrap_or_default();
    let path = uri.path().trim_end_matches('/');
    format!("{scheme}://{authority}{path}")
}

/// Cancels an abandoned Agent API run on the server (`POST /v1/agent/{id}/cancel`, as the
/// official server does), so that a caller who leaves, or a stream that breaks, stops the
/// run's billing. It learns the run's id and key as the stream reports them, is disarmed
/// when the run completes, and sends the cancel when dropped while armed.
struct CancelOnDrop {
    shared: Arc<Shared>,
    run: client::RunSlot,
    /// A run started detached is never cancelled by a reader who leaves: it was meant to
    /// run on its own, and can be attached to again.
    keeps_runs: bool,
}

impl CancelOnDrop {
    fn new(shared: Arc<Shared>) -> Self {
        CancelOnDrop {
            shared,
            run: client::RunSlot::default(),
            keeps_runs: false,
        }
    }

    /// For a reader of a detached run: nothing is ever cancelled.
    fn keeping(shared: Arc<Shared>) -> Self {
        CancelOnDrop {
            shared,
            run: client::RunSlot::default(),
            keeps_runs: true,
        }
    }

    /// The key that started the run, while it is known and armed (a resume reads it with
    /// the same key).
    fn key(&self) -> Option<resilience::ApiKey> {
        self.run.lock().as_ref().map(|(_, key)| key.clone())
    }

    /// The run ended on its own: nothing to cancel.
    fn disarm(&self) {
        *self.run.lock() = None;
    }

    /// Cancels the run now (a restart abandons it), then forgets it.
    fn fire(&self) {
        let run = self.run.lock().take();
        let Some((id, key)) = run else { return };
        if self.keeps_runs {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        runtime.spawn(async move {
            let path = api::agent::cancel_path(&id);
            let sent = client::send_to(
                &shared.client,
                &shared.base_url,
                &path,
                Bytes::from_static(b"{}"),
                &key,
                false,
                &shared.config.timeouts,
            )
            .await;
            match sent {
                Ok(_) => tracing::info!(run = %id, "cancelled the abandoned agent run"),
                // The run may already be over; nothing to do either way.
                Err(error) => {
                    tracing::debug!(run = %id, error = %error.report(), "cancelling the agent run failed");
                }
            }
        });
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.fire();
    }
}

/// A non-streaming Agent API request as a background run: created (under the retrier), then
/// polled with `GET /v1/responses/{id}` (waits from `poll_first_delay`, doubling to
/// `poll_max_delay`) until it ends, within the deadline, so a minutes-long run survives
/// proxies that cut held requests. A caller who leaves, or the deadline, cancels the run.
async fn poll_run(
    shared: &Arc<Shared>,
    route: &Route,
    request: &ChatRequest,
    deadline: Instant,
) -> Result<ChatResponse, Error> {
    let tally = Tally::default();
    let in_background = request.clone().with_option("background", true);
    let body = Bytes::from(api::request_body(
        Api::Agent,
        &in_background,
        &route.model,
        false,
    ));
    let created = shared
        .post_keyed(
            route,
            Api::Agent.protocol().path(),
            body,
            deadline,
            &tally,
            |bytes| Ok(Bytes::copy_from_slice(bytes)),
        )
        .await;
    let (mut bytes, key) = match created {
        Ok(created) => created,
        Err(error) if error.param() == Some("background") => {
            // The server does not take background runs: plain requests from now on.
            shared
                .background_refused
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let body = Bytes::from(api::request_body(Api::Agent, request, &route.model, false));
            return shared.complete(route, body, deadline, &tally).await;
        }
        Err(error) => return Err(error),
    };
    let (id, going) = api::agent::run_state(&bytes);
    let cancel = CancelOnDrop::new(shared.clone());
    if going && !id.is_empty() {
        *cancel.run.lock() = Some((id.clone(), key.clone()));
        bytes = poll(
            shared,
            route,
            &api::agent::run_path(&id),
            &key,
            |bytes| api::agent::run_state(bytes).1,
            deadline,
        )
        .await?;
    }
    cancel.disarm();
    let mut response = api::full_response(Api::Agent, &bytes)?;
    tally.stamp(&mut response);
    Ok(response)
}

/// Reads `path` (a background run or an async job) with `key` until `going` says it ended,
/// waiting from `poll_first_delay`, doubling to `poll_max_delay`, within `deadline`; its
/// last body. A poll that fails on the way is tried again at the next wait; a refusal (the
/// run or job is gone) ends it.
async fn poll(
    shared: &Arc<Shared>,
    route: &Route,
    path: &str,
    key: &ApiKey,
    going: impl Fn(&[u8]) -> bool,
    deadline: Instant,
) -> Result<Bytes, Error> {
    let mut delay = shared.config.poll_first_delay;
    loop {
        let until = resilience::backoff::later(Instant::now(), delay);
        if until >= deadline {
            return Err(Error::timeout(TimeoutPhase::Total));
        }
        tokio::time::sleep_until(until).await;
        delay = delay.saturating_mul(2).min(shared.config.poll_max_delay);
        let polled = client::get(
            &shared.client,
            &shared.base_url,
            path,
            key,
            false,
            &route.timeouts,
        )
        .await;
        let bytes = match polled {
            Ok(response) => shared.read_body(&route.timeouts, response).await?,
            Err(error) if error.is_retryable() => continue,
            Err(error) => return Err(shared.redact(error)),
        };
        if !going(&bytes) {
            return Ok(bytes);
        }
    }
}

/// A non-streaming Sonar deep research as an async job (`POST /async/chat/completions`),
/// polled until it ends, so that a minutes-long job survives proxies that cut held
/// requests. Every try of the create carries one idempotency key: a create whose reply was
/// lost and is tried again gets the job the first try started, never a second one. An
/// endpoint without async jobs (a 404 or 405) gets plain requests from then on.
///
/// Perplexity offers no way to cancel a job: one whose caller leaves runs to its end.
async fn async_job(
    shared: &Arc<Shared>,
    route: &Route,
    request: &ChatRequest,
    deadline: Instant,
) -> Result<ChatResponse, Error> {
    let tally = Tally::default();
    let plain = api::request_body(Api::Sonar, request, &route.model, false);
    let body = Bytes::from(api::sonar::job_body(&plain, &idempotency_key()));
    let created = shared
        .post_keyed(
            route,
            api::sonar::ASYNC_PATH,
            body,
            deadline,
            &tally,
            |bytes| Ok(Bytes::copy_from_slice(bytes)),
        )
        .await;
    let (mut bytes, key) = match created {
        Ok(created) => created,
        Err(error) if matches!(error.status_code(), Some(404 | 405)) => {
            shared
                .jobs_refused
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return shared
                .complete(route, Bytes::from(plain), deadline, &tally)
                .await;
        }
        Err(error) => return Err(error),
    };
    let (id, going) = api::sonar::job_state(&bytes);
    if going && !id.is_empty() {
        bytes = poll(
            shared,
            route,
            &api::sonar::job_path(&id),
            &key,
            |bytes| api::sonar::job_state(bytes).1,
            deadline,
        )
        .await?;
    }
    let mut response = api::sonar::job_answer(&bytes)?;
    tally.stamp(&mut response);
    Ok(response)
}

/// A fresh idempotency key: 128 bits, different in every call and process.
fn idempotency_key() -> String {
    let mut rng = resilience::backoff::SmallRng::from_entropy();
    format!("pplx-{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// What would be refused anyway, said before anything is sent (and paid for): a request over
/// [`PerplexityConfig::max_request_bytes`], and at Perplexity's host a request with tools to
/// a Sonar model, which it answers with a 400 ("Tool calling is not supported for this
/// model"). Another OpenAI-compatible endpoint gets the tools, in its own format.
fn refused(config: &PerplexityConfig, route: &Route, request: &ChatRequest) -> Option<Error> {
    let carried: usize = request
        .messages
        .iter()
        .map(chat_core::Message::request_bytes)
        .sum();
    if carried > config.max_request_bytes {
        return Some(Error::reported(
            chat_core::ErrorKind::BadRequest,
            format!(
                "the request carries {carried} bytes of messages and attachments, over max_request_bytes ({}): send large files by URL",
                config.max_request_bytes
            ),
        ));
    }
    let sonar_with_tools =
        route.api == Api::Sonar && !request.tools.is_empty() && config.serves_agent_api();
    sonar_with_tools.then(|| {
        Error::reported(
            chat_core::ErrorKind::BadRequest,
            format!(
                "tool calling is not supported for the Sonar model {:?}: ask the Agent API (a provider/model name, an effort preset, or api = agent)",
                route.model
            ),
        )
    })
}

#[async_trait]
impl ChatProvider for PerplexityProvider {
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let route = self.shared.route(&request.model);
        if let Some(refused) = refused(&self.shared.config, &route, &request) {
            return Err(refused);
        }
        let span = tracing::info_span!("perplexity", api = route.api.as_str(), model = %route.model, stream = false);
        let deadline = resilience::backoff::later(Instant::now(), route.timeouts.total);
        let polled = route.api == Api::Agent
            && self.shared.config.resume
            && !request.options.contains_key("background")
            && !self
                .shared
                .background_refused
                .load(std::sync::atomic::Ordering::Relaxed);
        if polled {
            return poll_run(&self.shared, &route, &request, deadline)
                .instrument(span)
                .await;
        }
        let as_job = route.api == Api::Sonar
            && api::sonar::runs_as_job(&route.model)
            && self.shared.config.resume
            && self.shared.config.serves_agent_api()
            && !self
                .shared
                .jobs_refused
                .load(std::sync::atomic::Ordering::Relaxed);
        if as_job {
            return async_job(&self.shared, &route, &request, deadline)
                .instrument(span)
                .await;
        }
        let body = Bytes::from(api::request_body(route.api, &request, &route.model, false));
        self.shared
            .complete(&route, body, deadline, &Tally::default())
            .instrument(span)
            .await
    }

    /// Names the endpoint too: answers from another base URL (the simulator, a proxy, a
    /// compatible server) never share a cache entry with the real service's.
    fn answerer(&self, request: &ChatRequest) -> String {
        let (model, api) = self.resolve(&request.model);
        format!(
            "perplexity/{}/{model}@{}",
            api.as_str(),
            self.shared.base_url
        )
    }

    fn chat_stream(&self, request: ChatRequest) -> ChatStream {
        let route = self.shared.route(&request.model);
        if let Some(refused) = refused(&self.shared.config, &route, &request) {
            return Box::pin(futures_util::stream::iter([Err(refused)]));
        }
        let span = tracing::info_span!("perplexity", api = route.api.as_str(), model = %route.model, stream = true);
        let answer = answer::stream(self.shared.clone(), route, request);
        // The request's span is entered around every poll, so its logs carry its fields.
        Box::pin(tracing_futures::Instrument::instrument(answer, span))
    }
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[tokio::test]
    async fn tools_for_a_sonar_model_at_perplexity_are_refused_before_anything_is_sent() {
        use chat_core::{ChatProvider, ChatRequest, ErrorKind, Tool};
        use futures_util::StreamExt;
        // The real host, and nothing listening anywhere: only a refusal made before sending
        // can answer without a connection error.
        let provider = crate::PerplexityProvider::builder()
            .key("pplx-test")
            .max_attempts(1)
            .build()
            .unwrap();
        let mut request = ChatRequest::new("sonar", "Weather in Paris?");
        request.tools.push(Tool::function(
            "get_weather",
            "",
            serde_json::json!({"type": "object"}),
        ));
        let error = provider.chat(request.clone()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
        assert!(
            error.to_string().contains("tool calling is not supported"),
            "{error}"
        );
        let mut stream = provider.chat_stream(request);
        let error = stream.next().await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_request_over_its_size_bound_is_refused_before_anything_is_sent() {
        use chat_core::{Attachment, ChatProvider, ChatRequest, ErrorKind, Message};
        // Nothing listens at this address: only a refusal made before sending answers
        // without a connection error.
        let provider = crate::PerplexityProvider::builder()
            .key("pplx-test")
            .base_url("http://127.0.0.1:9")
            .max_attempts(1)
            .configure(|config| {
                config.allow_insecure_http = true;
                config.max_request_bytes = 1000;
            })
            .build()
            .unwrap();
        let image = Attachment::from_bytes("image/png", &[0; 800]);
        let mut request = ChatRequest::new("sonar", "");
        request.messages = vec![Message::user("What is this?").with_attachment(image)];
        let error = provider.chat(request.clone()).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
        assert!(
            error.to_string().contains("max_request_bytes (1000)"),
            "{error}"
        );
        // Under the bound, the same request is sent (and meets the closed port).
        request.messages[0].attachments[0] = Attachment::from_bytes("image/png", &[0; 600]);
        let error = provider.chat(request).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connect, "{error}");
    }

    #[test]
    fn endpoint_names_keep_no_credentials_and_only_the_authority_loses_anything() {
        assert_eq!(
            without_userinfo("https://user:secret@proxy.example:8443/v1/"),
            "https://proxy.example:8443/v1"
        );
        assert_eq!(
            without_userinfo("https://api.perplexity.ai"),
            "https://api.perplexity.ai"
        );
        // An `@` in the path is not userinfo.
        assert_eq!(
            without_userinfo("http://127.0.0.1:9/team@x"),
            "http://127.0.0.1:9/team@x"
        );
    }
}
