//! The Agent API as the default, against a simulator that answers as the service does since
//! Perplexity retired Sonar chat completions (2026-09-27): every Sonar name answered on the
//! Agent API, chat completions asked for explicitly failing with what to do, a cut answer
//! ending with `response.incomplete`, strict mode, and the model list.

use std::time::Duration;

use chat_core::{ChatProvider, ChatRequest, ErrorKind, FinishReason};
use pplx_sim::{SimConfig, Simulator};
use provider_perplexity::{Api, PerplexityConfig, PerplexityProvider};
use resilience::ApiKey;
use serde_json::{Value, json};

use crate::events::{collect, done, text};

const QUESTION: &str = "Explain quantum computing";
const KEY: &str = "pplx-agent-default";

/// The simulator as the service is now: no chat completions.
async fn retired() -> Simulator {
    let mut config = SimConfig::default();
    config.keys = vec![KEY.to_owned()];
    config.pace = pplx_sim::Pace::instant();
    config.record_bodies = true;
    Simulator::start(config).await.unwrap()
}

fn provider(sim: &Simulator, change: impl FnOnce(&mut PerplexityConfig)) -> PerplexityProvider {
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![ApiKey::new(KEY)];
    config.backoff.base = Duration::from_millis(1);
    config.backoff.cap = Duration::from_millis(5);
    config.poll_first_delay = Duration::from_millis(1);
    change(&mut config);
    PerplexityProvider::new(config).unwrap()
}

/// The bodies of the chat requests the simulator was sent after its first `from` requests.
async fn asked(sim: &Simulator, from: usize) -> Vec<(String, Value)> {
    sim.wait_idle().await;
    sim.log()
        .into_iter()
        .skip(from)
        .filter(|entry| entry.body.as_deref().is_some_and(|body| !body.is_empty()))
        .map(|entry| {
            let body = serde_json::from_str(entry.body.as_deref().unwrap_or("{}")).unwrap();
            (entry.endpoint, body)
        })
        .collect()
}

#[tokio::test]
async fn every_sonar_name_is_answered_on_the_agent_api_grounded_and_mapped() {
    let sim = retired().await;
    let provider = provider(&sim, |_| {});
    let cases = [
        ("sonar", "model", "perplexity/sonar"),
        ("sonar-pro", "effort", "low"),
        ("sonar-reasoning", "effort", "low"),
        ("sonar-reasoning-pro", "effort", "low"),
        ("sonar-deep-research", "effort", "medium"),
    ];
    for (model, field, engine) in cases {
        let before = sim.log().len();
        let expected = sim.expected_text(model, &[QUESTION], None);
        let (events, error) = collect(&provider, ChatRequest::new(model, QUESTION)).await;
        assert!(error.is_none(), "{model}: {error:?}");
        assert_eq!(text(&events), expected, "{model}");
        assert!(
            !done(&events).sources.search_results.is_empty(),
            "{model}: grounded"
        );
        let whole = provider
            .chat(ChatRequest::new(model, QUESTION))
            .await
            .unwrap();
        assert_eq!(whole.text, expected, "{model}");
        assert!(provider.mapping(model).unwrap().contains(engine), "{model}");
        let bodies = asked(&sim, before).await;
        assert_eq!(bodies.len(), 2, "{model}: {bodies:?}");
        for (endpoint, body) in bodies {
            assert_eq!(endpoint, "/v1/agent", "{model}: {body}");
            assert_eq!(body[field], engine, "{model}: {body}");
        }
    }
    // The bare model searches: the web_search tool is sent with it.
    let before = sim.log().len();
    provider
        .chat(ChatRequest::new("sonar", QUESTION))
        .await
        .unwrap();
    let (_, body) = &asked(&sim, before).await[0];
    assert_eq!(body["tools"], json!([{"type": "web_search"}]));
    assert_eq!(provider.mapping("fast"), None);
}

#[tokio::test]
async fn chat_completions_asked_of_a_server_without_them_fail_at_once_saying_why() {
    let sim = retired().await;
    let provider = provider(&sim, |config| config.api = Some(Api::Sonar));
    for (tries, streaming) in [(1, true), (2, false)] {
        let error = if streaming {
            collect(&provider, ChatRequest::new("sonar", QUESTION))
                .await
                .1
                .unwrap()
        } else {
            provider
                .chat(ChatRequest::new("sonar", QUESTION))
                .await
                .unwrap_err()
        };
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
        assert_eq!(error.status_code(), Some(404));
        let message = error.to_string();
        for said in [
            "does not serve chat completions",
            "retired Sonar chat completions on 2026-09-27",
            "use the Agent API",
            "--api sonar",
        ] {
            assert!(message.contains(said), "{said}: {message}");
        }
        // Not retried: one request each, and no fallback to a second.
        assert_eq!(provider.key_stats()[0].requests, tries, "{error}");
    }
}

