//! [`setup`]: options, the config file and the environment in; a ready provider out.

use std::sync::Arc;
use std::time::Duration;

use chat_core::ChatProvider;
use provider_perplexity::{
    AfterCommit, Api, DEFAULT_PRESET, KEY_ENV, KEYS_ENV, ModelFamily, PerplexityConfig,
    PerplexityProvider, Timeouts, keys_from_env,
};

use crate::{Error, config};

/// The key the built-in simulator accepts (a placeholder, not a secret).
#[cfg(feature = "simulator")]
const SIMULATOR_KEY: &str = "offline-simulator-key";

/// Choices from the command line that override the config file.
#[derive(Debug, Clone, Default)]
pub struct SetupOptions {
    /// `sonar` or `agent`.
    pub api: Option<String>,
    /// The API's base URL.
    pub base_url: Option<String>,
    /// Use the built-in simulator even if a key is set.
    pub sim: bool,
    /// `memory` or `redis://…`.
    pub cache: Option<String>,
    /// No cache at all.
    pub no_cache: bool,
    /// The default model or alias.
    pub model: Option<String>,
    /// Fail when no key is set instead of starting the built-in simulator (which then
    /// answers only with `sim`).
    pub require_key: bool,
    /// A bound on every whole call, whatever the model.
    pub total_timeout: Option<Duration>,
    /// `redis://…`: state shared with other processes (over the file's `shared_state`).
    pub shared_state: Option<String>,
    /// Allow a plain `http://` base URL that is not loopback (over the file's
    /// `allow_insecure_http`): the key then crosses the network unencrypted.
    pub allow_insecure_http: bool,
    /// Do not resume broken Agent API streams (over the file's `resume`).
    pub no_resume: bool,
    /// Where `[budget]`'s spend is counted when no shared state is named (`pplx`: its
    /// history database, shared by every run of the user). Not used while the built-in
    /// simulator answers: simulated costs stay in the process.
    pub spend_ledger: Option<Arc<dyn provider_perplexity::SpendLedger>>,
}

/// The variable holding the secret that names keys in shared state.
pub const SHARED_SECRET_ENV: &str = "PPLX_SHARED_SECRET";

/// A ready provider.
#[non_exhaustive]
pub struct Setup {
    /// The provider to ask (the cache in front, unless disabled).
    pub provider: Arc<dyn ChatProvider>,
    /// The Perplexity provider itself, for its key and breaker statistics.
    pub perplexity: PerplexityProvider,
    /// The cache in front of it (the same one [`Setup::provider`] asks), for its
    /// statistics; `None` when the cache is off.
    pub cache: Option<cache::CachedProvider<PerplexityProvider>>,
    /// Whether that cache is shared (Redis), so that it may be out of reach: say so when
    /// `CacheStats::unavailable` grows.
    pub shared_cache: bool,
    /// The default model or alias.
    pub model: String,
    /// The built-in simulator, when it answers; it stops when this is dropped.
    #[cfg(feature = "simulator")]
    pub simulator: Option<pplx_sim::Simulator>,
    /// One line for the person running the program, when there is something they should
    /// know (the built-in simulator answers, and why). This crate never prints: the
    /// program says it, prefixed with its name.
    pub notice: Option<String>,
    /// Settings that were given but have no effect (a base URL while the built-in simulator
    /// answers), one line each, for the program to say.
    pub warnings: Vec<String>,
}

impl Setup {
    /// Whether the answers are simulated (no key, or `sim` asked for).
    pub fn is_simulated(&self) -> bool {
        self.notice.is_some()
    }
}

