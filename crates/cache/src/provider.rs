//! The decorator: hits, misses, coalescing of identical requests in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chat_core::{CacheMode, ChatEvent, ChatProvider, ChatRequest, ChatResponse, ChatStream, Error};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::key::cache_key;
use crate::store::{Answer, Backend, Store};

/// How the cache behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Where answers are kept.
    pub backend: Backend,
    /// How long an answer is kept (web-grounded answers go stale).
    pub ttl: Duration,
    /// An answer not asked for this long is dropped (in memory; Redis uses `ttl` only).
    pub idle: Duration,
    /// Cache answers the provider says go stale in minutes too
    /// (`ChatProvider::cacheable`: for Perplexity, searches limited to the last hour or day).
    pub cache_recent: bool,
    /// The longest a Redis operation may take before it counts as a miss.
    pub timeout: Duration,
}

impl Default for CacheConfig {
    /// In memory, 64 MiB, an hour to live, 30 minutes idle, 250 ms for Redis operations.
    fn default() -> Self {
        CacheConfig {
            backend: Backend::Memory {
                max_bytes: 64 << 20,
            },
            ttl: Duration::from_secs(3_600),
            idle: Duration::from_secs(1_800),
            cache_recent: false,
            timeout: Duration::from_millis(250),
        }
    }
}

/// What the cache has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Answered from the cache.
    pub hits: u64,
    /// Not in the cache: asked upstream (or joined a request that was).
    pub misses: u64,
    /// Joined an identical request already in flight instead of asking upstream.
    pub coalesced: u64,
    /// Complete answers stored.
    pub stores: u64,
    /// Reads and writes a shared store (Redis) could not serve: unreachable, too slow or
    /// failed. Each read was a miss and each write stored nothing; the requests themselves
    /// were answered. Always 0 in memory.
    pub unavailable: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    stores: AtomicU64,
}

/// Wraps any [`ChatProvider`] with a cache. See the crate docs for the rules.
///
/// Needs a Tokio runtime (with its time driver) where it is used: a miss runs its upstream
/// request in a spawned task, so that callers who leave do not cancel it for the others.
pub struct CachedProvider<P> {
    shared: Arc<Shared<P>>,
}

struct Shared<P> {
    inner: P,
    store: Store,
    config: CacheConfig,
    flights: Mutex<HashMap<(String, bool), Arc<Flight>>>,
    counters: Counters,
}

/// Clones share the cache, its flights and its counters (as clones of a provider share its
/// connections).
impl<P> Clone for CachedProvider<P> {
    fn clone(&self) -> Self {
        CachedProvider {
            shared: self.shared.clone(),
        }
    }
}

impl<P> std::fmt::Debug for CachedProvider<P> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CachedProvider")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// One upstream request shared by every identical request that arrived while it ran.
struct Flight {
    state: Mutex<FlightState>,
    /// Bumped on every new event and at the end; subscribers wait on it. When the last
    /// subscriber is gone, the upstream request is cancelled.
    version: watch::Sender<u64>,
}

#[derive(Default)]
struct FlightState {
    events: Vec<ChatEvent>,
    end: Option<Result<(), Error>>,
}

impl<P: ChatProvider + 'static> CachedProvider<P> {
    /// `inner` behind a cache configured by `config`.
    ///
    /// # Errors
    /// A config error for a bad Redis URL (an unreachable Redis is not an error: it is a miss).
    pub fn new(inner: P, config: CacheConfig) -> Result<Self, Error> {
        let store = Store::new(&config.backend, config.ttl, config.idle, config.timeout)
            .map_err(Error::config)?;
        Ok(CachedProvider {
            shared: Arc::new(Shared {
                inner,
                store,
                config,
                flights: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        })
    }

    /// The provider behind the cache.
    pub fn inner(&self) -> &P {
        &self.shared.inner
    }
}

impl<P> CachedProvider<P> {
    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let counters = &self.shared.counters;
        CacheStats {
            hits: counters.hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            coalesced: counters.coalesced.load(Ordering::Relaxed),
            stores: counters.stores.load(Ordering::Relaxed),
            unavailable: self.shared.store.unavailable(),
        }
    }
}

