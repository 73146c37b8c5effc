use std::collections::HashMap;
use std::time::Duration;

use chat_core::Error;

use crate::api::{Api, agent::PRESETS};
use resilience::{ApiKey, BackoffPolicy, BreakerConfig, BudgetConfig, KeyPoolConfig};

/// What happens when a stream breaks after answer text was delivered (the commit point).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AfterCommit {
    /// The stream ends with an interrupted error holding the exact text delivered: nothing is
    /// replayed behind the caller's back.
    #[default]
    Fail,
    /// The stream emits `ChatEvent::Restart`, then the answer of a new attempt from its start,
    /// at most this many times.
    Restart {
        /// Restarts allowed per request.
        max_restarts: u32,
    },
}

/// Every deadline of a request, each reported as its own `TimeoutPhase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Making the connection (TCP and TLS).
    pub connect: Duration,
    /// From sending the request to its response headers (the service searches first).
    pub headers: Duration,
    /// From the headers to the first event of a stream.
    pub first_event: Duration,
    /// Between two events of a stream.
    pub idle: Duration,
    /// The whole request, retries, backoff and fallback included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            headers: Duration::from_secs(60),
            first_event: Duration::from_secs(60),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(300),
        }
    }
}

impl Timeouts {
    /// Deadlines for deep research, which searches for minutes, often in silence (the
    /// official server measured about 229 s per call): 10 minutes to the first event and
    /// between events, 30 minutes in all.
    pub fn research() -> Self {
        Timeouts {
            headers: Duration::from_secs(120),
            first_event: Duration::from_secs(600),
            idle: Duration::from_secs(600),
            total: Duration::from_secs(1800),
            ..Timeouts::default()
        }
    }

    /// Deadlines for reasoning models and presets: a longer think before the first word.
    pub fn reasoning() -> Self {
        Timeouts {
            first_event: Duration::from_secs(180),
            idle: Duration::from_secs(120),
            total: Duration::from_secs(600),
            ..Timeouts::default()
        }
    }
}

/// A family of models that share deadlines, a slow-call threshold and (per API) a circuit
/// breaker, so that minutes-long deep research neither trips on the deadlines of quick
/// answers nor opens the breaker those answers depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelFamily {
    /// Its name, for logs and statistics (`research`, `reasoning`, or one from the config).
    pub name: String,
    /// The models (after alias resolution) and presets in it.
    pub models: Vec<String>,
    /// Its deadlines.
    pub timeouts: Timeouts,
    /// A call slower than this counts as slow for its breaker.
    pub slow_call: Duration,
    /// The models asked in turn when one of this family cannot answer (see
    /// [`PerplexityConfig::fallback_models`]); empty: the config's.
    pub fallback: Vec<String>,
}

impl ModelFamily {
    /// A family named `name` of `models` with these deadlines; the slow-call threshold is
    /// the total deadline's half.
    pub fn new(name: impl Into<String>, models: &[&str], timeouts: Timeouts) -> Self {
        ModelFamily {
            name: name.into(),
            models: models.iter().map(|model| (*model).to_owned()).collect(),
            timeouts,
            slow_call: timeouts.total / 2,
            fallback: Vec::new(),
        }
    }

    /// The default families: `research` (sonar-deep-research, deep-research, high, xhigh) and
    /// `reasoning` (sonar-reasoning-pro, sonar-reasoning, medium, pro-search). Every other
    /// model uses [`PerplexityConfig::timeouts`] and the breaker's own slow-call threshold.
    pub fn defaults() -> Vec<ModelFamily> {
        vec![
            ModelFamily::new(
                "research",
                &["sonar-deep-research", "deep-research", "high", "xhigh"],
                Timeouts::research(),
            ),
            ModelFamily::new(
                "reasoning",
                &[
                    "sonar-reasoning-pro",
                    "sonar-reasoning",
                    "medium",
                    "pro-search",
                ],
                Timeouts::reasoning(),
            ),
        ]
    }
}

