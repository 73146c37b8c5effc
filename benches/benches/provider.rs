//! The streaming client end to end, against the simulator's firehose over loopback:
//! - chunks/s and client CPU per chunk for one stream: `provider-perplexity`, `async-openai`
//!   0.43 and the same provider with its reliability layers off (same connector, decoding and
//!   stop rule: like for like), in the same group; every client reads its stream to the end
//!   (ours past `Done`, until the connection is back in the pool); CPU is measured with the
//!   clients taking turns, median per client;
//! - the time the client adds before the first delta, from the `chat_stream` call (request,
//!   headers, retrier and key pool included) minus the simulator's own time, p50 and p99;
//! - resident memory per stream with many streams open at once;
//! - the time from a cut to the next delivered word, when an Agent API stream cut mid-answer
//!   is read again after its last event (background runs), p50 and p99, beside an uncut
//!   stream's widest gap between two words on the same loopback.
//!
//! The simulator runs on its own runtime thread; each client runs on a current-thread runtime
//! on the bench thread, so that thread's CPU time is the client's CPU time.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{ChatEvent, ChatProvider, ChatRequest};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use pplx_sim::{Fault, Pace, SimConfig, Simulator, Target};
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
    // async-openai's rows speak chat completions, which the simulator retires by default
    // (as Perplexity did on 2026-09-27): keep them, as an OpenAI-compatible endpoint would.
    config.legacy_sonar = true;
    let sim = runtime.block_on(Simulator::start(config)).unwrap();
    (Arc::new(sim), runtime)
}

/// Our provider on chat completions, as async-openai's rows are: like for like.
fn provider(sim: &Simulator) -> PerplexityProvider {
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![resilience::ApiKey::new(KEY)];
    config.api = Some(provider_perplexity::Api::Sonar);
    PerplexityProvider::new(config).unwrap()
}

/// Reads one of our streams to its end: past `Done`, it ends once the connection is back in
/// the pool, so that work is counted here and not in whichever run comes next.
async fn read_ours(mut stream: chat_core::ChatStream) -> usize {
    let mut deltas = 0;
    while let Some(event) = stream.next().await {
        if let ChatEvent::TextDelta(text) = event.unwrap() {
            black_box(text);
            deltas += 1;
        }
    }
    deltas
}

async fn ours(provider: &PerplexityProvider) -> usize {
    read_ours(provider.chat_stream(ChatRequest::new("sonar", QUESTION))).await
}

fn openai_client(sim: &Simulator) -> benches::openai::Client {
    benches::openai::client(&sim.base_url(), KEY)
}

async fn openai(client: &benches::openai::Client) -> usize {
    let request = benches::openai::request(QUESTION, true);
    let mut stream = client.chat().create_stream(request).await.unwrap();
    let mut deltas = 0;
    while let Some(chunk) = stream.next().await {
        if let Some(text) = benches::openai::delta(&chunk.unwrap()) {
            black_box(text);
            deltas += 1;
        }
    }
    deltas
}

/// The same client with its reliability layers off: same connector, same decoding, same
/// stop rule (to the end of the stream, the connection back in the pool).
async fn ours_without_layers(provider: &PerplexityProvider) -> usize {
    read_ours(provider.stream_without_layers(ChatRequest::new("sonar", QUESTION))).await
}

type Work<'work> =
    Box<dyn FnMut() -> std::pin::Pin<Box<dyn Future<Output = usize> + 'work>> + 'work>;