/// Builds the provider from the options, the config file and the environment. Without a key
/// (or with `sim`), it starts the built-in simulator (with the `simulator` feature) and says
/// why in [`Setup::notice`].
///
/// # Errors
/// [`Error::MissingKey`] when a key is required and none is set, [`Error::InvalidValue`] for
/// a setting that cannot be used (an unknown API, a cache URL that is not one),
/// [`Error::Provider`] when the provider refuses the result (an unusable base URL), and
/// [`Error::Simulator`] when the simulator is needed but cannot start or is not built in.
pub async fn setup(args: &SetupOptions, file: config::FileConfig) -> Result<Setup, Error> {
    let source = config::FileConfig {
        source: file.source.clone(),
        ..config::FileConfig::default()
    };
    build(args, file).await.map_err(|error| match error {
        // A setting the file holds: where, so the message leads to the line to change.
        Error::InvalidValue { name, message } => match source.place(&name) {
            Some(place) => Error::InvalidValue {
                message: format!("{message} (set at {place})"),
                name,
            },
            None => Error::InvalidValue { name, message },
        },
        other => other,
    })
}

/// [`setup`], its errors not yet placed in the file.
async fn build(args: &SetupOptions, file: config::FileConfig) -> Result<Setup, Error> {
    let key_env = file.key_env.as_deref().unwrap_or(KEY_ENV);
    let keys_env = file.keys_env.as_deref().unwrap_or(KEYS_ENV);
    let keys = keys_from_env(key_env, keys_env);
    if keys.is_empty() && args.require_key && !args.sim {
        return Err(Error::MissingKey {
            key_env: key_env.to_owned(),
            keys_env: keys_env.to_owned(),
        });
    }
    let simulated = keys.is_empty() || args.sim;
    let mut config = provider_config(args, &file)?;
    let notice = simulated.then(|| simulator_notice(args.sim, key_env));
    let mut warnings = Vec::new();
    #[cfg(feature = "simulator")]
    let mut simulator = None;
    if simulated {
        warnings.extend(ignored_base_url(args, &file));
        #[cfg(feature = "simulator")]
        {
            simulator = Some(start_simulator(&mut config).await?);
        }
        #[cfg(not(feature = "simulator"))]
        return Err(Error::Simulator(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("this build has no simulator: set {key_env}"),
        )));
    } else {
        config.keys = keys;
        endpoint(&mut config, args, &file);
        // Simulated keys (and simulated costs) never reach real workers' shared state.
        match shared_state(args, &file).await? {
            Some(state) => {
                config.spend_ledger = Some(state.clone());
                config.shared_state = Some(state);
            }
            None => config.spend_ledger.clone_from(&args.spend_ledger),
        }
    }
    // With no model named, `--api agent` asks the Agent API's quick preset, not a Sonar model.
    let default_model = match config.api {
        Some(Api::Agent) => DEFAULT_PRESET,
        _ => "sonar",
    };
    let perplexity = provider(config)?;
    let model = args
        .model
        .clone()
        .or(file.model.clone())
        .unwrap_or_else(|| default_model.to_owned());
    // One check of the name, before anything is sent, wherever it came from.
    if let Err(error) = perplexity.config().check_model(&model) {
        let setting = if args.model.is_some() {
            "--model"
        } else {
            "model"
        };
        return Err(Error::invalid(setting, error.to_string()));
    }
    let cache = cache_choice(args, &file, simulated)?;
    if simulated && !args.no_cache {
        let asked = args.cache.as_deref().or(file.cache.as_deref());
        if asked.is_some_and(is_redis) {
            let setting = if args.cache.is_some() {
                "--cache"
            } else {
                "cache in the config file"
            };
            warnings.push(format!(
                "the Redis cache ({setting}) is not used: the built-in simulator answers, and simulated text never goes to a shared cache (answers are cached in memory)"
            ));
        }
    }
    let shared_cache = matches!(cache, Some(CacheChoice::Redis(_)));
    let (provider, cache) = cache_in_front(&perplexity, cache)?;
    Ok(Setup {
        provider,
        perplexity,
        cache,
        shared_cache,
        model,
        #[cfg(feature = "simulator")]
        simulator,
        notice,
        warnings,
    })
}

