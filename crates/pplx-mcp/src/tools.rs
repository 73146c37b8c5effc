//! The official MCP server's four tools (v1.3: the same names, input schemas and Agent API
//! presets), so that one can replace the other, and the seed server's
//! `perplexity_search_streaming`; reasoning steps and then the answer stream as progress
//! notifications.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{ChatEvent, ChatProvider, ChatRequest, Error, Message, Role};
use futures_util::StreamExt;
use provider_perplexity::{
    AgentOptions, Api, PerplexityProvider, Recency, SearchContextSize, SearchRequest, SearchType,
    SonarOptions, WebSearch,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    ProgressNotificationParam, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Map, Value, json};

/// The models (or presets) behind the chat tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Models {
    pub(crate) ask: String,
    pub(crate) reason: String,
    pub(crate) research: String,
}

impl Default for Models {
    /// The official server's presets: `fast`, `medium`, `high`.
    fn default() -> Self {
        Models {
            ask: "fast".into(),
            reason: "medium".into(),
            research: "high".into(),
        }
    }
}

/// The seed server's default model.
const SEED_MODEL: &str = "sonar";

/// The tools this server offers: the official server's four and the seed server's one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolName {
    /// `perplexity_ask`: a quick answer.
    Ask,
    /// `perplexity_reason`: step-by-step reasoning.
    Reason,
    /// `perplexity_research`: deep research (minutes).
    Research,
    /// `perplexity_search`: the Search API's ranked results.
    Search,
    /// `perplexity_search_streaming`: the seed server's streamed answer.
    SearchStreaming,
}

impl ToolName {
    const ALL: [ToolName; 5] = [
        ToolName::Ask,
        ToolName::Reason,
        ToolName::Research,
        ToolName::Search,
        ToolName::SearchStreaming,
    ];

    /// The name clients call it by.
    fn as_str(self) -> &'static str {
        match self {
            ToolName::Ask => "perplexity_ask",
            ToolName::Reason => "perplexity_reason",
            ToolName::Research => "perplexity_research",
            ToolName::Search => "perplexity_search",
            ToolName::SearchStreaming => "perplexity_search_streaming",
        }
    }

    fn parse(name: &str) -> Option<ToolName> {
        ToolName::ALL.into_iter().find(|tool| tool.as_str() == name)
    }

    /// Whether the tool takes the search filters (as the official server's ask and reason
    /// do; research does not).
    fn takes_filters(self) -> bool {
        matches!(self, ToolName::Ask | ToolName::Reason)
    }
}

/// A reasoning line longer than this is sent as it is, without waiting for its end.
const MAX_STEP_CHARS: usize = 2_000;

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

fn chat_tool(tool: ToolName, title: &str, description: String) -> Tool {
    let mut properties = Map::new();
    properties.insert("messages".into(), messages_schema());
    if tool.takes_filters() {
        properties.extend(filters());
    }
    let input = json!({"type": "object", "properties": properties, "required": ["messages"]});
    let output = json!({
        "type": "object",
        "properties": {
            "response": {"type": "string", "description": "The answer with its numbered citations"},
            "answer": {"type": "string"},
            "reasoning": {"type": "string"},
            "citations": {"type": "array", "items": {"type": "string"}},
            "search_results": {"type": "array"},
            "usage": {},
            "fallback": {"type": "boolean"},
            "cached": {"type": "boolean"}
        },
        "required": ["response"]
    });
    Tool::new(tool.as_str(), description, schema(input))
        .with_title(title)
        .with_raw_output_schema(schema(output))
        .with_annotations(annotations())
}

fn annotations() -> ToolAnnotations {
    ToolAnnotations::from_raw(None, Some(true), Some(false), Some(false), Some(true))
}

