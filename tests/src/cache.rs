//! `cache` in front of `provider-perplexity`, against the simulator (whose request log proves
//! what reached it), in memory and in a real Redis.

use crate::events::{collect, done, text};
use std::sync::Arc;
use std::time::Duration;

use cache::{Backend, CacheConfig, CachedProvider};
use chat_core::{CacheMode, ChatEvent, ChatProvider, ChatRequest, Error};
use futures_util::StreamExt;
use pplx_sim::{Fault, Pace, SimConfig, Simulator, Target};
use provider_perplexity::{PerplexityConfig, PerplexityProvider};

const KEY: &str = "cache-test-key";
const QUESTION: &str = "Explain quantum computing";

async fn simulator(chunk_delay: Duration) -> Simulator {
    let mut config = SimConfig::default();
    config.keys = vec![KEY.to_owned()];
    let mut pace = Pace::instant();
    pace.chunk_delay = chunk_delay;
    config.pace = pace;
    // These tests count requests as chat completions make them (one per answer).
    config.legacy_sonar = true;
    Simulator::start(config).await.unwrap()
}

fn cached(sim: &Simulator, config: CacheConfig) -> Arc<CachedProvider<PerplexityProvider>> {
    let mut provider = PerplexityConfig::default();
    provider.base_url = sim.base_url();
    provider.keys = vec![resilience::ApiKey::new(KEY)];
    provider.fallback = false;
    provider.backoff.max_attempts = 1;
    provider.api = Some(provider_perplexity::Api::Sonar);
    Arc::new(CachedProvider::new(PerplexityProvider::new(provider).unwrap(), config).unwrap())
}

/// `count` identical streaming requests at once, each in its own task.
fn spawn_identical(
    provider: &Arc<CachedProvider<PerplexityProvider>>,
    count: usize,
) -> Vec<tokio::task::JoinHandle<(Vec<ChatEvent>, Option<Error>)>> {
    (0..count)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move {
                collect(provider.as_ref(), ChatRequest::new("sonar", QUESTION)).await
            })
        })
        .collect()
}

async fn upstream_calls(sim: &Simulator) -> usize {
    sim.wait_idle().await;
    sim.log().len()
}

#[tokio::test]
async fn a_streaming_hit_replays_every_event_with_its_boundaries() {
    let sim = simulator(Duration::ZERO).await;
    let provider = cached(&sim, CacheConfig::default());
    let request = ChatRequest::new("sonar", QUESTION);
    let (first, error) = collect(provider.as_ref(), request.clone()).await;
    assert!(error.is_none());
    assert!(!done(&first).cached);
    let (second, _) = collect(provider.as_ref(), request.clone()).await;
    assert_eq!(second.len(), first.len());
    assert_eq!(
        second[..second.len() - 1],
        first[..first.len() - 1],
        "same events, same boundaries"
    );
    assert!(done(&second).cached);
    assert_eq!(done(&first).attempts, 1);
    assert_eq!(done(&second).attempts, 0, "a hit asks nothing upstream");
    assert_eq!(
        done(&second).text,
        sim.expected_text("sonar", &[QUESTION], None)
    );
    let response = provider.chat(request).await.unwrap();
    assert!(
        response.cached,
        "a plain call is answered by the streamed entry too"
    );
    assert_eq!(upstream_calls(&sim).await, 1);
    let stats = provider.stats();
    assert_eq!((stats.hits, stats.misses, stats.stores), (2, 1, 1));
}

#[tokio::test]
async fn reasoning_and_usage_survive_a_hit() {
    let sim = simulator(Duration::ZERO).await;
    let provider = cached(&sim, CacheConfig::default());
    let request = ChatRequest::new("reason", QUESTION);
    let (first, _) = collect(provider.as_ref(), request.clone()).await;
    let (second, _) = collect(provider.as_ref(), request).await;
    let reasoning = |events: &[ChatEvent]| {
        events
            .iter()
            .filter(|event| matches!(event, ChatEvent::ReasoningDelta(_)))
            .count()
    };
    assert!(reasoning(&first) > 0);
    assert_eq!(reasoning(&second), reasoning(&first));
    assert!(
        second
            .iter()
            .any(|event| matches!(event, ChatEvent::Usage(_)))
    );
    assert_eq!(done(&second).reasoning, done(&first).reasoning);
}

