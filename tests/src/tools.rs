//! Tool loops and attachments through `provider-perplexity` against the simulator: the
//! offer, the streamed call, the replayed result and the answer, on the Agent API and on an
//! OpenAI-compatible chat-completions endpoint; images and files on both APIs, and the parts
//! a server refuses.

use chat_core::{
    Attachment, ChatEvent, ChatProvider, ChatRequest, Error, ErrorKind, FinishReason, Message,
    Tool, ToolCall,
};
use pplx_sim::{Pace, SimConfig, Simulator};
use provider_perplexity::{Api, PerplexityConfig, PerplexityProvider};
use resilience::ApiKey;
use serde_json::{Value, json};

use crate::events::{collect, done, text};

async fn simulator(compatible: bool) -> Simulator {
    let mut config = SimConfig::default();
    config.pace = Pace::instant();
    // Small chunks: a call's arguments arrive in several fragments.
    config.pace.chunk_chars = 4;
    config.record_bodies = true;
    config.compatible = compatible;
    // Perplexity's own chat completions (which refuse tools) are tested here too.
    config.legacy_sonar = true;
    Simulator::start(config).await.unwrap()
}

fn provider(sim: &Simulator, api: Api) -> PerplexityProvider {
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![ApiKey::new("pplx-test")];
    config.api = Some(api);
    config.backoff.max_attempts = 1;
    config.poll_first_delay = std::time::Duration::from_millis(1);
    PerplexityProvider::new(config).unwrap()
}

