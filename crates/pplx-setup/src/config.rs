//! `config.toml`: which variables hold keys, model aliases, defaults, deadlines, retries,
//! breaker. Every field is optional.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// The file, as written. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// The default model (or alias).
    pub model: Option<String>,
    /// The default API: "sonar" or "agent".
    pub api: Option<String>,
    /// The variable holding one key (default PERPLEXITY_API_KEY).
    pub key_env: Option<String>,
    /// The variable holding comma-separated keys (default PERPLEXITY_API_KEYS).
    pub keys_env: Option<String>,
    /// The base URL (PERPLEXITY_BASE_URL and --base-url win).
    pub base_url: Option<String>,
    /// Allow a plain `http://` base URL that is not loopback: the key then crosses the
    /// network unencrypted (default false; `--allow-insecure-http` for one run).
    pub allow_insecure_http: Option<bool>,
    /// The response cache: "memory" or "redis://HOST:PORT" (--cache wins).
    pub cache: Option<String>,
    /// State shared by every process using these keys: "redis://HOST:PORT"
    /// (--shared-state wins). Needs a secret in PPLX_SHARED_SECRET to name keys there.
    pub shared_state: Option<String>,
    /// At most this many requests a minute per key, for all processes sharing state
    /// together (Perplexity's tiers limit the organization: see `rate`).
    pub key_rpm: Option<u32>,
    /// Perplexity's usage tier (`tier0` .. `tier5`): the organization's request rates for the
    /// Agent and Search APIs, shared by every process on `shared_state`.
    pub rate: Option<String>,
    /// Model aliases: `fast = "sonar"`.
    pub aliases: std::collections::BTreeMap<String, String>,
    /// `[timeouts]`.
    pub timeouts: TimeoutsFile,
    /// `[retry]`.
    pub retry: RetryFile,
    /// `[breaker]`.
    pub breaker: BreakerFile,
    /// `[families.NAME]`: models with their own deadlines, slow-call threshold and breaker
    /// (defaults: `research` and `reasoning`).
    pub families: std::collections::BTreeMap<String, FamilyFile>,
    /// `[mcp]`: the models behind `pplx-mcp`'s tools.
    pub mcp: McpFile,
    /// `[budget]`: a cap on what Perplexity reports it charged.
    pub budget: BudgetFile,
    /// Keep every question and answer in the history database (default true; `--no-log`
    /// turns it off for one run).
    pub log: Option<bool>,
    /// Agent API streams run as background runs and a broken one is read again from where
    /// it broke (default true; `--no-resume` turns it off for one run).
    pub resume: Option<bool>,
    /// Models asked in turn when a model's attempts are spent before its first word on
    /// transient failures (`fallback = ["medium", "fast"]`).
    pub fallback: Vec<String>,
    /// Where the file was read from, and its text, to say where a setting is
    /// ([`FileConfig::place`]); `None` for defaults.
    #[serde(skip)]
    pub(crate) source: Option<Source>,
}

/// `[mcp]`: the models (or presets) behind `pplx-mcp`'s chat tools. The defaults are the
/// official server's Agent API presets: `fast`, `medium`, `high`; Sonar models work too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpFile {
    /// Behind `perplexity_ask` (default `fast`).
    pub ask_model: Option<String>,
    /// Behind `perplexity_reason` (default `medium`).
    pub reason_model: Option<String>,
    /// Behind `perplexity_research` (default `high`).
    pub research_model: Option<String>,
}

/// `[budget]`: at most `usd` US dollars of reported cost a `period` (UTC), counted for
/// every process on `shared_state` together, else for every `pplx` run of this user (in
/// the history database), else for this process.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetFile {
    /// The limit in US dollars.
    pub usd: Option<f64>,
    /// "day" (the default), "month" or "total".
    pub period: Option<String>,
    /// The least a request in flight holds of the limit until its cost is known (default
    /// 0.01; the period's largest answer when more).
    pub hold_usd: Option<f64>,
}

/// `[families.NAME]`: the models in the family, its deadlines (as in `[timeouts]`, the
/// family's defaults otherwise), and when a call counts as slow for its breaker (half the
/// total deadline otherwise).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FamilyFile {
    /// The models (or presets) in it.
    pub models: Vec<String>,
    /// The models asked in turn when one of this family cannot answer (the top-level
    /// `fallback` otherwise).
    pub fallback: Vec<String>,
    /// A call slower than this counts as slow.
    pub slow_call_secs: Option<f64>,
    #[allow(missing_docs)]
    pub connect_secs: Option<f64>,
    #[allow(missing_docs)]
    pub headers_secs: Option<f64>,
    #[allow(missing_docs)]
    pub first_event_secs: Option<f64>,
    #[allow(missing_docs)]
    pub idle_secs: Option<f64>,
    #[allow(missing_docs)]
    pub total_secs: Option<f64>,
}

