//! What the caller holds of an answer, and the stream's failure made from it: before any
//! answer text an error is what it is; after, it is an interruption carrying exactly the text
//! the caller holds (the text since the last `Restart`, as `chat_core::Accumulator` keeps
//! it), the usage if known, and the cause as its source.

use chat_core::{ChatEvent, Error, Usage};

/// The bookkeeping of one stream's delivered events.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// The answer text the caller holds: since the last `Restart`.
    text: String,
    /// Whether any answer text (or a tool call) was handed out, in any attempt.
    committed: bool,
}

impl Ledger {
    /// Notes an event the caller was handed.
    pub(crate) fn note(&mut self, event: &ChatEvent) {
        match event {
            ChatEvent::TextDelta(text) => {
                self.text.push_str(text);
                self.committed = true;
            }
            // A delivered tool call is acted on like text: never replayed behind the caller.
            ChatEvent::ToolCall(_) => self.committed = true,
            ChatEvent::Restart => self.text.clear(),
            _ => {}
        }
    }

    /// The error that ends the stream, for `cause` (and the usage known, if any).
    pub(crate) fn failure(&mut self, cause: Error, usage: Option<Usage>) -> Error {
        if !self.committed {
            return cause;
        }
        tracing::warn!(%cause, delivered_chars = self.text.chars().count(), "stream interrupted");
        Error::interrupted(std::mem::take(&mut self.text), usage, cause)
    }
}

#[cfg(test)]
mod tests {
    use chat_core::ErrorKind;

    use super::*;

    fn deliver(events: &[ChatEvent]) -> Ledger {
        let mut ledger = Ledger::default();
        events.iter().for_each(|event| ledger.note(event));
        ledger
    }

    fn text(text: &str) -> ChatEvent {
        ChatEvent::TextDelta(text.into())
    }

    fn broken() -> Error {
        Error::connect(std::io::Error::other("reset"))
    }

    #[test]
    fn a_failure_after_a_restart_is_an_interruption_with_the_text_since_it() {
        let mut ledger = deliver(&[text("Olympus "), ChatEvent::Restart, text("Olym")]);
        let error = ledger.failure(broken(), None);
        assert!(error.is_interrupted(), "{error}");
        assert_eq!(error.partial_text(), Some("Olym"));
        // A restart and then a failure before any new text: still an interruption (the
        // caller was handed text), with the empty text it now holds.
        let mut ledger = deliver(&[text("Olympus "), ChatEvent::Restart]);
        let error = ledger.failure(broken(), None);
        assert!(error.is_interrupted(), "{error}");
        assert_eq!(error.partial_text(), Some(""));
    }

    #[test]
    fn an_interruption_gets_the_callers_text_and_keeps_its_usage_and_cause() {
        let mut usage = Usage::default();
        usage.total_tokens = 7;
        let mut ledger = deliver(&[text("Olympus "), text("Mons")]);
        let error = ledger.failure(broken(), Some(usage.clone()));
        assert_eq!(error.partial_text(), Some("Olympus Mons"));
        assert_eq!(error.partial_usage(), Some(&usage));
        let cause = std::error::Error::source(&error)
            .and_then(|cause| cause.downcast_ref::<Error>())
            .unwrap();
        assert_eq!(cause.kind(), ErrorKind::Connect);
    }

    #[test]
    fn a_delivered_tool_call_commits_like_text() {
        let call = chat_core::ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{}".into(),
        };
        let mut ledger = deliver(&[ChatEvent::ToolCall(call)]);
        let error = ledger.failure(broken(), None);
        assert!(error.is_interrupted(), "{error}");
        assert_eq!(error.partial_text(), Some(""));
    }

    #[test]
    fn errors_before_any_text_pass_as_they_are() {
        let mut ledger = deliver(&[ChatEvent::ReasoningDelta("thinking".into())]);
        let error = ledger.failure(Error::status(429, "slow down"), None);
        assert!(error.is_rate_limited());
        assert!(!error.is_interrupted());
    }
}
