//! The Agent API (`POST /v1/agent`, Responses-style events): the request body, the stream's
//! events, the whole response, its runs (cancelled when abandoned) and its error codes.

use std::borrow::Cow;
use std::collections::VecDeque;

use chat_core::{ChatEvent, ChatRequest, ChatResponse, Error, ErrorKind, SearchResult, Sources};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{Api, LongRunning, Protocol, translate};
use crate::PerplexityConfig;
use crate::decode::{Assembly, Feed};
use crate::scan;
use crate::wire::{self, UsageWire};

/// The Agent API's effort levels (Perplexity's docs, "Effort"; the SDK's `effort`): each
/// bundles a model, search settings, steps and tools. A level may be pinned to a version,
/// `fast@2026-10-16.0` (see [`is_effort`]).
pub const EFFORTS: &[&str] = &["fast", "low", "medium", "high", "xhigh"];

/// Every name the Agent API takes instead of a model: the effort levels, then the older
/// presets (`fast-search`, `pro-search`, `deep-research`), which go out as the deprecated
/// `preset` field.
pub const PRESETS: &[&str] = &[
    "fast",
    "low",
    "medium",
    "high",
    "xhigh",
    "fast-search",
    "pro-search",
    "deep-research",
];

/// The effort `--api agent` picks when no model is named (the official server's ask level).
pub const DEFAULT_PRESET: &str = "fast";

/// Whether `name` is an effort level, or one pinned to a version in the service's shape,
/// `NAME@YYYY-MM-DD.N` (`fast@2026-10-16.0`).
pub fn is_effort(name: &str) -> bool {
    let (level, version) = match name.split_once('@') {
        Some((level, version)) => (level, Some(version)),
        None => (name, None),
    };
    EFFORTS.contains(&level) && version.is_none_or(is_pinned_version)
}

/// `YYYY-MM-DD.N`: a date, a dot, then a counter.
fn is_pinned_version(version: &str) -> bool {
    let Some((date, counter)) = version.split_once('.') else {
        return false;
    };
    let digits = |part: &str, length: std::ops::RangeInclusive<usize>| {
        length.contains(&part.len()) && part.bytes().all(|byte| byte.is_ascii_digit())
    };
    let mut parts = date.split('-');
    let shaped = [4..=4, 2..=2, 2..=2]
        .into_iter()
        .all(|length| parts.next().is_some_and(|part| digits(part, length)));
    shaped && parts.next().is_none() && digits(counter, 1..=6)
}

/// The level of an effort name without its pinned version (`fast@2026-10-16.0` is `fast`);
/// any other name unchanged. Model families and deadlines go by the level.
pub(crate) fn unpinned(name: &str) -> &str {
    if is_effort(name) {
        name.split_once('@').map_or(name, |(level, _)| level)
    } else {
        name
    }
}

const PATH: &str = "/v1/agent";

/// The most images an answer keeps from image searches.
const MAX_IMAGES: usize = 100;

/// What of a server's run id a path segment may hold (the rest is dropped).
pub(crate) fn path_safe(id: &str) -> String {
    id.chars()
        .filter(|character| character.is_ascii_alphanumeric() || "-_.".contains(*character))
        .take(128)
        .collect()
}

/// Where a run is cancelled (`POST /v1/agent/{id}/cancel`, as the official server does); the
/// id comes from the server, so only what a path segment may hold is kept.
fn cancel_path(id: &str) -> String {
    format!("{PATH}/{}/cancel", path_safe(id))
}

/// Where a background run is polled (`GET /v1/responses/{id}`, the SDK's `retrieve`).
fn run_path(id: &str) -> String {
    format!("/v1/responses/{}", path_safe(id))
}

/// A response body's run id and whether the run is still going (`queued` or `in_progress`:
/// poll again); an unreadable body is not going (its reader reports why).
fn run_state(body: &[u8]) -> (String, bool) {
    #[derive(Deserialize)]
    struct State {
        #[serde(default)]
        id: String,
        #[serde(default)]
        status: String,
    }
    match serde_json::from_slice::<State>(body) {
        Ok(state) => {
            let going = matches!(state.status.as_str(), "queued" | "in_progress");
            (state.id, going)
        }
        Err(_) => (String::new(), false),
    }
}

/// Where a background run's events are read again after event `cursor` (docs, "Background
/// mode"; the SDK's `responses.retrieve(id, stream=True, starting_after=N)`).
fn resume_path(id: &str, cursor: u64) -> String {
    format!(
        "/v1/responses/{}?stream=true&starting_after={cursor}",
        path_safe(id)
    )
}

/// The Agent API on the wire.
pub(crate) struct Agent;

impl Protocol for Agent {
    fn path(&self) -> &'static str {
        PATH
    }

    fn fields(&self, request: &ChatRequest, model: &str, _stream: bool) -> Map<String, Value> {
        let mut body = Map::new();
        // A model, an effort level (`preset` is deprecated) or an older preset; a Sonar name
        // as the migration guide maps it (a name it cannot map was refused before sending).
        if let Some(engine) = translate::engine(model) {
            body.insert(engine.field.into(), engine.name.into());
        }
        // System messages go in as input items, as the official server sends them:
        // `instructions` would replace the preset's own tuned system prompt. `type` is
        // required on every item (the SDK's `InputMessage`).
        let input: Vec<Value> = request.messages.iter().flat_map(input_items).collect();
        body.insert("input".into(), Value::Array(input));
        if !request.tools.is_empty() {
            // The SDK's `FunctionToolParam`.
            let tools = request.tools.iter().map(|tool| {
                let mut function =
                    json!({"type": "function", "name": tool.name, "parameters": tool.parameters});
                if !tool.description.is_empty() {
                    function["description"] = tool.description.as_str().into();
                }
                function
            });
            body.insert("tools".into(), Value::Array(tools.collect()));
        }
        if let Some(max_tokens) = request.sampling.max_tokens {
            body.insert("max_output_tokens".into(), max_tokens.into());
        }
        if let Some(temperature) = request.sampling.temperature {
            body.insert("temperature".into(), temperature.into());
        }
        if let Some(top_p) = request.sampling.top_p {
            body.insert("top_p".into(), top_p.into());
        }
        // No `stream_options`: neither the SDK's request types nor the official MCP server
        // send it (usage comes in `response.completed`), and an unknown key risks a 400.
        body
    }

    fn options<'request>(
        &self,
        request: &'request ChatRequest,
        model: &str,
    ) -> Result<Cow<'request, Map<String, Value>>, Error> {
        translate::options(request, model).map(Cow::Owned)
    }

    /// What the Agent API has no field for, a Sonar name it has no mapping for, and function
    /// names it keeps for its own tools.
    fn refuses(
        &self,
        request: &ChatRequest,
        model: &str,
        _config: &PerplexityConfig,
    ) -> Option<Error> {
        translate::options(request, model).err()
    }

    fn decoder(&self) -> Box<dyn Feed> {
        Box::<AgentFeed>::default()
    }

    fn response(&self, text: &str) -> Result<ChatResponse, Error> {
        let body: AgentResponse<'_> = serde_json::from_str(text)
            .map_err(|error| Error::protocol(format!("bad response body: {error}")))?;
        match body.status.as_ref() {
            "failed" => return Err(failure(body.error, None)),
            "cancelled" => {
                let usage = body.usage.clone().map(UsageWire::into_usage);
                let error = failure(body.error, Some("the agent run was cancelled"));
                return Err(Error::incomplete(error.to_string()).with_usage(usage));
            }
            _ => {}
        }
        let mut response = ChatResponse::default();
        response.text = body.text();
        response.sources = body.sources()?;
        response.tool_calls = body.tool_calls()?;
        response.id = body.id.to_string();
        response.model = body.model.to_string();
        response.finish_reason = if response.tool_calls.is_empty() {
            body.finish_reason()
        } else {
            chat_core::FinishReason::ToolCalls
        };
        response.usage = body.usage.map(UsageWire::into_usage);
        Ok(response)
    }

    /// Every Agent API request can run in the background.
    fn long_running(
        &self,
        _model: &str,
        _streaming: bool,
        _config: &PerplexityConfig,
    ) -> Option<&'static dyn LongRunning> {
        Some(&Runs)
    }
}

