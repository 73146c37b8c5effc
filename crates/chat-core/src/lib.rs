//! The shared language of chat providers: the [`ChatProvider`] trait, the [`ChatRequest`] it
//! takes, the [`ChatResponse`] and [`ChatEvent`]s it gives, and the one [`Error`] it fails with.
//! It holds no implementation; providers, caches and programs depend on it, and on nothing of
//! each other.
//!
//! - A streaming answer is a [`ChatStream`] of [`ChatEvent`]s: text and reasoning deltas,
//!   sources when they first appear or change, usage, an optional restart marker, and `Done`
//!   with the assembled [`ChatResponse`]. An [`Accumulator`] folds events into the answer.
//! - [`Error`] is opaque and answers questions: [`Error::is_retryable`],
//!   [`Error::retry_after`], [`Error::timeout_phase`], [`Error::partial_text`], ... With the
//!   `resilience` feature it implements `resilience::Classify` (and converts
//!   `resilience::Error`), so the retry driver can act on it without vendor types. Without the
//!   feature, a crate that only implements [`ChatProvider`] pulls in no tokio.
//!
//! ```
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use chat_core::*;
//!
//! struct Echo;
//!
//! #[async_trait]
//! impl ChatProvider for Echo {
//!     async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
//!         let mut answer = Accumulator::default();
//!         answer.push(&ChatEvent::TextDelta(request.messages[0].content.clone()));
//!         Ok(answer.into_response())
//!     }
//!     fn chat_stream(&self, request: ChatRequest) -> ChatStream {
//!         let mut response = ChatResponse::default();
//!         response.text = request.messages[0].content.clone();
//!         // The text, then `Done` with the whole answer: a stream ends with `Done` or one error.
//!         let events = response.into_events().into_iter().map(Ok);
//!         Box::pin(futures_util::stream::iter(events))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use futures_util::StreamExt;
//! let provider: Arc<dyn ChatProvider> = Arc::new(Echo);
//! let response = provider.chat(ChatRequest::new("sonar", "hello")).await.unwrap();
//! assert_eq!(response.text, "hello");
//! let events: Vec<_> = provider.chat_stream(ChatRequest::new("sonar", "hello")).collect().await;
//! assert!(matches!(events.last(), Some(Ok(ChatEvent::Done(done))) if done.text == "hello"));
//! # }
//! ```
//!
//! What it does not do: talk to any network, retry, cache, or know any vendor's wire format.
#![deny(missing_docs)]

mod attachment;
mod error;
mod event;
mod provider;
mod request;
mod response;

pub use attachment::{Attachment, AttachmentKind};
pub use error::{Error, ErrorKind, Report, TimeoutPhase};
pub use event::{Accumulator, ChatEvent};
pub use provider::{ChatProvider, ChatStream};
pub use request::{CacheMode, ChatRequest, Message, Role, Sampling, Tool, ToolCall};
pub use response::{ChatResponse, Cost, FinishReason, Image, SearchResult, Sources, Usage};
