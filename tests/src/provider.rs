//! `provider-perplexity` against the in-process simulator: every fault, streaming and not,
//! Sonar and the Agent API, each with its exact outcome (the full text exactly once, or the
//! typed error with the exact partial text) and the exact requests in the simulator's log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_core::{ChatEvent, ChatProvider, ChatRequest, Error, ErrorKind, TimeoutPhase};
use futures_util::StreamExt;
use pplx_sim::{Ending, Fault, LineEnding, LogEntry, Pace, SimConfig, Simulator, Target};
use provider_perplexity::{AfterCommit, PerplexityConfig, PerplexityProvider};
use resilience::{ApiKey, BackoffPolicy, Jitter};

const QUESTION: &str = "Explain quantum computing";
const KEYS: [&str; 3] = [
    "pplx-test-key-alpha-000",
    "pplx-test-key-bravo-111",
    "pplx-test-key-charlie-222",
];

/// A simulator that still serves Sonar chat completions (as an account that has them), for
/// the tests of that path; the Agent API's tests ask it by default.
async fn simulator(keys: usize) -> Simulator {
    let mut config = SimConfig::default();
    config.keys = KEYS[..keys].iter().map(|key| (*key).to_owned()).collect();
    config.pace = Pace::instant();
    config.legacy_sonar = true;
    Simulator::start(config).await.unwrap()
}

/// Chat completions asked for (`api = sonar`): most of these tests are about that path.
fn config(sim: &Simulator, keys: usize) -> PerplexityConfig {
    let mut config = agent_config(sim, keys);
    config.api = Some(provider_perplexity::Api::Sonar);
    config
}

/// The default: every model on the Agent API.
fn agent_config(sim: &Simulator, keys: usize) -> PerplexityConfig {
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = KEYS[..keys].iter().map(|key| ApiKey::new(*key)).collect();
    config.backoff = BackoffPolicy {
        base: Duration::from_millis(2),
        cap: Duration::from_millis(10),
        max_attempts: 4,
        jitter: Jitter::None,
        ..BackoffPolicy::default()
    };
    // The breaker has its own tests; here it must not open across the many scripted faults.
    config.breaker.minimum_calls = 1_000;
    // Generous enough for a loaded CI machine (a one-byte-per-write stream included), short
    // enough that the stall and delay faults finish in seconds.
    config.timeouts.idle = Duration::from_secs(2);
    config.timeouts.first_event = Duration::from_secs(2);
    config.timeouts.headers = Duration::from_secs(2);
    config
}

fn provider(config: PerplexityConfig) -> PerplexityProvider {
    PerplexityProvider::new(config).unwrap()
}

#[derive(Debug)]
struct Outcome {
    events: Vec<ChatEvent>,
    error: Option<Error>,
}

