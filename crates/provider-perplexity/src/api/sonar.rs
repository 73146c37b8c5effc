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

use super::{LongRunning, Protocol};
use crate::PerplexityConfig;
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

/// Where chat completions are asked.
const PATH: &str = "/chat/completions";

/// A chat-completions path answered 404 or 410: the endpoint serves none (Perplexity retired
/// Sonar chat completions on 2026-09-27). Said as such, and final: asking again cannot help.
/// Any other error, or another path's, is unchanged.
pub(crate) fn retired(path: &str, error: Error) -> Error {
    let chat_path = path.starts_with(PATH) || path.starts_with(ASYNC_PATH);
    match error.status_code() {
        Some(status @ (404 | 410)) if chat_path => Error::status(
            status,
            format!(
                "this endpoint does not serve chat completions ({status}, {}): Perplexity retired Sonar chat completions on 2026-09-27; use the Agent API (leave out --api sonar, or api = \"sonar\" in the config)",
                wire::short(&error.to_string())
            ),
        )
        .with_should_retry(Some(false)),
        _ => error,
    }
}

/// Where Sonar's async jobs are created (`POST`, the SDK's
/// `AsyncApiChatCompletionsRequestInput`: `{"request": {...}, "idempotency_key"}`).
const ASYNC_PATH: &str = "/async/chat/completions";

/// Whether a non-streaming request for `model` goes as an async job: deep research, which
/// runs for minutes (Perplexity's async API is for it).
fn runs_as_job(model: &str) -> bool {
    model.starts_with("sonar-deep-research")
}

/// An async create's body: the Sonar request `body` (never streamed) and the key that makes
/// a retried create return the job the first one started.
fn job_body(body: &[u8], idempotency_key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + idempotency_key.len() + 40);
    out.extend_from_slice(b"{\"request\":");
    out.extend_from_slice(body);
    out.extend_from_slice(b",\"idempotency_key\":");
    out.extend_from_slice(Value::from(idempotency_key).to_string().as_bytes());
    out.push(b'}');
    out
}

/// Where an async job is read (`GET /async/chat/completions/{id}`); only what a path segment
/// may hold of the server's id is kept.
fn job_path(id: &str) -> String {
    format!("{ASYNC_PATH}/{}", super::agent::path_safe(id))
}

#[derive(Deserialize)]
struct Job<'a> {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
    #[serde(default)]
    error_message: Option<String>,
}

/// A job body's id and whether it is still going (`CREATED` or `IN_PROGRESS`); an unreadable
/// body is not going (its reader says why).
fn job_state(body: &[u8]) -> (String, bool) {
    match serde_json::from_slice::<Job<'_>>(body) {
        Ok(job) => {
            let going = matches!(job.status.as_str(), "CREATED" | "IN_PROGRESS");
            (job.id, going)
        }
        Err(_) => (String::new(), false),
    }
}

/// The answer of a finished job: its completion when `COMPLETED`, the server's message (a
/// `Server` error, not retried: the job ran) when `FAILED`.
fn job_answer(body: &[u8]) -> Result<ChatResponse, Error> {
    let job: Job<'_> = serde_json::from_slice(body)
        .map_err(|error| Error::protocol(format!("bad async job body: {error}")))?;
    match (job.status.as_str(), job.response) {
        ("COMPLETED", Some(response)) if response.get() != "null" => Sonar.response(response.get()),
        ("FAILED", _) => {
            let message = job.error_message.unwrap_or_default();
            let message = wire::short(&message);
            Err(Error::reported(
                chat_core::ErrorKind::Server,
                format!("the async job {} failed: {message}", wire::short(&job.id)),
            )
            .with_should_retry(Some(false)))
        }
        (status, _) => Err(Error::protocol(format!(
            "the async job ended as {:?} without an answer",
            wire::short(status)
        ))),
    }
}

