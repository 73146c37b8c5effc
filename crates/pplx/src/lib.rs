//! What the `pplx` terminal client and the `pplx-mcp` server share: the config file, the
//! keys, the embedded simulator when there is no key, and the provider with its cache in front.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), String> {
//! let file = pplx::config::load(None)?;
//! let setup = pplx::setup(&pplx::SetupOptions::default(), file, "example").await?;
//! println!("asking {} by default", setup.model);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod history;

use std::sync::Arc;
use std::time::Duration;

use chat_core::ChatProvider;
use provider_perplexity::{
    AfterCommit, Api, DEFAULT_PRESET, KEY_ENV, KEYS_ENV, ModelFamily, PerplexityConfig,
    PerplexityProvider, Timeouts, keys_from_env,
};

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
}

/// A ready provider.
pub struct Setup {
    /// The provider to ask (the cache in front, unless disabled).
    pub provider: Arc<dyn ChatProvider>,
    /// The Perplexity provider itself, for its key and breaker statistics.
    pub perplexity: PerplexityProvider,
    /// The default model or alias.
    pub model: String,
    /// The built-in simulator, when it answers; it stops when this is dropped.
    pub simulator: Option<pplx_sim::Simulator>,
}

/// Builds the provider from the options, the config file and the environment. Without a key
/// (or with `sim`), it starts the built-in simulator and says so in one line on stderr,
/// prefixed with `program`.
///
/// # Errors
/// A message for a person: a bad config value, an unusable base URL, a cache URL that is
/// not one.
pub async fn setup(
    args: &SetupOptions,
    file: config::FileConfig,
    program: &str,
) -> Result<Setup, String> {
    let key_env = file.key_env.as_deref().unwrap_or(KEY_ENV);
    let keys_env = file.keys_env.as_deref().unwrap_or(KEYS_ENV);
    let keys = keys_from_env(key_env, keys_env);
    if keys.is_empty() && args.require_key && !args.sim {
        return Err(format!(
            "{key_env} environment variable is required (or {key_env}_1, {key_env}_2, ..., or {keys_env}); run with --sim to answer from the built-in simulator instead"
        ));
    }
    let mut config = PerplexityConfig::default();
    for (alias, model) in &file.aliases {
        config.aliases.insert(alias.clone(), model.clone());
    }
    // An explicit API (flag, else file) wins over what the model's name implies.
    config.api = match args.api.as_deref().or(file.api.as_deref()) {
        None => None,
        Some(name) => Some(Api::parse(name).map_err(|error| error.to_string())?),
    };
    apply_file(&mut config, &file)?;
    if let Some(total) = args.total_timeout {
        // A bound on the whole call, whatever the model (as PERPLEXITY_TIMEOUT_MS is for the
        // official server).
        config.timeouts.total = total;
        for family in &mut config.families {
            family.timeouts.total = total;
        }
    }
    let mut sim = None;
    if keys.is_empty() || args.sim {
        let mut sim_config = pplx_sim::SimConfig::default();
        sim_config.keys = vec!["offline-simulator-key".to_owned()];
        sim_config.pace = pplx_sim::Pace::realistic();
        // A long-running program keeps only the latest requests in the simulator's log.
        sim_config.log_capacity = Some(1_000);
        let simulator = pplx_sim::Simulator::start(sim_config)
            .await
            .map_err(|error| format!("cannot start the built-in simulator: {error}"))?;
        let reason = if args.sim {
            "--sim"
        } else {
            "no PERPLEXITY_API_KEY set"
        };
        eprintln!(
            "{program}: {reason}: answering from the built-in simulator (offline, simulated text). Set PERPLEXITY_API_KEY for real answers."
        );
        config.base_url = simulator.base_url();
        // The simulator speaks both APIs, as the real service does.
        config.agent_endpoint = Some(true);
        config.keys = vec![resilience::ApiKey::new("offline-simulator-key")];
        sim = Some(simulator);
    } else {
        config.keys = keys;
        let base_url = args
            .base_url
            .clone()
            .or_else(|| {
                std::env::var("PERPLEXITY_BASE_URL")
                    .ok()
                    .filter(|url| !url.trim().is_empty())
            })
            .or(file.base_url.clone());
        if let Some(base_url) = base_url {
            config.base_url = base_url;
        }
    }
    // With no model named, `--api agent` asks the Agent API's quick preset, not a Sonar model.
    let default_model = match config.api {
        Some(Api::Agent) => DEFAULT_PRESET,
        _ => "sonar",
    };
    let perplexity = PerplexityProvider::new(config).map_err(|error| error.to_string())?;
    let model = args
        .model
        .clone()
        .or(file.model.clone())
        .unwrap_or_else(|| default_model.to_owned());
    let cache_choice = args.cache.clone().or(file.cache.clone());
    let provider: Arc<dyn ChatProvider> = if args.no_cache {
        Arc::new(perplexity.clone())
    } else {
        let mut cache_config = cache::CacheConfig::default();
        match cache_choice.as_deref() {
            None | Some("memory") => {}
            // Simulated text never goes to a shared cache, where real users of the same Redis
            // would read it back as a real answer: it stays in this process's memory.
            Some(url)
                if (url.starts_with("redis://") || url.starts_with("rediss://"))
                    && sim.is_some() => {}
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                cache_config.backend = cache::Backend::Redis {
                    url: url.to_owned(),
                };
            }
            Some(other) => {
                return Err(format!(
                    "--cache {other:?}: use memory or redis://HOST:PORT"
                ));
            }
        }
        Arc::new(
            cache::CachedProvider::new(perplexity.clone(), cache_config)
                .map_err(|error| error.to_string())?,
        )
    };
    Ok(Setup {
        provider,
        perplexity,
        model,
        simulator: sim,
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
/// A message naming a value that cannot be used.
pub fn apply_file(config: &mut PerplexityConfig, file: &config::FileConfig) -> Result<(), String> {
    apply_timeouts(&mut config.timeouts, &file.timeouts);
    // `[families.NAME]` changes a default family or adds one; its models leave any other.
    for (name, entry) in &file.families {
        let models: Vec<&str> = entry.models.iter().map(String::as_str).collect();
        for family in &mut config.families {
            family
                .models
                .retain(|model| !models.contains(&model.as_str()));
        }
        let index = match config
            .families
            .iter()
            .position(|family| family.name == *name)
        {
            Some(index) => index,
            None => {
                config
                    .families
                    .push(ModelFamily::new(name.clone(), &[], config.timeouts));
                config.families.len() - 1
            }
        };
        let family = &mut config.families[index];
        family
            .models
            .extend(models.iter().map(|model| (*model).to_owned()));
        apply_timeouts(&mut family.timeouts, &entry.timeouts());
        family.slow_call =
            config::seconds(entry.slow_call_secs).unwrap_or(family.timeouts.total / 2);
    }
    let retry = &file.retry;
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
            return Err(format!(
                "retry.after_commit is {other:?}: use fail or restart"
            ));
        }
    };
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

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
                let _ = setup(&options, file_with(finite_toml(value), integer), "test").await;
            });
        }
    }

    #[tokio::test]
    async fn absurd_deadlines_are_clamped_and_still_answer() {
        let options = SetupOptions {
            sim: true,
            no_cache: true,
            ..SetupOptions::default()
        };
        let setup = setup(&options, file_with(1e20, u64::MAX), "test")
            .await
            .unwrap();
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
