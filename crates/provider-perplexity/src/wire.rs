//! Perplexity's JSON, decoded with borrowed serde types: only the fields needed, no
//! `serde_json::Value` per chunk, and the sources repeated on every chunk kept as raw JSON
//! and compared, so they are built only when they first appear or change.

use std::borrow::Cow;

use chat_core::{ChatRequest, Cost, Error, Image, Role, SearchResult, Sources, Usage};
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::Api;

/// The request body for `api`, streaming or not.
pub(crate) fn request_body(api: Api, request: &ChatRequest, model: &str, stream: bool) -> Vec<u8> {
    let mut body = Map::new();
    match api {
        Api::Sonar => {
            body.insert("model".into(), model.into());
            let messages: Vec<Value> = request
                .messages
                .iter()
                .map(|message| json!({"role": role(message.role), "content": message.content}))
                .collect();
            body.insert("messages".into(), Value::Array(messages));
            if let Ok(Value::Object(sampling)) = serde_json::to_value(&request.sampling) {
                body.extend(sampling);
            }
        }
        Api::Agent => {
            // `provider/model` names a model; anything else is a preset (`fast`, `medium`,
            // `high`, the older `pro-search`, ...).
            let key = if model.contains('/') {
                "model"
            } else {
                "preset"
            };
            body.insert(key.into(), model.into());
            // System messages go in as input items, as the official server sends them:
            // `instructions` would replace the preset's own tuned system prompt. `type` is
            // required on every item (the SDK's `InputMessage`).
            let input: Vec<Value> = request
                .messages
                .iter()
                .map(|message| {
                    json!({"type": "message", "role": role(message.role), "content": message.content})
                })
                .collect();
            body.insert("input".into(), Value::Array(input));
            if let Some(max_tokens) = request.sampling.max_tokens {
                body.insert("max_output_tokens".into(), max_tokens.into());
            }
            if stream {
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
    }
    body.extend(
        request
            .options
            .iter()
            .map(|(name, value)| (name.clone(), value.clone())),
    );
    body.insert("stream".into(), stream.into());
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

fn role(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Assistant => "assistant",
        _ => "user",
    }
}

/// One Sonar streaming chunk (with `C` = [`ChoiceWire`]) or a whole non-streaming body (with
/// `C` = [`BodyChoiceWire`]): only what the client uses.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "C: Deserialize<'de>"))]
pub(crate) struct SonarChunk<'a, C = ChoiceWire<'a>> {
    #[serde(borrow, default)]
    pub(crate) id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) citations: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) search_results: Option<&'a RawValue>,
    /// Raw, so that the cumulative usage every chunk repeats is decoded only when needed.
    #[serde(borrow, default)]
    pub(crate) usage: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "first_choice")]
    pub(crate) choices: Option<C>,
    #[serde(borrow, default)]
    pub(crate) related_questions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) images: Option<&'a RawValue>,
}

/// A streaming choice. The cumulative `message` every chunk repeats is not declared, so it is
/// skipped, never decoded (decoding it made each chunk cost as much as the text so far).
#[derive(Debug, Deserialize)]
pub(crate) struct ChoiceWire<'a> {
    #[serde(borrow, default)]
    pub(crate) delta: Option<DeltaWire<'a>>,
    #[serde(borrow, default)]
    pub(crate) finish_reason: Option<Cow<'a, str>>,
}

/// A non-streaming choice: the whole message.
#[derive(Debug, Deserialize)]
pub(crate) struct BodyChoiceWire<'a> {
    #[serde(borrow, default)]
    pub(crate) message: Option<DeltaWire<'a>>,
    #[serde(borrow, default)]
    pub(crate) finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeltaWire<'a> {
    #[serde(borrow, default)]
    pub(crate) content: Option<Cow<'a, str>>,
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

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct UsageWire {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default)]
    cost: Option<CostWire>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
    #[serde(default)]
    citation_tokens: Option<u64>,
    #[serde(default)]
    num_search_queries: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct CostWire {
    #[serde(default, alias = "input_cost")]
    input_tokens_cost: f64,
    #[serde(default, alias = "output_cost")]
    output_tokens_cost: f64,
    #[serde(default)]
    request_cost: Option<f64>,
    #[serde(default)]
    total_cost: f64,
    #[serde(default)]
    citation_tokens_cost: Option<f64>,
    #[serde(default)]
    reasoning_tokens_cost: Option<f64>,
    #[serde(default)]
    search_queries_cost: Option<f64>,
}

/// Decodes a raw `usage` object (unreadable usage is no usage: it never fails an answer).
pub(crate) fn usage(raw: &str) -> Option<Usage> {
    serde_json::from_str::<UsageWire>(raw)
        .ok()
        .map(UsageWire::into_usage)
}

impl UsageWire {
    pub(crate) fn into_usage(self) -> Usage {
        let mut usage = Usage::default();
        usage.prompt_tokens = self.prompt_tokens;
        usage.completion_tokens = self.completion_tokens;
        usage.total_tokens = self
            .total_tokens
            .max(self.prompt_tokens.saturating_add(self.completion_tokens));
        usage.cost = self.cost.map(|cost| Cost {
            input_tokens_cost: cost.input_tokens_cost,
            output_tokens_cost: cost.output_tokens_cost,
            request_cost: cost.request_cost,
            total_cost: cost.total_cost,
            citation_tokens_cost: cost.citation_tokens_cost,
            reasoning_tokens_cost: cost.reasoning_tokens_cost,
            search_queries_cost: cost.search_queries_cost,
        });
        usage.reasoning_tokens = self.reasoning_tokens;
        usage.citation_tokens = self.citation_tokens;
        usage.num_search_queries = self.num_search_queries;
        usage
    }
}