/// The Agent API's background runs (docs, "Background mode"): created with
/// `background: true`, polled at `GET /v1/responses/{id}`, their events read again after a
/// sequence number, cancelled with `POST /v1/agent/{id}/cancel`.
pub(crate) struct Runs;

impl LongRunning for Runs {
    fn create(&self, request: &ChatRequest, model: &str, stream: bool) -> (&'static str, Vec<u8>) {
        let request = request.clone().with_option("background", true);
        (
            PATH,
            super::request_body(Api::Agent, &request, model, stream),
        )
    }

    /// A 400 naming `background`.
    fn refused_by(&self, error: &Error) -> bool {
        error.param() == Some("background")
    }

    fn state(&self, body: &[u8]) -> (String, bool) {
        run_state(body)
    }

    fn read_path(&self, id: &str) -> String {
        run_path(id)
    }

    fn resume_path(&self, id: &str, cursor: u64) -> Option<String> {
        Some(resume_path(id, cursor))
    }

    fn cancel_path(&self, id: &str) -> Option<String> {
        Some(cancel_path(id))
    }

    fn answer(&self, body: &[u8]) -> Result<ChatResponse, Error> {
        super::full_response(Api::Agent, body)
    }
}

/// A message with attachments as content parts (the SDK's `InputContentPartInput`): its
/// text as `input_text`, images as `input_image` (an `https://` or `data:` URL), files as
/// `input_file` (`file_url`, or inline as `file_data`: the base64 text without the `data:`
/// prefix, as Perplexity's file guide asks), with `filename`.
fn content_parts(message: &chat_core::Message) -> Value {
    let mut parts = Vec::with_capacity(1 + message.attachments.len());
    if !message.content.is_empty() {
        parts.push(json!({"type": "input_text", "text": message.content}));
    }
    for attachment in &message.attachments {
        parts.push(match attachment.kind {
            chat_core::AttachmentKind::Image => {
                json!({"type": "input_image", "image_url": attachment.url})
            }
            _ => {
                let mut part = match attachment.inline() {
                    Some((_, data)) => json!({"type": "input_file", "file_data": data}),
                    None => json!({"type": "input_file", "file_url": attachment.url}),
                };
                if let Some(name) = &attachment.name {
                    part["filename"] = name.as_str().into();
                }
                part
            }
        });
    }
    Value::Array(parts)
}

/// The input items of one message: a message item (`type` is required on every item, the
/// SDK's `InputMessage`), the calls an assistant turn made (`function_call`, replayed), or a
/// tool's result (`function_call_output`).
fn input_items(message: &chat_core::Message) -> Vec<Value> {
    if message.role == chat_core::Role::Tool {
        let call_id = message.tool_call_id.as_deref().unwrap_or_default();
        return vec![
            json!({"type": "function_call_output", "call_id": call_id, "output": message.content}),
        ];
    }
    let mut items = Vec::with_capacity(1 + message.tool_calls.len());
    if !message.attachments.is_empty() {
        items.push(json!({"type": "message", "role": super::role(message.role), "content": content_parts(message)}));
    } else if !message.content.is_empty() || message.tool_calls.is_empty() {
        items.push(json!({"type": "message", "role": super::role(message.role), "content": message.content}));
    }
    items.extend(message.tool_calls.iter().map(|call| {
        json!({"type": "function_call", "call_id": call.id, "name": call.name, "arguments": call.arguments})
    }));
    items
}

/// The reader of one Agent API stream.
#[derive(Debug, Default)]
struct AgentFeed {
    /// The run's search results, merged across its searches.
    sources: AgentSources,
    /// The `call_id`s of the tool calls delivered (each once, whether it came in an
    /// `output_item.done` event or only in the final response).
    calls: Vec<String>,
    /// The `sequence_number` of the last event applied.
    cursor: Option<u64>,
    /// Read again after a break: the next numbered event must follow the cursor.
    resuming: bool,
    /// A resumed stream did not continue the run: it cannot be read again.
    lost: bool,
    /// The tool step under way (a search, a URL read) as its telemetry span, open from its
    /// queries to its results.
    step: Option<tracing::Span>,
}

/// Why a resumed stream cannot continue the answer: it would lose or repeat events.
pub(crate) const NOT_RESUMABLE: &str = "the resumed stream does not continue the run";

impl Feed for AgentFeed {
    fn error(&self, data: &str) -> Error {
        super::stream_error(data)
    }

    fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    fn resuming(&mut self) {
        self.resuming = true;
    }

    fn resumable(&self) -> bool {
        !self.lost
    }