#[tokio::test]
async fn partial_interrupted_and_failed_answers_are_never_stored() {
    let sim = simulator(Duration::ZERO).await;
    let provider = cached(&sim, CacheConfig::default());
    let request = ChatRequest::new("sonar", QUESTION);
    sim.script(Target::Any, Fault::drop_after_events(5), 1);
    let (_, error) = collect(provider.as_ref(), request.clone()).await;
    assert!(error.unwrap().is_interrupted());
    sim.script(Target::Any, Fault::status(500), 1);
    assert!(provider.chat(request.clone()).await.is_err());
    let (events, error) = collect(provider.as_ref(), request.clone()).await;
    assert!(error.is_none());
    assert!(!done(&events).cached, "nothing was stored before");
    assert_eq!(upstream_calls(&sim).await, 3);
    assert_eq!(provider.stats().stores, 1);
}

#[tokio::test]
async fn bypass_and_refresh() {
    let sim = simulator(Duration::ZERO).await;
    let provider = cached(&sim, CacheConfig::default());
    let mut request = ChatRequest::new("sonar", QUESTION);
    request.cache = CacheMode::Bypass;
    provider.chat(request.clone()).await.unwrap();
    provider.chat(request.clone()).await.unwrap();
    assert_eq!(provider.stats().stores, 0);
    request.cache = CacheMode::Refresh;
    let refreshed = provider.chat(request.clone()).await.unwrap();
    assert!(!refreshed.cached);
    request.cache = CacheMode::Use;
    assert!(provider.chat(request).await.unwrap().cached);
    assert_eq!(upstream_calls(&sim).await, 3);
}

#[tokio::test]
async fn a_hundred_identical_streams_make_one_upstream_call() {
    let sim = simulator(Duration::from_millis(3)).await;
    let provider = cached(&sim, CacheConfig::default());
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    let tasks = spawn_identical(&provider, 100);
    for task in tasks {
        let (events, error) = task.await.unwrap();
        assert!(error.is_none(), "{error:?}");
        assert_eq!(text(&events), expected, "the whole answer, exactly once");
    }
    assert_eq!(upstream_calls(&sim).await, 1);
    let stats = provider.stats();
    assert_eq!(stats.hits + stats.misses, 100);
    assert_eq!(stats.misses - stats.coalesced, 1, "one leader: {stats:?}");
}

#[tokio::test]
async fn a_late_joiner_gets_everything_once_and_a_leaver_cancels_nobody() {
    let sim = simulator(Duration::from_millis(5)).await;
    let provider = cached(&sim, CacheConfig::default());
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    let mut first = provider.chat_stream(ChatRequest::new("sonar", QUESTION));
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|event| matches!(event, ChatEvent::TextDelta(_)))
        .count()
        < 3
    {
        seen.push(first.next().await.unwrap().unwrap());
    }
    let (late, error) = collect(provider.as_ref(), ChatRequest::new("sonar", QUESTION)).await;
    assert!(error.is_none());
    assert_eq!(text(&late), expected);
    drop(first);
    assert_eq!(upstream_calls(&sim).await, 1);
    assert_eq!(provider.stats().coalesced, 1);

    // The first caller leaves early; the second still gets the whole answer.
    let mut leaver = provider.chat_stream(ChatRequest::new("sonar", "another question"));
    leaver.next().await.unwrap().unwrap();
    let stayer = {
        let provider = provider.clone();
        tokio::spawn(async move {
            collect(
                provider.as_ref(),
                ChatRequest::new("sonar", "another question"),
            )
            .await
        })
    };
    tokio::task::yield_now().await;
    drop(leaver);
    let (events, error) = stayer.await.unwrap();
    assert!(error.is_none());
    assert_eq!(
        text(&events),
        sim.expected_text("sonar", &["another question"], None)
    );
}

