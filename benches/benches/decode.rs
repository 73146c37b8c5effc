//! Decoding Sonar chunks, three ways, on the simulator's own stream of a long answer (every
//! chunk repeats the text so far and the sources, as the real service does), each through
//! the same decoder work after (think splitting, sources on change, usage kept raw):
//! - `scanner` (what the client does): the targeted scanner (`provider-perplexity`'s
//!   `scan.rs`), which skips the repeated parts with a SIMD search for quotes, with serde for
//!   the chunks it leaves (the first, the last, sources that changed);
//! - `serde-borrowed`: serde_json into borrowed structs that leave out the repeated
//!   `message`, sources kept raw (what the client did before);
//! - `serde-value`: serde_json into an owned `Value`, then the delta (the naive way);
//! - `sonic-lazy`: sonic-rs's lazy access (`get_many`, which skips what it is not asked for
//!   with SIMD and validates it), for what the client reads from a chunk: the delta, the
//!   finish reason, the id, the raw sources and usage; the sources compared with the last
//!   chunk's, as the client does. No decoder work after, so it does less than `scanner`.
//!
//! All must find the same text; the group reports time per stream.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use pplx_sim::{Pace, SimConfig, Simulator};

/// The `data:` of every event of one streamed answer of `words` words.
fn sonar_events(words: usize) -> Vec<Bytes> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = SimConfig::default();
        config.pace = Pace::firehose(words);
        // Sonar chat chunks are what this measures: kept, as an OpenAI-compatible endpoint
        // keeps them (the simulator retires them by default, as Perplexity did).
        config.legacy_sonar = true;
        let sim = Simulator::start(config).await.unwrap();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<Bytes>>();
        let body = r#"{"model":"sonar","messages":[{"role":"user","content":"decode bench"}],"stream":true}"#;
        let request = hyper::Request::post(format!("{}/chat/completions", sim.base_url()))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let mut events = sse_parse::EventStream::new(http_body_util::BodyDataStream::new(response.into_body()));
        let mut out = Vec::new();
        while let Some(item) = events.next().await {
            if let sse_parse::Item::Event(event) = item.unwrap() {
                out.push(event.into_data());
            }
        }
        out
    })
}

fn serde_value(events: &[Bytes]) -> usize {
    let mut text = 0;
    for data in events {
        let value: serde_json::Value = serde_json::from_slice(data).unwrap();
        if let Some(content) = value["choices"][0]["delta"]["content"].as_str() {
            text += content.len();
        }
    }
    text
}

/// What the client reads from a Sonar chunk, by sonic-rs's lazy access.
fn sonic_paths() -> sonic_rs::PointerTree {
    let mut tree = sonic_rs::PointerTree::new();
    tree.add_path(sonic_rs::pointer!["choices", 0, "delta", "content"]);
    tree.add_path(sonic_rs::pointer!["choices", 0, "finish_reason"]);
    tree.add_path(sonic_rs::pointer!["id"]);
    tree.add_path(sonic_rs::pointer!["citations"]);
    tree.add_path(sonic_rs::pointer!["search_results"]);
    tree.add_path(sonic_rs::pointer!["usage"]);
    tree
}

fn sonic_lazy(events: &[Bytes], paths: &sonic_rs::PointerTree) -> usize {
    use sonic_rs::JsonValueTrait;
    let mut text = 0;
    let mut sources: (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    for data in events {
        let found = sonic_rs::get_many(data.as_ref(), paths).unwrap();
        if let Some(content) = found[0].as_ref().and_then(|value| value.as_str()) {
            text += content.len();
        }
        black_box((&found[1], &found[2], &found[5]));
        // Sources on change: the raw text compared with the last chunk's.
        for (index, kept) in [(3, &mut sources.0), (4, &mut sources.1)] {
            if let Some(raw) = found[index]
                .as_ref()
                .map(|value| value.as_raw_str().as_bytes())
                && raw != kept.as_slice()
            {
                kept.clear();
                kept.extend_from_slice(raw);
            }
        }
    }
    text
}

fn bench(criterion: &mut Criterion) {
    let words = if benches::quick() { 2_000 } else { 5_000 };
    let events = sonar_events(words);
    let slices: Vec<&[u8]> = events.iter().map(|data| data.as_ref()).collect();
    let expected = provider_perplexity::bench::decode_sonar(&slices, false);
    assert!(expected > 0);
    assert_eq!(
        serde_value(&events),
        expected,
        "serde-value finds the same text"
    );
    assert_eq!(
        provider_perplexity::bench::decode_sonar(&slices, true),
        expected,
        "the scanner finds the same text"
    );
    let paths = sonic_paths();
    assert_eq!(
        sonic_lazy(&events, &paths),
        expected,
        "sonic-rs finds the same text"
    );
    let bytes: usize = events.iter().map(Bytes::len).sum();
    benches::write_meta(
        "decode_sonar",
        &serde_json::json!({"chunks": events.len(), "bytes": bytes}),
    );
    let mut group = criterion.benchmark_group("decode_sonar");
    group.sample_size(20);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("serde-borrowed", |bencher| {
        bencher.iter(|| provider_perplexity::bench::decode_sonar(black_box(&slices), false))
    });
    group.bench_function("serde-value", |bencher| {
        bencher.iter(|| serde_value(black_box(&events)))
    });
    group.bench_function("scanner", |bencher| {
        bencher.iter(|| provider_perplexity::bench::decode_sonar(black_box(&slices), true))
    });
    group.bench_function("sonic-lazy", |bencher| {
        bencher.iter(|| sonic_lazy(black_box(&events), &paths))
    });
    group.finish();
}

fn config() -> Criterion {
    benches::criterion_config((300, 1500), (1000, 4000))
}

criterion_group! { name = decode; config = config(); targets = bench }
criterion_main!(decode);
