//! What every answer tells an operator, by the OpenTelemetry GenAI semantic conventions:
//! one span per answer, `chat {model}` of kind client, whose fields `tracing-opentelemetry`
//! turns into attributes (`gen_ai.*`, `server.*`, `error.type`, and ours, `pplx.*`); child
//! spans `execute_tool web_search` / `fetch_url` where the Agent API reports its steps; and,
//! with the `otel` feature, the GenAI client metrics through the `opentelemetry` API's
//! global meter, which records nothing until a program installs a meter provider.
//!
//! Never a key; message content only when [`PerplexityConfig::capture_message_content`]
//! asks (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`).
//!
//! [`PerplexityConfig::capture_message_content`]: crate::PerplexityConfig::capture_message_content

use std::time::Duration;

use chat_core::{ChatEvent, ChatRequest, ChatResponse, ChatStream, Error};
use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::field::Empty;

/// One answer under observation: its span, its clock, and what the metrics are labelled
/// with.
pub(crate) struct Observed {
    span: tracing::Span,
    started: Instant,
    first_chunk: Option<Duration>,
    #[cfg(feature = "otel")]
    labels: Labels,
    capture: bool,
    finished: bool,
}

/// The attributes every metric of an answer carries (kept for the metrics only).
#[cfg(feature = "otel")]
#[derive(Clone)]
pub(crate) struct Labels {
    pub(crate) request_model: String,
    pub(crate) server_address: String,
    pub(crate) server_port: u16,
}

/// The host and port of `base_url` (the scheme's port when it names none).
pub(crate) fn server(base_url: &str) -> (String, u16) {
    let Ok(uri) = base_url.parse::<hyper::Uri>() else {
        return (String::new(), 0);
    };
    let default_port = if uri.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    (
        uri.host().unwrap_or_default().to_owned(),
        uri.port_u16().unwrap_or(default_port),
    )
}

/// The request's messages as the conventions' `gen_ai.input.messages` (JSON).
fn input_messages(request: &ChatRequest) -> String {
    let messages: Vec<serde_json::Value> = request
        .messages
        .iter()
        .map(|message| {
            serde_json::json!({
                "role": message.role,
                "parts": [{"type": "text", "content": message.content}],
            })
        })
        .collect();
    serde_json::Value::Array(messages).to_string()
}

impl Observed {
    /// Starts observing an answer to `request` (its model as asked) from `server`.
    pub(crate) fn start(request: &ChatRequest, server: &(String, u16), capture: bool) -> Observed {
        let span = tracing::info_span!(
            "chat",
            otel.name = %format_args!("chat {}", request.model),
            otel.kind = "client",
            otel.status_code = Empty,
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = "perplexity",
            gen_ai.request.model = %request.model,
            gen_ai.response.model = Empty,
            gen_ai.response.id = Empty,
            gen_ai.response.finish_reasons = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            gen_ai.input.messages = Empty,
            gen_ai.output.messages = Empty,
            server.address = %server.0,
            server.port = server.1,
            error.type = Empty,
            pplx.attempts = Empty,
            pplx.key_rotations = Empty,
            pplx.resumes = Empty,
            pplx.fallback = Empty,
            pplx.cost_usd = Empty,
        );
        if capture && !span.is_disabled() {
            span.record("gen_ai.input.messages", input_messages(request));
        }
        Observed {
            span,
            started: Instant::now(),
            first_chunk: None,
            #[cfg(feature = "otel")]
            labels: Labels {
                request_model: request.model.clone(),
                server_address: server.0.clone(),
                server_port: server.1,
            },
            capture,
            finished: false,
        }
    }

    /// The answer's span: what runs under it is its child.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Notes the first chunk of a stream's answer (the first event that carries any).
    fn chunk(&mut self) {
        if self.first_chunk.is_none() {
            self.first_chunk = Some(self.started.elapsed());
        }
    }

    /// Records how the answer ended on its span and in the metrics.
    pub(crate) fn finish(mut self, answered: Result<&ChatResponse, &Error>) {
        self.record(answered);
    }

    fn record(&mut self, answered: Result<&ChatResponse, &Error>) {
        if self.finished {
            return;
        }
        self.finished = true;
        #[cfg(feature = "otel")]
        let duration = self.started.elapsed();
        let span = &self.span;
        match answered {
            Ok(response) => {
                if !span.is_disabled() {
                    span.record("gen_ai.response.model", response.model.as_str());
                    span.record("gen_ai.response.id", response.id.as_str());
                    finish_reasons(span, response.finish_reason.as_str());
                    if let Some(usage) = &response.usage {
                        span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
                        span.record("gen_ai.usage.output_tokens", usage.completion_tokens);
                        if let Some(cost) = &usage.cost {
                            span.record("pplx.cost_usd", cost.total_cost);
                        }
                    }
                    span.record("pplx.attempts", response.attempts);
                    span.record("pplx.key_rotations", response.key_rotations);
                    span.record("pplx.resumes", response.resumed);
                    span.record("pplx.fallback", response.passed_over.len());
                    if self.capture {
                        let output = serde_json::json!([{
                            "role": "assistant",
                            "parts": [{"type": "text", "content": response.text}],
                            "finish_reason": response.finish_reason.as_str(),
                        }]);
                        span.record("gen_ai.output.messages", output.to_string());
                    }
                }
                #[cfg(feature = "otel")]
                metrics::answered(&self.labels, duration, self.first_chunk, response);
            }
            Err(error) => {
                if !span.is_disabled() {
                    span.record("error.type", error.kind().as_str());
                    span.record("otel.status_code", "ERROR");
                    if let Some(cost) = error.partial_usage().and_then(|usage| usage.cost.as_ref())
                    {
                        span.record("pplx.cost_usd", cost.total_cost);
                    }
                }
                #[cfg(feature = "otel")]
                metrics::failed(&self.labels, duration, self.first_chunk, error);
            }
        }
    }
}

