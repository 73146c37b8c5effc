//! Two workers (here two states in one process; in production, two processes or machines)
//! share one Redis: a 429 on key a in the first makes the second pick key b, and both
//! together keep to 120 requests a minute per key.
//!
//! `cargo run -p pplx-resilience-redis --example share -- redis://127.0.0.1:6379/`

use std::sync::Arc;
use std::time::Duration;

use resilience::shared::SharedState;

use resilience::{ApiKey, KeyOutcome, KeyPool, KeyPoolConfig};
use resilience_redis::{RedisConfig, RedisState};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".to_owned());
    // Every worker needs the same secret: it names the keys in Redis.
    let secret = "a long random secret shared by the workers";
    let first = RedisState::connect(RedisConfig::new(url.as_str(), secret))?;
    let second = RedisState::connect(RedisConfig::new(url.as_str(), secret))?;
    first.synced().await;
    second.synced().await;
    if first.is_degraded() {
        println!("no Redis at {url}: each worker goes on with its own state");
    }
    let keys = || vec![ApiKey::new("key-a"), ApiKey::new("key-b")];
    let worker_one = KeyPool::new(keys(), KeyPoolConfig::default());
    let worker_two = KeyPool::new(keys(), KeyPoolConfig::default());
    worker_one.share(first.clone(), Some(120));
    worker_two.share(second.clone(), Some(120));

    // Tell us when the second worker hears of a change.
    let heard = Arc::new(tokio::sync::Notify::new());
    let signal = heard.clone();
    second.subscribe(Box::new(move |_| signal.notify_one()));

    let lease = worker_one
        .acquire()
        .await
        .map_err(|unavailable| format!("no key: {unavailable:?}"))?;
    println!("worker one asks with key {}, and gets a 429", lease.index());
    lease.report(KeyOutcome::RateLimited {
        retry_after: Some(Duration::from_secs(30)),
    });
    drop(lease);
    if tokio::time::timeout(Duration::from_secs(2), heard.notified())
        .await
        .is_ok()
    {
        let lease = worker_two
            .acquire()
            .await
            .map_err(|unavailable| format!("no key: {unavailable:?}"))?;
        println!(
            "worker two heard of it and asks with key {} (key 0 cools for 30 s)",
            lease.index()
        );
    } else {
        println!("worker two heard nothing (is Redis up?)");
    }
    Ok(())
}
