//! Against a real redis-server on a loopback port: two states (as two processes would hold)
//! share cooldowns, refusals, breaker openings and one request rate; Redis dying and coming
//! back loses no request.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use cache::testing::RedisServer;
use resilience::shared::{KeyId, SharedState};
use resilience::{
    ApiKey, BreakerConfig, CallOutcome, CircuitBreaker, KeyOutcome, KeyPool, KeyPoolConfig,
    SlidingWindow,
};
use resilience_redis::{RedisConfig, RedisState};
use tokio::sync::Notify;
use tokio::time::Instant;

fn config(server: &RedisServer, namespace: &str) -> RedisConfig {
    let mut config = RedisConfig::new(server.url(), "test secret");
    config.namespace = namespace.to_owned();
    config.poll_interval = Duration::from_millis(50);
    config
}

fn keys() -> Vec<ApiKey> {
    vec![ApiKey::new("key-a"), ApiKey::new("key-b")]
}

/// A signal each time `state` delivers changes from Redis (subscribed after the pools and
/// breakers, so they have applied a change by the time it fires).
fn deliveries(state: &RedisState) -> Arc<Notify> {
    let notify = Arc::new(Notify::new());
    let signal = notify.clone();
    state.subscribe(Box::new(move |_| signal.notify_one()));
    notify
}

/// Waits until `condition` holds, checking at each delivery; fails after `limit`.
async fn within(
    deliveries: &Notify,
    limit: Duration,
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !condition() {
        tokio::time::timeout_at(start + limit, deliveries.notified())
            .await
            .unwrap_or_else(|_| panic!("not within {limit:?}"));
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldowns_refusals_and_openings_reach_the_other_process_within_a_second() {
    let server = RedisServer::start().unwrap();
    let first = RedisState::connect(config(&server, "share")).unwrap();
    let second = RedisState::connect(config(&server, "share")).unwrap();
    let pool_one = KeyPool::new(keys(), KeyPoolConfig::default());
    let pool_two = KeyPool::new(keys(), KeyPoolConfig::default());
    pool_one.share(first.clone(), None);
    pool_two.share(second.clone(), None);
    let to_two = deliveries(&second);
    let to_one = deliveries(&first);

    let lease = pool_one.try_acquire().unwrap();
    assert_eq!(lease.index(), 0);
    lease.report(KeyOutcome::RateLimited {
        retry_after: Some(Duration::from_secs(30)),
    });
    drop(lease);
    let took = within(&to_two, Duration::from_secs(1), || {
        pool_two.stats()[0].cooling_until.is_some()
    })
    .await;
    eprintln!("a cooldown reached the other process in {took:?}");
    assert_eq!(pool_two.try_acquire().unwrap().index(), 1);

    let lease = pool_two.try_acquire().unwrap();
    lease.report(KeyOutcome::Rejected {
        reason: "401".to_owned(),
    });
    drop(lease);
    within(&to_one, Duration::from_secs(1), || {
        pool_one.stats()[1].disabled.is_some()
    })
    .await;

    let breaker_config = {
        let mut config = BreakerConfig::default();
        config.window = SlidingWindow::Count(2);
        config.minimum_calls = 2;
        config
    };
    let breaker_one = Arc::new(CircuitBreaker::new(breaker_config));
    let breaker_two = Arc::new(CircuitBreaker::new(breaker_config));
    breaker_one.share(first.clone(), "sonar/default");
    breaker_two.share(second.clone(), "sonar/default");
    let to_breaker_two = deliveries(&second);
    for _ in 0..2 {
        breaker_one
            .try_acquire()
            .unwrap()
            .record(CallOutcome::Failure);
    }
    within(&to_breaker_two, Duration::from_secs(1), || {
        breaker_two.try_acquire().is_err()
    })
    .await;

    // Nothing in Redis names a key.
    let client = redis_client(&server);
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg("share:state")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(fields.len(), 3, "{fields:?}");
    assert!(
        fields.iter().all(|field| !field.contains("key-")),
        "{fields:?}"
    );
}

fn redis_client(server: &RedisServer) -> redis::Client {
    redis::Client::open(server.url()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rate_for_every_process_and_redis_dying_fails_nothing() {
    let mut server = RedisServer::start().unwrap();
    let states: Vec<Arc<RedisState>> = (0..4)
        .map(|_| RedisState::connect(config(&server, "rate")).unwrap())
        .collect();
    let key = states[0].key_id(&ApiKey::new("key-a"));
    one_rate_for_all(&states, &key).await;

    server.stop();
    // Down: each process spaces its own requests, and nothing fails.
    for state in &states {
        assert_eq!(state.acquire_rate(&key, 1_200).await, Ok(()));
        assert!(state.is_degraded());
    }
    server.restart().unwrap();
    // Back: shared again. A connection is retried at most once a second, on the next
    // operation; each process asks until its own comes back.
    let reconnected = tokio::time::timeout(Duration::from_secs(5), async {
        while states.iter().any(|state| state.is_degraded()) {
            for state in &states {
                let _ = state.acquire_rate(&key, 1_200).await;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(reconnected.is_ok(), "Redis came back 5 s ago");
    // The restarted Redis kept nothing: the rate is shared afresh.
    one_rate_for_all(&states, &states[0].key_id(&ApiKey::new("key-b"))).await;
}

/// One request a minute for every process together: the first process is admitted, and each
/// other one, asking at once, is told to wait about that minute (whatever the clock says
/// between the calls, short of most of a minute).
async fn one_rate_for_all(states: &[Arc<RedisState>], key: &KeyId) {
    assert_eq!(states[0].acquire_rate(key, 1).await, Ok(()));
    for state in &states[1..] {
        let wait = state.acquire_rate(key, 1).await.unwrap_err();
        assert!(wait > Duration::from_secs(45), "told to wait {wait:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_spend_past_one_budget_together() {
    use resilience::{Budget, SpendLimit, SpendPeriod};
    let server = RedisServer::start().unwrap();
    let budgets: Vec<Arc<Budget>> = (0..2)
        .map(|_| {
            let state = RedisState::connect(config(&server, "spend")).unwrap();
            let mut limit = SpendLimit::new(0.05, SpendPeriod::Day);
            limit.hold_usd = 0.003;
            Arc::new(Budget::new(limit, state))
        })
        .collect();
    // Twenty workers, ten behind each "process", each answer costing 0.003 (what a request
    // holds), each asking until refused.
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..20 {
        let budget = budgets[worker % 2].clone();
        workers.spawn(async move {
            let mut answered = 0_u32;
            while let Ok(held) = budget.admit(Duration::from_secs(60)).await {
                tokio::task::yield_now().await;
                held.settle(Some(0.003)).await;
                answered += 1;
            }
            answered
        });
    }
    let answered: u32 = workers.join_all().await.into_iter().sum();
    // 0.05 / 0.003 = 16.7: sixteen answers fit under the limit, and a seventeenth's hold
    // does not fit beside 0.048, whichever process asks.
    assert_eq!(answered, 16);
    for budget in &budgets {
        let spend = budget.spend().await;
        assert!((spend.spent_usd - 0.048).abs() < 1e-9, "{spend}");
        assert_eq!(spend.in_flight, 0);
    }
    // The ledger lives in Redis: a third process sees the same spend.
    let third = Budget::new(
        SpendLimit::new(0.05, SpendPeriod::Day),
        RedisState::connect(config(&server, "spend")).unwrap(),
    );
    assert!(third.admit(Duration::from_secs(60)).await.is_err());
    assert!((third.spend().await.spent_usd - 0.048).abs() < 1e-9);
}
