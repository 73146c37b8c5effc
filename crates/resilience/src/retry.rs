use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument;

use crate::keys::KeyLease;
use crate::{
    ApiKey, Backoff, BackoffPolicy, CallOutcome, CircuitBreaker, Classify, Delay, Error,
    FailureClass, KeyOutcome, KeyPool, RetryBudget,
};

/// One try of an operation run by a [`Retrier`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first try.
    pub number: u32,
    /// The key to use for this try.
    pub key: ApiKey,
    /// The key's index in the pool, for logs.
    pub key_index: usize,
}

/// Runs an async operation with the pieces of this crate around it: a circuit breaker check,
/// a key from the pool, backoff with server hints, the retry budget and a total deadline.
/// Outcomes are classified through [`Classify`]; every attempt is reported through `tracing`.
///
/// The rules:
/// - [`FailureClass::Permanent`] ends at once with that error.
/// - Key failures (rate limited, rejected, out of quota) cool or disable the key and try the
///   next one without delay; when none is free, it waits for the first to free up if that is
///   within the backoff's `max_hint` and the deadline, and otherwise fails with
///   [`Error::NoKeyAvailable`] carrying when.
/// - Transient failures back off (the server's hint wins within `max_hint`; a longer hint
///   ends with the operation's error, which carries it).
/// - Every retry takes from the budget; attempts are capped by the policy; the deadline ends
///   everything with [`Error::DeadlineExceeded`].
/// - Only transient failures count against the breaker; an open breaker fails fast with
///   [`Error::CircuitOpen`].
#[derive(Debug, Clone)]
pub struct Retrier {
    policy: BackoffPolicy,
    budget: Arc<RetryBudget>,
    breaker: Arc<CircuitBreaker>,
    keys: KeyPool,
}

impl Retrier {
    /// A driver over shared pieces (share them between requests of one client).
    pub fn new(
        policy: BackoffPolicy,
        budget: Arc<RetryBudget>,
        breaker: Arc<CircuitBreaker>,
        keys: KeyPool,
    ) -> Self {
        Retrier {
            policy,
            budget,
            breaker,
            keys,
        }
    }

    /// The key pool, for its stats.
    pub fn keys(&self) -> &KeyPool {
        &self.keys
    }

    /// The circuit breaker, for its stats.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The backoff policy.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Runs `operation` until it succeeds, within the policy's total deadline. On success,
    /// returns its value with the key's lease: keep the lease while the result is in use (a
    /// stream), so the key's in-flight count stays true, and report later outcomes on it.
    ///
    /// # Errors
    /// The operation's last error, or an [`Error`] of this crate converted into `E`.
    pub async fn run<T, E, F, Fut>(&self, operation: F) -> Result<(T, KeyLease), E>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error>,
    {
        let deadline = crate::backoff::later(Instant::now(), self.policy.total_deadline);
        self.run_until(deadline, operation).await
    }

    /// Like [`run`](Retrier::run), with an explicit deadline.
    ///
    /// # Errors
    /// As for [`run`](Retrier::run).
    pub async fn run_until<T, E, F, Fut>(
        &self,
        deadline: Instant,
        operation: F,
    ) -> Result<(T, KeyLease), E>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error>,
    {
        let (value, lease, permit) = self.attempts(deadline, operation, false).await?;
        drop(permit); // Already recorded as a success.
        Ok((value, lease))
    }

    /// Like [`run_until`](Retrier::run_until) for an operation whose success is known only
    /// later (a stream: an attempt that started answering can still break). The breaker is
    /// not told of the success: report the call's final outcome on the returned permit
    /// (dropping it reports nothing), as the key's on its lease.
    ///
    /// # Errors
    /// As for [`run`](Retrier::run).
    pub async fn run_until_settled<T, E, F, Fut>(
        &self,
        deadline: Instant,
        operation: F,
    ) -> Result<(T, KeyLease, crate::breaker::OwnedPermit), E>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error>,
    {
        let (value, lease, permit) = self.attempts(deadline, operation, true).await?;
        match permit {
            Some(permit) => Ok((value, lease, permit)),
            // `attempts` returns the permit whenever it defers.
            None => Err(Error::DeadlineExceeded.into()),
        }
    }

