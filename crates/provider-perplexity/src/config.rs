use std::collections::HashMap;
use std::time::Duration;

use chat_core::Error;
use resilience::{ApiKey, BackoffPolicy, BreakerConfig, BudgetConfig, KeyPoolConfig};

/// Which Perplexity API answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Api {
    /// Sonar chat completions (`POST /chat/completions`).
    #[default]
    Sonar,
    /// The Agent API (`POST /v1/agent`, Responses-style events).
    Agent,
}

impl Api {
    /// The API a model name implies, if it implies one: Sonar models go to Sonar, presets and
    /// `provider/model` names to the Agent API.
    pub fn for_model(model: &str) -> Option<Api> {
        if model.starts_with("sonar") {
            Some(Api::Sonar)
        } else if matches!(model, "fast-search" | "pro-search" | "deep-research")
            || model.contains('/')
        {
            Some(Api::Agent)
        } else {
            None
        }
    }

    /// `sonar` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Sonar => "sonar",
            Api::Agent => "agent",
        }
    }
}

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

/// Short names for models, resolved before a request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAliases(HashMap<String, String>);

impl Default for ModelAliases {
    /// `fast` → sonar, `pro` → sonar-pro, `reason` → sonar-reasoning-pro,
    /// `research` → sonar-deep-research.
    fn default() -> Self {
        let mut aliases = HashMap::new();
        for (alias, model) in [
            ("fast", "sonar"),
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

    /// Adds or replaces an alias.
    pub fn insert(&mut self, alias: impl Into<String>, model: impl Into<String>) {
        self.0.insert(alias.into(), model.into());
    }

    /// Reads aliases from TOML (`alias = "model"` lines, at the top level or under
    /// `[aliases]`), on top of the defaults.
    ///
    /// # Errors
    /// A config error naming what is wrong.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|error| Error::config(format!("model aliases: {error}")))?;
        let table = match table.get("aliases") {
            Some(toml::Value::Table(aliases)) => aliases.clone(),
            _ => table,
        };
        let mut aliases = ModelAliases::default();
        for (alias, model) in table {
            let toml::Value::String(model) = model else {
                return Err(Error::config(format!(
                    "model alias {alias:?} must name a model as a string"
                )));
            };
            aliases.insert(alias, model);
        }
        Ok(aliases)
    }
}

/// Everything a [`PerplexityProvider`](crate::PerplexityProvider) needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PerplexityConfig {
    /// Where the API is: `https://api.perplexity.ai`, the simulator, or any OpenAI-compatible
    /// endpoint. Plain `http://` only for loopback unless `allow_insecure_http`.
    pub base_url: String,
    /// The API used when the model does not imply one.
    pub api: Api,
    /// The keys, rotated by the pool.
    pub keys: Vec<ApiKey>,
    /// Model aliases.
    pub aliases: ModelAliases,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// Retries and backoff (its `total_deadline` is replaced by `timeouts.total`).
    pub backoff: BackoffPolicy,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// The retry budget.
    pub budget: BudgetConfig,
    /// Key cooldowns.
    pub key_pool: KeyPoolConfig,
    /// Fall back to one non-streaming request when streaming attempts are spent or the server
    /// refuses to stream.
    pub fallback: bool,
    /// What a break after the commit point does.
    pub after_commit: AfterCommit,
    /// Allow plain `http://` to hosts other than loopback.
    pub allow_insecure_http: bool,
    /// The largest event (and line) accepted from a stream, in bytes.
    pub max_event_bytes: usize,
}

impl Default for PerplexityConfig {
    fn default() -> Self {
        PerplexityConfig {
            base_url: "https://api.perplexity.ai".to_owned(),
            api: Api::Sonar,
            keys: Vec::new(),
            aliases: ModelAliases::default(),
            timeouts: Timeouts::default(),
            backoff: BackoffPolicy::default(),
            breaker: BreakerConfig::default(),
            budget: BudgetConfig::default(),
            key_pool: KeyPoolConfig::default(),
            fallback: true,
            after_commit: AfterCommit::Fail,
            allow_insecure_http: false,
            max_event_bytes: 4 << 20,
        }
    }
}

impl PerplexityConfig {
    /// The defaults, with keys from `PERPLEXITY_API_KEYS` (comma-separated) or
    /// `PERPLEXITY_API_KEY`, and the base URL from `PERPLEXITY_BASE_URL` when set.
    pub fn from_env() -> Self {
        let mut config = PerplexityConfig {
            keys: keys_from(
                std::env::var("PERPLEXITY_API_KEYS").ok().as_deref(),
                std::env::var("PERPLEXITY_API_KEY").ok().as_deref(),
            ),
            ..PerplexityConfig::default()
        };
        if let Ok(base_url) = std::env::var("PERPLEXITY_BASE_URL")
            && !base_url.trim().is_empty()
        {
            config.base_url = base_url.trim().to_owned();
        }
        config
    }
}

/// Keys from a comma-separated list, else from a single key; blanks are skipped.
pub fn keys_from(many: Option<&str>, one: Option<&str>) -> Vec<ApiKey> {
    let keys: Vec<ApiKey> = many
        .unwrap_or_default()
        .split(',')
        .map(ApiKey::new)
        .filter(|key| !key.is_empty())
        .collect();
    if !keys.is_empty() {
        return keys;
    }
    one.map(ApiKey::new)
        .filter(|key| !key.is_empty())
        .into_iter()
        .collect()
}
