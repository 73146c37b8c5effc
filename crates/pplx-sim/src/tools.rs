//! The scripted tool-calling model and the attachments a message carries: which offered
//! function a question calls and with what arguments, how a function's result is answered,
//! and what an answer says about the images and files it was sent. All deterministic, so
//! tests know exactly what a tool loop produces.

use serde_json::{Map, Value};

use crate::text::clip;

/// One call the simulated model makes to an offered function.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolCall {
    /// The id its result must name (`call_id` on the Agent API, `id` in chat completions).
    pub call_id: String,
    /// The function called.
    pub name: String,
    /// The arguments, as JSON text.
    pub arguments: String,
}

/// A function a request offers: its name and its parameters' JSON Schema.
#[derive(Debug, Clone)]
pub(crate) struct Offered {
    name: String,
    parameters: Value,
}

/// The most tools of one request looked at (the rest are ignored).
const MAX_TOOLS: usize = 128;
/// The most parameters one call fills in.
const MAX_PROPERTIES: usize = 32;
/// The most characters of a question the tool model reads.
const QUESTION_CHARS: usize = 2000;
/// The most characters of a function's output an answer repeats.
pub(crate) const OUTPUT_CHARS: usize = 120;

/// The functions a request body offers, in either API's format: the Agent API's
/// `{"type": "function", "name", "parameters"}` or chat completions'
/// `{"type": "function", "function": {"name", "parameters"}}`.
pub(crate) fn offered(body: &Value) -> Vec<Offered> {
    let tools = body["tools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    tools
        .iter()
        .filter(|tool| tool["type"] == "function")
        .filter_map(|tool| {
            let function = if tool["function"].is_object() {
                &tool["function"]
            } else {
                tool
            };
            Some(Offered {
                name: clip(function["name"].as_str()?, 64).to_owned(),
                parameters: function["parameters"].clone(),
            })
        })
        .take(MAX_TOOLS)
        .collect()
}

/// The call `question` makes, if it names an offered function: by its whole name, or by a
/// word of it of four letters or more (`get_weather` is called by "Weather in Paris?").
pub(crate) fn call_for(question: &str, offered: &[Offered], seed: u64) -> Option<ToolCall> {
    // Only the start of a question is read, so a long one costs what a short one does.
    let question = clip(question, QUESTION_CHARS);
    let question_lower = question.to_lowercase();
    let tool = offered.iter().find(|tool| {
        let name = tool.name.to_lowercase();
        question_lower.contains(&name)
            || name
                .split(['_', '-', '.'])
                .any(|word| word.len() >= 4 && question_lower.contains(word))
    })?;
    Some(ToolCall {
        call_id: format!("call_{:012x}", seed & 0xFFFF_FFFF_FFFF),
        name: tool.name.clone(),
        arguments: arguments(question, &tool.parameters),
    })
}

/// Arguments for `parameters`: each string property is the question's last capitalised word
/// after its first (the place or name it asks about), numbers 1, booleans true.
fn arguments(question: &str, parameters: &Value) -> String {
    let mut arguments = Map::new();
    if let Some(properties) = parameters["properties"].as_object() {
        for (name, schema) in properties.iter().take(MAX_PROPERTIES) {
            let value = match schema["type"].as_str() {
                Some("string") => Value::from(subject(question)),
                Some("integer" | "number") => Value::from(1),
                Some("boolean") => Value::from(true),
                _ => continue,
            };
            arguments.insert(name.clone(), value);
        }
    }
    Value::Object(arguments).to_string()
}

/// The question's last capitalised word after its first, else its first 40 characters.
fn subject(question: &str) -> &str {
    question
        .split_whitespace()
        .skip(1)
        .map(|word| word.trim_matches(|character: char| !character.is_alphanumeric()))
        .filter(|word| word.chars().next().is_some_and(char::is_uppercase))
        .last()
        .unwrap_or_else(|| clip(question.trim(), 40))
}

/// The sentence an answer to a function's result begins with.
pub(crate) fn result_sentence(name: &str, output: &str) -> String {
    format!("{name} returned {}. ", clip(output.trim(), OUTPUT_CHARS))
}

/// The deepest nesting of a schema followed when building an instance of it.
const SCHEMA_DEPTH: usize = 6;
/// The most properties of one object filled in.
const SCHEMA_PROPERTIES: usize = 64;

/// An answer that follows a `response_format` JSON Schema: a JSON instance of it, strings
/// taken from `text` (the answer it would have given), numbers 1, booleans true, each array
/// one item, an enum its first value. Bounded in depth and width, whatever the schema.
pub(crate) fn structured(schema: &Value, text: &str) -> String {
    instance(schema, clip(text, 200), 0).to_string()
}

fn instance(schema: &Value, text: &str, depth: usize) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|values| values.first()) {
        return first.clone();
    }
    if depth >= SCHEMA_DEPTH {
        return Value::Null;
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.as_str(),
        // A list of types: the first that is not null.
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|kind| *kind != "null")
            .unwrap_or("null"),
        _ if schema["properties"].is_object() => "object",
        _ => "string",
    };
    match kind {
        "object" => {
            let mut object = Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties.iter().take(SCHEMA_PROPERTIES) {
                    object.insert(name.clone(), instance(property, text, depth + 1));
                }
            }
            Value::Object(object)
        }
        "array" => Value::Array(vec![instance(&schema["items"], text, depth + 1)]),
        "integer" | "number" => Value::from(1),
        "boolean" => Value::from(true),
        "null" => Value::Null,
        _ => Value::from(text),
    }
}

