use serde::{Deserialize, Serialize};

use crate::{ChatResponse, Sources, ToolCall, Usage};

/// What a streaming answer delivers, in order: deltas as they are generated, sources when
/// they first appear or change, usage, and `Done` with the assembled response.
///
/// No event carries the text so far (that would make a stream cost O(n²)); fold events into
/// an [`Accumulator`] when the whole is needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChatEvent {
    /// New answer text.
    TextDelta(String),
    /// New reasoning text, kept apart from the answer.
    ReasoningDelta(String),
    /// The sources, sent when they first appear and again only if they change.
    Sources(Sources),
    /// A whole call to one of the request's tools (a commit point, like text: never
    /// replayed behind the caller's back).
    ToolCall(ToolCall),
    /// Token counts (and cost) so far; boxed, so that every event stays small (each one
    /// moves through several streams on its way to the caller).
    Usage(Box<Usage>),
    /// The answer starts over (only with a provider's opt-in restart policy): discard every
    /// delta received so far; the new attempt's events follow from the start.
    Restart,
    /// The end: the assembled response, with its finish reason.
    Done(Box<ChatResponse>),
}

impl ChatResponse {
    /// The events a complete response is delivered as when it did not stream (a fallback, a
    /// cache entry of a plain answer, a `--no-stream` request shown like a stream): sources,
    /// reasoning, the whole text as one delta, the tool calls, usage, then `Done`.
    pub fn into_events(self) -> Vec<ChatEvent> {
        let mut events = Vec::with_capacity(5);
        if !self.sources.is_empty() {
            events.push(ChatEvent::Sources(self.sources.clone()));
        }
        if !self.reasoning.is_empty() {
            events.push(ChatEvent::ReasoningDelta(self.reasoning.clone()));
        }
        if !self.text.is_empty() {
            events.push(ChatEvent::TextDelta(self.text.clone()));
        }
        events.extend(self.tool_calls.iter().cloned().map(ChatEvent::ToolCall));
        if let Some(usage) = &self.usage {
            events.push(ChatEvent::Usage(Box::new(usage.clone())));
        }
        events.push(ChatEvent::Done(Box::new(self)));
        events
    }
}

/// Folds [`ChatEvent`]s into the answer so far.
///
/// ```
/// use chat_core::{Accumulator, ChatEvent};
///
/// let mut answer = Accumulator::default();
/// for event in [ChatEvent::TextDelta("Hel".into()), ChatEvent::TextDelta("lo".into())] {
///     answer.push(&event);
/// }
/// assert_eq!(answer.text(), "Hello");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    response: ChatResponse,
    done: bool,
}

impl Accumulator {
    /// Applies one event.
    pub fn push(&mut self, event: &ChatEvent) {
        match event {
            ChatEvent::TextDelta(text) => self.response.text.push_str(text),
            ChatEvent::ReasoningDelta(text) => self.response.reasoning.push_str(text),
            ChatEvent::Sources(sources) => self.response.sources = sources.clone(),
            ChatEvent::ToolCall(call) => self.response.tool_calls.push(call.clone()),
            ChatEvent::Usage(usage) => self.response.usage = Some((**usage).clone()),
            ChatEvent::Restart => *self = Accumulator::default(),
            ChatEvent::Done(response) => {
                self.response = (**response).clone();
                self.done = true;
            }
        }
    }

    /// The answer text so far.
    pub fn text(&self) -> &str {
        &self.response.text
    }

    /// The reasoning text so far.
    pub fn reasoning(&self) -> &str {
        &self.response.reasoning
    }

    /// Whether `Done` arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The response so far (complete once [`is_done`](Accumulator::is_done)).
    pub fn response(&self) -> &ChatResponse {
        &self.response
    }

    /// The response so far, by value.
    pub fn into_response(self) -> ChatResponse {
        self.response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FinishReason;

    #[test]
    fn a_restart_discards_everything_and_done_is_authoritative() {
        let mut answer = Accumulator::default();
        answer.push(&ChatEvent::ReasoningDelta("thinking".into()));
        answer.push(&ChatEvent::TextDelta("Olympus".into()));
        answer.push(&ChatEvent::Restart);
        assert_eq!((answer.text(), answer.reasoning()), ("", ""));
        answer.push(&ChatEvent::TextDelta("Mauna".into()));
        answer.push(&ChatEvent::TextDelta(" Kea".into()));
        answer.push(&ChatEvent::Sources(Sources {
            citations: vec!["https://example.org/a".into()],
            search_results: Vec::new(),
        }));
        assert_eq!(answer.text(), "Mauna Kea");
        assert!(!answer.is_done());
        let done = ChatResponse {
            text: "Mauna Kea".into(),
            finish_reason: FinishReason::Length,
            ..ChatResponse::default()
        };
        answer.push(&ChatEvent::Done(Box::new(done.clone())));
        assert!(answer.is_done());
        assert_eq!(answer.into_response(), done);
    }

    #[test]
    fn a_whole_response_folds_back_into_itself() {
        let response = ChatResponse {
            text: "Olympus Mons".into(),
            reasoning: "search".into(),
            sources: Sources {
                citations: vec!["https://example.org".into()],
                search_results: Vec::new(),
            },
            tool_calls: vec![crate::ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{}".into(),
            }],
            finish_reason: FinishReason::ToolCalls,
            ..ChatResponse::default()
        };
        let events = response.clone().into_events();
        assert_eq!(events.len(), 5);
        assert!(matches!(&events[3], ChatEvent::ToolCall(call) if call.id == "call_1"));
        let mut answer = Accumulator::default();
        events.iter().for_each(|event| answer.push(event));
        assert_eq!(answer.into_response(), response);
    }

    #[test]
    fn an_event_stays_small() {
        // Every event moves through several streams (the answer, telemetry, the spending
        // limit, the cache) on its way to the caller; a large variant (usage with its cost
        // was 232 bytes) made each text delta that large. Box big payloads.
        assert!(
            std::mem::size_of::<ChatEvent>() <= 80,
            "{} bytes",
            std::mem::size_of::<ChatEvent>()
        );
    }

    #[test]
    fn events_round_trip_through_json() {
        let events = [
            ChatEvent::TextDelta("a".into()),
            ChatEvent::Restart,
            ChatEvent::ToolCall(crate::ToolCall::default()),
            ChatEvent::Usage(Box::new(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
                cost: None,
                ..Usage::default()
            })),
        ];
        for event in events {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(
                serde_json::from_str::<ChatEvent>(&json).unwrap(),
                event,
                "{json}"
            );
        }
    }
}
