//! Sonar chat completions (`POST /chat/completions`), which any OpenAI-compatible endpoint
//! also speaks: the request body, the stream's chunks (through the targeted scanner first),
//! and the whole response.

use std::borrow::Cow;
use std::collections::VecDeque;

use chat_core::{ChatEvent, ChatRequest, ChatResponse, Error, FinishReason, Usage};
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::Protocol;
use crate::decode::{Assembly, Feed};
use crate::scan;
use crate::think::ThinkSplitter;
use crate::wire;

/// The Sonar models Perplexity serves on chat completions.
pub const SONAR_MODELS: &[&str] = &[
    "sonar",
    "sonar-pro",
    "sonar-reasoning-pro",
    "sonar-deep-research",
];

/// Whether `model` names a Sonar model.
pub(crate) fn names_model(model: &str) -> bool {
    model.starts_with("sonar")
}

/// Sonar on the wire.
pub(crate) struct Sonar;

impl Protocol for Sonar {
    fn path(&self) -> &'static str {
        "/chat/completions"
    }

    fn fields(&self, request: &ChatRequest, model: &str, _stream: bool) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("model".into(), model.into());
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|message| json!({"role": super::role(message.role), "content": message.content}))
            .collect();
        body.insert("messages".into(), Value::Array(messages));
        if let Ok(Value::Object(sampling)) = serde_json::to_value(&request.sampling) {
            body.extend(sampling);
        }
        body
    }

    fn decoder(&self) -> Box<dyn Feed> {
        Box::new(SonarFeed {
            scan: true,
            ..SonarFeed::default()
        })
    }

    fn response(&self, text: &str) -> Result<ChatResponse, Error> {
        let chunk: SonarChunk<'_, BodyChoiceWire<'_>> = serde_json::from_str(text)
            .map_err(|error| Error::protocol(format!("bad response body: {error}")))?;
        let mut response = ChatResponse::default();
        response.id = chunk.id.as_deref().unwrap_or_default().to_owned();
        response.model = chunk.model.as_deref().unwrap_or_default().to_owned();
        response.sources = wire::sources(chunk.citations, chunk.search_results)?;
        response.related_questions = wire::related_questions(chunk.related_questions);
        response.images = wire::images(chunk.images);
        response.usage = chunk.usage.and_then(|raw| wire::usage(raw.get()));
        let choice = chunk
            .choices
            .ok_or_else(|| Error::protocol("the response has no choices"))?;
        let content = choice
            .message
            .as_ref()
            .and_then(|message| message.content.as_deref())
            .unwrap_or_default();
        let (reasoning, answer) = crate::think::split_whole(content);
        response.text = answer;
        response.reasoning = reasoning;
        response.finish_reason = choice
            .finish_reason
            .as_deref()
            .map(FinishReason::parse)
            .unwrap_or_default();
        Ok(response)
    }
}

/// The reader of one Sonar stream: every chunk repeats the sources and the usage so far, so
/// they are kept raw and compared, and decoded only when they change (or at the end).
#[derive(Debug, Default)]
struct SonarFeed {
    splitter: ThinkSplitter,
    /// The raw JSON of the sources last emitted, to see whether they changed.
    citations_raw: String,
    results_raw: String,
    /// The cumulative usage as last sent, raw: decoded at the end or on demand.
    usage_raw: String,
    /// Whether chunks go through the targeted scanner first (always, but for the benches'
    /// comparison).
    scan: bool,
}

impl Feed for SonarFeed {
    fn feed(
        &mut self,
        answer: &mut Assembly,
        data: &[u8],
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        if data.trim_ascii() == b"[DONE]" {
            self.finish(answer, FinishReason::Stop, out);
            return Ok(());
        }
        if self.scan && self.feed_scanned(answer, data, out)? {
            return Ok(());
        }
        self.feed_chunk(answer, data, out)
    }

    fn held_bytes(&self) -> usize {
        self.splitter.held_bytes()
    }

    fn usage(&self) -> Option<Usage> {
        wire::usage(&self.usage_raw)
    }

    #[cfg(feature = "bench-internals")]
    fn set_scan(&mut self, scan: bool) {
        self.scan = scan;
    }
}

