//! The public provider: [`PerplexityProvider`], its queries, and its [`ChatProvider`]
//! implementation. Every request starts here and goes down once: its route from the
//! endpoint, a refusal said before sending, then a stream (`answer`), long-running work
//! (`runs`), or one request (`endpoint`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chat_core::{
    ChatEvent, ChatProvider, ChatRequest, ChatResponse, ChatStream, Error, ErrorKind, SearchResult,
};
use resilience::{BreakerStats, KeyStats};
use tokio::time::Instant;
use tracing::Instrument;

use crate::api::{self, Api};
use crate::endpoint::{Endpoint, Route, Tally};
use crate::{PerplexityConfig, SearchRequest};

/// The Perplexity provider. Cheap to clone; clones share connections, keys and breaker.
#[derive(Clone)]
pub struct PerplexityProvider {
    endpoint: Arc<Endpoint>,
}

impl std::fmt::Debug for PerplexityProvider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PerplexityProvider")
            .field("base_url", &self.endpoint.base_url)
            .field("config", &self.endpoint.config)
            .finish_non_exhaustive()
    }
}

impl PerplexityProvider {
    /// A provider for `config`.
    ///
    /// # Errors
    /// A config error: no key, a base URL that is not `https://` (or loopback `http://`), or a
    /// default model the service does not take ([`PerplexityConfig::check_model`]).
    pub fn new(config: PerplexityConfig) -> Result<Self, Error> {
        config.check_model(&config.default_model)?;
        let endpoint = Arc::new(Endpoint::new(config)?);
        #[cfg(feature = "otel")]
        crate::telemetry::metrics::watch_keys(&endpoint);
        Ok(PerplexityProvider { endpoint })
    }

