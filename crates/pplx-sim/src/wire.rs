//! Perplexity's wire formats: Sonar chat-completion chunks, Agent API (Responses) events,
//! search results and error bodies, as recorded from the real service.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::content::{Answer, pieces, token_count, truncate_words};
use crate::fault::LineEnding;

pub(crate) const CREATED: u64 = 1_764_374_400;

/// One server-sent event before encoding.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) event: Option<&'static str>,
    pub(crate) data: String,
}

impl Frame {
    fn data(data: Value) -> Self {
        Frame {
            event: None,
            data: data.to_string(),
        }
    }

    fn named(event: &'static str, data: Value) -> Self {
        Frame {
            event: Some(event),
            data: data.to_string(),
        }
    }

    /// The frame's bytes; with `malformed`, its JSON is cut in half (still one line).
    pub(crate) fn encode(&self, ending: LineEnding, malformed: bool) -> Bytes {
        let ending = ending.as_str();
        let data = if malformed {
            let mut cut = self.data.len() / 2;
            while !self.data.is_char_boundary(cut) {
                cut -= 1;
            }
            &self.data[..cut]
        } else {
            &self.data
        };
        let mut out = String::with_capacity(data.len() + 48);
        if let Some(event) = self.event {
            out.push_str("event: ");
            out.push_str(event);
            out.push_str(ending);
        }
        out.push_str("data: ");
        out.push_str(data);
        out.push_str(ending);
        out.push_str(ending);
        Bytes::from(out)
    }
}

/// What a request asked for, beyond the conversation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Asked {
    pub(crate) model: String,
    pub(crate) max_tokens: Option<usize>,
    pub(crate) related_questions: bool,
    pub(crate) images: bool,
    pub(crate) prompt_tokens: u64,
    pub(crate) legacy_object: bool,
    /// Sonar's `stream_mode: "concise"`: reasoning as `delta.reasoning_steps` chunks.
    pub(crate) concise: bool,
    /// The Agent API's `image_search` tool was offered: the run searches images too.
    pub(crate) image_search: bool,
    /// The Agent API's `skills` asked for, by name (each is loaded, and said).
    pub(crate) skills: Vec<String>,
}

/// The answer as it will be sent: the content (reasoning inline for Sonar) and the finish.
struct Shaped<'answer> {
    text: &'answer str,
    finish_reason: &'static str,
}

fn shape<'answer>(answer: &'answer Answer, asked: &Asked) -> Shaped<'answer> {
    match asked.max_tokens {
        Some(limit) => {
            let (text, cut) = truncate_words(&answer.text, limit);
            Shaped {
                text,
                finish_reason: if cut { "length" } else { "stop" },
            }
        }
        None => Shaped {
            text: &answer.text,
            finish_reason: "stop",
        },
    }
}

/// The text a complete answer delivers (what a client should end up with).
pub(crate) fn delivered_text(answer: &Answer, max_tokens: Option<usize>) -> String {
    let asked = Asked {
        max_tokens,
        ..Asked::default()
    };
    shape(answer, &asked).text.to_owned()
}

fn usage(asked: &Asked, completion_tokens: u64, final_chunk: bool) -> Value {
    let input = asked.prompt_tokens as f64 * 1e-6;
    let output = completion_tokens as f64 * 1e-6;
    let cost = if final_chunk {
        json!({"input_tokens_cost": input, "output_tokens_cost": output, "request_cost": 0.005, "total_cost": input + output + 0.005})
    } else {
        json!({"input_tokens_cost": 0, "output_tokens_cost": 0, "total_cost": 0})
    };
    let mut usage = json!({
        "prompt_tokens": asked.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": asked.prompt_tokens + completion_tokens,
        "search_context_size": "low",
        "cost": cost,
    });
    if crate::config::is_research(&asked.model) {
        // Deep research reports what its searches and reading cost, apart.
        usage["citation_tokens"] = (completion_tokens * 7).into();
        usage["reasoning_tokens"] = (completion_tokens * 3).into();
        usage["num_search_queries"] = 12.into();
        if final_chunk {
            usage["cost"]["citation_tokens_cost"] = json!(completion_tokens as f64 * 14e-6);
            usage["cost"]["reasoning_tokens_cost"] = json!(completion_tokens as f64 * 9e-6);
            usage["cost"]["search_queries_cost"] = json!(0.06);
        }
    }
    usage
}

