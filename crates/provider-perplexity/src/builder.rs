//! The first ten lines: a provider from a few keys and a model, or from the environment.

use std::time::Duration;

use chat_core::{ChatRequest, Error};
use resilience::ApiKey;

use crate::{
    AfterCommit, Api, BackoffPolicy, BreakerConfig, PerplexityConfig, PerplexityProvider, Timeouts,
};

/// Builds a [`PerplexityProvider`]: the keys, and what differs from the defaults.
///
/// ```
/// # fn main() -> Result<(), provider_perplexity::Error> {
/// use std::time::Duration;
///
/// let provider = provider_perplexity::PerplexityProvider::builder()
///     .keys(["pplx-key-1", "pplx-key-2"])
///     .model("sonar-pro")
///     // Three requests at most: the first and two retries.
///     .max_attempts(3)
///     .retry_delays(Duration::from_millis(250), Duration::from_secs(4))
///     .build()?;
/// assert_eq!(provider.request("Explain quantum computing").model, "sonar-pro");
/// assert_eq!(provider.config().backoff.max_attempts, 3);
/// # Ok(()) }
/// ```
///
/// Every other setting is a field of [`PerplexityConfig`], reachable with
/// [`configure`](PerplexityBuilder::configure).
#[derive(Debug, Clone, Default)]
#[must_use = "call build() to get the provider"]
pub struct PerplexityBuilder {
    config: PerplexityConfig,
}

impl PerplexityBuilder {
    /// Adds keys (blank ones are skipped); several are rotated, least recently used first.
    pub fn keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.config.keys.extend(
            keys.into_iter()
                .map(|key| ApiKey::new(key.as_ref().trim()))
                .filter(|key| !key.is_empty()),
        );
        self
    }

    /// Adds one key.
    pub fn key(self, key: impl AsRef<str>) -> Self {
        self.keys([key])
    }

    /// The model (or alias, or preset) of [`PerplexityProvider::request`] (default `sonar`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.default_model = model.into();
        self
    }

    /// Where the API is (default `https://api.perplexity.ai`).
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.config.base_url = base_url.into();
        self
    }

    /// The API to use whatever the model's name implies.
    pub fn api(mut self, api: Api) -> Self {
        self.config.api = Some(api);
        self
    }

    /// The deadlines of models outside every family.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.config.timeouts = timeouts;
        self
    }

    /// A bound on every whole request, whatever the model.
    pub fn total_timeout(mut self, total: Duration) -> Self {
        self.config.set_total_timeout(total);
        self
    }

    /// What a break after answer text does (default: an interruption error).
    pub fn after_commit(mut self, after_commit: AfterCommit) -> Self {
        self.config.after_commit = after_commit;
        self
    }

    /// How many requests one answer may take before it fails, **the first included**: `1`
    /// never retries (default 4, as the official SDKs). Key rotations after a rate limit or
    /// a rejected key count too. `0` is taken as `1`.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.backoff.max_attempts = attempts.max(1);
        self
    }

    /// The delays between retries: full jitter from `base`, doubling, never over `cap`
    /// (default 0.5 s to 8 s). A server's `retry-after` is followed instead, up to
    /// [`BackoffPolicy::max_hint`].
    pub fn retry_delays(mut self, base: Duration, cap: Duration) -> Self {
        self.config.backoff.base = base;
        self.config.backoff.cap = cap.max(base);
        self
    }

    /// The whole retry policy at once (its `total_deadline` is replaced by the timeouts').
    pub fn backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// The circuit breakers' settings (one breaker per API and model family).
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.config.breaker = breaker;
        self
    }

    /// Whether a stream that cannot be had falls back to one non-streaming request (default
    /// true).
    pub fn fallback(mut self, fallback: bool) -> Self {
        self.config.fallback = fallback;
        self
    }

    /// Any other setting.
    pub fn configure(mut self, change: impl FnOnce(&mut PerplexityConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// The provider.
    ///
    /// # Errors
    /// A config error: no key, a base URL that is not `https://` (or loopback `http://`), or a
    /// model the service does not take ([`PerplexityConfig::check_model`]).
    pub fn build(self) -> Result<PerplexityProvider, Error> {
        PerplexityProvider::new(self.config)
    }
}

impl PerplexityProvider {
    /// A builder: `PerplexityProvider::builder().keys([...]).model("sonar").build()?`.
    pub fn builder() -> PerplexityBuilder {
        PerplexityBuilder::default()
    }

    /// A provider from the environment: keys from `PERPLEXITY_API_KEY`,
    /// `PERPLEXITY_API_KEY_1`.. and `PERPLEXITY_API_KEYS`, the base URL from
    /// `PERPLEXITY_BASE_URL`, a proxy from `PERPLEXITY_PROXY` or `HTTPS_PROXY`/`HTTP_PROXY`.
    ///
    /// # Errors
    /// A config error when no key is set.
    pub fn from_env() -> Result<PerplexityProvider, Error> {
        PerplexityProvider::new(PerplexityConfig::from_env())
    }

    /// A request for `question` to the builder's model (`sonar` by default).
    pub fn request(&self, question: impl Into<String>) -> ChatRequest {
        ChatRequest::new(self.config().default_model.clone(), question)
    }
}
