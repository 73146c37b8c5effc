//! Turns a stream's events (Sonar chunks or Agent API events) into the core's `ChatEvent`s,
//! and assembles the final response.

use std::collections::VecDeque;

use chat_core::{ChatEvent, ChatResponse, Error, ErrorKind, FinishReason, Sources, Usage};

use crate::Api;
use crate::scan;
use crate::think::{Split, ThinkSplitter};
use crate::wire::{self, AgentError, AgentEvent, AgentResponse, AgentSources, SonarChunk};

#[derive(Debug)]
pub(crate) struct Decoder {
    api: Api,
    splitter: ThinkSplitter,
    /// The raw JSON of the sources last emitted, to see whether they changed.
    citations_raw: String,
    results_raw: String,
    /// The Agent API's search results, merged across a run's searches.
    agent_sources: AgentSources,
    response: ChatResponse,
    usage: Option<Usage>,
    /// Sonar's cumulative usage as last sent, raw: decoded at the end or on demand.
    usage_raw: String,
    done: bool,
    /// Whether Sonar chunks go through the targeted scanner first (always, but for the
    /// benches' comparison).
    scan: bool,
    /// The bound on text + reasoning + sources, and what they take now.
    max_answer_bytes: usize,
    text_bytes: usize,
    sources_bytes: usize,
}

impl Decoder {
    #[cfg(test)]
    pub(crate) fn new(api: Api) -> Self {
        Decoder::bounded(api, usize::MAX)
    }

    /// Turns the targeted scanner off (for the benches' comparison).
    #[cfg(feature = "bench-internals")]
    pub(crate) fn set_scan(&mut self, scan: bool) {
        self.scan = scan;
    }

    /// A decoder that fails once the answer outgrows `max_answer_bytes`.
    pub(crate) fn bounded(api: Api, max_answer_bytes: usize) -> Self {
        Decoder {
            api,
            splitter: ThinkSplitter::default(),
            citations_raw: String::new(),
            results_raw: String::new(),
            agent_sources: AgentSources::default(),
            response: ChatResponse::default(),
            usage: None,
            usage_raw: String::new(),
            done: false,
            scan: true,
            max_answer_bytes,
            text_bytes: 0,
            sources_bytes: 0,
        }
    }

    /// Fails once the answer outgrows its bound; checked after every event, so memory never
    /// exceeds the bound by more than one event.
    fn check_bound(&self) -> Result<(), Error> {
        let answer = self
            .text_bytes
            .saturating_add(self.sources_bytes)
            .saturating_add(self.splitter.held_bytes());
        if answer > self.max_answer_bytes {
            return Err(Error::too_large(self.max_answer_bytes));
        }
        Ok(())
    }

    /// Whether the final event arrived.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The Agent API run's id, once the server said it (to cancel an abandoned run).
    pub(crate) fn response_id(&self) -> Option<&str> {
        Some(self.response.id.as_str()).filter(|id| !id.is_empty())
    }

    /// The usage known so far.
    pub(crate) fn usage(&self) -> Option<Usage> {
        self.usage.clone().or_else(|| wire::usage(&self.usage_raw))
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
        if self.done {
            return Ok(()); // Anything after the end (a `[DONE]` after the done chunk) is ignored.
        }
        if event_type == b"error" {
            return Err(stream_error(&String::from_utf8_lossy(data)));
        }
        if is_keep_alive(data) {
            return Ok(()); // A keep-alive ping, as the official consumers treat them.
        }
        if self.api == Api::Agent && data.trim_ascii() == b"[DONE]" {
            // Responses-style streams end with their final event; a `[DONE]` from a proxy or
            // a compatible server says nothing more (and before the end, the stream's end
            // is what counts).
            return Ok(());
        }
        match self.api {
            Api::Sonar => self.feed_sonar(data, out)?,
            Api::Agent => self.feed_agent(data, out)?,
        }
        self.check_bound()
    }