    fn feed(
        &mut self,
        answer: &mut Assembly,
        event_type: &[u8],
        data: &[u8],
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        if data.trim_ascii() == b"[DONE]" {
            // Responses-style streams end with their final event; a `[DONE]` from a proxy or
            // a compatible server says nothing more (and before the end, the stream's end
            // is what counts).
            return Ok(());
        }
        // The frequent events named as such by their `event:` line (as Perplexity names
        // every event) take the fast path; the scanner still reads their `type`.
        if (event_type == DELTA || PASSED_OVER.contains(&event_type))
            && self.feed_scanned(answer, data, out)?
        {
            return Ok(());
        }
        // Checked once, then read without checking each string again.
        let data = std::str::from_utf8(data)
            .map_err(|_| Error::protocol("bad event in the stream: it is not UTF-8"))?;
        let event: Event<'_> = serde_json::from_str(data)
            .map_err(|error| Error::protocol(format!("bad event in the stream: {error}")))?;
        if !self.in_sequence(event.sequence_number)? {
            return Ok(());
        }
        match event.kind.as_deref().unwrap_or_default() {
            "response.reasoning.started"
            | "response.reasoning.stopped"
            | "response.reasoning.search_queries"
            | "response.reasoning.search_results"
            | "response.reasoning.fetch_url_queries"
            | "response.reasoning.fetch_url_results"
            | "response.reasoning.image_search_queries"
            | "response.reasoning.image_search_results"
            | "response.skill.loaded" => return self.reasoning(answer, &event, out),
            "response.output_text.delta" => {
                if let Some(delta) = event.delta.as_deref().filter(|delta| !delta.is_empty()) {
                    answer.text(delta.to_owned(), out);
                }
            }
            "response.output_item.done" => self.item_done(answer, event.item, out)?,
            "response.created" | "response.in_progress" => {
                if let Some(response) = event.response
                    && let Ok(response) = serde_json::from_str::<AgentResponse<'_>>(response.get())
                {
                    answer.response.id = response.id.into_owned();
                    answer.response.model = response.model.into_owned();
                }
            }
            "response.completed" | "response.incomplete" => {
                self.completed(answer, event.response, out)?;
            }
            "response.failed" | "error" => {
                // A bare `error` event (a transport failure) carries its code and message
                // at the top level, as the Responses format writes them.
                let error = event.error.or_else(|| {
                    event.code.clone().map(|code| ErrorInfo {
                        message: event.message.as_deref().unwrap_or_default().to_owned(),
                        code: Some(code),
                        kind: None,
                    })
                });
                return Err(failure(error, event.message.as_deref()));
            }
            "response.cancelled" => {
                // What the run used before it was cancelled is billed: keep its usage.
                let usage = event
                    .response
                    .and_then(|raw| serde_json::from_str::<AgentResponse<'_>>(raw.get()).ok())
                    .and_then(|response| response.usage)
                    .map(UsageWire::into_usage);
                return Err(
                    Error::incomplete("the server cancelled the agent run").with_usage(usage)
                );
            }
            _ => {} // Other events say nothing the caller needs.
        }
        Ok(())
    }
}

/// A text delta's event type.
const DELTA: &[u8] = b"response.output_text.delta";

/// Events the decoder has no use for beyond their place in the run: the stream repeats
/// what they hold elsewhere (the text in its deltas and the final response, the items in
/// `output_item.done` and the final response).
const PASSED_OVER: &[&[u8]] = &[
    b"response.output_item.added",
    b"response.content_part.added",
    b"response.content_part.done",
    b"response.output_text.done",
];

impl AgentFeed {
    /// The fast path (`scan::agent_head`): a text delta, or an event passed over, applied
    /// without building the whole event. `false`, having done nothing, for anything else
    /// (serde then reads the event as before).
    fn feed_scanned(
        &mut self,
        answer: &mut Assembly,
        data: &[u8],
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<bool, Error> {
        let Some(head) = scan::agent_head(data) else {
            return Ok(false);
        };
        if head.kind == DELTA {
            let delta = match head.delta.map(|delta| delta.text("event")) {
                None => None,
                Some(None) => return Ok(false),
                Some(Some(text)) => Some(text?),
            };
            if self.in_sequence(head.sequence_number)?
                && let Some(delta) = delta.filter(|delta| !delta.is_empty())
            {
                answer.text(delta.into_owned(), out);
            }
            return Ok(true);
        }
        if PASSED_OVER.contains(&head.kind) {
            self.in_sequence(head.sequence_number)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether the event numbered `number` is the next to apply: `false` for one already
    /// applied (a resumed stream repeats nothing to the caller); a gap in a resumed stream is
    /// an error (the events in it are lost). The cursor moves to it.
    fn in_sequence(&mut self, number: Option<u64>) -> Result<bool, Error> {
        let Some(number) = number else {
            return Ok(true);
        };
        match self.cursor {
            Some(cursor) if number <= cursor => return Ok(false),
            Some(cursor) if self.resuming && number != cursor.saturating_add(1) => {
                self.lost = true;
                return Err(Error::incomplete(format!(
                    "{NOT_RESUMABLE}: it skips from event {cursor} to {number}"
                )));
            }
            _ => {}
        }
        self.cursor = Some(number);
        self.resuming = false;
        Ok(true)
    }

    /// `response.output_item.done`: only a function call is read here: the other items
    /// (messages, searches, sandbox and MCP records) come whole in the final response, and an
    /// item this client does not know must not break the stream.
    fn item_done(
        &mut self,
        answer: &mut Assembly,
        item: Option<&RawValue>,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        let Some(item) = item.filter(|item| {
            serde_json::from_str::<ItemKind<'_>>(item.get())
                .is_ok_and(|item| item.kind == "function_call")
        }) else {
            return Ok(());
        };
        let item: OutputItem<'_> = serde_json::from_str(item.get())
            .map_err(|error| Error::protocol(format!("bad output item: {error}")))?;
        self.call(answer, &item, out)
    }

    /// A `response.reasoning.*` event: its thought, and what it searched, read or found.
    fn reasoning(
        &mut self,
        answer: &mut Assembly,
        event: &Event<'_>,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        if let Some(thought) = event.thought.as_deref() {
            answer.thought(thought, out);
        }
        let listed = |items: &Option<Vec<Cow<'_, str>>>| -> String {
            let items: Vec<&str> = items.iter().flatten().map(|item| item.as_ref()).collect();
            items.join("; ")
        };
        match event.kind.as_deref().unwrap_or_default() {
            "response.reasoning.search_queries" => {
                self.step = Some(crate::telemetry::tool_step("web_search"));
                let queries = listed(&event.queries);
                if !queries.is_empty() {
                    answer.reasoning(format!("Searching: {queries}\n"), out);
                }
            }
            "response.reasoning.fetch_url_queries" => {
                self.step = Some(crate::telemetry::tool_step("fetch_url"));
                let urls = listed(&event.urls);
                if !urls.is_empty() {
                    answer.reasoning(format!("Reading: {urls}\n"), out);
                }
            }
            "response.reasoning.search_results" => {
                self.step = None;
                let grew = self.sources.add(event.results)?;
                if grew {
                    answer.sources(self.sources.sources(), out);
                }
            }
            "response.reasoning.image_search_queries" => {
                self.step = Some(crate::telemetry::tool_step("image_search"));
                let queries = listed(&event.queries);
                if !queries.is_empty() {
                    answer.reasoning(format!("Searching images: {queries}\n"), out);
                }
            }
            "response.reasoning.image_search_results" => {
                self.step = None;
                // The images found go with the answer (`ChatResponse::images`), each once.
                for image in wire::images(event.results) {
                    let images = &mut answer.response.images;
                    if images.len() < MAX_IMAGES
                        && !images.iter().any(|seen| seen.image_url == image.image_url)
                    {
                        images.push(image);
                    }
                }
            }
            "response.reasoning.fetch_url_results" => self.step = None,
            "response.skill.loaded" => {
                if let Some(name) = event.name.as_deref().filter(|name| !name.is_empty()) {
                    answer.reasoning(format!("Using skill: {name}\n"), out);
                }
            }
            _ => {} // `started`, `stopped`, `fetch_url_results`: the thought is all.
        }
        Ok(())
    }

    /// `response.completed` (or `incomplete`): the final response's sources, usage and id,
    /// then the end.
    fn completed(
        &mut self,
        answer: &mut Assembly,
        raw: Option<&RawValue>,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        let mut response: AgentResponse<'_> = match raw {
            Some(raw) => serde_json::from_str(raw.get())
                .map_err(|error| Error::protocol(format!("bad final response: {error}")))?,
            None => AgentResponse::default(),
        };
        // The end of another run is not the end of this answer (a resumed stream of the
        // wrong run, a proxy mixing streams).
        if !answer.response.id.is_empty()
            && !response.id.is_empty()
            && response.id != answer.response.id
        {
            self.lost = true;
            return Err(Error::incomplete(format!(
                "{NOT_RESUMABLE}: it ends run {} in place of {}",
                wire::short(&response.id),
                wire::short(&answer.response.id)
            )));
        }
        // The final output lists every search's results; the streamed batches may have
        // missed some (a proxy that drops events), never the other way round.
        let mut grew = false;
        for batch in response.search_result_batches() {
            grew |= self.sources.add(Some(batch))?;
        }
        if grew {
            answer.sources(self.sources.sources(), out);
        }
        for item in &response.output {
            self.call(answer, item, out)?;
        }
        if let Some(usage) = response.usage.take() {
            answer.usage = Some(usage.into_usage());
        }
        let finish = if self.calls.is_empty() {
            response.finish_reason()
        } else {
            chat_core::FinishReason::ToolCalls
        };
        if !response.id.is_empty() {
            answer.response.id = response.id.into_owned();
        }
        // The model that answered: with a `models` fallback chain, perhaps not the first.
        if !response.model.is_empty() {
            answer.response.model = response.model.into_owned();
        }
        answer.finish(finish, out);
        Ok(())
    }

