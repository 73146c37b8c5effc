//! Connection reuse: the next answer goes over the connection the last one used, on
//! HTTP/1.1 (plain) and HTTP/2 (TLS with ALPN, the simulator's self-signed certificate
//! trusted), also when the end of a stream arrives a little after its final event. The
//! simulator counts the connections it accepted.

use std::time::Duration;

use chat_core::{ChatEvent, ChatProvider, ChatRequest};
use futures_util::StreamExt;
use pplx_sim::{Fault, Pace, SimConfig, Simulator, Target};
use provider_perplexity::{PerplexityConfig, PerplexityProvider};
use resilience::ApiKey;

const KEY: &str = "reuse-key";

async fn simulator(tls: bool) -> Simulator {
    let mut config = SimConfig::default();
    config.keys = vec![KEY.to_owned()];
    config.tls = tls;
    // A short pause between chunks, and so before the `[DONE]` that follows the final one.
    config.pace = Pace::instant();
    config.pace.chunk_delay = Duration::from_millis(5);
    config.pace.answer_words = 30;
    config.faults = vec![(Target::Any, Fault::none().done_marker(), 1_000)];
    // One request per answer, as chat completions make them (an Agent API answer is a
    // background run: a create, and a cancel if left).
    config.legacy_sonar = true;
    Simulator::start(config).await.unwrap()
}

fn provider(sim: &Simulator) -> PerplexityProvider {
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![ApiKey::new(KEY)];
    config.root_certificates = sim
        .certificate_der()
        .map(<[u8]>::to_vec)
        .into_iter()
        .collect();
    config.api = Some(provider_perplexity::Api::Sonar);
    PerplexityProvider::new(config).unwrap()
}

/// Reads a stream to its end (past `Done`: the end comes once the rest of the body is
/// read); the answer's text.
async fn to_the_end(provider: &PerplexityProvider, question: &str) -> String {
    let mut stream = provider.chat_stream(ChatRequest::new("sonar", question));
    let mut text = None;
    while let Some(event) = stream.next().await {
        if let ChatEvent::Done(response) = event.unwrap() {
            text = Some(response.text);
        }
    }
    text.unwrap()
}

/// Eleven answers in a row (ten streamed to their end, then one whole) use at most
/// `connections` connections; without reuse, each would open its own.
async fn answers_reuse_connections(tls: bool, connections: usize) {
    let sim = simulator(tls).await;
    let provider = provider(&sim);
    for round in 0..10 {
        let text = to_the_end(&provider, &format!("Question {round}")).await;
        assert!(!text.is_empty());
        sim.wait_idle().await;
    }
    let whole = provider
        .chat(ChatRequest::new("sonar", "Not streamed"))
        .await
        .unwrap();
    assert!(!whole.text.is_empty());
    assert_eq!(sim.log().len(), 11);
    assert!(
        sim.connections() <= connections,
        "{} connections for eleven answers\n{}",
        sim.connections(),
        sim.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_answer_reuses_the_connection_over_http1() {
    // A connection goes back to the pool a moment after its body ends, so a question asked
    // at once may find it still on its way and open a second; then the two take turns.
    answers_reuse_connections(false, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_answer_reuses_the_connection_over_http2_with_tls() {
    // HTTP/2 multiplexes: one connection, always.
    answers_reuse_connections(true, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_nobody_trusts_is_refused() {
    let sim = simulator(true).await;
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![ApiKey::new(KEY)];
    config.backoff.max_attempts = 1;
    config.fallback = false;
    let provider = PerplexityProvider::new(config).unwrap();
    let error = provider
        .chat(ChatRequest::new("sonar", "Explain quantum computing"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), chat_core::ErrorKind::Connect, "{error}");
    assert!(sim.log().is_empty(), "no request got through");
}