/// The provider's settings from the file and the options: aliases, the API (an explicit
/// one, flag else file, wins over what the model's name implies), deadlines, retries,
/// breaker and families, and the options' bound on every call.
fn provider_config(
    args: &SetupOptions,
    file: &config::FileConfig,
) -> Result<PerplexityConfig, Error> {
    let mut config = PerplexityConfig::default();
    for (alias, model) in &file.aliases {
        config.aliases.insert(alias.clone(), model.clone());
    }
    config.api = match args.api.as_deref().or(file.api.as_deref()) {
        None => None,
        Some(name) => {
            Some(Api::parse(name).map_err(|error| Error::invalid("api", error.to_string()))?)
        }
    };
    apply_file(&mut config, file)?;
    if let Some(total) = args.total_timeout {
        // A bound on the whole call, whatever the model (as PERPLEXITY_TIMEOUT_MS is for the
        // official server).
        config.set_total_timeout(total);
    }
    config.key_rpm = file.key_rpm.map(|rpm| rpm.max(1));
    if let Some(tier) = &file.rate {
        let tier = provider_perplexity::RateTier::parse(tier)
            .map_err(|error| Error::invalid("rate", error.to_string()))?;
        config.set_rate_tier(tier);
    }
    config.budget = budget(&file.budget)?;
    // Messages on spans only when the conventions' switch asks (they are users' data).
    config.capture_message_content = provider_perplexity::capture_message_content_from_env();
    Ok(config)
}

/// `[budget]`: the spending limit, checked.
fn budget(file: &config::BudgetFile) -> Result<Option<provider_perplexity::SpendLimit>, Error> {
    let Some(usd) = file.usd else {
        if file.period.is_some() || file.hold_usd.is_some() {
            return Err(Error::invalid(
                "budget",
                "[budget] needs usd, the limit in US dollars (usd = 5.0)",
            ));
        }
        return Ok(None);
    };
    let period = match file.period.as_deref() {
        None => provider_perplexity::SpendPeriod::Day,
        Some(name) => provider_perplexity::SpendPeriod::parse(name).ok_or_else(|| {
            Error::invalid(
                "budget.period",
                format!("{name:?}: use \"day\", \"month\" or \"total\" (UTC)"),
            )
        })?,
    };
    let mut limit = provider_perplexity::SpendLimit::new(usd, period);
    if let Some(hold) = file.hold_usd {
        limit.hold_usd = hold;
    }
    limit.check().map_err(|problem| {
        let setting = if problem.contains("holds") {
            "budget.hold_usd"
        } else {
            "budget.usd"
        };
        Error::invalid(setting, problem)
    })?;
    Ok(Some(limit))
}

/// Why the built-in simulator answers, for the person running the program.
fn simulator_notice(asked: bool, key_env: &str) -> String {
    let reason = if asked {
        "--sim".to_owned()
    } else {
        format!("no {key_env} set")
    };
    format!(
        "{reason}: answering from the built-in simulator (offline, simulated text). Set {key_env} for real answers."
    )
}

/// A base URL given while the simulator answers has no effect: the first one given, said.
fn ignored_base_url(args: &SetupOptions, file: &config::FileConfig) -> Option<String> {
    let given = [
        (args.base_url.is_some(), "--base-url"),
        (
            provider_perplexity::base_url_from_env().is_some(),
            provider_perplexity::BASE_URL_ENV,
        ),
        (file.base_url.is_some(), "base_url in the config file"),
    ];
    given
        .iter()
        .find(|(given, _)| *given)
        .map(|(_, name)| {
            format!(
                "{name} is ignored: the built-in simulator answers (no key is set, or --sim); to use that URL, set PERPLEXITY_API_KEY without --sim (any value for a pplx-sim)"
            )
        })
}

