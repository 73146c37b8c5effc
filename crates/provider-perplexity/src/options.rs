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
#[non_exhaustive]
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

/// Which backend the Search API searches (its own `search_type`, not Sonar's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SearchType {
    /// Web pages.
    Web,
    /// People.
    People,
}

/// A Search API request (`POST /search`, the SDK's `SearchCreateParams`): ranked web
/// results, no answer, for [`PerplexityProvider::search`](crate::PerplexityProvider::search).
/// Fields left `None` (or empty) are not sent, so the service's defaults apply.
///
/// ```
/// let mut request = provider_perplexity::SearchRequest::new("tallest volcano");
/// request.max_results = Some(5);
/// request.search_domain_filter = vec!["nasa.gov".into()];
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SearchRequest {
    /// What to search for.
    pub query: String,
    /// How many results, 1 to 20 (the service's default: 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
    /// Tokens extracted from each page, 256 to 2048 (the service's default: 1024).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_page: Option<u32>,
    /// Tokens extracted from all pages together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Results from this country first: an ISO 3166-1 alpha-2 code (`US`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `hour`, `day`, `week`, `month` or `year`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_recency_filter: Option<String>,
    /// Domains to use, or to exclude with a leading `-` (20 at most).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search_domain_filter: Vec<String>,
    /// Languages to keep (ISO 639-1 codes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search_language_filter: Vec<String>,
    /// Pages published after this date (m/d/yyyy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_after_date_filter: Option<String>,
    /// Pages published before this date (m/d/yyyy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_before_date_filter: Option<String>,
    /// Pages updated after this date (m/d/yyyy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated_after_filter: Option<String>,
    /// Pages updated before this date (m/d/yyyy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated_before_filter: Option<String>,
    /// The web, scholarly sources or SEC filings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_mode: Option<SearchMode>,
    /// The backend: web pages or people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_type: Option<SearchType>,
}

impl SearchRequest {
    /// A search for `query`, with the service's defaults for everything else.
    pub fn new(query: impl Into<String>) -> Self {
        SearchRequest {
            query: query.into(),
            ..SearchRequest::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_request_sends_only_what_is_set_under_the_sdks_names() {
        let request = SearchRequest::new("tallest volcano");
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"query": "tallest volcano"})
        );
        let mut request = SearchRequest::new("tallest volcano");
        request.max_results = Some(5);
        request.search_domain_filter = vec!["nasa.gov".into()];
        request.search_mode = Some(SearchMode::Academic);
        request.search_type = Some(SearchType::People);
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"query": "tallest volcano", "max_results": 5,
                "search_domain_filter": ["nasa.gov"], "search_mode": "academic",
                "search_type": "people"})
        );
    }
}
