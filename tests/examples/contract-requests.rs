//! The request bodies our client sends, for the contract check of `cargo xtask interop`.
//!
//! Starts the simulator in process with body recording on, sends a matrix of requests through
//! `provider-perplexity` (the default, the Agent API: every Sonar name as the migration guide
//! maps it, every effort and preset name, a pinned effort, system messages, every typed
//! `AgentOptions` field and the `SonarOptions` the Agent API has a place for, output limits,
//! an Anthropic model's default cap, function tools and a replayed tool turn, images and
//! files; chat completions asked for explicitly, with every typed `SonarOptions` field; the
//! Search API; and a tool loop at a second simulator playing an OpenAI-compatible endpoint),
//! and prints one JSON line per request:
//! `{"endpoint": ..., "stream": ..., "status": ..., "compatible": ..., "body": {...}}`. `tests/interop/contract.py` then
//! validates each body with the official SDK's request types.

use chat_core::{Attachment, ChatProvider, ChatRequest, Message, Tool};
use futures_util::StreamExt;
use pplx_sim::{Pace, SimConfig, Simulator};
use provider_perplexity::{
    AgentOptions, Api, JsonSchema, PerplexityConfig, PerplexityProvider, ReasoningEffort, Recency,
    SearchContextSize, SearchMode, SonarOptions, SonarSearchType, UserLocation, WebSearch,
};
use resilience::ApiKey;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sim_config = SimConfig::default();
    sim_config.keys = vec!["contract-key".to_owned()];
    sim_config.pace = Pace::instant();
    sim_config.record_bodies = true;
    // Chat completions too, as an account that still has Sonar (for `sonar` below).
    sim_config.legacy_sonar = true;
    let sim = Simulator::start(sim_config).await?;
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![ApiKey::new("contract-key")];
    config.perplexity_endpoint = Some(true);
    let provider = PerplexityProvider::new(config.clone())?;
    // Chat completions, asked for explicitly.
    config.api = Some(Api::Sonar);
    let sonar = PerplexityProvider::new(config)?;

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
    let mut sonar_requests = Vec::new();
    for model in [
        "sonar",
        "sonar-pro",
        "sonar-reasoning",
        "sonar-reasoning-pro",
        "sonar-deep-research",
    ] {
        requests.push(conversation(model));
        if model != "sonar-reasoning" {
            sonar_requests.push(conversation(model));
        }
    }
    let mut options = SonarOptions::default();
    options.search_mode = Some(SearchMode::Academic);
    options.filters.search_domain_filter = vec!["example.org".into(), "-example.com".into()];
    options.filters.search_recency_filter = Some(Recency::Week);
    options.return_related_questions = Some(true);
    options.return_images = Some(true);
    options.reasoning_effort = Some("low".into());
    let mut limited = options.apply(ChatRequest::new("sonar-pro", "Explain quantum computing"));
    limited.sampling.max_tokens = Some(40);
    limited.sampling.temperature = Some(0.2);
    // On the Agent API, what it has no field for is refused before anything is sent.
    let sent_before = sim.log().len();
    let refused = provider.chat(limited.clone()).await.err();
    if !refused.is_some_and(|error| error.is_bad_request()) || sim.log().len() != sent_before {
        return Err("Sonar-only options were not refused before sending".into());
    }
    sonar_requests.push(limited);
    // What the Agent API has a place for: inside web_search, reasoning, the cap.
    let mut mappable = SonarOptions::default();
    mappable.filters.search_domain_filter = vec!["example.org".into(), "-example.com".into()];
    mappable.filters.search_recency_filter = Some(Recency::Week);
    mappable.reasoning_effort = Some("low".into());
    mappable.search_context_size = Some(SearchContextSize::High);
    mappable.country = Some("FR".into());
    mappable.enable_search_classifier = Some(true);
    mappable.language_preference = Some("en".into());
    let mut mapped = mappable.apply(ChatRequest::new("sonar", "Explain quantum computing"));
    mapped.sampling.max_tokens = Some(40);
    mapped.sampling.temperature = Some(0.2);
    mapped.sampling.top_p = Some(0.9);
    requests.push(mapped);
    // An Anthropic model needs max_output_tokens: the default cap is sent.
    requests.push(conversation("anthropic/claude-sonnet-4-5"));
    for preset in provider_perplexity::PRESETS {
        requests.push(conversation(preset));
    }
    // An effort pinned to a version.
    requests.push(conversation("fast@2026-10-16.0"));
    let mut agent_limited = conversation("openai/gpt-5-mini");
    agent_limited.sampling.max_tokens = Some(40);
    requests.push(agent_limited);
    // Every typed Agent option, the search filters inside the web_search tool.
    let mut agent_options = AgentOptions::default();
    agent_options.instructions = Some("Answer in one paragraph.".into());
    agent_options.models = vec![
        "openai/gpt-5-mini".into(),
        "anthropic/claude-sonnet-4-5".into(),
    ];
    agent_options.max_steps = Some(3);
    agent_options.reasoning_effort = Some(ReasoningEffort::Low);
    agent_options.language_preference = Some("en".into());
    agent_options.response_format = Some(JsonSchema::new(
        "answer",
        serde_json::json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}),
    ));
    agent_options.prompt_cache_key = Some("contract".into());
    agent_options.tool_choice = Some("auto".into());
    let mut web = WebSearch::default();
    web.filters.search_recency_filter = Some(Recency::Week);
    web.filters.search_domain_filter = vec!["example.org".into()];
    web.filters.search_after_date_filter = Some("1/1/2026".into());
    web.filters.last_updated_before_filter = Some("12/1/2026".into());
    web.search_context_size = Some(SearchContextSize::High);
    web.max_tokens = Some(4000);
    web.max_tokens_per_page = Some(512);
    let mut location = UserLocation::default();
    location.city = Some("Paris".into());
    location.country = Some("FR".into());
    location.latitude = Some(48.86);
    location.longitude = Some(2.35);
    web.user_location = Some(location.clone());
    agent_options.web_search = Some(web);
    agent_options.fetch_url = Some(Some(2));
    agent_options.service_tier = Some(provider_perplexity::ServiceTier::Flex);
    let mut images = provider_perplexity::ImageSearch::default();
    images.max_results = Some(4);
    images.formats = vec!["png".into(), "webp".into()];
    images.domains = vec!["example.org".into()];
    images.safe_search = Some(true);
    agent_options.image_search = Some(images);
    agent_options.finance_search = true;
    agent_options.people_search = true;
    requests.push(agent_options.apply(ChatRequest::new("medium", "Explain quantum computing"))?);
    // What pplx-mcp's ask and reason send with filters: the web_search tool alone.
    let mut mcp_like = AgentOptions::default();
    let mut filters_only = WebSearch::default();
    filters_only.filters.search_recency_filter = Some(Recency::Week);
    filters_only.filters.search_domain_filter = vec!["example.org".into()];
    filters_only.search_context_size = Some(SearchContextSize::High);
    mcp_like.web_search = Some(filters_only);
    requests.push(mcp_like.apply(conversation("fast"))?);
    // Every typed Sonar option, web_search_options combined.
    let mut sonar_options = SonarOptions::default();
    sonar_options.search_context_size = Some(SearchContextSize::Low);
    sonar_options.search_type = Some(SonarSearchType::Pro);
    sonar_options.user_location = Some(location);
    sonar_options.response_format = Some(JsonSchema::new(
        "answer",
        serde_json::json!({"type": "object", "properties": {"summary": {"type": "string"}}}),
    ));
    sonar_options.disable_search = Some(false);
    sonar_options.enable_search_classifier = Some(true);
    sonar_options.search_language_filter = vec!["en".into()];
    sonar_options.language_preference = Some("en".into());
    sonar_options.num_search_results = Some(8);
    sonar_options.safe_search = Some(true);
    sonar_options.country = Some("FR".into());
    sonar_requests
        .push(sonar_options.apply(ChatRequest::new("sonar-pro", "Explain quantum computing")));
    // A tool loop on the Agent API: the offer, then the call replayed with its result.
    let (offer, follow_up) = tool_loop(&provider, "openai/gpt-5-mini").await?;
    requests.push(offer);
    requests.push(follow_up);
    // Images (inline and by URL) on both APIs; a PDF too, on each in its own part type.
    for (model, sonar_too) in [("openai/gpt-5-mini", false), ("sonar-pro", true)] {
        let mut attached = ChatRequest::new(model, "");
        attached.messages = vec![
            Message::user("What do these show?")
                .with_attachment(Attachment::from_bytes("image/png", b"\x89PNG\r\n\x1a\n"))
                .with_attachment(Attachment::image_url("https://img.example/cat.jpg"))
                .with_attachment(
                    Attachment::from_bytes("application/pdf", b"%PDF-1.7\n")
                        .with_name("report.pdf"),
                ),
        ];
        if sonar_too {
            sonar_requests.push(attached.clone());
        }
        requests.push(attached);
    }

    for (provider, requests) in [(&provider, requests), (&sonar, sonar_requests)] {
        for request in requests {
            provider.chat(request.clone()).await?;
            let mut stream = provider.chat_stream(request);
            while let Some(event) = stream.next().await {
                event?;
            }
        }
    }
    let mut search = provider_perplexity::SearchRequest::new("quantum computing");
    search.max_results = Some(5);
    search.max_tokens_per_page = Some(1024);
    search.filters.search_recency_filter = Some(Recency::Month);
    search.filters.search_domain_filter = vec!["example.org".into()];
    search.country = Some("US".into());
    search.search_type = Some(provider_perplexity::SearchType::Web);
    provider.search(&search).await?;

    // The same tool loop at an OpenAI-compatible endpoint (chat completions, any model).
    let mut compatible_config = SimConfig::default();
    compatible_config.pace = Pace::instant();
    compatible_config.record_bodies = true;
    compatible_config.compatible = true;
    let compatible_sim = Simulator::start(compatible_config).await?;
    let mut config = PerplexityConfig::default();
    config.base_url = compatible_sim.base_url();
    config.keys = vec![ApiKey::new("contract-key")];
    config.api = Some(Api::Sonar);
    let compatible = PerplexityProvider::new(config)?;
    let (offer, follow_up) = tool_loop(&compatible, "gpt-5-mini").await?;
    for request in [offer, follow_up] {
        let mut stream = compatible.chat_stream(request);
        while let Some(event) = stream.next().await {
            event?;
        }
    }

    sim.wait_idle().await;
    compatible_sim.wait_idle().await;
    let entries = sim.log().into_iter().map(|entry| (entry, false));
    let compatible_entries = compatible_sim.log().into_iter().map(|entry| (entry, true));
    for (entry, compatible) in entries.chain(compatible_entries) {
        // A poll of a background run is a GET, with no body.
        let body: serde_json::Value = entry
            .body
            .as_deref()
            .filter(|body| !body.is_empty())
            .map(serde_json::from_str)
            .transpose()?
            .unwrap_or_default();
        println!(
            "{}",
            serde_json::json!({"endpoint": entry.endpoint, "stream": entry.stream, "status": entry.status, "compatible": compatible, "body": body})
        );
    }
    Ok(())
}

/// A tool loop's two requests for `model`: the weather function offered, then (after
/// `provider` answered with a call) the call replayed with its result.
async fn tool_loop(
    provider: &PerplexityProvider,
    model: &str,
) -> Result<(ChatRequest, ChatRequest), Box<dyn std::error::Error>> {
    let mut offer = ChatRequest::new(model, "What's the weather in Paris?");
    offer.tools.push(Tool::function(
        "get_weather",
        "The current weather in a city",
        serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    ));
    let calls = provider.chat(offer.clone()).await?.tool_calls;
    if calls.is_empty() {
        return Err("the simulator made no tool call".into());
    }
    let mut follow_up = offer.clone();
    follow_up.messages.push(Message::tool_calls(calls.clone()));
    for call in &calls {
        follow_up
            .messages
            .push(Message::tool_result(&call.id, r#"{"temperature_c":18}"#));
    }
    Ok((offer, follow_up))
}
