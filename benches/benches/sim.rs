//! The simulator's firehose over loopback: events/s and MB/s for one connection and for 64 at
//! once, so that it is known never to be what limits a client benchmark.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pplx_sim::{Pace, SimConfig, Simulator};

const WORDS: usize = 600;

/// Reads one whole firehose stream; returns its bytes.
async fn one_stream(client: &Client<HttpConnector, Full<Bytes>>, url: &str) -> usize {
    let body =
        r#"{"model":"sonar","messages":[{"role":"user","content":"firehose"}],"stream":true}"#;
    let request = hyper::Request::post(url)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let mut body = client.request(request).await.unwrap().into_body();
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        bytes += frame.unwrap().into_data().map_or(0, |data| data.len());
    }
    bytes
}

fn bench(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = SimConfig::default();
    config.pace = Pace::firehose(WORDS);
    // Sonar chat chunks are what this measures: kept, as an OpenAI-compatible endpoint
    // keeps them (the simulator retires them by default, as Perplexity did).
    config.legacy_sonar = true;
    let sim = runtime.block_on(Simulator::start(config)).unwrap();
    let url = format!("{}/chat/completions", sim.base_url());
    let client = Client::builder(TokioExecutor::new()).build_http();
    let stream_bytes = runtime.block_on(one_stream(&client, &url));
    runtime.block_on(sim.wait_idle());
    let events = sim.log()[0].events_sent;
    let meta = serde_json::json!({"stream_bytes": stream_bytes, "stream_events": events});
    benches::write_meta("sim_firehose", &meta);

    let mut group = criterion.benchmark_group("sim_firehose");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(stream_bytes as u64));
    group.bench_function("1_connection", |bencher| {
        bencher
            .to_async(&runtime)
            .iter(|| one_stream(&client, &url));
    });
    group.throughput(Throughput::Bytes(64 * stream_bytes as u64));
    group.bench_function("64_connections", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let (client, url) = (client.clone(), url.clone());
                    tokio::spawn(async move { one_stream(&client, &url).await })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
    });
    group.finish();
}

fn config() -> Criterion {
    benches::criterion_config((300, 1000), (1000, 4000))
}

criterion_group! { name = sim; config = config(); targets = bench }
criterion_main!(sim);