    async fn attempts<T, E, F, Fut>(
        &self,
        deadline: Instant,
        mut operation: F,
        defer_success: bool,
    ) -> Result<(T, KeyLease, Option<crate::breaker::OwnedPermit>), E>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error>,
    {
        self.budget.record_request();
        let mut backoff = Backoff::new(self.policy);
        let mut number = 0;
        loop {
            let permit = self.permit()?;
            let lease = match self.keys.acquire().await {
                Ok(lease) => lease,
                Err(unavailable) => {
                    drop(permit);
                    let now = Instant::now();
                    match unavailable.next_free {
                        Some(free) if free <= deadline && free - now <= self.policy.max_hint => {
                            tracing::info!(
                                wait_ms = (free - now).as_millis() as u64,
                                "every key is cooling down; waiting for the first"
                            );
                            tokio::time::sleep_until(free).await;
                            continue;
                        }
                        _ => return Err(Error::NoKeyAvailable(unavailable).into()),
                    }
                }
            };
            number += 1;
            let attempt = Attempt {
                number,
                key: lease.key().clone(),
                key_index: lease.index(),
            };
            let span = tracing::info_span!("attempt", number, key_index = lease.index());
            let started = Instant::now();
            let result =
                tokio::time::timeout_at(deadline, operation(attempt).instrument(span.clone()))
                    .await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let error = match result {
                Ok(Ok(value)) => {
                    lease.report(KeyOutcome::Success);
                    span.in_scope(|| tracing::info!(elapsed_ms, "attempt succeeded"));
                    if defer_success {
                        return Ok((value, lease, Some(permit.into_owned(&self.breaker))));
                    }
                    permit.record(CallOutcome::Success);
                    return Ok((value, lease, None));
                }
                Ok(Err(error)) => error,
                Err(_) => {
                    permit.record(CallOutcome::Failure);
                    span.in_scope(|| tracing::warn!(elapsed_ms, "total deadline exceeded"));
                    return Err(Error::DeadlineExceeded.into());
                }
            };
            let class = error.failure_class();
            let hint = error.retry_after();
            permit.record(failure_outcome(class));
            lease.report(key_outcome(class, hint));
            drop(lease);
            span.in_scope(|| {
                tracing::warn!(
                    elapsed_ms,
                    ?class,
                    hint_ms = hint.map(|hint| hint.as_millis() as u64),
                    "attempt failed"
                );
            });
            // A key failure tries the next key at once (waiting for a free key happens at
            // the next pick).
            let rotates = matches!(
                class,
                FailureClass::RateLimited
                    | FailureClass::KeyRejected
                    | FailureClass::QuotaExhausted
            );
            match self.next_wait(class, hint, rotates, number, &mut backoff, deadline) {
                Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                Some(_) => {}
                None => return Err(error),
            }
        }
    }

