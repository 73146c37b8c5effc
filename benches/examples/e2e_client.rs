//! One Rust client of `cargo xtask bench e2e`: `provider-perplexity`, `async-openai` 0.43 or
//! the floor (the provider's HTTP client, SSE parser and decoder alone) against the
//! simulator's firehose, on one thread (a current-thread runtime, as the Python clients run
//! on one), on the Agent API (`agent`: the provider's default, `sonar` as the migration guide
//! maps it; async-openai's Responses stream with event types of its caller's, since its own
//! types know none of Perplexity's) or chat completions (`chat`). Prints one JSON line: chunks, wall and CPU seconds, the time from
//! each call to its first delta, and the peak resident memory. With `E2E_CA_FILE` set (the
//! simulator's certificate, PEM) the base URL is HTTPS and each client trusts it besides its
//! usual roots, as a user behind a company proxy would configure it.
//!
//! `e2e_client ours|async-openai|floor agent|chat BASE_URL KEY long|concurrent|nonstream STREAMS RUNS``
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chat_core::{ChatEvent, ChatProvider, ChatRequest};
use futures_util::StreamExt;
use provider_perplexity::{PerplexityConfig, PerplexityProvider};

enum Client {
    Ours(PerplexityProvider),
    OpenAi(benches::openai::Client, bool),
    Floor(provider_perplexity::bench::Floor),
}

/// An Agent API event as a caller of async-openai's `create_stream_byot` types it: the event
/// type and a delta's text, everything else skipped.
#[derive(serde::Deserialize)]
struct AgentEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    delta: Option<String>,
}

/// What `sonar` is on the Agent API (the migration guide's mapping), as the provider sends it
/// by default: a stream runs in the background (`background: true`, kept by the server so a
/// cut stream can be read again), a whole answer is asked plainly (as the bench asks ours).
fn agent_request(stream: bool) -> serde_json::Value {
    serde_json::json!({"model": "perplexity/sonar", "input": "firehose", "tools": [{"type": "web_search"}], "stream": stream, "background": stream})
}

impl Client {
    fn new(name: &str, agent: bool, base_url: &str, key: &str) -> Client {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let certificate = std::env::var_os("E2E_CA_FILE").map(|path| std::fs::read(path).unwrap());
        let roots: Vec<Vec<u8>> = certificate
            .iter()
            .map(|pem| CertificateDer::from_pem_slice(pem).unwrap().to_vec())
            .collect();
        match name {
            "floor" => Client::Floor(
                provider_perplexity::bench::Floor::new(base_url, key, &roots).unwrap(),
            ),
            "ours" => {
                let mut config = PerplexityConfig::default();
                config.root_certificates = roots;
                if !agent {
                    config.api = Some(provider_perplexity::Api::Sonar);
                }
                config.base_url = base_url.to_owned();
                config.keys = vec![resilience::ApiKey::new(key)];
                // A thousand streams at once on one thread wait their turn for headers.
                config.timeouts.headers = Duration::from_secs(120);
                config.timeouts.first_event = Duration::from_secs(120);
                Client::Ours(PerplexityProvider::new(config).unwrap())
            }
            "async-openai" => {
                let client = benches::openai::client(base_url, key);
                let client = match &certificate {
                    Some(pem) => client.with_http_client(
                        reqwest::Client::builder()
                            .tls_certs_merge([reqwest::Certificate::from_pem(pem).unwrap()])
                            .build()
                            .unwrap(),
                    ),
                    None => client,
                };
                Client::OpenAi(client, agent)
            }
            other => panic!("unknown client {other}"),
        }
    }