fn weather_request(model: &str) -> ChatRequest {
    let mut request = ChatRequest::new(model, "What's the weather in Paris today?");
    request.tools.push(Tool::function(
        "get_weather",
        "The current weather in a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    ));
    request
}

/// The events of one streamed answer, or its error.
async fn stream(
    provider: &PerplexityProvider,
    request: ChatRequest,
) -> Result<Vec<ChatEvent>, Error> {
    match collect(provider, request).await {
        (_, Some(error)) => Err(error),
        (events, None) => Ok(events),
    }
}

fn calls(events: &[ChatEvent]) -> Vec<ToolCall> {
    events
        .iter()
        .filter_map(|event| match event {
            ChatEvent::ToolCall(call) => Some(call.clone()),
            _ => None,
        })
        .collect()
}

/// The request bodies the simulator received, in order (the polls of a background run
/// have none).
async fn bodies(sim: &Simulator) -> Vec<Value> {
    sim.wait_idle().await;
    sim.log()
        .iter()
        .filter_map(|entry| entry.body.as_deref().filter(|body| !body.is_empty()))
        .map(|body| serde_json::from_str(body).unwrap())
        .collect()
}

/// Offer, call, replayed result, answer: streamed and not, on `api` for `model`.
async fn tool_loop(sim: &Simulator, api: Api, model: &str) {
    let provider = provider(sim, api);
    let request = weather_request(model);

    let events = stream(&provider, request.clone()).await.unwrap();
    let called = calls(&events);
    assert_eq!(called.len(), 1, "{events:?}");
    assert_eq!(called[0].name, "get_weather");
    assert_eq!(called[0].arguments, r#"{"city":"Paris"}"#);
    assert!(called[0].id.starts_with("call_"), "{:?}", called[0]);
    assert_eq!(text(&events), "", "a call says nothing else");
    let response = done(&events);
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(response.tool_calls, called, "Done repeats the calls");

    // Not streamed, the same call.
    let whole = provider.chat(request.clone()).await.unwrap();
    assert_eq!(whole.tool_calls.len(), 1);
    assert_eq!(
        (
            whole.tool_calls[0].name.as_str(),
            whole.tool_calls[0].arguments.as_str()
        ),
        (called[0].name.as_str(), called[0].arguments.as_str())
    );
    assert_eq!(whole.finish_reason, FinishReason::ToolCalls);

    // The result, replayed with the call, is answered.
    let mut follow_up = request;
    follow_up.messages.push(Message::tool_calls(called.clone()));
    follow_up
        .messages
        .push(Message::tool_result(&called[0].id, r#"{"temp_c":18}"#));
    let events = stream(&provider, follow_up.clone()).await.unwrap();
    assert!(calls(&events).is_empty(), "{events:?}");
    let answer = text(&events);
    assert!(
        answer.starts_with(r#"get_weather returned {"temp_c":18}. "#),
        "{answer}"
    );
    assert_eq!(done(&events).finish_reason, FinishReason::Stop);
    assert_eq!(done(&events).text, answer);
    let whole = provider.chat(follow_up).await.unwrap();
    assert_eq!(whole.text, answer);
}

#[tokio::test]
async fn a_tool_loop_completes_on_the_agent_api() {
    let sim = simulator(false).await;
    tool_loop(&sim, Api::Agent, "openai/gpt-5-mini").await;
    let bodies = bodies(&sim).await;
    assert_eq!(bodies.len(), 4);
    // A model is grounded in web search (the tool first), then the caller's functions.
    assert_eq!(
        bodies[0]["tools"],
        json!([{"type": "web_search"}, {"type": "function", "name": "get_weather", "description": "The current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
    );
    let input = bodies[2]["input"].as_array().unwrap();
    assert_eq!(input[1]["type"], "function_call");
    assert_eq!(input[2]["type"], "function_call_output");
    assert_eq!(input[2]["call_id"], input[1]["call_id"]);
}

#[tokio::test]
async fn a_tool_loop_completes_on_an_openai_compatible_endpoint() {
    let sim = simulator(true).await;
    tool_loop(&sim, Api::Sonar, "gpt-5-mini").await;
    let bodies = bodies(&sim).await;
    assert_eq!(bodies[0]["tools"][0]["function"]["name"], "get_weather");
    let messages = bodies[2]["messages"].as_array().unwrap();
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(
        messages[2]["tool_call_id"],
        messages[1]["tool_calls"][0]["id"]
    );
}

#[tokio::test]
async fn perplexitys_chat_completions_refuse_tools_for_sonar_models() {
    // The simulator as Perplexity's endpoint; at a loopback address the client cannot know
    // it is Perplexity, so it sends the tools and reports the 400 it gets.
    let sim = simulator(false).await;
    let error = provider(&sim, Api::Sonar)
        .chat(weather_request("sonar"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
    assert!(
        error.to_string().contains("Tool calling is not supported"),
        "{error}"
    );
}

fn with_attachments(model: &str, image: Attachment) -> ChatRequest {
    let mut request = ChatRequest::new(model, "");
    request.messages = vec![
        Message::user("What do these show?")
            .with_attachment(image)
            .with_attachment(
                Attachment::from_bytes("application/pdf", b"%PDF-1.7").with_name("report.pdf"),
            ),
    ];
    request
}

#[tokio::test]
async fn attachments_reach_both_apis_and_bad_parts_are_refused() {
    let sim = simulator(false).await;
    let png = Attachment::from_bytes("image/png", b"\x89PNG\r\n\x1a\n");
    for (api, model) in [(Api::Agent, "openai/gpt-5-mini"), (Api::Sonar, "sonar-pro")] {
        let provider = provider(&sim, api);
        let events = stream(&provider, with_attachments(model, png.clone()))
            .await
            .unwrap();
        let answer = text(&events);
        assert!(
            answer
                .starts_with("You attached an image (image/png, 8 bytes), report.pdf (8 bytes). "),
            "{api:?}: {answer}"
        );
        let refused = stream(
            &provider,
            with_attachments(model, Attachment::from_bytes("image/tiff", b"II*\0")),
        )
        .await
        .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::BadRequest, "{api:?}: {refused}");
        assert!(
            refused.to_string().contains("Unsupported image format"),
            "{api:?}: {refused}"
        );
    }
}