/// Where requests go: straight to the server, or through an HTTP proxy (a CONNECT tunnel).
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proxy {
    /// The first set of `PERPLEXITY_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` (or
    /// their lowercase forms), as the official MCP server reads them, for every destination
    /// but the `NO_PROXY` exceptions; read when the provider is built; direct when none is set.
    #[default]
    FromEnv,
    /// Always direct.
    Direct,
    /// This proxy (`http://[user:password@]host:port`) for every destination except those
    /// `no_proxy` lists (comma-separated hosts, domains, IPs or networks).
    Url {
        /// The proxy.
        url: String,
        /// Exceptions, as in `NO_PROXY`.
        no_proxy: String,
    },
}

impl std::fmt::Debug for Proxy {
    /// Never prints credentials: only the proxy's host and port.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proxy::FromEnv => formatter.write_str("FromEnv"),
            Proxy::Direct => formatter.write_str("Direct"),
            Proxy::Url { url, no_proxy } => {
                let host = url
                    .parse::<hyper::Uri>()
                    .ok()
                    .as_ref()
                    .and_then(public_authority)
                    .unwrap_or("<unparsable>")
                    .to_owned();
                formatter
                    .debug_struct("Url")
                    .field("host", &host)
                    .field("no_proxy", no_proxy)
                    .finish()
            }
        }
    }
}

/// A URI's host and port without its `user:password@`: what may be printed or shared.
pub(crate) fn public_authority(uri: &hyper::Uri) -> Option<&str> {
    let text = uri.authority()?.as_str();
    text.rsplit('@').next()
}

/// Short names for models, resolved before a request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAliases(HashMap<String, String>);

impl Default for ModelAliases {
    /// `pro` → sonar-pro, `reason` → sonar-reasoning-pro, `research` →
    /// sonar-deep-research. (`fast` is not an alias: it is the Agent API's quick preset.)
    fn default() -> Self {
        let mut aliases = HashMap::new();
        for (alias, model) in [
            ("pro", "sonar-pro"),
            ("reason", "sonar-reasoning-pro"),
            ("research", "sonar-deep-research"),
        ] {
            aliases.insert(alias.to_owned(), model.to_owned());
        }
        ModelAliases(aliases)
    }
}

impl ModelAliases {
    /// The model an alias stands for, or the name itself.
    pub fn resolve<'name>(&'name self, name: &'name str) -> &'name str {
        self.0.get(name).map_or(name, String::as_str)
    }

    /// The aliases' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Adds or replaces an alias.
    pub fn insert(&mut self, alias: impl Into<String>, model: impl Into<String>) {
        self.0.insert(alias.into(), model.into());
    }
}

