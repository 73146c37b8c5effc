//! The API-key pool: keys that never show in output ([`ApiKey`]), spread least recently
//! used, cooled on rate limits and disabled when refused ([`KeyPool`]), leased one request
//! at a time ([`KeyLease`]).

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::FailureClass;
use crate::shared::{KeyId, SharedChange, SharedState, from_wall, to_wall};

/// An API key. Its `Debug` and `Display` print `[redacted]`, it is not serializable, and its
/// bytes are zeroed when the last clone is dropped. Clones share one allocation.
#[derive(Clone)]
pub struct ApiKey(Arc<Zeroizing<String>>);

impl ApiKey {
    /// Wraps `key` (surrounding whitespace is removed: keys pasted into env files often carry
    /// a newline).
    pub fn new(key: impl Into<String>) -> Self {
        let mut key = Zeroizing::new(key.into());
        let trimmed = key.trim();
        if trimmed.len() != key.len() {
            let clean = Zeroizing::new(trimmed.to_owned());
            key = clean;
        }
        ApiKey(Arc::new(key))
    }

    /// The key itself, to put in a request header. Never log or store what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the key is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

/// Cooldowns of a [`KeyPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyPoolConfig {
    /// A 429 without a hint cools the key this long, doubling on each consecutive 429.
    pub rate_limit_cooldown: Duration,
    /// The longest escalated cooldown for a 429 without a hint.
    pub max_rate_limit_cooldown: Duration,
    /// A 402 (out of credits) or exhausted quota cools the key this long.
    pub quota_cooldown: Duration,
}

impl Default for KeyPoolConfig {
    /// 1 s doubling to 60 s for rate limits; an hour for exhausted quota.
    fn default() -> Self {
        KeyPoolConfig {
            rate_limit_cooldown: Duration::from_secs(1),
            max_rate_limit_cooldown: Duration::from_secs(60),
            quota_cooldown: Duration::from_secs(3_600),
        }
    }
}

/// How a request made with a key went, as far as the key is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyOutcome {
    /// It worked: the key's escalating cooldown starts over.
    Success,
    /// 429: cool the key for the server's hint, or else for an escalating default.
    RateLimited {
        /// The server's `retry-after`, if any.
        retry_after: Option<Duration>,
    },
    /// 401/403: the key is refused; disable it.
    Rejected {
        /// Why, for the stats (never the key).
        reason: String,
    },
    /// 402 or quota exhausted: a long cooldown (or the server's hint if longer).
    QuotaExhausted {
        /// The server's `retry-after`, if any.
        retry_after: Option<Duration>,
    },
    /// A failure that says nothing about the key (a server error, a timeout).
    Failure(FailureClass),
}

/// Every key is disabled or cooling down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NoKeyAvailable {
    /// When the first cooling key frees up; `None` when every key is disabled (or there are none).
    pub next_free: Option<Instant>,
    /// Keys in the pool.
    pub keys: usize,
    /// Keys disabled for good (rejected by the server).
    pub disabled: usize,
}

/// A snapshot of one key's use. Holds the key's index, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStats {
    /// The key's position in the pool (as configured).
    pub index: usize,
    /// Requests made with it.
    pub requests: u64,
    /// Requests that succeeded.
    pub successes: u64,
    /// 429s it received.
    pub rate_limits: u64,
    /// Times it was cooled down (rate limited, or out of credits or quota) by this process.
    pub cooldowns: u64,
    /// Other failures while using it.
    pub failures: u64,
    /// Requests using it now.
    pub in_flight: u32,
    /// Cooling down until then.
    pub cooling_until: Option<Instant>,
    /// Disabled, and why.
    pub disabled: Option<String>,
    /// The class of its last failure.
    pub last_error: Option<FailureClass>,
}

/// A pool of API keys: picks the least recently used available key (ties to the fewest
/// requests in flight), cools keys down on 429 and 402, disables them on 401/403, and says
/// when the first key frees up when none is available. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct KeyPool {
    shared: Arc<Shared>,
}

struct Shared {
    keys: Vec<ApiKey>,
    config: KeyPoolConfig,
    state: Mutex<State>,
    link: OnceLock<Link>,
}

/// The pool's tie to a [`SharedState`]: its keys' names there and their request rate.
struct Link {
    state: Arc<dyn SharedState>,
    ids: Vec<KeyId>,
    per_minute: Option<u32>,
}

/// How far ahead a cooldown from another process may reach: as far as a local one can.
const MAX_REMOTE_COOLDOWN: Duration = Duration::from_secs(24 * 3_600);

