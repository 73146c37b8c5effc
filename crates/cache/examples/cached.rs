//! Puts the cache in front of a provider: the same question twice is one upstream call; the
//! second answer comes from the cache, its `Done` marked `cached`.
//!
//! `cargo run -p pplx-cache --example cached`

use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use cache::{CacheConfig, CachedProvider};
use chat_core::{ChatProvider, ChatRequest, ChatResponse, ChatStream, Error};

/// A provider that answers from a table and counts its calls (a real one is
/// `provider_perplexity::PerplexityProvider`).
#[derive(Default)]
struct Counting {
    calls: AtomicU32,
}

#[async_trait]
impl ChatProvider for Counting {
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut response = ChatResponse::default();
        response.text = format!("an answer to {:?}", request.messages[0].content);
        Ok(response)
    }

    fn chat_stream(&self, request: ChatRequest) -> ChatStream {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut response = ChatResponse::default();
        response.text = format!("an answer to {:?}", request.messages[0].content);
        Box::pin(futures_util::stream::iter(
            response.into_events().into_iter().map(Ok),
        ))
    }

    fn answerer(&self, request: &ChatRequest) -> String {
        format!("example/{}", request.model)
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let cached = CachedProvider::new(Counting::default(), CacheConfig::default())?;
    for _ in 0..2 {
        let answer = cached
            .chat(ChatRequest::new("sonar", "Explain quantum computing"))
            .await?;
        println!("{} (cached: {})", answer.text, answer.cached);
    }
    println!(
        "upstream calls: {}, {:?}",
        cached.inner().calls.load(Ordering::Relaxed),
        cached.stats()
    );
    Ok(())
}