/// `gen_ai.response.finish_reasons`, a string array by the conventions: set as one on the
/// exported span (feature `otel`; a `tracing` field cannot hold an array), else recorded as
/// the one reason.
fn finish_reasons(span: &tracing::Span, reason: &str) {
    #[cfg(feature = "otel")]
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        span.set_attribute(
            "gen_ai.response.finish_reasons",
            opentelemetry::Value::Array(opentelemetry::Array::String(vec![
                reason.to_owned().into(),
            ])),
        );
    }
    #[cfg(not(feature = "otel"))]
    span.record("gen_ai.response.finish_reasons", reason);
}

impl Drop for Observed {
    /// An answer abandoned before its end (the caller dropped it) is a cancelled one.
    fn drop(&mut self) {
        if !self.finished {
            self.record(Err(&Error::cancelled()));
        }
    }
}

/// `answer` observed: run under the answer's span, its first chunk timed, its end recorded
/// (a `Done`, an error, or the caller letting it go).
pub(crate) fn observed(mut observed: Observed, answer: ChatStream) -> ChatStream {
    let answer = tracing_futures::Instrument::instrument(answer, observed.span().clone());
    Box::pin(async_stream::stream! {
        let mut answer = Box::pin(answer);
        while let Some(item) = answer.next().await {
            match &item {
                Ok(ChatEvent::Done(response)) => observed.record(Ok(response)),
                Ok(ChatEvent::TextDelta(_) | ChatEvent::ReasoningDelta(_) | ChatEvent::ToolCall(_)) => {
                    observed.chunk();
                }
                Ok(_) => {}
                Err(error) => observed.record(Err(error)),
            }
            yield item;
        }
    })
}

/// A tool step the Agent API reports (a web search, a URL fetch), as a child span of the
/// answer's from its queries to its results: `execute_tool {name}`.
pub(crate) fn tool_step(name: &'static str) -> tracing::Span {
    tracing::info_span!(
        "execute_tool",
        otel.name = %format_args!("execute_tool {name}"),
        otel.kind = "internal",
        gen_ai.operation.name = "execute_tool",
        gen_ai.provider.name = "perplexity",
        gen_ai.tool.name = name,
        gen_ai.tool.type = "extension",
    )
}

/// The GenAI client metrics and ours, through the global meter (feature `otel`).
#[cfg(feature = "otel")]
pub(crate) mod metrics {
    use std::sync::OnceLock;
    use std::time::Duration;

    use chat_core::{ChatResponse, Error};
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::{Counter, Histogram};

    use super::Labels;

    /// The conventions' advised buckets for durations in seconds.
    const SECONDS: [f64; 14] = [
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ];
    /// The conventions' advised buckets for token counts.
    const TOKENS: [f64; 14] = [
        1.0,
        4.0,
        16.0,
        64.0,
        256.0,
        1_024.0,
        4_096.0,
        16_384.0,
        65_536.0,
        262_144.0,
        1_048_576.0,
        4_194_304.0,
        16_777_216.0,
        67_108_864.0,
    ];

    struct Instruments {
        duration: Histogram<f64>,
        tokens: Histogram<u64>,
        first_chunk: Histogram<f64>,
        cost: Counter<f64>,
        resumes: Counter<u64>,
        fallbacks: Counter<u64>,
        key_rotations: Counter<u64>,
    }

