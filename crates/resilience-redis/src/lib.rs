//! Redis-backed shared state for `resilience`: many processes (workers, machines) behind one
//! set of API keys share key cooldowns, disabled keys, open breakers and per-key request
//! rates, so that what one process learns about a key the others apply within a second, and
//! together they stay under each key's limit before the provider has to say 429.
//!
//! - [`RedisState`] implements [`resilience::shared::SharedState`]. Give it to
//!   `KeyPool::share` and `CircuitBreaker::share` (the Perplexity provider does this when its
//!   config names a shared state). It is a [`resilience::spend::SpendLedger`] too: a
//!   spending limit's holds and spend, each step one Lua script, so that processes sharing
//!   it never spend past the limit together.
//! - Keys are named in Redis by HMAC-SHA-256 of the key with the operator's secret
//!   ([`RedisConfig::secret`]): never the key, never a plain hash of it.
//! - Cooldowns, disabled keys and open breakers live in one hash
//!   (`{namespace}:state`, a field per key or endpoint, values `until_ms|reason`), written
//!   without waiting and read back every [`RedisConfig::poll_interval`] (250 ms by default).
//!   Request rates are a GCRA per key in one atomic Lua script, timed by Redis's own clock.
//! - Redis down or slow: each process keeps its local state, spaces requests with its own
//!   local rate, says so once in the log, and picks up again when Redis returns. No request
//!   fails because of Redis.
//!
//! ```no_run
//! # async fn example() -> Result<(), resilience_redis::Error> {
//! use std::sync::Arc;
//! use resilience::{ApiKey, KeyPool, KeyPoolConfig};
//! use resilience_redis::{RedisConfig, RedisState};
//!
//! let state = RedisState::connect(RedisConfig::new("redis://127.0.0.1:6379/", "a long random secret"))?;
//! let pool = KeyPool::new(vec![ApiKey::new("pplx-...")], KeyPoolConfig::default());
//! // Cooldowns shared, and at most 50 requests a minute per key across every process.
//! pool.share(state, Some(50));
//! # Ok(()) }
//! ```
//!
//! What it does not do: store keys, answers or anything a user asked (the response cache is
//! the `cache` crate's), or coordinate anything but the state and the spend above.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use resilience::ApiKey;
use resilience::shared::{
    ChangeListener, KeyId, LocalRates, RateFuture, SharedChange, SharedState, rate_interval,
};
use resilience::spend::{LocalLedger, SpendFuture, SpendLedger, Tally};
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// How to reach Redis and how to name things there.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://HOST:PORT/` (or `rediss://`).
    pub url: String,
    /// The HMAC secret that names keys in Redis; every process sharing state needs the same.
    pub secret: Zeroizing<String>,
    /// The prefix of every Redis key (default `pplx`), so several deployments can share one
    /// Redis.
    pub namespace: String,
    /// How often the shared state is read back (default 250 ms): other processes' changes
    /// arrive within this plus a round trip.
    pub poll_interval: Duration,
    /// The longest a Redis operation may take before it counts as down (default 100 ms).
    pub timeout: Duration,
}

impl RedisConfig {
    /// A config for `url` with `secret`, and the defaults otherwise.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            secret: Zeroizing::new(secret.into()),
            namespace: "pplx".to_owned(),
            poll_interval: Duration::from_millis(250),
            timeout: Duration::from_millis(100),
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("secret", &"[redacted]")
            .field("namespace", &self.namespace)
            .field("poll_interval", &self.poll_interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A Redis URL without its password, for logs and Debug.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://[redacted]@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Why a [`RedisState`] cannot be made. (Redis being down is not one: it starts on local
/// state and connects when it can.)
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a Redis URL.
    BadUrl(String),
    /// The secret is empty: key names would be a plain hash of the key.
    NoSecret,
    /// There is no tokio runtime to run the background tasks on.
    NoRuntime,
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadUrl(message) => write!(formatter, "not a Redis URL: {message}"),
            Error::NoSecret => formatter.write_str(
                "shared state needs a secret to name keys in Redis (PPLX_SHARED_SECRET)",
            ),
            Error::NoRuntime => formatter.write_str("shared state needs a tokio runtime"),
        }
    }
}