impl SonarFeed {
    /// A chunk decoded whole by serde.
    fn feed_chunk(
        &mut self,
        answer: &mut Assembly,
        data: &[u8],
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        let chunk: SonarChunk<'_> = serde_json::from_slice(data)
            .map_err(|error| Error::protocol(format!("bad chunk in the stream: {error}")))?;
        let response = &mut answer.response;
        if response.id.is_empty()
            && let Some(id) = &chunk.id
        {
            response.id = id.to_string();
        }
        if response.model.is_empty()
            && let Some(model) = &chunk.model
        {
            response.model = model.to_string();
        }
        let citations = chunk.citations.map_or("", |raw| raw.get());
        let results = chunk.search_results.map_or("", |raw| raw.get());
        if citations != self.citations_raw || results != self.results_raw {
            let sources = wire::sources(chunk.citations, chunk.search_results)?;
            self.citations_raw.clear();
            self.citations_raw.push_str(citations);
            self.results_raw.clear();
            self.results_raw.push_str(results);
            answer.sources(sources, out);
        }
        if let Some(usage) = chunk.usage {
            self.usage_raw.clear();
            self.usage_raw.push_str(usage.get());
        }
        let mut finish = None;
        if let Some(choice) = chunk.choices {
            if let Some(content) = choice
                .delta
                .as_ref()
                .and_then(|delta| delta.content.as_deref())
            {
                let split = self.splitter.push(content);
                answer.split(split, out);
            }
            finish = choice.finish_reason.as_deref().map(FinishReason::parse);
        }
        let done_object = chunk.object.as_deref() == Some("chat.completion.done");
        if finish.is_some() || done_object {
            answer.response.related_questions = wire::related_questions(chunk.related_questions);
            answer.response.images = wire::images(chunk.images);
            self.finish(answer, finish.unwrap_or_default(), out);
        }
        Ok(())
    }

    /// The fast path: the common chunk (a delta, sources as before, no finish, identity
    /// already known) through the targeted scanner. Returns false, having done nothing, for
    /// anything else: serde then decodes the chunk as before.
    fn feed_scanned(
        &mut self,
        answer: &mut Assembly,
        data: &[u8],
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<bool, Error> {
        let Some(chunk) = scan::chunk(data) else {
            return Ok(false);
        };
        let response = &answer.response;
        let known = !chunk.has_identity || (!response.id.is_empty() && !response.model.is_empty());
        let finishing = chunk.finish_reason.is_some_and(|reason| reason != b"null")
            || chunk.object == Some(b"\"chat.completion.done\"".as_slice());
        let same_sources = chunk.citations.unwrap_or_default() == self.citations_raw.as_bytes()
            && chunk.search_results.unwrap_or_default() == self.results_raw.as_bytes();
        if !known || finishing || !same_sources {
            return Ok(false);
        }
        let content = match chunk.delta {
            None => None,
            Some(scan::Delta::Plain(raw)) => {
                Some(Cow::Borrowed(std::str::from_utf8(raw).map_err(|_| {
                    Error::protocol("bad chunk in the stream: text is not UTF-8")
                })?))
            }
            Some(scan::Delta::Escaped(raw)) => Some(
                serde_json::from_slice::<Cow<'_, str>>(raw).map_err(|error| {
                    Error::protocol(format!("bad chunk in the stream: {error}"))
                })?,
            ),
        };
        if let Some(usage) = chunk.usage {
            let usage = std::str::from_utf8(usage)
                .map_err(|_| Error::protocol("bad chunk in the stream: usage is not UTF-8"))?;
            self.usage_raw.clear();
            self.usage_raw.push_str(usage);
        }
        if let Some(content) = content {
            let split = self.splitter.push(&content);
            answer.split(split, out);
        }
        Ok(true)
    }

    /// The end: what the `<think>` splitter held, the usage decoded, then `Done`.
    fn finish(
        &mut self,
        answer: &mut Assembly,
        finish: FinishReason,
        out: &mut VecDeque<ChatEvent>,
    ) {
        let rest = self.splitter.finish();
        answer.split(rest, out);
        if answer.usage.is_none() {
            answer.usage = wire::usage(&self.usage_raw);
        }
        answer.finish(finish, out);
    }
}

