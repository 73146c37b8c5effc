//! Resumable Agent API streams against the simulator's background runs: a stream cut any
//! number of times mid-answer completes with the exact text, from one run, with no restart;
//! a resumed stream that leaves a gap, or a run that expired, is never passed off as whole;
//! a server that refuses `background` gets plain streams; Sonar deep research without
//! streaming is an async job, created once however often its create is tried.

use chat_core::{ChatEvent, ChatProvider, ChatRequest, ErrorKind};

use crate::events::{collect, done, text};
use futures_util::StreamExt;
use pplx_sim::{Fault, Pace, SimConfig, Simulator, Target};
use provider_perplexity::{Api, PerplexityConfig, PerplexityProvider};
use resilience::ApiKey;
use serde_json::Value;

const QUESTION: &str = "Explain quantum computing";

async fn simulator() -> Simulator {
    let mut config = SimConfig::default();
    config.pace = Pace::instant();
    config.record_bodies = true;
    // Sonar's async jobs are tested here too.
    config.legacy_sonar = true;
    Simulator::start(config).await.unwrap()
}

fn provider(sim: &Simulator, change: impl FnOnce(&mut PerplexityConfig)) -> PerplexityProvider {
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![ApiKey::new("pplx-resume-test")];
    config.api = Some(Api::Agent);
    config.backoff.base = std::time::Duration::from_millis(1);
    config.backoff.cap = std::time::Duration::from_millis(5);
    config.poll_first_delay = std::time::Duration::from_millis(1);
    change(&mut config);
    PerplexityProvider::new(config).unwrap()
}

/// The events of one streamed answer to the question, and its error if it failed.
async fn stream(provider: &PerplexityProvider) -> (Vec<ChatEvent>, Option<chat_core::Error>) {
    collect(provider, ChatRequest::new("fast", QUESTION)).await
}

/// (method-ish endpoint, status) of every request, and the first POST's body.
async fn requests(sim: &Simulator) -> (Vec<String>, Value) {
    sim.wait_idle().await;
    let log = sim.log();
    let endpoints = log.iter().map(|entry| entry.endpoint.clone()).collect();
    let body = serde_json::from_str(log[0].body.as_deref().unwrap_or("null")).unwrap();
    (endpoints, body)
}

#[tokio::test]
async fn a_stream_cut_twice_mid_answer_is_resumed_to_the_exact_text_from_one_run() {
    let sim = simulator().await;
    // The first connection breaks after two text deltas, the first resume after five more
    // events; the second resume runs to the end.
    sim.script(Target::Any, Fault::drop_after_events(9), 1);
    sim.script(Target::Any, Fault::drop_after_events(5), 1);
    let (events, error) = stream(&provider(&sim, |_| {})).await;
    assert!(error.is_none(), "{error:?}");
    assert!(
        !events.contains(&ChatEvent::Restart),
        "no restart, no second run"
    );
    let expected = sim.expected_text("fast", &[QUESTION], None);
    assert_eq!(text(&events), expected, "every word exactly once");
    let response = done(&events);
    assert_eq!(response.resumed, 2);
    assert_eq!(response.text, expected);
    let (endpoints, body) = requests(&sim).await;
    assert_eq!(body["background"], true, "streams run as background runs");
    assert_eq!(
        endpoints
            .iter()
            .filter(|endpoint| *endpoint == "/v1/agent")
            .count(),
        1,
        "one run: {endpoints:?}"
    );
    let resumes: Vec<&String> = endpoints
        .iter()
        .filter(|endpoint| endpoint.starts_with("/v1/responses/"))
        .collect();
    assert_eq!(resumes.len(), 2, "{endpoints:?}");
    assert!(
        endpoints
            .iter()
            .all(|endpoint| !endpoint.ends_with("/cancel")),
        "a finished run is not cancelled"
    );
}

#[tokio::test]
async fn a_read_again_that_meets_a_rate_limit_or_an_absurd_hint_goes_on_reading_the_same_run() {
    let sim = simulator().await;
    // Cut mid-answer; the first read again is rate limited (the key is busy, not gone), the
    // second meets a server error asking to come back in 584 billion years; the third reads.
    sim.script(Target::Any, Fault::drop_after_events(9), 1);
    sim.script(Target::Any, Fault::rate_limited(0), 1);
    sim.script(
        Target::Any,
        Fault::status(500).header("retry-after", "18446744073709551615"),
        1,
    );
    let (events, error) = stream(&provider(&sim, |_| {})).await;
    assert!(error.is_none(), "{error:?}");
    assert!(!events.contains(&ChatEvent::Restart), "no second run");
    let expected = sim.expected_text("fast", &[QUESTION], None);
    assert_eq!(text(&events), expected, "every word exactly once");
    assert_eq!(done(&events).resumed, 1);
    let (endpoints, _) = requests(&sim).await;
    let posts = endpoints.iter().filter(|endpoint| *endpoint == "/v1/agent");
    assert_eq!(posts.count(), 1, "one run: {endpoints:?}");
    let reads = endpoints
        .iter()
        .filter(|endpoint| endpoint.starts_with("/v1/responses/"));
    assert_eq!(reads.count(), 3, "{endpoints:?}");
}

