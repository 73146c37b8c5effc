//! Two pools and two breakers tied to one shared state behave like two processes sharing a
//! backend: what one learns, the other applies; a shared rate spaces both.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use resilience::shared::{
    ChangeListener, KeyId, LocalState, RateFuture, SharedChange, SharedState,
};
use resilience::{
    ApiKey, BreakerConfig, BreakerState, CallOutcome, CircuitBreaker, KeyOutcome, KeyPool,
    KeyPoolConfig, SlidingWindow,
};
use tokio::time::Instant;

/// A backend in memory that delivers every change to every subscriber at once.
#[derive(Default)]
struct Bus {
    local: LocalState,
    listeners: Mutex<Vec<ChangeListener>>,
    published: Mutex<Vec<SharedChange>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Bus")
    }
}

impl SharedState for Bus {
    fn key_id(&self, key: &ApiKey) -> KeyId {
        self.local.key_id(key)
    }
    fn publish(&self, change: SharedChange) {
        self.published.lock().push(change.clone());
        for listener in self.listeners.lock().iter() {
            listener(&change);
        }
    }
    fn subscribe(&self, listener: ChangeListener) {
        self.listeners.lock().push(listener);
    }
    fn acquire_rate<'a>(&'a self, key: &'a KeyId, per_minute: u32) -> RateFuture<'a> {
        self.local.acquire_rate(key, per_minute)
    }
}

fn keys() -> Vec<ApiKey> {
    vec![ApiKey::new("key-a"), ApiKey::new("key-b")]
}

#[tokio::test(start_paused = true)]
async fn a_cooldown_or_a_refused_key_in_one_pool_is_skipped_by_the_other() {
    let bus: Arc<Bus> = Arc::default();
    let first = KeyPool::new(keys(), KeyPoolConfig::default());
    let second = KeyPool::new(keys(), KeyPoolConfig::default());
    first.share(bus.clone(), None);
    second.share(bus.clone(), None);

    let lease = first.try_acquire().unwrap();
    assert_eq!(lease.index(), 0);
    lease.report(KeyOutcome::RateLimited {
        retry_after: Some(Duration::from_secs(30)),
    });
    drop(lease);
    for _ in 0..4 {
        assert_eq!(
            second.try_acquire().unwrap().index(),
            1,
            "key a cools in both"
        );
    }
    let cooling = second.stats()[0].cooling_until.unwrap();
    assert!(cooling > Instant::now() + Duration::from_secs(29));
    // Nothing about the key itself went over the bus.
    let published = format!("{:?}", bus.published.lock());
    assert!(!published.contains("key-a"), "{published}");

    let lease = second.try_acquire().unwrap();
    assert_eq!(lease.index(), 1);
    lease.report(KeyOutcome::Rejected {
        reason: "401".to_owned(),
    });
    drop(lease);
    let stats = first.stats();
    assert!(
        stats[1]
            .disabled
            .as_deref()
            .unwrap()
            .contains("another process")
    );
    let unavailable = first.try_acquire().unwrap_err();
    assert_eq!(unavailable.disabled, 1);
    assert!(
        unavailable.next_free.is_some(),
        "key a frees up; key b never"
    );
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_opens_in_one_process_opens_the_others() {
    let bus: Arc<Bus> = Arc::default();
    let config = {
        let mut config = BreakerConfig::default();
        config.window = SlidingWindow::Count(4);
        config.minimum_calls = 4;
        config
    };
    let first = Arc::new(CircuitBreaker::new(config));
    let second = Arc::new(CircuitBreaker::new(config));
    let other_endpoint = Arc::new(CircuitBreaker::new(config));
    first.share(bus.clone(), "sonar/default");
    second.share(bus.clone(), "sonar/default");
    other_endpoint.share(bus.clone(), "agent/default");
    for _ in 0..4 {
        first.try_acquire().unwrap().record(CallOutcome::Failure);
    }
    let BreakerState::Open { until } = first.state() else {
        panic!("four failures open it");
    };
    let rejected = second.try_acquire().unwrap_err();
    let drift = if rejected.until > until {
        rejected.until - until
    } else {
        until - rejected.until
    };
    assert!(drift < Duration::from_millis(50), "{drift:?}");
    assert!(
        other_endpoint.try_acquire().is_ok(),
        "another endpoint stays closed"
    );
    // Once open-until passes, the second breaker probes on its own.
    tokio::time::advance(until - Instant::now() + Duration::from_millis(1)).await;
    assert!(second.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_shared_rate_spaces_the_requests_of_every_pool() {
    let bus: Arc<Bus> = Arc::default();
    let pools: Vec<KeyPool> = (0..4)
        .map(|_| {
            let pool = KeyPool::new(vec![ApiKey::new("only")], KeyPoolConfig::default());
            pool.share(bus.clone(), Some(120));
            pool
        })
        .collect();
    let start = Instant::now();
    let mut admitted = Vec::new();
    // Every pool asks every 10 ms for 10 s: 4,000 asks at a limit of 2 a second.
    while Instant::now() < start + Duration::from_secs(10) {
        for pool in &pools {
            match pool.acquire().await {
                Ok(_lease) => admitted.push(Instant::now()),
                Err(unavailable) => {
                    let free = unavailable.next_free.unwrap();
                    assert!(free <= Instant::now() + Duration::from_millis(500));
                }
            }
        }
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    assert!((20..=21).contains(&admitted.len()), "{}", admitted.len());
    for pair in admitted.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(500));
    }
}
