//! The Redis backend: values with a TTL in a compact versioned encoding; when Redis is slow or
//! down, every operation degrades to a miss with a warning, and reconnection is tried at most
//! once a second. A request never fails because of the cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::Answer;

pub(crate) struct RedisStore {
    client: redis::Client,
    ttl_seconds: u64,
    timeout: Duration,
    connection: Mutex<Connection>,
    /// Operations Redis could not serve (unreachable, too slow, or failed).
    unavailable: AtomicU64,
}

#[derive(Default)]
struct Connection {
    manager: Option<ConnectionManager>,
    last_failure: Option<Instant>,
}

impl RedisStore {
    pub(crate) fn new(url: &str, ttl: Duration, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|error| format!("bad Redis URL: {error}"))?;
        Ok(RedisStore {
            client,
            ttl_seconds: ttl.as_secs().max(1),
            timeout,
            connection: Mutex::new(Connection::default()),
            unavailable: AtomicU64::new(0),
        })
    }

    /// How many operations Redis could not serve so far.
    pub(crate) fn unavailable(&self) -> u64 {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// A connection, connecting if there is none (not more than once a second after a
    /// failure); `None` counts as an operation Redis could not serve.
    async fn manager(&self) -> Option<ConnectionManager> {
        let manager = self.connect().await;
        if manager.is_none() {
            self.unavailable.fetch_add(1, Ordering::Relaxed);
        }
        manager
    }

    async fn connect(&self) -> Option<ConnectionManager> {
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
        match tokio::time::timeout(self.timeout, self.client.get_connection_manager()).await {
            Ok(Ok(manager)) => {
                connection.manager = Some(manager.clone());
                Some(manager)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cache: cannot connect to Redis; answering without the cache");
                connection.last_failure = Some(Instant::now());
                None
            }
            Err(_) => {
                tracing::warn!("cache: Redis did not answer in time; answering without the cache");
                connection.last_failure = Some(Instant::now());
                None
            }
        }
    }

    async fn failed(&self, what: &str, error: &str) {
        tracing::warn!(%error, "cache: Redis {what} failed; treated as a miss");
        self.unavailable.fetch_add(1, Ordering::Relaxed);
        let mut connection = self.connection.lock().await;
        connection.manager = None;
        connection.last_failure = Some(Instant::now());
    }

    pub(crate) async fn get(&self, key: &str) -> Option<Answer> {
        let mut manager = self.manager().await?;
        let value: Result<Option<Vec<u8>>, String> = match tokio::time::timeout(
            self.timeout,
            redis::cmd("GET").arg(key).query_async(&mut manager),
        )
        .await
        {
            Ok(result) => result.map_err(|error| error.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        match value {
            Ok(Some(bytes)) => Answer::decode(&bytes),
            Ok(None) => None,
            Err(error) => {
                self.failed("GET", &error).await;
                None
            }
        }
    }

    pub(crate) async fn put(&self, key: &str, answer: &Answer) {
        let Some(mut manager) = self.manager().await else {
            return;
        };
        let mut command = redis::cmd("SET");
        command
            .arg(key)
            .arg(answer.encode())
            .arg("EX")
            .arg(self.ttl_seconds);
        let outcome =
            match tokio::time::timeout(self.timeout, command.query_async::<()>(&mut manager)).await
            {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some("timed out".to_owned()),
            };
        if let Some(error) = outcome {
            self.failed("SET", &error).await;
        }
    }
}
