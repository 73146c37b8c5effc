use chat_core::{ChatRequest, Error};
use serde::Serialize;
use serde_json::{Map, Value, json};

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

/// Which search Sonar runs (`web_search_options.search_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SonarSearchType {
    /// Quick.
    Fast,
    /// Multi-step (Pro Search).
    Pro,
    /// The service decides by the question.
    Auto,
}

/// Where the person asking is, so results can be local (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct UserLocation {
    /// A city name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// A region or state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An ISO 3166-1 alpha-2 country code (`US`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Latitude, -90 to 90.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Longitude, -180 to 180.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

impl UserLocation {
    fn check(&self) -> Result<(), Error> {
        let out = |name: &str, value: Option<f64>, bound: f64| {
            value
                .is_some_and(|value| !(-bound..=bound).contains(&value))
                .then(|| {
                    Error::config(format!(
                        "user_location.{name} must be between -{bound} and {bound}"
                    ))
                })
        };
        match out("latitude", self.latitude, 90.0).or(out("longitude", self.longitude, 180.0)) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Structured output: a JSON Schema the answer must follow (`response_format` on both APIs,
/// `{"type": "json_schema", "json_schema": {...}}`). Read the answer back with
/// [`parse_answer`](crate::parse_answer).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct JsonSchema {
    /// A name for the format (the Agent API requires one).
    pub name: String,
    /// The JSON Schema (an object schema).
    pub schema: Value,
    /// What the format is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the model must follow the schema exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl JsonSchema {
    /// A format named `name` following `schema`.
    pub fn new(name: impl Into<String>, schema: Value) -> Self {
        JsonSchema {
            name: name.into(),
            schema,
            description: None,
            strict: None,
        }
    }

    /// The `response_format` value both APIs take.
    pub fn response_format(&self) -> Value {
        json!({"type": "json_schema", "json_schema": self})
    }
}

/// The answer to a structured-output request ([`JsonSchema`]), parsed into `T`. A fence
/// some models put around JSON (```` ```json ... ``` ````) is taken off first.
///
/// # Errors
/// A `Protocol` error when the answer is not JSON, or not JSON of `T`'s shape (with serde's
/// reason: the line and column, the missing field); the text stays in the response.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct City { name: String, population: u64 }
///
/// let mut response = provider_perplexity::ChatResponse::default();
/// response.text = r#"{"name": "Paris", "population": 2102650}"#.into();
/// let city: City = provider_perplexity::parse_answer(&response).unwrap();
/// assert_eq!((city.name.as_str(), city.population), ("Paris", 2102650));
/// ```
pub fn parse_answer<T: serde::de::DeserializeOwned>(
    response: &chat_core::ChatResponse,
) -> Result<T, Error> {
    let text = response.text.trim();
    let unfenced = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .and_then(|inner| inner.trim_end().strip_suffix("```"))
        .unwrap_or(text);
    serde_json::from_str(unfenced.trim()).map_err(|error| {
        Error::protocol(format!(
            "the answer is not JSON of the requested shape: {error}"
        ))
    })
}

/// Perplexity's request options, typed. [`apply`](SonarOptions::apply) writes them into a
/// request's options; fields left `None` (or empty) are not sent. For a field not modelled
/// here, use `ChatRequest::with_option` with raw JSON. The `web_search_options` fields
/// (`search_context_size`, `search_type`, `user_location`) are written into one object,
/// merged with any raw `web_search_options` already on the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SonarOptions {
    /// `search_mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_mode: Option<SearchMode>,
    /// The search filters (recency, domains, dates), sent as top-level fields.
    #[serde(flatten)]
    pub filters: SearchFilters,
    /// `return_images`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_images: Option<bool>,
    /// `return_related_questions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_related_questions: Option<bool>,
    /// `web_search_options.search_context_size`.
    #[serde(skip)]
    pub search_context_size: Option<SearchContextSize>,
    /// `web_search_options.search_type`: fast, pro or auto.
    #[serde(skip)]
    pub search_type: Option<SonarSearchType>,
    /// `web_search_options.user_location`.
    #[serde(skip)]
    pub user_location: Option<UserLocation>,
    /// `reasoning_effort` (low, medium, high), for reasoning models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// `response_format`: structured output following a JSON Schema.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "response_format"
    )]
    pub response_format: Option<JsonSchema>,
    /// `disable_search`: answer from the model alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_search: Option<bool>,
    /// `enable_search_classifier`: let the service decide whether to search.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_search_classifier: Option<bool>,
    /// `search_language_filter`: ISO 639-1 codes of the languages to keep.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search_language_filter: Vec<String>,
    /// `language_preference`: the language to answer in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_preference: Option<String>,
    /// `num_search_results`: how many results to read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_search_results: Option<u32>,
    /// `safe_search`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_search: Option<bool>,
    /// `country`: results from this country first (ISO 3166-1 alpha-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl SonarOptions {
    /// Writes the options that are set into `request`.
    pub fn apply(&self, mut request: ChatRequest) -> ChatRequest {
        write_fields(&mut request, self);
        // One object, so its fields combine (with each other and with raw ones).
        let mut web = Map::new();
        if let Some(size) = self.search_context_size {
            web.insert("search_context_size".into(), json!(size));
        }
        if let Some(search_type) = self.search_type {
            web.insert("search_type".into(), json!(search_type));
        }
        if let Some(location) = &self.user_location {
            web.insert("user_location".into(), json!(location));
        }
        if !web.is_empty() {
            match request.options.get_mut("web_search_options") {
                Some(Value::Object(existing)) => existing.extend(web),
                _ => {
                    request
                        .options
                        .insert("web_search_options".into(), Value::Object(web));
                }
            }
        }
        request
    }
}

