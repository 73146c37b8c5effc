//! The reliability layers' cost when nothing fails: a circuit breaker check plus a key pick
//! (and their reports), on one thread and on two threads sharing them.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use resilience::{
    ApiKey, BreakerConfig, CallOutcome, CircuitBreaker, KeyOutcome, KeyPool, KeyPoolConfig,
};

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

fn config() -> Criterion {
    benches::criterion_config((200, 800), (1000, 3000))
}

criterion_group! { name = resilience; config = config(); targets = bench }
criterion_main!(resilience);