    /// One stream: its deltas, and the time from the call to the first.
    async fn stream(&self) -> (usize, Duration) {
        let started = Instant::now();
        let mut first = None;
        let mut deltas = 0;
        match self {
            Client::Ours(provider) => {
                let mut stream = provider.chat_stream(ChatRequest::new("sonar", "firehose"));
                while let Some(event) = stream.next().await {
                    if let ChatEvent::TextDelta(text) = event.unwrap() {
                        first.get_or_insert_with(|| started.elapsed());
                        black_box(text);
                        deltas += 1;
                    }
                }
            }
            Client::Floor(floor) => {
                let (deltas_seen, at) = floor.stream("sonar", "firehose").await.unwrap();
                deltas = deltas_seen;
                first = Some(at);
            }
            Client::OpenAi(client, true) => {
                let mut stream = client
                    .responses()
                    .create_stream_byot::<_, AgentEvent>(agent_request(true))
                    .await
                    .unwrap();
                while let Some(event) = stream.next().await {
                    let event = event.unwrap();
                    if event.kind == "response.output_text.delta"
                        && let Some(text) = event.delta.filter(|text| !text.is_empty())
                    {
                        first.get_or_insert_with(|| started.elapsed());
                        black_box(text);
                        deltas += 1;
                    }
                }
            }
            Client::OpenAi(client, false) => {
                let request = benches::openai::request("firehose", true);
                let mut stream = client.chat().create_stream(request).await.unwrap();
                while let Some(chunk) = stream.next().await {
                    if let Some(text) = benches::openai::delta(&chunk.unwrap()) {
                        first.get_or_insert_with(|| started.elapsed());
                        black_box(text);
                        deltas += 1;
                    }
                }
            }
        }
        (deltas, first.unwrap_or_default())
    }

    /// One whole answer, not streamed.
    async fn answer(&self) -> usize {
        match self {
            Client::Ours(provider) => {
                // Asked plainly, as the other clients ask: by default a whole Agent answer is
                // a background run polled to its end (it outlives proxies that cut held
                // requests), which is another way to run, paced by its polls.
                let request =
                    ChatRequest::new("sonar", "firehose").with_option("background", false);
                let response = provider.chat(request).await.unwrap();
                usize::from(!response.text.is_empty())
            }
            Client::Floor(_) => panic!("the floor streams only"),
            Client::OpenAi(client, true) => {
                #[derive(serde::Deserialize)]
                struct Whole {
                    #[serde(default)]
                    output: Vec<serde_json::Value>,
                }
                let response: Whole = client
                    .responses()
                    .create_byot(agent_request(false))
                    .await
                    .unwrap();
                usize::from(!response.output.is_empty())
            }
            Client::OpenAi(client, false) => {
                let request = benches::openai::request("firehose", false);
                let response = client.chat().create(request).await.unwrap();
                usize::from(
                    response
                        .choices
                        .first()
                        .is_some_and(|choice| choice.message.content.is_some()),
                )
            }
        }
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, api, base_url, key, scenario, streams, runs] = args.as_slice() else {
        panic!(
            "usage: e2e_client ours|async-openai|floor agent|chat BASE_URL KEY long|concurrent|nonstream STREAMS RUNS"
        );
    };
    let (streams, runs): (usize, usize) = (streams.parse().unwrap(), runs.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async { Client::new(name, api == "agent", base_url, key) });
    let result = runtime.block_on(async {
        // One warm-up call: the connection pool and lazy statics.
        if scenario == "nonstream" {
            client.answer().await;
        } else {
            client.stream().await;
        }
        let cpu = cpu_time::ProcessTime::now();
        let wall = Instant::now();
        let mut chunks = 0;
        let mut ttfts = Vec::new();
        for _ in 0..runs {
            if scenario == "nonstream" {
                for _ in 0..streams {
                    chunks += client.answer().await;
                }
            } else {
                let all =
                    futures_util::future::join_all((0..streams).map(|_| client.stream())).await;
                for (deltas, first) in all {
                    chunks += deltas;
                    ttfts.push(first.as_secs_f64() * 1e6);
                }
            }
        }
        serde_json::json!({
            "client": name,
            "api": api,
            "scenario": scenario,
            "streams": streams,
            "chunks": chunks,
            "wall_s": wall.elapsed().as_secs_f64(),
            "cpu_s": cpu.elapsed().as_secs_f64(),
            "ttft_us": ttfts,
            "peak_rss_kib": benches::peak_resident_bytes() / 1024,
        })
    });
    println!("{result}");
}