#[derive(Debug)]
struct State {
    keys: Vec<KeyState>,
    picks: u64,
}

#[derive(Debug, Clone, Default)]
struct KeyState {
    /// When it was last picked, as a pick sequence number (0: never). A counter orders picks
    /// exactly like a clock would, without a clock read on every pick.
    last_used: u64,
    in_flight: u32,
    cooling_until: Option<Instant>,
    /// Its shared request rate has no capacity until then (not a failure: not published).
    throttled_until: Option<Instant>,
    consecutive_rate_limits: u32,
    disabled: Option<String>,
    requests: u64,
    successes: u64,
    rate_limits: u64,
    cooldowns: u64,
    failures: u64,
    last_error: Option<FailureClass>,
}

impl fmt::Debug for KeyPool {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KeyPool")
            .field("keys", &self.shared.keys.len())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// The use of one key for one request: holds its in-flight slot until dropped.
#[must_use = "dropping the lease at once frees the key's slot"]
pub struct KeyLease {
    pool: KeyPool,
    index: usize,
}

impl fmt::Debug for KeyLease {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KeyLease")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl KeyLease {
    /// The key to use.
    pub fn key(&self) -> &ApiKey {
        &self.pool.shared.keys[self.index]
    }

    /// The key's index in the pool, for logs and stats.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Reports how the request went for this key (may be called more than once, for example
    /// success at the start of a stream and a failure later).
    pub fn report(&self, outcome: KeyOutcome) {
        self.pool.report(self.index, outcome);
    }
}

impl Drop for KeyLease {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        let key = &mut state.keys[self.index];
        key.in_flight = key.in_flight.saturating_sub(1);
    }
}

impl KeyPool {
    /// A pool of `keys` in the given order (their indexes name them in stats and logs).
    pub fn new(keys: Vec<ApiKey>, config: KeyPoolConfig) -> Self {
        let state = State {
            keys: vec![KeyState::default(); keys.len()],
            picks: 0,
        };
        KeyPool {
            shared: Arc::new(Shared {
                keys,
                config,
                state: Mutex::new(state),
                link: OnceLock::new(),
            }),
        }
    }

    /// The index of `key` in the pool, if it is one of its keys.
    pub fn index_of(&self, key: &ApiKey) -> Option<usize> {
        self.shared
            .keys
            .iter()
            .position(|known| known.expose() == key.expose())
    }

    /// Keys in the pool.
    pub fn len(&self) -> usize {
        self.shared.keys.len()
    }

    /// Whether the pool has no keys.
    pub fn is_empty(&self) -> bool {
        self.shared.keys.is_empty()
    }

    /// Takes the least recently used available key (ties: fewest in flight, then lowest index).
    ///
    /// # Errors
    /// [`NoKeyAvailable`], saying when the first cooling key frees up.
    pub fn try_acquire(&self) -> Result<KeyLease, NoKeyAvailable> {
        let mut state = self.lock();
        // One pass, reading the clock only if some key has a cooldown to check.
        let mut now = None;
        let mut chosen: Option<(usize, u64, u32)> = None;
        for (index, key) in state.keys.iter().enumerate() {
            if key.disabled.is_some() {
                continue;
            }
            if let Some(until) = key.cooling_until.max(key.throttled_until)
                && until > *now.get_or_insert_with(Instant::now)
            {
                continue;
            }
            // Least recently used first, then fewest in flight; the lowest index wins ties.
            if chosen
                .is_none_or(|(_, used, flight)| (key.last_used, key.in_flight) < (used, flight))
            {
                chosen = Some((index, key.last_used, key.in_flight));
            }
        }
        let chosen = chosen.map(|(index, _, _)| index);
        let Some(index) = chosen else {
            return Err(NoKeyAvailable {
                next_free: state
                    .keys
                    .iter()
                    .filter(|key| key.disabled.is_none())
                    .filter_map(|key| key.cooling_until.max(key.throttled_until))
                    .min(),
                keys: state.keys.len(),
                disabled: state
                    .keys
                    .iter()
                    .filter(|key| key.disabled.is_some())
                    .count(),
            });
        };
        state.picks += 1;
        let picks = state.picks;
        let key = &mut state.keys[index];
        key.last_used = picks;
        key.in_flight += 1;
        key.requests += 1;
        key.cooling_until = None;
        key.throttled_until = None;
        drop(state);
        Ok(KeyLease {
            pool: self.clone(),
            index,
        })
    }

