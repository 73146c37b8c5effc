//! The retry driver under paused time: exact attempts, keys, waits and errors.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilience::*;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
enum TestError {
    Transient(Option<Duration>),
    RateLimited(Option<Duration>),
    Rejected,
    Permanent,
    Resilience(resilience::Error),
}

impl Classify for TestError {
    fn failure_class(&self) -> FailureClass {
        match self {
            TestError::Transient(_) => FailureClass::Transient,
            TestError::RateLimited(_) => FailureClass::RateLimited,
            TestError::Rejected => FailureClass::KeyRejected,
            TestError::Permanent | TestError::Resilience(_) => FailureClass::Permanent,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            TestError::Transient(hint) | TestError::RateLimited(hint) => *hint,
            _ => None,
        }
    }
}

impl From<resilience::Error> for TestError {
    fn from(error: resilience::Error) -> Self {
        TestError::Resilience(error)
    }
}

fn retrier(keys: usize, policy: BackoffPolicy) -> Retrier {
    Retrier::new(
        policy,
        Arc::new(RetryBudget::new(BudgetConfig::default())),
        Arc::new(CircuitBreaker::new(BreakerConfig::default())),
        KeyPool::new(
            (0..keys)
                .map(|index| ApiKey::new(format!("secret-{index}")))
                .collect(),
            KeyPoolConfig::default(),
        ),
    )
}

fn no_jitter() -> BackoffPolicy {
    BackoffPolicy {
        jitter: Jitter::None,
        ..BackoffPolicy::default()
    }
}

