//! The four tools, with the same names and input schemas as Perplexity's official MCP server,
//! so that one can replace the other; answers stream as progress notifications.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{ChatEvent, ChatProvider, ChatRequest, Error, Message, Role};
use futures_util::StreamExt;
use provider_perplexity::PerplexityProvider;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    ProgressNotificationParam, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Map, Value, json};

/// The models behind the chat tools.
const ASK_MODEL: &str = "sonar-pro";
const REASON_MODEL: &str = "sonar-reasoning-pro";
const RESEARCH_MODEL: &str = "sonar-deep-research";

/// Progress notifications are sent at most this often; text in between is gathered.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);

fn schema(value: Value) -> Arc<Map<String, Value>> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(Map::new()),
    }
}

fn messages_schema() -> Value {
    json!({
        "type": "array",
        "description": "Array of conversation messages",
        "items": {
            "type": "object",
            "properties": {
                "role": {"type": "string", "enum": ["system", "user", "assistant"], "description": "Role of the message sender"},
                "content": {"type": "string", "description": "The content of the message"}
            },
            "required": ["role", "content"]
        }
    })
}

fn filters() -> Map<String, Value> {
    let value = json!({
        "search_recency_filter": {"type": "string", "enum": ["hour", "day", "week", "month", "year"], "description": "Filter search results by recency."},
        "search_domain_filter": {"type": "array", "items": {"type": "string"}, "description": "Restrict search results to these domains; a '-' prefix excludes one."},
        "search_context_size": {"type": "string", "enum": ["low", "medium", "high"], "description": "How much web context is retrieved."}
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn chat_tool(
    name: &'static str,
    title: &str,
    description: &'static str,
    with_filters: bool,
    strip_thinking: bool,
) -> Tool {
    let mut properties = Map::new();
    properties.insert("messages".into(), messages_schema());
    if with_filters {
        properties.extend(filters());
    }
    if strip_thinking {
        properties.insert(
            "strip_thinking".into(),
            json!({"type": "boolean", "description": "Leave the model's reasoning out of the result (default false)."}),
        );
    }
    let input = json!({"type": "object", "properties": properties, "required": ["messages"]});
    let output = json!({
        "type": "object",
        "properties": {
            "response": {"type": "string", "description": "The answer with its numbered citations"},
            "answer": {"type": "string"},
            "citations": {"type": "array", "items": {"type": "string"}},
            "search_results": {"type": "array"},
            "usage": {},
            "fallback": {"type": "boolean"},
            "cached": {"type": "boolean"}
        },
        "required": ["response"]
    });
    Tool::new(name, description, schema(input))
        .with_title(title)
        .with_raw_output_schema(schema(output))
        .with_annotations(annotations())
}

fn annotations() -> ToolAnnotations {
    ToolAnnotations::from_raw(None, Some(true), Some(false), Some(false), Some(true))
}

/// Every tool, as `tools/list` gives them.
pub(crate) fn list() -> ListToolsResult {
    let search_input = json!({
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "Search query string"},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 20, "description": "Maximum number of results (1-20, default 10)"},
            "max_tokens_per_page": {"type": "integer", "minimum": 256, "maximum": 2048, "description": "Maximum tokens extracted per page (default 1024)"},
            "country": {"type": "string", "description": "ISO 3166-1 alpha-2 country code for regional results"},
            "search_recency_filter": {"type": "string", "enum": ["hour", "day", "week", "month", "year"]},
            "search_domain_filter": {"type": "array", "items": {"type": "string"}},
            "search_type": {"type": "string", "enum": ["web", "fast"]}
        },
        "required": ["query"]
    });
    let search_output = json!({
        "type": "object",
        "properties": {"results": {"type": "string"}, "items": {"type": "array"}},
        "required": ["results"]
    });
    ListToolsResult::with_all_items(vec![
        chat_tool(
            "perplexity_ask",
            "Ask Perplexity",
            "Answer a question with web-grounded AI (Sonar Pro). Best for quick factual questions, summaries and explanations. Returns the answer with numbered citations; the answer streams as progress when a progress token is given.",
            true,
            false,
        ),
        chat_tool(
            "perplexity_reason",
            "Advanced Reasoning",
            "Analyze a question with step-by-step reasoning and web grounding (Sonar Reasoning Pro). Best for math, logic, comparisons and complex arguments.",
            true,
            true,
        ),
        chat_tool(
            "perplexity_research",
            "Deep Research",
            "Deep, multi-source research on a topic (Sonar Deep Research). Slow: can take minutes. Returns a detailed answer with numbered citations.",
            false,
            true,
        ),
        Tool::new(
            "perplexity_search",
            "Search the web and return ranked results with titles, URLs, snippets and dates, with no AI synthesis.",
            schema(search_input),
        )
        .with_title("Search the Web")
        .with_raw_output_schema(schema(search_output))
        .with_annotations(annotations()),
    ])
}

fn invalid(field: &str, problem: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("invalid argument '{field}': {problem}"),
        Some(json!({"field": field})),
    )
}