#[tokio::test]
async fn a_gap_or_an_expired_run_is_an_interruption_with_the_exact_partial_and_the_run_is_cancelled()
 {
    for (resume_fault, why) in [
        (Fault::resume_gap(), "gap"),
        (Fault::status(404), "expired"),
    ] {
        let sim = simulator().await;
        sim.script(Target::Any, Fault::drop_after_events(9), 1);
        sim.script(Target::Any, resume_fault, 1);
        let (events, error) = stream(&provider(&sim, |_| {})).await;
        let error = error.unwrap_or_else(|| panic!("{why}: passed off as whole"));
        assert_eq!(error.kind(), ErrorKind::Interrupted, "{why}: {error}");
        let delivered = text(&events);
        assert!(!delivered.is_empty());
        assert_eq!(error.partial_text(), Some(delivered.as_str()), "{why}");
        assert!(
            sim.expected_text("fast", &[QUESTION], None)
                .starts_with(&delivered),
            "{why}"
        );
        // The abandoned run is cancelled (in the background: wait for it, within a deadline).
        let cancelled = sim.wait_for_log(|entries| {
            entries
                .iter()
                .any(|entry| entry.endpoint.ends_with("/cancel"))
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), cancelled)
            .await
            .unwrap_or_else(|_| panic!("{why}: the abandoned run was not cancelled"));
    }
}

#[tokio::test]
async fn resuming_off_or_refused_means_plain_streams() {
    let sim = simulator().await;
    let (events, error) = stream(&provider(&sim, |config| config.resume = false)).await;
    assert!(error.is_none(), "{error:?}");
    assert!(!text(&events).is_empty());
    let (_, body) = requests(&sim).await;
    assert!(body.get("background").is_none(), "{body}");

    // A server that refuses `background` (a 400 naming it): plain streams from then on.
    let sim = simulator().await;
    let refusal = r#"{"error": {"message": "background is not supported", "type": "invalid_request_error", "param": "background", "code": 400}}"#;
    sim.script(Target::Any, Fault::status(400).body(refusal), 1);
    let provider = provider(&sim, |_| {});
    for _ in 0..2 {
        let (events, error) = stream(&provider).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(text(&events), sim.expected_text("fast", &[QUESTION], None));
    }
    sim.wait_idle().await;
    let backgrounds: Vec<Value> = sim
        .log()
        .iter()
        .map(|entry| {
            serde_json::from_str::<Value>(entry.body.as_deref().unwrap()).unwrap()["background"]
                .clone()
        })
        .collect();
    assert_eq!(backgrounds, [Value::Bool(true), Value::Null, Value::Null]);
}

#[tokio::test]
async fn a_run_that_breaks_at_once_every_time_it_is_read_again_ends_in_an_interruption() {
    let sim = simulator().await;
    sim.script(Target::Any, Fault::drop_after_events(9), 1);
    // Every read of the run breaks before its next event.
    sim.script(Target::Any, Fault::drop_after_events(0), 50);
    let provider = provider(&sim, |config| config.backoff.max_attempts = 3);
    let (events, error) = stream(&provider).await;
    let error = error.expect("not passed off as whole");
    assert_eq!(error.kind(), ErrorKind::Interrupted, "{error}");
    assert_eq!(error.partial_text(), Some(text(&events).as_str()));
    sim.wait_idle().await;
    let reads = sim
        .log()
        .iter()
        .filter(|entry| entry.endpoint.starts_with("/v1/responses/"))
        .count();
    assert!(reads <= 3, "bounded by the retry policy: {reads} reads");
}

