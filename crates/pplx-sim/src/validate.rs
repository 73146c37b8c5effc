//! Requests validated as the real service does, and the answer each one gets.

use serde_json::Value;

use crate::config::MODELS;
use crate::config::PRESETS;
use crate::config::Pace;
use crate::content::{self, Answer, Filters};
use crate::routes::Api;
use crate::wire::{self, Asked};

pub(crate) struct Prepared {
    pub(crate) answer: Answer,
    pub(crate) asked: Asked,
    pub(crate) id: String,
    pub(crate) conversation_hash: u64,
    pub(crate) queries: Vec<String>,
}

/// Validates a request as the real service does, and works out its answer.
pub(crate) fn prepare(
    api: Api,
    body: &Value,
    model: &str,
    pace: Pace,
) -> Result<Prepared, (u16, Value)> {
    let mut conversation: Vec<String> = Vec::new();
    match api {
        Api::Sonar => {
            if !MODELS.contains(&model) {
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
            for message in messages {
                match &message["content"] {
                    Value::String(text) => conversation.push(text.clone()),
                    Value::Array(parts) => {
                        conversation.extend(
                            parts
                                .iter()
                                .filter_map(|part| part["text"].as_str().map(str::to_owned)),
                        );
                    }
                    _ => {
                        return Err((
                            422,
                            wire::error_body(422, Some("messages[].content must be a string")),
                        ));
                    }
                }
            }
        }
        Api::Agent => {
            let invalid = |message: &str| Err((400, wire::agent_error_body(400, message)));
            if model.is_empty() && body["models"].as_array().is_none() {
                return invalid("one of model, models or preset is required");
            }
            if model.chars().nth(content::MODEL_CHARS).is_some() {
                return invalid(&format!(
                    "model: at most {} characters",
                    content::MODEL_CHARS
                ));
            }
            if let Some(preset) = body["preset"].as_str()
                && !PRESETS.contains(&preset)
            {
                return invalid(&format!("Invalid preset '{preset}'"));
            }
            if let Some(instructions) = body["instructions"].as_str() {
                conversation.push(instructions.to_owned());
            }
            match &body["input"] {
                Value::String(text) => conversation.push(text.clone()),
                Value::Array(items) => {
                    for (index, item) in items.iter().enumerate() {
                        // As the real service validates input items: `type` is required.
                        match item["type"].as_str() {
                            Some("message") => {}
                            Some("function_call" | "function_call_output") => continue,
                            Some(other) => {
                                return invalid(&format!(
                                    "input[{index}].type: unknown input item type '{other}'"
                                ));
                            }
                            None => {
                                return invalid(&format!("input[{index}].type: Field required"));
                            }
                        }
                        if !matches!(
                            item["role"].as_str(),
                            Some("user" | "assistant" | "system" | "developer")
                        ) {
                            return invalid(&format!(
                                "input[{index}].role: must be user, assistant, system or developer"
                            ));
                        }
                        match &item["content"] {
                            Value::String(text) => conversation.push(text.clone()),
                            Value::Array(parts) => conversation.extend(
                                parts
                                    .iter()
                                    .filter_map(|part| part["text"].as_str().map(str::to_owned)),
                            ),
                            _ => {
                                return invalid(&format!("input[{index}].content: Field required"));
                            }
                        }
                    }
                }
                _ => return invalid("input: Field required"),
            }
        }
        Api::Cancel => {}
        Api::Search => match &body["query"] {
            Value::String(query) => conversation.push(query.clone()),
            Value::Array(queries) => conversation.extend(
                queries
                    .iter()
                    .filter_map(|query| query.as_str().map(str::to_owned)),
            ),
            _ => return Err((422, wire::error_body(422, Some("query is required")))),
        },
    }
    let parts: Vec<&str> = conversation.iter().map(String::as_str).collect();
    let answer = content::answer(
        model,
        &parts,
        pace.answer_words,
        &Filters::from_request(body),
    );
    let max_tokens = body["max_tokens"]
        .as_u64()
        .or(body["max_output_tokens"].as_u64())
        .map(|tokens| tokens as usize);
    let prompt_tokens: u64 = parts.iter().map(|part| content::token_count(part)).sum();
    let conversation_hash = content::stable_hash(&[&body.to_string()]);
    let id = match api {
        Api::Agent => format!("resp_{conversation_hash:016x}"),
        _ => format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            conversation_hash >> 32,
            conversation_hash & 0xFFFF,
            conversation_hash & 0xFFFF_FFFF_FFFF
        ),
    };
    // The searches are the question, cut short as a search box would (every Agent stream
    // repeats them).
    let queries = parts
        .last()
        .map(|last| content::clip(last, content::QUERY_CHARS))
        .map(|last| vec![last.to_owned(), format!("{last} latest research")])
        .unwrap_or_default();
    Ok(Prepared {
        answer,
        asked: Asked {
            model: model.to_owned(),
            max_tokens,
            related_questions: body["return_related_questions"] == Value::Bool(true),
            images: body["return_images"] == Value::Bool(true),
            prompt_tokens,
            legacy_object: false,
        },
        id,
        conversation_hash,
        queries,
    })
}
