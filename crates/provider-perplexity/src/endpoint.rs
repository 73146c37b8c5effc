//! The service one provider talks to: its base URL, the HTTP client, the retriers (one per
//! API and model family) and what the server has refused. [`Endpoint::send`] is the one
//! place a request leaves and the server's text comes back in, so it is the one place keys
//! are taken out of errors; a stream's errors are redacted by its [`Live`], which the
//! endpoint makes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use chat_core::{ChatResponse, Error, TimeoutPhase};
use hyper::Response;
use hyper::body::Incoming;
use resilience::{ApiKey, BackoffPolicy, CircuitBreaker, KeyPool, Retrier, RetryBudget};
use tokio::time::Instant;

use crate::api::Api;
use crate::client::{self, HttpClient, Live, Redactor, RunSlot};
use crate::{PerplexityConfig, Timeouts};

/// The service behind one provider (its clones share it).
pub(crate) struct Endpoint {
    pub(crate) config: PerplexityConfig,
    pub(crate) base_url: String,
    client: HttpClient,
    redactor: Redactor,
    /// One retrier per model family (index 0: models outside every family, then
    /// `config.families` in order) and API, all sharing the key pool and the retry budget,
    /// each with its own circuit breaker: deep research timing out must not cut off quick
    /// answers.
    retriers: Vec<[Retrier; 2]>,
    /// Per API ([`Api::index`]): the server refused its long-running work once (a 400 naming
    /// `background`, a 404 to an async job's create), so that API is asked plainly from then
    /// on.
    refused: [AtomicBool; 2],
    /// The Sonar names logged as mapped (a bit per name of the migration table).
    mapped: std::sync::atomic::AtomicU8,
    /// Where the organization's request rates are kept ([`PerplexityConfig::org_rpm`]):
    /// shared with other processes, or this one's.
    rates: Option<Arc<dyn resilience::shared::SharedState>>,
    /// The spending limit and where its spend is counted ([`PerplexityConfig::budget`]).
    pub(crate) budget: Option<Arc<resilience::Budget>>,
    /// The host and port requests go to (`server.address`, `server.port` in telemetry).
    pub(crate) server: (String, u16),
}

/// Where one request goes and under which rules.
pub(crate) struct Route {
    pub(crate) model: String,
    pub(crate) api: Api,
    pub(crate) timeouts: Timeouts,
    pub(crate) retrier: Retrier,
}

/// What a request sends: a JSON body, or nothing (a read).
pub(crate) enum Method {
    Post(Bytes),
    Get,
}

impl Endpoint {
    /// The endpoint of `config`.
    ///
    /// # Errors
    /// A config error: no key, a base URL that is not `https://` (or loopback `http://`), a
    /// bad proxy or root certificate.
    pub(crate) fn new(config: PerplexityConfig) -> Result<Self, Error> {
        if config.keys.is_empty() {
            return Err(Error::config(
                "no API key: set PERPLEXITY_API_KEY (or PERPLEXITY_API_KEYS)",
            ));
        }
        let base_url = client::check_base_url(&config.base_url, config.allow_insecure_http)?;
        let keys = KeyPool::new(config.keys.clone(), config.key_pool);
        let shared_state = config.shared_state.clone().or_else(|| {
            // A rate limit alone still spaces this process's requests.
            let limited = config.key_rpm.or(config.org_rpm).or(config.search_rpm);
            limited.map(|_| {
                Arc::new(resilience::shared::LocalState::new())
                    as Arc<dyn resilience::shared::SharedState>
            })
        });
        if let Some(state) = &shared_state {
            keys.share(state.clone(), config.key_rpm);
        }
        let retriers = retriers(&config, &base_url, &keys, shared_state.as_ref());
        let budget = match config.budget {
            Some(limit) => {
                limit
                    .check()
                    .map_err(|problem| Error::config(format!("budget: {problem}")))?;
                let ledger = config.spend_ledger.clone().unwrap_or_else(|| {
                    Arc::new(resilience::spend::LocalLedger::new())
                        as Arc<dyn resilience::spend::SpendLedger>
                });
                Some(Arc::new(resilience::Budget::new(limit, ledger)))
            }
            None => None,
        };
        let client = client::http_client(
            config.timeouts.connect,
            &config.proxy,
            &config.root_certificates,
        )?;
        let server = crate::telemetry::server(&base_url);
        Ok(Endpoint {
            client,
            base_url,
            redactor: Redactor::new(config.keys.clone()),
            config,
            retriers,
            refused: [AtomicBool::new(false), AtomicBool::new(false)],
            mapped: std::sync::atomic::AtomicU8::new(0),
            rates: shared_state,
            budget,
            server,
        })
    }

