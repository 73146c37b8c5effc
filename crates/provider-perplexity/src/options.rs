use chat_core::ChatRequest;
use serde::Serialize;
use serde_json::{Value, json};

/// Where Sonar searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SearchMode {
    /// The web.
    Web,
    /// Scholarly sources.
    Academic,
    /// SEC filings.
    Sec,
}

/// How much search context Sonar gathers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SearchContextSize {
    /// Less context, cheaper.
    Low,
    /// The middle.
    Medium,
    /// More context.
    High,
}

/// Perplexity's request options, typed. [`apply`](SonarOptions::apply) writes them into a
/// request's options; fields left `None` are not sent. For a field not modelled here, use
/// `ChatRequest::with_option` with raw JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SonarOptions {
    /// `search_mode`.
    pub search_mode: Option<SearchMode>,
    /// `search_domain_filter`: domains to use, or exclude with a leading `-`.
    pub search_domain_filter: Vec<String>,
    /// `search_recency_filter`: hour, day, week, month or year.
    pub search_recency_filter: Option<String>,
    /// `search_after_date_filter` (m/d/yyyy).
    pub search_after_date_filter: Option<String>,
    /// `search_before_date_filter` (m/d/yyyy).
    pub search_before_date_filter: Option<String>,
    /// `last_updated_after_filter` (m/d/yyyy).
    pub last_updated_after_filter: Option<String>,
    /// `last_updated_before_filter` (m/d/yyyy).
    pub last_updated_before_filter: Option<String>,
    /// `return_images`.
    pub return_images: Option<bool>,
    /// `return_related_questions`.
    pub return_related_questions: Option<bool>,
    /// `web_search_options.search_context_size`.
    pub search_context_size: Option<SearchContextSize>,
    /// `reasoning_effort` (low, medium, high), for reasoning models.
    pub reasoning_effort: Option<String>,
    /// `response_format`, as raw JSON (for example a JSON schema).
    pub response_format: Option<Value>,
}

impl SonarOptions {
    /// Writes the options that are set into `request`.
    pub fn apply(&self, mut request: ChatRequest) -> ChatRequest {
        let mut set = |name: &str, value: Value| {
            request.options.insert(name.to_owned(), value);
        };
        if let Some(mode) = self.search_mode {
            set("search_mode", json!(mode));
        }
        if !self.search_domain_filter.is_empty() {
            set("search_domain_filter", json!(self.search_domain_filter));
        }
        for (name, value) in [
            ("search_recency_filter", &self.search_recency_filter),
            ("search_after_date_filter", &self.search_after_date_filter),
            ("search_before_date_filter", &self.search_before_date_filter),
            ("last_updated_after_filter", &self.last_updated_after_filter),
            (
                "last_updated_before_filter",
                &self.last_updated_before_filter,
            ),
            ("reasoning_effort", &self.reasoning_effort),
        ] {
            if let Some(value) = value {
                set(name, json!(value));
            }
        }
        if let Some(images) = self.return_images {
            set("return_images", json!(images));
        }
        if let Some(related) = self.return_related_questions {
            set("return_related_questions", json!(related));
        }
        if let Some(size) = self.search_context_size {
            set("web_search_options", json!({ "search_context_size": size }));
        }
        if let Some(format) = &self.response_format {
            set("response_format", format.clone());
        }
        request
    }
}