/// Runs `script` (one result per attempt, in order) and returns the result, the keys used,
/// and the time it took.
async fn run_script(
    retrier: &Retrier,
    script: Vec<Result<&'static str, TestError>>,
) -> (Result<&'static str, TestError>, Vec<usize>, Duration) {
    let script = Arc::new(Mutex::new(script.into_iter()));
    let keys_used = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let result = retrier
        .run(|attempt| {
            let script = script.clone();
            let keys_used = keys_used.clone();
            async move {
                keys_used.lock().unwrap().push(attempt.key_index);
                script
                    .lock()
                    .unwrap()
                    .next()
                    .expect("more attempts than scripted")
            }
        })
        .await
        .map(|(value, _lease)| value);
    let keys_used = keys_used.lock().unwrap().clone();
    (result, keys_used, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn transient_failures_back_off_then_succeed() {
    let retrier = retrier(1, no_jitter());
    let script = vec![
        Err(TestError::Transient(None)),
        Err(TestError::Transient(None)),
        Ok("answer"),
    ];
    let (result, keys, elapsed) = run_script(&retrier, script).await;
    assert_eq!(result, Ok("answer"));
    assert_eq!(keys, [0, 0, 0]);
    assert_eq!(elapsed, Duration::from_millis(500 + 1_000));
}

#[tokio::test(start_paused = true)]
async fn a_server_hint_within_the_maximum_is_waited_exactly() {
    let retrier = retrier(1, no_jitter());
    let script = vec![
        Err(TestError::Transient(Some(Duration::from_secs(2)))),
        Ok("answer"),
    ];
    let (result, _, elapsed) = run_script(&retrier, script).await;
    assert_eq!(result, Ok("answer"));
    assert_eq!(elapsed, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_longer_hint_is_not_slept_on() {
    let retrier = retrier(1, no_jitter());
    let hint = Some(Duration::from_secs(41));
    let (result, _, elapsed) = run_script(&retrier, vec![Err(TestError::Transient(hint))]).await;
    assert_eq!(result, Err(TestError::Transient(hint)));
    assert_eq!(elapsed, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_429_rotates_to_the_next_key_at_once() {
    let retrier = retrier(3, no_jitter());
    let script = vec![
        Err(TestError::RateLimited(Some(Duration::from_secs(1)))),
        Ok("answer"),
    ];
    let (result, keys, elapsed) = run_script(&retrier, script).await;
    assert_eq!(result, Ok("answer"));
    assert_eq!(keys, [0, 1]);
    assert_eq!(elapsed, Duration::ZERO);
    let stats = retrier.keys().stats();
    assert_eq!(
        (stats[0].rate_limits, stats[0].last_error),
        (1, Some(FailureClass::RateLimited))
    );
    assert!(stats[0].cooling_until.is_some());
    assert_eq!((stats[1].successes, stats[1].in_flight), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn with_every_key_cooling_it_waits_for_the_first_within_the_maximum() {
    let retrier = retrier(2, no_jitter());
    let script = vec![
        Err(TestError::RateLimited(Some(Duration::from_secs(3)))),
        Err(TestError::RateLimited(Some(Duration::from_secs(1)))),
        Ok("answer"),
    ];
    let (result, keys, elapsed) = run_script(&retrier, script).await;
    assert_eq!(result, Ok("answer"));
    assert_eq!(keys, [0, 1, 1], "key 1 frees first");
    assert_eq!(elapsed, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn with_every_key_cooling_too_long_it_fails_with_when() {
    let retrier = retrier(2, no_jitter());
    let script = vec![
        Err(TestError::RateLimited(Some(Duration::from_secs(41)))),
        Err(TestError::RateLimited(Some(Duration::from_secs(50)))),
    ];
    let (result, keys, elapsed) = run_script(&retrier, script).await;
    assert_eq!(keys, [0, 1]);
    assert_eq!(elapsed, Duration::ZERO);
    let Err(TestError::Resilience(error)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(error.retry_after(), Some(Duration::from_secs(41)));
    assert_eq!(
        error.to_string(),
        "rate limited on all 2 keys, next free in 41 s"
    );
}

#[tokio::test(start_paused = true)]
async fn rejected_keys_are_disabled_and_skipped() {
    let retrier = retrier(2, no_jitter());
    let (result, keys, _) =
        run_script(&retrier, vec![Err(TestError::Rejected), Ok("answer")]).await;
    assert_eq!(result, Ok("answer"));
    assert_eq!(keys, [0, 1]);
    let (result, keys, _) = run_script(&retrier, vec![Ok("again")]).await;
    assert_eq!(result, Ok("again"));
    assert_eq!(keys, [1], "key 0 stays disabled");
    let (result, keys, _) = run_script(&retrier, vec![Err(TestError::Rejected)]).await;
    assert_eq!(keys, [1]);
    let Err(TestError::Resilience(error)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(error.retry_after(), None);
    assert_eq!(error.to_string(), "all 2 API keys were rejected");
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_not_retried_and_attempts_are_capped() {
    let retrier = retrier(1, no_jitter());
    let (result, keys, _) = run_script(&retrier, vec![Err(TestError::Permanent)]).await;
    assert_eq!((result, keys.len()), (Err(TestError::Permanent), 1));
    let script = vec![Err(TestError::Transient(None)); 4];
    let (result, keys, elapsed) = run_script(&retrier, script).await;
    assert_eq!((result, keys.len()), (Err(TestError::Transient(None)), 4));
    assert_eq!(elapsed, Duration::from_millis(500 + 1_000 + 2_000));
}

#[tokio::test(start_paused = true)]
async fn the_total_deadline_ends_a_hung_attempt() {
    let retrier = retrier(
        1,
        BackoffPolicy {
            total_deadline: Duration::from_secs(10),
            ..no_jitter()
        },
    );
    let started = Instant::now();
    let result: Result<((), resilience::keys::KeyLease), TestError> = retrier
        .run(|_| std::future::pending::<Result<(), TestError>>())
        .await;
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert!(matches!(
        result,
        Err(TestError::Resilience(resilience::Error::DeadlineExceeded))
    ));
    assert_eq!(retrier.keys().stats()[0].in_flight, 0, "the slot is freed");
}

#[tokio::test(start_paused = true)]
async fn a_backoff_past_the_deadline_gives_up_at_once() {
    let retrier = retrier(
        1,
        BackoffPolicy {
            total_deadline: Duration::from_millis(1_200),
            ..no_jitter()
        },
    );
    let script = vec![
        Err(TestError::Transient(None)),
        Err(TestError::Transient(None)),
    ];
    let (result, keys, elapsed) = run_script(&retrier, script).await;
    assert_eq!(result, Err(TestError::Transient(None)));
    assert_eq!(keys.len(), 2);
    assert_eq!(
        elapsed,
        Duration::from_millis(500),
        "the 1 s backoff would pass the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_fails_fast() {
    let breaker = Arc::new(CircuitBreaker::new({
        let mut config = BreakerConfig::default();
        config.minimum_calls = 2;
        config
    }));
    let retrier = Retrier::new(
        BackoffPolicy {
            max_attempts: 2,
            ..no_jitter()
        },
        Arc::new(RetryBudget::new(BudgetConfig::default())),
        breaker.clone(),
        KeyPool::new(vec![ApiKey::new("k")], KeyPoolConfig::default()),
    );
    let script = vec![
        Err(TestError::Transient(None)),
        Err(TestError::Transient(None)),
    ];
    let (result, _, _) = run_script(&retrier, script).await;
    assert_eq!(result, Err(TestError::Transient(None)));
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    let (result, keys, elapsed) = run_script(&retrier, vec![]).await;
    assert!(keys.is_empty(), "no attempt reaches the service");
    assert_eq!(elapsed, Duration::ZERO);
    let Err(TestError::Resilience(error)) = result else {
        panic!("{result:?}")
    };
    assert!(matches!(error, resilience::Error::CircuitOpen { .. }));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(5)));
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_retries() {
    let retrier = Retrier::new(
        BackoffPolicy {
            max_attempts: 10,
            ..no_jitter()
        },
        Arc::new(RetryBudget::new(BudgetConfig {
            ratio: 0.0,
            min_per_second: 0,
            ..BudgetConfig::default()
        })),
        Arc::new(CircuitBreaker::new(BreakerConfig::default())),
        KeyPool::new(vec![ApiKey::new("k")], KeyPoolConfig::default()),
    );
    let (result, keys, _) = run_script(&retrier, vec![Err(TestError::Transient(None))]).await;
    assert_eq!(result, Err(TestError::Transient(None)));
    assert_eq!(keys.len(), 1, "no budget, no retry");
}

#[tokio::test(start_paused = true)]
async fn the_lease_holds_the_key_while_the_result_is_in_use() {
    let retrier = retrier(2, no_jitter());
    let (_, lease) = retrier
        .run(|_| async { Ok::<_, TestError>(()) })
        .await
        .unwrap();
    assert_eq!(retrier.keys().stats()[lease.index()].in_flight, 1);
    lease.report(KeyOutcome::Failure(FailureClass::Transient));
    let index = lease.index();
    drop(lease);
    let stats = &retrier.keys().stats()[index];
    assert_eq!(
        (stats.in_flight, stats.successes, stats.failures),
        (0, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_same_key_retry_backs_off_takes_from_the_budget_and_never_changes_key() {
    let retrier = retrier(3, no_jitter());
    let key = ApiKey::new("secret-2");
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = |script: Vec<Result<&'static str, TestError>>| {
        let script = Arc::new(Mutex::new(script.into_iter()));
        let keys_used = Arc::new(Mutex::new(Vec::new()));
        let (retrier, key) = (&retrier, &key);
        let used = keys_used.clone();
        async move {
            let started = Instant::now();
            let result = retrier
                .run_with_key(key, deadline, |attempt| {
                    let script = script.clone();
                    let keys_used = keys_used.clone();
                    async move {
                        keys_used
                            .lock()
                            .unwrap()
                            .push((attempt.key_index, attempt.key.expose().to_owned()));
                        script.lock().unwrap().next().unwrap()
                    }
                })
                .await;
            let used = used.lock().unwrap().clone();
            (result, used, started.elapsed())
        }
    };
    // Two transient failures, then the answer: backed off twice, always the given key.
    let (result, used, took) = run(vec![
        Err(TestError::Transient(None)),
        Err(TestError::Transient(None)),
        Ok("read"),
    ])
    .await;
    assert_eq!(result, Ok("read"));
    assert_eq!(used, vec![(2, "secret-2".to_owned()); 3]);
    let policy = no_jitter();
    assert!(took >= policy.base, "{took:?}");
    // A refused key ends it at once: no other key may read what this one started.
    let (result, used, took) = run(vec![Err(TestError::Rejected), Ok("never")]).await;
    assert_eq!(result, Err(TestError::Rejected));
    assert_eq!((used.len(), took), (1, Duration::ZERO));
    // A rate-limited key is busy, not gone: the same key again after its hint, and the
    // pool hears of it (other requests skip the key while it cools).
    let hint = Duration::from_secs(2);
    let (result, used, took) = run(vec![Err(TestError::RateLimited(Some(hint))), Ok("read")]).await;
    assert_eq!(result, Ok("read"));
    assert_eq!(used, vec![(2, "secret-2".to_owned()); 2]);
    assert!(took >= hint, "{took:?}");
    assert!(
        retrier.keys().stats()[2].cooling_until.is_some(),
        "the pool was told"
    );
    // A rate limit asking past `max_hint` ends it (not slept on).
    let too_long = policy.max_hint + Duration::from_secs(1);
    let (result, used, _) = run(vec![
        Err(TestError::RateLimited(Some(too_long))),
        Ok("never"),
    ])
    .await;
    assert_eq!(result, Err(TestError::RateLimited(Some(too_long))));
    assert_eq!(used.len(), 1);
    // A server failure with an absurd hint: the hint is not slept on, and the read goes on
    // at our own pace rather than losing the work.
    let absurd = Duration::from_secs(u64::MAX / 4);
    let (result, used, took) = run(vec![Err(TestError::Transient(Some(absurd))), Ok("read")]).await;
    assert_eq!(result, Ok("read"));
    assert_eq!(used.len(), 2);
    assert!(took <= policy.cap, "{took:?}");
    // Attempts are capped by the policy.
    let failures = vec![Err(TestError::Transient(None)); policy.max_attempts as usize + 1];
    let (result, used, _) = run(failures).await;
    assert_eq!(result, Err(TestError::Transient(None)));
    assert_eq!(used.len(), policy.max_attempts as usize);
}

#[tokio::test(start_paused = true)]
async fn a_same_key_retry_is_refused_by_an_open_breaker_and_opens_it_when_it_keeps_failing() {
    let mut config = BreakerConfig::default();
    config.minimum_calls = 2;
    config.window = SlidingWindow::Count(2);
    config.failure_rate = 0.5;
    let breaker = Arc::new(CircuitBreaker::new(config));
    let retrier = Retrier::new(
        BackoffPolicy {
            max_attempts: 1,
            ..no_jitter()
        },
        Arc::new(RetryBudget::new(BudgetConfig::default())),
        breaker.clone(),
        KeyPool::new(vec![ApiKey::new("secret-0")], KeyPoolConfig::default()),
    );
    let key = ApiKey::new("secret-0");
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..2 {
        let result: Result<(), TestError> = retrier
            .run_with_key(&key, deadline, |_| async {
                Err(TestError::Transient(None))
            })
            .await;
        assert_eq!(result, Err(TestError::Transient(None)));
    }
    let result: Result<(), TestError> = retrier
        .run_with_key(&key, deadline, |_| async { Ok(()) })
        .await;
    assert!(
        matches!(
            result,
            Err(TestError::Resilience(resilience::Error::CircuitOpen { .. }))
        ),
        "{result:?}"
    );
}
