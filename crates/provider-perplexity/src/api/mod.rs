//! The APIs, one module each behind one small seam ([`Protocol`]): where a chat request goes,
//! the body it sends, the decoder of its stream and the reader of its whole response. This
//! file is the only place that matches on [`Api`]; a change to the Agent API touches
//! `agent.rs`, a change to Sonar `sonar.rs`, and the Search API (no chat) is `search.rs`.

use std::borrow::Cow;

use chat_core::{ChatRequest, ChatResponse, Error, Role};
use serde_json::{Map, Value};

use crate::PerplexityConfig;
use crate::decode::Feed;

pub(crate) mod agent;
pub(crate) mod models;
pub(crate) mod search;
pub(crate) mod sonar;
pub(crate) mod translate;

/// Which Perplexity API answers. The Agent API, unless chat completions are asked for:
/// Perplexity retired its Sonar chat completions on 2026-09-27, and Sonar model names are
/// answered on the Agent API by the migration guide's mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Api {
    /// Chat completions (`POST /chat/completions`): what any OpenAI-compatible endpoint
    /// speaks (vLLM, Ollama, OpenRouter), and Sonar where an account still has it.
    Sonar = 0,
    /// The Agent API (`POST /v1/agent`, Responses-style events): the default.
    #[default]
    Agent = 1,
}

/// What one API is on the wire. Implemented by a unit type per API; reached through
/// [`Api::protocol`].
pub(crate) trait Protocol: Sync {
    /// Where its chat requests go, under the base URL.
    fn path(&self) -> &'static str;
    /// Its own fields of a request body for `model` (the caller's raw options and `stream`
    /// are added after them, by [`request_body`]).
    fn fields(&self, request: &ChatRequest, model: &str, stream: bool) -> Map<String, Value>;
    /// The caller's raw options as this API reads them (merged over [`fields`]), or why
    /// they cannot be sent; as given, unless the API says otherwise.
    ///
    /// [`fields`]: Protocol::fields
    fn options<'request>(
        &self,
        request: &'request ChatRequest,
        model: &str,
    ) -> Result<Cow<'request, Map<String, Value>>, Error> {
        let _ = model;
        Ok(Cow::Borrowed(&request.options))
    }
    /// A decoder for one stream of its events.
    fn decoder(&self) -> Box<dyn Feed>;
    /// A whole (non-streaming) response body, read.
    fn response(&self, body: &str) -> Result<ChatResponse, Error>;
    /// What would be refused anyway, said before anything is sent (and paid for).
    fn refuses(
        &self,
        request: &ChatRequest,
        model: &str,
        config: &PerplexityConfig,
    ) -> Option<Error> {
        let _ = (request, model, config);
        None
    }
    /// Its long-running work for `model`, if it has any there: for a stream (`streaming`),
    /// a run whose events can be read again after a break; for a whole answer, work created
    /// and polled to its end.
    fn long_running(
        &self,
        model: &str,
        streaming: bool,
        config: &PerplexityConfig,
    ) -> Option<&'static dyn LongRunning> {
        let _ = (model, streaming, config);
        None
    }
}

/// Work the server keeps going on its own (the Agent API's background runs, Sonar's async
/// jobs): created, then read until it ends, so that a minutes-long answer survives proxies
/// that cut held requests. Reached through [`Protocol::long_running`].
pub(crate) trait LongRunning: Sync {
    /// The create's path and body for `request` to `model`, not streamed (`stream`: a stream
    /// that can be read again).
    fn create(&self, request: &ChatRequest, model: &str, stream: bool) -> (&'static str, Vec<u8>);
    /// Whether the create's `error` says the endpoint does not do this work: it is asked
    /// plainly from then on.
    fn refused_by(&self, error: &Error) -> bool;
    /// A body's id for the work and whether it is still going; an unreadable body is not
    /// going (its reader says why).
    fn state(&self, body: &[u8]) -> (String, bool);
    /// Where the work is read (its state, or its answer once ended).
    fn read_path(&self, id: &str) -> String;
    /// Where its events are read again after event `cursor`, for work that streams.
    fn resume_path(&self, id: &str, cursor: u64) -> Option<String> {
        let _ = (id, cursor);
        None
    }
    /// Where it is cancelled, if it can be.
    fn cancel_path(&self, id: &str) -> Option<String>;
    /// The answer of a body whose work has ended.
    fn answer(&self, body: &[u8]) -> Result<ChatResponse, Error>;
}

impl Api {
    /// Every API, in the order of [`Api::index`].
    pub(crate) const ALL: [Api; 2] = [Api::Sonar, Api::Agent];

    /// What this API is on the wire.
    pub(crate) fn protocol(self) -> &'static dyn Protocol {
        match self {
            Api::Sonar => &sonar::Sonar,
            Api::Agent => &agent::Agent,
        }
    }