fn sonar_common(
    id: &str,
    answer: &Answer,
    asked: &Asked,
    object: &str,
) -> serde_json::Map<String, Value> {
    let mut chunk = serde_json::Map::new();
    chunk.insert("id".into(), id.into());
    chunk.insert("model".into(), asked.model.clone().into());
    chunk.insert("created".into(), CREATED.into());
    chunk.insert("object".into(), object.into());
    chunk.insert("citations".into(), json!(answer.citations));
    chunk.insert(
        "search_results".into(),
        Value::Array(
            answer
                .search_results
                .iter()
                .map(|result| result.to_json())
                .collect(),
        ),
    );
    chunk
}

fn extras(chunk: &mut serde_json::Map<String, Value>, answer: &Answer, asked: &Asked) {
    if asked.related_questions {
        chunk.insert("related_questions".into(), json!(answer.related_questions));
    }
    if asked.images {
        let images: Vec<Value> = answer
            .images
            .iter()
            .map(|url| json!({"image_url": url, "origin_url": "https://example.org/gallery", "height": 480, "width": 640}))
            .collect();
        chunk.insert("images".into(), Value::Array(images));
    }
}

fn sonar_content(answer: &Answer, text: &str) -> String {
    if answer.reasoning.is_empty() {
        text.to_owned()
    } else {
        format!("<think>{}</think>\n\n{text}", answer.reasoning)
    }
}

/// The Sonar streaming chunks: content pieces, then the `chat.completion.done` chunk.
pub(crate) fn sonar_stream(
    id: &str,
    answer: &Answer,
    asked: &Asked,
    chunk_chars: usize,
) -> Vec<Frame> {
    if let Some(call) = &answer.tool_call {
        return sonar_call_stream(id, answer, asked, call, chunk_chars);
    }
    if asked.concise {
        return sonar_concise_stream(id, answer, asked, chunk_chars);
    }
    let shaped = shape(answer, asked);
    let content = sonar_content(answer, shaped.text);
    let object = if asked.legacy_object {
        "chat.completion"
    } else {
        "chat.completion.chunk"
    };
    let mut frames = Vec::new();
    let mut so_far = String::new();
    for piece in pieces(&content, chunk_chars) {
        so_far.push_str(piece);
        let mut chunk = sonar_common(id, answer, asked, object);
        chunk.insert("usage".into(), usage(asked, token_count(&so_far), false));
        // The SDK's `ChatMessageOutput` requires `role` on every delta, not just the first.
        let delta = json!({"role": "assistant", "content": piece});
        chunk.insert(
            "choices".into(),
            json!([{"index": 0, "finish_reason": null, "delta": delta, "message": {"role": "assistant", "content": so_far}}]),
        );
        frames.push(Frame::data(Value::Object(chunk)));
    }
    let done_object = if asked.legacy_object {
        "chat.completion"
    } else {
        "chat.completion.done"
    };
    let mut done = sonar_common(id, answer, asked, done_object);
    done.insert("usage".into(), usage(asked, token_count(&content), true));
    extras(&mut done, answer, asked);
    done.insert(
        "choices".into(),
        json!([{"index": 0, "finish_reason": shaped.finish_reason, "delta": {"role": "assistant", "content": ""}, "message": {"role": "assistant", "content": content}}]),
    );
    frames.push(Frame::data(Value::Object(done)));
    frames
}

/// The `message` of a concise chunk: the SDK's `StreamChunk` requires one on every choice,
/// and concise mode does not repeat the text so far, so it is empty.
fn empty_message() -> Value {
    json!({"role": "assistant", "content": ""})
}

/// A concise stream's reasoning steps: one per sentence of the reasoning (every concise
/// stream reasons at least once: its search), the first with the search.
fn concise_steps(answer: &Answer) -> Vec<Value> {
    let reasoning = if answer.reasoning.is_empty() {
        "Searching the web."
    } else {
        answer.reasoning.as_str()
    };
    let thoughts = reasoning
        .split_inclusive(". ")
        .map(str::trim)
        .filter(|thought| !thought.is_empty());
    thoughts
        .enumerate()
        .map(|(index, thought)| {
            let mut step = json!({"thought": thought, "type": "thinking"});
            if index == 0 {
                step["type"] = "web_search".into();
                step["web_search"] = json!({
                    "search_keywords": [crate::text::clip(&answer.search_results[0].title, 60)],
                    "search_results": answer.search_results.iter().map(crate::SearchResult::to_json).collect::<Vec<_>>(),
                });
            }
            step
        })
        .collect()
}