/// Everything a [`PerplexityProvider`](crate::PerplexityProvider) needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PerplexityConfig {
    /// Where the API is: `https://api.perplexity.ai`, the simulator, or any OpenAI-compatible
    /// endpoint. Plain `http://` only for loopback unless `allow_insecure_http`.
    pub base_url: String,
    /// The model of [`PerplexityProvider::request`](crate::PerplexityProvider::request).
    pub default_model: String,
    /// The API to use. `None` (the default) is the Agent API for every model name at any
    /// base URL, Sonar names mapped as Perplexity's migration guide says (Perplexity retired
    /// Sonar chat completions on 2026-09-27); `Some(Api::Sonar)` asks chat completions, for
    /// an OpenAI-compatible endpoint (vLLM, Ollama, OpenRouter) or an account that still has
    /// Sonar.
    pub api: Option<Api>,
    /// Whether the endpoint is Perplexity's service, whose rules apply: model names checked
    /// before sending, tools refused on Sonar models, Sonar deep research as async jobs.
    /// `None`: only Perplexity's own host (`*.perplexity.ai`) is.
    pub perplexity_endpoint: Option<bool>,
    /// The keys, rotated by the pool.
    pub keys: Vec<ApiKey>,
    /// Model aliases.
    pub aliases: ModelAliases,
    /// Deadlines of models outside every family.
    pub timeouts: Timeouts,
    /// Families of models with their own deadlines, slow-call threshold and breakers.
    pub families: Vec<ModelFamily>,
    /// An HTTP proxy.
    pub proxy: Proxy,
    /// Retries and backoff (its `total_deadline` is replaced by `timeouts.total`).
    pub backoff: BackoffPolicy,
    /// The circuit breakers (one per API and model family; a family's `slow_call` replaces
    /// `slow_call_duration`).
    pub breaker: BreakerConfig,
    /// The retry budget: retries as a share of recent requests.
    pub retry_budget: BudgetConfig,
    /// Key cooldowns.
    pub key_pool: KeyPoolConfig,
    /// State shared with other processes using the same keys (for example
    /// `resilience_redis::RedisState`): key cooldowns, disabled keys and open breakers, and
    /// the request rate of `key_rpm`. `None`: this process only.
    pub shared_state: Option<std::sync::Arc<dyn resilience::shared::SharedState>>,
    /// At most this many requests a minute per key, for every process sharing
    /// `shared_state` together (each process alone without one). `None`: no limit of ours.
    pub key_rpm: Option<u32>,
    /// At most this many requests a minute to the Agent API (every request of every key, and
    /// of every process sharing `shared_state`), as Perplexity limits an organization, not a
    /// key: a request waits for its slot instead of meeting a 429. [`RateTier`] has the
    /// published tiers. `None`: no limit of ours.
    pub org_rpm: Option<u32>,
    /// The same for the Search API (`POST /search`).
    pub search_rpm: Option<u32>,
    /// A cap on what the service reports it charged (`usage.cost`), over a day, a month or
    /// in total (UTC). A request whose hold does not fit under it beside the period's spend
    /// and the requests in flight is refused before it is sent (`ErrorKind::Budget`); each
    /// answer's reported cost is added when it ends (streamed, whole, resumed, polled,
    /// attached, or cut short with a reported cost). `None`: no cap.
    pub budget: Option<resilience::SpendLimit>,
    /// Where `budget`'s spend is counted, shared by every process given the same ledger
    /// (`resilience_redis::RedisState` for a fleet; `pplx` uses its history database).
    /// `None`: this process only.
    pub spend_ledger: Option<std::sync::Arc<dyn resilience::spend::SpendLedger>>,
    /// Put the messages asked and answered on each answer's span
    /// (`gen_ai.input.messages`, `gen_ai.output.messages`), as the OpenTelemetry GenAI
    /// conventions allow when asked: off by default (messages are users' data);
    /// [`from_env`](PerplexityConfig::from_env) reads
    /// `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.
    pub capture_message_content: bool,
    /// Fall back to one non-streaming request when streaming attempts are spent or the server
    /// refuses to stream.
    pub fallback: bool,
    /// Models asked in turn when a model cannot answer: its attempts were spent before the
    /// first word on transient failures (an overloaded server, 5xx, every key cooling, an
    /// open breaker). Never after the first word (resuming covers that). A chain of
    /// `provider/model` names goes to the Agent API as one request's `models` (at most 5),
    /// which the server walks itself. A family's own chain wins
    /// ([`ModelFamily::fallback`]). Empty: no fallback across models.
    pub fallback_models: Vec<String>,
    /// What a break after the commit point does.
    pub after_commit: AfterCommit,
    /// Allow plain `http://` to hosts other than loopback.
    pub allow_insecure_http: bool,
    /// Certificates (DER) to trust besides the webpki roots: a company's TLS proxy, or the
    /// simulator's self-signed one.
    pub root_certificates: Vec<Vec<u8>>,
    /// The largest event (and line) accepted from a stream, in bytes.
    pub max_event_bytes: usize,
    /// The bound on one answer: its text, reasoning and sources together, in bytes, enforced
    /// as they arrive (a server that never stops is a `TooLarge` error, not a full memory).
    pub max_answer_bytes: usize,
    /// The bound on what one request carries: its messages' text, attachments (inline
    /// files as base64) and replayed tool calls together, in bytes. A request over it is a
    /// `BadRequest` error before anything is sent (send large files by URL).
    pub max_request_bytes: usize,
    /// Agent API streams run as background runs (`background: true`), and a stream that
    /// breaks is read again from after its last delivered event (`GET
    /// /v1/responses/{id}?stream=true&starting_after=N`) instead of failing or restarting;
    /// whole Agent answers are background runs polled to their end, and whole Sonar deep
    /// research answers async jobs (`POST /async/chat/completions`, one idempotency key for
    /// every try). On by default.
    pub resume: bool,
    /// How long a non-streaming Agent API request (run in the background when
    /// [`resume`](PerplexityConfig::resume) is on) waits before its first poll; each wait
    /// doubles, up to [`poll_max_delay`](PerplexityConfig::poll_max_delay).
    pub poll_first_delay: Duration,
    /// The longest wait between two polls of a background run.
    pub poll_max_delay: Duration,
}