/// Starts the built-in simulator and points `config` at it.
#[cfg(feature = "simulator")]
async fn start_simulator(config: &mut PerplexityConfig) -> Result<pplx_sim::Simulator, Error> {
    let mut sim_config = pplx_sim::SimConfig::default();
    sim_config.keys = vec![SIMULATOR_KEY.to_owned()];
    sim_config.pace = pplx_sim::Pace::realistic();
    // A long-running program keeps only the latest requests in the simulator's log.
    sim_config.log_capacity = Some(1_000);
    let started = pplx_sim::Simulator::start(sim_config)
        .await
        .map_err(Error::Simulator)?;
    config.base_url = started.base_url();
    // The simulator speaks both APIs, as the real service does.
    config.perplexity_endpoint = Some(true);
    config.keys = vec![resilience::ApiKey::new(SIMULATOR_KEY)];
    Ok(started)
}

/// Where the API is: `--base-url`, else `PERPLEXITY_BASE_URL`, else the file's; and whether
/// plain http beyond loopback is allowed, and whether broken Agent API streams resume.
fn endpoint(config: &mut PerplexityConfig, args: &SetupOptions, file: &config::FileConfig) {
    let base_url = args
        .base_url
        .clone()
        .or_else(provider_perplexity::base_url_from_env)
        .or(file.base_url.clone());
    if let Some(base_url) = base_url {
        config.base_url = base_url;
    }
    config.allow_insecure_http = args.allow_insecure_http || file.allow_insecure_http == Some(true);
    config.resume = !args.no_resume && file.resume != Some(false);
}

/// The state shared with other processes, when one is named (flag, else file): Redis, with
/// the secret that names keys there.
async fn shared_state(
    args: &SetupOptions,
    file: &config::FileConfig,
) -> Result<Option<Arc<resilience_redis::RedisState>>, Error> {
    let Some(url) = args
        .shared_state
        .as_deref()
        .or(file.shared_state.as_deref())
    else {
        return Ok(None);
    };
    if !is_redis(url) {
        return Err(Error::invalid(
            "shared_state",
            format!("{url:?}: use redis://HOST:PORT"),
        ));
    }
    let secret = std::env::var(SHARED_SECRET_ENV).unwrap_or_default();
    if secret.trim().is_empty() {
        return Err(Error::invalid(
            "shared_state",
            format!(
                "set {SHARED_SECRET_ENV} (the same long random secret in every process) to name keys in Redis"
            ),
        ));
    }
    let state =
        resilience_redis::RedisState::connect(resilience_redis::RedisConfig::new(url, secret))
            .map_err(|error| Error::invalid("shared_state", error.to_string()))?;
    // What other processes learned applies from this process's first request. A Redis that
    // is down answers within its timeouts; this bounds it anyway.
    let _ = tokio::time::timeout(Duration::from_secs(2), state.synced()).await;
    Ok(Some(state))
}

/// The cache in front of the provider.
type Cache = cache::CachedProvider<PerplexityProvider>;

/// Where answers are cached.
enum CacheChoice {
    /// In this process.
    Memory,
    /// In Redis, shared by every process using it.
    Redis(String),
}

/// The cache asked for (flag, else file), `None` for none. Simulated text never goes to a
/// shared cache, where real users of the same Redis would read it back as a real answer: it
/// stays in this process's memory.
fn cache_choice(
    args: &SetupOptions,
    file: &config::FileConfig,
    simulated: bool,
) -> Result<Option<CacheChoice>, Error> {
    if args.no_cache {
        return Ok(None);
    }
    Ok(Some(
        match args.cache.as_deref().or(file.cache.as_deref()) {
            None | Some("memory") => CacheChoice::Memory,
            Some(url) if is_redis(url) && simulated => CacheChoice::Memory,
            Some(url) if is_redis(url) => CacheChoice::Redis(url.to_owned()),
            Some(other) => {
                return Err(Error::invalid(
                    "cache",
                    format!("{other:?}: use memory or redis://HOST:PORT"),
                ));
            }
        },
    ))
}