/// Why an attachment part is refused, as the real service would say it.
pub(crate) type Refusal = String;

/// The media types the services take inline for images.
const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/webp", "image/gif"];

/// One image part's URL, checked (an `http(s)://` URL, or a `data:` URL of a supported image
/// type holding base64), and described for the acknowledgement.
pub(crate) fn image(url: &str) -> Result<String, Refusal> {
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(format!("an image at {}", clip(url, 80)));
    }
    let Some((media_type, data)) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    else {
        return Err("Invalid image URL: use an https URL or a base64 data URI".into());
    };
    if !IMAGE_TYPES.contains(&media_type) {
        return Err(format!(
            "Unsupported image format '{}': use PNG, JPEG, WEBP or GIF",
            clip(media_type, 40)
        ));
    }
    let bytes = decoded_len(data).ok_or("Invalid base64 image data")?;
    Ok(format!("an image ({media_type}, {bytes} bytes)"))
}

/// One file part, checked (a URL, or base64 with or without a `data:` prefix), and described.
pub(crate) fn file(data_or_url: &str, name: Option<&str>) -> Result<String, Refusal> {
    let name = name.map_or("a file".to_owned(), |name| clip(name, 80).to_owned());
    if data_or_url.starts_with("https://") || data_or_url.starts_with("http://") {
        return Ok(format!("{name} at {}", clip(data_or_url, 80)));
    }
    let data = data_or_url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .map_or(data_or_url, |(_, data)| data);
    let bytes = decoded_len(data).ok_or("Invalid file: use a URL or base64 data")?;
    Ok(format!("{name} ({bytes} bytes)"))
}

/// How many bytes `data` decodes to, if it is base64.
fn decoded_len(data: &str) -> Option<usize> {
    let valid = !data.is_empty()
        && data.len().is_multiple_of(4)
        && data
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'='));
    let padding = data.bytes().rev().take_while(|byte| *byte == b'=').count();
    (valid && padding <= 2).then(|| data.len() / 4 * 3 - padding)
}

/// The sentence an answer about attachments begins with.
pub(crate) fn attachments_sentence(described: &[String]) -> String {
    if described.is_empty() {
        String::new()
    } else {
        format!("You attached {}. ", described.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn weather() -> Vec<Offered> {
        offered(
            &json!({"tools": [{"type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}]}),
        )
    }

    #[test]
    fn a_question_naming_a_tool_calls_it_with_arguments_from_the_question() {
        let call = call_for("What's the weather in Paris today?", &weather(), 7).unwrap();
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.arguments, r#"{"city":"Paris","days":1}"#);
        assert_eq!(call.call_id, "call_000000000007");
        assert_eq!(call_for("Who wrote Hamlet?", &weather(), 7), None);
        // Chat completions' format offers the same function.
        let chat = offered(
            &json!({"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]}),
        );
        assert_eq!(call_for("weather?", &chat, 1).unwrap().arguments, "{}");
    }

    #[test]
    fn a_structured_answer_is_an_instance_of_its_schema() {
        let schema = json!({"type": "object", "properties": {
            "city": {"type": "string"}, "population": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["capital", "town"]}, "coastal": {"type": ["boolean", "null"]}}});
        let answer: Value = serde_json::from_str(&structured(&schema, "Paris.")).unwrap();
        assert_eq!(
            answer,
            json!({"city": "Paris.", "population": 1, "tags": ["Paris."], "kind": "capital", "coastal": true})
        );
        // A schema nested without end is cut, not followed.
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"type": "object", "properties": {"inner": deep}});
        }
        assert!(structured(&deep, "x").len() < 200);
    }

    #[test]
    fn attachments_are_checked_and_described() {
        assert_eq!(
            image("data:image/png;base64,iVBORw==").unwrap(),
            "an image (image/png, 4 bytes)"
        );
        assert!(
            image("data:image/tiff;base64,AAAA")
                .unwrap_err()
                .contains("Unsupported")
        );
        assert!(image("data:image/png;base64,@@@").is_err());
        assert!(image("ftp://x").is_err());
        assert_eq!(
            file("JVBERi0xLjc=", Some("report.pdf")).unwrap(),
            "report.pdf (8 bytes)"
        );
        assert!(file("not base64!", None).is_err());
    }
}