impl Default for PerplexityConfig {
    fn default() -> Self {
        PerplexityConfig {
            base_url: "https://api.perplexity.ai".to_owned(),
            default_model: "sonar".to_owned(),
            api: None,
            perplexity_endpoint: None,
            keys: Vec::new(),
            aliases: ModelAliases::default(),
            timeouts: Timeouts::default(),
            families: ModelFamily::defaults(),
            proxy: Proxy::FromEnv,
            backoff: BackoffPolicy::default(),
            breaker: BreakerConfig::default(),
            retry_budget: BudgetConfig::default(),
            budget: None,
            spend_ledger: None,
            capture_message_content: false,
            key_pool: KeyPoolConfig::default(),
            shared_state: None,
            key_rpm: None,
            org_rpm: None,
            search_rpm: None,
            fallback_models: Vec::new(),
            fallback: true,
            after_commit: AfterCommit::Fail,
            allow_insecure_http: false,
            root_certificates: Vec::new(),
            max_event_bytes: 4 << 20,
            max_answer_bytes: 16 << 20,
            // Above one 50 MB image (Perplexity's bound per image) in base64.
            max_request_bytes: 80 << 20,
            resume: true,
            poll_first_delay: Duration::from_secs(1),
            poll_max_delay: Duration::from_secs(10),
        }
    }
}

impl PerplexityConfig {
    /// The family `model` (resolved) belongs to, if any.
    pub fn family(&self, model: &str) -> Option<&ModelFamily> {
        self.family_index(model).map(|index| &self.families[index])
    }

    /// The position of `model`'s family in [`families`](PerplexityConfig::families); a pinned
    /// effort (`high@2026-10-16.0`) belongs where its level does.
    pub(crate) fn family_index(&self, model: &str) -> Option<usize> {
        let model = crate::api::agent::unpinned(model);
        self.families
            .iter()
            .position(|family| family.models.iter().any(|name| name == model))
    }

    /// Whether the base URL is refused only for being plain `http://` off loopback: what
    /// [`allow_insecure_http`](PerplexityConfig::allow_insecure_http) would allow (for a
    /// program to name its switch for it).
    pub fn needs_insecure_http(&self) -> bool {
        !self.allow_insecure_http
            && crate::client::check_base_url(&self.base_url, false).is_err()
            && crate::client::check_base_url(&self.base_url, true).is_ok()
    }

    /// One bound on every whole call, whatever the model: the default deadline and every
    /// family's (as `PERPLEXITY_TIMEOUT_MS` is for the official MCP server).
    pub fn set_total_timeout(&mut self, total: Duration) {
        self.timeouts.total = total;
        for family in &mut self.families {
            family.timeouts.total = total;
        }
    }

    /// The models asked after `model` when it cannot answer: its family's chain, else
    /// [`fallback_models`](PerplexityConfig::fallback_models); `model` itself left out, at
    /// most four (five models in all, as the Agent API's `models` takes).
    pub fn fallback_for(&self, model: &str) -> Vec<String> {
        let resolved = self.aliases.resolve(model);
        let chain = self
            .family(resolved)
            .map(|family| &family.fallback)
            .filter(|chain| !chain.is_empty())
            .unwrap_or(&self.fallback_models);
        let mut models: Vec<String> = Vec::new();
        for next in chain {
            let next = self.aliases.resolve(next);
            if next != resolved && !models.iter().any(|known| known == next) {
                models.push(next.to_owned());
            }
        }
        models.truncate(4);
        models
    }

    /// The deadlines for `model` (resolved): its family's, else the default ones.
    pub fn timeouts_for(&self, model: &str) -> Timeouts {
        self.family(model)
            .map_or(self.timeouts, |family| family.timeouts)
    }

    /// Whether the endpoint is Perplexity's service (see `perplexity_endpoint`).
    pub fn is_perplexity(&self) -> bool {
        self.perplexity_endpoint.unwrap_or_else(|| {
            self.base_url
                .parse::<hyper::Uri>()
                .ok()
                .and_then(|uri| {
                    uri.host()
                        .map(|host| host == "perplexity.ai" || host.ends_with(".perplexity.ai"))
                })
                .unwrap_or(false)
        })
    }