impl<P: ChatProvider + 'static> Shared<P> {
    fn key(&self, request: &ChatRequest) -> Option<String> {
        if request.cache == CacheMode::Bypass
            || !(self.config.cache_recent || self.inner.cacheable(request))
        {
            return None;
        }
        Some(cache_key(&self.inner.answerer(request), request))
    }

    /// A hit, when reading is allowed and the answer is there.
    async fn lookup(&self, key: &str, mode: CacheMode) -> Option<Arc<Answer>> {
        if mode != CacheMode::Use {
            return None;
        }
        let hit = self.store.get(key).await;
        if hit.is_some() {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Joins the flight for `key`, or starts it; returns it with a subscription made under the
    /// flights lock (so the flight cannot see "no subscribers" between the two).
    fn join(
        self: &Arc<Self>,
        key: String,
        request: ChatRequest,
        stream: bool,
    ) -> (Arc<Flight>, watch::Receiver<u64>) {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let mut flights = self.flights.lock();
        if let Some(flight) = flights.get(&(key.clone(), stream)) {
            self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
            let receiver = flight.version.subscribe();
            return (flight.clone(), receiver);
        }
        let (version, receiver) = watch::channel(0);
        let flight = Arc::new(Flight {
            state: Mutex::new(FlightState::default()),
            version,
        });
        flights.insert((key.clone(), stream), flight.clone());
        drop(flights);
        tokio::spawn(self.clone().fly(key, request, stream, flight.clone()));
        (flight, receiver)
    }

    /// Runs the upstream request of a flight to its end (or until nobody listens), then stores
    /// a complete answer.
    async fn fly(
        self: Arc<Self>,
        key: String,
        request: ChatRequest,
        stream: bool,
        flight: Arc<Flight>,
    ) {
        let mode = request.cache;
        let mut upstream = if stream {
            self.inner.chat_stream(request)
        } else {
            let inner_response = self.inner.chat(request).await;
            let events: Vec<Result<ChatEvent, Error>> = match inner_response {
                Ok(response) => response.into_events().into_iter().map(Ok).collect(),
                Err(error) => vec![Err(error)],
            };
            Box::pin(futures_util::stream::iter(events))
        };
        let end = loop {
            tokio::select! {
                item = upstream.next() => match item {
                    Some(Ok(event)) => {
                        // `Done` completes the answer: it is kept whoever still listens
                        // (a caller that stops at `Done` and leaves would otherwise close
                        // the flight before upstream's stream ends).
                        let done = matches!(event, ChatEvent::Done(_));
                        flight.state.lock().events.push(event);
                        if done {
                            break Ok(());
                        }
                        flight.version.send_modify(|version| *version += 1);
                    }
                    Some(Err(error)) => break Err(error),
                    None => break Ok(()),
                },
                () = flight.version.closed() => {
                    let mut flights = self.flights.lock();
                    if flight.version.receiver_count() == 0 {
                        // Everyone left: cancel upstream (by dropping it); nothing is stored.
                        flights.remove(&(key, stream));
                        return;
                    }
                }
            }
        };
        // An answer from a fallback model (`passed_over`) is not the asked model's: it is not
        // stored under the asked model's key, or the asked model would never be asked again.
        let complete = end.is_ok()
            && matches!(
                flight.state.lock().events.last(),
                Some(ChatEvent::Done(response)) if response.passed_over.is_empty()
            );
        // Stored before the followers see the end: once any caller has the whole answer, the
        // next identical request is a hit.
        if complete && mode != CacheMode::Bypass {
            // Only the final attempt's events: a restart discards what came before it.
            let events = {
                let state = flight.state.lock();
                let start = state
                    .events
                    .iter()
                    .rposition(|event| *event == ChatEvent::Restart)
                    .map_or(0, |index| index + 1);
                state.events[start..].to_vec()
            };
            self.store
                .put(key.clone(), Arc::new(Answer { events }))
                .await;
            self.counters.stores.fetch_add(1, Ordering::Relaxed);
        }
        flight.state.lock().end = Some(end);
        flight.version.send_modify(|version| *version += 1);
        self.flights.lock().remove(&(key, stream));
    }
}

/// Marks a replayed `Done` as coming from the cache.
fn cached(event: &ChatEvent) -> ChatEvent {
    match event {
        ChatEvent::Done(response) => {
            let mut response = response.clone();
            response.cached = true;
            // No request was made for this answer.
            response.attempts = 0;
            response.key_rotations = 0;
            response.resumed = 0;
            ChatEvent::Done(response)
        }
        other => other.clone(),
    }
}

/// Follows a flight from its first event: the events so far, then the live ones, then its end.
/// The log is shared: a follower copies out one event at a time as its caller takes it, so a
/// late joiner of a long answer never holds a second copy of the whole log.
fn follow(flight: Arc<Flight>, mut receiver: watch::Receiver<u64>) -> ChatStream {
    Box::pin(async_stream::stream! {
        let mut next = 0;
        loop {
            loop {
                let event = flight.state.lock().events.get(next).cloned();
                let Some(event) = event else { break };
                next += 1;
                yield Ok(event);
            }
            let end = {
                let state = flight.state.lock();
                // Events that came while the last one was taken are followed first.
                if state.events.len() > next {
                    continue;
                }
                state.end.clone()
            };
            match end {
                Some(Ok(())) => return,
                Some(Err(error)) => {
                    yield Err(error);
                    return;
                }
                None => {}
            }
            if receiver.changed().await.is_err() {
                // The flight was cancelled while this stream still listened: cannot happen,
                // since a flight is cancelled only when nobody listens.
                yield Err(Error::cancelled());
                return;
            }
        }
    })
}

#[async_trait]
impl<P: ChatProvider + 'static> ChatProvider for CachedProvider<P> {
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let shared = &self.shared;
        let Some(key) = shared.key(&request) else {
            return shared.inner.chat(request).await;
        };
        if let Some(hit) = shared.lookup(&key, request.cache).await
            && let Some(response) = hit.response()
        {
            let mut response = response.clone();
            response.cached = true;
            response.attempts = 0;
            response.key_rotations = 0;
            response.resumed = 0;
            return Ok(response);
        }
        let (flight, receiver) = shared.join(key, request, false);
        let mut events = follow(flight, receiver);
        let mut last = None;
        while let Some(event) = events.next().await {
            last = Some(event?);
        }
        match last {
            Some(ChatEvent::Done(response)) => Ok(*response),
            _ => Err(Error::protocol("the answer ended without its final event")),
        }
    }

    fn chat_stream(&self, request: ChatRequest) -> ChatStream {
        let shared = self.shared.clone();
        Box::pin(async_stream::stream! {
            let Some(key) = shared.key(&request) else {
                let mut upstream = shared.inner.chat_stream(request);
                while let Some(item) = upstream.next().await {
                    yield item;
                }
                return;
            };
            if let Some(hit) = shared.lookup(&key, request.cache).await {
                for event in &hit.events {
                    yield Ok(cached(event));
                }
                return;
            }
            let (flight, receiver) = shared.join(key, request, true);
            let mut events = follow(flight, receiver);
            while let Some(item) = events.next().await {
                yield item;
            }
        })
    }

    fn answerer(&self, request: &ChatRequest) -> String {
        self.shared.inner.answerer(request)
    }

    fn cacheable(&self, request: &ChatRequest) -> bool {
        self.shared.inner.cacheable(request)
    }
}
