//! What every API's stream decoder shares: the answer being assembled (bounded), the events
//! it emits, keep-alives and `event: error` frames. Each API's own events are read by its
//! [`Feed`] (in `api/`).

use std::collections::VecDeque;

use chat_core::{ChatEvent, ChatResponse, Error, FinishReason, Sources, Usage};

use crate::think::Split;

/// One API's reader of its stream's events.
pub(crate) trait Feed: std::fmt::Debug + Send {
    /// Decodes one event's data (never a keep-alive or an `event: error` frame), adding to
    /// `answer` and appending what it means to `out`. `event_type` is the SSE `event:` name
    /// (empty when the frame has none): a hint for what to expect, never trusted alone.
    fn feed(
        &mut self,
        answer: &mut Assembly,
        event_type: &[u8],
        data: &[u8],
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error>;

    /// Bytes held back and not yet in `answer` (a `<think>` tag cut in two), for the bound.
    fn held_bytes(&self) -> usize {
        0
    }

    /// Usage the feed knows and `answer` does not have yet (Sonar keeps it raw until needed).
    fn usage(&self) -> Option<Usage> {
        None
    }

    /// The `sequence_number` of the last event applied, for a stream that numbers its events
    /// (the Agent API): where a resumed stream must continue.
    fn cursor(&self) -> Option<u64> {
        None
    }

    /// The stream is read again from after [`cursor`](Feed::cursor): events at or below it
    /// are dropped, and the first one above it must be the next (a gap is an error: the
    /// events in it are lost).
    fn resuming(&mut self) {}

    /// Whether the run can still be read again: false once a resumed stream failed to
    /// continue it (a gap, another run).
    fn resumable(&self) -> bool {
        false
    }

    /// The error an `event: error` frame's `data` stands for.
    fn error(&self, data: &str) -> Error;

    /// Turns a fast path off (for the benches' comparison).
    #[cfg(feature = "bench-internals")]
    fn set_scan(&mut self, _scan: bool) {}
}

/// A stream's decoder: its API's [`Feed`] and the answer it assembles.
#[derive(Debug)]
pub(crate) struct Decoder {
    feed: Box<dyn Feed>,
    answer: Assembly,
}

/// The answer a stream assembles, whatever its API: the response so far, bounded.
#[derive(Debug)]
pub(crate) struct Assembly {
    pub(crate) response: ChatResponse,
    pub(crate) usage: Option<Usage>,
    done: bool,
    /// The bound on text + reasoning + sources, and what they take now.
    max_answer_bytes: usize,
    text_bytes: usize,
    sources_bytes: usize,
}

impl Decoder {
    /// Turns the targeted scanner off (for the benches' comparison).
    #[cfg(feature = "bench-internals")]
    pub(crate) fn set_scan(&mut self, scan: bool) {
        self.feed.set_scan(scan);
    }

    /// A decoder of the events `feed` reads that fails once the answer outgrows
    /// `max_answer_bytes`.
    pub(crate) fn bounded(feed: Box<dyn Feed>, max_answer_bytes: usize) -> Self {
        Decoder {
            feed,
            answer: Assembly {
                response: ChatResponse::default(),
                usage: None,
                done: false,
                max_answer_bytes,
                text_bytes: 0,
                sources_bytes: 0,
            },
        }
    }

    /// Fails once the answer outgrows its bound; checked after every event, so memory never
    /// exceeds the bound by more than one event.
    fn check_bound(&self) -> Result<(), Error> {
        let answer = &self.answer;
        let size = answer
            .text_bytes
            .saturating_add(answer.sources_bytes)
            .saturating_add(self.feed.held_bytes());
        if size > answer.max_answer_bytes {
            return Err(Error::too_large(answer.max_answer_bytes));
        }
        Ok(())
    }

    /// Whether the final event arrived.
    pub(crate) fn is_done(&self) -> bool {
        self.answer.done
    }

    /// Where a resumed stream must continue (see [`Feed::cursor`]).
    pub(crate) fn cursor(&self) -> Option<u64> {
        self.feed.cursor()
    }

    /// The stream is read again from after the cursor (see [`Feed::resuming`]).
    pub(crate) fn resuming(&mut self) {
        self.feed.resuming();
    }

    /// Whether the run can still be read again (see [`Feed::resumable`]).
    pub(crate) fn resumable(&self) -> bool {
        !self.answer.done && self.feed.resumable()
    }

    /// The run's id, once the server said it (to cancel an abandoned Agent API run).
    pub(crate) fn response_id(&self) -> Option<&str> {
        Some(self.answer.response.id.as_str()).filter(|id| !id.is_empty())
    }

    /// The usage known so far.
    pub(crate) fn usage(&self) -> Option<Usage> {
        self.answer.usage.clone().or_else(|| self.feed.usage())
    }

    /// Decodes one event, appending what it means to `out`.
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    pub(crate) fn feed(
        &mut self,
        event_type: &[u8],
        data: &str,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        self.feed_bytes(event_type, data.as_bytes(), out)
    }

    /// Decodes one event's data as the bytes it came in. The JSON decoder checks UTF-8 in
    /// what it decodes (the delta, the sources when they change), so the text so far that
    /// every Sonar chunk repeats is skipped, not validated twice.
    pub(crate) fn feed_bytes(
        &mut self,
        event_type: &[u8],
        data: &[u8],
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        if self.answer.done {
            return Ok(()); // Anything after the end (a `[DONE]` after the done chunk) is ignored.
        }
        if event_type == b"error" {
            return Err(self.feed.error(&String::from_utf8_lossy(data)));
        }
        if is_keep_alive(data) {
            return Ok(()); // A keep-alive ping, as the official consumers treat them.
        }
        self.feed.feed(&mut self.answer, event_type, data, out)?;
        self.check_bound()
    }
}

impl Assembly {
    /// Answer text.
    pub(crate) fn text(&mut self, text: String, out: &mut VecDeque<ChatEvent>) {
        self.text_bytes = self.text_bytes.saturating_add(text.len());
        self.response.text.push_str(&text);
        out.push_back(ChatEvent::TextDelta(text));
    }