    /// Checks that `name` (a model, alias or preset) is one Perplexity serves, before anything
    /// is sent: a Sonar name, an alias of one, an effort (pinned as `NAME@YYYY-MM-DD.N` or
    /// not), a preset, or `provider/model` (the Agent API's third-party models). Only chat
    /// completions at another endpoint (`Api::Sonar` at vLLM, Ollama, ...) take names of
    /// their own, so there every name passes.
    ///
    /// # Errors
    /// A config error that says [`MODEL_NAMES`] (and the config's own aliases).
    pub fn check_model(&self, name: &str) -> Result<(), Error> {
        if self.api() == Api::Sonar && !self.is_perplexity() {
            return Ok(());
        }
        let model = self.aliases.resolve(name.trim());
        let third_party = model.split_once('/').is_some_and(|(provider, model)| {
            !provider.is_empty() && !model.is_empty() && !model.contains('/')
        });
        let known = crate::api::translate::sonar_names().any(|sonar| sonar == model)
            || PRESETS.contains(&model)
            || crate::api::agent::is_effort(model)
            || third_party;
        if known {
            return Ok(());
        }
        let defaults = ModelAliases::default();
        let own: Vec<&str> = self
            .aliases
            .names()
            .into_iter()
            .filter(|alias| defaults.resolve(alias) != self.aliases.resolve(alias))
            .collect();
        let own = if own.is_empty() {
            String::new()
        } else {
            format!("; aliases of this config: {}", own.join(", "))
        };
        Err(Error::config(format!(
            "unknown model {name:?}: a model is {MODEL_NAMES}{own}"
        )))
    }

    /// The API that answers a model: the explicit choice, else the Agent API, whatever the
    /// name (a Sonar name is mapped; see [`Api`]).
    pub fn api(&self) -> Api {
        self.api.unwrap_or_default()
    }

    /// The defaults, with keys from the environment ([`keys_from_env`] with the standard
    /// names) and the base URL from [`BASE_URL_ENV`] when set.
    pub fn from_env() -> Self {
        let mut config = PerplexityConfig {
            keys: keys_from_env(KEY_ENV, KEYS_ENV),
            ..PerplexityConfig::default()
        };
        if let Some(base_url) = base_url_from_env() {
            config.base_url = base_url;
        }
        config.capture_message_content = capture_message_content_from_env();
        config
    }
}

/// The OpenTelemetry GenAI conventions' switch for message content on spans.
pub const CAPTURE_MESSAGE_CONTENT_ENV: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

/// Whether [`CAPTURE_MESSAGE_CONTENT_ENV`] says `true` (in any case); anything else is no.
pub fn capture_message_content_from_env() -> bool {
    std::env::var(CAPTURE_MESSAGE_CONTENT_ENV)
        .is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// Perplexity's published usage tiers (docs, "Rate Limits & Usage Tiers"): the Agent API's
/// queries per second and requests per minute for the organization, and the Search API's 50
/// a second for every tier. A tier's request rate is the stricter of its two limits, evenly
/// spaced (no burst), so a fleet sharing one [`PerplexityConfig::shared_state`] stays under
/// it together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateTier {
    /// New accounts: 1 QPS, 50 a minute.
    Tier0,
    /// $50 purchased: 3 QPS, 150 a minute.
    Tier1,
    /// $250: 8 QPS, 500 a minute.
    Tier2,
    /// $500: 17 QPS, 1,000 a minute.
    Tier3,
    /// $1,000: 33 QPS, 2,000 a minute.
    Tier4,
    /// $5,000: 33 QPS, 2,000 a minute.
    Tier5,
}

impl RateTier {
    /// `tier0` .. `tier5`.
    ///
    /// # Errors
    /// A config error naming the tiers.
    pub fn parse(name: &str) -> Result<RateTier, Error> {
        Ok(match name.trim() {
            "tier0" => RateTier::Tier0,
            "tier1" => RateTier::Tier1,
            "tier2" => RateTier::Tier2,
            "tier3" => RateTier::Tier3,
            "tier4" => RateTier::Tier4,
            "tier5" => RateTier::Tier5,
            other => {
                return Err(Error::config(format!(
                    "unknown rate tier {other:?}: use tier0, tier1, tier2, tier3, tier4 or tier5 (the API console shows yours)"
                )));
            }
        })
    }