impl std::error::Error for Error {}

/// The atomic GCRA: admits one request of a key whose requests are `interval` ms apart, or
/// answers the wait in ms. Redis's clock, so processes' clocks need not agree.
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat > now then
  return tat - now
end
redis.call('SET', KEYS[1], now + interval, 'PX', interval + 1000)
return 0
";

/// Writes a cooldown or an opening unless one reaching further is there already.
const SET_LATER: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ends = tonumber(string.match(current, '^(%d+)'))
  if ends and ends >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

/// Holds part of a period's budget atomically (`resilience::spend::SpendLedger::hold`):
/// KEYS[1] the period's hash (`spent`, `largest`), KEYS[2] its holds (id to
/// `amount:until_ms`); ARGV id, limit, least hold, ttl ms, keep s (0: forever). Answers
/// `{admitted, spent, held, holds, amount}`, Redis's clock deciding which holds lapsed.
const SPEND_HOLD: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0') or 0
local largest = tonumber(redis.call('HGET', KEYS[1], 'largest') or '0') or 0
local held = 0
local count = 0
local holds = redis.call('HGETALL', KEYS[2])
for i = 1, #holds, 2 do
  local amount, ends = string.match(holds[i + 1], '^(%d+):(%d+)$')
  if (not ends) or tonumber(ends) <= now then
    redis.call('HDEL', KEYS[2], holds[i])
  else
    held = held + tonumber(amount)
    count = count + 1
  end
end
if ARGV[2] == 'tally' then
  return {0, spent, held, count, largest}
end
local amount = math.max(tonumber(ARGV[3]), largest)
if spent + held + amount > tonumber(ARGV[2]) then
  return {0, spent, held, count, largest}
end
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d:%d', amount, now + ttl))
local keep = tonumber(ARGV[5])
if keep > 0 then
  redis.call('EXPIRE', KEYS[2], keep)
end
return {1, spent, held + amount, count + 1, amount}
";

/// Lets go of a hold and adds a cost: KEYS as for [`SPEND_HOLD`]; ARGV id (empty: none),
/// cost, keep s (0: forever).
const SPEND_SETTLE: &str = r"
if ARGV[1] ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local cost = tonumber(ARGV[2])
if cost > 0 then
  redis.call('HINCRBY', KEYS[1], 'spent', cost)
  local largest = tonumber(redis.call('HGET', KEYS[1], 'largest') or '0') or 0
  if cost > largest then
    redis.call('HSET', KEYS[1], 'largest', cost)
  end
end
local keep = tonumber(ARGV[3])
if keep > 0 then
  redis.call('EXPIRE', KEYS[1], keep)
end
return 1
";

/// How long a disabled key stays disabled in Redis: a key that is fixed comes back a day
/// later without anyone clearing Redis.
const DISABLED_FOR: Duration = Duration::from_secs(24 * 3_600);

/// The longest wait a rate answer may carry (a hostile or broken Redis cannot make a
/// request wait an hour).
const MAX_RATE_WAIT: Duration = Duration::from_secs(60);