fn messages(arguments: &Map<String, Value>) -> Result<Vec<Message>, ErrorData> {
    let Some(Value::Array(items)) = arguments.get("messages") else {
        return Err(invalid(
            "messages",
            "must be an array of {role, content} objects",
        ));
    };
    if items.is_empty() {
        return Err(invalid("messages", "must not be empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let role = match item["role"].as_str() {
                Some("system") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                _ => {
                    return Err(invalid(
                        &format!("messages[{index}].role"),
                        "must be system, user or assistant",
                    ));
                }
            };
            let Some(content) = item["content"].as_str() else {
                return Err(invalid(
                    &format!("messages[{index}].content"),
                    "must be a string",
                ));
            };
            Ok(Message {
                role,
                content: content.to_owned(),
            })
        })
        .collect()
}

/// Copies the optional search filters into the request's options, checking their types.
fn apply_filters(
    arguments: &Map<String, Value>,
    mut request: ChatRequest,
) -> Result<ChatRequest, ErrorData> {
    if let Some(value) = arguments.get("search_recency_filter") {
        match value.as_str() {
            Some(recency @ ("hour" | "day" | "week" | "month" | "year")) => {
                request = request.with_option("search_recency_filter", recency);
            }
            _ => {
                return Err(invalid(
                    "search_recency_filter",
                    "must be hour, day, week, month or year",
                ));
            }
        }
    }
    if let Some(value) = arguments.get("search_domain_filter") {
        let domains = value
            .as_array()
            .filter(|domains| domains.iter().all(Value::is_string))
            .ok_or_else(|| invalid("search_domain_filter", "must be an array of domain names"))?;
        request = request.with_option("search_domain_filter", Value::Array(domains.clone()));
    }
    if let Some(value) = arguments.get("search_context_size") {
        match value.as_str() {
            Some(size @ ("low" | "medium" | "high")) => {
                request =
                    request.with_option("web_search_options", json!({"search_context_size": size}));
            }
            _ => {
                return Err(invalid(
                    "search_context_size",
                    "must be low, medium or high",
                ));
            }
        }
    }
    Ok(request)
}

/// Runs a tool call.
pub(crate) async fn call(
    provider: &Arc<dyn ChatProvider>,
    perplexity: &PerplexityProvider,
    request: CallToolRequestParams,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let arguments = request.arguments.unwrap_or_default();
    let (model, with_filters, strip_option) = match request.name.as_ref() {
        "perplexity_ask" => (ASK_MODEL, true, false),
        "perplexity_reason" => (REASON_MODEL, true, true),
        "perplexity_research" => (RESEARCH_MODEL, false, true),
        "perplexity_search" => {
            return search(perplexity, &arguments)
                .await
                .map(CallToolResponse::from);
        }
        other => {
            return Err(ErrorData::invalid_params(
                format!("unknown tool '{other}'"),
                None,
            ));
        }
    };
    let mut chat = ChatRequest {
        model: model.to_owned(),
        messages: messages(&arguments)?,
        ..ChatRequest::default()
    };
    if with_filters {
        chat = apply_filters(&arguments, chat)?;
    }
    let strip_thinking = match arguments.get("strip_thinking") {
        None => false,
        Some(Value::Bool(strip)) if strip_option => *strip,
        Some(_) if strip_option => return Err(invalid("strip_thinking", "must be a boolean")),
        Some(_) => return Err(invalid("strip_thinking", "is not an argument of this tool")),
    };
    let progress = context.meta.get_progress_token();
    let mut stream = provider.chat_stream(chat);
    let mut pending = String::new();
    let mut sent_chars = 0_usize;
    let mut last_sent = Instant::now();
    let outcome = loop {
        let event = tokio::select! {
            event = stream.next() => event,
            () = context.ct.cancelled() => {
                // Dropping the stream cancels the upstream request.
                drop(stream);
                return Err(ErrorData::internal_error("cancelled by the client", None));
            }
        };
        match event {
            Some(Ok(ChatEvent::TextDelta(text))) => {
                pending.push_str(&text);
                if last_sent.elapsed() >= PROGRESS_INTERVAL {
                    send_progress(&context, progress.as_ref(), &mut pending, &mut sent_chars).await;
                    last_sent = Instant::now();
                }
            }
            Some(Ok(ChatEvent::Restart)) => {
                // The answer starts over: say so, and count from zero again.
                pending.clear();
                sent_chars = 0;
            }
            Some(Ok(ChatEvent::Done(response))) => break Ok(response),
            Some(Ok(_)) => {}
            Some(Err(error)) => break Err(error),
            None => break Err(Error::protocol("the answer ended without its final event")),
        }
    };
    send_progress(&context, progress.as_ref(), &mut pending, &mut sent_chars).await;
    Ok(CallToolResponse::from(match outcome {
        Ok(response) => answer_result(&response, strip_thinking),
        Err(error) => error_result(&error),
    }))
}

async fn send_progress(
    context: &RequestContext<RoleServer>,
    token: Option<&rmcp::model::ProgressToken>,
    pending: &mut String,
    sent_chars: &mut usize,
) {
    let Some(token) = token else {
        pending.clear();
        return;
    };
    if pending.is_empty() {
        return;
    }
    *sent_chars += pending.chars().count();
    let message = std::mem::take(pending);
    let notification =
        ProgressNotificationParam::new(token.clone(), *sent_chars as f64).with_message(message);
    if let Err(error) = context.peer.notify_progress(notification).await {
        tracing::warn!(%error, "could not send a progress notification");
    }
}