#[tokio::test]
async fn a_detached_run_is_read_from_its_first_event_even_when_cut_and_never_cancelled() {
    let sim = simulator().await;
    let provider = provider(&sim, |_| {});
    let id = provider
        .start_run(ChatRequest::new("fast", QUESTION))
        .await
        .unwrap();
    assert!(id.starts_with("resp_"), "{id}");
    // Read it, cut once on the way.
    sim.script(Target::Any, Fault::drop_after_events(10), 1);
    let mut stream = provider.attach(&id, "fast");
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        events.push(item.unwrap());
    }
    assert_eq!(text(&events), sim.expected_text("fast", &[QUESTION], None));
    let response = done(&events);
    assert_eq!(response.resumed, 1);
    // Leaving a reader part-way never cancels the run: it can be attached to again.
    let mut reader = provider.attach(&id, "fast");
    let _ = reader.next().await;
    drop(reader);
    let mut again = provider.attach(&id, "fast");
    let mut second = Vec::new();
    while let Some(item) = again.next().await {
        second.push(item.unwrap());
    }
    assert_eq!(text(&second), text(&events));
    sim.wait_idle().await;
    let endpoints: Vec<String> = sim
        .log()
        .iter()
        .map(|entry| entry.endpoint.clone())
        .collect();
    assert_eq!(
        endpoints
            .iter()
            .filter(|endpoint| *endpoint == "/v1/agent")
            .count(),
        1,
        "{endpoints:?}"
    );
    assert!(
        endpoints
            .iter()
            .all(|endpoint| !endpoint.ends_with("/cancel")),
        "{endpoints:?}"
    );
    // A Sonar model runs nothing in the background; an unknown run is an error, not an answer.
    let error = provider_sonar(&sim)
        .start_run(ChatRequest::new("sonar", QUESTION))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    let mut missing = provider.attach("resp_unknown", "fast");
    let error = missing.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
}

fn provider_sonar(sim: &Simulator) -> PerplexityProvider {
    provider(sim, |config| config.api = Some(Api::Sonar))
}

