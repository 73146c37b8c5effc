//! Where answers are kept: in memory (moka) or in Redis.

use std::sync::Arc;
use std::time::Duration;

use chat_core::{ChatEvent, ChatResponse};

/// A complete answer as it streamed: its events with their original boundaries, the last
/// being `Done`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) events: Vec<ChatEvent>,
}

/// The version byte in front of every value stored in Redis.
#[cfg(feature = "redis")]
const VERSION: u8 = 1;

impl Answer {
    /// The `Done` response.
    pub(crate) fn response(&self) -> Option<&ChatResponse> {
        match self.events.last() {
            Some(ChatEvent::Done(response)) => Some(response),
            _ => None,
        }
    }

    /// Roughly the bytes it takes in memory, for the size bound.
    pub(crate) fn weight(&self) -> u32 {
        let bytes: usize = self
            .events
            .iter()
            .map(|event| match event {
                ChatEvent::TextDelta(text) | ChatEvent::ReasoningDelta(text) => text.len() + 32,
                ChatEvent::Sources(sources) => {
                    sources.citations.iter().map(String::len).sum::<usize>()
                        + sources
                            .search_results
                            .iter()
                            .map(|result| {
                                result.title.len()
                                    + result.url.len()
                                    + result.snippet.as_ref().map_or(0, String::len)
                                    + 64
                            })
                            .sum::<usize>()
                }
                ChatEvent::Done(response) => {
                    response.text.len() * 2 + response.reasoning.len() + 256
                }
                _ => 64,
            })
            .sum();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// The stored form: a version byte, then the events as JSON.
    #[cfg(feature = "redis")]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![VERSION];
        // Serialising plain data into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut bytes, &self.events);
        bytes
    }

    /// Reads the stored form; `None` for another version or a damaged value (a miss).
    #[cfg(feature = "redis")]
    pub(crate) fn decode(bytes: &[u8]) -> Option<Answer> {
        let (&version, json) = bytes.split_first()?;
        if version != VERSION {
            return None;
        }
        let events: Vec<ChatEvent> = serde_json::from_slice(json).ok()?;
        let answer = Answer { events };
        answer.response()?;
        Some(answer)
    }
}

/// Where the cache keeps answers. Its Debug output never shows a Redis password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// In this process, bounded by bytes.
    Memory {
        /// The most bytes of answers kept.
        max_bytes: u64,
    },
    /// In Redis (`redis://host:port/db`), shared by every process that uses it.
    #[cfg(feature = "redis")]
    Redis {
        /// The server's URL.
        url: String,
    },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Memory { max_bytes } => formatter
                .debug_struct("Memory")
                .field("max_bytes", max_bytes)
                .finish(),
            #[cfg(feature = "redis")]
            Backend::Redis { url } => formatter
                .debug_struct("Redis")
                .field("url", &redact_url(url))
                .finish(),
        }
    }
}

/// A URL with any password (`scheme://user:password@host`) replaced.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:[redacted]@{host}{path}")
        }
        None => url.to_owned(),
    }
}

pub(crate) enum Store {
    Memory(moka::future::Cache<String, Arc<Answer>>),
    #[cfg(feature = "redis")]
    Redis(crate::redis_store::RedisStore),
}

impl Store {
    pub(crate) fn new(
        backend: &Backend,
        ttl: Duration,
        idle: Duration,
        timeout: Duration,
    ) -> Result<Store, String> {
        let _ = timeout;
        match backend {
            Backend::Memory { max_bytes } => Ok(Store::Memory(
                moka::future::Cache::builder()
                    .weigher(|_key: &String, answer: &Arc<Answer>| answer.weight())
                    .max_capacity(*max_bytes)
                    .time_to_live(ttl)
                    .time_to_idle(idle)
                    .build(),
            )),
            #[cfg(feature = "redis")]
            Backend::Redis { url } => {
                crate::redis_store::RedisStore::new(url, ttl, timeout).map(Store::Redis)
            }
        }
    }

    /// Operations the store could not serve (always 0 in memory).
    pub(crate) fn unavailable(&self) -> u64 {
        match self {
            Store::Memory(_) => 0,
            #[cfg(feature = "redis")]
            Store::Redis(redis) => redis.unavailable(),
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Option<Arc<Answer>> {
        match self {
            Store::Memory(cache) => cache.get(key).await,
            #[cfg(feature = "redis")]
            Store::Redis(redis) => redis.get(key).await.map(Arc::new),
        }
    }

    pub(crate) async fn put(&self, key: String, answer: Arc<Answer>) {
        match self {
            Store::Memory(cache) => cache.insert(key, answer).await,
            #[cfg(feature = "redis")]
            Store::Redis(redis) => redis.put(&key, &answer).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_password_never_reaches_debug_output() {
        assert_eq!(
            redact_url("redis://default:hunter2@cache.internal:6379/0"),
            "redis://default:[redacted]@cache.internal:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        #[cfg(feature = "redis")]
        {
            let backend = Backend::Redis {
                url: "rediss://:hunter2@cache.internal:6380".into(),
            };
            let text = format!("{backend:?}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}