/// Thread CPU time per delta of each client, in nanoseconds: the clients take turns, one
/// stream each per round in a rotating order, and each figure is the median over `rounds`
/// rounds, so that what else the machine does falls on all of them alike.
fn cpu_per_chunk(
    runtime: &tokio::runtime::Runtime,
    rounds: usize,
    work: &mut [Work<'_>],
) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); work.len()];
    for round in 0..rounds {
        // A different client goes first each round: none always follows the same other.
        for turn in 0..work.len() {
            let client = (round + turn) % work.len();
            let started = cpu_time::ThreadTime::now();
            let deltas = runtime.block_on(work[client]());
            samples[client].push(started.elapsed().as_nanos() as f64 / deltas.max(1) as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut samples| {
            samples.sort_by(f64::total_cmp);
            samples[samples.len() / 2]
        })
        .collect()
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

    let deltas = client_runtime.block_on(ours(&provider));
    assert_eq!(
        deltas,
        client_runtime.block_on(openai(&openai_client)),
        "both clients see every delta"
    );
    assert_eq!(
        deltas,
        client_runtime.block_on(ours_without_layers(&provider))
    );
    let rounds = if benches::quick() { 60 } else { 300 };
    let cpu = cpu_per_chunk(
        &client_runtime,
        rounds,
        &mut [
            Box::new(|| Box::pin(ours(&provider))),
            Box::new(|| Box::pin(openai(&openai_client))),
            Box::new(|| Box::pin(ours_without_layers(&provider))),
        ],
    );
    let cpu = serde_json::json!({
        "pplx-provider": cpu[0],
        "async-openai": cpu[1],
        "pplx-provider-no-layers": cpu[2],
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
    group.bench_function("pplx-provider-no-layers", |bencher| {
        bencher.iter(|| client_runtime.block_on(ours_without_layers(&provider)))
    });
    group.finish();
}

/// From the caller's `chat_stream` call to the caller holding the first delta, minus the
/// simulator's own time from taking the request to writing its first event (its log): the
/// time the client adds, request, headers, retrier and key pool included.
async fn client_added_first_delta(provider: &PerplexityProvider, sim: &Simulator) -> Duration {
    let called = Instant::now();
    let mut stream = provider.chat_stream(ChatRequest::new("sonar", QUESTION));
    let held = loop {
        if let ChatEvent::TextDelta(_) = stream.next().await.unwrap().unwrap() {
            break called.elapsed();
        }
    };
    while stream.next().await.is_some() {}
    sim.wait_idle().await;
    let entry = sim.log().last().cloned().unwrap();
    let own = entry.first_event_at.unwrap().saturating_sub(entry.at);
    held.saturating_sub(own)
}

fn bench_first_delta(criterion: &mut Criterion) {
    let (sim, _sim_runtime) = simulator(Pace::instant());
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let provider = provider(&sim);
    client_runtime.block_on(client_added_first_delta(&provider, &sim));
    let samples = if benches::quick() { 200 } else { 1_000 };
    let mut added: Vec<Duration> = (0..samples)
        .map(|_| client_runtime.block_on(client_added_first_delta(&provider, &sim)))
        .collect();
    added.sort();
    let at = |share: f64| added[((added.len() - 1) as f64 * share) as usize].as_secs_f64() * 1e6;
    benches::write_meta(
        "provider_first_delta",
        &serde_json::json!({"samples": samples, "p50_us": at(0.5), "p99_us": at(0.99)}),
    );
    let mut group = criterion.benchmark_group("provider_first_delta");
    group.sample_size(50);
    group.bench_function("call_to_first_delta_client_added", |bencher| {
        bencher.iter_custom(|iterations| {
            (0..iterations)
                .map(|_| client_runtime.block_on(client_added_first_delta(&provider, &sim)))
                .sum()
        });
    });
    group.finish();
}

/// The widest gap between two delivered words of one Agent API stream, cut mid-answer (after
/// its twelfth event: past the first words) when `cut`: with the cut, the gap is the time
/// from the cut to the first word read again from the run.
async fn widest_word_gap(provider: &PerplexityProvider, sim: &Simulator, cut: bool) -> Duration {
    if cut {
        sim.script(Target::Any, Fault::drop_after_events(12), 1);
    }
    let mut stream = provider.chat_stream(ChatRequest::new("fast", QUESTION));
    let mut last: Option<Instant> = None;
    let mut widest = Duration::ZERO;
    while let Some(event) = stream.next().await {
        if let ChatEvent::TextDelta(text) = event.unwrap() {
            black_box(text);
            let now = Instant::now();
            if let Some(last) = last {
                widest = widest.max(now - last);
            }
            last = Some(now);
        }
    }
    widest
}

fn bench_resume(criterion: &mut Criterion) {
    let (sim, _sim_runtime) = simulator(Pace::instant());
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = vec![resilience::ApiKey::new(KEY)];
    config.api = Some(provider_perplexity::Api::Agent);
    config.breaker.minimum_calls = u32::MAX;
    let provider = PerplexityProvider::new(config).unwrap();
    client_runtime.block_on(widest_word_gap(&provider, &sim, true));
    let samples = if benches::quick() { 100 } else { 500 };
    let percentiles = |cut: bool| {
        let mut gaps: Vec<Duration> = (0..samples)
            .map(|_| client_runtime.block_on(widest_word_gap(&provider, &sim, cut)))
            .collect();
        gaps.sort();
        let at = |share: f64| gaps[((gaps.len() - 1) as f64 * share) as usize].as_secs_f64() * 1e6;
        (at(0.5), at(0.99))
    };
    let (cut_p50, cut_p99) = percentiles(true);
    let (uncut_p50, uncut_p99) = percentiles(false);
    benches::write_meta(
        "provider_resume",
        &serde_json::json!({"samples": samples, "cut_p50_us": cut_p50, "cut_p99_us": cut_p99,
            "uncut_p50_us": uncut_p50, "uncut_p99_us": uncut_p99}),
    );
    let mut group = criterion.benchmark_group("provider_resume");
    group.sample_size(30);
    for (name, cut) in [("stream_cut_once", true), ("stream_uncut", false)] {
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| {
                        let started = Instant::now();
                        client_runtime.block_on(widest_word_gap(&provider, &sim, cut));
                        started.elapsed()
                    })
                    .sum()
            });
        });
    }
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

criterion_group! { name = client; config = config(); targets = bench_throughput, bench_first_delta, bench_resume, bench_memory }
criterion_main!(client);