/// Sonar's async jobs (`POST /async/chat/completions`, read at
/// `GET /async/chat/completions/{id}`): deep research without streaming, at Perplexity's
/// host. Every try of one create carries one idempotency key, so a create whose reply was
/// lost and is tried again gets the job the first try started. Perplexity offers no way to
/// cancel a job: one whose caller leaves runs to its end.
pub(crate) struct Jobs;

impl LongRunning for Jobs {
    fn create(&self, request: &ChatRequest, model: &str, _stream: bool) -> (&'static str, Vec<u8>) {
        let plain = super::request_body(super::Api::Sonar, request, model, false);
        (ASYNC_PATH, job_body(&plain, &idempotency_key()))
    }

    /// A 404 or 405: the endpoint has no async jobs.
    fn refused_by(&self, error: &Error) -> bool {
        matches!(error.status_code(), Some(404 | 405))
    }

    fn state(&self, body: &[u8]) -> (String, bool) {
        job_state(body)
    }

    fn read_path(&self, id: &str) -> String {
        job_path(id)
    }

    fn cancel_path(&self, _id: &str) -> Option<String> {
        None
    }

    fn answer(&self, body: &[u8]) -> Result<ChatResponse, Error> {
        job_answer(body)
    }
}

/// A fresh idempotency key: 128 bits, different in every call and process.
fn idempotency_key() -> String {
    let mut rng = resilience::backoff::SmallRng::from_entropy();
    format!("pplx-{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// Sonar on the wire.
pub(crate) struct Sonar;

impl Protocol for Sonar {
    /// At Perplexity's host, tools: it answers them with a 400 ("Tool calling is not
    /// supported for this model"). Another OpenAI-compatible endpoint gets the tools, in its
    /// own format.
    fn refuses(
        &self,
        request: &ChatRequest,
        model: &str,
        config: &PerplexityConfig,
    ) -> Option<Error> {
        (!request.tools.is_empty() && config.is_perplexity()).then(|| {
            Error::reported(
                chat_core::ErrorKind::BadRequest,
                format!(
                    "tool calling is not supported for the Sonar model {model:?}: ask the Agent API (a provider/model name, an effort preset, or api = agent)"
                ),
            )
        })
    }

    /// Deep research without streaming, at Perplexity's host, runs as an async job.
    fn long_running(
        &self,
        model: &str,
        streaming: bool,
        config: &PerplexityConfig,
    ) -> Option<&'static dyn LongRunning> {
        (!streaming && runs_as_job(model) && config.is_perplexity()).then_some(&Jobs as _)
    }

    fn path(&self) -> &'static str {
        PATH
    }

    fn fields(&self, request: &ChatRequest, model: &str, _stream: bool) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("model".into(), model.into());
        let messages: Vec<Value> = request.messages.iter().map(message).collect();
        body.insert("messages".into(), Value::Array(messages));
        if !request.tools.is_empty() {
            // The chat-completions format (the SDK's `Tool`: `{type, function{name,
            // description, parameters}}`), for OpenAI-compatible endpoints: Sonar models
            // refuse tools, which the provider says before sending.
            let tools = request.tools.iter().map(|tool| {
                json!({"type": "function", "function": {
                    "name": tool.name, "description": tool.description, "parameters": tool.parameters,
                }})
            });
            body.insert("tools".into(), Value::Array(tools.collect()));
        }
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
        let mut calls = ToolCalls::default();
        for call in choice
            .message
            .and_then(|message| message.tool_calls)
            .into_iter()
            .flatten()
        {
            calls.add(call)?;
        }
        response.tool_calls = calls.finish()?;
        response.text = answer;
        response.reasoning = reasoning;
        response.finish_reason = if response.tool_calls.is_empty() {
            choice
                .finish_reason
                .as_deref()
                .map(FinishReason::parse)
                .unwrap_or_default()
        } else {
            FinishReason::ToolCalls
        };
        Ok(response)
    }
}