/// One Sonar streaming chunk (with `C` = [`ChoiceWire`]) or a whole non-streaming body (with
/// `C` = [`BodyChoiceWire`]): only what the client uses.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "C: Deserialize<'de>"))]
struct SonarChunk<'a, C = ChoiceWire<'a>> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    citations: Option<&'a RawValue>,
    #[serde(borrow, default)]
    search_results: Option<&'a RawValue>,
    /// Raw, so that the cumulative usage every chunk repeats is decoded only when needed.
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "first_choice")]
    choices: Option<C>,
    #[serde(borrow, default)]
    related_questions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    images: Option<&'a RawValue>,
}

/// A streaming choice. The cumulative `message` every chunk repeats is not declared, so it is
/// skipped, never decoded (decoding it made each chunk cost as much as the text so far).
#[derive(Debug, Deserialize)]
struct ChoiceWire<'a> {
    #[serde(borrow, default)]
    delta: Option<DeltaWire<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

/// A non-streaming choice: the whole message.
#[derive(Debug, Deserialize)]
struct BodyChoiceWire<'a> {
    #[serde(borrow, default)]
    message: Option<DeltaWire<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct DeltaWire<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

/// Takes the first element of `choices` and skips the rest, without a `Vec`.
fn first_choice<'de, D, C>(deserializer: D) -> Result<Option<C>, D::Error>
where
    D: serde::Deserializer<'de>,
    C: Deserialize<'de>,
{
    struct First<C>(std::marker::PhantomData<C>);
    impl<'de, C: Deserialize<'de>> Visitor<'de> for First<C> {
        type Value = Option<C>;
        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a list of choices")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let first = seq.next_element()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(First(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use chat_core::ChatEvent;
    use serde_json::{Value, json};

    use crate::api::Api;
    use crate::decode::Decoder;

    fn done(events: &[ChatEvent]) -> &chat_core::ChatResponse {
        match events.last() {
            Some(ChatEvent::Done(response)) => response,
            other => panic!("no Done: {other:?}"),
        }
    }

    #[test]
    fn sonar_usage_keeps_its_extras() {
        let mut decoder = Decoder::new(Api::Sonar);
        let mut out = VecDeque::new();
        let done_chunk = json!({"id": "x", "model": "sonar-deep-research", "object": "chat.completion.done",
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                "reasoning_tokens": 40, "citation_tokens": 90, "num_search_queries": 12,
                "cost": {"input_tokens_cost": 0.1, "output_tokens_cost": 0.2, "total_cost": 0.9,
                    "citation_tokens_cost": 0.3, "reasoning_tokens_cost": 0.2, "search_queries_cost": 0.06}},
            "choices": [{"index": 0, "finish_reason": "stop", "delta": {"role": "assistant", "content": "Hi"}}]});
        decoder
            .feed(b"", &done_chunk.to_string(), &mut out)
            .unwrap();
        let usage = done(&Vec::from(out)).usage.clone().unwrap();
        assert_eq!(
            (
                usage.reasoning_tokens,
                usage.citation_tokens,
                usage.num_search_queries
            ),
            (Some(40), Some(90), Some(12))
        );
        let cost = usage.cost.unwrap();
        assert_eq!(
            (
                cost.citation_tokens_cost,
                cost.reasoning_tokens_cost,
                cost.search_queries_cost
            ),
            (Some(0.3), Some(0.2), Some(0.06))
        );
    }

    #[test]
    fn a_reasoning_stream_without_its_closing_tag_still_delivers_the_answer() {
        let mut decoder = Decoder::new(Api::Sonar);
        let mut out = VecDeque::new();
        for (content, finish) in [
            ("<think>Olympus Mons", Value::Null),
            (" is tallest.", json!("stop")),
        ] {
            let chunk = json!({"id": "x", "choices": [{"delta": {"role": "assistant", "content": content}, "finish_reason": finish}]});
            decoder.feed(b"", &chunk.to_string(), &mut out).unwrap();
        }
        let events = Vec::from(out);
        assert_eq!(done(&events).text, "Olympus Mons is tallest.");
        assert!(
            events
                .iter()
                .any(|event| *event == ChatEvent::TextDelta("Olympus Mons is tallest.".into()))
        );
    }
}