    /// Agent API requests a minute: the per-minute limit, or 60 times the per-second one if
    /// that is stricter.
    pub fn agent_per_minute(self) -> u32 {
        let (per_second, per_minute) = match self {
            RateTier::Tier0 => (1, 50),
            RateTier::Tier1 => (3, 150),
            RateTier::Tier2 => (8, 500),
            RateTier::Tier3 => (17, 1_000),
            RateTier::Tier4 | RateTier::Tier5 => (33, 2_000),
        };
        per_minute.min(per_second * 60)
    }

    /// Search API requests a minute (50 a second in every tier).
    pub fn search_per_minute(self) -> u32 {
        50 * 60
    }
}

impl PerplexityConfig {
    /// The tier's limits as [`org_rpm`](PerplexityConfig::org_rpm) and
    /// [`search_rpm`](PerplexityConfig::search_rpm).
    pub fn set_rate_tier(&mut self, tier: RateTier) {
        self.org_rpm = Some(tier.agent_per_minute());
        self.search_rpm = Some(tier.search_per_minute());
    }
}

/// What a model name can be, as every message and help text says it (`-m`, `/model`, the
/// config file, the library's check).
pub const MODEL_NAMES: &str = "a Sonar name (sonar, sonar-pro, sonar-reasoning-pro, sonar-reasoning, sonar-deep-research: mapped to the Agent API), an effort (fast, low, medium, high, xhigh; pinned as NAME@YYYY-MM-DD.N), a preset (fast-search, pro-search, deep-research), provider/model (GET /v1/models lists them; `pplx models`), or an alias (pro, reason, research, or one the config adds)";

/// The variable holding the API's base URL.
pub const BASE_URL_ENV: &str = "PERPLEXITY_BASE_URL";

/// The base URL [`BASE_URL_ENV`] holds, trimmed; `None` when it is unset or blank.
pub fn base_url_from_env() -> Option<String> {
    std::env::var(BASE_URL_ENV)
        .ok()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
}

/// The variable holding one key.
pub const KEY_ENV: &str = "PERPLEXITY_API_KEY";
/// The variable holding comma-separated keys.
pub const KEYS_ENV: &str = "PERPLEXITY_API_KEYS";

/// The keys the environment holds: the comma-separated list in `keys_env`, the key in
/// `key_env`, and the numbered keys `{key_env}_1`, `{key_env}_2`, ... (up to the first
/// missing number), in that order, each key once, blanks skipped.
pub fn keys_from_env(key_env: &str, keys_env: &str) -> Vec<ApiKey> {
    let var = |name: &str| std::env::var(name).ok();
    let mut numbered = Vec::new();
    for index in 1..=1_000 {
        match var(&format!("{key_env}_{index}")) {
            Some(key) => numbered.push(key),
            None => break,
        }
    }
    keys_from(var(keys_env).as_deref(), var(key_env).as_deref(), &numbered)
}

