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
//! ```no_run
//! use chat_core::{ChatEvent, ChatProvider, ChatRequest};
//! use futures_util::StreamExt;
//! use provider_perplexity::{PerplexityConfig, PerplexityProvider};
//!
//! # #[tokio::main] async fn main() -> Result<(), chat_core::Error> {
//! let provider = PerplexityProvider::new(PerplexityConfig::from_env())?;
//! let mut stream = provider.chat_stream(ChatRequest::new("sonar", "Explain quantum computing"));
//! while let Some(event) = stream.next().await {
//!     if let ChatEvent::TextDelta(text) = event? {
//!         print!("{text}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! What it does not do: cache (see the cache crate), or parse anything but Perplexity's (and
//! OpenAI-compatible) chat formats.
#![deny(missing_docs)]

mod client;
mod config;
mod decode;
mod options;
mod think;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chat_core::{
    ChatEvent, ChatProvider, ChatRequest, ChatResponse, ChatStream, Error, ErrorKind, TimeoutPhase,
};
use resilience::{
    BackoffPolicy, BreakerStats, CircuitBreaker, Classify, FailureClass, KeyOutcome, KeyPool,
    KeyStats, Retrier, RetryBudget,
};
use tokio::time::Instant;
use tracing::Instrument;

pub use config::{AfterCommit, Api, ModelAliases, PerplexityConfig, Timeouts, keys_from};
pub use options::{SearchContextSize, SearchMode, SonarOptions};

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
        let policy = BackoffPolicy {
            total_deadline: config.timeouts.total,
            ..config.backoff
        };
        let retrier = Retrier::new(
            policy,
            Arc::new(RetryBudget::new(config.budget)),
            Arc::new(CircuitBreaker::new(config.breaker)),
            KeyPool::new(config.keys.clone(), config.key_pool),
        );
        Ok(PerplexityProvider {
            shared: Arc::new(Shared {
                client: client::http_client(config.timeouts.connect),
                base_url,
                config,
                retrier,
            }),
        })
    }

    /// The model an alias stands for, and the API that will answer it.
    pub fn resolve(&self, model: &str) -> (String, Api) {
        let model = self.shared.config.aliases.resolve(model).to_owned();
        let api = Api::for_model(&model).unwrap_or(self.shared.config.api);
        (model, api)
    }

    /// Per-key figures (never the keys).
    pub fn key_stats(&self) -> Vec<KeyStats> {
        self.shared.retrier.keys().stats()
    }

    /// The circuit breaker's figures.
    pub fn breaker_stats(&self) -> BreakerStats {
        self.shared.retrier.breaker().stats()
    }

    /// The configuration in use.
    pub fn config(&self) -> &PerplexityConfig {
        &self.shared.config
    }

    /// Perplexity's Search API (`POST /search`): ranked web results, no answer. `body` holds
    /// its fields (`query`, `max_results`, `max_tokens_per_page`, `country`, the filters); the
    /// request gets the same protections as a chat request.
    ///
    /// # Errors
    /// As for a chat request.
    pub async fn search(
        &self,
        body: serde_json::Value,
    ) -> Result<Vec<chat_core::SearchResult>, Error> {
        #[derive(serde::Deserialize)]
        struct Results {
            #[serde(default)]
            results: Option<Box<serde_json::value::RawValue>>,
        }
        let deadline = Instant::now() + self.shared.config.timeouts.total;
        let body = Bytes::from(body.to_string());
        self.shared
            .post(client::SEARCH_PATH, body, deadline, |bytes| {
                let parsed: Results = serde_json::from_slice(bytes)
                    .map_err(|error| Error::protocol(format!("bad search response: {error}")))?;
                Ok(wire::sources(None, parsed.results.as_deref())?.search_results)
            })
            .instrument(tracing::info_span!("perplexity_search"))
            .await
    }
}

impl Shared {
    /// A whole (non-streaming) response body, within the size limit and the idle deadline.
    async fn read_body(
        &self,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<Bytes, Error> {
        let body = http_body_util::Limited::new(response.into_body(), self.config.max_event_bytes);
        let collected = tokio::time::timeout(
            self.config.timeouts.idle,
            http_body_util::BodyExt::collect(body),
        )
        .await
        .map_err(|_| Error::timeout(TimeoutPhase::Idle))?
        .map_err(|error| Error::incomplete("the response body broke").with_source(error))?;
        Ok(collected.to_bytes())
    }

    /// One non-streaming request, retried under the same protections.
    async fn complete(
        &self,
        api: Api,
        body: Bytes,
        deadline: Instant,
    ) -> Result<ChatResponse, Error> {
        self.post(client::path(api), body, deadline, |bytes| {
            decode::full_response(api, bytes)
        })
        .await
    }

    /// One JSON request to `path`, retried under the client's protections, its whole body
    /// decoded by `decode`.
    async fn post<T>(
        &self,
        path: &str,
        body: Bytes,
        deadline: Instant,
        decode: impl Fn(&[u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let (value, _lease) = self
            .retrier
            .run_until(deadline, |attempt| {
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
                        &self.config.timeouts,
                    )
                    .await?;
                    decode(&self.read_body(response).await?)
                }
            })
            .await?;
        Ok(value)
    }

    /// Connects and reads until the commit point: the events held until then, ending with the
    /// first text delta (or `Done`, for an empty answer).
    async fn open(
        &self,
        api: Api,
        body: Bytes,
        attempt: resilience::Attempt,
    ) -> Result<(Live, Vec<ChatEvent>), Error> {
        let response = client::send(
            &self.client,
            &self.base_url,
            api,
            body,
            &attempt.key,
            true,
            &self.config.timeouts,
        )
        .await?;
        let is_stream = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if !is_stream {
            return Err(Error::status(
                415,
                "the server answered a stream request without a stream",
            )
            .with_source(NotStreaming));
        }
        let mut live = Live::new(
            response,
            api,
            self.config.timeouts,
            self.config.max_event_bytes,
        );
        let mut held = Vec::new();
        loop {
            match live.next().await? {
                Some(event @ (ChatEvent::TextDelta(_) | ChatEvent::Done(_))) => {
                    held.push(event);
                    return Ok((live, held));
                }
                Some(event) => held.push(event),
                None => return Err(Error::incomplete("the stream ended before its final event")),
            }
        }
    }
}

/// Marks a stream request answered without a stream: the fallback is the way out.
#[derive(Debug)]
struct NotStreaming;

impl std::fmt::Display for NotStreaming {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("not an event stream")
    }
}

