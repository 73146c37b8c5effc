//! Cache keys: a stable hash of the normalised request.

use chat_core::ChatRequest;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Options that say nothing about the answer, left out of the key.
const NOT_ANSWER_CHANGING: &[&str] = &["stream", "user", "request_id", "metadata"];

/// The key for `request` answered by `answerer` (provider, API and resolved model). Whether
/// it may be cached at all is the provider's to say (`ChatProvider::cacheable`): this crate
/// reads no vendor's option names.
pub(crate) fn cache_key(answerer: &str, request: &ChatRequest) -> String {
    let options: Map<String, Value> = request
        .options
        .iter()
        .filter(|(name, _)| !NOT_ANSWER_CHANGING.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let normalised = json!({
        "answerer": answerer,
        "messages": request.messages,
        "sampling": request.sampling,
        "options": canonical(Value::Object(options)),
    });
    let mut normalised = normalised;
    if !request.tools.is_empty() {
        // Only when offered, so that every key made before tools existed still matches.
        normalised["tools"] = serde_json::to_value(&request.tools).unwrap_or_default();
    }
    let digest = Sha256::digest(canonical(normalised).to_string().as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("pplx:v1:{hex}")
}

/// The value with every object's keys sorted, whatever order it was built in.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map
                .into_iter()
                .map(|(key, value)| (key, canonical(value)))
                .collect();
            entries.sort_by(|left, right| left.0.cmp(&right.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use chat_core::Message;

    use super::*;

    fn request() -> ChatRequest {
        ChatRequest::new("pro", "What is new in Rust?")
            .with_option("search_domain_filter", json!(["rust-lang.org"]))
            .with_option(
                "web_search_options",
                json!({"search_context_size": "low", "b": 1}),
            )
    }

    /// `ChatRequest::new("sonar", "hi")`'s key as pplx made it before tools existed.
    const PINNED: &str = "pplx:v1:f3305ff1b80d8634673ea65c927f1655906acd9bd44ef583cf22d2249567c4b4";

    #[test]
    fn offered_tools_change_the_key_and_no_tools_keep_the_old_one() {
        let plain = cache_key("a", &request());
        let mut with_tools = request();
        with_tools.tools.push(chat_core::Tool::function(
            "get_weather",
            "",
            json!({"type": "object"}),
        ));
        let offered = cache_key("a", &with_tools);
        assert_ne!(plain, offered);
        with_tools.tools[0].description = "the weather".into();
        assert_ne!(offered, cache_key("a", &with_tools));
        // A key from before tools existed (pinned): unchanged without tools.
        assert_eq!(cache_key("a", &ChatRequest::new("sonar", "hi")), PINNED);
    }

    #[test]
    fn attachments_change_the_key_by_their_bytes() {
        use chat_core::Attachment;
        let with = |bytes: &[u8]| {
            let mut request = request();
            request.messages[0] = Message::user("What is new in Rust?")
                .with_attachment(Attachment::from_bytes("image/png", bytes));
            cache_key("a", &request)
        };
        let plain = cache_key("a", &request());
        assert_ne!(with(b"one"), plain);
        assert_ne!(with(b"one"), with(b"two"), "the bytes, not only the count");
        assert_eq!(with(b"one"), with(b"one"));
    }

    #[test]
    fn the_same_request_gives_the_same_key_whatever_the_option_order() {
        let key = cache_key("perplexity/sonar/sonar-pro", &request());
        let mut reordered = ChatRequest::new("pro", "What is new in Rust?");
        reordered.options.insert(
            "web_search_options".into(),
            json!({"b": 1, "search_context_size": "low"}),
        );
        reordered
            .options
            .insert("search_domain_filter".into(), json!(["rust-lang.org"]));
        reordered.options.insert("stream".into(), json!(true));
        assert_eq!(cache_key("perplexity/sonar/sonar-pro", &reordered), key);
        assert!(key.starts_with("pplx:v1:") && key.len() == 8 + 64);
    }

    #[test]
    fn everything_that_changes_the_answer_changes_the_key() {
        let base = cache_key("perplexity/sonar/sonar-pro", &request());
        assert_ne!(cache_key("perplexity/sonar/sonar", &request()), base);
        assert_ne!(cache_key("perplexity/agent/sonar-pro", &request()), base);
        let mut sampled = request();
        sampled.sampling.temperature = Some(0.2);
        assert_ne!(cache_key("perplexity/sonar/sonar-pro", &sampled), base);
        let mut followed = request();
        followed.messages.push(Message::assistant("x"));
        assert_ne!(cache_key("perplexity/sonar/sonar-pro", &followed), base);
        let filtered = request().with_option("search_recency_filter", "week");
        assert_ne!(cache_key("perplexity/sonar/sonar-pro", &filtered), base);
    }
}