/// Shared state in Redis. Cheap to share (`Arc`); its background tasks stop when the last
/// `Arc` is dropped.
pub struct RedisState {
    config: RedisConfig,
    client: redis::Client,
    connection: tokio::sync::Mutex<Connection>,
    listeners: Mutex<Vec<ChangeListener>>,
    /// The state hash as last read: a new listener hears it first.
    seen: Mutex<HashMap<String, String>>,
    writes: mpsc::Sender<SharedChange>,
    local_rates: LocalRates,
    gcra: redis::Script,
    set_later: redis::Script,
    spend_hold: redis::Script,
    spend_settle: redis::Script,
    /// Where spend is counted while Redis is out of reach.
    local_spend: LocalLedger,
    /// Whether Redis is out of reach now (said once when it goes, once when it is back).
    degraded: AtomicBool,
    /// Set once the first read of the shared state was tried (whatever its outcome).
    first_read: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct Connection {
    manager: Option<ConnectionManager>,
    last_failure: Option<Instant>,
}

impl fmt::Debug for RedisState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RedisState")
            .field("config", &self.config)
            .field("degraded", &self.degraded.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisState {
    /// Starts the shared state: its writer and its reader run in the background on the
    /// current tokio runtime. Redis need not be up yet.
    ///
    /// # Errors
    /// [`Error::BadUrl`], [`Error::NoSecret`], or [`Error::NoRuntime`] outside a runtime.
    pub fn connect(config: RedisConfig) -> Result<Arc<RedisState>, Error> {
        if config.secret.trim().is_empty() {
            return Err(Error::NoSecret);
        }
        let client = redis::Client::open(config.url.as_str())
            .map_err(|error| Error::BadUrl(error.to_string()))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        // Changes queue here; when Redis is down and the queue is full, the oldest wait and
        // the newest are dropped (each process keeps its own state meanwhile).
        let (writes, queue) = mpsc::channel(1_024);
        let state = Arc::new(RedisState {
            config,
            client,
            connection: tokio::sync::Mutex::new(Connection::default()),
            listeners: Mutex::new(Vec::new()),
            seen: Mutex::new(HashMap::new()),
            writes,
            local_rates: LocalRates::default(),
            gcra: redis::Script::new(GCRA),
            set_later: redis::Script::new(SET_LATER),
            spend_hold: redis::Script::new(SPEND_HOLD),
            spend_settle: redis::Script::new(SPEND_SETTLE),
            local_spend: LocalLedger::new(),
            degraded: AtomicBool::new(false),
            first_read: tokio::sync::watch::Sender::new(false),
        });
        runtime.spawn(write_loop(Arc::downgrade(&state), queue));
        runtime.spawn(read_loop(Arc::downgrade(&state)));
        Ok(state)
    }

    /// Waits until the shared state was read once (or that read failed), so that a process
    /// that just started knows what the others learned before its first request. Bounded by
    /// the connect and read timeouts.
    pub async fn synced(&self) {
        let mut first_read = self.first_read.subscribe();
        let _ = first_read.wait_for(|read| *read).await;
    }

    /// Whether Redis is out of reach now (each process is on its local state meanwhile).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn state_key(&self) -> String {
        format!("{}:state", self.config.namespace)
    }

    /// A connection, connecting if there is none (at most once a second after a failure).
    async fn manager(&self) -> Option<ConnectionManager> {
        let mut connection = self.connection.lock().await;
        if let Some(manager) = &connection.manager {
            return Some(manager.clone());
        }
        if connection
            .last_failure
            .is_some_and(|failed| failed.elapsed() < Duration::from_secs(1))
        {
            return None;
        }
        match tokio::time::timeout(
            self.config.timeout * 5,
            self.client.get_connection_manager(),
        )
        .await
        {
            Ok(Ok(manager)) => {
                connection.manager = Some(manager.clone());
                Some(manager)
            }
            Ok(Err(error)) => {
                connection.last_failure = Some(Instant::now());
                drop(connection);
                self.down(&error.to_string());
                None
            }
            Err(_) => {
                connection.last_failure = Some(Instant::now());
                drop(connection);
                self.down("connecting timed out");
                None
            }
        }
    }

    /// Runs one Redis operation within the timeout; a failure marks Redis down.
    async fn call<T>(
        &self,
        what: &str,
        operation: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let mut manager = self.manager().await?;
        match tokio::time::timeout(self.config.timeout, operation(&mut manager)).await {
            Ok(Ok(value)) => {
                self.up();
                Some(value)
            }
            Ok(Err(error)) => {
                self.failed(what, &error.to_string()).await;
                None
            }
            Err(_) => {
                self.failed(what, "timed out").await;
                None
            }
        }
    }

    async fn failed(&self, what: &str, error: &str) {
        let mut connection = self.connection.lock().await;
        connection.manager = None;
        connection.last_failure = Some(Instant::now());
        drop(connection);
        self.down(&format!("{what}: {error}"));
    }

    fn down(&self, error: &str) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %error,
                redis = %redact_url(&self.config.url),
                "shared state: Redis is out of reach; each process goes on with its local state"
            );
        }
    }

    fn up(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::warn!("shared state: Redis is back; sharing again");
        }
    }

    /// Writes one change (a field of the state hash, kept unless one reaching further is
    /// there).
    async fn write(&self, change: &SharedChange) {
        let Some((field, until, value)) = encode(change) else {
            return;
        };
        let key = self.state_key();
        let mut invocation = self.set_later.key(&key);
        invocation.arg(&field).arg(until).arg(&value);
        let _: Option<i64> = self
            .call("write", async |manager| {
                invocation.invoke_async(manager).await
            })
            .await;
    }

    /// Reads the whole state; returns the fields that changed since the last read (and
    /// remembers them), and drops fields that have passed.
    async fn read(&self) -> Vec<SharedChange> {
        let key = self.state_key();
        let Some(fields): Option<HashMap<String, String>> = self
            .call("read", async |manager| {
                redis::cmd("HGETALL").arg(&key).query_async(manager).await
            })
            .await
        else {
            return Vec::new();
        };
        let now = unix_ms(SystemTime::now());
        let mut changes = Vec::new();
        let mut passed = Vec::new();
        {
            // One look at what was seen, and no lock held across the await below.
            let mut seen = self.seen.lock();
            for (field, value) in &fields {
                let Some(change) = decode(field, value) else {
                    continue;
                };
                if until_of(&change).is_some_and(|until| until <= now) {
                    passed.push(field.clone());
                    continue;
                }
                if seen.get(field) != Some(value) {
                    changes.push(change);
                }
            }
            *seen = fields;
        }
        if !passed.is_empty() {
            let _: Option<i64> = self
                .call("clean", async |manager| {
                    redis::cmd("HDEL")
                        .arg(&key)
                        .arg(&passed)
                        .query_async(manager)
                        .await
                })
                .await;
        }
        changes
    }
}