impl Outcome {
    fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|event| match event {
                ChatEvent::TextDelta(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The text after the last restart marker.
    fn final_text(&self) -> String {
        let start = self
            .events
            .iter()
            .rposition(|event| *event == ChatEvent::Restart)
            .map_or(0, |index| index + 1);
        Outcome {
            events: self.events[start..].to_vec(),
            error: None,
        }
        .text()
    }

    fn reasoning(&self) -> String {
        self.events
            .iter()
            .filter_map(|event| match event {
                ChatEvent::ReasoningDelta(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn count(&self, matches: impl Fn(&ChatEvent) -> bool) -> usize {
        self.events.iter().filter(|event| matches(event)).count()
    }

    fn done(&self) -> &chat_core::ChatResponse {
        match self.events.last() {
            Some(ChatEvent::Done(response)) => response,
            other => panic!(
                "the stream did not end with Done: {other:?}, error {:?}",
                self.error
            ),
        }
    }
}

async fn stream(provider: &PerplexityProvider, request: ChatRequest) -> Outcome {
    let mut stream = provider.chat_stream(request);
    let mut outcome = Outcome {
        events: Vec::new(),
        error: None,
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => outcome.events.push(event),
            Err(error) => {
                assert!(stream.next().await.is_none(), "nothing follows an error");
                outcome.error = Some(error);
                break;
            }
        }
    }
    outcome
}

fn sonar() -> ChatRequest {
    ChatRequest::new("sonar", QUESTION)
}

/// (key index, stream flag, status, ending) of every request.
async fn requests(sim: &Simulator) -> Vec<(Option<usize>, bool, u16, Ending)> {
    sim.wait_idle().await;
    sim.log()
        .iter()
        .map(|entry: &LogEntry| (entry.key_index, entry.stream, entry.status, entry.ending))
        .collect()
}

/// The sources events of an outcome, in order.
fn sources_events(outcome: &Outcome) -> Vec<&chat_core::Sources> {
    outcome
        .events
        .iter()
        .filter_map(|event| match event {
            ChatEvent::Sources(sources) => Some(sources),
            _ => None,
        })
        .collect()
}

/// Asserts the complete answer arrived exactly once, with sources (once, and again only as
/// a multi-step run's later searches add to them) and usage.
fn assert_complete(outcome: &Outcome, expected: &str) {
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.text(), expected);
    let sources = sources_events(outcome);
    assert!(!sources.is_empty(), "sources came");
    for pair in sources.windows(2) {
        assert!(
            pair[1].citations.len() > pair[0].citations.len()
                && pair[1].citations.starts_with(&pair[0].citations),
            "sources again only when they grow: {pair:?}"
        );
    }
    assert_eq!(
        outcome.count(|event| matches!(event, ChatEvent::Usage(_))),
        1
    );
    let done = outcome.done();
    assert_eq!(done.text, expected);
    assert!(done.sources.citations.len() >= 3);
    assert!(
        done.usage
            .as_ref()
            .unwrap()
            .cost
            .as_ref()
            .unwrap()
            .total_cost
            > 0.0
    );
}

use Ending::{
    ClientGone, Complete, Dropped, DroppedBeforeHeaders, ErrorEvent, ErrorStatus, Stalled,
};

#[tokio::test]
async fn a_plain_stream_and_a_plain_answer() {
    let sim = simulator(1).await;
    let provider = provider(config(&sim, 1));
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    let outcome = stream(&provider, sonar()).await;
    assert_complete(&outcome, &expected);
    assert!(!outcome.done().fallback);
    let response = provider.chat(sonar()).await.unwrap();
    assert_eq!(response.text, expected);
    assert_eq!(response.sources, outcome.done().sources);
    assert_eq!(
        requests(&sim).await,
        [
            (Some(0), true, 200, Complete),
            (Some(0), false, 200, Complete)
        ]
    );
}

#[tokio::test]
async fn framing_faults_change_nothing() {
    let sim = simulator(1).await;
    let provider = provider(config(&sim, 1));
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    let faults = [
        Fault::none()
            .line_ending(LineEnding::Crlf)
            .keep_alive()
            .one_byte_pieces(),
        Fault::none().line_ending(LineEnding::Cr),
        Fault::none().done_marker(),
        Fault::none().legacy_object().done_marker(),
    ];
    for fault in faults {
        sim.script(Target::Any, fault.clone(), 1);
        let outcome = stream(&provider, sonar()).await;
        assert_complete(&outcome, &expected);
    }
    assert_eq!(requests(&sim).await.len(), 4, "no retries");
}

#[tokio::test]
async fn failures_before_the_commit_point_are_retried_to_one_complete_answer() {
    let sim = simulator(1).await;
    let provider = provider(config(&sim, 1));
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    let cases: Vec<(Fault, Ending)> = vec![
        (Fault::status(500), ErrorStatus),
        (Fault::status(503), ErrorStatus),
        (Fault::status(408), ErrorStatus),
        (Fault::drop_before_headers(), DroppedBeforeHeaders),
        (Fault::drop_after_events(0), Dropped),
        (Fault::drop_mid_event(0), Dropped),
        (Fault::stall_after_events(0), Stalled),
        (Fault::malformed_event(0), Complete),
        (Fault::oversized_line(5 << 20), Complete),
        (Fault::error_event_after(0), ErrorEvent),
        (
            Fault::none().delay_headers(Duration::from_secs(4)),
            ClientGone,
        ),
    ];
    for (fault, ending) in cases {
        sim.script(Target::Any, fault.clone(), 1);
        let outcome = stream(&provider, sonar()).await;
        assert_complete(&outcome, &expected);
        let log = requests(&sim).await;
        let last_two = &log[log.len() - 2..];
        assert_eq!(last_two[0].3, ending, "{fault:?}");
        assert_eq!(
            last_two[1],
            (Some(0), true, 200, Complete),
            "{fault:?}: one retry that completes"
        );
    }
}

#[tokio::test]
async fn rate_limits_and_rejected_keys_rotate() {
    let sim = simulator(3).await;
    let provider = provider(config(&sim, 3));
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    sim.script(Target::Key(0), Fault::rate_limited(30), 1);
    sim.script(Target::Key(1), Fault::status(401), 1);
    let outcome = stream(&provider, sonar()).await;
    assert_complete(&outcome, &expected);
    assert_eq!(
        requests(&sim).await,
        [
            (Some(0), true, 429, ErrorStatus),
            (Some(1), true, 401, ErrorStatus),
            (Some(2), true, 200, Complete)
        ]
    );
    let stats = provider.key_stats();
    assert_eq!(
        (stats[0].rate_limits, stats[0].cooling_until.is_some()),
        (1, true)
    );
    assert!(stats[1].disabled.is_some());
    assert_eq!((stats[2].successes, stats[2].in_flight), (1, 0));
    // The answer says what it took: three requests, on three keys.
    assert_eq!(
        (outcome.done().attempts, outcome.done().key_rotations),
        (3, 2)
    );
    // Key 0 cools for 30 s and key 1 is disabled: the next request goes to key 2 at once.
    let outcome = stream(&provider, sonar()).await;
    assert_complete(&outcome, &expected);
    assert_eq!(requests(&sim).await.last().unwrap().0, Some(2));
    assert_eq!(
        (outcome.done().attempts, outcome.done().key_rotations),
        (1, 0)
    );
    // Not streamed, the same count.
    sim.script(Target::Key(2), Fault::status(500), 1);
    let response = provider.chat(sonar()).await.unwrap();
    assert_eq!((response.attempts, response.key_rotations), (2, 0));
}

#[tokio::test]
async fn a_short_retry_after_is_waited_and_a_long_one_is_reported() {
    let sim = simulator(1).await;
    let provider = provider(config(&sim, 1));
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    sim.script(
        Target::Any,
        Fault::status(429).header("retry-after-ms", "50"),
        1,
    );
    let started = std::time::Instant::now();
    let outcome = stream(&provider, sonar()).await;
    assert_complete(&outcome, &expected);
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "the hint was honoured"
    );
    sim.script(Target::Any, Fault::rate_limited(41), 1);
    let outcome = stream(&provider, sonar()).await;
    let error = outcome.error.expect("a rate-limit error");
    assert!(error.is_rate_limited(), "{error}");
    let wait = error.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(39) && wait <= Duration::from_secs(41),
        "{wait:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("rate limited on all 1 keys, next free in 4"),
        "{error}"
    );
    assert!(outcome.events.is_empty());
}

#[tokio::test]
async fn a_break_after_the_commit_point_is_an_interruption_with_the_exact_partial_text() {
    let sim = simulator(1).await;
    let provider = provider(config(&sim, 1));
    let faults = [
        Fault::drop_after_events(5),
        Fault::drop_mid_event(5),
        Fault::stall_after_events(5),
        Fault::malformed_event(5),
        Fault::error_event_after(5),
    ];
    for fault in faults {
        sim.script(Target::Any, fault.clone(), 1);
        let outcome = stream(&provider, sonar()).await;
        let error = outcome
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("{fault:?} gave no error"));
        assert!(error.is_interrupted(), "{fault:?}: {error}");
        assert!(!error.is_retryable());
        let partial = error.partial_text().unwrap();
        assert_eq!(
            partial,
            outcome.text(),
            "{fault:?}: the partial text is exactly what was delivered"
        );
        assert!(!partial.is_empty());
        let expected = sim.expected_text("sonar", &[QUESTION], None);
        assert!(expected.starts_with(partial));
        assert_eq!(
            outcome.count(|event| matches!(event, ChatEvent::Done(_))),
            0
        );
        if fault.stall_after_events.is_some() {
            let cause = std::error::Error::source(error)
                .unwrap()
                .downcast_ref::<Error>()
                .unwrap();
            assert_eq!(cause.timeout_phase(), Some(TimeoutPhase::Idle));
        }
    }
    let log = requests(&sim).await;
    assert_eq!(log.len(), 5, "nothing was replayed: {log:?}");
}

#[tokio::test]
async fn the_restart_policy_starts_over_visibly() {
    let sim = simulator(1).await;
    let mut config = config(&sim, 1);
    config.after_commit = AfterCommit::Restart { max_restarts: 1 };
    let provider = provider(config);
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    sim.script(Target::Any, Fault::drop_after_events(4), 1);
    let outcome = stream(&provider, sonar()).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.count(|event| *event == ChatEvent::Restart), 1);
    assert_eq!(outcome.final_text(), expected);
    let mut accumulator = chat_core::Accumulator::default();
    outcome
        .events
        .iter()
        .for_each(|event| accumulator.push(event));
    assert_eq!(accumulator.text(), expected);
    assert_eq!(
        requests(&sim).await,
        [
            (Some(0), true, 200, Dropped),
            (Some(0), true, 200, Complete)
        ]
    );
}