    /// Shares this pool's key cooldowns and disabled keys with other processes through
    /// `state`, and, with `per_minute`, spaces each key's requests so that every process
    /// together stays under that many a minute. Once per pool; later calls are ignored.
    pub fn share(&self, state: Arc<dyn SharedState>, per_minute: Option<u32>) {
        let ids = self
            .shared
            .keys
            .iter()
            .map(|key| state.key_id(key))
            .collect();
        let link = Link {
            state: state.clone(),
            ids,
            per_minute,
        };
        if self.shared.link.set(link).is_err() {
            return;
        }
        let pool: Weak<Shared> = Arc::downgrade(&self.shared);
        state.subscribe(Box::new(move |change| {
            if let Some(shared) = pool.upgrade() {
                KeyPool { shared }.apply_remote(change);
            }
        }));
    }

    /// Takes a key as [`try_acquire`](KeyPool::try_acquire) does and, when the pool shares a
    /// request rate, a slot of that key's rate; a key without capacity is passed over until
    /// it has some.
    ///
    /// # Errors
    /// [`NoKeyAvailable`], saying when the first key frees up (cooling or out of capacity).
    pub async fn acquire(&self) -> Result<KeyLease, NoKeyAvailable> {
        loop {
            let lease = self.try_acquire()?;
            let Some(link) = self.shared.link.get() else {
                return Ok(lease);
            };
            let Some(per_minute) = link.per_minute else {
                return Ok(lease);
            };
            match link
                .state
                .acquire_rate(&link.ids[lease.index], per_minute)
                .await
            {
                Ok(()) => return Ok(lease),
                Err(wait) => {
                    let mut state = self.lock();
                    let key = &mut state.keys[lease.index];
                    key.throttled_until = Some(crate::backoff::later(Instant::now(), wait));
                    // Not a request after all.
                    key.requests = key.requests.saturating_sub(1);
                }
            }
        }
    }

    /// Applies what another process learned.
    fn apply_remote(&self, change: &SharedChange) {
        let Some(link) = self.shared.link.get() else {
            return;
        };
        let index = |id: &KeyId| link.ids.iter().position(|known| known == id);
        match change {
            SharedChange::KeyCooling { key, until, .. } => {
                let (Some(index), Some(until)) =
                    (index(key), from_wall(*until, MAX_REMOTE_COOLDOWN))
                else {
                    return;
                };
                let mut state = self.lock();
                let key = &mut state.keys[index];
                key.cooling_until = Some(
                    key.cooling_until
                        .map_or(until, |running| running.max(until)),
                );
            }
            SharedChange::KeyDisabled { key, reason } => {
                let Some(index) = index(key) else { return };
                let mut state = self.lock();
                let key = &mut state.keys[index];
                if key.disabled.is_none() {
                    key.disabled = Some(format!("{reason} (in another process)"));
                }
            }
            _ => {}
        }
    }

    /// A snapshot of every key's use, by index.
    pub fn stats(&self) -> Vec<KeyStats> {
        self.lock()
            .keys
            .iter()
            .enumerate()
            .map(|(index, key)| KeyStats {
                index,
                requests: key.requests,
                successes: key.successes,
                rate_limits: key.rate_limits,
                cooldowns: key.cooldowns,
                failures: key.failures,
                in_flight: key.in_flight,
                cooling_until: key.cooling_until,
                disabled: key.disabled.clone(),
                last_error: key.last_error,
            })
            .collect()
    }

    pub(crate) fn report(&self, index: usize, outcome: KeyOutcome) {
        let published = self.update(index, outcome);
        if let (Some(change), Some(link)) = (published, self.shared.link.get()) {
            link.state.publish(change);
        }
    }