impl SharedState for RedisState {
    fn key_id(&self, key: &ApiKey) -> KeyId {
        // HMAC-SHA-256 accepts a key of any length, so this cannot fail.
        let mut mac =
            match hmac::Hmac::<sha2::Sha256>::new_from_slice(self.config.secret.as_bytes()) {
                Ok(mac) => mac,
                Err(_) => return KeyId::new("unnamed"),
            };
        mac.update(key.expose().as_bytes());
        let digest = mac.finalize().into_bytes();
        KeyId::new(
            digest
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>(),
        )
    }

    fn publish(&self, change: SharedChange) {
        // Never waits: a full queue (Redis down for long) drops the change.
        let _ = self.writes.try_send(change);
    }

    fn subscribe(&self, listener: ChangeListener) {
        // Under the listeners' lock, so no read's changes fall between the replay and the
        // registration.
        let mut listeners = self.listeners.lock();
        let now = unix_ms(SystemTime::now());
        for (field, value) in self.seen.lock().iter() {
            if let Some(change) = decode(field, value)
                && until_of(&change).is_none_or(|until| until > now)
            {
                listener(&change);
            }
        }
        listeners.push(listener);
    }

    fn acquire_rate<'a>(&'a self, key: &'a KeyId, per_minute: u32) -> RateFuture<'a> {
        Box::pin(async move {
            let interval = rate_interval(per_minute);
            let redis_key = format!("{}:rate:{}", self.config.namespace, key.as_str());
            let interval_ms = interval.as_millis().max(1) as u64;
            let mut invocation = self.gcra.key(&redis_key);
            invocation.arg(interval_ms);
            match self
                .call("rate", async |manager| {
                    invocation.invoke_async::<i64>(manager).await
                })
                .await
            {
                Some(wait_ms) if wait_ms <= 0 => Ok(()),
                Some(wait_ms) => Err(Duration::from_millis(wait_ms as u64).min(MAX_RATE_WAIT)),
                // Redis is out of reach: this process spaces its own requests.
                None => self.local_rates.acquire(key, per_minute, Instant::now()),
            }
        })
    }
}

impl RedisState {
    fn spend_keys(&self, period: &str) -> (String, String) {
        let namespace = &self.config.namespace;
        (
            format!("{namespace}:spend:{period}"),
            format!("{namespace}:spend:{period}:holds"),
        )
    }