    fn feed_sonar(&mut self, data: &[u8], out: &mut VecDeque<ChatEvent>) -> Result<(), Error> {
        if data.trim_ascii() == b"[DONE]" {
            self.finish(FinishReason::Stop, out);
            return Ok(());
        }
        if self.scan && self.feed_scanned(data, out)? {
            return Ok(());
        }
        let chunk: SonarChunk<'_> = serde_json::from_slice(data)
            .map_err(|error| Error::protocol(format!("bad chunk in the stream: {error}")))?;
        if self.response.id.is_empty()
            && let Some(id) = &chunk.id
        {
            self.response.id = id.to_string();
        }
        if self.response.model.is_empty()
            && let Some(model) = &chunk.model
        {
            self.response.model = model.to_string();
        }
        let citations = chunk.citations.map_or("", |raw| raw.get());
        let results = chunk.search_results.map_or("", |raw| raw.get());
        if citations != self.citations_raw || results != self.results_raw {
            let sources = wire::sources(chunk.citations, chunk.search_results)?;
            self.citations_raw.clear();
            self.citations_raw.push_str(citations);
            self.results_raw.clear();
            self.results_raw.push_str(results);
            self.emit_sources(sources, out);
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
                self.emit_split(split, out);
            }
            finish = choice.finish_reason.as_deref().map(FinishReason::parse);
        }
        let done_object = chunk.object.as_deref() == Some("chat.completion.done");
        if finish.is_some() || done_object {
            self.response.related_questions = wire::related_questions(chunk.related_questions);
            self.response.images = wire::images(chunk.images);
            self.finish(finish.unwrap_or_default(), out);
        }
        Ok(())
    }

    /// The fast path of a Sonar chunk: the common one (a delta, sources as before, no
    /// finish, identity already known) through the targeted scanner. Returns false, having
    /// done nothing, for anything else: serde then decodes the chunk as before.
    fn feed_scanned(&mut self, data: &[u8], out: &mut VecDeque<ChatEvent>) -> Result<bool, Error> {
        let Some(chunk) = scan::chunk(data) else {
            return Ok(false);
        };
        let known = !chunk.has_identity
            || (!self.response.id.is_empty() && !self.response.model.is_empty());
        let finishing = chunk.finish_reason.is_some_and(|reason| reason != b"null")
            || chunk.object == Some(b"\"chat.completion.done\"".as_slice());
        let same_sources = chunk.citations.unwrap_or_default() == self.citations_raw.as_bytes()
            && chunk.search_results.unwrap_or_default() == self.results_raw.as_bytes();
        if !known || finishing || !same_sources {
            return Ok(false);
        }
        let content = match chunk.delta {
            None => None,
            Some(scan::Delta::Plain(raw)) => Some(std::borrow::Cow::Borrowed(
                std::str::from_utf8(raw)
                    .map_err(|_| Error::protocol("bad chunk in the stream: text is not UTF-8"))?,
            )),
            Some(scan::Delta::Escaped(raw)) => Some(
                serde_json::from_slice::<std::borrow::Cow<'_, str>>(raw).map_err(|error| {
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
            self.emit_split(split, out);
        }
        Ok(true)
    }

    fn feed_agent(&mut self, data: &[u8], out: &mut VecDeque<ChatEvent>) -> Result<(), Error> {
        let event: AgentEvent<'_> = serde_json::from_slice(data)
            .map_err(|error| Error::protocol(format!("bad event in the stream: {error}")))?;
        match event.kind.as_deref().unwrap_or_default() {
            "response.output_text.delta" => {
                if let Some(delta) = event.delta.as_deref().filter(|delta| !delta.is_empty()) {
                    self.text_bytes = self.text_bytes.saturating_add(delta.len());
                    self.response.text.push_str(delta);
                    out.push_back(ChatEvent::TextDelta(delta.to_owned()));
                }
            }
            "response.reasoning.search_queries" => {
                if let Some(thought) = event.thought.as_deref() {
                    self.thought(thought, out);
                }
                let queries: Vec<&str> = event
                    .queries
                    .iter()
                    .flatten()
                    .map(|query| query.as_ref())
                    .collect();
                if !queries.is_empty() {
                    self.reasoning(format!("Searching: {}\n", queries.join("; ")), out);
                }
            }
            "response.reasoning.search_results" => {
                if let Some(thought) = event.thought.as_deref() {
                    self.thought(thought, out);
                }
                if self.agent_sources.add(event.results)? {
                    let sources = self.agent_sources.sources();
                    self.emit_sources(sources, out);
                }
            }
            "response.reasoning.started" | "response.reasoning.fetch_url_results" => {
                if let Some(thought) = event.thought.as_deref() {
                    self.thought(thought, out);
                }
            }
            "response.reasoning.fetch_url_queries" => {
                if let Some(thought) = event.thought.as_deref() {
                    self.thought(thought, out);
                }
                let urls: Vec<&str> = event
                    .urls
                    .iter()
                    .flatten()
                    .map(|url| url.as_ref())
                    .collect();
                if !urls.is_empty() {
                    self.reasoning(format!("Reading: {}\n", urls.join("; ")), out);
                }
            }
            "response.reasoning.stopped" => {
                if let Some(thought) = event.thought.as_deref() {
                    self.thought(thought, out);
                }
            }
            "response.created" | "response.in_progress" => {
                if let Some(response) = event.response
                    && let Ok(response) = serde_json::from_str::<AgentResponse>(response.get())
                {
                    self.response.id = response.id;
                    self.response.model = response.model;
                }
            }
            "response.completed" | "response.incomplete" => {
                let response: AgentResponse = match event.response {
                    Some(raw) => serde_json::from_str(raw.get())
                        .map_err(|error| Error::protocol(format!("bad final response: {error}")))?,
                    None => AgentResponse::default(),
                };
                // The final output lists every search's results; the streamed batches may
                // have missed some (a proxy that drops events), never the other way round.
                let mut grew = false;
                for batch in response.search_result_batches() {
                    grew |= self.agent_sources.add(Some(batch))?;
                }
                if grew {
                    let sources = self.agent_sources.sources();
                    self.emit_sources(sources, out);
                }
                if let Some(usage) = response.usage.clone() {
                    self.usage = Some(usage.into_usage());
                }
                if !response.id.is_empty() {
                    self.response.id = response.id.clone();
                }
                let finish = response.finish_reason();
                self.finish(finish, out);
            }
            "response.failed" | "error" => {
                return Err(agent_failure(event.error, event.message.as_deref()));
            }
            "response.cancelled" => {
                return Err(Error::incomplete("the server cancelled the agent run"));
            }
            _ => {} // Other events say nothing the caller needs.
        }
        Ok(())
    }

    /// A reasoning event's `thought`, as a line of reasoning.
    fn thought(&mut self, thought: &str, out: &mut VecDeque<ChatEvent>) {
        let thought = thought.trim();
        if !thought.is_empty() {
            self.reasoning(format!("{thought}\n"), out);
        }
    }

    fn reasoning(&mut self, text: String, out: &mut VecDeque<ChatEvent>) {
        self.text_bytes = self.text_bytes.saturating_add(text.len());
        self.response.reasoning.push_str(&text);
        out.push_back(ChatEvent::ReasoningDelta(text));
    }

    fn emit_split(&mut self, split: Split, out: &mut VecDeque<ChatEvent>) {
        if !split.reasoning.is_empty() {
            self.reasoning(split.reasoning, out);
        }
        if !split.text.is_empty() {
            self.text_bytes = self.text_bytes.saturating_add(split.text.len());
            self.response.text.push_str(&split.text);
            out.push_back(ChatEvent::TextDelta(split.text));
        }
    }

    fn emit_sources(&mut self, sources: Sources, out: &mut VecDeque<ChatEvent>) {
        if sources != self.response.sources && !sources.is_empty() {
            // Sources replace the earlier ones (and are held twice: the response and the
            // event).
            self.sources_bytes = sources_size(&sources).saturating_mul(2);
            self.response.sources = sources.clone();
            out.push_back(ChatEvent::Sources(sources));
        }
    }

    fn finish(&mut self, finish: FinishReason, out: &mut VecDeque<ChatEvent>) {
        let rest = self.splitter.finish();
        self.emit_split(rest, out);
        if self.usage.is_none() {
            self.usage = wire::usage(&self.usage_raw);
        }
        if let Some(usage) = &self.usage {
            out.push_back(ChatEvent::Usage(usage.clone()));
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

/// What the Agent API's `ErrorInfo` codes and types mean for a retry, matched exactly (ASCII
/// case aside): the codes and types the service and the official SDKs use, the
/// Responses-style names among them, and HTTP statuses written as codes. A failure whose code
/// and type are both unknown fails at once: a refused request or a content rule must not be
/// retried into a loop.
const AGENT_CODES: &[(&str, ErrorKind)] = &[
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

/// The kind a code (or type) names in [`AGENT_CODES`].
fn agent_code_kind(code: Option<&str>) -> Option<ErrorKind> {
    let code = code?.trim();
    AGENT_CODES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(code))
        .map(|(_, kind)| *kind)
}

/// A failed Agent run (`response.failed` or an `error` event): the server's own message, of
/// the kind its code says ([`AGENT_CODES`]; its type when the code is unknown), reported in
/// band: no HTTP status is made up for it.
fn agent_failure(error: Option<AgentError>, message: Option<&str>) -> Error {
    let error = error.unwrap_or_default();
    let message = Some(error.message.as_str())
        .filter(|message| !message.trim().is_empty())
        .or(message)
        .unwrap_or("the agent run failed");
    let kind = agent_code_kind(error.code.as_deref())
        .or_else(|| agent_code_kind(error.kind.as_deref()))
        .unwrap_or(ErrorKind::BadRequest);
    let text = match error.code.as_deref().filter(|code| !code.is_empty()) {
        Some(code) => format!("the agent run failed: {message} ({code})"),
        None => format!("the agent run failed: {message}"),
    };
    Error::reported(kind, text)
}

/// An `event: error` frame's error.
fn stream_error(data: &str) -> Error {
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    if value["type"] == "error" || value["error"]["code"].is_string() {
        // The Agent API's shape: `ErrorInfo` with string codes.
        let error = serde_json::from_value::<AgentError>(value["error"].clone()).ok();
        return agent_failure(error, value["message"].as_str());
    }
    let message = value["error"]["message"]
        .as_str()
        .unwrap_or("the server reported an error mid-stream")
        .to_owned();
    let status = value["error"]["code"]
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| *code >= 400)
        .unwrap_or(500);
    Error::status(status, message)
}

/// A complete response from a non-streaming body.
pub(crate) fn full_response(api: Api, body: &[u8]) -> Result<ChatResponse, Error> {
    let text =
        std::str::from_utf8(body).map_err(|_| Error::protocol("the response is not UTF-8"))?;
    let mut response = ChatResponse::default();
    match api {
        Api::Sonar => {
            let chunk: SonarChunk<'_, wire::BodyChoiceWire<'_>> = serde_json::from_str(text)
                .map_err(|error| Error::protocol(format!("bad response body: {error}")))?;
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
        }
        Api::Agent => {
            let body: AgentResponse = serde_json::from_str(text)
                .map_err(|error| Error::protocol(format!("bad response body: {error}")))?;
            if body.status == "failed" {
                return Err(agent_failure(body.error, None));
            }
            response.text = body.text();
            response.sources = body.sources()?;
            response.id = body.id.clone();
            response.model = body.model.clone();
            response.finish_reason = body.finish_reason();
            response.usage = body.usage.map(wire::UsageWire::into_usage);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use chat_core::{ChatRequest, Message};
    use resilience::{Classify, FailureClass};
    use serde_json::{Value, json};

    use super::*;

    /// Feeds Agent API events (as JSON values) and returns what came out, or the error.
    fn agent(events: &[Value]) -> (Vec<ChatEvent>, Option<Error>) {
        let mut decoder = Decoder::new(Api::Agent);
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
            serde_json::from_slice(&wire::request_body(Api::Agent, &request, "medium", true))
                .unwrap();
        assert_eq!(body["preset"], "medium");
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
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        let body: Value = serde_json::from_slice(&wire::request_body(
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
    fn keep_alive_pings_are_skipped_but_a_cut_message_is_an_error() {
        let mut decoder = Decoder::new(Api::Sonar);
        let mut out = VecDeque::new();
        for ping in ["ping", "keep-alive", ": not a comment"] {
            decoder.feed(b"", ping, &mut out).unwrap();
        }
        assert!(out.is_empty());
        let cut = decoder.feed(b"", r#"{"id":"x","choices":[{"delta":{"con"#, &mut out);
        assert_eq!(cut.unwrap_err().kind(), chat_core::ErrorKind::Protocol);
        let mut decoder = Decoder::new(Api::Agent);
        decoder.feed(b"", "ping", &mut out).unwrap();
        assert!(out.is_empty());
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
