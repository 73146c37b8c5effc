//! The streaming client end to end, against the simulator's firehose over loopback:
//! - chunks/s and client CPU per chunk for one stream: `provider-perplexity`, `async-openai`
//!   0.43 and a bare hyper + sse-parse + serde pipeline (no reliability layers, no sources or
//!   reasoning handling), in the same group;
//! - time from the simulator handing over its first event to the caller holding the first
//!   delta;
//! - resident memory per stream with many streams open at once.
//!
//! The simulator runs on its own runtime thread; each client runs on a current-thread runtime
//! on the bench thread, so that thread's CPU time is the client's CPU time.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_core::{ChatEvent, ChatProvider, ChatRequest};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use http_body_util::{BodyDataStream, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pplx_sim::{Pace, SimConfig, Simulator};
use provider_perplexity::{PerplexityConfig, PerplexityProvider};

const KEY: &str = "bench-key";
const QUESTION: &str = "firehose";

/// Starts the simulator on a runtime of its own, on another thread.
fn simulator(pace: Pace) -> (Arc<Simulator>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut config = SimConfig::default();
    config.keys = vec![KEY.to_owned()];
    config.pace = pace;
    let sim = runtime.block_on(Simulator::start(config)).unwrap();
    (Arc::new(sim), runtime)
}

fn provider(sim: &Simulator) -> PerplexityProvider {
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![resilience::ApiKey::new(KEY)];
    PerplexityProvider::new(config).unwrap()
}

async fn ours(provider: &PerplexityProvider) -> usize {
    let mut stream = provider.chat_stream(ChatRequest::new("sonar", QUESTION));
    let mut deltas = 0;
    while let Some(event) = stream.next().await {
        if let ChatEvent::TextDelta(text) = event.unwrap() {
            black_box(text);
            deltas += 1;
        }
    }
    deltas
}

fn openai_client(sim: &Simulator) -> async_openai::Client<async_openai::config::OpenAIConfig> {
    let config = async_openai::config::OpenAIConfig::new()
        .with_api_base(sim.base_url())
        .with_api_key(KEY);
    async_openai::Client::with_config(config)
}

async fn openai(client: &async_openai::Client<async_openai::config::OpenAIConfig>) -> usize {
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
    };
    let request = CreateChatCompletionRequestArgs::default()
        .model("sonar")
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content(QUESTION)
            .build()
            .unwrap()
            .into()])
        .stream(true)
        .build()
        .unwrap();
    let mut stream = client.chat().create_stream(request).await.unwrap();
    let mut deltas = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if let Some(text) = chunk
            .choices
            .first()
            .and_then(|choice| choice.delta.content.as_ref())
            && !text.is_empty()
        {
            black_box(text);
            deltas += 1;
        }
    }
    deltas
}

#[derive(serde::Deserialize)]
struct BareChunk<'a> {
    #[serde(borrow)]
    choices: Vec<BareChoice<'a>>,
}

#[derive(serde::Deserialize)]
struct BareChoice<'a> {
    #[serde(borrow)]
    delta: Option<BareDelta<'a>>,
}

#[derive(serde::Deserialize)]
struct BareDelta<'a> {
    #[serde(borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
}

/// The floor: one request, sse-parse, borrowed serde of `delta.content`, nothing else.
async fn bare(client: &Client<HttpConnector, Full<Bytes>>, url: &str) -> usize {
    let body =
        r#"{"model":"sonar","messages":[{"role":"user","content":"firehose"}],"stream":true}"#;
    let request = hyper::Request::post(url)
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let mut events = sse_parse::EventStream::new(BodyDataStream::new(response.into_body()));
    let mut deltas = 0;
    while let Some(item) = events.next().await {
        if let sse_parse::Item::Event(event) = item.unwrap() {
            let chunk: BareChunk<'_> = serde_json::from_str(event.data_str().unwrap()).unwrap();
            if let Some(text) = chunk
                .choices
                .first()
                .and_then(|choice| choice.delta.as_ref()?.content.as_ref())
                && !text.is_empty()
            {
                black_box(text);
                deltas += 1;
            }
        }
    }
    deltas
}

/// Thread CPU time spent by `work` (run `runs` times) per delta, in nanoseconds.
fn cpu_per_chunk<'work>(
    runtime: &tokio::runtime::Runtime,
    runs: usize,
    mut work: impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = usize> + 'work>>,
) -> f64 {
    let started = cpu_time::ThreadTime::now();
    let mut deltas = 0;
    for _ in 0..runs {
        deltas += runtime.block_on(work());
    }
    started.elapsed().as_nanos() as f64 / deltas as f64
}