/// Writes every field `options` serializes (those set) into `request`'s options.
fn write_fields(request: &mut ChatRequest, options: &impl Serialize) {
    if let Ok(Value::Object(fields)) = serde_json::to_value(options) {
        request.options.extend(fields);
    }
}

/// A `response_format` as both APIs take it (see [`JsonSchema::response_format`]).
fn response_format<S: serde::Serializer>(
    format: &Option<JsonSchema>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    format
        .as_ref()
        .map(JsonSchema::response_format)
        .serialize(serializer)
}

/// How recent the pages a search reads must be (`search_recency_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Recency {
    /// The last hour.
    Hour,
    /// The last day.
    Day,
    /// The last week.
    Week,
    /// The last month.
    Month,
    /// The last year.
    Year,
}

impl Recency {
    /// Every recency, shortest first.
    pub const ALL: [Recency; 5] = [
        Recency::Hour,
        Recency::Day,
        Recency::Week,
        Recency::Month,
        Recency::Year,
    ];

    /// `hour`, `day`, `week`, `month` or `year`.
    pub fn as_str(self) -> &'static str {
        match self {
            Recency::Hour => "hour",
            Recency::Day => "day",
            Recency::Week => "week",
            Recency::Month => "month",
            Recency::Year => "year",
        }
    }

    /// The recency `name` says (`hour`, `day`, `week`, `month` or `year`; surrounding
    /// spaces ignored).
    ///
    /// # Errors
    /// A config error naming the choices.
    pub fn parse(name: &str) -> Result<Recency, Error> {
        let name = name.trim();
        Recency::ALL
            .into_iter()
            .find(|recency| recency.as_str() == name)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown recency {name:?}: use hour, day, week, month or year"
                ))
            })
    }

    /// Whether an answer searched this recently goes stale in minutes (an hour or a day).
    fn goes_stale(self) -> bool {
        matches!(self, Recency::Hour | Recency::Day)
    }
}

/// How much the model reasons on the Agent API (`reasoning.effort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ReasoningEffort {
    /// The least.
    Minimal,
    /// Little.
    Low,
    /// Some.
    Medium,
    /// Much.
    High,
    /// The most.
    Xhigh,
}

/// Whether `request` limits its search to the last hour or day, where the options put the
/// recency filter on either API: at the top level (Sonar), or inside a `web_search` tool's
/// `filters` (the Agent API). Such an answer goes stale in minutes: it is not cached.
pub(crate) fn searches_recent(request: &ChatRequest) -> bool {
    let recent = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .and_then(|name| Recency::parse(name).ok())
            .is_some_and(Recency::goes_stale)
    };
    let in_tools = request
        .options
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| {
            tools.iter().any(|tool| {
                recent(
                    tool.get("filters")
                        .and_then(|filters| filters.get("search_recency_filter")),
                )
            })
        });
    in_tools || recent(request.options.get("search_recency_filter"))
}