#[tokio::test]
async fn a_whole_answer_is_polled_and_a_run_past_its_deadline_is_cancelled() {
    let sim = simulator().await;
    let whole = provider(&sim, |_| {});
    let response = whole
        .chat(ChatRequest::new("fast", QUESTION))
        .await
        .unwrap();
    assert_eq!(response.text, sim.expected_text("fast", &[QUESTION], None));
    sim.wait_idle().await;
    let log = sim.log();
    let created: Value = serde_json::from_str(log[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        (created["background"].clone(), created["stream"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    assert!(
        log[1].endpoint.starts_with("/v1/responses/resp_"),
        "polled: {}",
        sim.log_text()
    );
    assert_eq!(log.len(), 2);

    // A run that would outlast the total deadline ends in a timeout, and is cancelled.
    let sim = simulator().await;
    let patient = provider(&sim, |config| {
        config.poll_first_delay = std::time::Duration::from_secs(30);
        config.timeouts.total = std::time::Duration::from_secs(5);
        for family in &mut config.families {
            family.timeouts.total = std::time::Duration::from_secs(5);
        }
    });
    let error = patient
        .chat(ChatRequest::new("fast", QUESTION))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let cancelled = sim.wait_for_log(|entries| {
        entries
            .iter()
            .any(|entry| entry.endpoint.ends_with("/cancel"))
    });
    tokio::time::timeout(std::time::Duration::from_secs(10), cancelled)
        .await
        .expect("the abandoned run is cancelled");
}

#[tokio::test]
async fn a_whole_answer_refused_in_the_background_is_asked_plainly() {
    let sim = simulator().await;
    let refusal = r#"{"error": {"message": "background is not supported", "type": "invalid_request_error", "param": "background", "code": 400}}"#;
    sim.script(Target::Any, Fault::status(400).body(refusal), 1);
    let response = provider(&sim, |_| {})
        .chat(ChatRequest::new("fast", QUESTION))
        .await
        .unwrap();
    assert_eq!(response.text, sim.expected_text("fast", &[QUESTION], None));
    sim.wait_idle().await;
    let backgrounds: Vec<Value> = sim
        .log()
        .iter()
        .map(|entry| {
            serde_json::from_str::<Value>(entry.body.as_deref().unwrap()).unwrap()["background"]
                .clone()
        })
        .collect();
    assert_eq!(backgrounds, [Value::Bool(true), Value::Null]);
}

fn provider_research(sim: &Simulator) -> PerplexityProvider {
    provider(sim, |config| {
        config.api = Some(Api::Sonar);
        config.perplexity_endpoint = Some(true);
    })
}

const RESEARCH: &str = "sonar-deep-research";

/// A whole answer from `model` to `question`, checked to be the exact expected text.
async fn whole(
    provider: &PerplexityProvider,
    sim: &Simulator,
    model: &str,
    question: &str,
) -> chat_core::ChatResponse {
    let response = provider
        .chat(ChatRequest::new(model, question))
        .await
        .unwrap();
    assert_eq!(response.text, sim.expected_text(model, &[question], None));
    response
}

/// Every logged request's endpoint, and its body (`null` for a GET's empty one).
async fn logged(sim: &Simulator) -> (Vec<String>, Vec<Value>) {
    sim.wait_idle().await;
    sim.log()
        .iter()
        .map(|entry| {
            let body = entry.body.as_deref().unwrap_or_default();
            (
                entry.endpoint.clone(),
                serde_json::from_str(body).unwrap_or(Value::Null),
            )
        })
        .unzip()
}

#[tokio::test]
async fn deep_research_without_streaming_is_an_async_job_polled_to_its_answer() {
    let sim = simulator().await;
    let provider = provider_research(&sim);
    let response = whole(&provider, &sim, RESEARCH, QUESTION).await;
    assert!(!response.sources.is_empty());
    let (asked, bodies) = logged(&sim).await;
    assert_eq!(asked[0], "/async/chat/completions", "{}", sim.log_text());
    // Created, then read while in progress, then read done.
    assert_eq!(asked.len(), 3, "{}", sim.log_text());
    assert!(
        asked[1..]
            .iter()
            .all(|path| path.starts_with("/async/chat/completions/"))
    );
    assert_eq!(bodies[0]["request"]["model"], RESEARCH);
    assert_eq!(bodies[0]["request"]["stream"], false);
    assert!(
        bodies[0]["idempotency_key"]
            .as_str()
            .is_some_and(|key| key.len() > 20)
    );
    assert_eq!(sim.jobs_started(), 1);
    // Other Sonar models are asked as before.
    whole(&provider, &sim, "sonar", QUESTION).await;
    let (asked, _) = logged(&sim).await;
    assert_eq!(asked.last().map(String::as_str), Some("/chat/completions"));
}

#[tokio::test]
async fn a_create_whose_reply_was_lost_is_tried_again_without_a_second_job() {
    let sim = simulator().await;
    sim.script(Target::Any, Fault::lost_reply(), 1);
    let provider = provider_research(&sim);
    let response = whole(&provider, &sim, RESEARCH, QUESTION).await;
    assert_eq!(response.attempts, 2);
    let (asked, bodies) = logged(&sim).await;
    let keys: Vec<&Value> = asked
        .iter()
        .zip(&bodies)
        .filter(|(endpoint, _)| *endpoint == "/async/chat/completions")
        .map(|(_, body)| &body["idempotency_key"])
        .collect();
    assert_eq!(keys.len(), 2, "{}", sim.log_text());
    assert_eq!(keys[0], keys[1], "one key for every try of one create");
    assert_eq!(
        sim.jobs_started(),
        1,
        "the retried create got the first job"
    );
    // The next question is a job of its own, under a new key.
    whole(&provider, &sim, RESEARCH, "Explain photosynthesis").await;
    assert_eq!(sim.jobs_started(), 2);
}

#[tokio::test]
async fn an_endpoint_without_async_jobs_is_asked_plainly() {
    let mut config = SimConfig::default();
    config.pace = Pace::instant();
    config.compatible = true;
    let sim = Simulator::start(config).await.unwrap();
    let provider = provider_research(&sim);
    for _ in 0..2 {
        whole(&provider, &sim, RESEARCH, QUESTION).await;
    }
    // (The simulator's 404 for a path it does not serve is not logged.)
    let (asked, _) = logged(&sim).await;
    assert_eq!(asked, ["/chat/completions", "/chat/completions"]);
}

#[tokio::test]
async fn a_whole_answer_asked_in_the_background_is_polled_to_its_text_and_false_asks_plainly() {
    use provider_perplexity::AgentOptions;
    let sim = simulator().await;
    let provider = provider(&sim, |_| {});
    let asked = |background: Option<bool>| {
        let mut options = AgentOptions::default();
        options.background = background;
        options.apply(ChatRequest::new("fast", QUESTION)).unwrap()
    };
    let expected = sim.expected_text("fast", &[QUESTION], None);
    // The caller's own `true`: one rule with the stream's, so the run is polled to its
    // answer rather than handed back queued and empty.
    let response = provider.chat(asked(Some(true))).await.unwrap();
    assert_eq!(response.text, expected);
    let (endpoints, body) = requests(&sim).await;
    assert_eq!(body["background"], true, "{body}");
    assert!(endpoints.len() >= 2, "created, then read: {endpoints:?}");
    assert_eq!(sim.runs_started(), 1);
    // `false`: one plain request, no run kept.
    let response = provider.chat(asked(Some(false))).await.unwrap();
    assert_eq!(response.text, expected);
    let (_, streamed) = collect(&provider, asked(Some(false))).await;
    assert!(streamed.is_none(), "{streamed:?}");
    assert_eq!(sim.runs_started(), 1, "{}", sim.log_text());
}
