//! What operators set (issue 34). Fallback across models: a model whose attempts are spent
//! before its first word on transient failures gives way to the next of its chain, and `Done`
//! names the model that answered and the ones passed over; never after the first word; a
//! chain of `provider/model` names goes to the Agent API as one request's `models`. The
//! organization's rate (a usage tier): requests spaced for every provider sharing state.
//! Budgets on what was charged: each answer's reported cost counted, requests refused before
//! sending once the limit is reached, and two processes sharing Redis never spending past
//! it together.

use std::time::Duration;

use chat_core::{ChatProvider, ChatRequest, ErrorKind};
use pplx_sim::{Fault, SimConfig, Simulator, Target};
use provider_perplexity::{PerplexityConfig, PerplexityProvider};
use resilience::ApiKey;
use serde_json::Value;

use crate::events::{collect, done, text};

const QUESTION: &str = "Explain quantum computing";
const KEY: &str = "pplx-fallback";

async fn simulator() -> Simulator {
    let mut config = SimConfig::default();
    config.keys = vec![KEY.to_owned()];
    config.pace = pplx_sim::Pace::instant();
    config.record_bodies = true;
    Simulator::start(config).await.unwrap()
}

/// Two attempts a model, no non-streaming fallback, and `chain` after every model.
fn provider(sim: &Simulator, chain: &[&str]) -> PerplexityProvider {
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![ApiKey::new(KEY)];
    config.backoff.base = Duration::from_millis(1);
    config.backoff.cap = Duration::from_millis(5);
    config.backoff.max_attempts = 2;
    config.poll_first_delay = Duration::from_millis(1);
    config.fallback = false;
    config.fallback_models = chain.iter().map(|model| (*model).to_owned()).collect();
    PerplexityProvider::new(config).unwrap()
}