#[tokio::test]
async fn an_answer_cut_by_its_token_cap_ends_with_finish_reason_length() {
    let sim = retired().await;
    for resume in [true, false] {
        let provider = provider(&sim, |config| config.resume = resume);
        let mut request = ChatRequest::new("openai/gpt-5-mini", QUESTION);
        request.sampling.max_tokens = Some(20);
        let expected = sim.expected_text("openai/gpt-5-mini", &[QUESTION], Some(20));
        let (events, error) = collect(&provider, request.clone()).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(text(&events), expected);
        assert_eq!(done(&events).finish_reason, FinishReason::Length);
        let whole = provider.chat(request).await.unwrap();
        assert_eq!(
            (whole.text.as_str(), whole.finish_reason),
            (expected.as_str(), FinishReason::Length)
        );
    }
}

#[tokio::test]
async fn the_model_that_answered_a_fallback_chain_is_reported() {
    let sim = retired().await;
    let provider = provider(&sim, |_| {});
    let mut options = provider_perplexity::AgentOptions::default();
    options.models = vec![
        "anthropic/claude-haiku-4-5".into(),
        "openai/gpt-5-mini".into(),
    ];
    let request = options
        .apply(ChatRequest::new("openai/gpt-5-mini", QUESTION))
        .unwrap();
    let (events, error) = collect(&provider, request.clone()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(done(&events).model, "anthropic/claude-haiku-4-5");
    assert_eq!(
        provider.chat(request).await.unwrap().model,
        "anthropic/claude-haiku-4-5"
    );
    // An Anthropic model in the chain: the cap the Agent API requires was sent.
    let bodies = asked(&sim, 0).await;
    assert!(
        bodies.iter().all(|(_, body)| body["max_output_tokens"]
            == provider_perplexity::ANTHROPIC_MAX_OUTPUT_TOKENS),
        "{bodies:?}"
    );
}

#[tokio::test]
async fn what_the_agent_api_would_refuse_is_refused_before_sending() {
    let sim = retired().await;
    let provider = provider(&sim, |_| {});
    let related = ChatRequest::new("sonar", QUESTION).with_option("return_related_questions", true);
    let error = provider.chat(related).await.unwrap_err();
    assert_eq!(error.param(), Some("return_related_questions"), "{error}");
    let mut reserved = ChatRequest::new("openai/gpt-5-mini", QUESTION);
    reserved.tools.push(chat_core::Tool::function(
        "web_search",
        "",
        json!({"type": "object"}),
    ));
    let (_, error) = collect(&provider, reserved).await;
    assert!(error.unwrap().to_string().contains("reserved"));
    sim.wait_idle().await;
    assert!(sim.log().is_empty(), "nothing was sent: {:?}", sim.log());
    // A field the server refuses anyway (strict mode) is reported with its name.
    let stray = ChatRequest::new("fast", QUESTION).with_option("stream_options", json!({}));
    let error = provider.chat(stray).await.unwrap_err();
    assert_eq!(error.param(), Some("stream_options"), "{error}");
    assert!(error.to_string().contains("stream_options"), "{error}");
}

#[tokio::test]
async fn the_simulator_is_strict_as_the_service_is() {
    let sim = retired().await;
    let client = reqwest_like(&sim);
    let cases = [
        (
            json!({"model": "openai/gpt-5-mini", "input": QUESTION, "search_recency_filter": "week"}),
            "search_recency_filter",
        ),
        (
            json!({"model": "openai/gpt-5-mini", "input": QUESTION, "tools": [{"type": "web_search", "max_results": 5}]}),
            "max_results",
        ),
        (
            json!({"model": "anthropic/claude-sonnet-4-5", "input": QUESTION}),
            "max_output_tokens",
        ),
        (
            json!({"model": "openai/gpt-5-mini", "input": QUESTION, "tools": [{"type": "function", "name": "fetch_url", "parameters": {}}]}),
            "tools",
        ),
    ];
    for (body, param) in cases {
        let (status, reply) = client.post("/v1/agent", &body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["error"]["param"], param, "{reply}");
    }
    let (status, reply) = client
        .post(
            "/chat/completions",
            &json!({"model": "sonar", "messages": [{"role": "user", "content": QUESTION}]}),
        )
        .await;
    assert_eq!(status, 404);
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2026-09-27")
    );
}

#[tokio::test]
async fn the_model_list_names_what_the_agent_api_takes() {
    let sim = retired().await;
    let provider = provider(&sim, |_| {});
    let models = provider.models().await.unwrap();
    assert_eq!(models, pplx_sim::AGENT_MODELS);
    assert!(models.iter().all(|model| !model.starts_with("sonar")));
}

/// A small JSON client for the simulator's raw routes.
struct Raw {
    base: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

fn reqwest_like(sim: &Simulator) -> Raw {
    Raw {
        base: sim.base_url(),
        client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
    }
}

impl Raw {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let request = hyper::Request::post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }
}