fn bench_throughput(criterion: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let words = if benches::quick() { 600 } else { 1_000 };
    let (sim, _sim_runtime) = simulator(Pace::firehose(words));
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let provider = provider(&sim);
    let openai_client = client_runtime.block_on(async { openai_client(&sim) });
    let hyper_client = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("{}/chat/completions", sim.base_url());

    let deltas = client_runtime.block_on(ours(&provider));
    assert_eq!(
        deltas,
        client_runtime.block_on(openai(&openai_client)),
        "both clients see every delta"
    );
    assert_eq!(deltas, client_runtime.block_on(bare(&hyper_client, &url)));
    let runs = if benches::quick() { 20 } else { 60 };
    let cpu = serde_json::json!({
        "pplx-provider": cpu_per_chunk(&client_runtime, runs, || Box::pin(ours(&provider))),
        "async-openai": cpu_per_chunk(&client_runtime, runs, || Box::pin(openai(&openai_client))),
        "bare-hyper-sse": cpu_per_chunk(&client_runtime, runs, || Box::pin(bare(&hyper_client, &url))),
    });
    benches::write_meta(
        "provider_stream",
        &serde_json::json!({"deltas": deltas, "cpu_ns_per_chunk": cpu}),
    );

    let mut group = criterion.benchmark_group("provider_stream");
    group.sample_size(20);
    group.throughput(Throughput::Elements(deltas as u64));
    group.bench_function("pplx-provider", |bencher| {
        bencher.iter(|| client_runtime.block_on(ours(&provider)))
    });
    group.bench_function("async-openai", |bencher| {
        bencher.iter(|| client_runtime.block_on(openai(&openai_client)))
    });
    group.bench_function("bare-hyper-sse", |bencher| {
        bencher.iter(|| client_runtime.block_on(bare(&hyper_client, &url)))
    });
    group.finish();
}

fn bench_first_delta(criterion: &mut Criterion) {
    let (sim, _sim_runtime) = simulator(Pace::instant());
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let provider = provider(&sim);
    let started_at = sim.started_at();
    let mut group = criterion.benchmark_group("provider_first_delta");
    group.sample_size(50);
    // The time measured is from the simulator handing its first event to the connection to
    // the caller holding the first delta (the request and headers are not counted).
    group.bench_function("sim_first_event_to_caller", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let held = client_runtime.block_on(async {
                    let mut stream = provider.chat_stream(ChatRequest::new("sonar", QUESTION));
                    loop {
                        if let ChatEvent::TextDelta(_) = stream.next().await.unwrap().unwrap() {
                            return Instant::now();
                        }
                    }
                });
                client_runtime.block_on(sim.wait_idle());
                let written = sim
                    .log()
                    .last()
                    .and_then(|entry| entry.first_event_at)
                    .unwrap();
                total += held.duration_since(started_at + written);
            }
            total
        });
    });
    group.finish();
}

/// Memory per open stream: the simulator runs as its own process (target/release/pplx-sim),
/// so only the client's memory is counted.
fn measure_memory() {
    let streams = if benches::quick() { 1_000 } else { 10_000 };
    let binary =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/pplx-sim");
    if !binary.exists() {
        eprintln!(
            "memory: {} is missing (cargo xtask bench provider builds it); skipped",
            binary.display()
        );
        return;
    }
    let scenario = std::env::temp_dir().join("pplx-bench-memory.toml");
    std::fs::write(&scenario, format!("keys = [\"{KEY}\"]\n[pace]\nfirst_byte_ms = 0\nchunk_delay_ms = 600000\nanswer_words = 40\n")).unwrap();
    let mut child = std::process::Command::new(binary)
        .args(["--scenario", scenario.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base_url = line.trim().to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = PerplexityConfig::default();
    config.base_url = base_url;
    config.keys = vec![resilience::ApiKey::new(KEY)];
    // Only this measurement opens thousands of connections at once.
    config.timeouts.headers = Duration::from_secs(120);
    config.breaker.minimum_calls = u32::MAX;
    let provider = PerplexityProvider::new(config).unwrap();
    let (held, before, after) = runtime.block_on(async {
        // Warm up the runtime and the allocator with one stream first.
        let mut warm = provider.chat_stream(ChatRequest::new("sonar", QUESTION));
        warm.next().await.unwrap().unwrap();
        let before = benches::resident_bytes();
        let mut open = Vec::with_capacity(streams);
        let mut pending = futures_util::stream::FuturesUnordered::new();
        for index in 0..streams {
            let provider = provider.clone();
            pending.push(async move {
                let mut stream =
                    provider.chat_stream(ChatRequest::new("sonar", format!("{QUESTION} {index}")));
                loop {
                    match stream.next().await {
                        Some(Ok(ChatEvent::TextDelta(_))) => return stream,
                        Some(Ok(_)) => {}
                        other => panic!("stream {index}: {other:?}"),
                    }
                }
            });
            if pending.len() >= 500 {
                open.push(pending.next().await.unwrap());
            }
        }
        while let Some(stream) = pending.next().await {
            open.push(stream);
        }
        let after = benches::resident_bytes();
        (open, before, after)
    });
    let per_stream = (after.saturating_sub(before)) as f64 / held.len() as f64;
    println!(
        "memory: {} streams open, {:.1} KiB resident per stream",
        held.len(),
        per_stream / 1024.0
    );
    benches::write_meta(
        "provider_memory",
        &serde_json::json!({"streams": held.len(), "bytes_per_stream": per_stream}),
    );
    drop(held);
    let _ = child.kill();
    let _ = child.wait();
}

fn bench_memory(_: &mut Criterion) {
    measure_memory();
}

fn config() -> Criterion {
    benches::criterion_config((300, 1500), (1000, 5000))
}

criterion_group! { name = client; config = config(); targets = bench_throughput, bench_first_delta, bench_memory }
criterion_main!(client);
