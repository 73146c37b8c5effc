use serde::{Deserialize, Serialize};

/// Why the model stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FinishReason {
    /// It finished its answer (or hit a stop sequence).
    #[default]
    Stop,
    /// The token limit cut it.
    Length,
    /// It called tools and waits for their results ([`ChatResponse::tool_calls`]).
    ToolCalls,
    /// Another reason the provider gave.
    #[serde(untagged)]
    Other(String),
}

impl FinishReason {
    /// The reason as the wire spells it.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::Other(other) => other,
        }
    }

    /// From the wire's spelling.
    pub fn parse(reason: &str) -> Self {
        match reason {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            other => FinishReason::Other(other.to_owned()),
        }
    }
}

/// A web page the answer drew on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SearchResult {
    /// The number inline references (`[n]`) use for it, when the provider numbers its
    /// results (the Agent API does, across all of a run's searches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The page title.
    pub title: String,
    /// Its address.
    pub url: String,
    /// Its publication date, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// An excerpt, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    /// When the page last changed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    /// Where the result came from (`web`, ...), when said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl SearchResult {
    /// A result for the page at `url` titled `title` (no id, date or snippet).
    pub fn new(title: impl Into<String>, url: impl Into<String>) -> Self {
        SearchResult {
            title: title.into(),
            url: url.into(),
            ..SearchResult::default()
        }
    }
}

/// The sources of an answer: the cited URLs (numbered `[1]`, `[2]`, ... in the text) and the
/// search results behind them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sources {
    /// Cited URLs, in citation order.
    pub citations: Vec<String>,
    /// The search results.
    pub search_results: Vec<SearchResult>,
}

impl Sources {
    /// Sources from cited URLs (in citation order) and the search results behind them.
    pub fn new(citations: Vec<String>, search_results: Vec<SearchResult>) -> Self {
        Sources {
            citations,
            search_results,
        }
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.citations.is_empty() && self.search_results.is_empty()
    }

    /// The citations with the numbers the answer's `[n]` marks use: a search result's `id`
    /// when the provider numbers them (the Agent API's ids run across all of a run's
    /// searches and may have gaps), else the position from 1.
    pub fn numbered(&self) -> Vec<(u64, &str)> {
        self.citations
            .iter()
            .enumerate()
            .map(|(index, url)| {
                let id = self
                    .search_results
                    .iter()
                    .find(|result| result.url == *url)
                    .and_then(|result| result.id);
                (id.unwrap_or(index as u64 + 1), url.as_str())
            })
            .collect()
    }
}

/// An image returned with an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Image {
    /// The image itself.
    pub image_url: String,
    /// The page it was found on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_url: Option<String>,
    /// Height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
}

/// What a request cost, in US dollars, when the provider says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Cost {
    /// For the prompt tokens.
    #[serde(default)]
    pub input_tokens_cost: f64,
    /// For the answer tokens.
    #[serde(default)]
    pub output_tokens_cost: f64,
    /// Per request (search), when charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_cost: Option<f64>,
    /// In all.
    #[serde(default)]
    pub total_cost: f64,
    /// For the tokens of cited pages, when charged separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citation_tokens_cost: Option<f64>,
    /// For reasoning tokens, when charged separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens_cost: Option<f64>,
    /// For the searches run, when charged separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_queries_cost: Option<f64>,
    /// For the tools an Agent API run called (searches, fetches), when charged separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls_cost: Option<f64>,
    /// For writing the provider's prompt cache, when charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_cost: Option<f64>,
    /// For reading the provider's prompt cache, when charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_cost: Option<f64>,
    /// The currency of every figure here (`USD`), when said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// Token counts, and cost when given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
    /// What it cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// Tokens spent reasoning, when the provider says (deep research).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// Tokens of cited pages, when the provider says (deep research).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citation_tokens: Option<u64>,
    /// Searches run, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_search_queries: Option<u64>,
}

/// A complete answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatResponse {
    /// The provider's response id.
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// The answer's text (without any reasoning).
    pub text: String,
    /// The model's reasoning, kept apart from the answer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
    /// Cited URLs and search results.
    #[serde(default)]
    pub sources: Sources,
    /// Images, when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// Follow-up questions, when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_questions: Vec<String>,
    /// The tool calls the model made, in order (the finish reason is then
    /// [`FinishReason::ToolCalls`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<crate::ToolCall>,
    /// Token counts and cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Why the model stopped.
    #[serde(default)]
    pub finish_reason: FinishReason,
    /// Answered by the non-streaming fallback after streaming failed.
    #[serde(default)]
    pub fallback: bool,
    /// Answered from a cache.
    #[serde(default)]
    pub cached: bool,
    /// The requests this answer took: 1 when the first try answered; each retry, each
    /// request of a non-streaming fallback and each restart adds one. 0 from a cache.
    #[serde(default)]
    pub attempts: u32,
    /// How many times a broken stream was read again from where it broke (an Agent API
    /// background run resumed after its last delivered event): nothing lost or repeated.
    #[serde(default)]
    pub resumed: u32,
    /// How many times a request went out with another key than the try before it (after a
    /// rate limit, a rejected key or an exhausted quota). 0 from a cache.
    #[serde(default)]
    pub key_rotations: u32,
    /// The models a fallback chain asked first, each with why it did not answer (its attempts
    /// spent on an overloaded server, 5xx, every key cooling, an open breaker), in order;
    /// [`model`](ChatResponse::model) is the one that answered. Empty when the first did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed_over: Vec<(String, String)>,
}