/// The provider to ask: `perplexity` behind the chosen cache, and that cache (for its
/// statistics).
fn cache_in_front(
    perplexity: &PerplexityProvider,
    choice: Option<CacheChoice>,
) -> Result<(Arc<dyn ChatProvider>, Option<Cache>), Error> {
    let Some(choice) = choice else {
        return Ok((Arc::new(perplexity.clone()), None));
    };
    let mut cache_config = cache::CacheConfig::default();
    if let CacheChoice::Redis(url) = choice {
        cache_config.backend = cache::Backend::Redis { url };
    }
    let cache = cache::CachedProvider::new(perplexity.clone(), cache_config)?;
    Ok((Arc::new(cache.clone()), Some(cache)))
}

/// Whether `url` names a Redis server (`redis://`, or `rediss://` with TLS).
fn is_redis(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("rediss://")
}

/// The provider for `config`. A plain-http base URL refused only for being plain http gets
/// the programs' switches in its message (the library names its own setting).
fn provider(config: PerplexityConfig) -> Result<PerplexityProvider, Error> {
    let needs_insecure_http = config.needs_insecure_http();
    PerplexityProvider::new(config).map_err(|error| {
        if needs_insecure_http {
            Error::invalid(
                "base_url",
                format!(
                    "{error}: pass --allow-insecure-http, or set allow_insecure_http = true in config.toml"
                ),
            )
        } else {
            Error::Provider(error)
        }
    })
}

/// Writes the deadlines a `[timeouts]`-like table sets over `timeouts`.
fn apply_timeouts(timeouts: &mut Timeouts, file: &config::TimeoutsFile) {
    for (slot, value) in [
        (&mut timeouts.connect, file.connect_secs),
        (&mut timeouts.headers, file.headers_secs),
        (&mut timeouts.first_event, file.first_event_secs),
        (&mut timeouts.idle, file.idle_secs),
        (&mut timeouts.total, file.total_secs),
    ] {
        if let Some(duration) = config::seconds(value) {
            *slot = duration;
        }
    }
}

/// Applies a config file's settings (deadlines, retries, breaker, families) to `config`.
///
/// # Errors
/// [`Error::InvalidValue`] naming a value that cannot be used.
pub fn apply_file(config: &mut PerplexityConfig, file: &config::FileConfig) -> Result<(), Error> {
    apply_timeouts(&mut config.timeouts, &file.timeouts);
    for (name, entry) in &file.families {
        apply_family(config, name, entry);
    }
    apply_retry(config, &file.retry)?;
    apply_fallback(config, file)?;
    if let Some(rate) = file.breaker.failure_rate {
        config.breaker.failure_rate = rate;
    }
    if let Some(calls) = file.breaker.minimum_calls {
        config.breaker.minimum_calls = calls;
    }
    if let Some(open) = config::seconds(file.breaker.open_secs) {
        config.breaker.open_duration = open;
    }
    Ok(())
}

/// `[families.NAME]` changes a default family or adds one; its models leave any other.
fn apply_family(config: &mut PerplexityConfig, name: &str, entry: &config::FamilyFile) {
    let models: Vec<&str> = entry.models.iter().map(String::as_str).collect();
    for family in &mut config.families {
        family
            .models
            .retain(|model| !models.contains(&model.as_str()));
    }
    let index = match config
        .families
        .iter()
        .position(|family| family.name == name)
    {
        Some(index) => index,
        None => {
            config
                .families
                .push(ModelFamily::new(name.to_owned(), &[], config.timeouts));
            config.families.len() - 1
        }
    };
    let family = &mut config.families[index];
    family
        .models
        .extend(models.iter().map(|model| (*model).to_owned()));
    apply_timeouts(&mut family.timeouts, &entry.timeouts());
    family.slow_call = config::seconds(entry.slow_call_secs).unwrap_or(family.timeouts.total / 2);
    family.fallback.clone_from(&entry.fallback);
}