/// The `effort` (or `model`) of each Agent API request after the first `from`.
async fn engines(sim: &Simulator, from: usize) -> Vec<String> {
    sim.wait_idle().await;
    sim.log()
        .into_iter()
        .skip(from)
        .filter(|entry| entry.endpoint == "/v1/agent")
        .map(|entry| {
            let body: Value = serde_json::from_str(entry.body.as_deref().unwrap()).unwrap();
            body["effort"]
                .as_str()
                .or(body["model"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn an_overloaded_model_gives_way_to_the_next_and_done_names_both() {
    let sim = simulator().await;
    let provider = provider(&sim, &["fast"]);
    let alone = provider
        .chat(ChatRequest::new("fast", QUESTION))
        .await
        .unwrap();
    for streaming in [true, false] {
        let before = sim.log().len();
        // Overloaded (529) for both of medium's attempts; fast answers.
        sim.script(Target::Any, Fault::status(529), 2);
        let request = ChatRequest::new("medium", QUESTION);
        let response = if streaming {
            let (events, error) = collect(&provider, request).await;
            assert!(error.is_none(), "{error:?}");
            assert_eq!(text(&events), sim.expected_text("fast", &[QUESTION], None));
            done(&events).clone()
        } else {
            provider.chat(request).await.unwrap()
        };
        assert_eq!(response.text, sim.expected_text("fast", &[QUESTION], None));
        assert_eq!(response.model, alone.model, "the model that answered");
        assert_eq!(response.passed_over.len(), 1, "{:?}", response.passed_over);
        assert_eq!(response.passed_over[0].0, "medium");
        assert!(
            response.passed_over[0].1.contains("529"),
            "{:?}",
            response.passed_over
        );
        assert_eq!(engines(&sim, before).await, ["medium", "medium", "fast"]);
    }
    // The last model of the chain has no next: its failure is the answer's.
    sim.script(Target::Any, Fault::status(529), 4);
    let error = provider
        .chat(ChatRequest::new("medium", QUESTION))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    // A refusal is no reason to ask another model.
    sim.script(Target::Any, Fault::status(400), 1);
    let before = sim.log().len();
    let error = provider
        .chat(ChatRequest::new("medium", QUESTION))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadRequest);
    assert_eq!(engines(&sim, before).await, ["medium"]);
}

#[tokio::test]
async fn no_model_is_asked_after_the_first_word() {
    let sim = simulator().await;
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![ApiKey::new(KEY)];
    config.resume = false;
    config.fallback_models = vec!["fast".to_owned()];
    let provider = PerplexityProvider::new(config).unwrap();
    let before = sim.log().len();
    sim.script(Target::Any, Fault::drop_after_events(40), 1);
    let (events, error) = collect(&provider, ChatRequest::new("medium", QUESTION)).await;
    let error = error.expect("the stream broke");
    assert_eq!(error.kind(), ErrorKind::Interrupted, "{error:?}");
    assert!(!text(&events).is_empty(), "words were delivered first");
    assert_eq!(engines(&sim, before).await, ["medium"]);
}

#[tokio::test]
async fn a_chain_of_provider_models_goes_to_the_server_as_models() {
    let sim = simulator().await;
    let provider = provider(&sim, &["anthropic/claude-haiku-4-5", "xai/grok-4-fast"]);
    let before = sim.log().len();
    let (events, error) = collect(&provider, ChatRequest::new("openai/gpt-5-mini", QUESTION)).await;
    assert!(error.is_none(), "{error:?}");
    assert!(done(&events).passed_over.is_empty());
    sim.wait_idle().await;
    let sent: Vec<Value> = sim
        .log()
        .into_iter()
        .skip(before)
        .filter(|entry| entry.endpoint == "/v1/agent")
        .map(|entry| serde_json::from_str(entry.body.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(sent.len(), 1, "one request: the server walks the chain");
    assert_eq!(
        sent[0]["models"],
        serde_json::json!([
            "openai/gpt-5-mini",
            "anthropic/claude-haiku-4-5",
            "xai/grok-4-fast"
        ])
    );
}

/// The organization's rate (a usage tier's): requests wait for their slot, evenly spaced, for
/// every provider sharing one state together, as processes sharing Redis do.
#[tokio::test]
async fn the_organizations_rate_spaces_requests_across_providers_sharing_state() {
    let sim = simulator().await;
    let shared: std::sync::Arc<dyn resilience::shared::SharedState> =
        std::sync::Arc::new(resilience::shared::LocalState::new());
    let make = || {
        let mut config = PerplexityConfig::default();
        config.base_url = sim.base_url();
        config.keys = vec![ApiKey::new(KEY)];
        // 600 a minute: one request every 100 ms, for both together.
        config.org_rpm = Some(600);
        config.shared_state = Some(shared.clone());
        PerplexityProvider::new(config).unwrap()
    };
    let (first, second) = (make(), make());
    let started = std::time::Instant::now();
    for provider in [&first, &second, &first, &second] {
        let (_, error) = collect(provider, ChatRequest::new("fast", QUESTION)).await;
        assert!(error.is_none(), "{error:?}");
    }
    // Four requests need three intervals at least, however fast the machine (a lower bound).
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

/// A fallback model's answer is not cached under the asked model's key: the next identical
/// question asks the asked model again.
#[tokio::test]
async fn a_fallback_answer_is_not_cached_as_the_asked_models() {
    let sim = simulator().await;
    let cached =
        cache::CachedProvider::new(provider(&sim, &["fast"]), cache::CacheConfig::default())
            .unwrap();
    sim.script(Target::Any, Fault::status(529), 2);
    let (events, error) = collect(&cached, ChatRequest::new("medium", QUESTION)).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(done(&events).passed_over.len(), 1);
    assert_eq!(cached.stats().stores, 0, "not stored");
    let before = sim.log().len();
    let (events, error) = collect(&cached, ChatRequest::new("medium", QUESTION)).await;
    assert!(error.is_none(), "{error:?}");
    assert!(done(&events).passed_over.is_empty() && !done(&events).cached);
    assert_eq!(
        engines(&sim, before).await,
        ["medium"],
        "medium asked again"
    );
    assert_eq!(cached.stats().stores, 1, "its own answer is stored");
}

/// A provider spending at most `usd` a day, counted in `ledger` (this process's own when
/// `None`); each request holds a cent (more than any of the simulator's answers costs).
fn budgeted(
    sim: &Simulator,
    usd: f64,
    ledger: Option<std::sync::Arc<dyn provider_perplexity::SpendLedger>>,
) -> PerplexityProvider {
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![ApiKey::new(KEY)];
    config.poll_first_delay = Duration::from_millis(1);
    let mut limit =
        provider_perplexity::SpendLimit::new(usd, provider_perplexity::SpendPeriod::Day);
    limit.hold_usd = 0.01;
    config.budget = Some(limit);
    config.spend_ledger = ledger;
    PerplexityProvider::new(config).unwrap()
}

fn reported_cost(response: &chat_core::ChatResponse) -> f64 {
    response
        .usage
        .as_ref()
        .unwrap()
        .cost
        .as_ref()
        .unwrap()
        .total_cost
}

/// Streamed and whole answers are charged what the service reported; once a request's hold
/// does not fit, it is refused before anything is sent, with the limit and the spend.
#[tokio::test]
async fn answers_are_charged_their_reported_cost_and_a_spent_budget_sends_nothing() {
    let sim = simulator().await;
    let provider = budgeted(&sim, 0.025, None);
    let (events, error) = collect(&provider, ChatRequest::new("fast", QUESTION)).await;
    assert!(error.is_none(), "{error:?}");
    let streamed = reported_cost(done(&events));
    let whole = provider
        .chat(ChatRequest::new("fast", "What is Rust?"))
        .await
        .unwrap();
    let charged = streamed + reported_cost(&whole);
    let spend = provider.spend().await.unwrap();
    assert!(
        (spend.spent_usd - charged).abs() < 2e-6,
        "{spend} against {charged}"
    );
    assert_eq!(spend.in_flight, 0);
    // About 0.011 spent: a third answer's cent fits (0.021), a fourth's would not.
    let (_, error) = collect(&provider, ChatRequest::new("fast", "And Go?")).await;
    assert!(error.is_none(), "{error:?}");
    let before = sim.log().len();
    for streaming in [true, false] {
        let request = ChatRequest::new("fast", "And Zig?");
        let error = if streaming {
            let (events, error) = collect(&provider, request).await;
            assert!(events.is_empty());
            error.unwrap()
        } else {
            provider.chat(request).await.unwrap_err()
        };
        assert_eq!(error.kind(), ErrorKind::Budget, "{error}");
        assert!(!error.is_retryable());
        let message = error.to_string();
        assert!(
            message.contains(" spent of $0.025 a day (day:"),
            "{message}"
        );
        assert!(message.contains("nothing was sent"), "{message}");
    }
    sim.wait_idle().await;
    assert_eq!(
        sim.log().len(),
        before,
        "a refused request reaches no server"
    );
}

/// The promise: two processes (two providers, each with its own Redis connection)
/// asking at once never spend past the limit together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_redis_never_spend_past_the_budget_together() {
    let redis = cache::testing::RedisServer::start().unwrap();
    let sim = simulator().await;
    let providers: Vec<PerplexityProvider> = (0..2)
        .map(|_| {
            let state = resilience_redis::RedisState::connect(resilience_redis::RedisConfig::new(
                redis.url(),
                "fleet secret",
            ))
            .unwrap();
            budgeted(&sim, 0.05, Some(state))
        })
        .collect();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let provider = providers[worker % 2].clone();
        workers.spawn(async move {
            let (mut answered, mut charged) = (0_u32, 0.0_f64);
            loop {
                let (events, error) = collect(&provider, ChatRequest::new("fast", QUESTION)).await;
                match error {
                    None => {
                        answered += 1;
                        charged += reported_cost(done(&events));
                    }
                    Some(error) => {
                        assert_eq!(error.kind(), ErrorKind::Budget, "{error}");
                        return (answered, charged);
                    }
                }
            }
        });
    }
    let (answered, charged) = workers
        .join_all()
        .await
        .into_iter()
        .fold((0, 0.0), |(count, sum), (answered, charged)| {
            (count + answered, sum + charged)
        });
    assert!(
        charged <= 0.05,
        "spent {charged} past 0.05 in {answered} answers"
    );
    // Each answer holds a cent: four fit at once, and answers cost about half a cent, so
    // more than five were answered before the holds stopped fitting.
    assert!(answered > 5, "{answered}");
    for provider in &providers {
        let spend = provider.spend().await.unwrap();
        assert!(
            (spend.spent_usd - charged).abs() < 1e-5 * f64::from(answered),
            "{spend} against {charged}"
        );
    }
}