    /// An output item: when it is a `function_call` not delivered yet, one tool call.
    fn call(
        &mut self,
        answer: &mut Assembly,
        item: &OutputItem<'_>,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<(), Error> {
        let Some(call) = item.tool_call()? else {
            return Ok(());
        };
        if !self.calls.contains(&call.id) {
            self.calls.push(call.id.clone());
            answer.tool_call(call, out);
        }
        Ok(())
    }
}

/// What the Agent API's `ErrorInfo` codes and types mean for a retry, matched exactly (ASCII
/// case aside): the codes and types the service and the official SDKs use, the
/// Responses-style names among them, and HTTP statuses written as codes. A failure whose code
/// and type are both unknown fails at once: a refused request or a content rule must not be
/// retried into a loop.
const CODES: &[(&str, ErrorKind)] = &[
    // Passing: a rate limit (the key cools) ...
    ("rate_limit_exceeded", ErrorKind::RateLimited),
    ("rate_limit_error", ErrorKind::RateLimited),
    ("too_many_requests", ErrorKind::RateLimited),
    ("429", ErrorKind::RateLimited),
    // ... or the service failing (retried).
    ("server_error", ErrorKind::Server),
    ("internal_error", ErrorKind::Server),
    ("internal_server_error", ErrorKind::Server),
    ("api_error", ErrorKind::Server),
    ("overloaded", ErrorKind::Server),
    ("overloaded_error", ErrorKind::Server),
    ("service_unavailable", ErrorKind::Server),
    ("unavailable", ErrorKind::Server),
    ("timeout", ErrorKind::Server),
    ("500", ErrorKind::Server),
    ("502", ErrorKind::Server),
    ("503", ErrorKind::Server),
    ("504", ErrorKind::Server),
    // The key: refused (disabled) or out of credit.
    ("authentication_error", ErrorKind::Auth),
    ("invalid_api_key", ErrorKind::Auth),
    ("permission_error", ErrorKind::Auth),
    ("permission_denied", ErrorKind::Auth),
    ("401", ErrorKind::Auth),
    ("403", ErrorKind::Auth),
    ("insufficient_quota", ErrorKind::Quota),
    ("quota_exceeded", ErrorKind::Quota),
    ("insufficient_credits", ErrorKind::Quota),
    ("402", ErrorKind::Quota),
    // The request: final.
    ("invalid_request_error", ErrorKind::BadRequest),
    ("invalid_request", ErrorKind::BadRequest),
    ("invalid_parameter", ErrorKind::BadRequest),
    ("invalid_model", ErrorKind::BadRequest),
    ("invalid_prompt", ErrorKind::BadRequest),
    ("400", ErrorKind::BadRequest),
    ("422", ErrorKind::BadRequest),
];

/// The kind a code (or type) names in [`CODES`].
pub(crate) fn code_kind(code: Option<&str>) -> Option<ErrorKind> {
    let code = code?.trim();
    CODES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(code))
        .map(|(_, kind)| *kind)
}

/// A failed Agent run (`response.failed` or an `error` event): the server's own message, of
/// the kind its code says ([`CODES`]; its type when the code is unknown), reported in
/// band: no HTTP status is made up for it.
pub(crate) fn failure(error: Option<ErrorInfo>, message: Option<&str>) -> Error {
    let error = error.unwrap_or_default();
    let message = Some(error.message.as_str())
        .filter(|message| !message.trim().is_empty())
        .or(message)
        .unwrap_or("the agent run failed");
    let kind = code_kind(error.code.as_deref())
        .or_else(|| code_kind(error.kind.as_deref()))
        .unwrap_or(ErrorKind::BadRequest);
    let text = match error.code.as_deref().filter(|code| !code.is_empty()) {
        Some(code) => format!("the agent run failed: {message} ({code})"),
        None => format!("the agent run failed: {message}"),
    };
    Error::reported(kind, text)
}

/// One Agent API event: only what the client uses.
#[derive(Debug, Deserialize)]
struct Event<'a> {
    #[serde(borrow, rename = "type", default)]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) delta: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) queries: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    pub(crate) urls: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    pub(crate) results: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) thought: Option<Cow<'a, str>>,
    /// Every event's place in its run (resumes continue after the last one applied).
    #[serde(default)]
    pub(crate) sequence_number: Option<u64>,
    /// `response.skill.loaded`: the skill's name.
    #[serde(borrow, default)]
    pub(crate) name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) response: Option<&'a RawValue>,
    /// `response.output_item.*` events: the item.
    #[serde(borrow, default)]
    pub(crate) item: Option<&'a RawValue>,
    /// `response.failed` and `error` events: the SDK's `ErrorInfo`, at the top level.
    #[serde(default)]
    pub(crate) error: Option<ErrorInfo>,
    /// Some `error` events carry only a top-level message.
    #[serde(borrow, default)]
    pub(crate) message: Option<Cow<'a, str>>,
    /// A bare `error` event's code, at the top level.
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) code: Option<String>,
}

/// An output item's type, and nothing else of it.
#[derive(Debug, Deserialize)]
struct ItemKind<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Cow<'a, str>,
}