/// The fallback chains (top-level and each family's), every name checked as a model is.
fn apply_fallback(config: &mut PerplexityConfig, file: &config::FileConfig) -> Result<(), Error> {
    config.fallback_models.clone_from(&file.fallback);
    let chains = std::iter::once(("fallback".to_owned(), &file.fallback)).chain(
        file.families
            .iter()
            .map(|(name, family)| (format!("families.{name}.fallback"), &family.fallback)),
    );
    for (setting, chain) in chains {
        for model in chain {
            config
                .check_model(model)
                .map_err(|error| Error::invalid(setting.clone(), error.to_string()))?;
        }
    }
    Ok(())
}

/// `[retry]`: attempts, backoff, fallback and the after-commit policy (parsed into its enum
/// here, at the edge).
fn apply_retry(config: &mut PerplexityConfig, retry: &config::RetryFile) -> Result<(), Error> {
    if let Some(attempts) = retry.max_attempts {
        config.backoff.max_attempts = attempts.max(1);
    }
    if let Some(base) = retry.base_ms {
        config.backoff.base = Duration::from_millis(base);
    }
    if let Some(cap) = retry.cap_ms {
        config.backoff.cap = Duration::from_millis(cap);
    }
    if let Some(hint) = config::seconds(retry.max_hint_secs) {
        config.backoff.max_hint = hint;
    }
    if let Some(fallback) = retry.fallback {
        config.fallback = fallback;
    }
    config.after_commit = match retry.after_commit.as_deref() {
        None | Some("fail") => AfterCommit::Fail,
        Some("restart") => AfterCommit::Restart { max_restarts: 1 },
        Some(other) => {
            return Err(Error::invalid(
                "retry.after_commit",
                format!("{other:?}: use fail or restart"),
            ));
        }
    };
    Ok(())
}

