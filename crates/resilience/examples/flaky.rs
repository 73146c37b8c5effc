//! Wraps a flaky async call with backoff, a retry budget, a circuit breaker and a pool of two
//! keys: the call fails twice (once rate limited, once with a passing error), then works.
//!
//! `cargo run -p pplx-resilience --example flaky`

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resilience::{
    ApiKey, BackoffPolicy, BreakerConfig, BudgetConfig, CircuitBreaker, Classify, FailureClass,
    KeyPool, KeyPoolConfig, Retrier, RetryBudget,
};

/// What the flaky service answers.
#[derive(Debug)]
enum CallError {
    RateLimited,
    Busy,
    Gave(resilience::Error),
}

impl Classify for CallError {
    fn failure_class(&self) -> FailureClass {
        match self {
            CallError::RateLimited => FailureClass::RateLimited,
            CallError::Busy => FailureClass::Transient,
            CallError::Gave(_) => FailureClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        matches!(self, CallError::RateLimited).then(|| Duration::from_secs(30))
    }
}

impl From<resilience::Error> for CallError {
    fn from(error: resilience::Error) -> Self {
        CallError::Gave(error)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let retrier = Retrier::new(
        BackoffPolicy {
            base: Duration::from_millis(50),
            ..BackoffPolicy::default()
        },
        Arc::new(RetryBudget::new(BudgetConfig::default())),
        Arc::new(CircuitBreaker::new(BreakerConfig::default())),
        KeyPool::new(
            vec![ApiKey::new("key-a"), ApiKey::new("key-b")],
            KeyPoolConfig::default(),
        ),
    );
    let calls = AtomicU32::new(0);
    let outcome = retrier
        .run(|attempt| {
            let call = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                println!("attempt {} with key {}", attempt.number, attempt.key_index);
                match call {
                    0 => Err(CallError::RateLimited),
                    1 => Err(CallError::Busy),
                    _ => Ok("the answer"),
                }
            }
        })
        .await;
    match outcome {
        Ok((answer, _lease)) => println!("{answer}, after {} calls", calls.load(Ordering::Relaxed)),
        Err(CallError::Gave(error)) => println!("gave up: {error}"),
        Err(error) => println!("failed: {error:?}"),
    }
    for stats in retrier.keys().stats() {
        println!("{stats:?}");
    }
}
