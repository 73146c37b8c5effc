//! `config.toml`: which variables hold keys, model aliases, defaults, deadlines, retries,
//! breaker. Every field is optional.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileConfig {
    /// The default model (or alias).
    pub(crate) model: Option<String>,
    /// The default API: "sonar" or "agent".
    pub(crate) api: Option<String>,
    /// The variable holding one key (default PERPLEXITY_API_KEY).
    pub(crate) key_env: Option<String>,
    /// The variable holding comma-separated keys (default PERPLEXITY_API_KEYS).
    pub(crate) keys_env: Option<String>,
    /// The base URL (PERPLEXITY_BASE_URL and --base-url win).
    pub(crate) base_url: Option<String>,
    /// The response cache: "memory" or "redis://HOST:PORT" (--cache wins).
    pub(crate) cache: Option<String>,
    /// Model aliases: `fast = "sonar"`.
    pub(crate) aliases: std::collections::BTreeMap<String, String>,
    pub(crate) timeouts: TimeoutsFile,
    pub(crate) retry: RetryFile,
    pub(crate) breaker: BreakerFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TimeoutsFile {
    pub(crate) connect_secs: Option<f64>,
    pub(crate) headers_secs: Option<f64>,
    pub(crate) first_event_secs: Option<f64>,
    pub(crate) idle_secs: Option<f64>,
    pub(crate) total_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RetryFile {
    pub(crate) max_attempts: Option<u32>,
    pub(crate) base_ms: Option<u64>,
    pub(crate) cap_ms: Option<u64>,
    pub(crate) max_hint_secs: Option<f64>,
    /// "fail" (default) or "restart".
    pub(crate) after_commit: Option<String>,
    /// Fall back to a non-streaming request (default true).
    pub(crate) fallback: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BreakerFile {
    pub(crate) failure_rate: Option<f64>,
    pub(crate) minimum_calls: Option<u32>,
    pub(crate) open_secs: Option<f64>,
}

/// `$XDG_CONFIG_HOME/pplx/config.toml`, else `~/.config/pplx/config.toml`.
pub(crate) fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("pplx").join("config.toml"))
}

/// Reads the file at `path`; a missing default file is an empty config, a missing explicit
/// one is an error.
pub(crate) fn load(path: Option<&Path>) -> Result<FileConfig, String> {
    let (path, explicit) = match path {
        Some(path) => (path.to_path_buf(), true),
        None => match default_path() {
            Some(path) => (path, false),
            None => return Ok(FileConfig::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|error| format!("{}: {error}", path.display())),
        Err(error) if !explicit && error.kind() == std::io::ErrorKind::NotFound => {
            Ok(FileConfig::default())
        }
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

pub(crate) fn seconds(value: Option<f64>) -> Option<Duration> {
    value
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let start =
            readme.find("```toml\n").expect("the README shows a config") + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let config: FileConfig = toml::from_str(&readme[start..end]).unwrap();
        assert_eq!(config.model.as_deref(), Some("pro"));
        assert_eq!(config.cache.as_deref(), Some("memory"));
        assert_eq!(config.retry.after_commit.as_deref(), Some("fail"));
        assert!(
            toml::from_str::<FileConfig>("unknown = 1").is_err(),
            "typos are reported"
        );
    }
}
