//! A loopback HTTP server that speaks Perplexity's wire formats and injects faults: the
//! ground truth for tests, the load source of benchmarks, and the offline mode of the programs.
//!
//! [`Simulator`] serves, on `127.0.0.1`, HTTP/1.1 and HTTP/2 (h2c prior knowledge; or HTTPS
//! with a self-signed certificate made at start, with [`SimConfig::tls`] or the binary's
//! `--tls`):
//! the Agent API (`POST /v1/agent`, also `/v1/responses`; strict, as the service is), the
//! Search API (`POST /search`), the model list (`GET /v1/models`), `GET /health`, the cancel
//! endpoint (`POST /v1/agent/{id}/cancel`), background runs read again (`GET
//! /v1/responses/{id}`) and its request log (`GET /_sim/log`), streaming and not, with the
//! real service's error bodies (the 401 is an HTML page). Chat completions (`POST
//! /chat/completions`, also `/v1/sonar`) and Sonar's async jobs (`/async/chat/completions`)
//! answer 404, as Perplexity's have since their retirement on 2026-09-27, unless
//! [`SimConfig::compatible`] (an OpenAI-compatible endpoint) or [`SimConfig::legacy_sonar`]
//! (an account that still has Sonar) keeps them.
//! Answers are deterministic ([`Simulator::expected_text`] says exactly what a client should
//! end up with); a [`Pace`] sets their speed and length; [`Fault`]s scripted per key and per
//! request ([`Simulator::script`]) break them in every way a real service does; the
//! [`LogEntry`] log records what each request got.
//!
//! ```
//! use pplx_sim::{Fault, SimConfig, Simulator, Target};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let mut config = SimConfig::default();
//! config.keys = vec!["key-a".into(), "key-b".into()];
//! let sim = Simulator::start(config).await?;
//! // Key A gets two 429s with retry-after: 1, then works.
//! sim.script(Target::Key(0), Fault::rate_limited(1), 2);
//! assert!(sim.base_url().starts_with("http://127.0.0.1:"));
//! let expected = sim.expected_text("sonar", &["Explain quantum computing"], None);
//! assert!(!expected.is_empty());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Bounded whatever it is sent: a question's words reach the answer as a short topic (a few
//! words of at most 24 characters), echoed filters are cut short, and request bodies are
//! limited to 96 MiB (room for a 50 MB inline file), so no request makes its work or memory grow with its size.
//!
//! What it does not do: anything beyond loopback (its certificate names only `127.0.0.1`
//! and `localhost`); real search.
#![deny(missing_docs)]

mod api;
mod config;
mod content;
mod fault;
mod io;
mod log;
mod routes;
mod runs;
mod scenario;
mod server;
mod state;
mod text;
mod tools;
mod validate;
mod wire;
mod writer;

pub use config::{
    AGENT_MODELS, EFFORTS, MODELS, PRESETS, Pace, SimConfig, agent_name, effort_level, is_research,
};
pub use content::{Answer, SearchResult};
pub use fault::{Fault, KeepAlive, LineEnding, Target};
pub use log::{Ending, LogEntry};
pub use scenario::{PaceFile, Scenario, ScriptedFault};
pub use server::{Simulator, expected_text};
pub use tools::ToolCall;
