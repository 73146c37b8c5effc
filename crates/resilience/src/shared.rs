//! State several processes share: key cooldowns, disabled keys, open breakers, and per-key
//! request rates. [`SharedState`] is the seam; [`LocalState`] (this process only) is the
//! default, and a networked backend (Redis, in its own crate) implements the same trait.
//!
//! Local state always answers first: a [`KeyPool`](crate::KeyPool) or
//! [`CircuitBreaker`](crate::CircuitBreaker) never waits on the backend to pick a key or admit
//! a call. What this process learns it publishes (without waiting); what others learned
//! arrives through the listener it subscribed, and is applied to its local state. Only a
//! request-rate slot needs the backend's answer, because only the backend sees every
//! process's requests.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::ApiKey;

/// A key's name in shared state: a keyed hash of the key (HMAC with a configured secret
/// for a networked backend), never the key or a plain hash of it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Wraps an identifier a backend derived (hex or similar; it must not be the key).
    pub fn new(id: impl Into<String>) -> Self {
        KeyId(id.into())
    }

    /// The identifier, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell keys apart in logs.
        write!(formatter, "KeyId({})", &self.0[..self.0.len().min(12)])
    }
}

/// A change one process tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedChange {
    /// The key cools down until then (a 429 or exhausted quota), and why.
    KeyCooling {
        /// Which key.
        key: KeyId,
        /// Until when, on the wall clock (processes do not share an `Instant`).
        until: SystemTime,
        /// Why, for the stats (never the key).
        reason: String,
    },
    /// The key was refused (401/403): every process stops using it.
    KeyDisabled {
        /// Which key.
        key: KeyId,
        /// Why.
        reason: String,
    },
    /// The endpoint's breaker opened until then.
    BreakerOpen {
        /// The endpoint (an API and model family, as the provider names its breakers).
        endpoint: String,
        /// Until when, on the wall clock.
        until: SystemTime,
    },
}

/// What a backend calls with the changes other processes made.
pub type ChangeListener = Box<dyn Fn(&SharedChange) + Send + Sync>;

/// The answer to a request-rate slot: `Ok` to go now, `Err(wait)` when the key's limit has
/// no capacity for `wait` more.
pub type RateFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Duration>> + Send + 'a>>;

/// Where processes share what they learn about keys and endpoints. Implementations must
/// never block the caller: `publish` queues, `subscribe` registers, and only
/// `acquire_rate` awaits (and degrades to a local answer when the backend is down or slow).
pub trait SharedState: Send + Sync + fmt::Debug {
    /// The key's name in this backend.
    fn key_id(&self, key: &ApiKey) -> KeyId;

    /// Tells the other processes about a change this process made.
    fn publish(&self, change: SharedChange);

    /// Calls `listener` with each change other processes publish (and, harmlessly, this
    /// process's own, which are already applied).
    fn subscribe(&self, listener: ChangeListener);

    /// Takes one request slot of `key`'s limit of `per_minute` requests, shared by every
    /// process using this backend (evenly spaced: a GCRA with no burst).
    fn acquire_rate<'a>(&'a self, key: &'a KeyId, per_minute: u32) -> RateFuture<'a>;
}

/// This process only: nothing is published, nothing arrives, and request rates are spaced
/// per process. The default; what a networked backend falls back to when it cannot reach
/// its server.
#[derive(Debug, Default)]
pub struct LocalState {
    hasher: std::collections::hash_map::RandomState,
    rates: LocalRates,
}

impl LocalState {
    /// A fresh one.
    pub fn new() -> Self {
        LocalState::default()
    }
}

impl SharedState for LocalState {
    fn key_id(&self, key: &ApiKey) -> KeyId {
        // SipHash with this process's random keys: a keyed hash that never leaves it.
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key.expose().as_bytes());
        KeyId(format!("{:016x}", hasher.finish()))
    }

    fn publish(&self, _change: SharedChange) {}

    fn subscribe(&self, _listener: ChangeListener) {}

    fn acquire_rate<'a>(&'a self, key: &'a KeyId, per_minute: u32) -> RateFuture<'a> {
        let answer = self.rates.acquire(key, per_minute, Instant::now());
        Box::pin(std::future::ready(answer))
    }
}