#[cfg(test)]
#[cfg(feature = "simulator")]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The README's sample config says it shows only defaults: it must change nothing
    /// (issue 36: it set `api = "sonar"`, which broke the models the README advertised).
    #[test]
    fn the_readme_config_sample_sets_only_defaults() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n").unwrap() + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let sample: config::FileConfig = toml::from_str(&readme[start..end]).unwrap();
        let options = SetupOptions::default();
        let shown = provider_config(&options, &sample).unwrap();
        let plain = provider_config(&options, &config::FileConfig::default()).unwrap();
        assert_eq!(sample.model.as_deref(), Some("sonar"), "the default model");
        assert_eq!(shown.api(), plain.api());
        assert_eq!(shown.aliases, plain.aliases);
        assert_eq!(shown.timeouts, plain.timeouts);
        for (name, shown, plain) in [
            (
                "families",
                format!("{:?}", shown.families),
                format!("{:?}", plain.families),
            ),
            (
                "retry",
                format!("{:?}", shown.backoff),
                format!("{:?}", plain.backoff),
            ),
            (
                "breaker",
                format!("{:?}", shown.breaker),
                format!("{:?}", plain.breaker),
            ),
            (
                "after_commit",
                format!("{:?}", shown.after_commit),
                format!("{:?}", plain.after_commit),
            ),
        ] {
            assert_eq!(shown, plain, "{name}");
        }
        assert_eq!(shown.fallback, plain.fallback);
    }

    /// A config file with every number set to `value` (as TOML accepts it).
    fn file_with(value: f64, integer: u64) -> config::FileConfig {
        let text = format!(
            "[timeouts]\nconnect_secs = {value:?}\nheaders_secs = {value:?}\nfirst_event_secs = {value:?}\nidle_secs = {value:?}\ntotal_secs = {value:?}\n\
             [retry]\nmax_attempts = {attempts}\nbase_ms = {integer}\ncap_ms = {integer}\nmax_hint_secs = {value:?}\n\
             [breaker]\nfailure_rate = {value:?}\nminimum_calls = {attempts}\nopen_secs = {value:?}\n\
             [families.research]\nmodels = [\"sonar\"]\nslow_call_secs = {value:?}\ntotal_secs = {value:?}\n",
            attempts = integer.min(u64::from(u32::MAX)),
        );
        toml::from_str(&text).unwrap()
    }

    fn finite_toml(value: f64) -> f64 {
        // TOML has no way to write NaN in this form; the strategy keeps to real numbers.
        if value.is_finite() { value } else { 1e300 }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn no_number_in_a_config_file_panics(value in any::<f64>(), integer in any::<u64>()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let options = SetupOptions { sim: true, no_cache: true, ..SetupOptions::default() };
                // A config error is fine; a panic is not.
                let _ = setup(&options, file_with(finite_toml(value), integer)).await;
            });
        }
    }

    #[tokio::test]
    async fn a_missing_key_is_a_typed_error_or_a_notice_never_a_print() {
        let file: config::FileConfig = toml::from_str(
            "key_env = \"PPLX_SETUP_TEST_UNSET_KEY\"\nkeys_env = \"PPLX_SETUP_TEST_UNSET_KEYS\"",
        )
        .unwrap();
        let required = SetupOptions {
            require_key: true,
            ..SetupOptions::default()
        };
        let Err(error) = setup(&required, file).await else {
            panic!("no key and a key required must fail");
        };
        assert!(matches!(error, Error::MissingKey { .. }), "{error:?}");
        assert!(error.is_usage());
        assert!(error.to_string().contains("PPLX_SETUP_TEST_UNSET_KEY"));

        let file: config::FileConfig =
            toml::from_str("key_env = \"PPLX_SETUP_TEST_UNSET_KEY\"").unwrap();
        let setup = setup(&SetupOptions::default(), file).await.unwrap();
        let notice = setup.notice.as_deref().unwrap();
        assert!(
            notice.contains("no PPLX_SETUP_TEST_UNSET_KEY set"),
            "{notice}"
        );
        assert!(setup.is_simulated() && setup.simulator.is_some());

        let bad_cache = SetupOptions {
            sim: true,
            cache: Some("memcached://x".to_owned()),
            ..SetupOptions::default()
        };
        let Err(error) = super::setup(&bad_cache, config::FileConfig::default()).await else {
            panic!("an unknown cache URL must fail");
        };
        assert!(
            matches!(&error, Error::InvalidValue { name, .. } if name == "cache"),
            "{error:?}"
        );

        // A shared state that is not Redis is refused, with a real key as with none.
        let file: config::FileConfig = toml::from_str("shared_state = \"memcached://x\"").unwrap();
        let options = SetupOptions {
            base_url: Some("http://127.0.0.1:9".to_owned()),
            ..SetupOptions::default()
        };
        let file = config::FileConfig {
            key_env: Some("PATH".to_owned()),
            ..file
        };
        let Err(error) = super::setup(&options, file).await else {
            panic!("an unknown shared state URL must fail");
        };
        assert!(
            matches!(&error, Error::InvalidValue { name, .. } if name == "shared_state"),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn absurd_deadlines_are_clamped_and_still_answer() {
        let options = SetupOptions {
            sim: true,
            no_cache: true,
            ..SetupOptions::default()
        };
        let setup = setup(&options, file_with(1e20, u64::MAX)).await.unwrap();
        let config = setup.perplexity.config();
        assert_eq!(
            config.timeouts.connect,
            Duration::from_secs_f64(config::MAX_SECONDS)
        );
        let answer = setup
            .provider
            .chat(chat_core::ChatRequest::new(
                "sonar",
                "Explain quantum computing",
            ))
            .await
            .unwrap();
        assert!(!answer.text.is_empty());
    }
}