#[tokio::test]
async fn spent_streaming_attempts_fall_back_to_one_plain_request() {
    let sim = simulator(1).await;
    let provider = provider(config(&sim, 1));
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    sim.script(Target::Any, Fault::drop_after_events(0), 4);
    let outcome = stream(&provider, sonar()).await;
    assert_complete(&outcome, &expected);
    assert_eq!(
        outcome.count(|event| matches!(event, ChatEvent::TextDelta(_))),
        1,
        "one delta"
    );
    assert!(outcome.done().fallback);
    assert_eq!(
        outcome.done().attempts,
        5,
        "four streaming tries and the fallback"
    );
    let log = requests(&sim).await;
    assert_eq!(log.len(), 5);
    assert!(log[..4].iter().all(|entry| entry.1 && entry.3 == Dropped));
    assert_eq!(log[4], (Some(0), false, 200, Complete));
}

#[tokio::test]
async fn a_bad_request_fails_at_once_without_fallback() {
    let sim = simulator(1).await;
    let provider = provider(config(&sim, 1));
    let outcome = stream(&provider, ChatRequest::new("not-a-model", QUESTION)).await;
    let error = outcome.error.unwrap();
    assert!(error.is_bad_request(), "{error}");
    assert_eq!(error.status_code(), Some(400));
    assert!(
        error.to_string().contains("Invalid model 'not-a-model'"),
        "{error}"
    );
    assert_eq!(requests(&sim).await, [(Some(0), true, 400, ErrorStatus)]);
}

