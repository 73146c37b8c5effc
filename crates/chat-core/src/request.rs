use serde::{Deserialize, Serialize};

use crate::Attachment;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person asking.
    User,
    /// The model's earlier answers.
    Assistant,
    /// A function's result, answering one of the model's tool calls.
    Tool,
}

/// One message of a conversation.
///
/// Besides text, a user message may carry images and files ([`Message::with_attachment`]),
/// an assistant turn the tool calls it made ([`Message::tool_calls`]), and a [`Role::Tool`]
/// message answers one of them ([`Message::tool_result`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says (for a tool result: the function's output).
    pub content: String,
    /// The calls an assistant turn made, replayed to the model with their results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the [`ToolCall::id`] it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Images and files sent with the text (user messages), in order after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

impl Message {
    /// A message from `role` saying `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            attachments: Vec::new(),
        }
    }

    /// The same message with `attachment` after its text and earlier attachments.
    pub fn with_attachment(mut self, attachment: Attachment) -> Self {
        self.attachments.push(attachment);
        self
    }

    /// How many bytes it adds to a request: its text, attachments and replayed calls.
    pub fn request_bytes(&self) -> usize {
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|call| call.id.len() + call.name.len() + call.arguments.len())
            .sum();
        let attachments: usize = self.attachments.iter().map(Attachment::request_bytes).sum();
        self.content.len() + calls + attachments
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::new(Role::Assistant, content)
    }

    /// The assistant turn that asked for `calls` (as [`ChatEvent::ToolCall`]s or
    /// [`ChatResponse::tool_calls`] gave them), replayed before their results.
    ///
    /// [`ChatEvent::ToolCall`]: crate::ChatEvent::ToolCall
    /// [`ChatResponse::tool_calls`]: crate::ChatResponse::tool_calls
    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        Message {
            tool_calls: calls,
            ..Message::new(Role::Assistant, "")
        }
    }

    /// The result of the call `call_id` (its [`ToolCall::id`]): the function's `output`,
    /// usually JSON text.
    pub fn tool_result(call_id: impl Into<String>, output: impl Into<String>) -> Self {
        Message {
            tool_call_id: Some(call_id.into()),
            ..Message::new(Role::Tool, output)
        }
    }
}

/// A function the model may call: its name, what it does, and a JSON Schema of its
/// parameters.
///
/// ```
/// use chat_core::{ChatRequest, Tool};
/// use serde_json::json;
///
/// let mut request = ChatRequest::new("openai/gpt-5-mini", "Weather in Paris?");
/// request.tools.push(Tool::function(
///     "get_weather",
///     "The current weather in a city",
///     json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
/// ));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tool {
    /// The function's name, as the model will call it.
    pub name: String,
    /// What it does, for the model to decide when to call it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A JSON Schema of its arguments (an object schema).
    pub parameters: serde_json::Value,
}

impl Tool {
    /// A function tool.
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: serde_json::Value,
    ) -> Self {
        Tool {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }
}

/// One call the model made to a [`Tool`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id; its result names it ([`Message::tool_result`]).
    pub id: String,
    /// The function called.
    pub name: String,
    /// The arguments, as the JSON text the model sent (not checked: it may not parse, and
    /// the caller decides what to do then).
    pub arguments: String,
}

/// Sampling parameters; `None` leaves the provider's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Randomness, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Sample among the k likeliest tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// The longest answer, in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Penalty for tokens already present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Penalty by token frequency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
}

/// A chat request, whatever the provider.
///
/// Provider-specific options live in [`options`](ChatRequest::options) as JSON fields merged
/// into the provider's request body: provider crates offer typed builders that write them,
/// and callers may add fields no crate models yet. Keeping them as JSON keeps the request
/// `Clone`, comparable and hashable for caches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model, or an alias the provider resolves.
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Sampling parameters.
    #[serde(default)]
    pub sampling: Sampling,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Provider options, merged into the request body as top-level fields.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// How a cache in front of the provider treats this request (providers ignore it).
    #[serde(skip)]
    pub cache: CacheMode,
}

/// How a response cache treats one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheMode {
    /// Answer from the cache when it can; store complete answers.
    #[default]
    Use,
    /// Neither read nor write the cache.
    Bypass,
    /// Do not read the cache, but store the fresh answer.
    Refresh,
}

impl ChatRequest {
    /// A request for `model` with one user message.
    pub fn new(model: impl Into<String>, question: impl Into<String>) -> Self {
        ChatRequest {
            model: model.into(),
            messages: vec![Message::user(question)],
            ..ChatRequest::default()
        }
    }

    /// Adds a provider option (a top-level field of the request body).
    pub fn with_option(
        mut self,
        name: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.options.insert(name.into(), value.into());
        self
    }
}
