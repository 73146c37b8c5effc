//! Routing, auth and the response builders: one request in (routed, authenticated, checked
//! by `validate.rs`, logged), its response (or a streaming writer) out.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::api::Api;
use crate::config::Pace;
use crate::fault::Fault;
use crate::io::Connection;
use crate::log::Ending;
use crate::log::LogEntry;
use crate::state::InFlight;
use crate::state::Shared;
use crate::validate::Prepared;
use crate::validate::prepare;
use crate::wire::{self, Asked};
use crate::writer::SimBody;
use crate::writer::Writer;

/// The largest request body taken: above what a client sends with an inline 50 MB image
/// (its base64 and the JSON around it), so `pplx --attach` works offline as online.
const MAX_REQUEST_BODY: usize = 96 << 20;

pub(crate) fn json_response(
    status: u16,
    body: &Value,
    headers: &[(String, String)],
) -> Response<SimBody> {
    response(
        status,
        "application/json",
        Bytes::from(body.to_string()),
        headers,
    )
}

pub(crate) fn response(
    status: u16,
    content_type: &str,
    body: Bytes,
    headers: &[(String, String)],
) -> Response<SimBody> {
    let mut response = Response::new(SimBody::Full(Some(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// The real service's response for an error `status`.
pub(crate) fn error_response(
    status: u16,
    body: Option<&str>,
    headers: &[(String, String)],
) -> Response<SimBody> {
    match (status, body) {
        (_, Some(body)) => {
            let content_type = if body.trim_start().starts_with('{') {
                "application/json"
            } else {
                "text/plain"
            };
            response(status, content_type, Bytes::from(body.to_owned()), headers)
        }
        (401, None) => response(
            401,
            "text/html",
            Bytes::from_static(wire::UNAUTHORIZED_PAGE.as_bytes()),
            headers,
        ),
        (status, None) => json_response(status, &wire::error_body(status, None), headers),
    }
}

/// The run id of a cancel path (`/v1/agent/{id}/cancel`, also under `/v1/responses`).
pub(crate) fn cancel_id(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/v1/agent/")
        .or_else(|| path.strip_prefix("/v1/responses/"))?;
    let id = rest.strip_suffix("/cancel")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// One request: routed, read and logged ([`Exchange::open`]), authenticated, given its
/// scripted fault, then answered by its endpoint's handler.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<SimBody>, io::Error> {
    let api = match route(&shared, &request) {
        Ok(api) => api,
        Err(response) => return Ok(*response),
    };
    let exchange = match Exchange::open(shared, connection, request, api).await {
        Ok(exchange) => exchange,
        Err(response) => return Ok(response),
    };
    if !exchange.shared.keys.is_empty() && exchange.key_index.is_none() {
        exchange.finish(401, 0, Ending::ErrorStatus);
        return Ok(error_response(401, None, &[]));
    }
    if api == Api::Cancel {
        return Ok(exchange.cancel());
    }
    let fault = exchange.shared.script.lock().next(exchange.key_index);
    let pace = *exchange.shared.pace.lock();
    if let Some(delay) = fault.delay_headers {
        tokio::time::sleep(delay).await;
    }
    if fault.drop_before_headers {
        exchange.finish(0, 0, Ending::DroppedBeforeHeaders);
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "scripted drop before headers",
        ));
    }
    if let Some(status) = fault.status {
        exchange.finish(status, 0, Ending::ErrorStatus);
        if api == Api::Agent && fault.body.is_none() && status != 401 {
            let body = wire::agent_error_body(status, "the agent request failed");
            return Ok(json_response(status, &body, &fault.headers));
        }
        return Ok(error_response(
            status,
            fault.body.as_deref(),
            &fault.headers,
        ));
    }
    match api {
        Api::Retrieve => Ok(exchange.retrieve(fault, pace)),
        Api::AsyncGet => Ok(exchange.job(&fault)),
        Api::AsyncList => Ok(exchange.jobs(&fault)),
        _ => exchange.answer(api, fault, pace).await,
    }
}

/// The endpoint `request` asks for, or the response of one answered at once (health, the
/// simulator's own log and figures, a 404).
fn route(shared: &Shared, request: &Request<Incoming>) -> Result<Api, Box<Response<SimBody>>> {
    let path = request.uri().path();
    let query = request.uri().query().unwrap_or_default();
    let not_found = || Box::new(json_response(404, &wire::error_body(404, None), &[]));
    match (request.method().as_str(), path) {
        ("GET", "/health") => Err(Box::new(json_response(
            200,
            &serde_json::json!({"status": "ok"}),
            &[],
        ))),
        // The request log, for checks from another process (key indexes, never keys).
        ("GET", "/_sim/log") => Err(Box::new(json_response(200, &logged(shared), &[]))),
        // Counters for checks from another process.
        ("GET", "/_sim/stats") => {
            let connections = shared
                .connections
                .load(std::sync::atomic::Ordering::Relaxed);
            Err(Box::new(json_response(
                200,
                &serde_json::json!({"connections": connections}),
                &[],
            )))
        }
        ("GET", "/v1/models" | "/models") => {
            Err(Box::new(json_response(200, &wire::model_list(), &[])))
        }
        // Perplexity retired Sonar chat completions (and their async jobs) on 2026-09-27.
        ("POST", "/chat/completions" | "/v1/sonar" | "/v1/chat/completions")
        | ("POST" | "GET", "/async/chat/completions")
            if !shared.chat_completions =>
        {
            Err(Box::new(json_response(404, &wire::retired_body(), &[])))
        }
        ("GET", job) if !shared.chat_completions && crate::runs::job_id(job).is_some() => {
            Err(Box::new(json_response(404, &wire::retired_body(), &[])))
        }
        ("POST", "/chat/completions" | "/v1/sonar" | "/v1/chat/completions") => Ok(Api::Sonar),
        ("POST", "/v1/agent" | "/v1/responses" | "/responses") => Ok(Api::Agent),
        ("POST", cancel) if cancel_id(cancel).is_some() => Ok(Api::Cancel),
        ("GET", run) if crate::runs::retrieve(run, query).is_some() => Ok(Api::Retrieve),
        ("POST", "/search" | "/v1/search") => Ok(Api::Search),
        // A generic OpenAI-compatible endpoint has no async jobs.
        _ if shared.compatible => Err(not_found()),
        ("POST", "/async/chat/completions") => Ok(Api::AsyncCreate),
        ("GET", "/async/chat/completions") => Ok(Api::AsyncList),
        ("GET", job) if crate::runs::job_id(job).is_some() => Ok(Api::AsyncGet),
        _ => Err(not_found()),
    }
}

/// The request log as `GET /_sim/log` serves it.
fn logged(shared: &Shared) -> Value {
    let entries = shared
        .log
        .lock()
        .entries()
        .iter()
        .map(|entry| {
            serde_json::json!({
                "sequence": entry.sequence, "key_index": entry.key_index,
                "endpoint": entry.endpoint, "model": entry.model, "stream": entry.stream,
                "status": entry.status, "ending": format!("{:?}", entry.ending),
                "at_us": entry.at.as_micros() as u64,
                "first_event_us": entry.first_event_at.map(|at| at.as_micros() as u64),
            })
        })
        .collect();
    Value::Array(entries)
}

/// One request being answered: what every endpoint's handler needs, and its log entry.
struct Exchange {
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    path: String,
    query: String,
    key_index: Option<usize>,
    log_index: usize,
    guard: InFlight,
    /// The model asked for (an effort, or a preset), as sent.
    model: String,
    stream: bool,
    /// The body, when it is JSON.
    parsed: Option<Value>,
}

impl Exchange {
    /// Counts the request in flight, reads its body (a 413 above the bound), and logs it.
    async fn open(
        shared: Arc<Shared>,
        connection: Arc<Connection>,
        request: Request<Incoming>,
        api: Api,
    ) -> Result<Exchange, Response<SimBody>> {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let mut guard = InFlight::new(shared.clone());
        let key_index = key_index(&shared, &request);
        let body = http_body_util::Limited::new(request.into_body(), MAX_REQUEST_BODY)
            .collect()
            .await
            .map_err(|_| {
                json_response(
                    413,
                    &wire::error_body(400, Some("request body too large")),
                    &[],
                )
            })?
            .to_bytes();
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let model = model_asked(api, parsed.as_ref());
        let stream = parsed
            .as_ref()
            .is_some_and(|body| body["stream"] == Value::Bool(true));
        let log_index = shared.log.lock().push(|sequence| LogEntry {
            sequence,
            at: shared.started.elapsed(),
            key_index,
            endpoint: path.clone(),
            // The log keeps a name as long as one can be (a longer one is refused later).
            model: crate::text::clip(&model, crate::content::MODEL_CHARS).to_owned(),
            stream,
            status: 0,
            events_sent: 0,
            ending: Ending::InProgress,
            first_event_at: None,
            body: shared
                .record_bodies
                .then(|| String::from_utf8_lossy(&body).into_owned()),
        });
        shared.logged.send_modify(|count| *count += 1);
        guard.log_index = Some(log_index);
        Ok(Exchange {
            shared,
            connection,
            path,
            query,
            key_index,
            log_index,
            guard,
            model,
            stream,
            parsed,
        })
    }

    /// The log entry's outcome.
    fn finish(&self, status: u16, events: usize, ending: Ending) {
        if let Some(entry) = self.shared.log.lock().get_mut(self.log_index) {
            entry.status = status;
            entry.events_sent = events;
            entry.ending = ending;
        }
    }

    /// `Fault::lost_reply`: what was asked for (`started`) was started; the reply is dropped.
    fn lose_reply(&self, started: &str) -> io::Error {
        self.finish(0, 0, Ending::DroppedBeforeHeaders);
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("scripted lost reply: {started} was started"),
        )
    }

    /// A JSON answer with status 200, logged as complete.
    fn complete(&self, body: &Value, fault: &Fault) -> Response<SimBody> {
        self.finish(200, 0, Ending::Complete);
        json_response(200, body, &fault.headers)
    }

    /// A JSON error `status`, logged.
    fn refuse(&self, status: u16, body: &Value, headers: &[(String, String)]) -> Response<SimBody> {
        self.finish(status, 0, Ending::ErrorStatus);
        json_response(status, body, headers)
    }

    /// `POST /v1/agent/{id}/cancel`: the run is forgotten.
    fn cancel(&self) -> Response<SimBody> {
        self.finish(200, 0, Ending::Complete);
        let id = cancel_id(&self.path).unwrap_or_default();
        self.shared.runs.lock().forget(id);
        json_response(200, &wire::agent_cancelled(id), &[])
    }

    /// `GET /v1/responses/{id}`: the run as it ended, or (with `stream=true`) its events after
    /// `starting_after`.
    fn retrieve(self, fault: Fault, pace: Pace) -> Response<SimBody> {
        let (id, after, stream) =
            crate::runs::retrieve(&self.path, &self.query).unwrap_or_default();
        let Some(run) = self.shared.runs.lock().get(&id) else {
            let body =
                wire::agent_error_body(404, "Response not found: it expired or was cancelled");
            return self.refuse(404, &body, &fault.headers);
        };
        if !stream {
            // How the run ended: the response object its last event carries.
            let last: Value = run
                .frames
                .last()
                .and_then(|frame| serde_json::from_str(&frame.data).ok())
                .unwrap_or_default();
            return self.complete(&last["response"], &fault);
        }
        // Event n is at index n - 1; a scripted gap skips the one that should come next.
        let skip = after
            .unwrap_or(0)
            .saturating_add(usize::from(fault.resume_gap));
        let frames: Vec<wire::Frame> = run.frames.iter().skip(skip).cloned().collect();
        let streamed = Streamed {
            api: Api::Retrieve,
            model: run.model.clone(),
            cache_key: conversation_key(&id, skip),
        };
        self.stream(streamed, fault, pace, move || frames)
    }

    /// `GET /async/chat/completions/{id}`: the job as it stands.
    fn job(&self, fault: &Fault) -> Response<SimBody> {
        let id = crate::runs::job_id(&self.path).unwrap_or_default();
        let Some(job) = self.shared.jobs.lock().read(id) else {
            let body = wire::error_body(404, Some("Request not found"));
            return self.refuse(404, &body, &fault.headers);
        };
        self.complete(&job.body(), fault)
    }

    /// `GET /async/chat/completions`: the jobs kept.
    fn jobs(&self, fault: &Fault) -> Response<SimBody> {
        let requests = self.shared.jobs.lock().list();
        self.complete(
            &serde_json::json!({"requests": requests, "next_token": null}),
            fault,
        )
    }

    /// A question: checked as the service checks it, then answered as a search, an async
    /// job, a background run, a whole response or a stream.
    async fn answer(
        mut self,
        api: Api,
        fault: Fault,
        pace: Pace,
    ) -> Result<Response<SimBody>, io::Error> {
        let Some(body) = self.parsed.take() else {
            let error = wire::error_body(422, Some("Invalid JSON body"));
            return Ok(self.refuse(422, &error, &[]));
        };
        let (api, body, idempotency_key) = match api {
            Api::AsyncCreate => match async_request(body) {
                Ok(unwrapped) => unwrapped,
                Err(message) => {
                    return Ok(self.refuse(400, &wire::error_body(400, Some(&message)), &[]));
                }
            },
            _ => (api, body, None),
        };
        let prepared = match prepare(api, &body, &self.model, pace, self.shared.compatible) {
            Ok(prepared) => prepared,
            Err((status, error)) => return Ok(self.refuse(status, &error, &[])),
        };
        if !pace.first_byte.is_zero() {
            tokio::time::sleep(pace.first_byte).await;
        }
        if api == Api::Search {
            let max_results = body["max_results"].as_u64().unwrap_or(10).clamp(1, 20) as usize;
            let found = wire::search_body(&prepared.id, &prepared.answer, max_results);
            return Ok(self.complete(&found, &fault));
        }
        if let Some(idempotency_key) = idempotency_key {
            return self.create_job(&prepared, idempotency_key.as_deref(), &fault);
        }
        let background = api == Api::Agent && body["background"] == Value::Bool(true);
        if !self.stream {
            return self.whole(api, &prepared, background, &fault, pace);
        }
        Ok(self.streamed(api, prepared, background, fault, pace))
    }

    /// `POST /async/chat/completions`: the job (the same one for a repeated idempotency key
    /// of the same API key).
    fn create_job(
        &self,
        prepared: &Prepared,
        idempotency_key: Option<&str>,
        fault: &Fault,
    ) -> Result<Response<SimBody>, io::Error> {
        let completion = wire::sonar_body(&prepared.id, &prepared.answer, &prepared.asked);
        let (_, job) = self.shared.jobs.lock().create(
            self.key_index,
            idempotency_key,
            &prepared.id,
            &self.model,
            completion,
        );
        if fault.lost_reply {
            return Err(self.lose_reply("the job"));
        }
        Ok(self.complete(&job.body(), fault))
    }

    /// A whole response; for a background run, the run still in progress (read it with
    /// `GET /v1/responses/{id}`).
    fn whole(
        &self,
        api: Api,
        prepared: &Prepared,
        background: bool,
        fault: &Fault,
        pace: Pace,
    ) -> Result<Response<SimBody>, io::Error> {
        let Prepared {
            answer, asked, id, ..
        } = prepared;
        if background {
            let (id, _) = self.keep_run(prepared, asked, pace);
            if fault.lost_reply {
                return Err(self.lose_reply("the run"));
            }
            let value = wire::agent_response(&id, answer, asked, "in_progress");
            return Ok(self.complete(&value, fault));
        }
        let value = match api {
            Api::Agent => wire::agent_response(id, answer, asked, "completed"),
            _ => wire::sonar_body(id, answer, asked),
        };
        Ok(self.complete(&value, fault))
    }

    /// A streamed answer; a background run's events are kept to be read again.
    fn streamed(
        self,
        api: Api,
        prepared: Prepared,
        background: bool,
        fault: Fault,
        pace: Pace,
    ) -> Response<SimBody> {
        let asked = Asked {
            legacy_object: fault.legacy_object,
            ..prepared.asked.clone()
        };
        if background {
            let (id, frames) = self.keep_run(&prepared, &asked, pace);
            let streamed = Streamed {
                api,
                model: self.model.clone(),
                cache_key: conversation_key(&id, 0),
            };
            return self.stream(streamed, fault, pace, move || frames);
        }
        let streamed = Streamed {
            api,
            model: self.model.clone(),
            cache_key: prepared.conversation_hash,
        };
        let Prepared {
            answer,
            id,
            queries,
            ..
        } = prepared;
        // Built by the writer, and only when the firehose cache does not have it already.
        let frames = move || match api {
            Api::Agent => wire::agent_stream(&id, &answer, &asked, pace.chunk_chars, &queries),
            _ => wire::sonar_stream(&id, &answer, &asked, pace.chunk_chars),
        };
        self.stream(streamed, fault, pace, frames)
    }

    /// A background run: its events kept, under an id of its own, to be read again.
    fn keep_run(
        &self,
        prepared: &Prepared,
        asked: &Asked,
        pace: Pace,
    ) -> (String, Vec<wire::Frame>) {
        let id = self.shared.runs.lock().next_id(&prepared.id);
        let frames = wire::agent_stream(
            &id,
            &prepared.answer,
            asked,
            pace.chunk_chars,
            &prepared.queries,
        );
        self.shared.runs.lock().start(
            id.clone(),
            crate::runs::Run {
                model: self.model.clone(),
                frames: frames.clone(),
            },
        );
        (id, frames)
    }

    /// A streamed response whose frames a [`Writer`] sends, with the fault applied.
    fn stream(
        self,
        streamed: Streamed,
        fault: Fault,
        pace: Pace,
        frames: impl FnOnce() -> Vec<wire::Frame> + Send + 'static,
    ) -> Response<SimBody> {
        let (sender, receiver) = mpsc::channel(16);
        let writer = Writer {
            shared: self.shared,
            connection: self.connection,
            log_index: self.log_index,
            fault,
            pace,
            api: streamed.api,
            model: streamed.model,
            cache_key: streamed.cache_key,
            _guard: self.guard,
        };
        tokio::spawn(writer.run(frames, sender));
        let mut response = Response::new(SimBody::Channel(receiver));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        response.headers_mut().insert(
            hyper::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        response
    }
}

/// What a stream's writer is told besides its frames: the API it speaks, the model, and the
/// firehose cache's key.
struct Streamed {
    api: Api,
    model: String,
    cache_key: u64,
}

/// Which of the simulator's keys the request's bearer token is, if any.
fn key_index(shared: &Shared, request: &Request<Incoming>) -> Option<usize> {
    let token = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    shared.keys.iter().position(|key| key == token)
}

/// The model a request asks for: an async job's is that of the request it carries; as the
/// SDK documents, an effort takes precedence over the deprecated preset, and (docs, "Define
/// the run") a `models` fallback chain over `model`: its first model answers here.
fn model_asked(api: Api, parsed: Option<&Value>) -> String {
    parsed
        .map(|body| match api {
            Api::AsyncCreate => &body["request"],
            _ => body,
        })
        .and_then(|body| {
            body["models"][0]
                .as_str()
                .or(body["model"].as_str())
                .or(body["effort"].as_str())
                .or(body["preset"].as_str())
        })
        .unwrap_or_default()
        .to_owned()
}

/// The Sonar request an async create carries, and its idempotency key (`Some(None)` when it
/// has none), as the SDK's `AsyncApiChatCompletionsRequestInput` has them; a job never
/// streams.
#[allow(clippy::type_complexity)]
fn async_request(mut body: Value) -> Result<(Api, Value, Option<Option<String>>), String> {
    let idempotency_key = match body.get("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) if !key.is_empty() && key.len() <= 256 => Some(key.clone()),
        Some(_) => return Err("idempotency_key: must be a string of 1 to 256 characters".into()),
    };
    let request = body["request"].take();
    if !request.is_object() {
        return Err("request: Field required".into());
    }
    if request["stream"] == Value::Bool(true) {
        return Err("request.stream: an async request does not stream".into());
    }
    Ok((Api::Sonar, request, Some(idempotency_key)))
}

/// A key for the firehose cache that no ordinary request shares.
fn conversation_key(id: &str, skip: usize) -> u64 {
    crate::content::stable_hash(&[id, &skip.to_string()])
}