#[tokio::test]
async fn a_bad_key_is_an_auth_error_with_advice() {
    let sim = simulator(1).await;
    let mut config = config(&sim, 1);
    config.keys = vec![ApiKey::new("wrong-key")];
    let provider = provider(config);
    let outcome = stream(&provider, sonar()).await;
    let error = outcome.error.unwrap();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
    assert_eq!(error.to_string(), "all 1 API keys were rejected");
    assert_eq!(requests(&sim).await, [(None, true, 401, ErrorStatus)]);
}

#[tokio::test]
async fn reasoning_is_kept_apart_from_the_answer() {
    let sim = simulator(1).await;
    let provider = provider(config(&sim, 1));
    let answer = sim.expected_answer("sonar-reasoning-pro", &[QUESTION]);
    let outcome = stream(&provider, ChatRequest::new("reason", QUESTION)).await;
    assert_complete(&outcome, &answer.text);
    assert_eq!(outcome.reasoning(), answer.reasoning);
    assert_eq!(outcome.done().reasoning, answer.reasoning);
    let response = provider
        .chat(ChatRequest::new("reason", QUESTION))
        .await
        .unwrap();
    assert_eq!(
        (response.text, response.reasoning),
        (answer.text, answer.reasoning)
    );
}

#[tokio::test]
async fn the_agent_api_streams_and_fails_the_same_way() {
    let sim = simulator(1).await;
    let provider = provider(agent_config(&sim, 1));
    let expected = sim.expected_text("pro-search", &[QUESTION], None);
    let request = ChatRequest::new("pro-search", QUESTION);
    let outcome = stream(&provider, request.clone()).await;
    assert_complete(&outcome, &expected);
    assert!(outcome.reasoning().contains("Searching: "));
    assert_eq!(provider.chat(request.clone()).await.unwrap().text, expected);

    sim.script(Target::Any, Fault::status(502), 1);
    assert_complete(&stream(&provider, request.clone()).await, &expected);

    // The Agent API's first events are not text: a drop there is still before the commit point.
    sim.script(Target::Any, Fault::drop_after_events(4), 1);
    assert_complete(&stream(&provider, request.clone()).await, &expected);

    sim.script(Target::Any, Fault::error_event_after(12), 1);
    let outcome = stream(&provider, request.clone()).await;
    let error = outcome.error.as_ref().unwrap();
    assert!(error.is_interrupted(), "{error}");
    assert_eq!(error.partial_text().unwrap(), outcome.text());

    sim.script(Target::Any, Fault::drop_after_events(0), 4);
    let outcome = stream(&provider, request).await;
    assert_complete(&outcome, &expected);
    assert!(outcome.done().fallback);
    let cancelled = |log: &[LogEntry]| {
        log.iter()
            .filter(|entry| entry.endpoint.ends_with("/cancel"))
            .count()
    };
    // The cancels are sent in the background; wait for them (bounded).
    tokio::time::timeout(
        Duration::from_secs(10),
        sim.wait_for_log(|log| cancelled(log) >= 2),
    )
    .await
    .expect("the abandoned runs are cancelled");
    sim.wait_idle().await;
    let log = sim.log();
    assert!(log.iter().all(|entry| entry.key_index == Some(0)));
    let answers = |stream: bool| {
        log.iter()
            .filter(|entry| entry.endpoint == "/v1/agent" && entry.stream == stream)
            .count()
    };
    assert_eq!(answers(false), 2, "the chat() call and the fallback");
    // The runs abandoned after the server named them (the drop after 4 events, and the
    // failed one) were cancelled, so they stop billing.
    let cancels: Vec<&str> = log
        .iter()
        .filter(|entry| entry.endpoint.ends_with("/cancel"))
        .map(|entry| entry.endpoint.as_str())
        .collect();
    assert_eq!(cancels.len(), 2, "{}", sim.log_text());
    assert!(
        cancels
            .iter()
            .all(|path| path.starts_with("/v1/agent/resp_"))
    );
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_request_and_frees_the_key() {
    let sim = simulator(1).await;
    let mut pace = Pace::instant();
    pace.chunk_delay = Duration::from_millis(20);
    sim.set_pace(pace);
    let provider = provider(config(&sim, 1));
    let mut stream = provider.chat_stream(sonar());
    while let Some(event) = stream.next().await {
        if matches!(event.unwrap(), ChatEvent::TextDelta(_)) {
            break;
        }
    }
    assert_eq!(provider.key_stats()[0].in_flight, 1);
    drop(stream);
    assert_eq!(provider.key_stats()[0].in_flight, 0);
    let log = requests(&sim).await;
    assert_eq!(log, [(Some(0), true, 200, ClientGone)]);
}

#[tokio::test]
async fn a_request_with_options_sends_them() {
    let sim = simulator(1).await;
    let provider = provider(config(&sim, 1));
    let mut options = provider_perplexity::SonarOptions::default();
    options.filters.search_domain_filter = vec!["nasa.gov".into()];
    options.filters.search_recency_filter = Some(provider_perplexity::Recency::Week);
    options.return_related_questions = Some(true);
    let request = options.apply(sonar());
    let response = provider.chat(request).await.unwrap();
    assert!(
        response
            .sources
            .citations
            .iter()
            .all(|url| url.starts_with("https://nasa.gov/"))
    );
    assert!(
        response.sources.search_results[0]
            .snippet
            .as_deref()
            .unwrap()
            .contains("week")
    );
    assert_eq!(response.related_questions.len(), 3);
}

#[tokio::test]
async fn no_key_material_in_logs_errors_or_debug_output() {
    let sim = simulator(2).await;
    let logs = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let logs = logs.clone();
        move || CaptureWriter(logs.clone())
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let provider = provider(config(&sim, 2));
    sim.script(Target::Key(0), Fault::status(401), 1);
    sim.script(Target::Any, Fault::drop_after_events(3), 1);
    let outcome = stream(&provider, sonar()).await;
    let error = outcome.error.unwrap();
    let mut printed = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    printed.push_str(&format!(
        "{provider:?} {:?} {error} {error:?} {:?}",
        provider.config(),
        provider.key_stats()
    ));
    assert!(
        printed.contains("attempt"),
        "tracing output was captured: {printed}"
    );
    // A gateway that echoes the key it was sent, in an error body and in a stream's error
    // event: neither the errors nor the logs repeat it.
    let echo = format!(
        r#"{{"error":{{"message":"upstream refused Authorization: Bearer {}","type":"server_error"}}}}"#,
        KEYS[1]
    );
    sim.script(Target::Any, Fault::status(400).body(&echo), 1);
    let outcome = stream(&provider, sonar()).await;
    let echoed = outcome.error.unwrap();
    assert!(
        echoed
            .to_string()
            .contains("upstream refused Authorization: Bearer [redacted]"),
        "{echoed}"
    );
    printed.push_str(&String::from_utf8(logs.lock().unwrap().clone()).unwrap());
    printed.push_str(&format!("{echoed} {echoed:?}"));
    for key in &KEYS[..2] {
        assert!(!printed.contains(key), "key material in: {printed}");
        assert!(!printed.contains(&key[10..]), "part of a key in: {printed}");
    }
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn plain_http_is_for_loopback_only_and_keys_are_required() {
    let mut config = PerplexityConfig::default();
    assert_eq!(
        PerplexityProvider::new(config.clone()).unwrap_err().kind(),
        ErrorKind::Config
    );
    config.keys = vec![ApiKey::new("k")];
    config.base_url = "http://api.example.com".into();
    let error = PerplexityProvider::new(config.clone()).unwrap_err();
    assert!(error.to_string().contains("unencrypted"), "{error}");
    config.allow_insecure_http = true;
    assert!(PerplexityProvider::new(config.clone()).is_ok());
    config.base_url = "http://[::1]:8080/".into();
    config.allow_insecure_http = false;
    assert!(PerplexityProvider::new(config).is_ok());
}

#[tokio::test]
async fn the_servers_should_retry_header_decides_before_the_status() {
    let sim = simulator(1).await;
    let mut config = config(&sim, 1);
    config.fallback = false;
    let provider = provider(config);
    // A 503 the server says not to retry: one request, and its error.
    sim.script(
        Target::Any,
        Fault::status(503).header("x-should-retry", "false"),
        1,
    );
    let outcome = stream(&provider, sonar()).await;
    assert_eq!(outcome.error.unwrap().status_code(), Some(503));
    assert_eq!(requests(&sim).await.len(), 1);
    // A 400 the server says to retry: retried, and answered.
    sim.script(
        Target::Any,
        Fault::status(400).header("x-should-retry", "true"),
        1,
    );
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    assert_complete(&stream(&provider, sonar()).await, &expected);
    assert_eq!(requests(&sim).await.len(), 3);
}

/// On paused time: the deadlines and the quiet stretches pass as the runtime idles, so the
/// outcome does not depend on how loaded the machine is.
#[tokio::test(start_paused = true)]
async fn comments_are_not_liveness_but_retry_lines_and_pings_are() {
    use pplx_sim::KeepAlive;
    let sim = simulator(1).await;
    let mut config = config(&sim, 1);
    config.fallback = false;
    config.backoff.max_attempts = 1;
    config.timeouts.first_event = Duration::from_millis(600);
    config.timeouts.idle = Duration::from_millis(600);
    let provider = provider(config);
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    let quiet = |keep_alive| Fault::quiet_after_events(2, Duration::from_millis(1_500), keep_alive);
    // Only comments for longer than the idle deadline: the deadline fires.
    sim.script(Target::Any, quiet(KeepAlive::Comment), 1);
    let outcome = stream(&provider, sonar()).await;
    let error = outcome.error.unwrap();
    assert_eq!(
        std::error::Error::source(&error)
            .and_then(|cause| cause.downcast_ref::<Error>())
            .and_then(Error::timeout_phase),
        Some(TimeoutPhase::Idle),
        "{error}"
    );
    // `retry:` lines and `data: ping` keep-alives keep it alive, and the pings are skipped.
    for keep_alive in [KeepAlive::Retry, KeepAlive::Ping] {
        sim.script(Target::Any, quiet(keep_alive), 1);
        assert_complete(&stream(&provider, sonar()).await, &expected);
    }
    sim.script(Target::Any, Fault::none().ping_data(), 1);
    let mut agent_config = agent_config(&sim, 1);
    agent_config.fallback = false;
    let agent = ChatRequest::new("fast", QUESTION);
    let expected = sim.expected_text("fast", &[QUESTION], None);
    assert_complete(
        &stream(&self::provider(agent_config), agent).await,
        &expected,
    );
}

#[tokio::test]
async fn deep_research_has_its_own_breaker_and_deadlines() {
    let sim = simulator(1).await;
    let mut config = config(&sim, 1);
    config.fallback = false;
    config.backoff.max_attempts = 1;
    config.breaker.minimum_calls = 2;
    config.breaker.failure_rate = 0.5;
    config.breaker.window = resilience::SlidingWindow::Count(4);
    let provider = provider(config);
    sim.script(Target::Any, Fault::status(503), 2);
    for _ in 0..2 {
        let outcome = stream(&provider, ChatRequest::new("sonar-deep-research", QUESTION)).await;
        assert!(outcome.error.is_some());
    }
    let outcome = stream(&provider, ChatRequest::new("sonar-deep-research", QUESTION)).await;
    assert!(
        outcome.error.unwrap().is_circuit_open(),
        "research's breaker opened"
    );
    // Quick answers have their own breaker, still closed.
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    assert_complete(&stream(&provider, sonar()).await, &expected);
    assert_ne!(
        provider.breaker_stats("sonar-deep-research").state,
        provider.breaker_stats("sonar").state
    );
}

#[tokio::test]
async fn provider_models_use_chat_completions_at_an_openai_compatible_endpoint() {
    let sim = simulator(1).await;
    let mut config = config(&sim, 1);
    config.fallback = false;
    let provider = provider(config);
    // The simulator is not Perplexity's host, so it stands for any compatible endpoint here.
    let outcome = stream(&provider, ChatRequest::new("openai/gpt-4o", QUESTION)).await;
    assert!(
        outcome.error.unwrap().is_bad_request(),
        "the simulator knows no such Sonar model"
    );
    sim.wait_idle().await;
    assert_eq!(sim.log()[0].endpoint, "/chat/completions");
}

#[tokio::test]
async fn dropping_an_agent_stream_cancels_the_run_on_the_server() {
    let sim = simulator(1).await;
    let mut pace = Pace::instant();
    pace.chunk_delay = Duration::from_millis(20);
    sim.set_pace(pace);
    let provider = provider(agent_config(&sim, 1));
    let mut stream = provider.chat_stream(ChatRequest::new("high", QUESTION));
    while let Some(event) = stream.next().await {
        if matches!(event.unwrap(), ChatEvent::TextDelta(_)) {
            break;
        }
    }
    drop(stream);
    tokio::time::timeout(
        Duration::from_secs(10),
        sim.wait_for_log(|log| log.iter().any(|entry| entry.endpoint.ends_with("/cancel"))),
    )
    .await
    .expect("the abandoned run is cancelled");
    sim.wait_idle().await;
    let log = sim.log();
    let run = log[0].endpoint.clone();
    assert_eq!(run, "/v1/agent");
    assert!(log[1].endpoint.starts_with("/v1/agent/resp_") && log[1].key_index == Some(0));
}

/// A CONNECT proxy on loopback: counts the tunnels it opened and to where.
async fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tunnels = Arc::new(Mutex::new(Vec::new()));
    let seen = tunnels.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut request_line = String::new();
                client.read_line(&mut request_line).await.ok()?;
                loop {
                    let mut header = String::new();
                    client.read_line(&mut header).await.ok()?;
                    if header.trim().is_empty() {
                        break;
                    }
                }
                let target = request_line
                    .strip_prefix("CONNECT ")?
                    .split(' ')
                    .next()?
                    .to_owned();
                seen.lock().unwrap().push(target.clone());
                let mut upstream = tokio::net::TcpStream::connect(&target).await.ok()?;
                let mut client = client.into_inner();
                client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .ok()?;
                tokio::io::copy_bidirectional(&mut client, &mut upstream)
                    .await
                    .ok()?;
                Some(())
            });
        }
    });
    (url, tunnels)
}

