//! The reliability pieces of a client, with no HTTP, no SSE and no vendor in them: backoff
//! with jitter and server hints, a retry budget, a circuit breaker, an API-key pool, and a
//! retry driver that composes them.
//!
//! - [`Backoff`] computes delays (full or decorrelated jitter, a cap, a number of attempts, a
//!   deadline); a server's `retry-after` wins when within [`BackoffPolicy::max_hint`], and
//!   [`parse_retry_after`] reads `retry-after-ms` and `Retry-After` (seconds or HTTP date).
//! - [`CircuitBreaker`] fails fast while a service is down; [`RetryBudget`] caps retries at
//!   a share of recent requests; [`KeyPool`] spreads requests over keys and cools them down.
//! - [`Budget`] caps what a service reports it charged, over a [`SpendPeriod`], counted in
//!   a [`spend::SpendLedger`] that many processes may share.
//! - [`Retrier`] runs an operation with all of them. It learns what an error means through
//!   [`Classify`], which the caller's error type implements, so this crate never sees a
//!   vendor's types.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use resilience::*;
//!
//! #[derive(Debug)]
//! enum MyError { Busy, Resilience(resilience::Error) }
//! impl Classify for MyError {
//!     fn failure_class(&self) -> FailureClass {
//!         match self { MyError::Busy => FailureClass::Transient, _ => FailureClass::Permanent }
//!     }
//! }
//! impl From<resilience::Error> for MyError {
//!     fn from(error: resilience::Error) -> Self { MyError::Resilience(error) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let retrier = Retrier::new(
//!     BackoffPolicy { jitter: Jitter::None, ..BackoffPolicy::default() },
//!     Arc::new(RetryBudget::new(BudgetConfig::default())),
//!     Arc::new(CircuitBreaker::new(BreakerConfig::default())),
//!     KeyPool::new(vec![ApiKey::new("key-a"), ApiKey::new("key-b")], KeyPoolConfig::default()),
//! );
//! let (answer, _lease) = retrier
//!     .run(|attempt| async move {
//!         if attempt.number < 3 { Err(MyError::Busy) } else { Ok(attempt.key_index) }
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(answer, 0, "least recently used: a, b, then a again");
//! assert_eq!(format!("{:?}", retrier.keys().stats()[0].requests), "2");
//! # }
//! ```
//!
//! What it does not do: make requests, read headers (callers pass header values to
//! [`parse_retry_after`]), or decide what an error means (that is [`Classify`]).
#![deny(missing_docs)]

pub mod backoff;
pub mod breaker;
mod budget;
mod error;
pub mod keys;
mod retry;
pub mod shared;
pub mod spend;

use std::time::Duration;

// The root holds what a client composes and configures; the modules hold the rest: what
// the types' methods return (`breaker::Permit`, `keys::KeyLease`), the randomness behind the
// jitter (`backoff::SmallRng`), and what an implementation of shared state or of a spend
// ledger needs (`shared::SharedState`, `spend::SpendLedger` and their companions).
pub use backoff::{Backoff, BackoffPolicy, Delay, Jitter, MAX_RETRY_AFTER, parse_retry_after};
pub use breaker::{
    BreakerConfig, BreakerState, BreakerStats, CallOutcome, CircuitBreaker, SlidingWindow,
};
pub use budget::{BudgetConfig, RetryBudget};
pub use error::Error;
pub use keys::{ApiKey, KeyOutcome, KeyPool, KeyPoolConfig, KeyStats};
pub use retry::{Attempt, Retrier};
pub use spend::{Budget, SpendLimit, SpendPeriod};

/// What a failure means to the reliability layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureClass {
    /// The service had trouble (connect error, timeout, 408/409/5xx, a stream cut before
    /// content): back off and retry; counts against the circuit breaker.
    Transient,
    /// The key is rate limited (429): cool it down and use another.
    RateLimited,
    /// The key is refused (401/403): disable it and use another.
    KeyRejected,
    /// The key is out of credits or quota (402): a long cooldown; use another.
    QuotaExhausted,
    /// Retrying cannot help (a bad request, a cancel, a stream interrupted after its commit
    /// point).
    Permanent,
}

/// How an error tells the reliability layer what it means. Implemented by the caller's error
/// type through its own queries (`is_retryable()`, `retry_after()`, ...).
pub trait Classify {
    /// What kind of failure this is.
    fn failure_class(&self) -> FailureClass;

    /// The wait the server asked for, if it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}