/// The search filters, declared once for every API that takes them: inside the Agent API's
/// `web_search` tool (where the official MCP server's `buildWebSearchTool` puts them; they
/// are not top-level Agent API fields), and as top-level fields of a Sonar request
/// ([`SonarOptions::filters`]) and a Search API request ([`SearchRequest::filters`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SearchFilters {
    /// How recent the pages must be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_recency_filter: Option<Recency>,
    /// Domains to use, or to exclude with a leading `-`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search_domain_filter: Vec<String>,
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
}

impl SearchFilters {
    fn is_empty(&self) -> bool {
        *self == SearchFilters::default()
    }
}

/// The Agent API's `web_search` tool, configured: it replaces the effort level's own search
/// settings for this request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct WebSearch {
    /// The search filters.
    #[serde(skip_serializing_if = "SearchFilters::is_empty")]
    pub filters: SearchFilters,
    /// How much context each search gathers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_context_size: Option<SearchContextSize>,
    /// Tokens read from all pages together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Tokens read from each page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_page: Option<u32>,
    /// Where the person asking is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_location: Option<UserLocation>,
}

/// The Agent API's request options, typed (the SDK's `ResponsesRequestInput`).
/// [`apply`](AgentOptions::apply) checks them and writes those set into a request's options;
/// fields left `None` (or empty) are not sent. Raw JSON is still possible with
/// `ChatRequest::with_option`. Function tools stay on `ChatRequest::tools`: the `web_search`
/// and `fetch_url` tools written here are sent beside them.
///
/// ```
/// use provider_perplexity::{AgentOptions, ChatRequest, Recency, WebSearch};
///
/// let mut options = AgentOptions::default();
/// let mut search = WebSearch::default();
/// search.filters.search_recency_filter = Some(Recency::Week);
/// search.filters.search_domain_filter = vec!["nasa.gov".into()];
/// options.web_search = Some(search);
/// options.max_steps = Some(3);
/// let request = options.apply(ChatRequest::new("medium", "What did NASA launch?")).unwrap();
/// assert_eq!(
///     request.options["tools"],
///     serde_json::json!([{"type": "web_search", "filters": {"search_recency_filter": "week", "search_domain_filter": ["nasa.gov"]}}])
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AgentOptions {
    /// `instructions`: replaces the effort level's own tuned system prompt (a system message
    /// does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `models`: a fallback chain of `provider/model` names, tried in order (at most 5).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// `max_steps`: research steps, 1 to 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// `reasoning.effort`: minimal to xhigh.
    #[serde(
        rename = "reasoning",
        skip_serializing_if = "Option::is_none",
        serialize_with = "reasoning"
    )]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// `language_preference`: the language to answer in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_preference: Option<String>,
    /// `response_format`: structured output following a JSON Schema.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "response_format"
    )]
    pub response_format: Option<JsonSchema>,
    /// `prompt_cache_key`: requests sharing it share the provider's prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    /// `tool_choice`: `"auto"`, `"none"`, `"required"`, or an object naming a tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// The `web_search` tool's settings (filters, context size, location).
    #[serde(skip)]
    pub web_search: Option<WebSearch>,
    /// The `fetch_url` tool, with the most URLs it may read (1 to 10); `Some(None)` offers it
    /// with the service's default.
    #[serde(skip)]
    pub fetch_url: Option<Option<u32>>,
    /// `service_tier`: the processing tier (auto, default, flex, priority, fast).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// The `image_search` tool: images found go with the answer (`ChatResponse::images`).
    #[serde(skip)]
    pub image_search: Option<ImageSearch>,
    /// Offer the `finance_search` tool (quotes, fundamentals, SEC filings).
    #[serde(skip)]
    pub finance_search: bool,
    /// Offer the `people_search` tool (professional profiles).
    #[serde(skip)]
    pub people_search: bool,
    /// `background`: whether the answer runs as a background run. Unset, the provider decides
    /// (a background run whenever resuming is on); `Some(false)` asks plainly, `Some(true)`
    /// always in the background. Streamed or whole, the caller gets the answer either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background: Option<bool>,
}

/// The processing tier of an Agent API request (`service_tier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ServiceTier {
    /// The service decides.
    Auto,
    /// The standard tier.
    Default,
    /// Cheaper, may wait.
    Flex,
    /// Served first.
    Priority,
    /// The fast tier.
    Fast,
}

