use parking_lot::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How many retries a [`RetryBudget`] allows.
#[derive(Debug, Clone, Copy, PartialEq)]
// Not `#[non_exhaustive]`: built with `..Default::default()`.
pub struct BudgetConfig {
    /// How far back requests and retries are counted (whole seconds; at least one).
    pub window: Duration,
    /// Retries allowed per request in the window (0.2 = 20%, as Envoy and Finagle do).
    pub ratio: f64,
    /// Retries allowed per second of the window whatever the traffic, so that a quiet client
    /// can still retry.
    pub min_per_second: u32,
}

impl Default for BudgetConfig {
    /// 20% of the last 10 seconds' requests, plus one retry per second.
    fn default() -> Self {
        BudgetConfig {
            window: Duration::from_secs(10),
            ratio: 0.2,
            min_per_second: 1,
        }
    }
}

/// Caps retries at a share of recent requests, so that a fleet in trouble does not multiply
/// its own load. Shared by all requests of a client; cheap to call from many tasks.
#[derive(Debug)]
pub struct RetryBudget {
    config: BudgetConfig,
    start: Instant,
    buckets: Mutex<Vec<Bucket>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    requests: u32,
    retries: u32,
}

impl RetryBudget {
    /// A budget with `config`.
    pub fn new(config: BudgetConfig) -> Self {
        let seconds = config.window.as_secs().max(1) as usize;
        RetryBudget {
            config,
            start: Instant::now(),
            buckets: Mutex::new(vec![Bucket::default(); seconds]),
        }
    }

    /// Counts one request (call once per operation, not per attempt).
    pub fn record_request(&self) {
        self.with_current(|bucket, _| {
            bucket.requests = bucket.requests.saturating_add(1);
        });
    }

    /// Takes one retry from the budget; `false` when it is spent (do not retry).
    pub fn try_withdraw(&self) -> bool {
        let config = self.config;
        self.with_current(|bucket, totals| {
            let allowed = f64::from(config.min_per_second) * totals.seconds as f64
                + config.ratio * f64::from(totals.requests);
            if f64::from(totals.retries) + 1.0 <= allowed {
                bucket.retries = bucket.retries.saturating_add(1);
                true
            } else {
                false
            }
        })
    }

    /// Runs `update` on the current second's bucket, with the window's totals.
    fn with_current<T>(&self, update: impl FnOnce(&mut Bucket, Totals) -> T) -> T {
        let second = self.start.elapsed().as_secs();
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        let mut buckets = self.buckets.lock();
        let slots = buckets.len() as u64;
        let index = (second % slots) as usize;
        if buckets[index].second != second {
            buckets[index] = Bucket {
                second,
                ..Bucket::default()
            };
        }
        let mut totals = Totals {
            seconds: slots,
            ..Totals::default()
        };
        for bucket in buckets
            .iter()
            .filter(|bucket| second - bucket.second < slots)
        {
            totals.requests = totals.requests.saturating_add(bucket.requests);
            totals.retries = totals.retries.saturating_add(bucket.retries);
        }
        update(&mut buckets[index], totals)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    seconds: u64,
    requests: u32,
    retries: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_requests_plus_a_floor() {
        let budget = RetryBudget::new(BudgetConfig {
            window: Duration::from_secs(10),
            ratio: 0.2,
            min_per_second: 0,
        });
        for _ in 0..50 {
            budget.record_request();
        }
        let granted = (0..100).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 10, "20% of 50 requests");

        let floor = RetryBudget::new(BudgetConfig {
            min_per_second: 1,
            ..BudgetConfig::default()
        });
        let granted = (0..100).filter(|_| floor.try_withdraw()).count();
        assert_eq!(
            granted, 10,
            "one per second of a 10-second window, with no traffic"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let budget = RetryBudget::new(BudgetConfig {
            window: Duration::from_secs(2),
            ratio: 1.0,
            min_per_second: 0,
        });
        budget.record_request();
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            !budget.try_withdraw(),
            "the request and the retry are both still counted"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        budget.record_request();
        assert!(budget.try_withdraw(), "the old retry left the window");
    }
}