/// Every tool, as `tools/list` gives them.
pub(crate) fn list(models: &Models) -> ListToolsResult {
    ListToolsResult::with_all_items(vec![
        chat_tool(
            ToolName::Ask,
            "Ask Perplexity",
            format!(
                "Answer a question using web-grounded AI (Perplexity Agent API, {} preset). Best for: quick factual questions, summaries, explanations, and general Q&A. Returns a text response with numbered citations. Fastest and cheapest option. Supports filtering by recency (hour/day/week/month/year), domain restrictions, and search context size. For in-depth multi-source research, use perplexity_research instead. For step-by-step reasoning and analysis, use perplexity_reason instead.",
                models.ask
            ),
        ),
        chat_tool(
            ToolName::Reason,
            "Advanced Reasoning",
            format!(
                "Analyze a question using step-by-step reasoning with web grounding (Perplexity Agent API, {} preset). Best for: math, logic, comparisons, complex arguments, and tasks requiring chain-of-thought. Returns a reasoned response with numbered citations. Supports filtering by recency (hour/day/week/month/year), domain restrictions, and search context size.",
                models.reason
            ),
        ),
        chat_tool(
            ToolName::Research,
            "Deep Research",
            format!(
                "Conduct deep, multi-source research on a topic (Perplexity Agent API, {} preset). Best for: literature reviews, comprehensive overviews, investigative queries needing many sources. Returns a detailed response with numbered citations. Significantly slower than other tools (can take minutes).",
                models.research
            ),
        ),
        search_tool(),
        seed_tool(),
    ])
}

/// `perplexity_search`: the Search API's ranked results.
fn search_tool() -> Tool {
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
    Tool::new(
        ToolName::Search.as_str(),
        "Search the web and return a ranked list of results with titles, URLs, snippets, and dates. Best for: finding specific URLs, checking recent news, verifying facts, discovering sources. Returns formatted results (title, URL, snippet, date) with no AI synthesis.",
        schema(search_input),
    )
    .with_title("Search the Web")
    .with_raw_output_schema(schema(search_output))
    .with_annotations(annotations())
}

/// `perplexity_search_streaming`: the seed server's tool.
fn seed_tool() -> Tool {
    let seed_input = json!({
        "type": "object",
        "properties": {
        "query": {"type": "string", "description": "The question to answer"},
        "model": {"type": "string", "default": SEED_MODEL, "description": "The model (default sonar)"}
        },
        "required": ["query"]
    });
    let seed_output = json!({
        "type": "object",
        "properties": {
        "success": {"type": "boolean"},
        "answer": {"type": "string"},
        "model": {"type": "string"},
        "streaming": {"type": "boolean", "description": "false when the answer came from the non-streaming fallback"},
        "error": {"type": "string"}
        },
        "required": ["success"]
    });
    Tool::new(
        ToolName::SearchStreaming.as_str(),
        "Stream an answer from Perplexity with key rotation, retries and a non-streaming fallback; returns {success, answer, model, streaming}.",
        schema(seed_input),
    )
    .with_title("Perplexity Search (streaming)")
    .with_raw_output_schema(schema(seed_output))
    .with_annotations(annotations())
}

fn invalid(field: &str, problem: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("invalid argument '{field}': {problem}"),
        Some(json!({"field": field})),
    )
}

/// The `query` argument: a non-empty string.
fn query(arguments: &Map<String, Value>) -> Result<&str, ErrorData> {
    arguments
        .get("query")
        .and_then(Value::as_str)
        .filter(|query| !query.trim().is_empty())
        .ok_or_else(|| invalid("query", "must be a non-empty string"))
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
            Ok(Message::new(role, content))
        })
        .collect()
}

/// A `search_recency_filter` argument, checked.
fn recency(value: &Value) -> Result<Recency, ErrorData> {
    value
        .as_str()
        .and_then(|name| Recency::parse(name).ok())
        .ok_or_else(|| {
            invalid(
                "search_recency_filter",
                "must be hour, day, week, month or year",
            )
        })
}