impl std::error::Error for NotStreaming {}

/// Whether a streaming failure should fall back to one non-streaming request: the attempts
/// were spent on transient failures, or the server will not stream.
fn falls_back(error: &Error) -> bool {
    let refuses_stream = std::error::Error::source(error)
        .is_some_and(|source| source.is::<NotStreaming>())
        || (error.is_bad_request() && error.to_string().to_ascii_lowercase().contains("stream"));
    let transient = error.failure_class() == FailureClass::Transient
        && !(error.kind() == ErrorKind::Timeout
            && error.timeout_phase() == Some(TimeoutPhase::Total));
    refuses_stream || transient
}

#[async_trait]
impl ChatProvider for PerplexityProvider {
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let (model, api) = self.resolve(&request.model);
        let span =
            tracing::info_span!("perplexity", api = api.as_str(), model = %model, stream = false);
        let body = Bytes::from(wire::request_body(api, &request, &model, false));
        let deadline = Instant::now() + self.shared.config.timeouts.total;
        self.shared
            .complete(api, body, deadline)
            .instrument(span)
            .await
    }

    fn answerer(&self, request: &ChatRequest) -> String {
        let (model, api) = self.resolve(&request.model);
        format!("perplexity/{}/{model}", api.as_str())
    }

    fn chat_stream(&self, request: ChatRequest) -> ChatStream {
        let shared = self.shared.clone();
        let (model, api) = self.resolve(&request.model);
        let span =
            tracing::info_span!("perplexity", api = api.as_str(), model = %model, stream = true);
        let body = Bytes::from(wire::request_body(api, &request, &model, true));
        let stream = Box::pin(async_stream::stream! {
            let deadline = Instant::now() + shared.config.timeouts.total;
            let mut restarts = 0;
            'attempts: loop {
                let opened = shared
                    .retrier
                    .run_until(deadline, |attempt| shared.open(api, body.clone(), attempt))
                    .await;
                let ((mut live, held), lease) = match opened {
                    Ok(opened) => opened,
                    Err(error) if shared.config.fallback && restarts == 0 && falls_back(&error) => {
                        tracing::warn!(%error, "streaming failed; falling back to one non-streaming request");
                        let body = Bytes::from(wire::request_body(api, &request, &model, false));
                        match shared.complete(api, body, deadline).await {
                            Ok(mut response) => {
                                response.fallback = true;
                                for event in response.into_events() {
                                    yield Ok(event);
                                }
                            }
                            Err(fallback_error) => yield Err(fallback_error),
                        }
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "stream failed before any answer text");
                        yield Err(error);
                        return;
                    }
                };
                // Past the commit point: the text handed out, exactly.
                let mut delivered = String::new();
                let mut next = held.into_iter().map(Ok).collect::<std::collections::VecDeque<_>>();
                loop {
                    let event = match next.pop_front() {
                        Some(event) => event,
                        None => match tokio::time::timeout_at(deadline, live.next()).await {
                            Err(_) => Err(Error::timeout(TimeoutPhase::Total)),
                            Ok(Ok(Some(event))) => Ok(event),
                            Ok(Ok(None)) => return,
                            Ok(Err(error)) => Err(error),
                        },
                    };
                    match event {
                        Ok(event) => {
                            if let ChatEvent::TextDelta(text) = &event {
                                delivered.push_str(text);
                            }
                            let done = matches!(event, ChatEvent::Done(_));
                            yield Ok(event);
                            if done {
                                tracing::info!(events = live.events_seen(), "stream complete");
                                return;
                            }
                        }
                        Err(cause) => {
                            lease.report(KeyOutcome::Failure(cause.failure_class()));
                            if let AfterCommit::Restart { max_restarts } = shared.config.after_commit
                                && restarts < max_restarts
                                && Instant::now() < deadline
                            {
                                restarts += 1;
                                tracing::warn!(%cause, restarts, "stream broke after the commit point; restarting");
                                yield Ok(ChatEvent::Restart);
                                continue 'attempts;
                            }
                            tracing::warn!(%cause, delivered_chars = delivered.chars().count(), "stream interrupted");
                            yield Err(Error::interrupted(delivered, live.usage(), cause));
                            return;
                        }
                    }
                }
            }
        });
        Box::pin(InSpan { stream, span })
    }
}

/// Enters `span` around every poll of `stream`, so its logs carry the request's fields.
struct InSpan<S> {
    stream: S,
    span: tracing::Span,
}

impl<S: futures_core::Stream + Unpin> futures_core::Stream for InSpan<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        std::pin::Pin::new(&mut this.stream).poll_next(context)
    }
}