/// The Agent API's `image_search` tool, configured (the SDK's `ImageSearchToolInput`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ImageSearch {
    /// How many images, at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
    /// Domains to take images from (or, with a leading `-`, not to).
    #[serde(skip_serializing_if = "Vec::is_empty", rename = "domain_filter")]
    pub domains: Vec<String>,
    /// Image formats to keep: bmp, gif, jpeg, png, webp, svg.
    #[serde(skip_serializing_if = "Vec::is_empty", rename = "format_filter")]
    pub formats: Vec<String>,
    /// Leave explicit images out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_search: Option<bool>,
}

impl ImageSearch {
    /// The tool object: its filters inside `filters`, as the SDK types them.
    fn tool(&self) -> Value {
        let mut tool = json!({"type": "image_search"});
        if let Some(max_results) = self.max_results {
            tool["max_results"] = max_results.into();
        }
        let mut filters = json!(self);
        if let Value::Object(fields) = &mut filters {
            fields.remove("max_results");
            if !fields.is_empty() {
                tool["filters"] = filters;
            }
        }
        tool
    }
}

/// The image formats `image_search` filters on.
const IMAGE_FORMATS: &[&str] = &["bmp", "gif", "jpeg", "png", "webp", "svg"];

/// The most steps `max_steps` allows (the migration guide: 1 to 100).
pub const MAX_STEPS: u32 = 100;

/// The most models a fallback chain takes (the SDK's `models`).
pub const MAX_FALLBACK_MODELS: usize = 5;

/// `reasoning_effort` as the Agent API takes it: `{"effort": ...}`.
fn reasoning<S: serde::Serializer>(
    effort: &Option<ReasoningEffort>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    effort
        .map(|effort| json!({ "effort": effort }))
        .serialize(serializer)
}

impl AgentOptions {
    /// Checks the options and writes those that are set into `request`.
    ///
    /// # Errors
    /// A config error naming the field out of its range (more than five `models`,
    /// `max_steps` outside 1 to 100, `fetch_url` outside 1 to 10 URLs, a latitude or longitude
    /// off the globe, a `tool_choice` that is neither a known word nor an object).
    pub fn apply(&self, mut request: ChatRequest) -> Result<ChatRequest, Error> {
        self.check()?;
        write_fields(&mut request, self);
        let mut tools = Vec::new();
        if let Some(web) = &self.web_search {
            let mut tool = json!(web);
            tool["type"] = "web_search".into();
            tools.push(tool);
        }
        if let Some(max_urls) = self.fetch_url {
            let mut tool = json!({"type": "fetch_url"});
            if let Some(max_urls) = max_urls {
                tool["max_urls"] = max_urls.into();
            }
            tools.push(tool);
        }
        if let Some(images) = &self.image_search {
            tools.push(images.tool());
        }
        if self.finance_search {
            tools.push(json!({"type": "finance_search"}));
        }
        if self.people_search {
            tools.push(json!({"type": "people_search"}));
        }
        if !tools.is_empty() {
            match request.options.get_mut("tools") {
                Some(Value::Array(existing)) => existing.extend(tools),
                _ => {
                    request.options.insert("tools".into(), Value::Array(tools));
                }
            }
        }
        Ok(request)
    }

    /// The ranges [`apply`](AgentOptions::apply) checks.
    fn check(&self) -> Result<(), Error> {
        if self.models.len() > MAX_FALLBACK_MODELS {
            return Err(Error::config(format!(
                "models: at most {MAX_FALLBACK_MODELS} in a fallback chain, not {}",
                self.models.len()
            )));
        }
        let in_range = |name: &str, value: Option<u32>, most: u32| match value {
            Some(value) if !(1..=most).contains(&value) => Err(Error::config(format!(
                "{name} must be between 1 and {most}, not {value}"
            ))),
            _ => Ok(()),
        };
        in_range("max_steps", self.max_steps, MAX_STEPS)?;
        in_range("fetch_url.max_urls", self.fetch_url.flatten(), 10)?;
        if let Some(images) = &self.image_search {
            in_range("image_search.max_results", images.max_results, 100)?;
            if let Some(format) = images
                .formats
                .iter()
                .find(|format| !IMAGE_FORMATS.contains(&format.as_str()))
            {
                return Err(Error::config(format!(
                    "image_search format {format:?}: use {}",
                    IMAGE_FORMATS.join(", ")
                )));
            }
        }
        if let Some(location) = self
            .web_search
            .as_ref()
            .and_then(|web| web.user_location.as_ref())
        {
            location.check()?;
        }
        match &self.tool_choice {
            None | Some(Value::Object(_)) => Ok(()),
            Some(Value::String(choice))
                if ["auto", "none", "required"].contains(&choice.as_str()) =>
            {
                Ok(())
            }
            Some(other) => Err(Error::config(format!(
                "tool_choice must be auto, none, required or an object, not {other}"
            ))),
        }
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
/// request.filters.search_domain_filter = vec!["nasa.gov".into()];
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
    /// The search filters (recency, domains, dates; 20 domains at most).
    #[serde(flatten)]
    pub filters: SearchFilters,
    /// Languages to keep (ISO 639-1 codes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search_language_filter: Vec<String>,
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
#[allow(
    clippy::field_reassign_with_default,
    reason = "the options are non_exhaustive: callers outside this crate set them this way"
)]
mod tests {
    use super::*;