/// Per-key request spacing in this process: the generic cell rate algorithm with no burst.
/// Each key's theoretical arrival time moves on by `60 s / per_minute` per admitted request.
#[derive(Debug, Default)]
pub struct LocalRates {
    next_allowed: Mutex<HashMap<KeyId, Instant>>,
}

impl LocalRates {
    /// Admits one request of `key` at `now`, or says how long until it could be.
    ///
    /// # Errors
    /// The wait until the key's limit has capacity again.
    pub fn acquire(&self, key: &KeyId, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let interval = rate_interval(per_minute);
        let mut next_allowed = self.next_allowed.lock();
        let allowed_at = next_allowed.get(key).copied().unwrap_or(now);
        if allowed_at > now {
            return Err(allowed_at - now);
        }
        next_allowed.insert(key.clone(), crate::backoff::later(now, interval));
        Ok(())
    }
}

/// The spacing of `per_minute` requests a minute (a zero limit is read as one a minute).
pub fn rate_interval(per_minute: u32) -> Duration {
    Duration::from_secs(60) / per_minute.max(1)
}

/// `instant` on the wall clock, for another process.
pub(crate) fn to_wall(instant: Instant) -> SystemTime {
    let now = Instant::now();
    let wall = SystemTime::now();
    if instant >= now {
        wall.checked_add(instant - now).unwrap_or(wall)
    } else {
        wall.checked_sub(now - instant).unwrap_or(wall)
    }
}

/// A wall-clock time from another process as a local instant, at most `max_ahead` from now
/// (a wrong clock or a hostile value cannot cool a key for a century); `None` when it has
/// passed.
pub(crate) fn from_wall(until: SystemTime, max_ahead: Duration) -> Option<Instant> {
    let ahead = until.duration_since(SystemTime::now()).ok()?;
    Some(crate::backoff::later(Instant::now(), ahead.min(max_ahead)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn local_rates_space_requests_evenly() {
        let rates = LocalRates::default();
        let key = KeyId::new("a");
        let start = Instant::now();
        assert_eq!(rates.acquire(&key, 600, start), Ok(()));
        assert_eq!(
            rates.acquire(&key, 600, start),
            Err(Duration::from_millis(100))
        );
        let other = KeyId::new("b");
        assert_eq!(rates.acquire(&other, 600, start), Ok(()), "keys are apart");
        let later = start + Duration::from_millis(100);
        assert_eq!(rates.acquire(&key, 600, later), Ok(()));
        // At most `per_minute` in any minute.
        let mut admitted = 0;
        let mut now = later;
        while now < later + Duration::from_secs(60) {
            if rates.acquire(&key, 600, now).is_ok() {
                admitted += 1;
            }
            now += Duration::from_millis(7);
        }
        assert!(admitted <= 600, "{admitted}");
        // Asked every 7 ms, each admission comes up to 7 ms after its slot opens.
        assert!(admitted >= 60_000 / 107, "{admitted}");
    }

    #[test]
    fn key_ids_are_keyed_hashes_not_keys() {
        let state = LocalState::new();
        let key = ApiKey::new("pplx-secret-key-material");
        let id = state.key_id(&key);
        assert_eq!(id, state.key_id(&key));
        assert!(!id.as_str().contains("secret"));
        assert_ne!(
            id,
            LocalState::new().key_id(&key),
            "another process, another hash"
        );
        assert_ne!(id, state.key_id(&ApiKey::new("another")));
    }

    #[tokio::test(start_paused = true)]
    async fn wall_times_round_trip_and_are_bounded() {
        let until = Instant::now() + Duration::from_secs(30);
        let back = from_wall(to_wall(until), Duration::from_secs(3_600)).unwrap();
        let drift = if back > until {
            back - until
        } else {
            until - back
        };
        assert!(drift < Duration::from_millis(50), "{drift:?}");
        let far = SystemTime::now() + Duration::from_secs(10_000_000_000);
        let bounded = from_wall(far, Duration::from_secs(60)).unwrap();
        assert!(bounded <= Instant::now() + Duration::from_secs(60));
        assert_eq!(
            from_wall(SystemTime::UNIX_EPOCH, Duration::from_secs(60)),
            None
        );
    }
}
