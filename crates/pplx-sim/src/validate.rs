//! Requests validated as the real service does, and the answer each one gets.

use serde_json::Value;

use crate::api::Api;
use crate::config::MODELS;
use crate::config::PRESETS;
use crate::config::Pace;
use crate::content::{self, Answer, Filters};
use crate::tools;
use crate::wire::{self, Asked};

pub(crate) struct Prepared {
    pub(crate) answer: Answer,
    pub(crate) asked: Asked,
    pub(crate) id: String,
    pub(crate) conversation_hash: u64,
    pub(crate) queries: Vec<String>,
}

/// What a request says, read as its API is validated: the conversation's texts in order,
/// the last user question, the calls replayed (id to name), the last function result if the
/// conversation ends with one, and the attachments described.
#[derive(Default)]
struct Turns {
    texts: Vec<String>,
    question: String,
    calls: Vec<(String, String)>,
    result: Option<(String, String)>,
    attached: Vec<String>,
}

impl Turns {
    /// The name of the replayed call `call_id`.
    fn name_of(&self, call_id: &str) -> &str {
        self.calls
            .iter()
            .find(|(id, _)| id == call_id)
            .map_or("The tool", |(_, name)| name.as_str())
    }
}

/// A refusal: the status and the error body.
type Refusal = (u16, Value);

/// The Sonar error for a refused content part.
fn sonar_refusal(message: &str) -> Refusal {
    (
        400,
        serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "code": 400}}),
    )
}

/// The Agent API's 400 with `message`.
fn agent_refusal(message: &str) -> Refusal {
    (400, wire::agent_error_body(400, message))
}

/// Validates a request as the real service does, and works out its answer. `compatible`
/// answers chat completions as any OpenAI-compatible endpoint would: any model, with tools.
pub(crate) fn prepare(
    api: Api,
    body: &Value,
    model: &str,
    pace: Pace,
    compatible: bool,
) -> Result<Prepared, Refusal> {
    let mut turns = Turns::default();
    let offered = tools::offered(body);
    match api {
        Api::Sonar => read_sonar(body, model, compatible, !offered.is_empty(), &mut turns)?,
        Api::Agent => read_agent(body, model, &mut turns)?,
        Api::Cancel | Api::Retrieve | Api::AsyncGet | Api::AsyncList => {}
        // Checked as the Sonar request it carries.
        Api::AsyncCreate => {}
        Api::Search => match &body["query"] {
            Value::String(query) => turns.texts.push(query.clone()),
            Value::Array(queries) => turns.texts.extend(
                queries
                    .iter()
                    .filter_map(|query| query.as_str().map(str::to_owned)),
            ),
            _ => return Err((422, wire::error_body(422, Some("query is required")))),
        },
    }
    if turns.result.is_some() {
        // An answer to a function's result is about the question that led to it.
        turns.texts.push(turns.question.clone());
    }
    let parts: Vec<&str> = turns.texts.iter().map(String::as_str).collect();
    let conversation_hash = content::stable_hash(&[&body.to_string()]);
    let answer = answer(
        model,
        &parts,
        pace,
        body,
        &turns,
        &offered,
        conversation_hash,
    );
    // The searches are the question, cut short as a search box would (every Agent stream
    // repeats them).
    let queries = parts
        .last()
        .map(|last| crate::text::clip(last, content::QUERY_CHARS))
        .map(|last| vec![last.to_owned(), format!("{last} latest research")])
        .unwrap_or_default();
    let prompt_tokens: u64 = parts.iter().map(|part| content::token_count(part)).sum();
    Ok(Prepared {
        answer,
        asked: asked(api, body, model, prompt_tokens),
        id: response_id(api, conversation_hash),
        conversation_hash,
        queries,
    })
}

