//! The request bodies our client sends, for the contract check of `cargo xtask interop`.
//!
//! Starts the simulator in process with body recording on, sends a matrix of requests through
//! `provider-perplexity` (both APIs, streaming and not, every preset name, system messages,
//! options, output limits, the Search API), and prints one JSON line per request:
//! `{"endpoint": ..., "stream": ..., "body": {...}}`. `tests/interop/contract.py` then
//! validates each body with the official SDK's request types.

use chat_core::{ChatProvider, ChatRequest, Message};
use futures_util::StreamExt;
use pplx_sim::{Pace, SimConfig, Simulator};
use provider_perplexity::{Api, PerplexityConfig, PerplexityProvider, SearchMode, SonarOptions};
use resilience::ApiKey;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sim_config = SimConfig::default();
    sim_config.keys = vec!["contract-key".to_owned()];
    sim_config.pace = Pace::instant();
    sim_config.record_bodies = true;
    let sim = Simulator::start(sim_config).await?;
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![ApiKey::new("contract-key")];
    config.agent_endpoint = Some(true);
    let provider = PerplexityProvider::new(config)?;

    let conversation = |model: &str| {
        let mut request = ChatRequest::new(model, "Explain quantum computing");
        request
            .messages
            .insert(0, Message::system("Answer in two paragraphs."));
        request
            .messages
            .push(Message::assistant("Qubits hold superpositions."));
        request.messages.push(Message::user("And entanglement?"));
        request
    };
    let mut requests = Vec::new();
    for model in [
        "sonar",
        "sonar-pro",
        "sonar-reasoning-pro",
        "sonar-deep-research",
    ] {
        requests.push(conversation(model));
    }
    let mut options = SonarOptions::default();
    options.search_mode = Some(SearchMode::Academic);
    options.search_domain_filter = vec!["example.org".into(), "-example.com".into()];
    options.search_recency_filter = Some("week".into());
    options.return_related_questions = Some(true);
    options.return_images = Some(true);
    options.reasoning_effort = Some("low".into());
    let mut limited = options.apply(ChatRequest::new("sonar-pro", "Explain quantum computing"));
    limited.sampling.max_tokens = Some(40);
    limited.sampling.temperature = Some(0.2);
    requests.push(limited);
    for preset in provider_perplexity::PRESETS {
        requests.push(conversation(preset));
    }
    let mut agent_limited = conversation("openai/gpt-5-mini");
    agent_limited.sampling.max_tokens = Some(40);
    requests.push(agent_limited);

    for request in requests {
        provider.chat(request.clone()).await?;
        let mut stream = provider.chat_stream(request);
        while let Some(event) = stream.next().await {
            event?;
        }
    }
    // The explicit API wins: a Sonar model name sent to the Agent API as a preset.
    let mut explicit = PerplexityConfig::default();
    explicit.base_url = sim.base_url();
    explicit.keys = vec![ApiKey::new("contract-key")];
    explicit.api = Some(Api::Agent);
    let agent_only = PerplexityProvider::new(explicit)?;
    let mut stream = agent_only.chat_stream(ChatRequest::new("fast", "Explain quantum computing"));
    while let Some(event) = stream.next().await {
        event?;
    }
    let mut search = provider_perplexity::SearchRequest::new("quantum computing");
    search.max_results = Some(5);
    search.max_tokens_per_page = Some(1024);
    search.search_recency_filter = Some("month".into());
    search.search_domain_filter = vec!["example.org".into()];
    search.country = Some("US".into());
    search.search_type = Some(provider_perplexity::SearchType::Web);
    provider.search(&search).await?;

    sim.wait_idle().await;
    for entry in sim.log() {
        let body: serde_json::Value = entry
            .body
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?
            .unwrap_or_default();
        println!(
            "{}",
            serde_json::json!({"endpoint": entry.endpoint, "stream": entry.stream, "status": entry.status, "body": body})
        );
    }
    Ok(())
}
