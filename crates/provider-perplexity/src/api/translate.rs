//! A request as the Agent API reads it, whatever it was written for: Sonar model names mapped
//! to what Perplexity's migration guide names in their place, Sonar options moved to where
//! the Agent API reads them, and what has no equivalent refused before anything is sent (the
//! Agent API rejects any field it does not know with a 400, so nothing may be left behind,
//! and nothing is dropped in silence).
//!
//! The authority is Perplexity's migration skill (`perplexityai/api-platform-developers`,
//! `skills/migrate-sonar-to-agent-api/references/`): `models-and-presets.md` for the names,
//! `request-mapping.md` for the fields and its REMOVE list.

use chat_core::{ChatRequest, Error, ErrorKind};
use serde_json::{Map, Value, json};

use super::agent::is_effort;

/// What answers a request on the Agent API: the field that names it, and the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Engine<'a> {
    /// `model`, `effort` or `preset`.
    pub(crate) field: &'static str,
    /// Its value.
    pub(crate) name: &'a str,
}

/// Each Sonar model and what answers it on the Agent API, by the migration guide's table:
/// `sonar` is `perplexity/sonar` with the `web_search` tool (a model slug keeps the contract
/// of a `--model` name); `sonar-pro`, `sonar-reasoning` and `sonar-reasoning-pro` the `low`
/// effort (pro search, multi-step); `sonar-deep-research` the `medium` effort (deep
/// research, which this client runs in the background). There is no `perplexity/sonar-pro`.
const SONAR_NAMES: &[(&str, Engine<'static>)] = &[
    (
        "sonar",
        Engine {
            field: "model",
            name: "perplexity/sonar",
        },
    ),
    (
        "sonar-pro",
        Engine {
            field: "effort",
            name: "low",
        },
    ),
    (
        "sonar-reasoning",
        Engine {
            field: "effort",
            name: "low",
        },
    ),
    (
        "sonar-reasoning-pro",
        Engine {
            field: "effort",
            name: "low",
        },
    ),
    (
        "sonar-deep-research",
        Engine {
            field: "effort",
            name: "medium",
        },
    ),
];

/// The Sonar model names the Agent API answers (through [`engine`]).
pub(crate) fn sonar_names() -> impl Iterator<Item = &'static str> {
    SONAR_NAMES.iter().map(|(name, _)| *name)
}

/// What answers `model` on the Agent API: a Sonar name by the migration table, a
/// `provider/model` name as a `model`, an effort level (pinned or not) as `effort`, and any
/// other name as an older `preset` (`pro-search`, ...). `None` for a Sonar-looking name the
/// table does not have (it is never sent as a model: no such slug exists).
pub(crate) fn engine(model: &str) -> Option<Engine<'_>> {
    if let Some((_, engine)) = SONAR_NAMES.iter().find(|(name, _)| *name == model) {
        return Some(*engine);
    }
    let field = if model.contains('/') {
        "model"
    } else if is_effort(model) {
        "effort"
    } else if model.starts_with("sonar") {
        return None;
    } else {
        "preset"
    };
    Some(Engine { field, name: model })
}

/// How a Sonar name is mapped, in words (`sonar -> perplexity/sonar with web_search`), with
/// its place in the table; `None` for a name that is not a Sonar name.
pub(crate) fn mapping(model: &str) -> Option<(usize, String)> {
    let index = SONAR_NAMES.iter().position(|(name, _)| *name == model)?;
    let (name, engine) = SONAR_NAMES[index];
    Some((
        index,
        match engine.field {
            "model" => format!("{name} -> {} with web_search", engine.name),
            field => format!("{name} -> {field} {}", engine.name),
        },
    ))
}