/// Sonar's concise stream (`stream_mode: "concise"`): `chat.reasoning` chunks whose delta
/// carries `reasoning_steps` (one per sentence of the reasoning, the first with the search),
/// `chat.reasoning.done` with the sources, then `chat.completion.chunk` deltas without the
/// cumulative message, then `chat.completion.done` with usage, cost and the whole message.
fn sonar_concise_stream(
    id: &str,
    answer: &Answer,
    asked: &Asked,
    chunk_chars: usize,
) -> Vec<Frame> {
    let shaped = shape(answer, asked);
    let mut frames = Vec::new();
    let bare = |object: &str| {
        let mut chunk = serde_json::Map::new();
        chunk.insert("id".into(), id.into());
        chunk.insert("model".into(), asked.model.clone().into());
        chunk.insert("created".into(), CREATED.into());
        chunk.insert("object".into(), object.into());
        chunk
    };
    for step in concise_steps(answer) {
        let mut chunk = bare("chat.reasoning");
        chunk.insert(
            "choices".into(),
            json!([{"index": 0, "finish_reason": null, "delta": {"role": "assistant", "content": "", "reasoning_steps": [step]}, "message": empty_message()}]),
        );
        frames.push(Frame::data(Value::Object(chunk)));
    }
    let mut reasoned = sonar_common(id, answer, asked, "chat.reasoning.done");
    reasoned.insert(
        "choices".into(),
        json!([{"index": 0, "finish_reason": null, "delta": {"role": "assistant", "content": ""}, "message": empty_message()}]),
    );
    frames.push(Frame::data(Value::Object(reasoned)));
    for piece in pieces(shaped.text, chunk_chars) {
        let mut chunk = bare("chat.completion.chunk");
        chunk.insert(
            "choices".into(),
            json!([{"index": 0, "finish_reason": null, "delta": {"role": "assistant", "content": piece}, "message": empty_message()}]),
        );
        frames.push(Frame::data(Value::Object(chunk)));
    }
    let mut done = sonar_common(id, answer, asked, "chat.completion.done");
    done.insert("usage".into(), usage(asked, token_count(shaped.text), true));
    extras(&mut done, answer, asked);
    done.insert(
        "choices".into(),
        json!([{"index": 0, "finish_reason": shaped.finish_reason, "delta": {"role": "assistant", "content": ""}, "message": {"role": "assistant", "content": shaped.text}}]),
    );
    frames.push(Frame::data(Value::Object(done)));
    frames
}

/// A chat-completions stream that calls a function, as OpenAI-compatible servers send it:
/// the call's id and name first, then its arguments in fragments that carry only the
/// call's `index`, then a chunk that finishes with `tool_calls`.
fn sonar_call_stream(
    id: &str,
    answer: &Answer,
    asked: &Asked,
    call: &crate::ToolCall,
    chunk_chars: usize,
) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut chunk = |delta: Value, finish_reason: Value, completion_tokens: u64, last: bool| {
        let mut chunk = sonar_common(id, answer, asked, "chat.completion.chunk");
        chunk.insert("usage".into(), usage(asked, completion_tokens, last));
        chunk.insert(
            "choices".into(),
            json!([{"index": 0, "finish_reason": finish_reason, "delta": delta}]),
        );
        frames.push(Frame::data(Value::Object(chunk)));
    };
    chunk(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"index": 0, "id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}]}),
        Value::Null,
        0,
        false,
    );
    for piece in pieces(&call.arguments, chunk_chars) {
        chunk(
            json!({"role": "assistant", "tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            Value::Null,
            0,
            false,
        );
    }
    chunk(
        json!({"role": "assistant"}),
        "tool_calls".into(),
        token_count(&call.arguments),
        true,
    );
    frames
}

/// The Sonar non-streaming body.
pub(crate) fn sonar_body(id: &str, answer: &Answer, asked: &Asked) -> Value {
    if let Some(call) = &answer.tool_call {
        let mut body = sonar_common(id, answer, asked, "chat.completion");
        body.insert(
            "usage".into(),
            usage(asked, token_count(&call.arguments), true),
        );
        body.insert(
            "choices".into(),
            json!([{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]}}]),
        );
        return Value::Object(body);
    }
    let shaped = shape(answer, asked);
    let content = sonar_content(answer, shaped.text);
    let mut body = sonar_common(id, answer, asked, "chat.completion");
    body.insert("usage".into(), usage(asked, token_count(&content), true));
    extras(&mut body, answer, asked);
    body.insert(
        "choices".into(),
        json!([{"index": 0, "finish_reason": shaped.finish_reason, "message": {"role": "assistant", "content": content}, "delta": {"role": "assistant", "content": ""}}]),
    );
    Value::Object(body)
}