    /// The model (alias resolved), its API, deadlines and retrier.
    pub(crate) fn route(&self, model: &str) -> Route {
        let (model, api) = self.resolve(model);
        self.route_on(model, api)
    }

    /// The model an alias stands for, and the API that answers it. A Sonar name answered by
    /// the Agent API is logged once, with what it was mapped to.
    pub(crate) fn resolve(&self, model: &str) -> (String, Api) {
        let model = self.config.aliases.resolve(model).to_owned();
        let api = self.config.api();
        if api == Api::Agent
            && let Some((index, mapping)) = crate::api::translate::mapping(&model)
            && self.mapped.fetch_or(1 << index, Ordering::Relaxed) & (1 << index) == 0
        {
            tracing::info!(model = %model, "answered on the Agent API: {mapping}");
        }
        (model, api)
    }

    /// `model` (already resolved) on `api`, whatever the name implies.
    pub(crate) fn route_on(&self, model: String, api: Api) -> Route {
        let family = self.config.family_index(&model);
        let retrier = self.retriers[family.map_or(0, |index| index + 1)][api.index()].clone();
        Route {
            timeouts: self.config.timeouts_for(&model),
            model,
            api,
            retrier,
        }
    }

    /// The key pool every retrier shares (for its figures).
    pub(crate) fn keys(&self) -> &KeyPool {
        self.retriers[0][0].keys()
    }

    /// `error` with every configured key taken out.
    pub(crate) fn redact(&self, error: Error) -> Error {
        self.redactor.apply(error)
    }

    /// What `decode` makes of a body read earlier (kept whole while work went on), redacted
    /// as every body read here is.
    pub(crate) fn decode<T>(
        &self,
        body: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        decode(body).map_err(|error| self.redact(error))
    }

    /// Whether the server refused `api`'s long-running work.
    pub(crate) fn refused(&self, api: Api) -> bool {
        self.refused[api.index()].load(Ordering::Relaxed)
    }

    /// The server refused `api`'s long-running work: ask plainly from now on.
    pub(crate) fn refuse(&self, api: Api) {
        self.refused[api.index()].store(true, Ordering::Relaxed);
    }