    /// The same request, connection pool, decoding and stop rule as
    /// [`chat_stream`](ChatProvider::chat_stream), without the reliability layers: no retrier
    /// (breaker, key pool, budget, backoff), no fallback, no commit-point bookkeeping, no
    /// request span. Only for the benches' like-for-like rows (feature `bench-internals`).
    #[cfg(feature = "bench-internals")]
    #[doc(hidden)]
    pub fn stream_without_layers(&self, request: ChatRequest) -> ChatStream {
        let endpoint = self.endpoint.clone();
        Box::pin(async_stream::stream! {
            let route = endpoint.route(&request.model);
            let key = endpoint.config.keys[0].clone();
            let body = Bytes::from(api::request_body(route.api, &request, &route.model, true));
            let method = crate::endpoint::Method::Post(body);
            let path = route.api.protocol().path();
            let live = match endpoint.send(method, path, &key, true, &route.timeouts).await {
                Ok(response) => endpoint.live(&route, response, None),
                Err(error) => Err(error),
            };
            let mut live = match live {
                Ok(live) => live,
                Err(error) => {
                    yield Err(error);
                    return;
                }
            };
            loop {
                match live.next().await {
                    Ok(Some(chat_core::ChatEvent::Done(response))) => {
                        // As the layered stream ends: once the connection is back in the pool.
                        let released = live.release();
                        yield Ok(chat_core::ChatEvent::Done(response));
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
        let route = self.endpoint.route(&request.model);
        if let Some(refused) = refused(&self.endpoint.config, &route, &request) {
            return Err(refused);
        }
        // Refused when the limit is reached; its cost is added by whoever attaches to it.
        let held =
            crate::spend::admit(self.endpoint.budget.as_deref(), route.timeouts.total).await?;
        let started = crate::runs::start(&self.endpoint, &route, &request).await;
        if let Some(held) = held {
            held.settle(None).await;
        }
        started
    }

    /// The answer of the background run `run_id` (asked of `model`, whose deadlines apply),
    /// streamed from its first event: live while the run goes on, whole if it has ended, read
    /// again after a cut like any Agent API stream. Leaving this stream does not cancel the
    /// run (it was started to run on its own). A run the service no longer has is an error
    /// (404).
    pub fn attach(&self, run_id: &str, model: &str) -> ChatStream {
        let model = self.endpoint.config.aliases.resolve(model).to_owned();
        let route = self.endpoint.route_on(model, Api::Agent);
        let config = &self.endpoint.config;
        let Some(work) = route
            .api
            .protocol()
            .long_running(&route.model, true, config)
        else {
            let error = Error::config("this API runs nothing in the background");
            return Box::pin(futures_util::stream::iter([Err(error)]));
        };
        let span =
            tracing::info_span!("perplexity", api = "agent", model = %route.model, run = %run_id);
        let answer = crate::answer::attach(self.endpoint.clone(), route, work, run_id.to_owned());
        let answer: ChatStream = Box::pin(tracing_futures::Instrument::instrument(answer, span));
        match &self.endpoint.budget {
            Some(budget) => crate::spend::metered(budget.clone(), None, answer),
            None => answer,
        }
    }

    /// The spending limit's figures for the current period: `None` when no
    /// [`PerplexityConfig::budget`] is set.
    pub async fn spend(&self) -> Option<crate::Spend> {
        match &self.endpoint.budget {
            Some(budget) => Some(budget.spend().await),
            None => None,
        }
    }

    /// The model an alias stands for, and the API that will answer it (an explicit
    /// [`PerplexityConfig::api`] wins over what the name implies).
    pub fn resolve(&self, model: &str) -> (String, Api) {
        self.endpoint.resolve(model)
    }

    /// What the Agent API answers a Sonar name (an alias resolved) with, in words
    /// (`sonar -> perplexity/sonar with web_search`): `None` for any other name, or when chat
    /// completions answer.
    pub fn mapping(&self, model: &str) -> Option<String> {
        let (model, api) = self.resolve(model);
        (api == Api::Agent)
            .then(|| crate::api::translate::mapping(&model))
            .flatten()
            .map(|(_, said)| said)
    }

    /// Per-key figures (never the keys).
    pub fn key_stats(&self) -> Vec<KeyStats> {
        self.endpoint.keys().stats()
    }

    /// The figures of the circuit breaker that guards `model` (an alias is resolved): there
    /// is one per API and model family.
    pub fn breaker_stats(&self, model: &str) -> BreakerStats {
        self.endpoint.route(model).retrier.breaker().stats()
    }

    /// The configuration in use.
    pub fn config(&self) -> &PerplexityConfig {
        &self.endpoint.config
    }

    /// Perplexity's Search API (`POST /search`): ranked web results, no answer. The request
    /// gets the same protections as a chat request.
    ///
    /// # Errors
    /// As for a chat request.
    pub async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchResult>, Error> {
        // Under the default family's chat-completions retrier, as before the Agent API.
        let route = self.endpoint.route_on(String::new(), Api::Sonar);
        let deadline = resilience::backoff::later(Instant::now(), route.timeouts.total);
        let body = Bytes::from(
            serde_json::to_vec(request)
                .map_err(|error| Error::config(format!("search request: {error}")))?,
        );
        let tally = Tally::default();
        let searched = self.endpoint.post(
            &route,
            api::search::PATH,
            body,
            deadline,
            &tally,
            api::search::results,
        );
        let (results, _key) = searched
            .instrument(tracing::info_span!("perplexity_search"))
            .await?;
        Ok(results)
    }
}

impl PerplexityProvider {
    /// The model slugs the Agent API takes (`GET /v1/models`), in the service's order: what a
    /// `model` or `models` may name. The request gets the same protections as a chat request.
    ///
    /// # Errors
    /// As for a chat request; a protocol error when the body is not a model list.
    pub async fn models(&self) -> Result<Vec<String>, Error> {
        let route = self.endpoint.route_on(String::new(), Api::Agent);
        let deadline = resilience::backoff::later(Instant::now(), route.timeouts.total);
        let endpoint = &self.endpoint;
        let listed = route.retrier.run_until(deadline, |attempt| async move {
            let response = endpoint
                .send(
                    crate::endpoint::Method::Get,
                    api::models::PATH,
                    &attempt.key,
                    false,
                    &route.timeouts,
                )
                .await?;
            endpoint
                .read(&route.timeouts, response, api::models::ids)
                .await
        });
        let (ids, _lease) = listed
            .instrument(tracing::info_span!("perplexity_models"))
            .await?;
        Ok(ids)
    }
}

/// What would be refused anyway, said before anything is sent (and paid for): a model name
/// the service does not take ([`PerplexityConfig::check_model`]), a request over
/// [`PerplexityConfig::max_request_bytes`], and what the route's API refuses
/// (`Protocol::refuses`).
fn refused(config: &PerplexityConfig, route: &Route, request: &ChatRequest) -> Option<Error> {
    if let Err(error) = config.check_model(&request.model) {
        return Some(error);
    }
    let carried: usize = request
        .messages
        .iter()
        .map(chat_core::Message::request_bytes)
        .sum();
    if carried > config.max_request_bytes {
        return Some(Error::reported(
            ErrorKind::BadRequest,
            format!(
                "the request carries {carried} bytes of messages and attachments, over max_request_bytes ({}): send large files by URL",
                config.max_request_bytes
            ),
        ));
    }
    route.api.protocol().refuses(request, &route.model, config)
}

/// The models that answer `request`, in the order they are asked: its model, then its
/// fallback chain ([`PerplexityConfig::fallback_for`]). A chain the Agent API can walk itself
/// (every name `provider/model`) goes out as the request's `models` instead, and so does a
/// request that names its own `models`: then one model is asked here.
fn models_to_ask(config: &PerplexityConfig, request: &mut ChatRequest) -> Vec<String> {
    let chain = config.fallback_for(&request.model);
    if chain.is_empty() || request.options.contains_key("models") {
        return vec![request.model.clone()];
    }
    let first = config.aliases.resolve(&request.model).to_owned();
    let server_side = config.api() == Api::Agent
        && std::iter::once(&first)
            .chain(&chain)
            .all(|model| model.contains('/'));
    if server_side {
        let models: Vec<&String> = std::iter::once(&first).chain(&chain).collect();
        request
            .options
            .insert("models".into(), serde_json::json!(models));
        return vec![request.model.clone()];
    }
    std::iter::once(request.model.clone())
        .chain(chain)
        .collect()
}

/// Whether the next model of a chain is asked after `error` from this one: its attempts were
/// spent, before the first word, on what another model may not meet (an overloaded or
/// failing server, every key cooling, an open breaker).
fn moves_on(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server | ErrorKind::RateLimited | ErrorKind::CircuitOpen
    )
}

impl PerplexityProvider {
    /// [`ChatProvider::chat`] of one model, no fallback across models.
    async fn chat_one(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let endpoint = &self.endpoint;
        let route = endpoint.route(&request.model);
        if let Some(refused) = refused(&endpoint.config, &route, &request) {
            return Err(refused);
        }
        let span = tracing::info_span!("perplexity", api = route.api.as_str(), model = %route.model, stream = false);
        let deadline = resilience::backoff::later(Instant::now(), route.timeouts.total);
        if let Some(work) = crate::runs::long_running(endpoint, &route, &request, false) {
            return crate::runs::whole(endpoint, &route, &request, work, deadline)
                .instrument(span)
                .await;
        }
        let body = Bytes::from(api::request_body(route.api, &request, &route.model, false));
        endpoint
            .complete(&route, body, deadline, &Tally::default())
            .instrument(span)
            .await
    }

    /// [`ChatProvider::chat_stream`] of one model, no fallback across models.
    fn stream_one(&self, request: ChatRequest) -> ChatStream {
        let route = self.endpoint.route(&request.model);
        if let Some(refused) = refused(&self.endpoint.config, &route, &request) {
            return Box::pin(futures_util::stream::iter([Err(refused)]));
        }
        let span = tracing::info_span!("perplexity", api = route.api.as_str(), model = %route.model, stream = true);
        let answer = crate::answer::stream(self.endpoint.clone(), route, request);
        // The request's span is entered around every poll, so its logs carry its fields.
        Box::pin(tracing_futures::Instrument::instrument(answer, span))
    }
}

#[async_trait]
impl ChatProvider for PerplexityProvider {
    /// The answer, from the request's model or, when its attempts are spent before any
    /// answer on transient failures, from the next of its fallback chain
    /// ([`PerplexityConfig::fallback_models`]); `passed_over` says which were asked first.
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let observed = self.observe(&request);
        let span = observed.span().clone();
        let answered = async {
            let for_at_most = self.endpoint.config.timeouts_for(&request.model).total;
            let held = crate::spend::admit(self.endpoint.budget.as_deref(), for_at_most).await?;
            let answered = self.chat_chain(request).await;
            crate::spend::settle(held, &answered).await;
            answered
        }
        .instrument(span)
        .await;
        observed.finish(answered.as_ref());
        answered
    }

    /// Names the endpoint too: answers from another base URL (the simulator, a proxy, a
    /// compatible server) never share a cache entry with the real service's.
    fn answerer(&self, request: &ChatRequest) -> String {
        let (model, api) = self.resolve(&request.model);
        format!(
            "perplexity/{}/{model}@{}",
            api.as_str(),
            self.endpoint.base_url
        )
    }

    /// Not an answer searched in the last hour or day (on either API): it goes stale in
    /// minutes.
    fn cacheable(&self, request: &ChatRequest) -> bool {
        !crate::options::searches_recent(request)
    }

    /// As [`chat`](ChatProvider::chat): the next model of the chain is asked only while
    /// nothing was delivered (events before the first word are held by each answer), so the
    /// caller never sees two models' words. Under a spending limit, the hold is taken when
    /// the stream is first polled.
    fn chat_stream(&self, request: ChatRequest) -> ChatStream {
        let observed = self.observe(&request);
        // Spans made on the way down are the answer's children.
        let answer = observed
            .span()
            .in_scope(|| match self.endpoint.budget.clone() {
                None => self.stream_chain(request),
                Some(budget) => {
                    let for_at_most = self.endpoint.config.timeouts_for(&request.model).total;
                    crate::spend::metered(budget, Some(for_at_most), self.stream_chain(request))
                }
            });
        crate::telemetry::observed(observed, answer)
    }
}

impl PerplexityProvider {
    /// Starts observing an answer to `request`: its span, its clock, its metrics.
    fn observe(&self, request: &ChatRequest) -> crate::telemetry::Observed {
        crate::telemetry::Observed::start(
            request,
            &self.endpoint.server,
            self.endpoint.config.capture_message_content,
        )
    }
}

impl PerplexityProvider {
    /// The answer of the request's model or of its fallback chain, outside the spending
    /// limit.
    async fn chat_chain(&self, mut request: ChatRequest) -> Result<ChatResponse, Error> {
        let models = models_to_ask(&self.endpoint.config, &mut request);
        let mut passed_over = Vec::new();
        for (index, model) in models.iter().enumerate() {
            let mut asked = request.clone();
            asked.model.clone_from(model);
            match self.chat_one(asked).await {
                Err(error) if index + 1 < models.len() && moves_on(&error) => {
                    tracing::warn!(model = %model, error = %error.report(), "falling back to the next model");
                    passed_over.push((model.clone(), error.report().to_string()));
                }
                Ok(mut response) => {
                    response.passed_over = passed_over;
                    return Ok(response);
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::config("no model to ask"))
    }

    /// The stream of the request's model or of its fallback chain, outside the spending
    /// limit.
    fn stream_chain(&self, mut request: ChatRequest) -> ChatStream {
        let models = models_to_ask(&self.endpoint.config, &mut request);
        if models.len() == 1 {
            return self.stream_one(request);
        }
        let provider = self.clone();
        Box::pin(async_stream::stream! {
            let mut passed_over = Vec::new();
            for (index, model) in models.iter().enumerate() {
                let mut asked = request.clone();
                asked.model.clone_from(model);
                let mut answer = provider.stream_one(asked);
                let first = futures_util::StreamExt::next(&mut answer).await;
                if let Some(Err(error)) = &first
                    && index + 1 < models.len()
                    && moves_on(error)
                {
                    tracing::warn!(model = %model, error = %error.report(), "falling back to the next model");
                    passed_over.push((model.clone(), error.report().to_string()));
                    continue;
                }
                let mut next = first;
                while let Some(item) = next {
                    yield match item {
                        Ok(ChatEvent::Done(mut response)) => {
                            response.passed_over = std::mem::take(&mut passed_over);
                            Ok(ChatEvent::Done(response))
                        }
                        other => other,
                    };
                    next = futures_util::StreamExt::next(&mut answer).await;
                }
                return;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn tools_for_a_sonar_model_at_perplexity_are_refused_before_anything_is_sent() {
        use chat_core::{ChatProvider, ChatRequest, ErrorKind, Tool};
        use futures_util::StreamExt;
        // The real host, chat completions asked for, and nothing listening anywhere: only a
        // refusal made before sending can answer without a connection error.
        let provider = crate::PerplexityProvider::builder()
            .key("pplx-test")
            .max_attempts(1)
            .configure(|config| config.api = Some(crate::Api::Sonar))
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
}