    fn instruments() -> &'static Instruments {
        static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
        INSTRUMENTS.get_or_init(|| {
            let scope = opentelemetry::InstrumentationScope::builder("pplx-provider-perplexity")
                .with_version(env!("CARGO_PKG_VERSION"))
                .with_schema_url("https://opentelemetry.io/schemas/1.37.0")
                .build();
            let meter = opentelemetry::global::meter_with_scope(scope);
            Instruments {
                duration: meter
                    .f64_histogram("gen_ai.client.operation.duration")
                    .with_unit("s")
                    .with_description("GenAI operation duration")
                    .with_boundaries(SECONDS.to_vec())
                    .build(),
                tokens: meter
                    .u64_histogram("gen_ai.client.token.usage")
                    .with_unit("{token}")
                    .with_description("Number of input and output tokens used")
                    .with_boundaries(TOKENS.to_vec())
                    .build(),
                first_chunk: meter
                    .f64_histogram("gen_ai.client.operation.time_to_first_chunk")
                    .with_unit("s")
                    .with_description("Time to receive the first chunk of a streamed answer")
                    .with_boundaries(SECONDS.to_vec())
                    .build(),
                cost: meter
                    .f64_counter("pplx.client.cost")
                    .with_unit("USD")
                    .with_description("What Perplexity reported the answers cost")
                    .build(),
                resumes: meter
                    .u64_counter("pplx.client.resumes")
                    .with_unit("{resume}")
                    .with_description("Broken streams read again from where they broke")
                    .build(),
                fallbacks: meter
                    .u64_counter("pplx.client.fallbacks")
                    .with_unit("{model}")
                    .with_description("Models passed over for the next of a fallback chain")
                    .build(),
                key_rotations: meter
                    .u64_counter("pplx.client.key_rotations")
                    .with_unit("{rotation}")
                    .with_description(
                        "Requests sent with another key after a rate limit, a refused key or an exhausted quota (the key cools down)",
                    )
                    .build(),
            }
        })
    }

    fn attributes(labels: &Labels) -> Vec<KeyValue> {
        vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "perplexity"),
            KeyValue::new("gen_ai.request.model", labels.request_model.clone()),
            KeyValue::new("server.address", labels.server_address.clone()),
            KeyValue::new("server.port", i64::from(labels.server_port)),
        ]
    }

    pub(super) fn answered(
        labels: &Labels,
        duration: Duration,
        first_chunk: Option<Duration>,
        response: &ChatResponse,
    ) {
        let instruments = instruments();
        let mut attributes = attributes(labels);
        attributes.push(KeyValue::new(
            "gen_ai.response.model",
            response.model.clone(),
        ));
        timed(instruments, &attributes, duration, first_chunk);
        if let Some(usage) = &response.usage {
            for (kind, count) in [
                ("input", usage.prompt_tokens),
                ("output", usage.completion_tokens),
            ] {
                let mut typed = attributes.clone();
                typed.push(KeyValue::new("gen_ai.token.type", kind));
                instruments.tokens.record(count, &typed);
            }
            if let Some(cost) = &usage.cost {
                counted(&instruments.cost, cost.total_cost, &attributes);
            }
        }
        instruments
            .resumes
            .add(u64::from(response.resumed), &attributes);
        instruments
            .fallbacks
            .add(response.passed_over.len() as u64, &attributes);
        instruments
            .key_rotations
            .add(u64::from(response.key_rotations), &attributes);
    }

    pub(super) fn failed(
        labels: &Labels,
        duration: Duration,
        first_chunk: Option<Duration>,
        error: &Error,
    ) {
        let instruments = instruments();
        let mut attributes = attributes(labels);
        attributes.push(KeyValue::new("error.type", error.kind().as_str()));
        timed(instruments, &attributes, duration, first_chunk);
        if let Some(cost) = error.partial_usage().and_then(|usage| usage.cost.as_ref()) {
            counted(&instruments.cost, cost.total_cost, &attributes);
        }
    }

    /// The answer's duration, and its time to the first chunk when it streamed one.
    fn timed(
        instruments: &Instruments,
        attributes: &[KeyValue],
        duration: Duration,
        first_chunk: Option<Duration>,
    ) {
        instruments
            .duration
            .record(duration.as_secs_f64(), attributes);
        if let Some(first_chunk) = first_chunk {
            instruments
                .first_chunk
                .record(first_chunk.as_secs_f64(), attributes);
        }
    }

    /// Registers `pplx.client.key_cooldowns`: how many times the provider's keys were cooled
    /// down (rate limited, or out of credits or quota), read at each collection while the
    /// provider lives.
    pub(crate) fn watch_keys(endpoint: &std::sync::Arc<crate::endpoint::Endpoint>) {
        let watched = std::sync::Arc::downgrade(endpoint);
        let attributes = vec![
            KeyValue::new("gen_ai.provider.name", "perplexity"),
            KeyValue::new("server.address", endpoint.server.0.clone()),
            KeyValue::new("server.port", i64::from(endpoint.server.1)),
        ];
        let scope = opentelemetry::InstrumentationScope::builder("pplx-provider-perplexity")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let _registered = opentelemetry::global::meter_with_scope(scope)
            .u64_observable_counter("pplx.client.key_cooldowns")
            .with_unit("{cooldown}")
            .with_description(
                "Times a key was cooled down: rate limited, or out of credits or quota",
            )
            .with_callback(move |observer| {
                if let Some(endpoint) = watched.upgrade() {
                    let cooldowns = endpoint
                        .keys()
                        .stats()
                        .iter()
                        .map(|key| key.cooldowns)
                        .sum();
                    observer.observe(cooldowns, &attributes);
                }
            })
            .build();
    }

    /// A reported cost, counted only when it is a finite amount of zero or more (a counter
    /// never goes down, and a server's number is not trusted).
    fn counted(counter: &Counter<f64>, usd: f64, attributes: &[KeyValue]) {
        if usd.is_finite() && usd >= 0.0 {
            counter.add(usd.min(1e6), attributes);
        }
    }
}