    /// Runs [`SPEND_HOLD`]: `None` when Redis is out of reach.
    async fn spend_script(
        &self,
        period: &str,
        id: &str,
        limit: Option<u64>,
        least: u64,
        ttl: Duration,
        keep: Option<Duration>,
    ) -> Option<(bool, Tally, u64)> {
        let (book, holds) = self.spend_keys(period);
        let mut invocation = self.spend_hold.key(&book);
        invocation
            .key(&holds)
            .arg(id)
            .arg(limit.map_or_else(|| "tally".to_owned(), |limit| limit.to_string()))
            .arg(least)
            .arg(ttl.as_millis().clamp(1, u128::from(u32::MAX)) as u64)
            .arg(keep.map_or(0, |keep| keep.as_secs().max(1)));
        let answer = self
            .call("spend", async |manager| {
                invocation.invoke_async::<Vec<i64>>(manager).await
            })
            .await?;
        // A broken server's answer is read as refusing nothing it did not say.
        let field = |index: usize| answer.get(index).map_or(0, |value| (*value).max(0) as u64);
        let tally = Tally::new(
            field(1),
            field(2),
            u32::try_from(field(3)).unwrap_or(u32::MAX),
            field(4),
        );
        Some((field(0) == 1, tally, field(4)))
    }
}

/// Spend counted in Redis, shared by every process using the same namespace: a period's
/// figures in `{namespace}:spend:{period}` and its holds beside, each call one Lua script.
/// Redis out of reach: this process counts alone (said once in the log) until it is back.
impl SpendLedger for RedisState {
    fn hold<'a>(
        &'a self,
        period: &'a str,
        id: &'a str,
        limit: u64,
        least: u64,
        ttl: Duration,
    ) -> SpendFuture<'a, Result<u64, Tally>> {
        Box::pin(async move {
            let keep = Some(ttl.max(Duration::from_secs(86_400)));
            match self
                .spend_script(period, id, Some(limit), least, ttl, keep)
                .await
            {
                Some((true, _, amount)) => Ok(amount),
                Some((false, tally, _)) => Err(tally),
                None => self.local_spend.hold_now(period, id, limit, least, ttl),
            }
        })
    }

    fn settle<'a>(
        &'a self,
        period: &'a str,
        id: Option<&'a str>,
        cost: u64,
        keep: Option<Duration>,
    ) -> SpendFuture<'a, ()> {
        Box::pin(async move {
            let (book, holds) = self.spend_keys(period);
            let mut invocation = self.spend_settle.key(&book);
            invocation
                .key(&holds)
                .arg(id.unwrap_or(""))
                .arg(cost)
                .arg(keep.map_or(0, |keep| keep.as_secs().max(1)));
            let settled = self
                .call("spend", async |manager| {
                    invocation.invoke_async::<i64>(manager).await
                })
                .await;
            if settled.is_none() {
                self.local_spend.settle_now(period, id, cost);
            }
        })
    }

    fn tally<'a>(&'a self, period: &'a str) -> SpendFuture<'a, Tally> {
        Box::pin(async move {
            match self
                .spend_script(period, "", None, 0, Duration::ZERO, None)
                .await
            {
                Some((_, tally, _)) => tally,
                None => self.local_spend.tally_now(period),
            }
        })
    }
}

async fn write_loop(state: Weak<RedisState>, mut queue: mpsc::Receiver<SharedChange>) {
    while let Some(change) = queue.recv().await {
        let Some(state) = state.upgrade() else { return };
        state.write(&change).await;
    }
}

async fn read_loop(state: Weak<RedisState>) {
    loop {
        let Some(strong) = state.upgrade() else {
            return;
        };
        let interval = strong.config.poll_interval;
        let changes = strong.read().await;
        if !changes.is_empty() {
            let listeners = strong.listeners.lock();
            for change in &changes {
                for listener in listeners.iter() {
                    listener(change);
                }
            }
        }
        strong.first_read.send_replace(true);
        drop(strong);
        tokio::time::sleep(interval).await;
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        since.as_millis().min(u128::from(u64::MAX)) as u64
    })
}

fn until_of(change: &SharedChange) -> Option<u64> {
    match change {
        SharedChange::KeyCooling { until, .. } | SharedChange::BreakerOpen { until, .. } => {
            Some(unix_ms(*until))
        }
        _ => None,
    }
}

