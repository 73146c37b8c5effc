//! Numbers from outside (a server's headers, a config file) never panic, whatever they are:
//! every hint is clamped when parsed and every deadline saturates.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use resilience::{
    ApiKey, Backoff, BackoffPolicy, KeyOutcome, KeyPool, KeyPoolConfig, MAX_RETRY_AFTER,
    parse_retry_after,
};

/// Header values a hostile or broken server might send.
fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{1,40}",
        "-?[0-9]{0,20}(\\.[0-9]{0,20})?(e[+-]?[0-9]{1,4})?",
        Just("1e300".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("inf".to_owned()),
        Just("NaN".to_owned()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_retry_after_is_clamped_and_drives_every_piece_without_panicking(
        millis in proptest::option::of(header()),
        seconds in proptest::option::of(header()),
    ) {
        let hint = parse_retry_after(millis.as_deref(), seconds.as_deref(), SystemTime::now());
        prop_assert!(hint.is_none_or(|hint| hint <= MAX_RETRY_AFTER));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async {
            let mut backoff = Backoff::new(BackoffPolicy::default());
            let _ = backoff.next_delay(hint);
            for outcome in [
                KeyOutcome::RateLimited { retry_after: hint },
                KeyOutcome::QuotaExhausted { retry_after: hint },
                KeyOutcome::RateLimited { retry_after: Some(Duration::MAX) },
            ] {
                let pool = KeyPool::new(vec![ApiKey::new("k")], KeyPoolConfig::default());
                pool.try_acquire().unwrap().report(outcome);
                let _ = pool.try_acquire();
            }
        });
    }
}

#[test]
fn the_headers_of_the_issue_are_a_day() {
    let now = SystemTime::now();
    assert_eq!(
        parse_retry_after(Some("1e300"), None, now),
        Some(MAX_RETRY_AFTER)
    );
    assert_eq!(
        parse_retry_after(None, Some("18446744073709551615"), now),
        Some(MAX_RETRY_AFTER)
    );
    assert_eq!(
        parse_retry_after(None, Some("99999999999999999999999"), now),
        Some(MAX_RETRY_AFTER)
    );
    assert_eq!(
        parse_retry_after(Some("1500"), None, now),
        Some(Duration::from_millis(1500))
    );
}