/// Function names the Agent API keeps for its own tools (a 400 if a function takes one).
pub const RESERVED_FUNCTION_NAMES: &[&str] = &[
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

/// The output-token cap sent for `anthropic/*` models when the request sets none: the Agent
/// API requires one for them, and reasoning tokens count against it, so it is generous.
pub const ANTHROPIC_MAX_OUTPUT_TOKENS: u32 = 8192;

/// The Sonar search filters, which go inside the `web_search` tool's `filters`.
const FILTERS: &[&str] = &[
    "search_recency_filter",
    "search_domain_filter",
    "search_after_date_filter",
    "search_before_date_filter",
    "last_updated_after_filter",
    "last_updated_before_filter",
];

/// Sonar fields with no Agent API equivalent (the guide's REMOVE list), each with what to do
/// instead.
const REMOVED: &[(&str, &str)] = &[
    ("top_k", "no equivalent"),
    ("presence_penalty", "no equivalent"),
    ("frequency_penalty", "no equivalent"),
    ("stop", "no equivalent"),
    ("n", "one answer per request: send several requests"),
    ("logprobs", "no equivalent"),
    ("top_logprobs", "no equivalent"),
    (
        "return_images",
        "offer the image_search tool (AgentOptions::image_search)",
    ),
    ("image_domain_filter", "use image_search's filters"),
    ("image_format_filter", "use image_search's filters"),
    (
        "return_related_questions",
        "ask for related questions in the prompt or the response_format schema",
    ),
    ("search_language_filter", "no equivalent"),
    ("return_videos", "no equivalent"),
    ("num_images", "no equivalent"),
    ("num_videos", "no equivalent"),
    ("media_response", "no equivalent"),
    (
        "stream_mode",
        "no equivalent (the Agent API streams typed events)",
    ),
    ("safe_search", "no equivalent for web search"),
    (
        "num_search_results",
        "no field of the Agent API's schema takes it: bound the search with web_search's max_tokens",
    ),
];

/// A refusal of `field`, made before sending: the request would be refused (or, dropped in
/// silence, answered differently from what was asked).
fn refuse(field: &str, instead: &str) -> Error {
    Error::reported(
        ErrorKind::BadRequest,
        format!("{field} has no Agent API equivalent ({instead}); leave it out, or ask chat completions (api = sonar) where they are still served"),
    )
    .with_param(Some(field.to_owned()))
}

/// The caller's options for `model` as the Agent API reads them (merged over the API's own
/// fields by `request_body`), or why the request cannot be sent there.
pub(crate) fn options(request: &ChatRequest, model: &str) -> Result<Map<String, Value>, Error> {
    let engine = engine(model).ok_or_else(|| {
        Error::config(format!(
            "{model:?} is not a Sonar model the Agent API answers: use {}, an effort level, or provider/model",
            sonar_names().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let sampling = &request.sampling;
    if sampling.top_k.is_some() {
        return Err(refuse("top_k", "no equivalent"));
    }
    if !sampling.stop.is_empty() {
        return Err(refuse("stop", "no equivalent"));
    }
    if sampling.presence_penalty.is_some() {
        return Err(refuse("presence_penalty", "no equivalent"));
    }
    if sampling.frequency_penalty.is_some() {
        return Err(refuse("frequency_penalty", "no equivalent"));
    }
    if let Some(tool) = request
        .tools
        .iter()
        .find(|tool| RESERVED_FUNCTION_NAMES.contains(&tool.name.as_str()))
    {
        return Err(Error::reported(
            ErrorKind::BadRequest,
            format!(
                "the function name {:?} is reserved by the Agent API for its own tool: rename the function",
                tool.name
            ),
        )
        .with_param(Some("tools".to_owned())));
    }
    let mut out = Map::new();
    let mut tools: Vec<Value> = Vec::new();
    let mut web = Map::new();
    let mut filters = Map::new();
    let mut no_search = false;
    let mut country = None;
    for (field, value) in &request.options {
        let field = field.as_str();
        if let Some((_, instead)) = REMOVED.iter().find(|(name, _)| *name == field) {
            let off = matches!(value, Value::Bool(false) | Value::Null)
                || value.as_array().is_some_and(Vec::is_empty);
            if off {
                continue; // Asking for nothing loses nothing.
            }
            return Err(refuse(field, instead));
        }
        match field {
            "tools" => {
                let Value::Array(given) = value else {
                    return Err(refuse("tools", "tools must be a list"));
                };
                tools.extend(given.iter().cloned());
            }
            _ if FILTERS.contains(&field) => {
                filters.insert(field.to_owned(), value.clone());
            }
            "web_search_options" => {
                for (name, setting) in value.as_object().into_iter().flatten() {
                    match name.as_str() {
                        "search_context_size" | "user_location" => {
                            web.insert(name.clone(), setting.clone());
                        }
                        "search_type" => {
                            return Err(refuse(
                                "web_search_options.search_type",
                                "for multi-step search use an effort level (low or higher) or max_steps",
                            ));
                        }
                        other => {
                            return Err(refuse(
                                &format!("web_search_options.{other}"),
                                "no equivalent",
                            ));
                        }
                    }
                }
            }
            "search_mode" => match value.as_str() {
                Some("web") | None => {} // What web_search does.
                Some("sec") => {
                    return Err(refuse(
                        "search_mode",
                        "for SEC filings offer the finance_search tool (AgentOptions::finance_search)",
                    ));
                }
                Some(_) => return Err(refuse("search_mode", "academic search has no equivalent")),
            },
            "country" => country = Some(value.clone()),
            "reasoning_effort" => {
                out.entry("reasoning")
                    .or_insert_with(|| json!({ "effort": value }));
            }
            "max_tokens" | "max_completion_tokens" => {
                out.insert("max_output_tokens".into(), value.clone());
            }
            "disable_search" => no_search = value.as_bool() == Some(true),
            // The model decides whether to call web_search: what the classifier did.
            "enable_search_classifier" => {}
            _ => {
                out.insert(field.to_owned(), value.clone());
            }
        }
    }
    if !filters.is_empty() {
        web.insert("filters".into(), Value::Object(filters));
    }
    if let Some(country) = country {
        let location = web
            .entry("user_location")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(location) = location {
            location.entry("country").or_insert(country);
        }
    }
    let searching = tools.iter().position(is_web_search);
    if no_search {
        if engine.field != "model" {
            return Err(refuse(
                "disable_search",
                "an effort level always searches: name a provider/model to answer without search",
            ));
        }
        if searching.is_some() || !web.is_empty() {
            return Err(refuse(
                "disable_search",
                "the request also configures web_search",
            ));
        }
    } else {
        match searching {
            // Sonar-style settings join the web_search tool the caller configured.
            Some(index) => {
                if let Value::Object(tool) = &mut tools[index] {
                    merge(tool, web);
                }
            }
            // A bare model does not search: every answer here is grounded, as Sonar's were.
            None if engine.field == "model" || !web.is_empty() => {
                let mut tool = Map::new();
                tool.insert("type".into(), "web_search".into());
                merge(&mut tool, web);
                tools.insert(0, Value::Object(tool));
            }
            None => {}
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if !out.contains_key("max_output_tokens")
        && sampling.max_tokens.is_none()
        && needs_output_cap(engine, &out)
    {
        out.insert(
            "max_output_tokens".into(),
            ANTHROPIC_MAX_OUTPUT_TOKENS.into(),
        );
    }
    if !out.contains_key("prompt_cache_key")
        && let Some(key) = conversation_key(request)
    {
        out.insert("prompt_cache_key".into(), key.into());
    }
    Ok(out)
}

/// For a conversation (an earlier answer in the messages), a key that stays the same from
/// turn to turn: a hash of how it began (the system prompt and the first question), so
/// that every turn shares Perplexity's prompt cache. It says nothing of the text; another
/// conversation that began the same way shares the same cached prefix, which is what the
/// cache is for.
fn conversation_key(request: &ChatRequest) -> Option<String> {
    use chat_core::Role;
    if !request
        .messages
        .iter()
        .any(|message| message.role == Role::Assistant)
    {
        return None;
    }
    let first_question = request
        .messages
        .iter()
        .position(|message| message.role == Role::User)?;
    // FNV-1a: stable across processes and releases (each turn of `pplx -c` is a process).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for message in &request.messages[..=first_question] {
        for byte in message.content.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    Some(format!("pplx-{hash:016x}"))
}

/// Whether `tool` is a `web_search` tool.
fn is_web_search(tool: &Value) -> bool {
    tool.get("type").and_then(Value::as_str) == Some("web_search")
}

/// `from`'s settings into `tool`, `filters` merged field by field (the tool's own win).
fn merge(tool: &mut Map<String, Value>, from: Map<String, Value>) {
    for (name, value) in from {
        match (tool.get_mut(&name), value) {
            (Some(Value::Object(existing)), Value::Object(more)) => {
                for (field, setting) in more {
                    existing.entry(field).or_insert(setting);
                }
            }
            (Some(_), _) => {}
            (None, value) => {
                tool.insert(name, value);
            }
        }
    }
}

/// Whether an Anthropic model may answer (the model, or one in the fallback chain): the Agent
/// API then requires `max_output_tokens`.
fn needs_output_cap(engine: Engine<'_>, options: &Map<String, Value>) -> bool {
    let anthropic = |name: &str| name.starts_with("anthropic/");
    (engine.field == "model" && anthropic(engine.name))
        || options
            .get("models")
            .and_then(Value::as_array)
            .is_some_and(|models| models.iter().filter_map(Value::as_str).any(anthropic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::Tool;

    fn translated(request: &ChatRequest) -> Value {
        Value::Object(options(request, &request.model).unwrap())
    }

    #[test]
    fn sonar_names_map_as_the_migration_guide_says_and_are_never_sent_as_models() {
        fn engine_of(model: &str) -> Option<(&'static str, &str)> {
            engine(model).map(|engine| (engine.field, engine.name))
        }
        assert_eq!(engine_of("sonar"), Some(("model", "perplexity/sonar")));
        assert_eq!(engine_of("sonar-pro"), Some(("effort", "low")));
        assert_eq!(engine_of("sonar-reasoning"), Some(("effort", "low")));
        assert_eq!(engine_of("sonar-reasoning-pro"), Some(("effort", "low")));
        assert_eq!(engine_of("sonar-deep-research"), Some(("effort", "medium")));
        assert_eq!(
            engine_of("openai/gpt-5-mini"),
            Some(("model", "openai/gpt-5-mini"))
        );
        assert_eq!(
            engine_of("high@2026-10-16.0"),
            Some(("effort", "high@2026-10-16.0"))
        );
        assert_eq!(engine_of("pro-search"), Some(("preset", "pro-search")));
        assert_eq!(engine_of("sonar-huge"), None);
        let error = options(&ChatRequest::new("sonar-huge", "hi"), "sonar-huge").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let said = |model: &str| mapping(model).map(|(_, said)| said);
        assert_eq!(
            said("sonar").as_deref(),
            Some("sonar -> perplexity/sonar with web_search")
        );
        assert_eq!(
            said("sonar-pro").as_deref(),
            Some("sonar-pro -> effort low")
        );
        assert!(SONAR_NAMES.len() <= 8, "one bit each in Endpoint::mapped");
        assert_eq!(mapping("fast"), None);
    }

    #[test]
    fn a_model_is_grounded_with_web_search_and_an_effort_keeps_its_own() {
        let options = translated(&ChatRequest::new("sonar", "hi"));
        assert_eq!(options, json!({"tools": [{"type": "web_search"}]}));
        let options = translated(&ChatRequest::new("fast", "hi"));
        assert_eq!(options, json!({}));
        // Switched off on a model: no tool; on an effort it cannot be.
        let quiet = ChatRequest::new("openai/gpt-5-mini", "hi").with_option("disable_search", true);
        assert_eq!(translated(&quiet), json!({}));
        let quiet = ChatRequest::new("low", "hi").with_option("disable_search", true);
        let error = super::options(&quiet, "low").unwrap_err();
        assert_eq!(error.param(), Some("disable_search"), "{error}");
    }

    #[test]
    fn sonar_options_move_inside_the_web_search_tool() {
        let request = ChatRequest::new("sonar-pro", "hi")
            .with_option("search_recency_filter", "week")
            .with_option("search_domain_filter", json!(["nasa.gov", "-reddit.com"]))
            .with_option(
                "web_search_options",
                json!({"search_context_size": "high", "user_location": {"city": "Paris"}}),
            )
            .with_option("country", "FR")
            .with_option("reasoning_effort", "medium")
            .with_option("search_mode", "web")
            .with_option("return_images", false)
            .with_option("language_preference", "fr");
        assert_eq!(
            translated(&request),
            json!({
                "tools": [{
                    "type": "web_search",
                    "filters": {"search_recency_filter": "week", "search_domain_filter": ["nasa.gov", "-reddit.com"]},
                    "search_context_size": "high",
                    "user_location": {"city": "Paris", "country": "FR"},
                }],
                "reasoning": {"effort": "medium"},
                "language_preference": "fr",
            })
        );
        // Beside a web_search tool the caller configured, they join it (its own settings win).
        let request = ChatRequest::new("sonar", "hi")
            .with_option("tools", json!([{"type": "fetch_url"}, {"type": "web_search", "filters": {"search_recency_filter": "day"}}]))
            .with_option("search_recency_filter", "week")
            .with_option("search_domain_filter", json!(["nasa.gov"]));
        assert_eq!(
            translated(&request)["tools"],
            json!([{"type": "fetch_url"}, {"type": "web_search", "filters": {"search_recency_filter": "day", "search_domain_filter": ["nasa.gov"]}}])
        );
    }

    #[test]
    fn what_has_no_equivalent_is_refused_naming_the_field() {
        for (field, value) in [
            ("top_k", json!(5)),
            ("return_related_questions", json!(true)),
            ("return_images", json!(true)),
            ("presence_penalty", json!(0.5)),
            ("search_language_filter", json!(["fr"])),
            ("num_search_results", json!(5)),
            ("search_mode", json!("academic")),
            ("search_mode", json!("sec")),
        ] {
            let request = ChatRequest::new("sonar", "hi").with_option(field, value);
            let error = options(&request, "sonar").unwrap_err();
            assert_eq!(error.kind(), ErrorKind::BadRequest, "{field}: {error}");
            assert_eq!(error.param(), Some(field), "{error}");
            assert!(error.to_string().contains(field), "{error}");
        }
        let search_type = ChatRequest::new("sonar", "hi")
            .with_option("web_search_options", json!({"search_type": "pro"}));
        let error = options(&search_type, "sonar").unwrap_err();
        assert_eq!(error.param(), Some("web_search_options.search_type"));
        let mut sampled = ChatRequest::new("sonar", "hi");
        sampled.sampling.stop = vec!["\n".into()];
        assert_eq!(
            options(&sampled, "sonar").unwrap_err().param(),
            Some("stop")
        );
    }

    #[test]
    fn a_conversation_keeps_one_prompt_cache_key_from_turn_to_turn() {
        use chat_core::Message;
        let first = ChatRequest::new("sonar", "What is the tallest volcano?");
        assert!(
            translated(&first).get("prompt_cache_key").is_none(),
            "one question"
        );
        let mut second = first.clone();
        second.messages.push(Message::assistant("Olympus Mons."));
        second.messages.push(Message::user("And on Earth?"));
        let mut third = second.clone();
        third.messages.push(Message::assistant("Mauna Kea."));
        third.messages.push(Message::user("How tall?"));
        let key = translated(&second)["prompt_cache_key"].clone();
        assert!(key.as_str().unwrap().starts_with("pplx-"), "{key}");
        assert_eq!(translated(&third)["prompt_cache_key"], key);
        let mut other = ChatRequest::new("sonar", "What is the deepest lake?");
        other.messages.push(Message::assistant("Baikal."));
        other.messages.push(Message::user("How deep?"));
        assert_ne!(translated(&other)["prompt_cache_key"], key);
        // The caller's own key wins.
        let own = second.with_option("prompt_cache_key", "mine");
        assert_eq!(translated(&own)["prompt_cache_key"], "mine");
    }

    #[test]
    fn reserved_function_names_are_refused() {
        let mut request = ChatRequest::new("openai/gpt-5-mini", "hi");
        request
            .tools
            .push(Tool::function("fetch_url", "", json!({"type": "object"})));
        let error = options(&request, "openai/gpt-5-mini").unwrap_err();
        assert!(
            error.to_string().contains("\"fetch_url\" is reserved"),
            "{error}"
        );
        request.tools[0].name = "my_fetch_url".into();
        assert!(options(&request, "openai/gpt-5-mini").is_ok());
    }

    #[test]
    fn anthropic_models_get_an_output_cap_unless_one_is_set() {
        let request = ChatRequest::new("anthropic/claude-sonnet-4-5", "hi");
        assert_eq!(
            translated(&request)["max_output_tokens"],
            json!(ANTHROPIC_MAX_OUTPUT_TOKENS)
        );
        let chained = ChatRequest::new("openai/gpt-5-mini", "hi").with_option(
            "models",
            json!(["openai/gpt-5-mini", "anthropic/claude-haiku-4-5"]),
        );
        assert_eq!(
            translated(&chained)["max_output_tokens"],
            json!(ANTHROPIC_MAX_OUTPUT_TOKENS)
        );
        let mut capped = request.clone();
        capped.sampling.max_tokens = Some(300);
        assert!(translated(&capped).get("max_output_tokens").is_none());
        let raw = request.with_option("max_tokens", 200);
        assert_eq!(translated(&raw)["max_output_tokens"], json!(200));
        assert!(
            translated(&ChatRequest::new("openai/gpt-5-mini", "hi"))
                .get("max_output_tokens")
                .is_none()
        );
    }
}