    /// Runs `operation` with one given `key` until it succeeds, within `deadline`: for the
    /// reads that must use the key that started something on the server (a background run
    /// read again after a break, a job polled). The same rules as [`run`](Retrier::run)
    /// except that the key never changes, because giving up loses the work the key started
    /// (a restarted answer is a second run, billed): a rate-limited key is told to the pool
    /// and tried again after its hint (within `max_hint`); a server failure whose hint is
    /// past `max_hint` is retried on this retrier's own backoff instead of ending it; a
    /// refused or spent key ends it. The breaker is asked before every try and hears of each
    /// outcome; retries back off, are capped by `max_attempts` and take from the retry
    /// budget.
    ///
    /// # Errors
    /// The operation's last error, or an [`Error`] of this crate converted into `E`.
    pub async fn run_with_key<T, E, F, Fut>(
        &self,
        key: &ApiKey,
        deadline: Instant,
        mut operation: F,
    ) -> Result<T, E>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error>,
    {
        self.budget.record_request();
        let mut backoff = Backoff::new(self.policy);
        let mut number = 0;
        loop {
            let permit = self.permit()?;
            number += 1;
            let attempt = Attempt {
                number,
                key: key.clone(),
                key_index: self.keys.index_of(key).unwrap_or(usize::MAX),
            };
            let span = tracing::info_span!("attempt", number, same_key = true);
            let result =
                tokio::time::timeout_at(deadline, operation(attempt).instrument(span.clone()))
                    .await;
            let error = match result {
                Ok(Ok(value)) => {
                    permit.record(CallOutcome::Success);
                    return Ok(value);
                }
                Ok(Err(error)) => error,
                Err(_) => {
                    permit.record(CallOutcome::Failure);
                    return Err(Error::DeadlineExceeded.into());
                }
            };
            let class = error.failure_class();
            permit.record(failure_outcome(class));
            span.in_scope(|| tracing::warn!(?class, "attempt with the same key failed"));
            let hint = match class {
                // A hint past `max_hint` is not slept on; here it is not a reason to give
                // up either (that would lose what the key started): our own backoff.
                FailureClass::Transient => error
                    .retry_after()
                    .filter(|hint| *hint <= self.policy.max_hint),
                // The key is busy, not gone: the pool hears of it, and the same key is
                // tried again after its hint (a hint past `max_hint` ends it).
                FailureClass::RateLimited => {
                    let hint = error.retry_after();
                    if let Some(index) = self.keys.index_of(key) {
                        self.keys
                            .report(index, KeyOutcome::RateLimited { retry_after: hint });
                    }
                    hint
                }
                // A refused or spent key, a permanent failure: nothing to wait for.
                _ => return Err(error),
            };
            match self.next_wait(class, hint, false, number, &mut backoff, deadline) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(error),
            }
        }
    }

    /// The breaker's permission for one more call, or the error of an open breaker.
    fn permit(&self) -> Result<crate::breaker::Permit<'_>, Error> {
        self.breaker
            .try_acquire()
            .map_err(|rejected| Error::CircuitOpen {
                until: rejected.until,
            })
    }

    /// The wait before the next try after a failure of `class` on try `number`, or `None`
    /// when there is none: a permanent failure, the attempts or the backoff spent, a wait
    /// past `deadline`, or the retry budget empty. `at_once` skips the backoff (a fresh key).
    fn next_wait(
        &self,
        class: FailureClass,
        hint: Option<std::time::Duration>,
        at_once: bool,
        number: u32,
        backoff: &mut Backoff,
        deadline: Instant,
    ) -> Option<std::time::Duration> {
        if class == FailureClass::Permanent || number >= self.policy.max_attempts {
            return None;
        }
        let wait = if at_once {
            std::time::Duration::ZERO
        } else {
            match backoff.next_delay(hint) {
                Delay::Retry(wait) => wait,
                Delay::HintTooLong(_) | Delay::Exhausted => return None,
            }
        };
        if crate::backoff::later(Instant::now(), wait) > deadline {
            return None;
        }
        if !self.budget.try_withdraw() {
            tracing::warn!("retry budget spent");
            return None;
        }
        if !wait.is_zero() {
            tracing::info!(wait_ms = wait.as_millis() as u64, "backing off");
        }
        Some(wait)
    }
}

/// What a failure of `class` is to the breaker: only transient failures count against it.
fn failure_outcome(class: FailureClass) -> CallOutcome {
    if class == FailureClass::Transient {
        CallOutcome::Failure
    } else {
        CallOutcome::Ignored
    }
}

fn key_outcome(class: FailureClass, retry_after: Option<std::time::Duration>) -> KeyOutcome {
    match class {
        FailureClass::RateLimited => KeyOutcome::RateLimited { retry_after },
        FailureClass::KeyRejected => KeyOutcome::Rejected {
            reason: "rejected by the server (401/403)".to_owned(),
        },
        FailureClass::QuotaExhausted => KeyOutcome::QuotaExhausted { retry_after },
        other => KeyOutcome::Failure(other),
    }
}
