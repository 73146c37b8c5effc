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

use crate::io::Connection;
use crate::log::Ending;
use crate::log::InFlight;
use crate::log::LogEntry;
use crate::server::Shared;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Sonar,
    Agent,
    Search,
    /// `POST /v1/agent/{id}/cancel`.
    Cancel,
    /// `GET /v1/responses/{id}` (with `stream=true&starting_after=N`: the run's events again).
    Retrieve,
    /// `POST /async/chat/completions`: a Sonar request as an async job.
    AsyncCreate,
    /// `GET /async/chat/completions/{id}`: the job as it stands.
    AsyncGet,
    /// `GET /async/chat/completions`: the jobs kept.
    AsyncList,
}

/// The run id of a cancel path (`/v1/agent/{id}/cancel`, also under `/v1/responses`).
pub(crate) fn cancel_id(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/v1/agent/")
        .or_else(|| path.strip_prefix("/v1/responses/"))?;
    let id = rest.strip_suffix("/cancel")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<SimBody>, io::Error> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let api =
        match (request.method().as_str(), path.as_str()) {
            ("GET", "/health") => {
                return Ok(json_response(
                    200,
                    &serde_json::json!({"status": "ok"}),
                    &[],
                ));
            }
            // The request log, for checks from another process (key indexes, never keys).
            ("GET", "/_sim/log") => {
                let entries: Vec<Value> = shared.log.lock()
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
                return Ok(json_response(200, &Value::Array(entries), &[]));
            }
            // Counters for checks from another process.
            ("GET", "/_sim/stats") => {
                let connections = shared
                    .connections
                    .load(std::sync::atomic::Ordering::Relaxed);
                return Ok(json_response(
                    200,
                    &serde_json::json!({"connections": connections}),
                    &[],
                ));
            }
            ("POST", "/chat/completions" | "/v1/sonar" | "/v1/chat/completions") => Api::Sonar,
            ("POST", "/v1/agent" | "/v1/responses" | "/responses") => Api::Agent,
            ("POST", cancel) if cancel_id(cancel).is_some() => Api::Cancel,
            ("GET", run) if crate::runs::retrieve(run, &query).is_some() => Api::Retrieve,
            ("POST", "/search" | "/v1/search") => Api::Search,
            // A generic OpenAI-compatible endpoint has no async jobs.
            _ if shared.compatible => {
                return Ok(json_response(404, &wire::error_body(404, None), &[]));
            }
            ("POST", "/async/chat/completions") => Api::AsyncCreate,
            ("GET", "/async/chat/completions") => Api::AsyncList,
            ("GET", job) if crate::runs::job_id(job).is_some() => Api::AsyncGet,
            _ => return Ok(json_response(404, &wire::error_body(404, None), &[])),
        };
    let mut guard = InFlight::new(shared.clone());
    let token = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let key_index = shared.keys.iter().position(|key| *key == token);
    let body = match http_body_util::Limited::new(request.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(json_response(
                413,
                &wire::error_body(400, Some("request body too large")),
                &[],
            ));
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let model = parsed
        .as_ref()
        // An async job's model is that of the request it carries.
        .map(|body| match api {
            Api::AsyncCreate => &body["request"],
            _ => body,
        })
        // As the SDK documents: an effort takes precedence over the deprecated preset.
        .and_then(|body| {
            body["model"]
                .as_str()
                .or(body["effort"].as_str())
                .or(body["preset"].as_str())
        })
        .unwrap_or_default()
        .to_owned();
    // The log keeps a name as long as one can be (a longer one is refused below).
    let logged_model = crate::content::clip(&model, crate::content::MODEL_CHARS).to_owned();
    let stream = parsed
        .as_ref()
        .is_some_and(|body| body["stream"] == Value::Bool(true));
    let log_index = shared.log.lock().push(|sequence| LogEntry {
        sequence,
        at: shared.started.elapsed(),
        key_index,
        endpoint: path.clone(),
        model: logged_model,
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
    let finish = |status: u16, events: usize, ending: Ending| {
        if let Some(entry) = shared.log.lock().get_mut(log_index) {
            entry.status = status;
            entry.events_sent = events;
            entry.ending = ending;
        }
    };
    // `Fault::lost_reply`: what was asked for was started; the reply is dropped.
    let lose_reply = |started: &str| {
        finish(0, 0, Ending::DroppedBeforeHeaders);
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("scripted lost reply: {started} was started"),
        )
    };

    if !shared.keys.is_empty() && key_index.is_none() {
        finish(401, 0, Ending::ErrorStatus);
        return Ok(error_response(401, None, &[]));
    }
    if api == Api::Cancel {
        finish(200, 0, Ending::Complete);
        let id = cancel_id(&path).unwrap_or_default();
        shared.runs.lock().forget(id);
        return Ok(json_response(200, &wire::agent_cancelled(id), &[]));
    }
    let fault = shared.script.lock().next(key_index);
    let pace = *shared.pace.lock();
    if let Some(delay) = fault.delay_headers {
        tokio::time::sleep(delay).await;
    }
    if fault.drop_before_headers {
        finish(0, 0, Ending::DroppedBeforeHeaders);
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "scripted drop before headers",
        ));
    }
    if let Some(status) = fault.status {
        finish(status, 0, Ending::ErrorStatus);
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
    if api == Api::Retrieve {
        let (id, after, stream) = crate::runs::retrieve(&path, &query).unwrap_or_default();
        let Some(run) = shared.runs.lock().get(&id) else {
            finish(404, 0, Ending::ErrorStatus);
            let body =
                wire::agent_error_body(404, "Response not found: it expired or was cancelled");
            return Ok(json_response(404, &body, &fault.headers));
        };
        if !stream {
            // How the run ended: the response object its last event carries.
            finish(200, 0, Ending::Complete);
            let last: Value = run
                .frames
                .last()
                .and_then(|frame| serde_json::from_str(&frame.data).ok())
                .unwrap_or_default();
            return Ok(json_response(200, &last["response"], &fault.headers));
        }
        // Event n is at index n - 1; a scripted gap skips the one that should come next.
        let skip = after
            .unwrap_or(0)
            .saturating_add(usize::from(fault.resume_gap));
        let frames: Vec<wire::Frame> = run.frames.iter().skip(skip).cloned().collect();
        return Ok(stream_response(
            shared.clone(),
            connection,
            log_index,
            fault,
            pace,
            api,
            run.model.clone(),
            conversation_key(&id, skip),
            guard,
            move || frames,
        ));
    }
    match api {
        Api::AsyncGet => {
            let id = crate::runs::job_id(&path).unwrap_or_default();
            let Some(job) = shared.jobs.lock().read(id) else {
                finish(404, 0, Ending::ErrorStatus);
                return Ok(json_response(
                    404,
                    &wire::error_body(404, Some("Request not found")),
                    &fault.headers,
                ));
            };
            finish(200, 0, Ending::Complete);
            return Ok(json_response(200, &job.body(), &fault.headers));
        }
        Api::AsyncList => {
            finish(200, 0, Ending::Complete);
            let requests = shared.jobs.lock().list();
            let body = serde_json::json!({"requests": requests, "next_token": null});
            return Ok(json_response(200, &body, &fault.headers));
        }
        _ => {}
    }
    let Some(body) = parsed else {
        finish(422, 0, Ending::ErrorStatus);
        return Ok(json_response(
            422,
            &wire::error_body(422, Some("Invalid JSON body")),
            &[],
        ));
    };
    let (api, body, idempotency_key) = match api {
        Api::AsyncCreate => match async_request(body) {
            Ok(unwrapped) => unwrapped,
            Err(message) => {
                finish(400, 0, Ending::ErrorStatus);
                return Ok(json_response(
                    400,
                    &wire::error_body(400, Some(&message)),
                    &[],
                ));
            }
        },
        _ => (api, body, None),
    };
    let prepared = match prepare(api, &body, &model, pace, shared.compatible) {
        Ok(prepared) => prepared,
        Err((status, error)) => {
            finish(status, 0, Ending::ErrorStatus);
            return Ok(json_response(status, &error, &[]));
        }
    };
    if !pace.first_byte.is_zero() {
        tokio::time::sleep(pace.first_byte).await;
    }
    let Prepared {
        answer,
        asked,
        id,
        conversation_hash,
        queries,
    } = prepared;
    if api == Api::Search {
        let max_results = body["max_results"].as_u64().unwrap_or(10).clamp(1, 20) as usize;
        finish(200, 0, Ending::Complete);
        return Ok(json_response(
            200,
            &wire::search_body(&id, &answer, max_results),
            &fault.headers,
        ));
    }
    if let Some(idempotency_key) = idempotency_key {
        let completion = wire::sonar_body(&id, &answer, &asked);
        let (_, job) = shared.jobs.lock().create(
            key_index,
            idempotency_key.as_deref(),
            &id,
            &model,
            completion,
        );
        if fault.lost_reply {
            return Err(lose_reply("the job"));
        }
        finish(200, 0, Ending::Complete);
        return Ok(json_response(200, &job.body(), &fault.headers));
    }
    let background = api == Api::Agent && body["background"] == Value::Bool(true);
    // A background run: its events are kept, under an id of its own, to be read again.
    let keep_run = |asked: &Asked| {
        let id = shared.runs.lock().next_id(&id);
        let frames = wire::agent_stream(&id, &answer, asked, pace.chunk_chars, &queries);
        shared.runs.lock().start(
            id.clone(),
            crate::runs::Run {
                model: model.clone(),
                frames: frames.clone(),
            },
        );
        (id, frames)
    };
    if !stream && background {
        // Started without a stream: the answer is the run, still in progress (read it with
        // GET /v1/responses/{id}).
        let (id, _) = keep_run(&asked);
        if fault.lost_reply {
            return Err(lose_reply("the run"));
        }
        finish(200, 0, Ending::Complete);
        let value = wire::agent_response(&id, &answer, &asked, "in_progress");
        return Ok(json_response(200, &value, &fault.headers));
    }
    if !stream {
        let value = match api {
            Api::Agent => wire::agent_response(&id, &answer, &asked, "completed"),
            _ => wire::sonar_body(&id, &answer, &asked),
        };
        finish(200, 0, Ending::Complete);
        return Ok(json_response(200, &value, &fault.headers));
    }
    let asked = Asked {
        legacy_object: fault.legacy_object,
        ..asked
    };
    if background {
        let (id, frames) = keep_run(&asked);
        return Ok(stream_response(
            shared.clone(),
            connection,
            log_index,
            fault,
            pace,
            api,
            model,
            conversation_key(&id, 0),
            guard,
            move || frames,
        ));
    }
    // Built by the writer, and only when the firehose cache does not have it already.
    let frame_id = id.clone();
    let frames = move || match api {
        Api::Agent => wire::agent_stream(&frame_id, &answer, &asked, pace.chunk_chars, &queries),
        _ => wire::sonar_stream(&frame_id, &answer, &asked, pace.chunk_chars),
    };
    Ok(stream_response(
        shared.clone(),
        connection,
        log_index,
        fault,
        pace,
        api,
        model,
        conversation_hash,
        guard,
        frames,
    ))
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

/// A streamed response whose frames a [`Writer`] sends, with the fault applied.
#[allow(clippy::too_many_arguments)]
fn stream_response(
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    log_index: usize,
    fault: crate::fault::Fault,
    pace: crate::config::Pace,
    api: Api,
    model: String,
    cache_key: u64,
    guard: InFlight,
    frames: impl FnOnce() -> Vec<wire::Frame> + Send + 'static,
) -> Response<SimBody> {
    let (sender, receiver) = mpsc::channel(16);
    let writer = Writer {
        shared,
        connection,
        log_index,
        fault,
        pace,
        api,
        model,
        cache_key,
        _guard: guard,
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