    /// A reasoning event's `thought`, as a line of reasoning.
    pub(crate) fn thought(&mut self, thought: &str, out: &mut VecDeque<ChatEvent>) {
        let thought = thought.trim();
        if !thought.is_empty() {
            self.reasoning(format!("{thought}\n"), out);
        }
    }

    /// Reasoning text.
    pub(crate) fn reasoning(&mut self, text: String, out: &mut VecDeque<ChatEvent>) {
        self.text_bytes = self.text_bytes.saturating_add(text.len());
        self.response.reasoning.push_str(&text);
        out.push_back(ChatEvent::ReasoningDelta(text));
    }

    /// Text split at `<think>` tags: the reasoning, then the answer.
    pub(crate) fn split(&mut self, split: Split, out: &mut VecDeque<ChatEvent>) {
        if !split.reasoning.is_empty() {
            self.reasoning(split.reasoning, out);
        }
        if !split.text.is_empty() {
            self.text(split.text, out);
        }
    }

    /// A whole tool call; its arguments count toward the bound like text.
    pub(crate) fn tool_call(&mut self, call: chat_core::ToolCall, out: &mut VecDeque<ChatEvent>) {
        let size = call.id.len() + call.name.len() + call.arguments.len();
        self.text_bytes = self.text_bytes.saturating_add(size);
        self.response.tool_calls.push(call.clone());
        out.push_back(ChatEvent::ToolCall(call));
    }

    /// The sources as they are now (emitted when they changed).
    pub(crate) fn sources(&mut self, sources: Sources, out: &mut VecDeque<ChatEvent>) {
        if sources != self.response.sources && !sources.is_empty() {
            // Sources replace the earlier ones (and are held twice: the response and the
            // event).
            self.sources_bytes = sources_size(&sources).saturating_mul(2);
            self.response.sources = sources.clone();
            out.push_back(ChatEvent::Sources(sources));
        }
    }

    /// The end: the usage, then `Done` with the whole response.
    pub(crate) fn finish(&mut self, finish: FinishReason, out: &mut VecDeque<ChatEvent>) {
        if let Some(usage) = &self.usage {
            out.push_back(ChatEvent::Usage(Box::new(usage.clone())));
        }
        self.response.usage = self.usage.clone();
        self.response.finish_reason = finish;
        self.done = true;
        out.push_back(ChatEvent::Done(Box::new(std::mem::take(
            &mut self.response,
        ))));
    }
}

/// About what sources take in memory: their strings.
fn sources_size(sources: &Sources) -> usize {
    let citations: usize = sources.citations.iter().map(String::len).sum();
    let results: usize = sources
        .search_results
        .iter()
        .map(|result| {
            result.title.len()
                + result.url.len()
                + result.date.as_ref().map_or(0, String::len)
                + result.snippet.as_ref().map_or(0, String::len)
        })
        .sum();
    citations.saturating_add(results)
}

/// Whether an event's data is a keep-alive ping rather than a message: the official
/// consumers skip `data:` lines that are not JSON. Only data that cannot be the start of a
/// JSON message counts; a cut-off JSON object stays a protocol error, so that a broken
/// stream is never mistaken for a healthy one and no text is skipped.
fn is_keep_alive(data: &[u8]) -> bool {
    let data = data.trim_ascii();
    !(data.starts_with(b"{") || data.starts_with(b"[") || data.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Api;

    #[test]
    fn keep_alive_pings_are_skipped_but_a_cut_message_is_an_error() {
        let mut decoder = crate::api::decoder(Api::Sonar);
        let mut out = VecDeque::new();
        for ping in ["ping", "keep-alive", ": not a comment"] {
            decoder.feed(b"", ping, &mut out).unwrap();
        }
        assert!(out.is_empty());
        let cut = decoder.feed(b"", r#"{"id":"x","choices":[{"delta":{"con"#, &mut out);
        assert_eq!(cut.unwrap_err().kind(), chat_core::ErrorKind::Protocol);
        let mut decoder = crate::api::decoder(Api::Agent);
        decoder.feed(b"", "ping", &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn a_mid_stream_error_without_a_code_is_classified_by_its_kind_with_no_status() {
        use chat_core::ErrorKind;
        let failed = |data: &str| {
            let mut decoder = crate::api::decoder(Api::Sonar);
            decoder
                .feed(b"error", data, &mut VecDeque::new())
                .unwrap_err()
        };
        let bare = failed(r#"{"error": {"message": "the model broke"}}"#);
        assert_eq!(bare.kind(), ErrorKind::Server, "{bare}");
        assert_eq!(bare.status_code(), None, "{bare}");
        assert!(!bare.to_string().contains("500"), "{bare}");
        assert!(bare.is_retryable(), "a server's failure is retried: {bare}");
        let limited = failed(r#"{"error": {"message": "slow down", "type": "rate_limit_error"}}"#);
        assert_eq!(limited.kind(), ErrorKind::RateLimited, "{limited}");
        assert_eq!(limited.status_code(), None);
        // A numeric code is the server's own status.
        let coded = failed(r#"{"error": {"message": "overloaded", "code": 503}}"#);
        assert_eq!(coded.status_code(), Some(503), "{coded}");
    }
}