    /// Applies `outcome` to the key; returns what other processes should learn of it.
    fn update(&self, index: usize, outcome: KeyOutcome) -> Option<SharedChange> {
        let config = self.shared.config;
        let id = |index: usize| self.shared.link.get().map(|link| link.ids[index].clone());
        let mut state = self.lock();
        let key = &mut state.keys[index];
        let cool_until = |key: &mut KeyState, cooldown: Duration| {
            let until = crate::backoff::later(Instant::now(), cooldown);
            // A new cooldown never shortens a running one.
            key.cooling_until = Some(
                key.cooling_until
                    .map_or(until, |running| running.max(until)),
            );
        };
        let cooling = |key: &KeyState, reason: &str| {
            Some(SharedChange::KeyCooling {
                key: id(index)?,
                until: to_wall(key.cooling_until?),
                reason: reason.to_owned(),
            })
        };
        match outcome {
            KeyOutcome::Success => {
                key.successes += 1;
                key.consecutive_rate_limits = 0;
                None
            }
            KeyOutcome::RateLimited { retry_after } => {
                key.rate_limits += 1;
                key.cooldowns += 1;
                key.consecutive_rate_limits = key.consecutive_rate_limits.saturating_add(1);
                key.last_error = Some(FailureClass::RateLimited);
                let doublings = (key.consecutive_rate_limits - 1).min(20);
                let cooldown = retry_after.unwrap_or_else(|| {
                    config
                        .rate_limit_cooldown
                        .saturating_mul(1 << doublings)
                        .min(config.max_rate_limit_cooldown)
                });
                cool_until(key, cooldown);
                cooling(key, "rate limited (429)")
            }
            KeyOutcome::Rejected { reason } => {
                key.failures += 1;
                key.last_error = Some(FailureClass::KeyRejected);
                key.disabled = Some(reason.clone());
                Some(SharedChange::KeyDisabled {
                    key: id(index)?,
                    reason,
                })
            }
            KeyOutcome::QuotaExhausted { retry_after } => {
                key.failures += 1;
                key.cooldowns += 1;
                key.last_error = Some(FailureClass::QuotaExhausted);
                let cooldown = retry_after.map_or(config.quota_cooldown, |hint| {
                    hint.max(config.quota_cooldown)
                });
                cool_until(key, cooldown);
                cooling(key, "out of credits or quota (402)")
            }
            KeyOutcome::Failure(class) => {
                key.failures += 1;
                key.last_error = Some(class);
                None
            }
        }
    }

    /// The pool's state; parking_lot's lock does not poison, so a panic elsewhere cannot
    /// leave these plain counters unusable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_shows_in_debug_or_display() {
        let key = ApiKey::new(" pplx-secret-123\n");
        assert_eq!(key.expose(), "pplx-secret-123");
        let pool = KeyPool::new(vec![key.clone()], KeyPoolConfig::default());
        let printed = format!(
            "{key:?} {key} {pool:?} {:?} {:?}",
            pool.stats(),
            pool.try_acquire()
        );
        assert!(!printed.contains("secret"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[tokio::test(start_paused = true)]
    async fn cooldowns_escalate_and_are_never_shortened() {
        let pool = KeyPool::new(vec![ApiKey::new("k")], KeyPoolConfig::default());
        let lease = pool.try_acquire().unwrap();
        let start = Instant::now();
        lease.report(KeyOutcome::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
        });
        lease.report(KeyOutcome::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
        });
        assert_eq!(
            pool.stats()[0].cooling_until,
            Some(start + Duration::from_secs(30))
        );
        let unavailable = pool.try_acquire().unwrap_err();
        assert_eq!(unavailable.next_free, Some(start + Duration::from_secs(30)));
        drop(lease);

        // Without hints: 1 s, 2 s, 4 s, counted from each 429.
        let pool = KeyPool::new(vec![ApiKey::new("k")], KeyPoolConfig::default());
        for expected in [1, 2, 4] {
            let lease = pool.try_acquire().unwrap();
            lease.report(KeyOutcome::RateLimited { retry_after: None });
            let now = Instant::now();
            assert_eq!(
                pool.stats()[0].cooling_until,
                Some(now + Duration::from_secs(expected))
            );
            tokio::time::advance(Duration::from_secs(expected)).await;
        }
        let lease = pool.try_acquire().unwrap();
        lease.report(KeyOutcome::Success);
        lease.report(KeyOutcome::RateLimited { retry_after: None });
        assert_eq!(
            pool.stats()[0].cooling_until,
            Some(Instant::now() + Duration::from_secs(1)),
            "a success starts the escalation over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn quota_exhaustion_cools_for_long_and_rejection_disables() {
        let pool = KeyPool::new(
            vec![ApiKey::new("a"), ApiKey::new("b")],
            KeyPoolConfig::default(),
        );
        let first = pool.try_acquire().unwrap();
        first.report(KeyOutcome::QuotaExhausted { retry_after: None });
        let second = pool.try_acquire().unwrap();
        second.report(KeyOutcome::Rejected {
            reason: "401".into(),
        });
        let unavailable = pool.try_acquire().unwrap_err();
        assert_eq!(
            unavailable.next_free,
            Some(Instant::now() + Duration::from_secs(3_600))
        );
        assert_eq!((unavailable.keys, unavailable.disabled), (2, 1));
        assert_eq!(pool.stats()[1].disabled.as_deref(), Some("401"));
    }
}