    /// Sends one request to `path` and returns the response once its headers arrive with a
    /// 2xx status; any other answer is its (redacted) error. Every request goes through here.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        key: &ApiKey,
        stream: bool,
        timeouts: &Timeouts,
    ) -> Result<Response<Incoming>, Error> {
        self.organization_slot(path, timeouts).await?;
        let (method, body) = match method {
            Method::Post(body) => (hyper::Method::POST, body),
            Method::Get => (hyper::Method::GET, Bytes::new()),
        };
        let request = client::request(method, &self.base_url, path, body, key, stream)?;
        client::send(&self.client, request, stream, timeouts)
            .await
            .map_err(|error| self.redact(crate::api::sonar::retired(path, error)))
    }

    /// Waits for a slot of the organization's request rate for `path` (the Agent API's, or
    /// the Search API's), when one is set; no longer than the total deadline.
    async fn organization_slot(&self, path: &str, timeouts: &Timeouts) -> Result<(), Error> {
        let limit = if path.starts_with("/v1/agent") || path.starts_with("/v1/responses") {
            self.config.org_rpm.map(|rpm| ("organization/agent", rpm))
        } else if path == crate::api::search::PATH {
            self.config
                .search_rpm
                .map(|rpm| ("organization/search", rpm))
        } else {
            None
        };
        let (Some((bucket, per_minute)), Some(rates)) = (limit, &self.rates) else {
            return Ok(());
        };
        let bucket = resilience::shared::KeyId::new(bucket);
        let started = tokio::time::Instant::now();
        loop {
            let Err(wait) = rates.acquire_rate(&bucket, per_minute).await else {
                return Ok(());
            };
            if started.elapsed() + wait > timeouts.total {
                return Err(Error::reported(
                    chat_core::ErrorKind::RateLimited,
                    format!(
                        "the organization's rate ({per_minute} requests a minute) has no slot within the deadline"
                    ),
                )
                .with_retry_after(Some(wait)));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A whole (non-streaming) response body, within the size limit and the idle deadline,
    /// read by `decode` (whose errors quote the server, so they are redacted).
    pub(crate) async fn read<T>(
        &self,
        timeouts: &Timeouts,
        response: Response<Incoming>,
        decode: impl Fn(&[u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let body = http_body_util::Limited::new(response.into_body(), self.config.max_event_bytes);
        let collected = tokio::time::timeout(timeouts.idle, http_body_util::BodyExt::collect(body))
            .await
            .map_err(|_| Error::timeout(TimeoutPhase::Idle))?
            .map_err(|error| Error::incomplete("the response body broke").with_source(error))?;
        self.decode(&collected.to_bytes(), decode)
    }

    /// One JSON request to `path` under the route's retrier (keys rotating), its whole body
    /// read by `decode`; every try is counted in `tally`. Also gives the key that answered
    /// (work it started is read, and cancelled, with that key).
    pub(crate) async fn post<T>(
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
                let (body, decode) = (body.clone(), &decode);
                async move {
                    let method = Method::Post(body);
                    let response = self
                        .send(method, path, &attempt.key, false, &route.timeouts)
                        .await?;
                    let value = self.read(&route.timeouts, response, decode).await?;
                    Ok::<_, Error>((value, attempt.key.clone()))
                }
            })
            .await?;
        Ok(value)
    }

    /// A read of `path` with `key` (what that key started), retried with the same key under
    /// the route's retrier: breaker, backoff and retry budget, within `deadline`.
    pub(crate) async fn get<T>(
        &self,
        route: &Route,
        path: &str,
        key: &ApiKey,
        deadline: Instant,
        decode: impl Fn(&[u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        route
            .retrier
            .run_with_key(key, deadline, |_| async {
                let response = self
                    .send(Method::Get, path, key, false, &route.timeouts)
                    .await?;
                self.read(&route.timeouts, response, &decode).await
            })
            .await
    }

    /// One non-streaming chat request, retried under the route's protections.
    pub(crate) async fn complete(
        &self,
        route: &Route,
        body: Bytes,
        deadline: Instant,
        tally: &Tally,
    ) -> Result<ChatResponse, Error> {
        let protocol = route.api.protocol();
        let (mut response, _key) = self
            .post(route, protocol.path(), body, deadline, tally, |bytes| {
                crate::api::full_response(route.api, bytes)
            })
            .await?;
        tally.stamp(&mut response);
        Ok(response)
    }

    /// The events of a stream `response` on `route`, decoded, bounded, and redacted; a run
    /// it names is recorded in `run` with `key`, for a cancel.
    pub(crate) fn live(
        &self,
        route: &Route,
        response: Response<Incoming>,
        run: Option<(RunSlot, ApiKey)>,
    ) -> Result<Live, Error> {
        if !client::is_event_stream(&response) {
            return Err(Error::not_streaming(
                None,
                "the server answered a stream request without a stream",
            ));
        }
        Ok(Live::new(
            response,
            route.api.protocol().decoder(),
            route.timeouts,
            (self.config.max_event_bytes, self.config.max_answer_bytes),
            run,
            self.redactor.clone(),
        ))
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
    let budget = Arc::new(RetryBudget::new(config.retry_budget));
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

/// A URL without `user:password@` (looked for in the authority only, where it can be), to
/// name an endpoint where others can read it.
fn without_userinfo(url: &str) -> String {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        // The base URL was checked before; nothing of an unparsable one is shared.
        return String::new();
    };
    let scheme = uri.scheme_str().unwrap_or_default();
    let authority = crate::config::public_authority(&uri).unwrap_or_default();
    let path = uri.path().trim_end_matches('/');
    format!("{scheme}://{authority}{path}")
}

/// The tries one answer took, and how often the key changed between them, for
/// [`ChatResponse::attempts`] and [`ChatResponse::key_rotations`]. Atomics, so that a
/// borrowed tally keeps the stream `Send`.
#[derive(Debug)]
pub(crate) struct Tally {
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
    pub(crate) fn note(&self, attempt: &resilience::Attempt) {
        use std::sync::atomic::Ordering::Relaxed;
        self.attempts.fetch_add(1, Relaxed);
        let last = self.last_key.swap(attempt.key_index, Relaxed);
        if last != usize::MAX && last != attempt.key_index {
            self.rotations.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn stamp(&self, response: &mut ChatResponse) {
        use std::sync::atomic::Ordering::Relaxed;
        response.attempts = self.attempts.load(Relaxed);
        response.key_rotations = self.rotations.load(Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

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
