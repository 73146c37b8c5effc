//! Scenario files for the `pplx-sim` binary.

use serde::Deserialize;

use crate::{Fault, Pace, SimConfig, Target};

/// A scenario file (TOML): keys, pace and scripted faults.
///
/// ```toml
/// keys = ["key-a", "key-b"]
/// tls = false   # true: HTTPS with a self-signed certificate (see --certificate-out)
/// compatible = false   # true: chat completions as any OpenAI-compatible endpoint (any model, tools)
/// legacy_sonar = false   # true: Perplexity's Sonar chat completions, as before 2026-09-27
///
/// [pace]
/// first_byte_ms = 300
/// chunk_chars = 12
/// chunk_delay_ms = 25
/// answer_words = 120
/// firehose = false
///
/// # Key 0 gets two 429s with retry-after: 1, then works.
/// [[fault]]
/// key = 0
/// times = 2
/// status = 429
/// headers = [["retry-after", "1"]]
///
/// # Key 1's stream breaks after 5 events, once.
/// [[fault]]
/// key = 1
/// drop_after_events = 5
///
/// # Any request: CRLF line ends in 1-byte writes, with keep-alive comments.
/// [[fault]]
/// line_ending = "crlf"
/// one_byte_pieces = true
/// keep_alive = true
/// ```
///
/// A fault without `key` applies to any request; `times` defaults to 1. Every field of
/// [`Fault`] may be given (`delay_headers_ms` in milliseconds).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Accepted keys (empty: any request is accepted).
    pub keys: Vec<String>,
    /// The pace.
    pub pace: PaceFile,
    /// Scripted faults, in order.
    pub fault: Vec<ScriptedFault>,
    /// Serve HTTPS with a self-signed certificate (see `--certificate-out`).
    pub tls: bool,
    /// Chat completions as any OpenAI-compatible endpoint: any model, function tools.
    pub compatible: bool,
    /// Perplexity's Sonar chat completions and async jobs, as before their retirement.
    pub legacy_sonar: bool,
}

/// The `[pace]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaceFile {
    /// Milliseconds before the response headers.
    pub first_byte_ms: u64,
    /// Characters per chunk.
    pub chunk_chars: usize,
    /// Milliseconds between chunks.
    pub chunk_delay_ms: u64,
    /// Words per answer.
    pub answer_words: usize,
    /// Benchmark mode.
    pub firehose: bool,
    /// Milliseconds of deep research's quiet (comments only) after its first event.
    pub research_quiet_ms: u64,
}

impl Default for PaceFile {
    fn default() -> Self {
        let pace = Pace::realistic();
        PaceFile {
            first_byte_ms: pace.first_byte.as_millis() as u64,
            chunk_chars: pace.chunk_chars,
            chunk_delay_ms: pace.chunk_delay.as_millis() as u64,
            answer_words: pace.answer_words,
            firehose: pace.firehose,
            research_quiet_ms: pace.research_quiet.as_millis() as u64,
        }
    }
}

/// One `[[fault]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct ScriptedFault {
    /// The key index it applies to; any key when absent.
    pub key: Option<usize>,
    /// How many requests it applies to.
    #[serde(default = "one")]
    pub times: usize,
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
}

fn one() -> usize {
    1
}

impl Scenario {
    /// Parses a scenario file's text.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }

    /// The simulator configuration it describes.
    pub fn into_config(self) -> SimConfig {
        let pace = Pace {
            first_byte: std::time::Duration::from_millis(self.pace.first_byte_ms),
            chunk_chars: self.pace.chunk_chars.max(1),
            chunk_delay: std::time::Duration::from_millis(self.pace.chunk_delay_ms),
            answer_words: self.pace.answer_words.max(1),
            firehose: self.pace.firehose,
            research_quiet: std::time::Duration::from_millis(self.pace.research_quiet_ms),
        };
        SimConfig {
            keys: self.keys,
            pace,
            faults: self
                .fault
                .into_iter()
                .map(|scripted| {
                    (
                        scripted.key.map_or(Target::Any, Target::Key),
                        scripted.fault,
                        scripted.times,
                    )
                })
                .collect(),
            record_bodies: false,
            tls: self.tls,
            log_capacity: None,
            compatible: self.compatible,
            legacy_sonar: self.legacy_sonar,
        }
    }
}