/// One message as chat completions take it (the SDK's `ChatMessageInput`): a tool's result
/// has role `tool` and the call's id, an assistant turn its `tool_calls`.
fn message(message: &chat_core::Message) -> Value {
    if message.role == chat_core::Role::Tool {
        return json!({"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content});
    }
    let mut value = json!({"role": super::role(message.role), "content": message.content});
    if !message.attachments.is_empty() {
        value["content"] = content_parts(message);
    }
    if !message.tool_calls.is_empty() {
        let calls = message.tool_calls.iter().map(|call| {
            json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}})
        });
        value["tool_calls"] = Value::Array(calls.collect());
    }
    value
}

/// A message with attachments as the SDK's content parts (`ChatMessageInput`): its text,
/// then `image_url` parts (an `https://` or `data:` URL) and `file_url` parts. A file sent
/// inline goes as its base64 text without the `data:` prefix, as Perplexity's file guide
/// asks, with its name.
fn content_parts(message: &chat_core::Message) -> Value {
    let mut parts = Vec::with_capacity(1 + message.attachments.len());
    if !message.content.is_empty() {
        parts.push(json!({"type": "text", "text": message.content}));
    }
    for attachment in &message.attachments {
        parts.push(match attachment.kind {
            chat_core::AttachmentKind::Image => {
                json!({"type": "image_url", "image_url": {"url": attachment.url}})
            }
            _ => {
                let url = attachment
                    .inline()
                    .map_or(attachment.url.as_str(), |(_, data)| data);
                let mut part = json!({"type": "file_url", "file_url": {"url": url}});
                if let Some(name) = &attachment.name {
                    part["file_name"] = name.as_str().into();
                }
                part
            }
        });
    }
    Value::Array(parts)
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
    /// Tool calls being assembled from fragments.
    tool_calls: ToolCalls,
}

impl Feed for SonarFeed {
    fn error(&self, data: &str) -> Error {
        super::stream_error(data)
    }

    fn feed(
        &mut self,
        answer: &mut Assembly,
        _event_type: &[u8],
        data: &[u8],
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        if data.trim_ascii() == b"[DONE]" {
            return self.finish(answer, FinishReason::Stop, out);
        }
        if self.scan && self.feed_scanned(answer, data, out)? {
            return Ok(());
        }
        self.feed_chunk(answer, data, out)
    }

    fn held_bytes(&self) -> usize {
        self.splitter
            .held_bytes()
            .saturating_add(self.tool_calls.bytes)
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
        let finish = match chunk.choices {
            Some(choice) => self.choice(answer, choice, out)?,
            None => None,
        };
        let done_object = chunk.object.as_deref() == Some("chat.completion.done");
        if finish.is_some() || done_object {
            answer.response.related_questions = wire::related_questions(chunk.related_questions);
            answer.response.images = wire::images(chunk.images);
            self.finish(answer, finish.unwrap_or_default(), out)?;
        }
        Ok(())
    }

