//! The breaker and the key pool shared by many tasks on a multi-threaded runtime.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use resilience::breaker::*;
use resilience::keys::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_pool_keeps_exact_counts_under_contention() {
    let pool = KeyPool::new(
        (0..4)
            .map(|index| ApiKey::new(format!("k{index}")))
            .collect(),
        KeyPoolConfig::default(),
    );
    let peak = Arc::new(AtomicU32::new(0));
    // Samples that saw their own lease missing from its key's in-flight count.
    let undercounted = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let pool = pool.clone();
        let peak = peak.clone();
        let undercounted = undercounted.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                let lease = pool.try_acquire().unwrap();
                let in_flight = pool.stats()[lease.index()].in_flight;
                if in_flight == 0 {
                    undercounted.fetch_add(1, Ordering::Relaxed);
                }
                peak.fetch_max(in_flight, Ordering::Relaxed);
                tokio::task::yield_now().await;
                lease.report(KeyOutcome::Success);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = pool.stats();
    assert_eq!(stats.iter().map(|key| key.requests).sum::<u64>(), 64 * 200);
    assert_eq!(stats.iter().map(|key| key.successes).sum::<u64>(), 64 * 200);
    assert!(stats.iter().all(|key| key.in_flight == 0));
    // Least recently used spreads the load: every key served a fair share.
    for key in &stats {
        assert!(
            key.requests > 64 * 200 / 8,
            "key {} served {}",
            key.index,
            key.requests
        );
    }
    // Each sample holds a lease, so its key counts at least that one; no key ever counts more
    // leases than there are tasks to hold them.
    assert_eq!(undercounted.load(Ordering::Relaxed), 0);
    assert!(peak.load(Ordering::Relaxed) <= 64, "{peak:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breaker_trips_once_and_counts_exactly_under_contention() {
    let trips = Arc::new(AtomicU32::new(0));
    let counter = trips.clone();
    let breaker = Arc::new(
        CircuitBreaker::new({
            let mut config = BreakerConfig::default();
            config.window = SlidingWindow::Count(100);
            config.minimum_calls = 100;
            config
        })
        .with_listener(move |change| {
            if matches!(change.to, BreakerState::Open { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }),
    );
    // Successes only: the window fills and stays closed.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let breaker = breaker.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                breaker.try_acquire().unwrap().record(CallOutcome::Success);
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = breaker.stats();
    assert_eq!(
        (stats.state, stats.calls, stats.failure_rate),
        (BreakerState::Closed, 100, 0.0)
    );
    // Failures from every task at once: exactly one trip, later outcomes ignored.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let breaker = breaker.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                if let Ok(permit) = breaker.try_acquire() {
                    tokio::task::yield_now().await;
                    permit.record(CallOutcome::Failure);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    assert_eq!(trips.load(Ordering::Relaxed), 1);
}