/// A Sonar `event: error` frame.
pub(crate) fn sonar_error_frame() -> Frame {
    Frame::named(
        "error",
        json!({"error": {"message": "upstream model failed while streaming", "type": "server_error", "code": 500}}),
    )
}

fn agent_usage(asked: &Asked, output_tokens: u64) -> Value {
    let input = asked.prompt_tokens as f64 * 1e-6;
    let output = output_tokens as f64 * 1e-6;
    json!({
        "input_tokens": asked.prompt_tokens,
        "output_tokens": output_tokens,
        "total_tokens": asked.prompt_tokens + output_tokens,
        "cost": {"input_cost": input, "output_cost": output, "request_cost": 0.005, "total_cost": input + output + 0.005, "currency": "USD"},
    })
}

/// The search results as the Agent API numbers them: `id` from 1 across all of a run's
/// searches (the SDK's `SearchResult` requires it), so `[n]` in the text is result `n`.
fn agent_results(answer: &Answer, range: std::ops::Range<usize>) -> Value {
    Value::Array(
        answer.search_results[range.clone()]
            .iter()
            .zip(range.start + 1..)
            .map(|(result, id)| json!({"id": id, "title": result.title, "url": result.url, "snippet": result.snippet, "date": result.date, "source": "web"}))
            .collect(),
    )
}

/// How a preset or model splits its searches: multi-step ones search twice, so their
/// results come in two batches (ids continue across them).
fn search_batches(answer: &Answer, model: &str) -> Vec<std::ops::Range<usize>> {
    let count = answer.search_results.len();
    if crate::content::reasons(model) && count >= 2 {
        let half = count / 2;
        vec![0..half, half..count]
    } else {
        std::iter::once(0..count).collect()
    }
}

/// The images an image search finds, as the SDK's `ImageResult`.
fn image_results(answer: &Answer) -> Value {
    Value::Array(
        answer
            .images
            .iter()
            .map(|url| json!({"image_url": url, "origin_url": "https://example.org/gallery", "height": 480, "width": 640, "title": "A simulated image"}))
            .collect(),
    )
}

