//! The cache: hit latency in memory and through Redis on loopback, and the replay throughput of
//! a streaming hit.
#![allow(clippy::unwrap_used)]

use cache::{Backend, CacheConfig, CachedProvider};
use chat_core::{
    ChatEvent, ChatProvider, ChatRequest, ChatResponse, ChatStream, Error, Sources, Usage,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;

const DELTAS: usize = 500;

/// An answer of `DELTAS` text deltas with sources and usage, served without any IO.
struct Fixed;

fn events() -> Vec<ChatEvent> {
    let citations = (0..5)
        .map(|index| format!("https://example{index}.org/page"))
        .collect();
    let mut events = vec![ChatEvent::Sources(Sources::new(citations, Vec::new()))];
    let mut text = String::new();
    for index in 0..DELTAS {
        let delta = format!("token {index} ");
        text.push_str(&delta);
        events.push(ChatEvent::TextDelta(delta));
    }
    let mut usage = Usage::default();
    usage.prompt_tokens = 10;
    usage.completion_tokens = DELTAS as u64;
    usage.total_tokens = 10 + DELTAS as u64;
    events.push(ChatEvent::Usage(Box::new(usage)));
    let mut response = ChatResponse::default();
    response.text = text;
    events.push(ChatEvent::Done(Box::new(response)));
    events
}

#[async_trait::async_trait]
impl ChatProvider for Fixed {
    async fn chat(&self, _: ChatRequest) -> Result<ChatResponse, Error> {
        match events().pop() {
            Some(ChatEvent::Done(response)) => Ok(*response),
            _ => unreachable!(),
        }
    }

    fn chat_stream(&self, _: ChatRequest) -> ChatStream {
        Box::pin(futures_util::stream::iter(events().into_iter().map(Ok)))
    }
}

async fn replay(provider: &CachedProvider<Fixed>) -> usize {
    let mut stream = provider.chat_stream(ChatRequest::new("sonar", "cached"));
    let mut count = 0;
    while let Some(event) = stream.next().await {
        std::hint::black_box(event.unwrap());
        count += 1;
    }
    count
}

fn bench(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let memory = CachedProvider::new(Fixed, CacheConfig::default()).unwrap();
    runtime.block_on(replay(&memory));
    let mut group = criterion.benchmark_group("cache_hit");
    group.bench_function("memory_chat", |bencher| {
        bencher.iter(|| {
            runtime
                .block_on(memory.chat(ChatRequest::new("sonar", "cached")))
                .unwrap()
        });
    });
    let redis = cache::testing::RedisServer::start().ok();
    if let Some(redis) = &redis {
        let config = CacheConfig {
            backend: Backend::Redis {
                url: redis.url().to_owned(),
            },
            ..CacheConfig::default()
        };
        let shared = runtime.block_on(async { CachedProvider::new(Fixed, config).unwrap() });
        runtime.block_on(replay(&shared));
        assert!(
            runtime
                .block_on(shared.chat(ChatRequest::new("sonar", "cached")))
                .unwrap()
                .cached
        );
        group.bench_function("redis_chat", |bencher| {
            bencher.iter(|| {
                runtime
                    .block_on(shared.chat(ChatRequest::new("sonar", "cached")))
                    .unwrap()
            });
        });
    } else {
        eprintln!("cache bench: redis-server not found; the Redis figure is skipped");
    }
    group.finish();

    let mut group = criterion.benchmark_group("cache_replay");
    let count = runtime.block_on(replay(&memory));
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("memory_stream_hit", |bencher| {
        bencher.iter(|| runtime.block_on(replay(&memory)))
    });
    group.finish();
}

fn config() -> Criterion {
    benches::criterion_config((300, 1000), (1000, 3000))
}

criterion_group! { name = caching; config = config(); targets = bench }
criterion_main!(caching);