#[tokio::test]
async fn requests_go_through_a_configured_proxy() {
    let sim = simulator(1).await;
    let (proxy_url, tunnels) = connect_proxy().await;
    let mut config = config(&sim, 1);
    config.proxy = provider_perplexity::Proxy::Url {
        url: proxy_url,
        no_proxy: String::new(),
    };
    let provider = provider(config);
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    assert_complete(&stream(&provider, sonar()).await, &expected);
    assert_eq!(*tunnels.lock().unwrap(), [sim.addr().to_string()]);
    // NO_PROXY-style exceptions go direct.
    let mut config = self::config(&sim, 1);
    config.proxy = provider_perplexity::Proxy::Url {
        url: "http://127.0.0.1:9".into(),
        no_proxy: "127.0.0.1".into(),
    };
    assert_complete(&stream(&self::provider(config), sonar()).await, &expected);
}

#[tokio::test]
async fn streams_that_always_break_after_a_token_open_the_breaker() {
    let sim = simulator(1).await;
    let mut config = config(&sim, 1);
    config.breaker.minimum_calls = 2;
    config.breaker.failure_rate = 0.5;
    config.breaker.window = resilience::SlidingWindow::Count(4);
    let provider = provider(config);
    sim.script(Target::Any, Fault::drop_after_events(2), 10);
    for _ in 0..2 {
        let outcome = stream(&provider, sonar()).await;
        assert!(outcome.error.unwrap().is_interrupted());
    }
    let outcome = stream(&provider, sonar()).await;
    assert!(
        outcome.error.as_ref().unwrap().is_circuit_open(),
        "{:?}",
        outcome.error
    );
    assert_eq!(
        requests(&sim).await.len(),
        2,
        "the open breaker sent nothing"
    );
}