/// The Agent API's response object (non-streaming body, or inside `response.completed`).
///
/// Its strings borrow from the JSON text where they can (a final response repeats the whole
/// answer, which a stream already has from its deltas: read in place, not copied).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AgentResponse<'a> {
    #[serde(borrow, default)]
    pub(crate) id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) model: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) status: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) output: Vec<OutputItem<'a>>,
    #[serde(default)]
    pub(crate) usage: Option<UsageWire>,
    #[serde(default)]
    pub(crate) error: Option<ErrorInfo>,
    #[serde(default)]
    pub(crate) incomplete_details: Option<IncompleteDetails>,
}

/// The SDK's `ErrorInfo`: `message`, with optional `code` and `type` strings.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ErrorInfo {
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(crate) code: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "lenient_string")]
    pub(crate) kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IncompleteDetails {
    #[serde(default)]
    pub(crate) reason: String,
}

/// A string, or a number written as one (servers disagree on `code`); anything else is none.
fn lenient_string<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(text) => Some(text),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct OutputItem<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    results: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Vec<ContentPart<'a>>,
    /// `function_call` items (the SDK's `FunctionCallOutputItem`).
    #[serde(borrow, default)]
    call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

impl OutputItem<'_> {
    /// The tool call a `function_call` item is (none for other items); one without
    /// `call_id` or `name` cannot be answered, and is a protocol error.
    fn tool_call(&self) -> Result<Option<chat_core::ToolCall>, Error> {
        if self.kind != "function_call" {
            return Ok(None);
        }
        let given = |field: &Option<Cow<'_, str>>| {
            field
                .as_deref()
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
        };
        let (Some(id), Some(name)) = (given(&self.call_id), given(&self.name)) else {
            return Err(Error::protocol(
                "a function_call output item without its call_id or name",
            ));
        };
        Ok(Some(chat_core::ToolCall {
            id,
            name,
            arguments: self.arguments.as_deref().unwrap_or_default().to_owned(),
        }))
    }
}

#[derive(Debug, Deserialize)]
struct ContentPart<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Cow<'a, str>,
}

impl AgentResponse<'_> {
    /// The answer: the `output_text` parts of the message items (other parts, such as
    /// reasoning, are not answer text).
    pub(crate) fn text(&self) -> String {
        self.output
            .iter()
            .filter(|item| item.kind == "message")
            .flat_map(|item| item.content.iter())
            .filter(|part| part.kind == "output_text")
            .map(|part| part.text.as_ref())
            .collect()
    }

    /// The tool calls of the output (its `function_call` items), in order.
    pub(crate) fn tool_calls(&self) -> Result<Vec<chat_core::ToolCall>, Error> {
        let mut calls = Vec::new();
        for item in &self.output {
            if let Some(call) = item.tool_call()? {
                calls.push(call);
            }
        }
        Ok(calls)
    }

    /// The raw `results` of every `search_results` item of the output.
    pub(crate) fn search_result_batches(&self) -> impl Iterator<Item = &RawValue> {
        self.output
            .iter()
            .filter(|item| item.kind == "search_results")
            .filter_map(|item| item.results)
    }

    /// Every `search_results` item of the output, merged and numbered by id.
    pub(crate) fn sources(&self) -> Result<Sources, Error> {
        let mut merged = AgentSources::default();
        for batch in self.search_result_batches() {
            merged.add(Some(batch))?;
        }
        Ok(merged.sources())
    }

    /// Why the answer stopped: `length` when the output-token limit cut it.
    pub(crate) fn finish_reason(&self) -> chat_core::FinishReason {
        let cut = self.status == "incomplete"
            || self
                .incomplete_details
                .as_ref()
                .is_some_and(|details| details.reason.contains("max_output_tokens"));
        if cut {
            chat_core::FinishReason::Length
        } else {
            chat_core::FinishReason::Stop
        }
    }
}

/// The search results of one Agent run, merged across its searches (a multi-step preset
/// searches several times, and its answer's `[n]` marks point at result ids across all of
/// them), as the official MCP server numbers them: by id when every result has a distinct
/// one, else by position.
#[derive(Debug, Default)]
pub(crate) struct AgentSources {
    results: Vec<SearchResult>,
    /// Some result had no id, or two results shared one.
    ids_unusable: bool,
    /// The batches added, as their JSON text: the final response lists every search's
    /// results again, and a batch already added (byte for byte) adds nothing, so it is not
    /// read twice. At most `REMEMBERED_BYTES` of them (a batch past that is read again if
    /// it comes again): what a server sends must not grow this without bound.
    batches: Vec<Box<str>>,
    /// The bytes in `batches`.
    remembered: usize,
}

/// How much of the batches' text an answer's sources remember (a search batch is a few
/// KB; the sources themselves are under the answer's byte bound).
const REMEMBERED_BYTES: usize = 64 * 1024;

impl AgentSources {
    /// Adds one batch (raw `results` JSON); whether anything new came.
    pub(crate) fn add(&mut self, raw: Option<&RawValue>) -> Result<bool, Error> {
        if let Some(raw) = raw {
            let text = raw.get();
            if self.batches.iter().any(|seen| **seen == *text) {
                return Ok(false);
            }
            if self.remembered.saturating_add(text.len()) <= REMEMBERED_BYTES {
                self.remembered += text.len();
                self.batches.push(text.into());
            }
        }
        let batch = wire::sources(None, raw)?.search_results;
        let before = self.results.len();
        for result in batch {
            if result.url.is_empty() {
                continue;
            }
            let same_id = result
                .id
                .and_then(|id| self.results.iter().find(|seen| seen.id == Some(id)));
            match (result.id, same_id) {
                (Some(_), Some(seen)) if seen.url == result.url => continue,
                (Some(_), Some(_)) | (None, _) => self.ids_unusable = true,
                (Some(_), None) => {}
            }
            if !self.results.iter().any(|seen| seen.url == result.url) || result.id.is_some() {
                self.results.push(result);
            }
        }
        Ok(self.results.len() != before)
    }

    /// The sources: citations ordered by id (or by first appearance when ids are unusable),
    /// each URL once.
    pub(crate) fn sources(&self) -> Sources {
        let mut results = self.results.clone();
        if self.ids_unusable {
            let mut seen = std::collections::HashSet::new();
            results.retain(|result| seen.insert(result.url.clone()));
            results.iter_mut().for_each(|result| result.id = None);
        } else {
            results.sort_by_key(|result| result.id);
        }
        let mut citations: Vec<String> = Vec::with_capacity(results.len());
        for result in &results {
            if !citations.contains(&result.url) {
                citations.push(result.url.clone());
            }
        }
        Sources::new(citations, results)
    }
}

#[cfg(test)]
mod tests {
    use chat_core::{ChatRequest, FinishReason, Message};
    use resilience::{Classify, FailureClass};
    use serde_json::{Value, json};

    use super::*;
    use crate::api::{Api, full_response, request_body};