impl FamilyFile {
    /// Its deadlines, as a `[timeouts]` table.
    pub fn timeouts(&self) -> TimeoutsFile {
        TimeoutsFile {
            connect_secs: self.connect_secs,
            headers_secs: self.headers_secs,
            first_event_secs: self.first_event_secs,
            idle_secs: self.idle_secs,
            total_secs: self.total_secs,
        }
    }
}

/// `[timeouts]`, in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct TimeoutsFile {
    pub connect_secs: Option<f64>,
    pub headers_secs: Option<f64>,
    pub first_event_secs: Option<f64>,
    pub idle_secs: Option<f64>,
    pub total_secs: Option<f64>,
}

/// `[retry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct RetryFile {
    pub max_attempts: Option<u32>,
    pub base_ms: Option<u64>,
    pub cap_ms: Option<u64>,
    pub max_hint_secs: Option<f64>,
    /// "fail" (default) or "restart".
    pub after_commit: Option<String>,
    /// Fall back to a non-streaming request (default true).
    pub fallback: Option<bool>,
}

/// `[breaker]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct BreakerFile {
    pub failure_rate: Option<f64>,
    pub minimum_calls: Option<u32>,
    pub open_secs: Option<f64>,
}

/// `$XDG_CONFIG_HOME/pplx/config.toml`, else `~/.config/pplx/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("pplx").join("config.toml"))
}

/// Reads the file at `path`; a missing default file is an empty config, a missing explicit
/// one is an error.
///
/// # Errors
/// [`Error::ReadConfig`] or [`Error::ParseConfig`], naming the file.
pub fn load(path: Option<&Path>) -> Result<FileConfig, Error> {
    let (path, explicit) = match path {
        Some(path) => (path.to_path_buf(), true),
        None => match default_path() {
            Some(path) => (path, false),
            None => return Ok(FileConfig::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut file: FileConfig =
                toml::from_str(&text).map_err(|source| Error::ParseConfig {
                    path: path.clone(),
                    source: Box::new(source),
                })?;
            file.source = Some(Source { path, text });
            Ok(file)
        }
        Err(error) if !explicit && error.kind() == std::io::ErrorKind::NotFound => {
            Ok(FileConfig::default())
        }
        Err(source) => Err(Error::ReadConfig { path, source }),
    }
}

/// The file a config was read from, and its text.
#[derive(Clone)]
pub(crate) struct Source {
    path: PathBuf,
    text: String,
}

impl std::fmt::Debug for Source {
    /// The path only: the text is the file's.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Source")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileConfig {
    /// Where the file sets `setting` (`model`, `retry.after_commit`, `families.research.models`),
    /// as `PATH:LINE`; `None` when it does not, or the config was not read from a file.
    pub fn place(&self, setting: &str) -> Option<String> {
        let source = self.source.as_ref()?;
        let (section, key) = setting.rsplit_once('.').unwrap_or(("", setting));
        let mut current = String::new();
        for (index, line) in source.text.lines().enumerate() {
            let line = line.trim();
            if let Some(name) = line
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
            {
                current = name.trim().to_owned();
                continue;
            }
            let named = line
                .split_once('=')
                .map(|(name, _)| name.trim().trim_matches('"'));
            if current == section && named == Some(key) {
                return Some(format!("{}:{}", source.path.display(), index + 1));
            }
        }
        None
    }
}

/// The longest duration a config value can set: a year. Longer ones are clamped to it.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 60.0 * 60.0;

/// A positive, finite number of seconds as a duration, at most [`MAX_SECONDS`] (`1e20` is a
/// year, not a panic).
pub fn seconds(value: Option<f64>) -> Option<Duration> {
    value
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .and_then(|seconds| Duration::try_from_secs_f64(seconds.min(MAX_SECONDS)).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_is_placed_at_its_line_in_its_section() {
        let text = "model = \"x\"\n[retry]\nmax_attempts = 4\nafter_commit = \"sometimes\"\n[families.research]\nmodels = []\n";
        let mut file: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(file.place("model"), None, "not read from a file");
        file.source = Some(Source {
            path: PathBuf::from("/home/me/.config/pplx/config.toml"),
            text: text.to_owned(),
        });
        let at = |line: usize| format!("/home/me/.config/pplx/config.toml:{line}");
        assert_eq!(file.place("model"), Some(at(1)));
        assert_eq!(file.place("retry.after_commit"), Some(at(4)));
        assert_eq!(file.place("families.research.models"), Some(at(6)));
        assert_eq!(file.place("after_commit"), None, "the section counts");
        assert_eq!(file.place("cache"), None);
    }

    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let start =
            readme.find("```toml\n").expect("the README shows a config") + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let config: FileConfig = toml::from_str(&readme[start..end]).unwrap();
        assert_eq!(config.model.as_deref(), Some("sonar"));
        assert_eq!(config.cache.as_deref(), Some("memory"));
        assert_eq!(config.retry.after_commit.as_deref(), Some("fail"));
        assert!(
            toml::from_str::<FileConfig>("unknown = 1").is_err(),
            "typos are reported"
        );
    }
}