fn answer_result(response: &chat_core::ChatResponse, strip_thinking: bool) -> CallToolResult {
    let mut text = String::new();
    if !strip_thinking && !response.reasoning.is_empty() {
        text.push_str(&format!("<think>{}</think>\n\n", response.reasoning));
    }
    text.push_str(&response.text);
    if !response.sources.citations.is_empty() {
        text.push_str("\n\nCitations:\n");
        for (number, url) in response.sources.numbered() {
            text.push_str(&format!("[{number}] {url}\n"));
        }
    }
    let mut result = CallToolResult::success(vec![ContentBlock::text(text.clone())]);
    result.structured_content = Some(json!({
        "response": text,
        "answer": response.text,
        "citations": response.sources.citations,
        "search_results": response.sources.search_results,
        "usage": response.usage,
        "fallback": response.fallback,
        "cached": response.cached,
    }));
    result
}

/// A failed call as a tool error the assistant can read, never a crashed server.
fn error_result(error: &Error) -> CallToolResult {
    let mut message = match error.kind() {
        chat_core::ErrorKind::Auth => format!("Perplexity rejected the API key: {error}"),
        chat_core::ErrorKind::Interrupted => format!(
            "{error}. The answer so far:\n\n{}",
            error.partial_text().unwrap_or_default()
        ),
        _ => format!("Perplexity request failed: {error}"),
    };
    if let Some(wait) = error.retry_after()
        && error.kind() != chat_core::ErrorKind::RateLimited
    {
        message.push_str(&format!(" (retry in {} s)", wait.as_secs().max(1)));
    }
    let mut result = CallToolResult::error(vec![ContentBlock::text(message.clone())]);
    result.structured_content = Some(json!({
        "error": error.kind().as_str(),
        "message": message,
        "partial": error.partial_text(),
    }));
    result
}

async fn search(
    perplexity: &PerplexityProvider,
    arguments: &Map<String, Value>,
) -> Result<CallToolResult, ErrorData> {
    let Some(query) = arguments
        .get("query")
        .and_then(Value::as_str)
        .filter(|query| !query.trim().is_empty())
    else {
        return Err(invalid("query", "must be a non-empty string"));
    };
    let mut body = json!({"query": query});
    let integer = |name: &str, low: u64, high: u64| -> Result<Option<u64>, ErrorData> {
        match arguments.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .filter(|number| (low..=high).contains(number))
                .map(Some)
                .ok_or_else(|| invalid(name, &format!("must be an integer from {low} to {high}"))),
        }
    };
    body["max_results"] = integer("max_results", 1, 20)?.unwrap_or(10).into();
    body["max_tokens_per_page"] = integer("max_tokens_per_page", 256, 2048)?
        .unwrap_or(1024)
        .into();
    for name in ["country", "search_recency_filter", "search_type"] {
        if let Some(value) = arguments.get(name) {
            let text = value
                .as_str()
                .ok_or_else(|| invalid(name, "must be a string"))?;
            body[name] = text.into();
        }
    }
    // The tool takes the official server's `web|fast`, but the Search API's own
    // `search_type` is `web|people` (the SDK's `SearchCreateParams`); `fast` belongs to
    // Sonar's `web_search_options`. So `fast` is not forwarded: the Search API's default
    // backend answers, and its lighter page extraction keeps it quick.
    if body["search_type"] == "fast" {
        if let Some(fields) = body.as_object_mut() {
            fields.remove("search_type");
        }
        if arguments.get("max_tokens_per_page").is_none() {
            body["max_tokens_per_page"] = 512.into();
        }
    } else if !body["search_type"].is_null() && body["search_type"] != "web" {
        return Err(invalid("search_type", "must be web or fast"));
    }
    if let Some(value) = arguments.get("search_domain_filter") {
        if !value
            .as_array()
            .is_some_and(|domains| domains.iter().all(Value::is_string))
        {
            return Err(invalid(
                "search_domain_filter",
                "must be an array of domain names",
            ));
        }
        body["search_domain_filter"] = value.clone();
    }
    match perplexity.search(body).await {
        Ok(results) => {
            let mut text = format!("Found {} search results:\n\n", results.len());
            for (index, result) in results.iter().enumerate() {
                text.push_str(&format!(
                    "{}. **{}**\n   URL: {}\n",
                    index + 1,
                    result.title,
                    result.url
                ));
                if let Some(snippet) = &result.snippet {
                    text.push_str(&format!("   {snippet}\n"));
                }
                if let Some(date) = &result.date {
                    text.push_str(&format!("   Date: {date}\n"));
                }
                text.push('\n');
            }
            let mut result = CallToolResult::success(vec![ContentBlock::text(text.clone())]);
            result.structured_content = Some(json!({"results": text, "items": results}));
            Ok(result)
        }
        Err(error) => Ok(error_result(&error)),
    }
}