fn agent_message(text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": "msg_1", "role": "assistant", "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

fn function_call_item(call: &crate::ToolCall, arguments: &str, status: &str) -> Value {
    json!({
        "type": "function_call", "id": format!("fc_{}", call.call_id), "call_id": call.call_id,
        "name": call.name, "arguments": arguments, "status": status,
    })
}

/// The Agent API response object; a finished answer that calls a function has status
/// `requires_action` and the call as its output.
pub(crate) fn agent_response(id: &str, answer: &Answer, asked: &Asked, status: &str) -> Value {
    let shaped = shape(answer, asked);
    if let (Some(call), "completed") = (&answer.tool_call, status) {
        return json!({
            "id": id, "object": "response", "created_at": CREATED, "status": "requires_action",
            "model": asked.model,
            "output": [function_call_item(call, &call.arguments, "completed")],
            "usage": agent_usage(asked, token_count(&call.arguments)),
        });
    }
    let (output, usage) = if status == "completed" {
        let mut output: Vec<Value> = search_batches(answer, &asked.model)
            .into_iter()
            .map(|range| json!({"type": "search_results", "results": agent_results(answer, range)}))
            .collect();
        output.push(agent_message(shaped.text, "completed"));
        (
            Value::Array(output),
            agent_usage(asked, token_count(shaped.text)),
        )
    } else {
        (json!([]), Value::Null)
    };
    // An answer the output-token cap cut ends `incomplete`, and says why (Perplexity's
    // migration guide: the old finish reason `length`).
    let cut = status == "completed" && shaped.finish_reason == "length";
    let status = if cut { "incomplete" } else { status };
    let mut response = json!({
        "id": id, "object": "response", "created_at": CREATED, "status": status,
        "model": asked.model, "output": output,
    });
    if !usage.is_null() {
        response["usage"] = usage;
    }
    if cut {
        response["incomplete_details"] = json!({"reason": "max_output_tokens"});
    }
    response
}

/// The Agent API's streaming events, with `sequence_number` counting from 1.
pub(crate) fn agent_stream(
    id: &str,
    answer: &Answer,
    asked: &Asked,
    chunk_chars: usize,
    queries: &[String],
) -> Vec<Frame> {
    let mut frames = AgentFrames(Vec::new());
    frames.push(
        "response.created",
        json!({"response": agent_response(id, answer, asked, "in_progress")}),
    );
    frames.push(
        "response.in_progress",
        json!({"response": agent_response(id, answer, asked, "in_progress")}),
    );
    match &answer.tool_call {
        Some(call) => {
            frames.push(
                "response.output_item.added",
                json!({"output_index": 0, "item": function_call_item(call, "", "in_progress")}),
            );
            frames.push(
                "response.output_item.done",
                json!({"output_index": 0, "item": function_call_item(call, &call.arguments, "completed")}),
            );
        }
        None => {
            frames.reasoning(answer, asked, queries);
            frames.message(answer, asked, chunk_chars);
        }
    }
    let response = agent_response(id, answer, asked, "completed");
    let terminal = if response["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    frames.push(terminal, json!({ "response": response }));
    frames.0
}

/// An Agent API stream's frames as they are written, each numbered in order.
struct AgentFrames(Vec<Frame>);

impl AgentFrames {
    fn push(&mut self, event: &'static str, mut data: Value) {
        data["type"] = event.into();
        data["sequence_number"] = (self.0.len() + 1).into();
        self.0.push(Frame::named(event, data));
    }

    /// The run's reasoning: its searches in steps, skills, image searches, a page read.
    fn reasoning(&mut self, answer: &Answer, asked: &Asked, queries: &[String]) {
        self.push(
            "response.reasoning.started",
            json!({"thought": "Planning the search."}),
        );
        for (step, range) in search_batches(answer, &asked.model).into_iter().enumerate() {
            let step_queries: Vec<String> = if step == 0 {
                queries.to_vec()
            } else {
                queries
                    .iter()
                    .map(|query| format!("{query} follow-up"))
                    .collect()
            };
            self.push(
                "response.reasoning.search_queries",
                json!({"queries": step_queries, "thought": format!("Search step {}.", step + 1)}),
            );
            self.push(
                "response.reasoning.search_results",
                json!({"results": agent_results(answer, range), "thought": "Reading the results."}),
            );
        }
        for skill in &asked.skills {
            self.push("response.skill.loaded", json!({"name": skill}));
        }
        if asked.image_search {
            let query = queries.first().cloned().unwrap_or_default();
            self.push(
                "response.reasoning.image_search_queries",
                json!({"call_id": "img_1", "queries": [query], "thought": "Looking for pictures."}),
            );
            self.push(
                "response.reasoning.image_search_results",
                json!({"call_id": "img_1", "results": image_results(answer)}),
            );
        }
        if !answer.reasoning.is_empty() {
            self.push(
                "response.reasoning.fetch_url_queries",
                json!({"urls": [answer.citations[0]]}),
            );
            self.push(
                "response.reasoning.fetch_url_results",
                json!({"contents": [{"url": answer.citations[0], "title": answer.search_results[0].title, "snippet": answer.search_results[0].snippet}]}),
            );
        }
        self.push(
            "response.reasoning.stopped",
            json!({"thought": answer.reasoning}),
        );
    }

    /// The answer's message: added, its text in pieces of `chunk_chars`, done.
    fn message(&mut self, answer: &Answer, asked: &Asked, chunk_chars: usize) {
        let shaped = shape(answer, asked);
        self.push(
            "response.output_item.added",
            json!({"output_index": 1, "item": agent_message("", "in_progress")}),
        );
        for piece in pieces(shaped.text, chunk_chars) {
            self.push(
                "response.output_text.delta",
                json!({"item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": piece}),
            );
        }
        self.push(
            "response.output_text.done",
            json!({"item_id": "msg_1", "output_index": 1, "content_index": 0, "text": shaped.text}),
        );
        self.push(
            "response.output_item.done",
            json!({"output_index": 1, "item": agent_message(shaped.text, "completed")}),
        );
    }
}

/// The Agent API's `response.failed` frame: the SDK's `ErrorInfo` at the top level.
pub(crate) fn agent_failed_frame(sequence_number: usize) -> Frame {
    Frame::named(
        "response.failed",
        json!({
            "type": "response.failed", "sequence_number": sequence_number,
            "error": {"code": "server_error", "message": "the agent failed while answering", "type": "server_error"},
        }),
    )
}

/// The Agent API's JSON error body: the SDK's `ErrorInfo` (string `code` and `type`).
pub(crate) fn agent_error_body(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        400 | 422 => ("invalid_request_error", "invalid_request"),
        401 | 403 => ("authentication_error", "invalid_api_key"),
        402 => ("insufficient_quota", "insufficient_quota"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        _ => ("server_error", "server_error"),
    };
    json!({"error": {"message": message, "type": kind, "code": code}})
}

/// The answer to `POST /v1/agent/{id}/cancel`.
/// The 404 body of a retired chat-completions route.
pub(crate) fn retired_body() -> Value {
    json!({"error": {
        "message": "Sonar chat completions were retired on 2026-09-27: use the Agent API (POST /v1/agent)",
        "type": "not_found", "code": 404,
    }})
}

/// `GET /v1/models` (the SDK's `ModelListOutput`): the slugs the Agent API takes here.
pub(crate) fn model_list() -> Value {
    let data: Vec<Value> = crate::config::AGENT_MODELS
        .iter()
        .map(|id| {
            let owner = id.split_once('/').map_or("perplexity", |(owner, _)| owner);
            json!({"id": id, "object": "model", "created": CREATED, "owned_by": owner})
        })
        .collect();
    json!({"object": "list", "data": data})
}

pub(crate) fn agent_cancelled(id: &str) -> Value {
    json!({"id": id, "object": "response", "created_at": CREATED, "status": "cancelled", "model": "", "output": []})
}

/// The Search API's answer.
pub(crate) fn search_body(id: &str, answer: &Answer, max_results: usize) -> Value {
    let results: Vec<Value> = answer
        .search_results
        .iter()
        .take(max_results)
        .map(|result| {
            let mut value = json!({"title": result.title, "url": result.url, "snippet": result.snippet, "last_updated": "2026-03-14"});
            // The Search API leaves an unknown date out (the official MCP server's schema,
            // `date: z.string().optional()`, refuses a null).
            if let Some(date) = &result.date {
                value["date"] = date.as_str().into();
            }
            value
        })
        .collect();
    json!({"id": id, "results": results, "server_time": "2026-11-29T00:00:00Z"})
}

/// The 401 page the real service's proxy sends (HTML, not JSON).
pub(crate) const UNAUTHORIZED_PAGE: &str = "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>openresty/1.27.4.1</center>\r\n</body>\r\n</html>\r\n";

/// The real service's JSON error body for `status`.
pub(crate) fn error_body(status: u16, message: Option<&str>) -> Value {
    if status == 422 {
        return json!({"detail": [{"loc": ["body", "messages"], "msg": message.unwrap_or("Field required"), "type": "missing"}]});
    }
    let (kind, default_message) = match status {
        400 => ("invalid_parameter", "Invalid request"),
        402 => (
            "insufficient_quota",
            "Insufficient credits: add credits to your API account",
        ),
        403 => ("permission_denied", "Forbidden"),
        404 => ("not_found", "Not found"),
        429 => (
            "rate_limit_exceeded",
            "Rate limit exceeded, please retry later",
        ),
        500..=599 => ("server_error", "Internal server error"),
        _ => ("error", "Request failed"),
    };
    json!({"error": {"message": message.unwrap_or(default_message), "type": kind, "code": status}})
}