/// Keys from a comma-separated list, a single key and numbered keys, in that order, each
/// once; blanks are skipped.
pub fn keys_from(many: Option<&str>, one: Option<&str>, numbered: &[String]) -> Vec<ApiKey> {
    let mut seen = std::collections::HashSet::new();
    many.unwrap_or_default()
        .split(',')
        .chain(one)
        .chain(numbered.iter().map(String::as_str))
        .map(str::trim)
        .filter(|key| !key.is_empty() && seen.insert(*key))
        .map(ApiKey::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_goes_to_the_agent_api_unless_chat_completions_are_asked_for() {
        let mut config = PerplexityConfig::default();
        assert_eq!(config.api(), Api::Agent);
        config.base_url = "https://llm.internal.example/v1".into();
        assert_eq!(config.api(), Api::Agent, "at any base URL");
        config.api = Some(Api::Sonar);
        assert_eq!(config.api(), Api::Sonar);
        assert_eq!(
            ModelAliases::default().resolve("fast"),
            "fast",
            "fast is a preset, not an alias of sonar"
        );
    }

    #[test]
    fn model_names_are_checked_at_perplexity_and_free_elsewhere() {
        let mut config = PerplexityConfig::default();
        config.aliases.insert("mine", "sonar-pro");
        for known in [
            "sonar",
            "sonar-reasoning-pro",
            "sonar-reasoning",
            "reason",
            "mine",
            "fast",
            "deep-research",
            "openai/gpt-5-mini",
        ] {
            assert!(config.check_model(known).is_ok(), "{known}");
        }
        for unknown in [
            "no-such-model",
            "sonar-turbo",
            "gpt-4o",
            "/x",
            "openai/",
            "",
        ] {
            let error = config.check_model(unknown).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains("sonar-pro")
                    && message.contains("mine")
                    && message.contains("medium"),
                "{unknown}: {message}"
            );
        }
        for pinned in [
            "fast@bogus",
            "fast@2026-10-16",
            "high@2026/10/16.0",
            "a/b/c",
        ] {
            assert!(config.check_model(pinned).is_err(), "{pinned}");
        }
        assert!(config.check_model("fast@2026-10-16.0").is_ok());
        config.base_url = "https://llm.internal.example/v1".into();
        assert!(
            config.check_model("gpt-4o").is_err(),
            "the Agent API at any base URL takes Perplexity's names"
        );
        config.api = Some(Api::Sonar);
        assert!(
            config.check_model("gpt-4o").is_ok(),
            "chat completions at another endpoint: its own model"
        );
    }

    #[test]
    fn rate_tiers_take_the_stricter_of_their_published_limits() {
        let per_minute = |name: &str| RateTier::parse(name).unwrap().agent_per_minute();
        assert_eq!(per_minute("tier0"), 50, "50 a minute is under 1 QPS");
        assert_eq!(per_minute("tier1"), 150);
        assert_eq!(
            per_minute("tier2"),
            480,
            "8 QPS is stricter than 500 a minute"
        );
        assert_eq!(per_minute("tier3"), 1_000);
        assert_eq!(per_minute("tier4"), 1_980, "33 QPS");
        assert_eq!(per_minute("tier5"), 1_980);
        assert!(
            RateTier::parse("tier6")
                .unwrap_err()
                .to_string()
                .contains("tier5")
        );
        let mut config = PerplexityConfig::default();
        config.set_rate_tier(RateTier::Tier1);
        assert_eq!(
            (config.org_rpm, config.search_rpm),
            (Some(150), Some(3_000))
        );
    }

    #[test]
    fn the_one_list_of_model_names_names_every_kind() {
        let aliases = ModelAliases::default();
        let mut names: Vec<&str> = crate::api::translate::sonar_names().collect();
        names.extend(PRESETS);
        names.extend(aliases.names());
        for name in names {
            assert!(
                MODEL_NAMES.contains(&format!(" {name}"))
                    || MODEL_NAMES.contains(&format!("({name}")),
                "{name}"
            );
        }
        assert!(MODEL_NAMES.contains("NAME@YYYY-MM-DD.N"));
    }

    #[test]
    fn deep_research_has_its_own_deadlines() {
        let config = PerplexityConfig::default();
        for model in ["sonar-deep-research", "deep-research", "high"] {
            let timeouts = config.timeouts_for(model);
            assert!(timeouts.first_event >= Duration::from_secs(600), "{model}");
            assert!(timeouts.total > Duration::from_secs(300), "{model}");
        }
        assert_eq!(config.timeouts_for("sonar"), Timeouts::default());
        let research = config.family("high").unwrap();
        assert!(research.slow_call > Duration::from_secs(229));
    }

    #[test]
    fn keys_come_from_the_list_the_single_key_and_numbered_keys_each_once() {
        let numbered = ["k3".to_owned(), " k1 ".to_owned(), String::new()];
        let keys: Vec<String> = keys_from(Some("k1, k2,,"), Some("k2"), &numbered)
            .iter()
            .map(|key| key.expose().to_owned())
            .collect();
        assert_eq!(keys, ["k1", "k2", "k3"]);
    }

    #[test]
    fn a_proxys_password_never_reaches_debug_output() {
        let proxy = Proxy::Url {
            url: "http://alice:s3cret@proxy.corp.example:3128".into(),
            no_proxy: String::new(),
        };
        let text = format!("{proxy:?}");
        assert!(text.contains("proxy.corp.example:3128"), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("alice"),
            "{text}"
        );
    }
}