/// The optional search filters, checked, as the provider's typed options on the request (an
/// empty domain list is no filter): on the Agent API inside a `web_search` tool, as the
/// official server's `buildWebSearchTool` sends them (they are not top-level Agent API
/// fields); on Sonar as its top-level fields and `web_search_options`.
fn apply_filters(
    arguments: &Map<String, Value>,
    request: ChatRequest,
    api: Api,
) -> Result<ChatRequest, ErrorData> {
    let mut options = SonarOptions::default();
    if let Some(value) = arguments.get("search_recency_filter") {
        options.filters.search_recency_filter = Some(recency(value)?);
    }
    if let Some(value) = arguments.get("search_domain_filter") {
        let domains = value
            .as_array()
            .and_then(|domains| {
                domains
                    .iter()
                    .map(|domain| domain.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
            })
            .ok_or_else(|| invalid("search_domain_filter", "must be an array of domain names"))?;
        options.filters.search_domain_filter = domains;
    }
    if let Some(value) = arguments.get("search_context_size") {
        options.search_context_size = Some(match value.as_str() {
            Some("low") => SearchContextSize::Low,
            Some("medium") => SearchContextSize::Medium,
            Some("high") => SearchContextSize::High,
            _ => {
                return Err(invalid(
                    "search_context_size",
                    "must be low, medium or high",
                ));
            }
        });
    }
    if api != Api::Agent {
        return Ok(options.apply(request));
    }
    let mut search = WebSearch::default();
    search.filters = options.filters;
    search.search_context_size = options.search_context_size;
    if search == WebSearch::default() {
        // No override: the effort level's own web_search settings stay in effect.
        return Ok(request);
    }
    let mut agent = AgentOptions::default();
    agent.web_search = Some(search);
    agent
        .apply(request)
        .map_err(|error| ErrorData::internal_error(error.to_string(), None))
}

/// Runs a tool call. Arguments a tool does not know are ignored, as the official server's
/// schemas strip them (so legacy ones such as `strip_thinking` never fail a call).
pub(crate) async fn call(
    provider: &Arc<dyn ChatProvider>,
    perplexity: &PerplexityProvider,
    models: &Models,
    request: CallToolRequestParams,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let arguments = request.arguments.unwrap_or_default();
    let Some(tool) = ToolName::parse(&request.name) else {
        return Err(ErrorData::invalid_params(
            format!("unknown tool '{}'", request.name),
            None,
        ));
    };
    let model = match tool {
        ToolName::Ask => &models.ask,
        ToolName::Reason => &models.reason,
        ToolName::Research => &models.research,
        ToolName::Search => {
            return search(perplexity, &arguments)
                .await
                .map(CallToolResponse::from);
        }
        ToolName::SearchStreaming => {
            return seed(provider, &arguments, context)
                .await
                .map(CallToolResponse::from);
        }
    };
    let mut chat = ChatRequest {
        model: model.clone(),
        messages: messages(&arguments)?,
        ..ChatRequest::default()
    };
    if tool.takes_filters() {
        let (_, api) = perplexity.resolve(model);
        chat = apply_filters(&arguments, chat, api)?;
    }
    Ok(CallToolResponse::from(
        match stream_answer(provider, chat, &context).await? {
            Ok(response) => answer_result(&response),
            Err(error) => error_result(&error),
        },
    ))
}

/// The seed server's `perplexity_search_streaming(query, model = "sonar")`: the same
/// streaming path, and its exact result, `{success, answer, model, streaming}` (`streaming`
/// false when the fallback answered) or `{success: false, error}`, as structured content and
/// as JSON text. A failure also sets the result's `isError`, so a client that checks the flag
/// sees it (the text keeps the seed's fields).
async fn seed(
    provider: &Arc<dyn ChatProvider>,
    arguments: &Map<String, Value>,
    context: RequestContext<RoleServer>,
) -> Result<CallToolResult, ErrorData> {
    let query = query(arguments)?;
    let model = match arguments.get("model") {
        None | Some(Value::Null) => SEED_MODEL,
        Some(Value::String(model)) if !model.trim().is_empty() => model.as_str(),
        Some(_) => return Err(invalid("model", "must be a model name")),
    };
    let (value, failed) =
        match stream_answer(provider, ChatRequest::new(model, query), &context).await? {
            Ok(response) => (
                json!({
                    "success": true,
                    "answer": response.text,
                    "model": model,
                    "streaming": !response.fallback,
                }),
                false,
            ),
            Err(error) => (
                json!({"success": false, "error": error.report().to_string()}),
                true,
            ),
        };
    let content = vec![ContentBlock::text(value.to_string())];
    let mut result = if failed {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    };
    result.structured_content = Some(value);
    Ok(result)
}

/// Streams one answer, sending progress when the caller gave a progress token: each line of
/// reasoning (searches, pages read, thoughts) as it completes, then the answer's text,
/// throttled. The progress value only grows (one per reasoning line, one per character of
/// answer); a restart is said in a message, never by going backwards. The client cancelling
/// drops the stream, which cancels the upstream request (and an Agent run on the server).
async fn stream_answer(
    provider: &Arc<dyn ChatProvider>,
    chat: ChatRequest,
    context: &RequestContext<RoleServer>,
) -> Result<Result<Box<chat_core::ChatResponse>, Error>, ErrorData> {
    let mut progress = Progress {
        token: context.meta.get_progress_token(),
        value: 0,
        pending: String::new(),
        reasoning: String::new(),
        last_sent: Instant::now(),
    };
    let mut stream = provider.chat_stream(chat);
    let outcome = loop {
        let event = tokio::select! {
            event = stream.next() => event,
            () = context.ct.cancelled() => {
                drop(stream);
                return Err(ErrorData::internal_error("cancelled by the client", None));
            }
        };
        match event {
            Some(Ok(ChatEvent::ReasoningDelta(text))) => {
                progress.reasoning(context, &text).await;
            }
            Some(Ok(ChatEvent::TextDelta(text))) => {
                progress.flush_reasoning(context).await;
                progress.pending.push_str(&text);
                if progress.last_sent.elapsed() >= PROGRESS_INTERVAL {
                    progress.send_text(context).await;
                }
            }
            Some(Ok(ChatEvent::Restart)) => {
                progress.send_text(context).await;
                progress
                    .send(
                        context,
                        "\n\n[the stream broke; the answer starts over]\n\n".into(),
                        1,
                    )
                    .await;
            }
            Some(Ok(ChatEvent::Done(response))) => break Ok(response),
            Some(Ok(_)) => {}
            Some(Err(error)) => break Err(error),
            None => break Err(Error::protocol("the answer ended without its final event")),
        }
    };
    progress.flush_reasoning(context).await;
    progress.send_text(context).await;
    Ok(outcome)
}

/// Progress notifications of one call.
struct Progress {
    token: Option<rmcp::model::ProgressToken>,
    /// The last value sent: it only grows.
    value: u64,
    /// Answer text not yet sent.
    pending: String,
    /// The reasoning line being gathered.
    reasoning: String,
    last_sent: Instant,
}

impl Progress {
    async fn send(&mut self, context: &RequestContext<RoleServer>, message: String, step: u64) {
        let Some(token) = &self.token else { return };
        self.value = self.value.saturating_add(step);
        let notification =
            ProgressNotificationParam::new(token.clone(), self.value as f64).with_message(message);
        if let Err(error) = context.peer.notify_progress(notification).await {
            tracing::warn!(%error, "could not send a progress notification");
        }
        self.last_sent = Instant::now();
    }

    /// Gathers reasoning; each complete line (or an overlong one) becomes a message.
    async fn reasoning(&mut self, context: &RequestContext<RoleServer>, text: &str) {
        if self.token.is_none() {
            return;
        }
        self.reasoning.push_str(text);
        while let Some(end) = self.reasoning.find('\n') {
            let line: String = self.reasoning.drain(..=end).collect();
            self.send_step(context, line).await;
        }
        if self.reasoning.chars().count() > MAX_STEP_CHARS {
            let line = std::mem::take(&mut self.reasoning);
            self.send_step(context, line).await;
        }
    }

    async fn flush_reasoning(&mut self, context: &RequestContext<RoleServer>) {
        let line = std::mem::take(&mut self.reasoning);
        self.send_step(context, line).await;
    }

    async fn send_step(&mut self, context: &RequestContext<RoleServer>, line: String) {
        let line = line.trim();
        if !line.is_empty() {
            self.send(context, line.to_owned(), 1).await;
        }
    }

    async fn send_text(&mut self, context: &RequestContext<RoleServer>) {
        if self.pending.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        let chars = text.chars().count() as u64;
        self.send(context, text, chars).await;
    }
}

/// The answer with its citations, as the official server formats it; the reasoning (sent as
/// progress) is kept apart, in the structured content.
fn answer_result(response: &chat_core::ChatResponse) -> CallToolResult {
    let mut text = response.text.clone();
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
        "reasoning": response.reasoning,
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
    let report = error.report();
    let mut message = match error.kind() {
        chat_core::ErrorKind::Auth => format!("Perplexity rejected the API key: {report}"),
        chat_core::ErrorKind::Interrupted => format!(
            "{report}. The answer so far:\n\n{}",
            error.partial_text().unwrap_or_default()
        ),
        _ => format!("Perplexity request failed: {report}"),
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

/// The tool's arguments as a Search API request, checked as the official server's schema
/// does. The tool takes the official server's `search_type` `web|fast`, but the Search API's
/// own is `web|people` (the SDK's `SearchCreateParams`), and `fast` belongs to Sonar's
/// `web_search_options`: so `fast` is not forwarded; the Search API's default backend answers,
/// with lighter page extraction to keep it quick.
fn search_request(arguments: &Map<String, Value>) -> Result<SearchRequest, ErrorData> {
    let integer = |name: &str, low: u32, high: u32| -> Result<Option<u32>, ErrorData> {
        match arguments.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|number| u32::try_from(number).ok())
                .filter(|number| (low..=high).contains(number))
                .map(Some)
                .ok_or_else(|| invalid(name, &format!("must be an integer from {low} to {high}"))),
        }
    };
    let text = |name: &str| -> Result<Option<String>, ErrorData> {
        match arguments.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_str()
                .map(|text| Some(text.to_owned()))
                .ok_or_else(|| invalid(name, "must be a string")),
        }
    };
    let mut request = SearchRequest::new(query(arguments)?);
    request.max_results = Some(integer("max_results", 1, 20)?.unwrap_or(10));
    let pages = integer("max_tokens_per_page", 256, 2048)?;
    request.max_tokens_per_page = Some(pages.unwrap_or(1024));
    request.country = text("country")?;
    if let Some(value) = arguments.get("search_recency_filter") {
        request.filters.search_recency_filter = Some(recency(value)?);
    }
    match text("search_type")?.as_deref() {
        None => {}
        Some("web") => request.search_type = Some(SearchType::Web),
        Some("fast") => request.max_tokens_per_page = Some(pages.unwrap_or(512)),
        Some(_) => return Err(invalid("search_type", "must be web or fast")),
    }
    if let Some(value) = arguments.get("search_domain_filter") {
        let domains: Option<Vec<String>> = value.as_array().and_then(|domains| {
            domains
                .iter()
                .map(|domain| domain.as_str().map(str::to_owned))
                .collect()
        });
        request.filters.search_domain_filter = domains
            .ok_or_else(|| invalid("search_domain_filter", "must be an array of domain names"))?;
    }
    Ok(request)
}