#[tokio::test]
async fn only_a_refusal_naming_the_stream_parameter_falls_back() {
    let sim = simulator(1).await;
    let provider = provider(config(&sim, 1));
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    let refusal = r#"{"error":{"message":"this endpoint cannot stream","type":"invalid_parameter","param":"stream"}}"#;
    sim.script(Target::Any, Fault::status(400).body(refusal), 1);
    let outcome = stream(&provider, sonar()).await;
    assert_complete(&outcome, &expected);
    assert!(outcome.done().fallback);
    // The word in a message decides nothing: a 400 about another parameter fails at once.
    let other = r#"{"error":{"message":"streaming models need a valid max_tokens","type":"invalid_parameter","param":"max_tokens"}}"#;
    sim.script(Target::Any, Fault::status(400).body(other), 1);
    let outcome = stream(&provider, sonar()).await;
    assert!(outcome.error.unwrap().is_bad_request());
    let log = requests(&sim).await;
    assert_eq!(log.len(), 3, "the refusal, the fallback, the other 400");
}

#[tokio::test]
async fn concise_reasoning_image_searches_and_skills_reach_the_caller() {
    let sim = simulator(1).await;
    // Sonar's concise mode: the reasoning comes as steps, the answer as usual.
    let request =
        ChatRequest::new("sonar-reasoning-pro", QUESTION).with_option("stream_mode", "concise");
    let outcome = stream(&provider(config(&sim, 1)), request).await;
    let response = outcome.done();
    assert_eq!(
        response.text,
        sim.expected_text("sonar-reasoning-pro", &[QUESTION], None)
    );
    let full = sim.expected_answer("sonar-reasoning-pro", &[QUESTION]);
    assert!(
        response
            .reasoning
            .starts_with(full.reasoning.split(". ").next().unwrap()),
        "{:?}",
        response.reasoning
    );
    assert!(
        response.reasoning.contains("Searching: "),
        "{:?}",
        response.reasoning
    );
    // The Agent API with the image_search tool and a skill (raw options).
    let agent = agent_config(&sim, 1);
    let request = ChatRequest::new("medium", QUESTION)
        .with_option("tools", serde_json::json!([{"type": "image_search"}]))
        .with_option(
            "skills",
            serde_json::json!([{"type": "builtin", "name": "office"}]),
        );
    let outcome = stream(&provider(agent), request).await;
    let response = outcome.done();
    assert!(
        response.reasoning.contains("Using skill: office\n"),
        "{:?}",
        response.reasoning
    );
    assert!(
        response.reasoning.contains("Searching images: "),
        "{:?}",
        response.reasoning
    );
    assert_eq!(
        response
            .images
            .iter()
            .map(|image| image.image_url.as_str())
            .collect::<Vec<_>>(),
        full_images(&sim, "medium"),
    );
}

fn full_images(sim: &Simulator, model: &str) -> Vec<String> {
    sim.expected_answer(model, &[QUESTION]).images
}