    /// A chunk's choice: its text (split at `<think>` tags), its reasoning steps, its tool
    /// call fragments; and its finish reason.
    fn choice(
        &mut self,
        answer: &mut Assembly,
        mut choice: ChoiceWire<'_>,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<Option<FinishReason>, Error> {
        if let Some(content) = choice
            .delta
            .as_ref()
            .and_then(|delta| delta.content.as_deref())
        {
            let split = self.splitter.push(content);
            answer.split(split, out);
        }
        if let Some(steps) = choice
            .delta
            .as_mut()
            .and_then(|delta| delta.reasoning_steps.take())
        {
            for step in steps {
                if let Some(thought) = &step.thought {
                    answer.thought(thought, out);
                }
                let keywords = step.web_search.map(|search| search.search_keywords);
                if let Some(keywords) = keywords.filter(|keywords| !keywords.is_empty()) {
                    answer.reasoning(format!("Searching: {}\n", keywords.join("; ")), out);
                }
            }
        }
        if let Some(fragments) = choice.delta.and_then(|delta| delta.tool_calls) {
            for fragment in fragments {
                self.tool_calls.add(fragment)?;
            }
        }
        Ok(choice.finish_reason.as_deref().map(FinishReason::parse))
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
        let content = match chunk.delta.map(|delta| delta.text("chunk")) {
            None => None,
            Some(None) => return Ok(false),
            Some(Some(text)) => Some(text?),
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

    /// The end: what the `<think>` splitter held, the tool calls whole, the usage decoded,
    /// then `Done`.
    fn finish(
        &mut self,
        answer: &mut Assembly,
        finish: FinishReason,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        let rest = self.splitter.finish();
        answer.split(rest, out);
        let calls = self.tool_calls.finish()?;
        let called = !calls.is_empty();
        for call in calls {
            answer.tool_call(call, out);
        }
        if answer.usage.is_none() {
            answer.usage = wire::usage(&self.usage_raw);
        }
        answer.finish(
            if called {
                FinishReason::ToolCalls
            } else {
                finish
            },
            out,
        );
        Ok(())
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
    /// Tool calls: whole in a body, fragments in a stream (merged by [`ToolCalls`]).
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallWire>>,
    /// Concise mode's `chat.reasoning` chunks: the steps, in place of inline `<think>`.
    #[serde(default)]
    reasoning_steps: Option<Vec<ReasoningStepWire>>,
}

/// One reasoning step (the SDK's `ReasoningStep`): its thought, and what it searched.
#[derive(Debug, Deserialize)]
struct ReasoningStepWire {
    #[serde(default)]
    thought: Option<String>,
    #[serde(default)]
    web_search: Option<WebSearchStepWire>,
}

#[derive(Debug, Deserialize)]
struct WebSearchStepWire {
    #[serde(default)]
    search_keywords: Vec<String>,
}

/// One tool call, or a fragment of one: `index` says which call a fragment continues; the
/// first fragment names it (`id`, `function.name`), the rest add to `function.arguments`.
#[derive(Debug, Deserialize)]
struct ToolCallWire {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionWire>,
}

#[derive(Debug, Deserialize)]
struct FunctionWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// The most tool calls one answer may make (a server sending more is broken or hostile).
const MAX_TOOL_CALLS: usize = 128;

/// Tool calls assembled from a stream's fragments, in the order they began. A fragment goes
/// to the call of its `index`; without one, to the call of its `id`, else to the last call
/// (servers differ: openai-python #3201 shows fragments without ids and repeated indexes).
#[derive(Debug, Default)]
struct ToolCalls {
    calls: Vec<(Option<u64>, chat_core::ToolCall)>,
    bytes: usize,
}

impl ToolCalls {
    fn add(&mut self, fragment: ToolCallWire) -> Result<(), Error> {
        let id = fragment.id.filter(|id| !id.is_empty());
        let position = match (fragment.index, &id) {
            (Some(index), _) => self.calls.iter().position(|(at, _)| *at == Some(index)),
            (None, Some(id)) => self.calls.iter().position(|(_, call)| call.id == *id),
            (None, None) => self.calls.len().checked_sub(1),
        };
        let position = match position {
            Some(position) => position,
            None => {
                if self.calls.len() == MAX_TOOL_CALLS {
                    return Err(Error::protocol(format!(
                        "more than {MAX_TOOL_CALLS} tool calls in one answer"
                    )));
                }
                self.calls
                    .push((fragment.index, chat_core::ToolCall::default()));
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[position].1;
        if let Some(id) = id
            && call.id.is_empty()
        {
            self.bytes = self.bytes.saturating_add(id.len());
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name.filter(|name| !name.is_empty())
                && call.name.is_empty()
            {
                self.bytes = self.bytes.saturating_add(name.len());
                call.name = name;
            }
            if let Some(arguments) = function.arguments {
                self.bytes = self.bytes.saturating_add(arguments.len());
                call.arguments.push_str(&arguments);
            }
        }
        Ok(())
    }

    /// The whole calls; one that never got its id or name cannot be answered.
    fn finish(&mut self) -> Result<Vec<chat_core::ToolCall>, Error> {
        self.bytes = 0;
        std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(_, call)| {
                if call.id.is_empty() || call.name.is_empty() {
                    Err(Error::protocol("a tool call without its id or name"))
                } else {
                    Ok(call)
                }
            })
            .collect()
    }
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
    fn async_jobs_go_out_wrapped_and_end_in_their_answer_or_the_servers_message() {
        let body = super::job_body(br#"{"model":"sonar-deep-research","stream":false}"#, "k\"1");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["request"]["model"], "sonar-deep-research");
        assert_eq!(body["idempotency_key"], "k\"1");
        assert_eq!(
            super::job_path("job_1/../x?y"),
            "/async/chat/completions/job_1..xy"
        );
        assert_eq!(
            super::job_state(br#"{"id": "j", "status": "IN_PROGRESS"}"#),
            ("j".to_owned(), true)
        );
        assert!(!super::job_state(br#"{"id": "j", "status": "COMPLETED"}"#).1);
        assert!(!super::job_state(b"not json").1);
        let done = serde_json::json!({"id": "j", "status": "COMPLETED", "response": {
            "id": "c", "model": "sonar-deep-research", "created": 1, "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Found."}}]}});
        let answer = super::job_answer(done.to_string().as_bytes()).unwrap();
        assert_eq!(answer.text, "Found.");
        let failed = br#"{"id": "j", "status": "FAILED", "error_message": "research failed"}"#;
        let error = super::job_answer(failed).unwrap_err();
        assert_eq!(error.kind(), chat_core::ErrorKind::Server);
        assert!(!error.is_retryable(), "the job ran: not retried");
        assert!(error.to_string().contains("research failed"), "{error}");
        let empty = br#"{"id": "j", "status": "COMPLETED", "response": null}"#;
        assert_eq!(
            super::job_answer(empty).unwrap_err().kind(),
            chat_core::ErrorKind::Protocol
        );
    }

    #[test]
    fn tools_and_tool_turns_go_out_in_the_chat_completions_format() {
        let request = crate::api::tool_loop_request("gpt-5-mini");
        let body: Value = serde_json::from_slice(&crate::api::request_body(
            Api::Sonar,
            &request,
            "gpt-5-mini",
            true,
        ))
        .unwrap();
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
        );
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":18}"},
            ])
        );
    }