async fn search(
    perplexity: &PerplexityProvider,
    arguments: &Map<String, Value>,
) -> Result<CallToolResult, ErrorData> {
    let request = search_request(arguments)?;
    match perplexity.search(&request).await {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filtered(arguments: Value) -> Result<ChatRequest, ErrorData> {
        let Value::Object(arguments) = arguments else {
            panic!("arguments are an object")
        };
        apply_filters(
            &arguments,
            ChatRequest::new("sonar", "Explain quantum computing"),
            Api::Sonar,
        )
    }

    #[test]
    fn on_the_agent_api_filters_go_inside_the_web_search_tool() {
        let arguments = json!({
            "search_recency_filter": "week",
            "search_domain_filter": ["nasa.gov"],
            "search_context_size": "high",
        });
        let Value::Object(arguments) = arguments else {
            unreachable!()
        };
        let request = apply_filters(&arguments, ChatRequest::new("fast", "q"), Api::Agent).unwrap();
        let options: Value = request.options.into_iter().collect::<Map<_, _>>().into();
        // The official server's buildWebSearchTool, exactly.
        assert_eq!(
            options,
            json!({"tools": [{"type": "web_search", "filters": {"search_recency_filter": "week",
                "search_domain_filter": ["nasa.gov"]}, "search_context_size": "high"}]})
        );
        let none = apply_filters(&Map::new(), ChatRequest::new("fast", "q"), Api::Agent).unwrap();
        assert!(none.options.is_empty(), "no override, no tool");
    }

    #[test]
    fn filters_reach_the_request_as_perplexitys_options_and_bad_ones_are_refused() {
        let request = filtered(json!({
            "search_recency_filter": "week",
            "search_domain_filter": ["nasa.gov", "-example.com"],
            "search_context_size": "high",
        }))
        .unwrap();
        let options: Value = request.options.into_iter().collect::<Map<_, _>>().into();
        assert_eq!(
            options,
            json!({
                "search_recency_filter": "week",
                "search_domain_filter": ["nasa.gov", "-example.com"],
                "web_search_options": {"search_context_size": "high"},
            })
        );
        assert!(filtered(json!({})).unwrap().options.is_empty());
        for bad in [
            json!({"search_recency_filter": "fortnight"}),
            json!({"search_domain_filter": "nasa.gov"}),
            json!({"search_domain_filter": ["nasa.gov", 7]}),
            json!({"search_context_size": "huge"}),
        ] {
            let error = filtered(bad.clone()).unwrap_err();
            let field = bad.as_object().unwrap().keys().next().unwrap().clone();
            assert!(error.message.contains(&field), "{bad}: {}", error.message);
        }
    }
}