    /// Its position in [`Api::ALL`] (for per-API state).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// `sonar` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Sonar => "sonar",
            Api::Agent => "agent",
        }
    }

    /// `sonar` or `agent` (also `chat`, for chat completions on any compatible endpoint).
    ///
    /// # Errors
    /// A config error naming the choices.
    pub fn parse(name: &str) -> Result<Api, Error> {
        match name.trim() {
            "sonar" => Ok(Api::Sonar),
            "agent" => Ok(Api::Agent),
            other => Err(Error::config(format!(
                "unknown API {other:?}: use agent (the Agent API, the default) or sonar (chat completions)"
            ))),
        }
    }
}

/// The request body for `api`, streaming or not: the API's fields, then the caller's raw
/// options (which win), then `stream`. `tools` is the one field both write: the options'
/// tools (`web_search`, `fetch_url`, ...) come first, then the request's functions.
/// Options the API cannot take were refused before sending ([`Protocol::refuses`]); should
/// they reach here, they are left out.
pub(crate) fn request_body(api: Api, request: &ChatRequest, model: &str, stream: bool) -> Vec<u8> {
    let protocol = api.protocol();
    let mut body = protocol.fields(request, model, stream);
    let options = protocol.options(request, model).unwrap_or_default();
    for (name, value) in options.iter() {
        match (name.as_str(), value, body.get_mut(name)) {
            ("tools", Value::Array(tools), Some(Value::Array(functions))) => {
                let mut merged = tools.clone();
                merged.append(functions);
                *functions = merged;
            }
            _ => {
                body.insert(name.clone(), value.clone());
            }
        }
    }
    body.insert("stream".into(), stream.into());
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

/// A complete response from `api`'s non-streaming body.
pub(crate) fn full_response(api: Api, body: &[u8]) -> Result<ChatResponse, Error> {
    let text =
        std::str::from_utf8(body).map_err(|_| Error::protocol("the response is not UTF-8"))?;
    api.protocol().response(text)
}

/// An `event: error` frame's error: the Agent API's `ErrorInfo` (by its code table), or an
/// OpenAI-style error: with a numeric HTTP code, that status; without one, the kind its code
/// or type names (a server failure when neither is known), reported in band with no status
/// made up for it.
pub(crate) fn stream_error(data: &str) -> Error {
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    if value["type"] == "error" || value["error"]["code"].is_string() {
        // The error inside `error`, or (a bare Responses-style `error` event) at the top.
        let error = if value["error"].is_object() {
            &value["error"]
        } else {
            &value
        };
        let error = serde_json::from_value::<agent::ErrorInfo>(error.clone()).ok();
        return agent::failure(error, value["message"].as_str());
    }
    let message = value["error"]["message"]
        .as_str()
        .unwrap_or("the server reported an error mid-stream")
        .to_owned();
    let status = value["error"]["code"]
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| *code >= 400);
    match status {
        Some(status) => Error::status(status, message),
        None => {
            let kind = agent::code_kind(value["error"]["type"].as_str())
                .unwrap_or(chat_core::ErrorKind::Server);
            Error::reported(kind, message)
        }
    }
}

/// A message role as both APIs write it.
pub(crate) fn role(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Assistant => "assistant",
        _ => "user",
    }
}

/// An unbounded decoder of `api`'s stream, for tests.
#[cfg(test)]
pub(crate) fn decoder(api: Api) -> crate::decode::Decoder {
    crate::decode::Decoder::bounded(api.protocol().decoder(), usize::MAX)
}

/// The tool loop both APIs' body tests send: the weather tool offered, the model's call to it
/// replayed, and its result.
#[cfg(test)]
pub(crate) fn tool_loop_request(model: &str) -> ChatRequest {
    let mut request = ChatRequest::new(model, "Weather in Paris?");
    request.tools.push(chat_core::Tool::function(
        "get_weather",
        "The weather in a city",
        serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    ));
    let asked = chat_core::ToolCall {
        id: "call_1".into(),
        name: "get_weather".into(),
        arguments: r#"{"city":"Paris"}"#.into(),
    };
    request
        .messages
        .push(chat_core::Message::tool_calls(vec![asked]));
    request
        .messages
        .push(chat_core::Message::tool_result("call_1", r#"{"temp":18}"#));
    request
}

/// A question with an inline PNG, an image by URL and an inline PDF named `report.pdf`.
#[cfg(test)]
pub(crate) fn attachments_request(model: &str) -> ChatRequest {
    use chat_core::Attachment;
    let question = chat_core::Message::user("What do these show?")
        .with_attachment(Attachment::from_bytes("image/png", b"\x89PNG"))
        .with_attachment(Attachment::image_url("https://img.example/cat.jpg"))
        .with_attachment(
            Attachment::from_bytes("application/pdf", b"%PDF-1.7").with_name("report.pdf"),
        );
    ChatRequest {
        model: model.into(),
        messages: vec![question],
        ..ChatRequest::default()
    }
}
