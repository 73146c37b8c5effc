//! What a simulator starts with: the models and presets it accepts, the pace of its
//! answers, and [`SimConfig`].

use std::time::Duration;

use crate::fault::{Fault, Target};

/// The Sonar models the real service accepts.
pub const MODELS: &[&str] = &[
    "sonar",
    "sonar-pro",
    "sonar-reasoning-pro",
    "sonar-deep-research",
];
/// The model slugs `GET /v1/models` lists (the Agent API's `provider/model` names; any such
/// name is answered).
pub const AGENT_MODELS: &[&str] = &[
    "perplexity/sonar",
    "openai/gpt-5-mini",
    "openai/gpt-5.1",
    "anthropic/claude-sonnet-4-5",
    "anthropic/claude-haiku-4-5",
    "google/gemini-3-flash-preview",
    "xai/grok-4-fast",
];

/// What the Agent API answers a Sonar model name with, by Perplexity's migration guide
/// (`sonar` is `perplexity/sonar` with web search, `sonar-pro` and the reasoning models the
/// `low` effort, `sonar-deep-research` the `medium` effort); any other name unchanged. A
/// client of a simulator whose chat completions are retired names these.
pub fn agent_name(model: &str) -> &str {
    match model {
        "sonar" => "perplexity/sonar",
        "sonar-pro" | "sonar-reasoning" | "sonar-reasoning-pro" => "low",
        "sonar-deep-research" => "medium",
        other => other,
    }
}

/// The Agent API's effort levels (`effort`); each may be pinned to a version,
/// `fast@2026-10-16.0`.
pub const EFFORTS: &[&str] = &["fast", "low", "medium", "high", "xhigh"];

/// The Agent API presets (the deprecated `preset` field): the names the official MCP server
/// v1.3 sent (`fast`, `medium`, `high`) and the older ones.
pub const PRESETS: &[&str] = &[
    "fast",
    "medium",
    "high",
    "fast-search",
    "pro-search",
    "deep-research",
];

/// The level of an effort name, pinned (`fast@2026-10-16.0`) or not; `None` for anything
/// else.
pub fn effort_level(name: &str) -> Option<&str> {
    let (level, version) = name
        .split_once('@')
        .map_or((name, None), |(level, version)| (level, Some(version)));
    let version_ok = version.is_none_or(|version| {
        !version.is_empty()
            && version.len() <= 40
            && version
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b".-_".contains(&byte))
    });
    (EFFORTS.contains(&level) && version_ok).then_some(level)
}

/// Whether a model, effort or preset runs deep research (minutes, mostly quiet, before its
/// answer).
pub fn is_research(model: &str) -> bool {
    let model = effort_level(model).unwrap_or(model);
    matches!(
        model,
        "sonar-deep-research" | "deep-research" | "high" | "xhigh"
    )
}

/// How fast answers come, and how long they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pace {
    /// Wait before the response headers (the search phase of a real request).
    pub first_byte: Duration,
    /// Characters of text per chunk.
    pub chunk_chars: usize,
    /// Wait between chunks.
    pub chunk_delay: Duration,
    /// Words in an answer.
    pub answer_words: usize,
    /// Benchmark mode: chunks serialised once per distinct request and written in 16 KiB
    /// batches, with no delays (faults still apply).
    pub firehose: bool,
    /// Deep research's silence: after its first event, a research model (see
    /// [`is_research`]) sends only `: keep-alive` comments for this long (minutes on the real
    /// service; scaled down here).
    pub research_quiet: Duration,
}

impl Pace {
    /// No waiting at all: for tests.
    pub fn instant() -> Self {
        Pace {
            first_byte: Duration::ZERO,
            chunk_chars: 12,
            chunk_delay: Duration::ZERO,
            answer_words: 60,
            firehose: false,
            research_quiet: Duration::ZERO,
        }
    }

    /// About the real service's feel: 400 ms to the first byte, then 12 characters every 25 ms
    /// (and deep research quiet for 3 s, not minutes).
    pub fn realistic() -> Self {
        Pace {
            first_byte: Duration::from_millis(400),
            chunk_delay: Duration::from_millis(25),
            answer_words: 120,
            research_quiet: Duration::from_secs(3),
            ..Pace::instant()
        }
    }

    /// The benchmark load source: long answers as fast as the socket takes them.
    pub fn firehose(answer_words: usize) -> Self {
        Pace {
            answer_words,
            firehose: true,
            ..Pace::instant()
        }
    }
}

impl Default for Pace {
    fn default() -> Self {
        Pace::instant()
    }
}

/// What to start a [`Simulator`](crate::Simulator) with.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SimConfig {
    /// Accepted Bearer keys; empty accepts any request.
    pub keys: Vec<String>,
    /// Pace of the answers.
    pub pace: Pace,
    /// Faults scripted from the start: (target, fault, times).
    pub faults: Vec<(Target, Fault, usize)>,
    /// Keep each request's body in its log entry (for contract checks of what clients send).
    pub record_bodies: bool,
    /// Serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN) with a self-signed certificate made at
    /// start, which clients trust through [`Simulator::certificate_der`](crate::Simulator::certificate_der),
    /// so handshakes are measured as users meet them.
    pub tls: bool,
    /// Keep at most this many log entries, dropping the oldest (a long-running embedded
    /// simulator must not grow without bound); `None` keeps every one (for tests).
    pub log_capacity: Option<usize>,
    /// Answer chat completions as a generic OpenAI-compatible endpoint would: any model
    /// name, and function tools (streamed as `delta.tool_calls` fragments). Off, the chat
    /// completions endpoint is Perplexity's: Sonar models only, and tools refused.
    pub compatible: bool,
    /// Keep Perplexity's Sonar chat completions (and their async jobs), as an account that
    /// still has them. Off (the default, as the service is since 2026-09-27), and not
    /// `compatible`, their routes answer 404 with an error body that says they were retired.
    pub legacy_sonar: bool,
}