    #[test]
    fn attachments_go_out_as_the_sdks_content_parts() {
        let request = crate::api::attachments_request("sonar-pro");
        let body: Value = serde_json::from_slice(&crate::api::request_body(
            Api::Sonar,
            &request,
            "sonar-pro",
            true,
        ))
        .unwrap();
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": [
                {"type": "text", "text": "What do these show?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
                {"type": "image_url", "image_url": {"url": "https://img.example/cat.jpg"}},
                {"type": "file_url", "file_url": {"url": "JVBERi0xLjc="}, "file_name": "report.pdf"},
            ]}])
        );
    }

    /// Feeds chat-completions chunks; the events, or the error.
    fn sonar(chunks: &[Value]) -> Result<Vec<ChatEvent>, chat_core::Error> {
        let mut decoder = crate::api::decoder(Api::Sonar);
        let mut out = VecDeque::new();
        for chunk in chunks {
            decoder.feed(b"", &chunk.to_string(), &mut out)?;
        }
        Ok(out.into())
    }

    #[test]
    fn concise_mode_reasoning_steps_are_reasoning_not_lost() {
        let common = json!({"id": "r", "model": "sonar-reasoning-pro", "created": 1});
        let chunk = |object: &str, delta: Value, finish: Value| {
            let mut chunk = common.clone();
            chunk["object"] = object.into();
            chunk["choices"] = json!([{"index": 0, "delta": delta, "finish_reason": finish}]);
            chunk
        };
        let events = sonar(&[
            chunk("chat.reasoning", json!({"role": "assistant", "content": "", "reasoning_steps": [
                {"thought": "I should look this up.", "type": "web_search",
                 "web_search": {"search_keywords": ["tallest volcano", "Olympus Mons"], "search_results": []}}]}), Value::Null),
            // Identity known and sources unchanged: the scanner's fast path must leave this
            // one to serde, or its step is lost.
            chunk("chat.reasoning", json!({"role": "assistant", "content": "", "reasoning_steps": [
                {"thought": "Compare heights."}]}), Value::Null),
            chunk("chat.reasoning.done", json!({"role": "assistant", "content": ""}), Value::Null),
            chunk("chat.completion.chunk", json!({"role": "assistant", "content": "Olympus Mons."}), Value::Null),
            chunk("chat.completion.done", json!({"role": "assistant", "content": ""}), json!("stop")),
        ])
        .unwrap();
        let response = done(&events);
        assert_eq!(
            response.reasoning,
            "I should look this up.\nSearching: tallest volcano; Olympus Mons\nCompare heights.\n"
        );
        assert_eq!(response.text, "Olympus Mons.");
    }

    fn fragment(call: Value, finish: Value) -> Value {
        json!({"id": "c", "model": "gpt-5-mini", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "finish_reason": finish, "delta": {"tool_calls": [call]}}]})
    }

    #[test]
    fn streamed_tool_call_fragments_merge_by_index_into_whole_calls() {
        let events = sonar(&[
            fragment(json!({"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}), Value::Null),
            // Later fragments carry no id, and a fragment may repeat the id.
            fragment(json!({"index": 0, "function": {"arguments": "{\"city\":"}}), Value::Null),
            fragment(json!({"index": 1, "id": "call_b", "function": {"name": "get_time", "arguments": "{}"}}), Value::Null),
            fragment(json!({"index": 0, "id": "call_a", "function": {"arguments": "\"Paris\"}"}}), Value::Null),
            json!({"id": "c", "choices": [{"index": 0, "finish_reason": "tool_calls", "delta": {}}]}),
        ])
        .unwrap();
        let calls: Vec<(&str, &str, &str)> = events
            .iter()
            .filter_map(|event| match event {
                ChatEvent::ToolCall(call) => Some((
                    call.id.as_str(),
                    call.name.as_str(),
                    call.arguments.as_str(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls,
            [
                ("call_a", "get_weather", "{\"city\":\"Paris\"}"),
                ("call_b", "get_time", "{}")
            ]
        );
        assert_eq!(
            done(&events).finish_reason,
            chat_core::FinishReason::ToolCalls
        );
        // A call that never got its name is not a call anyone can answer.
        let error = sonar(&[fragment(
            json!({"index": 0, "id": "call_a", "function": {"arguments": "{}"}}),
            json!("tool_calls"),
        )])
        .unwrap_err();
        assert_eq!(error.kind(), chat_core::ErrorKind::Protocol);
        // The whole body says them at once.
        let body = json!({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}}]});
        let response = crate::api::full_response(Api::Sonar, body.to_string().as_bytes()).unwrap();
        assert_eq!(response.tool_calls[0].name, "get_weather");
        assert_eq!(response.finish_reason, chat_core::FinishReason::ToolCalls);
    }

    #[test]
    fn tool_call_arguments_count_toward_the_answer_bound() {
        let mut decoder = Decoder::bounded(Api::Sonar.protocol().decoder(), 64);
        let mut out = VecDeque::new();
        let long = "x".repeat(80);
        let chunk = fragment(
            json!({"index": 0, "id": "call_a", "function": {"name": "f", "arguments": long}}),
            Value::Null,
        );
        let error = decoder.feed(b"", &chunk.to_string(), &mut out).unwrap_err();
        assert_eq!(error.kind(), chat_core::ErrorKind::TooLarge, "{error}");
    }

    #[test]
    fn sonar_usage_keeps_its_extras() {
        let mut decoder = crate::api::decoder(Api::Sonar);
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
        let mut decoder = crate::api::decoder(Api::Sonar);
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