#[tokio::test]
async fn an_upstream_failure_reaches_every_caller_as_the_same_error() {
    let sim = simulator(Duration::ZERO).await;
    sim.script(
        Target::Any,
        Fault::status(400).delay_headers(Duration::from_millis(200)),
        1,
    );
    let provider = cached(&sim, CacheConfig::default());
    let tasks = spawn_identical(&provider, 10);
    for task in tasks {
        let (events, error) = task.await.unwrap();
        assert!(events.is_empty());
        let error = error.unwrap();
        assert!(error.is_bad_request(), "{error}");
        assert_eq!(error.status_code(), Some(400));
    }
    assert_eq!(upstream_calls(&sim).await, 1);
}

#[tokio::test]
async fn redis_shares_answers_and_degrades_to_misses_when_it_dies() {
    let mut redis = cache::testing::RedisServer::start().unwrap();
    let sim = simulator(Duration::ZERO).await;
    let config = CacheConfig {
        backend: Backend::Redis {
            url: redis.url().to_owned(),
        },
        ..CacheConfig::default()
    };
    // Two providers stand for two processes: they share only Redis.
    let one = cached(&sim, config.clone());
    let two = cached(&sim, config.clone());
    let request = ChatRequest::new("sonar", QUESTION);
    let (first, _) = collect(one.as_ref(), request.clone()).await;
    let (second, _) = collect(two.as_ref(), request.clone()).await;
    assert!(done(&second).cached);
    assert_eq!(second[..second.len() - 1], first[..first.len() - 1]);
    assert_eq!(upstream_calls(&sim).await, 1);
    assert_eq!(two.stats().unavailable, 0, "a live Redis served everything");

    redis.stop();
    let started = std::time::Instant::now();
    let response = two
        .chat(ChatRequest::new("sonar", "while redis is down"))
        .await
        .unwrap();
    assert!(!response.cached);
    assert_eq!(
        response.text,
        sim.expected_text("sonar", &["while redis is down"], None)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the dead cache did not hold the request up"
    );
    let (events, error) = collect(two.as_ref(), request).await;
    assert!(error.is_none());
    assert!(!done(&events).cached, "a miss, not a failure");
    assert_eq!(upstream_calls(&sim).await, 3);
    // What a program tells its user: the shared cache could not be reached.
    assert!(two.stats().unavailable > 0, "{:?}", two.stats());
    assert_eq!(
        one.stats().unavailable,
        0,
        "one asked nothing while Redis was down"
    );
}

#[tokio::test]
async fn an_answer_searched_in_the_last_hour_is_never_served_from_the_cache_on_either_api() {
    use provider_perplexity::{AgentOptions, Recency, SonarOptions, WebSearch};
    let sim = simulator(Duration::ZERO).await;
    let provider = cached(&sim, CacheConfig::default());
    let mut on_agent_config = provider.inner().config().clone();
    on_agent_config.api = None;
    let agent_provider = Arc::new(
        CachedProvider::new(
            PerplexityProvider::new(on_agent_config).unwrap(),
            CacheConfig::default(),
        )
        .unwrap(),
    );
    // The Agent API keeps the filter inside its web_search tool (as pplx-mcp writes it).
    let mut agent = AgentOptions::default();
    let mut search = WebSearch::default();
    search.filters.search_recency_filter = Some(Recency::Hour);
    agent.web_search = Some(search);
    let on_agent = agent.apply(ChatRequest::new("medium", QUESTION)).unwrap();
    let mut sonar = SonarOptions::default();
    sonar.filters.search_recency_filter = Some(Recency::Hour);
    let on_sonar = sonar.apply(ChatRequest::new("sonar", QUESTION));
    for (provider, request) in [(&agent_provider, on_agent), (&provider, on_sonar)] {
        let before = upstream_calls(&sim).await;
        for _ in 0..2 {
            let (events, error) = collect(provider.as_ref(), request.clone()).await;
            assert!(error.is_none(), "{error:?}");
            assert!(!done(&events).cached, "{}", request.model);
        }
        assert_eq!(upstream_calls(&sim).await, before + 2, "{}", request.model);
    }
    assert_eq!(provider.stats().stores + agent_provider.stats().stores, 0);
    // A week-old filter is cached as before.
    let mut week = SonarOptions::default();
    week.filters.search_recency_filter = Some(Recency::Week);
    let request = week.apply(ChatRequest::new("sonar", QUESTION));
    collect(provider.as_ref(), request.clone()).await;
    let (events, _) = collect(provider.as_ref(), request).await;
    assert!(done(&events).cached);
}
