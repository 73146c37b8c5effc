//! Perplexity's JSON, decoded with borrowed serde types: only the fields needed, no
//! `serde_json::Value` per chunk, and the sources repeated on every chunk kept as raw JSON
//! and compared, so they are built only when they first appear or change.

use chat_core::{Cost, Error, Image, SearchResult, Sources, Usage};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

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
    #[serde(default)]
    tool_calls_cost: Option<f64>,
    #[serde(default)]
    cache_creation_cost: Option<f64>,
    #[serde(default)]
    cache_read_cost: Option<f64>,
    #[serde(default)]
    currency: Option<String>,
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
        usage.cost = self.cost.map(|wire| {
            let mut cost = Cost::default();
            cost.input_tokens_cost = wire.input_tokens_cost;
            cost.output_tokens_cost = wire.output_tokens_cost;
            cost.request_cost = wire.request_cost;
            cost.total_cost = wire.total_cost;
            cost.citation_tokens_cost = wire.citation_tokens_cost;
            cost.reasoning_tokens_cost = wire.reasoning_tokens_cost;
            cost.search_queries_cost = wire.search_queries_cost;
            cost.tool_calls_cost = wire.tool_calls_cost;
            cost.cache_creation_cost = wire.cache_creation_cost;
            cost.cache_read_cost = wire.cache_read_cost;
            // A currency code is short; anything else is not one.
            cost.currency = wire.currency.filter(|currency| currency.len() <= 8);
            cost
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
    #[serde(default)]
    last_updated: Option<String>,
    #[serde(default)]
    source: Option<String>,
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
            search_result.last_updated = result.last_updated;
            search_result.source = result.source;
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

/// At most 64 characters of a server's identifier, for a message.
pub(crate) fn short(id: &str) -> &str {
    id.char_indices()
        .nth(64)
        .map_or(id, |(index, _)| &id[..index])
}
