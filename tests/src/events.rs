//! What the test modules share for reading a streamed answer: its events (and its error), its
//! text, and its final response.

use chat_core::{ChatEvent, ChatProvider, ChatRequest, Error};
use futures_util::StreamExt;

/// The events of one streamed answer, and its error if it failed.
pub(crate) async fn collect(
    provider: &dyn ChatProvider,
    request: ChatRequest,
) -> (Vec<ChatEvent>, Option<Error>) {
    let mut stream = provider.chat_stream(request);
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => return (events, Some(error)),
        }
    }
    (events, None)
}

/// The answer text the events carry.
pub(crate) fn text(events: &[ChatEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            ChatEvent::TextDelta(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The final response (the last event must be `Done`).
pub(crate) fn done(events: &[ChatEvent]) -> &chat_core::ChatResponse {
    match events.last() {
        Some(ChatEvent::Done(response)) => response,
        other => panic!("no Done: {other:?}"),
    }
}