/// A chat-completions request: a known model (any, when `compatible`), messages, no tools at
/// Perplexity, every content part one it reads.
fn read_sonar(
    body: &Value,
    model: &str,
    compatible: bool,
    offers_tools: bool,
    turns: &mut Turns,
) -> Result<(), Refusal> {
    if !compatible && !MODELS.contains(&model) {
        let message = format!(
            "Invalid model '{model}'. Permitted models can be found in the documentation at https://docs.perplexity.ai/getting-started/models."
        );
        return Err((
            400,
            serde_json::json!({"error": {"message": message, "type": "invalid_model", "code": 400}}),
        ));
    }
    let Some(messages) = body["messages"]
        .as_array()
        .filter(|messages| !messages.is_empty())
    else {
        return Err((422, wire::error_body(422, Some("Field required"))));
    };
    if !compatible && offers_tools {
        // What Perplexity's Sonar models answer (reported by pipecat users, 2026).
        return Err(sonar_refusal(
            "Tool calling is not supported for this model",
        ));
    }
    for message in messages {
        let role = message["role"].as_str().unwrap_or_default();
        for call in message["tool_calls"].as_array().into_iter().flatten() {
            if let (Some(id), Some(name)) = (call["id"].as_str(), call["function"]["name"].as_str())
            {
                turns.calls.push((id.to_owned(), name.to_owned()));
            }
        }
        let text = sonar_text(message, role, turns)?;
        turns.result = None;
        match role {
            "tool" => {
                let call_id = message["tool_call_id"].as_str().unwrap_or_default();
                turns.result = Some((turns.name_of(call_id).to_owned(), text.clone()));
            }
            "user" => turns.question = text.clone(),
            _ => {}
        }
        turns.texts.push(text);
    }
    Ok(())
}

/// A chat message's text; its attachments described into `turns`.
fn sonar_text(message: &Value, role: &str, turns: &mut Turns) -> Result<String, Refusal> {
    let parts = match &message["content"] {
        Value::String(text) => return Ok(text.clone()),
        Value::Null if role == "assistant" => return Ok(String::new()),
        Value::Array(parts) => parts,
        _ => {
            return Err((
                422,
                wire::error_body(422, Some("messages[].content must be a string")),
            ));
        }
    };
    let mut texts = Vec::new();
    for part in parts {
        let described = match part["type"].as_str() {
            Some("text") => {
                texts.push(part["text"].as_str().unwrap_or_default());
                continue;
            }
            Some("image_url") => {
                let url = part["image_url"]["url"]
                    .as_str()
                    .or(part["image_url"].as_str())
                    .unwrap_or_default();
                tools::image(url)
            }
            Some("file_url" | "pdf_url") => {
                let key = part["type"].as_str().unwrap_or_default();
                let url = part[key]["url"]
                    .as_str()
                    .or(part[key].as_str())
                    .unwrap_or_default();
                tools::file(url, part["file_name"].as_str())
            }
            other => Err(format!(
                "Unsupported content part type '{}'",
                crate::text::clip(other.unwrap_or("null"), 40)
            )),
        };
        turns
            .attached
            .push(described.map_err(|refusal| sonar_refusal(&refusal))?);
    }
    Ok(texts.join("\n"))
}

/// An Agent API request: a model (or models, an effort, a preset) the service knows, and an
/// input of known items.
fn read_agent(body: &Value, model: &str, turns: &mut Turns) -> Result<(), Refusal> {
    strict(body)?;
    if model.is_empty() && body["models"].as_array().is_none() {
        return Err(agent_refusal(
            "one of model, models, effort or preset is required",
        ));
    }
    if let Some(effort) = body["effort"].as_str()
        && crate::config::effort_level(effort).is_none()
    {
        return Err(agent_refusal(&format!(
            "Invalid effort '{}': use fast, low, medium, high or xhigh, optionally pinned (fast@2026-10-16.0)",
            crate::text::clip(effort, 60)
        )));
    }
    if model.chars().nth(content::MODEL_CHARS).is_some() {
        return Err(agent_refusal(&format!(
            "model: at most {} characters",
            content::MODEL_CHARS
        )));
    }
    if let Some(preset) = body["preset"].as_str()
        && !PRESETS.contains(&preset)
    {
        return Err(agent_refusal(&format!(
            "Invalid preset '{}'",
            crate::text::clip(preset, 60)
        )));
    }
    if let Some(instructions) = body["instructions"].as_str() {
        turns.texts.push(instructions.to_owned());
    }
    match &body["input"] {
        Value::String(text) => {
            turns.question = text.clone();
            turns.texts.push(text.clone());
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                read_agent_item(index, item, turns)?;
            }
        }
        _ => return Err(agent_refusal("input: Field required")),
    }
    Ok(())
}

/// The Agent API's request fields (the SDK's `ResponsesRequestInput`).
const AGENT_FIELDS: &[&str] = &[
    "background",
    "effort",
    "input",
    "instructions",
    "language_preference",
    "max_output_tokens",
    "max_steps",
    "model",
    "models",
    "preset",
    "previous_response_id",
    "profile",
    "prompt_cache_key",
    "reasoning",
    "response_format",
    "service_tier",
    "skills",
    "step_budget_reminder",
    "store",
    "stream",
    "temperature",
    "tool_choice",
    "tools",
    "top_p",
];