    /// Feeds Agent API events (as JSON values) and returns what came out, or the error.
    fn agent(events: &[Value]) -> (Vec<ChatEvent>, Option<Error>) {
        let mut decoder = crate::api::decoder(Api::Agent);
        let mut out = VecDeque::new();
        for event in events {
            let kind = event["type"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec();
            // A JSON string stands for raw data (a marker or a ping), anything else for itself.
            let data = match event {
                Value::String(raw) => raw.clone(),
                other => other.to_string(),
            };
            if let Err(error) = decoder.feed(&kind, &data, &mut out) {
                return (out.into(), Some(error));
            }
        }
        (out.into(), None)
    }

    fn done(events: &[ChatEvent]) -> &ChatResponse {
        match events.last() {
            Some(ChatEvent::Done(response)) => response,
            other => panic!("no Done: {other:?}"),
        }
    }

    fn result(id: u64, url: &str) -> Value {
        json!({"id": id, "title": format!("T{id}"), "url": url, "snippet": "s"})
    }

    #[test]
    fn agent_requests_carry_typed_input_items_and_keep_system_messages_as_items() {
        let mut request = ChatRequest::new("medium", "Explain quantum computing");
        request.messages.insert(0, Message::system("Be brief."));
        let body: Value =
            serde_json::from_slice(&request_body(Api::Agent, &request, "medium", true)).unwrap();
        assert_eq!(body["effort"], "medium");
        assert!(
            body.get("preset").is_none(),
            "effort, not the deprecated preset"
        );
        assert!(
            body.get("instructions").is_none(),
            "the preset's prompt stays"
        );
        assert_eq!(
            body["input"],
            json!([
                {"type": "message", "role": "system", "content": "Be brief."},
                {"type": "message", "role": "user", "content": "Explain quantum computing"},
            ])
        );
        assert!(
            body.get("stream_options").is_none(),
            "not an Agent API field: neither the SDK nor the official server sends it"
        );
        let body: Value = serde_json::from_slice(&request_body(
            Api::Agent,
            &request,
            "openai/gpt-5-mini",
            false,
        ))
        .unwrap();
        assert_eq!(body["model"], "openai/gpt-5-mini");
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn effort_levels_go_as_effort_pinned_or_not_and_older_presets_as_preset() {
        let field = |name: &str| {
            let request = ChatRequest::new(name, "Explain quantum computing");
            let body: Value =
                serde_json::from_slice(&request_body(Api::Agent, &request, name, true)).unwrap();
            let keys: Vec<&str> = ["effort", "preset", "model"]
                .into_iter()
                .filter(|key| body.get(*key).is_some())
                .collect();
            assert_eq!(keys.len(), 1, "{body}");
            (
                keys[0].to_owned(),
                body[keys[0]].as_str().unwrap().to_owned(),
            )
        };
        for level in [
            "fast",
            "low",
            "medium",
            "high",
            "xhigh",
            "fast@2026-10-16.0",
        ] {
            assert_eq!(field(level), ("effort".to_owned(), level.to_owned()));
        }
        for preset in ["fast-search", "pro-search", "deep-research"] {
            assert_eq!(field(preset), ("preset".to_owned(), preset.to_owned()));
        }
        assert!(!is_effort("fast@"), "a pin needs a version");
        assert!(!is_effort("turbo@2026-10-16.0"), "only the levels pin");
        for bad in [
            "fast@2026/10",
            "fast@bogus",
            "fast@2026-10-16",
            "fast@26-10-16.0",
            "fast@2026-10-16.x",
            "fast@2026-10-16-01.0",
        ] {
            assert!(!is_effort(bad), "{bad}: a version is NAME@YYYY-MM-DD.N");
        }
        assert_eq!(unpinned("high@2026-10-16.0"), "high");
        assert_eq!(unpinned("sonar@x"), "sonar@x");
    }

    #[test]
    fn a_failed_run_keeps_the_servers_message_and_retries_only_passing_failures() {
        let failed = |code: &str| {
            agent(&[json!({"type": "response.failed", "sequence_number": 9,
                "error": {"message": "the request violates the content policy", "code": code, "type": code}})])
            .1
            .unwrap()
        };
        let refused = failed("invalid_request");
        assert!(
            refused
                .to_string()
                .contains("the request violates the content policy"),
            "{refused}"
        );
        assert_eq!(refused.failure_class(), FailureClass::Permanent);
        assert_eq!(
            failed("server_error").failure_class(),
            FailureClass::Transient
        );
        assert!(failed("rate_limit_exceeded").is_rate_limited());
        let error = agent(&[json!({"type": "error", "error": {"message": "upstream exploded", "code": "server_error"}})])
            .1
            .unwrap();
        assert!(error.to_string().contains("upstream exploded"), "{error}");
        // A bare `error` event, its code and message at the top level (a transport failure).
        let error = agent(&[json!({"type": "error", "sequence_number": 2, "code": "rate_limit_exceeded", "message": "slow down", "param": null})])
            .1
            .unwrap();
        assert!(error.is_rate_limited(), "{error}");
        assert!(error.to_string().contains("slow down"), "{error}");
        // A run the server cancelled ends the answer with an error, not a silent end.
        let error = agent(&[json!({"type": "response.cancelled", "sequence_number": 2})])
            .1
            .unwrap();
        assert_eq!(error.kind(), ErrorKind::Incomplete, "{error}");
        assert!(error.partial_usage().is_none());
        // What a cancelled run used is billed: its reported cost stays with the error (a
        // budget counts it).
        let usage = json!({"input_tokens": 3, "output_tokens": 4, "total_tokens": 7,
            "cost": {"input_cost": 0.001, "output_cost": 0.002, "total_cost": 0.008, "currency": "USD"}});
        let cancelled = json!({"type": "response.cancelled", "sequence_number": 2,
            "response": {"id": "resp_1", "status": "cancelled", "output": [], "usage": usage}});
        let error = agent(&[cancelled]).1.unwrap();
        let cost = error.partial_usage().unwrap().cost.as_ref().unwrap();
        assert_eq!(cost.total_cost, 0.008);
        let body = json!({"id": "resp_1", "status": "cancelled", "output": [], "usage": usage});
        let error = full_response(Api::Agent, body.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("cancelled"), "{error}");
        let cost = error.partial_usage().unwrap().cost.as_ref().unwrap();
        assert_eq!(cost.total_cost, 0.008);
        let body = json!({"id": "resp_1", "status": "failed", "output": [],
            "error": {"message": "no such preset", "code": "invalid_request"}});
        let error = full_response(Api::Agent, body.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("no such preset"));
        assert!(!error.is_retryable());
    }

    #[test]
    fn agent_codes_decide_by_the_table_not_by_substrings() {
        let failed = |code: &str, kind: &str| {
            agent(&[json!({"type": "response.failed", "sequence_number": 3,
                "error": {"message": "it failed", "code": code, "type": kind}})])
            .1
            .unwrap()
        };
        let classes = [
            ("rate_limit_exceeded", "", FailureClass::RateLimited),
            ("RATE_LIMIT_EXCEEDED", "", FailureClass::RateLimited),
            ("overloaded", "", FailureClass::Transient),
            ("503", "", FailureClass::Transient),
            ("invalid_api_key", "", FailureClass::KeyRejected),
            ("insufficient_quota", "", FailureClass::QuotaExhausted),
            ("invalid_prompt", "", FailureClass::Permanent),
            // An unknown code: its type decides; both unknown, the failure is final.
            ("something_new", "server_error", FailureClass::Transient),
            ("something_new", "", FailureClass::Permanent),
            // Words inside a code decide nothing (these used to match "rate_limit", "auth",
            // "500" and "timeout" as substrings).
            ("no_rate_limit_applies", "", FailureClass::Permanent),
            ("unauthorized_tool", "", FailureClass::Permanent),
            ("max_tokens_5000_exceeded", "", FailureClass::Permanent),
            ("tool_timeout_config_invalid", "", FailureClass::Permanent),
        ];
        for (code, kind, class) in classes {
            let error = failed(code, kind);
            assert_eq!(error.failure_class(), class, "{code} / {kind}: {error}");
            assert_eq!(error.status_code(), None, "no status is made up: {error}");
        }
    }

    #[test]
    fn agent_sources_merge_across_search_batches_by_id() {
        let (events, error) = agent(&[
            json!({"type": "response.created", "response": {"id": "resp_1", "model": "m", "status": "in_progress", "output": []}}),
            json!({"type": "response.reasoning.search_results", "thought": "First search.", "results": [result(1, "https://a.example/1"), result(2, "https://a.example/2")]}),
            json!({"type": "response.reasoning.search_results", "results": [result(3, "https://b.example/3"), result(2, "https://a.example/2")]}),
            json!({"type": "response.output_text.delta", "delta": "Answer[3]."}),
            json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "output": [
                {"type": "search_results", "results": [result(1, "https://a.example/1"), result(2, "https://a.example/2")]},
                {"type": "search_results", "results": [result(3, "https://b.example/3"), result(5, "https://c.example/5")]},
                {"type": "message", "content": [
                    {"type": "reasoning_text", "text": "hidden steps"},
                    {"type": "output_text", "text": "Answer[3]."}]}]}}),
        ]);
        assert!(error.is_none(), "{error:?}");
        let response = done(&events);
        assert_eq!(
            response.sources.numbered(),
            [
                (1, "https://a.example/1"),
                (2, "https://a.example/2"),
                (3, "https://b.example/3"),
                (5, "https://c.example/5")
            ],
            "every batch, numbered by id (the final output adds the one a batch missed)"
        );
        assert!(response.reasoning.contains("First search."));
        // The non-streaming body: every search_results item, only output_text as the answer.
        let body = json!({"id": "resp_1", "status": "completed", "output": [
            {"type": "search_results", "results": [result(1, "https://a.example/1")]},
            {"type": "search_results", "results": [result(2, "https://b.example/2")]},
            {"type": "message", "content": [
                {"type": "reasoning_text", "text": "hidden steps"},
                {"type": "output_text", "text": "Answer[2]."}]}],
            "incomplete_details": {"reason": "max_output_tokens"}});
        let response = full_response(Api::Agent, body.to_string().as_bytes()).unwrap();
        assert_eq!(response.text, "Answer[2].");
        assert_eq!(response.sources.citations.len(), 2);
        assert_eq!(response.finish_reason, FinishReason::Length);
    }

    #[test]
    fn a_batch_seen_again_adds_nothing_however_it_is_written() {
        let batch = json!([
            result(1, "https://a.example/1"),
            result(2, "https://a.example/2")
        ]);
        let raw = |text: String| RawValue::from_string(text).unwrap();
        let mut sources = AgentSources::default();
        assert!(sources.add(Some(&raw(batch.to_string()))).unwrap());
        // Byte for byte the same (the final response repeating a streamed batch): not read.
        assert!(!sources.add(Some(&raw(batch.to_string()))).unwrap());
        // The same results written differently are read, and still add nothing.
        assert!(
            !sources
                .add(Some(&raw(serde_json::to_string_pretty(&batch).unwrap())))
                .unwrap()
        );
        // A batch with one more result adds it.
        let more = json!([
            result(2, "https://a.example/2"),
            result(3, "https://b.example/3")
        ]);
        assert!(sources.add(Some(&raw(more.to_string()))).unwrap());
        assert_eq!(sources.sources().citations.len(), 3);
    }

    #[test]
    fn the_batches_remembered_are_bounded_however_many_a_server_sends() {
        let mut sources = AgentSources::default();
        // Thousands of distinct batches of the same result: each read, none adding anything
        // after the first, and what is remembered of their text stays under its bound.
        for index in 0..5_000 {
            let batch = json!([result(1, "https://a.example/1"), {"padding": index}]);
            let raw = RawValue::from_string(batch.to_string()).unwrap();
            assert_eq!(sources.add(Some(&raw)).unwrap(), index == 0);
        }
        let remembered: usize = sources.batches.iter().map(|batch| batch.len()).sum();
        assert_eq!(remembered, sources.remembered);
        assert!(remembered <= REMEMBERED_BYTES, "{remembered}");
        assert!(sources.batches.len() < 5_000);
        // A batch past the bound is still read when it comes again (just not skipped).
        let late =
            RawValue::from_string(json!([result(2, "https://b.example/2")]).to_string()).unwrap();
        assert!(sources.add(Some(&late)).unwrap());
        assert!(!sources.add(Some(&late)).unwrap());
        assert_eq!(sources.sources().citations.len(), 2);
    }

    #[test]
    fn a_final_response_with_escaped_text_reads_whole() {
        // Borrowed where the JSON text allows, owned where an escape must be undone.
        let text = "A \"quoted\" line\nand caf\u{e9} \u{1F600}.";
        let body = json!({"id": "resp_\"1\"", "model": "perplexity/sonar", "status": "completed", "output": [
            {"type": "message", "content": [{"type": "output_text", "text": text}]},
            {"type": "function_call", "call_id": "call\t1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}]});
        let written = body.to_string();
        assert!(written.contains("\\\"quoted\\\" line\\n"), "{written}");
        let response = full_response(Api::Agent, written.as_bytes()).unwrap();
        assert_eq!(response.id, "resp_\"1\"");
        assert_eq!(response.text, text);
        assert_eq!(response.tool_calls[0].id, "call\t1");
        assert_eq!(response.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
    }

    fn call(call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
        json!({"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id,
            "name": name, "arguments": arguments, "status": status})
    }

    #[test]
    fn tools_and_a_replayed_tool_turn_go_out_as_the_sdk_types_them() {
        let request = crate::api::tool_loop_request("openai/gpt-5-mini");
        let body: Value = serde_json::from_slice(&request_body(
            Api::Agent,
            &request,
            "openai/gpt-5-mini",
            true,
        ))
        .unwrap();
        // A model is grounded: the web_search tool first, then the caller's functions.
        assert_eq!(
            body["tools"],
            json!([{"type": "web_search"}, {"type": "function", "name": "get_weather", "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
        );
        assert_eq!(
            body["input"],
            json!([
                {"type": "message", "role": "user", "content": "Weather in Paris?"},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp\":18}"},
            ]),
            "the assistant turn with no text is only its calls; the result answers by call_id"
        );
    }

    #[test]
    fn the_newest_events_and_fields_reach_the_caller() {
        let image = json!({"image_url": "https://img.example/1.png", "origin_url": "https://a.example", "height": 10, "width": 20, "title": "One"});
        let (events, error) = agent(&[
            json!({"type": "response.created", "sequence_number": 1, "response": {"id": "resp_1", "model": "m", "status": "in_progress", "output": []}}),
            json!({"type": "response.skill.loaded", "sequence_number": 2, "name": "charts"}),
            json!({"type": "response.reasoning.image_search_queries", "sequence_number": 3, "call_id": "c1", "queries": ["volcano photo"]}),
            json!({"type": "response.reasoning.image_search_results", "sequence_number": 4, "call_id": "c1", "results": [image, image]}),
            json!({"type": "response.reasoning.search_results", "sequence_number": 5, "results": [
                {"id": 1, "title": "T", "url": "https://a.example/1", "snippet": "s", "last_updated": "2026-11-02", "source": "web"}]}),
            json!({"type": "response.output_text.delta", "sequence_number": 6, "delta": "Olympus Mons[1]."}),
            json!({"type": "response.completed", "sequence_number": 7, "response": {"id": "resp_1", "status": "completed", "output": [],
                "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7, "cost": {"input_cost": 0.1, "output_cost": 0.2,
                    "total_cost": 0.4, "tool_calls_cost": 0.05, "cache_creation_cost": 0.01, "cache_read_cost": 0.02, "currency": "USD"}}}}),
        ]);
        assert!(error.is_none(), "{error:?}");
        let reasoning: String = events
            .iter()
            .filter_map(|event| match event {
                ChatEvent::ReasoningDelta(text) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            reasoning,
            "Using skill: charts\nSearching images: volcano photo\n"
        );
        let response = done(&events);
        assert_eq!(response.images.len(), 1, "each image once");
        assert_eq!(response.images[0].image_url, "https://img.example/1.png");
        let result = &response.sources.search_results[0];
        assert_eq!(
            (result.last_updated.as_deref(), result.source.as_deref()),
            (Some("2026-11-02"), Some("web"))
        );
        let cost = response.usage.as_ref().unwrap().cost.as_ref().unwrap();
        assert_eq!(
            (
                cost.tool_calls_cost,
                cost.cache_creation_cost,
                cost.cache_read_cost,
                cost.currency.as_deref()
            ),
            (Some(0.05), Some(0.01), Some(0.02), Some("USD"))
        );
    }

    #[test]
    fn option_tools_and_function_tools_are_sent_together() {
        let mut options = crate::AgentOptions::default();
        let mut web = crate::WebSearch::default();
        web.filters.search_recency_filter = Some(crate::Recency::Day);
        options.web_search = Some(web);
        let request = options
            .apply(crate::api::tool_loop_request("openai/gpt-5-mini"))
            .unwrap();
        let body: Value = serde_json::from_slice(&request_body(
            Api::Agent,
            &request,
            "openai/gpt-5-mini",
            true,
        ))
        .unwrap();
        let kinds: Vec<&str> = body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["web_search", "function"],
            "neither replaces the other"
        );
    }

    #[test]
    fn attachments_go_out_as_the_sdks_content_parts() {
        let request = crate::api::attachments_request("openai/gpt-5-mini");
        let body: Value = serde_json::from_slice(&request_body(
            Api::Agent,
            &request,
            "openai/gpt-5-mini",
            true,
        ))
        .unwrap();
        assert_eq!(
            body["input"],
            json!([{"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What do these show?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw=="},
                {"type": "input_image", "image_url": "https://img.example/cat.jpg"},
                {"type": "input_file", "file_data": "JVBERi0xLjc=", "filename": "report.pdf"},
            ]}])
        );
    }

    #[test]
    fn function_calls_become_tool_calls_in_order_and_finish_with_tool_calls() {
        let (events, error) = agent(&[
            json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": call("call_1", "get_weather", "", "in_progress")}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": call("call_1", "get_weather", "{\"city\":\"Paris\"}", "completed")}),
            // The final output repeats the first call and adds one no event announced.
            json!({"type": "response.completed", "response": {"id": "resp_1", "status": "requires_action", "output": [
                call("call_1", "get_weather", "{\"city\":\"Paris\"}", "completed"),
                call("call_2", "get_time", "{not json", "requires_action")]}}),
        ]);
        assert!(error.is_none(), "{error:?}");
        let calls: Vec<&chat_core::ToolCall> = events
            .iter()
            .filter_map(|event| match event {
                ChatEvent::ToolCall(call) => Some(call),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls
                .iter()
                .map(|call| (
                    call.id.as_str(),
                    call.name.as_str(),
                    call.arguments.as_str()
                ))
                .collect::<Vec<_>>(),
            [
                ("call_1", "get_weather", "{\"city\":\"Paris\"}"),
                ("call_2", "get_time", "{not json")
            ],
            "each call once, in order; arguments passed through as the model sent them"
        );
        let response = done(&events);
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(response.tool_calls.len(), 2);
        // The same turn, not streamed.
        let body = json!({"id": "resp_1", "status": "requires_action", "output": [
            call("call_1", "get_weather", "{}", "requires_action")]});
        let response = full_response(Api::Agent, body.to_string().as_bytes()).unwrap();
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(response.tool_calls[0].id, "call_1");
    }

    #[test]
    fn an_output_item_this_client_does_not_know_never_breaks_the_stream() {
        let (events, error) = agent(&[
            json!({"type": "response.output_item.done", "output_index": 0,
                "item": {"type": "sandbox_results", "content": "not a list of parts", "call_id": "x"}}),
            json!({"type": "response.output_text.delta", "delta": "Olympus"}),
        ]);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(events, [ChatEvent::TextDelta("Olympus".into())]);
    }

    #[test]
    fn a_function_call_without_its_call_id_or_name_is_a_protocol_error() {
        for item in [
            call("", "get_weather", "{}", "completed"),
            call("call_1", "", "{}", "completed"),
        ] {
            let (_, error) = agent(&[
                json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
            ]);
            assert_eq!(error.map(|error| error.kind()), Some(ErrorKind::Protocol));
            let body = json!({"id": "r", "status": "completed", "output": [item]});
            let error = full_response(Api::Agent, body.to_string().as_bytes()).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Protocol);
        }
    }

    #[test]
    fn a_done_marker_in_an_agent_stream_is_not_an_error() {
        let (events, error) = agent(&[
            json!({"type": "response.output_text.delta", "delta": "Olympus"}),
            json!("[DONE]"),
        ]);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(events, [ChatEvent::TextDelta("Olympus".into())]);
    }
}
