//! The model list (`GET /v1/models`, the SDK's `models.list`: `{"object": "list", "data":
//! [{"id", "object": "model", "created", "owned_by"}]}`): the slugs the Agent API takes.

use chat_core::Error;
use serde::Deserialize;

/// Where the list is read (no key needed; one is sent anyway, as for every request).
pub(crate) const PATH: &str = "/v1/models";

/// The most ids kept from one list (a hostile server could send millions).
const MAX_MODELS: usize = 10_000;

/// The longest id kept (longer ones are not model names).
const MAX_ID_CHARS: usize = 200;

/// The model ids of a list body, in its order, each once.
pub(crate) fn ids(body: &[u8]) -> Result<Vec<String>, Error> {
    #[derive(Deserialize)]
    struct List {
        #[serde(default)]
        data: Vec<Model>,
    }
    #[derive(Deserialize)]
    struct Model {
        #[serde(default)]
        id: String,
    }
    let list: List = serde_json::from_slice(body)
        .map_err(|error| Error::protocol(format!("bad model list: {error}")))?;
    let mut ids: Vec<String> = Vec::new();
    for model in list.data {
        let id = model.id.trim();
        if !id.is_empty()
            && id.chars().count() <= MAX_ID_CHARS
            && !ids.iter().any(|seen| seen == id)
        {
            ids.push(id.to_owned());
        }
        if ids.len() == MAX_MODELS {
            break;
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_read_in_order_once_each_and_junk_is_an_error() {
        let body = br#"{"object":"list","data":[{"id":"perplexity/sonar","object":"model","created":1,"owned_by":"perplexity"},{"id":"openai/gpt-5-mini"},{"id":"perplexity/sonar"},{"id":" "}]}"#;
        assert_eq!(
            super::ids(body).unwrap(),
            ["perplexity/sonar", "openai/gpt-5-mini"]
        );
        assert!(super::ids(b"<html>").is_err());
        assert!(super::ids(br#"{"object":"list"}"#).unwrap().is_empty());
    }
}