/// A change as a field of the state hash, its end (ms since 1970) and its value.
fn encode(change: &SharedChange) -> Option<(String, u64, String)> {
    let clean = |reason: &str| {
        reason
            .replace(['|', '\n'], " ")
            .chars()
            .take(200)
            .collect::<String>()
    };
    let (field, until, reason) = match change {
        SharedChange::KeyCooling { key, until, reason } => (
            format!("cool:{}", key.as_str()),
            unix_ms(*until),
            clean(reason),
        ),
        SharedChange::KeyDisabled { key, reason } => (
            format!("off:{}", key.as_str()),
            unix_ms(SystemTime::now() + DISABLED_FOR),
            clean(reason),
        ),
        SharedChange::BreakerOpen { endpoint, until } => (
            format!("open:{}", clean(endpoint)),
            unix_ms(*until),
            String::new(),
        ),
        _ => return None,
    };
    Some((field, until, format!("{until}|{reason}")))
}

/// A field of the state hash as a change; `None` for anything malformed (what another
/// version or a stranger wrote is skipped, not trusted).
fn decode(field: &str, value: &str) -> Option<SharedChange> {
    let (until, reason) = value.split_once('|')?;
    let until_ms: u64 = until.parse().ok()?;
    let until = UNIX_EPOCH.checked_add(Duration::from_millis(until_ms))?;
    let reason = reason.chars().take(200).collect::<String>();
    let (kind, name) = field.split_once(':')?;
    if name.is_empty() || name.len() > 200 {
        return None;
    }
    Some(match kind {
        "cool" => SharedChange::KeyCooling {
            key: KeyId::new(name),
            until,
            reason,
        },
        // A disabled key comes back when its day has passed (the field is cleaned then).
        "off" if until > SystemTime::now() => SharedChange::KeyDisabled {
            key: KeyId::new(name),
            reason,
        },
        "open" => SharedChange::BreakerOpen {
            endpoint: name.to_owned(),
            until,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_the_hash_and_strangers_are_skipped() {
        let until = UNIX_EPOCH + Duration::from_millis(unix_ms(SystemTime::now()) + 30_000);
        let cooling = SharedChange::KeyCooling {
            key: KeyId::new("abc"),
            until,
            reason: "rate limited | with a bar\n".to_owned(),
        };
        let (field, _, value) = encode(&cooling).unwrap();
        let SharedChange::KeyCooling {
            key,
            until: back,
            reason,
        } = decode(&field, &value).unwrap()
        else {
            panic!("a cooldown comes back a cooldown");
        };
        assert_eq!((key, back), (KeyId::new("abc"), until));
        assert!(!reason.contains('|'));
        let open = SharedChange::BreakerOpen {
            endpoint: "sonar/default".to_owned(),
            until,
        };
        let (field, _, value) = encode(&open).unwrap();
        assert_eq!(decode(&field, &value), Some(open));
        for (field, value) in [
            ("cool:abc", "soon|x"),
            ("cool:abc", "99999999999999999999999|x"),
            ("cool:", "1|x"),
            ("what:abc", "1|x"),
            ("cool:abc", "no bar"),
        ] {
            assert_eq!(decode(field, value), None, "{field} = {value}");
        }
    }

    #[test]
    fn key_names_are_hmacs_of_the_secret_and_secrets_are_not_printed() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let config = RedisConfig::new("redis://user:hunter2@127.0.0.1:1/", "secret-one");
        let one = RedisState::connect(config.clone()).unwrap();
        let two =
            RedisState::connect(RedisConfig::new("redis://127.0.0.1:1/", "secret-two")).unwrap();
        let key = ApiKey::new("pplx-live-key");
        assert_eq!(one.key_id(&key), one.key_id(&key));
        assert_ne!(
            one.key_id(&key),
            two.key_id(&key),
            "another secret, another name"
        );
        assert_eq!(one.key_id(&key).as_str().len(), 64);
        let debug = format!("{config:?} {one:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("secret-one"),
            "{debug}"
        );
        assert!(matches!(
            RedisState::connect(RedisConfig::new("redis://127.0.0.1:1/", " ")),
            Err(Error::NoSecret)
        ));
    }
}