/// The fields of each built-in tool (the SDK's `*ToolInput`), and of their `filters`.
const TOOL_FIELDS: &[(&str, &[&str], &[&str])] = &[
    (
        "web_search",
        &[
            "type",
            "filters",
            "max_tokens",
            "max_tokens_per_page",
            "search_context_size",
            "search_type",
            "user_location",
        ],
        &[
            "search_recency_filter",
            "search_domain_filter",
            "search_after_date_filter",
            "search_before_date_filter",
            "last_updated_after_filter",
            "last_updated_before_filter",
        ],
    ),
    (
        "image_search",
        &["type", "filters", "max_results"],
        &["domain_filter", "format_filter", "safe_search"],
    ),
    ("fetch_url", &["type", "max_urls"], &[]),
    ("finance_search", &["type"], &[]),
    ("people_search", &["type"], &[]),
    ("sandbox", &["type"], &[]),
    (
        "function",
        &["type", "name", "description", "parameters", "strict"],
        &[],
    ),
];

/// Function names the service keeps for its own tools.
const RESERVED: &[&str] = &[
    "web_search",
    "search_web",
    "people_search",
    "search_people",
    "fetch_url",
    "finance_search",
    "image_search",
    "sandbox",
    "mcp",
];

/// The Agent API's strict mode, as Perplexity's migration guide describes it: an unknown
/// field, top-level or in a built-in tool, is a 400 naming it (`param`); so are a reserved
/// function name and an Anthropic model without `max_output_tokens`.
fn strict(body: &Value) -> Result<(), Refusal> {
    let unknown = |field: &str| {
        let field = crate::text::clip(field, 60);
        let mut body = wire::agent_error_body(
            400,
            &format!("invalid request body: json: unknown field \"{field}\""),
        );
        body["error"]["param"] = field.into();
        (400, body)
    };
    let Some(fields) = body.as_object() else {
        return Err(agent_refusal("invalid request body: not a JSON object"));
    };
    if let Some(field) = fields
        .keys()
        .find(|field| !AGENT_FIELDS.contains(&field.as_str()))
    {
        return Err(unknown(field));
    }
    for tool in body["tools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let kind = tool["type"].as_str().unwrap_or_default();
        let Some((_, known, filters)) = TOOL_FIELDS.iter().find(|(name, _, _)| *name == kind)
        else {
            continue; // mcp, connectors: not checked here.
        };
        // A field `value` has that `known` does not list.
        let stray = |value: &Value, known: &[&str]| {
            value
                .as_object()
                .into_iter()
                .flatten()
                .map(|(field, _)| field)
                .find(|field| !known.contains(&field.as_str()))
                .cloned()
        };
        if let Some(field) = stray(tool, known).or_else(|| stray(&tool["filters"], filters)) {
            return Err(unknown(&field));
        }
        if kind == "function"
            && let Some(name) = tool["name"].as_str().filter(|name| RESERVED.contains(name))
        {
            let mut body = wire::agent_error_body(
                400,
                &format!("function name '{name}' is reserved for a built-in tool"),
            );
            body["error"]["param"] = "tools".into();
            return Err((400, body));
        }
    }
    let anthropic = body["model"]
        .as_str()
        .is_some_and(|model| model.starts_with("anthropic/"))
        || body["models"].as_array().is_some_and(|models| {
            models
                .iter()
                .filter_map(Value::as_str)
                .any(|model| model.starts_with("anthropic/"))
        });
    if anthropic && body["max_output_tokens"].as_u64().is_none() {
        let mut body = wire::agent_error_body(
            400,
            "max_output_tokens is required when using Anthropic models",
        );
        body["error"]["param"] = "max_output_tokens".into();
        return Err((400, body));
    }
    Ok(())
}

/// Input item `index`: a message, a replayed call, or a call's output. As the real service
/// validates them, `type` is required.
fn read_agent_item(index: usize, item: &Value, turns: &mut Turns) -> Result<(), Refusal> {
    let required = |field: &str| agent_refusal(&format!("input[{index}].{field}: Field required"));
    match item["type"].as_str() {
        Some("message") => {}
        Some("function_call") => {
            let (Some(call_id), Some(name)) = (item["call_id"].as_str(), item["name"].as_str())
            else {
                return Err(required("call_id"));
            };
            turns.calls.push((call_id.to_owned(), name.to_owned()));
            turns.result = None;
            return Ok(());
        }
        Some("function_call_output") => {
            let (Some(call_id), Some(output)) = (item["call_id"].as_str(), item["output"].as_str())
            else {
                return Err(required("output"));
            };
            turns.texts.push(output.to_owned());
            turns.result = Some((turns.name_of(call_id).to_owned(), output.to_owned()));
            return Ok(());
        }
        Some(other) => {
            return Err(agent_refusal(&format!(
                "input[{index}].type: unknown input item type '{other}'"
            )));
        }
        None => return Err(required("type")),
    }
    if !matches!(
        item["role"].as_str(),
        Some("user" | "assistant" | "system" | "developer")
    ) {
        return Err(agent_refusal(&format!(
            "input[{index}].role: must be user, assistant, system or developer"
        )));
    }
    let text = agent_text(index, item, turns)?;
    turns.result = None;
    if item["role"] == "user" {
        turns.question = text.clone();
    }
    turns.texts.push(text);
    Ok(())
}

