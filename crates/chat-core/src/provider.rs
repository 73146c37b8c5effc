use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures_core::Stream;

use crate::{ChatEvent, ChatRequest, ChatResponse, Error};

/// A stream of answer events: `Send + 'static`, so it can be moved into a task and outlive
/// the call that made it. Dropping it cancels the request.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, Error>> + Send + 'static>>;

/// Something that answers chat requests: a vendor's API, a cache in front of one, a test
/// double. Object-safe: `Arc<dyn ChatProvider>` is how programs hold one.
///
/// A stream ends after [`ChatEvent::Done`] or after one `Err`; an `Err` after answer text
/// was delivered is an interruption ([`Error::is_interrupted`]) carrying that text.
#[async_trait]
pub trait ChatProvider: Send + Sync {
    /// Answers `request` in one piece.
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error>;

    /// Answers `request` as a stream of events. Nothing is sent until the stream is polled.
    fn chat_stream(&self, request: ChatRequest) -> ChatStream;

    /// Who would answer `request`, for cache keys: the provider, its API and the model after
    /// alias mapping, for example `perplexity/sonar/sonar-pro`. Never includes a key.
    fn answerer(&self, request: &ChatRequest) -> String {
        format!("unknown/{}", request.model)
    }

    /// Whether an answer to `request` may be kept and served again. `false` when it goes
    /// stale in minutes (a search limited to the last hour, say): only the provider knows
    /// which of its options mean that, so a cache asks it rather than reading them.
    fn cacheable(&self, request: &ChatRequest) -> bool {
        let _ = request;
        true
    }
}

#[async_trait]
impl<P: ChatProvider + ?Sized> ChatProvider for Arc<P> {
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        (**self).chat(request).await
    }

    fn chat_stream(&self, request: ChatRequest) -> ChatStream {
        (**self).chat_stream(request)
    }

    fn answerer(&self, request: &ChatRequest) -> String {
        (**self).answerer(request)
    }

    fn cacheable(&self, request: &ChatRequest) -> bool {
        (**self).cacheable(request)
    }
}

#[async_trait]
impl<P: ChatProvider + ?Sized> ChatProvider for Box<P> {
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        (**self).chat(request).await
    }

    fn chat_stream(&self, request: ChatRequest) -> ChatStream {
        (**self).chat_stream(request)
    }

    fn answerer(&self, request: &ChatRequest) -> String {
        (**self).answerer(request)
    }

    fn cacheable(&self, request: &ChatRequest) -> bool {
        (**self).cacheable(request)
    }
}