#[derive(Debug, Deserialize)]
struct SearchResultWire {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    url: String,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    snippet: Option<String>,
}

/// Builds sources from the raw `citations` and `search_results` JSON.
pub(crate) fn sources(
    citations: Option<&RawValue>,
    search_results: Option<&RawValue>,
) -> Result<Sources, Error> {
    let citations: Vec<String> = match citations {
        Some(raw) => serde_json::from_str::<Option<Vec<String>>>(raw.get())
            .map_err(|error| Error::protocol(format!("bad citations: {error}")))?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let search_results = match search_results {
        Some(raw) => serde_json::from_str::<Option<Vec<SearchResultWire>>>(raw.get())
            .map_err(|error| Error::protocol(format!("bad search results: {error}")))?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let search_results = search_results
        .into_iter()
        .map(|result| {
            let mut search_result = SearchResult::new(result.title.unwrap_or_default(), result.url);
            search_result.id = result.id;
            search_result.date = result.date;
            search_result.snippet = result.snippet;
            search_result
        })
        .collect();
    Ok(Sources::new(citations, search_results))
}

pub(crate) fn related_questions(raw: Option<&RawValue>) -> Vec<String> {
    raw.and_then(|raw| {
        serde_json::from_str::<Option<Vec<String>>>(raw.get())
            .ok()
            .flatten()
    })
    .unwrap_or_default()
}

pub(crate) fn images(raw: Option<&RawValue>) -> Vec<Image> {
    raw.and_then(|raw| {
        serde_json::from_str::<Option<Vec<Image>>>(raw.get())
            .ok()
            .flatten()
    })
    .unwrap_or_default()
}

/// One Agent API event: only what the client uses.
#[derive(Debug, Deserialize)]
pub(crate) struct AgentEvent<'a> {
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
    #[serde(borrow, default)]
    pub(crate) response: Option<&'a RawValue>,
    /// `response.failed` and `error` events: the SDK's `ErrorInfo`, at the top level.
    #[serde(default)]
    pub(crate) error: Option<AgentError>,
    /// Some `error` events carry only a top-level message.
    #[serde(borrow, default)]
    pub(crate) message: Option<Cow<'a, str>>,
}

/// The Agent API's response object (non-streaming body, or inside `response.completed`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AgentResponse {
    #[serde(default)]
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) output: Vec<OutputItem>,
    #[serde(default)]
    pub(crate) usage: Option<UsageWire>,
    #[serde(default)]
    pub(crate) error: Option<AgentError>,
    #[serde(default)]
    pub(crate) incomplete_details: Option<IncompleteDetails>,
}

/// The SDK's `ErrorInfo`: `message`, with optional `code` and `type` strings.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct AgentError {
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
pub(crate) struct OutputItem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    results: Option<Box<RawValue>>,
    #[serde(default)]
    content: Vec<ContentPart>,
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: String,
}

impl AgentResponse {
    /// The answer: the `output_text` parts of the message items (other parts, such as
    /// reasoning, are not answer text).
    pub(crate) fn text(&self) -> String {
        self.output
            .iter()
            .filter(|item| item.kind == "message")
            .flat_map(|item| item.content.iter())
            .filter(|part| part.kind == "output_text")
            .map(|part| part.text.as_str())
            .collect()
    }

    /// The raw `results` of every `search_results` item of the output.
    pub(crate) fn search_result_batches(&self) -> impl Iterator<Item = &RawValue> {
        self.output
            .iter()
            .filter(|item| item.kind == "search_results")
            .filter_map(|item| item.results.as_deref())
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
}

impl AgentSources {
    /// Adds one batch (raw `results` JSON); whether anything new came.
    pub(crate) fn add(&mut self, raw: Option<&RawValue>) -> Result<bool, Error> {
        let batch = sources(None, raw)?.search_results;
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

/// The request parameter an error body is about: OpenAI-style `error.param`, or the last
/// element of a 422's `detail[0].loc`.
pub(crate) fn error_param(body: &[u8]) -> Option<String> {
    let value = serde_json::from_slice::<Value>(body).ok()?;
    if let Some(param) = value["error"]["param"].as_str() {
        return Some(param.to_owned());
    }
    value["detail"][0]["loc"]
        .as_array()?
        .last()?
        .as_str()
        .map(str::to_owned)
}

/// The message of an error body: JSON `error.message`, a 422 `detail[0].msg`, or a short
/// description of anything else (an HTML page is not echoed).
pub(crate) fn error_message(status: u16, content_type: &str, body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(message) = value["error"]["message"].as_str() {
            return message.to_owned();
        }
        if let Some(message) = value["detail"][0]["msg"].as_str() {
            let location: Vec<String> = value["detail"][0]["loc"]
                .as_array()
                .map(|parts| {
                    parts
                        .iter()
                        .map(|part| part.to_string().trim_matches('"').to_owned())
                        .collect()
                })
                .unwrap_or_default();
            return format!("{message} ({})", location.join("."));
        }
        if let Some(message) = value["detail"].as_str() {
            return message.to_owned();
        }
    }
    match status {
        401 => "API key rejected (401)".to_owned(),
        403 => "API key not allowed (403)".to_owned(),
        _ if content_type.starts_with("text/html") => {
            format!("the server answered {status} with an HTML page")
        }
        _ => format!("the server answered {status}"),
    }
}