/// A message item's text; its attachments described into `turns`.
fn agent_text(index: usize, item: &Value, turns: &mut Turns) -> Result<String, Refusal> {
    let parts = match &item["content"] {
        Value::String(text) => return Ok(text.clone()),
        Value::Array(parts) => parts,
        _ => {
            return Err(agent_refusal(&format!(
                "input[{index}].content: Field required"
            )));
        }
    };
    let mut texts = Vec::new();
    for (part_index, part) in parts.iter().enumerate() {
        let described = match part["type"].as_str() {
            Some("input_text") => {
                texts.push(part["text"].as_str().unwrap_or_default());
                continue;
            }
            Some("input_image") => tools::image(part["image_url"].as_str().unwrap_or_default()),
            Some("input_file") => tools::file(
                part["file_data"]
                    .as_str()
                    .or(part["file_url"].as_str())
                    .unwrap_or_default(),
                part["filename"].as_str(),
            ),
            other => Err(format!(
                "unknown content part type '{}'",
                crate::text::clip(other.unwrap_or("null"), 40)
            )),
        };
        let described = described.map_err(|refusal| {
            agent_refusal(&format!("input[{index}].content[{part_index}]: {refusal}"))
        })?;
        turns.attached.push(described);
    }
    Ok(texts.join("\n"))
}

/// The answer to the conversation `parts`: a function's result is answered; a question that
/// names an offered function calls it (and says nothing else); attachments are acknowledged
/// first; a requested schema is followed.
fn answer(
    model: &str,
    parts: &[&str],
    pace: Pace,
    body: &Value,
    turns: &Turns,
    offered: &[tools::Offered],
    conversation_hash: u64,
) -> Answer {
    let mut answer = content::answer(
        model,
        parts,
        pace.answer_words,
        &Filters::from_request(body),
    );
    if let Some((name, output)) = &turns.result {
        answer
            .text
            .insert_str(0, &tools::result_sentence(name, output));
    } else if let Some(call) = tools::call_for(&turns.question, offered, conversation_hash) {
        answer.text.clear();
        answer.reasoning.clear();
        answer.tool_call = Some(call);
    }
    if answer.tool_call.is_none() {
        answer
            .text
            .insert_str(0, &tools::attachments_sentence(&turns.attached));
        // Structured output: the answer is an instance of the requested schema.
        let format = &body["response_format"];
        if format["type"] == "json_schema" {
            answer.text = tools::structured(&format["json_schema"]["schema"], &answer.text);
        }
    }
    answer
}

/// A response's id: the Agent API's `resp_...`, chat completions' UUID shape.
fn response_id(api: Api, conversation_hash: u64) -> String {
    match api {
        Api::Agent => format!("resp_{conversation_hash:016x}"),
        _ => format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            conversation_hash >> 32,
            conversation_hash & 0xFFFF,
            conversation_hash & 0xFFFF_FFFF_FFFF
        ),
    }
}

/// What the request asked for, as the wire writers need it.
fn asked(api: Api, body: &Value, model: &str, prompt_tokens: u64) -> Asked {
    Asked {
        model: model.to_owned(),
        max_tokens: body["max_tokens"]
            .as_u64()
            .or(body["max_output_tokens"].as_u64())
            .map(|tokens| tokens as usize),
        related_questions: body["return_related_questions"] == Value::Bool(true),
        images: body["return_images"] == Value::Bool(true),
        prompt_tokens,
        legacy_object: false,
        concise: api == Api::Sonar && body["stream_mode"] == "concise",
        image_search: api == Api::Agent
            && body["tools"]
                .as_array()
                .is_some_and(|tools| tools.iter().any(|tool| tool["type"] == "image_search")),
        skills: body["skills"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|skill| skill["name"].as_str())
            .take(8)
            .map(|name| crate::text::clip(name, 64).to_owned())
            .collect(),
    }
}
