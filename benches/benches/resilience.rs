//! The reliability layers' cost when nothing fails: a circuit breaker check plus a key pick
//! (and their reports), on one thread and on two threads sharing them.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use resilience::shared::{LocalState, SharedChange, SharedState};
use resilience::{
    ApiKey, BreakerConfig, CallOutcome, CircuitBreaker, KeyOutcome, KeyPool, KeyPoolConfig,
};
use resilience_redis::{RedisConfig, RedisState};

fn success_path(breaker: &CircuitBreaker, pool: &KeyPool) {
    let permit = breaker.try_acquire().unwrap();
    let lease = pool.try_acquire().unwrap();
    black_box(lease.key());
    lease.report(KeyOutcome::Success);
    drop(lease);
    permit.record(CallOutcome::Success);
}

fn pieces() -> (Arc<CircuitBreaker>, KeyPool) {
    let keys = (0..4)
        .map(|index| ApiKey::new(format!("key-{index}")))
        .collect();
    (
        Arc::new(CircuitBreaker::new(BreakerConfig::default())),
        KeyPool::new(keys, KeyPoolConfig::default()),
    )
}

fn bench(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("resilience_success_path");
    group.bench_function("breaker_check", |bencher| {
        let (breaker, _) = pieces();
        bencher.iter(|| breaker.try_acquire().unwrap().record(CallOutcome::Success));
    });
    group.bench_function("key_pick", |bencher| {
        let (_, pool) = pieces();
        bencher.iter(|| {
            let lease = pool.try_acquire().unwrap();
            lease.report(KeyOutcome::Success);
        });
    });
    group.bench_function("breaker_and_key_1_thread", |bencher| {
        let (breaker, pool) = pieces();
        bencher.iter(|| success_path(&breaker, &pool));
    });
    group.bench_function("breaker_and_key_2_threads", |bencher| {
        let (breaker, pool) = pieces();
        // Wall time for `iterations` operations on each of two threads at once: the latency
        // of one operation under contention.
        bencher.iter_custom(|iterations| {
            let barrier = Arc::new(Barrier::new(2));
            let other = {
                let (breaker, pool, barrier) = (breaker.clone(), pool.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..iterations {
                        success_path(&breaker, &pool);
                    }
                })
            };
            barrier.wait();
            let started = Instant::now();
            for _ in 0..iterations {
                success_path(&breaker, &pool);
            }
            other.join().unwrap();
            started.elapsed()
        });
    });
    group.finish();
}

/// What sharing state costs a request: a key pick with and without a Redis-backed shared
/// state (cooldowns only), publishing a change, and a request-rate slot in this process vs
/// in Redis on loopback (one round trip: the added latency of `key_rpm` per request).
fn shared(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Ok(redis) = cache::testing::RedisServer::start() else {
        eprintln!("resilience_shared: no redis-server; skipped");
        return;
    };
    let state = runtime.block_on(async {
        let state = RedisState::connect(RedisConfig::new(redis.url(), "bench secret")).unwrap();
        state.synced().await;
        state
    });
    let mut group = criterion.benchmark_group("resilience_shared");
    group.bench_function("key_pick_alone", |bencher| {
        let (_, pool) = pieces();
        bencher.to_async(&runtime).iter(|| async {
            let lease = pool.acquire().await.unwrap();
            lease.report(KeyOutcome::Success);
        });
    });
    group.bench_function("key_pick_shared_redis", |bencher| {
        let (_, pool) = pieces();
        pool.share(state.clone(), None);
        bencher.to_async(&runtime).iter(|| async {
            let lease = pool.acquire().await.unwrap();
            lease.report(KeyOutcome::Success);
        });
    });
    group.bench_function("publish_redis", |bencher| {
        let key = state.key_id(&ApiKey::new("bench-key"));
        bencher.iter(|| {
            state.publish(SharedChange::KeyCooling {
                key: key.clone(),
                until: std::time::SystemTime::now(),
                reason: "bench".to_owned(),
            });
        });
    });
    let local = LocalState::new();
    let key = local.key_id(&ApiKey::new("bench-key"));
    group.bench_function("rate_slot_local", |bencher| {
        bencher
            .to_async(&runtime)
            .iter(|| async { black_box(local.acquire_rate(&key, u32::MAX).await) });
    });
    let key = state.key_id(&ApiKey::new("bench-key"));
    group.bench_function("rate_slot_redis", |bencher| {
        bencher
            .to_async(&runtime)
            .iter(|| async { black_box(state.acquire_rate(&key, u32::MAX).await) });
    });
    group.finish();
    drop(redis);
}

fn config() -> Criterion {
    benches::criterion_config((200, 800), (1000, 3000))
}

criterion_group! { name = resilience; config = config(); targets = bench, shared }
criterion_main!(resilience);