    #[test]
    fn agent_options_send_what_is_set_and_refuse_what_is_out_of_range() {
        let request = || ChatRequest::new("medium", "q");
        assert!(
            AgentOptions::default()
                .apply(request())
                .unwrap()
                .options
                .is_empty()
        );
        let mut options = AgentOptions::default();
        options.instructions = Some("Be brief.".into());
        options.models = vec![
            "openai/gpt-5-mini".into(),
            "anthropic/claude-sonnet-4-5".into(),
        ];
        options.max_steps = Some(3);
        options.reasoning_effort = Some(ReasoningEffort::Xhigh);
        options.response_format = Some(JsonSchema::new("city", json!({"type": "object"})));
        options.tool_choice = Some(json!("auto"));
        let mut web = WebSearch::default();
        web.filters.search_domain_filter = vec!["nasa.gov".into()];
        web.search_context_size = Some(SearchContextSize::High);
        web.max_tokens_per_page = Some(512);
        options.web_search = Some(web);
        options.fetch_url = Some(Some(2));
        options.service_tier = Some(ServiceTier::Flex);
        let mut images = ImageSearch::default();
        images.max_results = Some(4);
        images.formats = vec!["png".into()];
        options.image_search = Some(images);
        options.finance_search = true;
        options.people_search = true;
        let sent: Value = options
            .apply(request())
            .unwrap()
            .options
            .into_iter()
            .collect::<Map<_, _>>()
            .into();
        assert_eq!(
            sent,
            json!({
                "instructions": "Be brief.",
                "models": ["openai/gpt-5-mini", "anthropic/claude-sonnet-4-5"],
                "max_steps": 3,
                "reasoning": {"effort": "xhigh"},
                "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}},
                "tool_choice": "auto",
                "service_tier": "flex",
                "tools": [
                    {"type": "web_search", "filters": {"search_domain_filter": ["nasa.gov"]}, "search_context_size": "high", "max_tokens_per_page": 512},
                    {"type": "fetch_url", "max_urls": 2},
                    {"type": "image_search", "max_results": 4, "filters": {"format_filter": ["png"]}},
                    {"type": "finance_search"},
                    {"type": "people_search"},
                ],
            })
        );
        for (change, field) in [
            (
                Box::new(|options: &mut AgentOptions| options.models = vec!["a/b".into(); 6])
                    as Box<dyn Fn(&mut AgentOptions)>,
                "models",
            ),
            (
                Box::new(|options: &mut AgentOptions| options.max_steps = Some(101)),
                "max_steps",
            ),
            (
                Box::new(|options: &mut AgentOptions| options.max_steps = Some(0)),
                "max_steps",
            ),
            (
                Box::new(|options: &mut AgentOptions| options.fetch_url = Some(Some(99))),
                "fetch_url",
            ),
            (
                Box::new(|options: &mut AgentOptions| {
                    let mut images = ImageSearch::default();
                    images.formats = vec!["tiff".into()];
                    options.image_search = Some(images);
                }),
                "image_search",
            ),
            (
                Box::new(|options: &mut AgentOptions| {
                    options.tool_choice = Some(json!("sometimes"))
                }),
                "tool_choice",
            ),
            (
                Box::new(|options: &mut AgentOptions| {
                    let mut web = WebSearch::default();
                    let mut location = UserLocation::default();
                    location.latitude = Some(123.0);
                    web.user_location = Some(location);
                    options.web_search = Some(web);
                }),
                "latitude",
            ),
        ] {
            let mut options = AgentOptions::default();
            change(&mut options);
            let error = options.apply(request()).unwrap_err();
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
    }

    #[test]
    fn structured_answers_parse_fenced_or_not_and_bad_ones_are_protocol_errors() {
        #[derive(Debug, serde::Deserialize, PartialEq)]
        struct City {
            name: String,
        }
        let answer = |text: &str| {
            let mut response = chat_core::ChatResponse::default();
            response.text = text.into();
            parse_answer::<City>(&response)
        };
        let paris = City {
            name: "Paris".into(),
        };
        assert_eq!(answer(r#"{"name":"Paris"}"#).unwrap(), paris);
        assert_eq!(answer("```json\n{\"name\":\"Paris\"}\n```").unwrap(), paris);
        for bad in ["Paris is a city.", r#"{"town":"Paris"}"#, "```json\n{\n```"] {
            let error = answer(bad).unwrap_err();
            assert_eq!(error.kind(), chat_core::ErrorKind::Protocol, "{bad}");
            assert!(
                error
                    .to_string()
                    .contains("not JSON of the requested shape"),
                "{error}"
            );
        }
    }

    #[test]
    fn sonar_web_search_options_combine_into_one_object() {
        let mut options = SonarOptions::default();
        options.search_context_size = Some(SearchContextSize::Low);
        options.search_type = Some(SonarSearchType::Pro);
        let mut location = UserLocation::default();
        location.country = Some("FR".into());
        options.user_location = Some(location);
        options.num_search_results = Some(8);
        options.search_language_filter = vec!["fr".into()];
        let raw = ChatRequest::new("sonar", "q").with_option(
            "web_search_options",
            json!({"image_results_enhanced_relevance": true}),
        );
        let sent = options.apply(raw);
        assert_eq!(
            sent.options["web_search_options"],
            json!({"image_results_enhanced_relevance": true, "search_context_size": "low",
                "search_type": "pro", "user_location": {"country": "FR"}}),
            "typed fields join the raw object instead of replacing it"
        );
        assert_eq!(sent.options["num_search_results"], 8);
        assert_eq!(sent.options["search_language_filter"], json!(["fr"]));
    }

    #[test]
    fn a_search_request_sends_only_what_is_set_under_the_sdks_names() {
        let request = SearchRequest::new("tallest volcano");
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"query": "tallest volcano"})
        );
        let mut request = SearchRequest::new("tallest volcano");
        request.max_results = Some(5);
        request.filters.search_domain_filter = vec!["nasa.gov".into()];
        request.search_mode = Some(SearchMode::Academic);
        request.search_type = Some(SearchType::People);
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"query": "tallest volcano", "max_results": 5,
                "search_domain_filter": ["nasa.gov"], "search_mode": "academic",
                "search_type": "people"})
        );
    }

    #[test]
    fn a_search_of_the_last_hour_or_day_is_recent_on_either_api() {
        let asked = |options: &AgentOptions| {
            searches_recent(&options.apply(ChatRequest::new("medium", "news")).unwrap())
        };
        let mut agent = AgentOptions::default();
        assert!(!asked(&agent));
        for recency in Recency::ALL {
            let recent = matches!(recency, Recency::Hour | Recency::Day);
            let mut search = WebSearch::default();
            search.filters.search_recency_filter = Some(recency);
            agent.web_search = Some(search);
            assert_eq!(asked(&agent), recent, "{recency:?}");
            let mut sonar = SonarOptions::default();
            sonar.filters.search_recency_filter = Some(recency);
            let request = sonar.apply(ChatRequest::new("sonar", "news"));
            assert_eq!(searches_recent(&request), recent, "{recency:?}");
        }
    }

    #[test]
    fn a_recency_reads_back_as_it_is_written_and_anything_else_is_refused() {
        for recency in Recency::ALL {
            assert_eq!(Recency::parse(recency.as_str()).unwrap(), recency);
            assert_eq!(json!(recency), json!(recency.as_str()));
        }
        assert_eq!(Recency::parse(" week ").unwrap(), Recency::Week);
        for bad in ["fortnight", "Hour", ""] {
            let error = Recency::parse(bad).unwrap_err();
            assert!(error.to_string().contains("hour, day, week"), "{error}");
        }
    }
}
