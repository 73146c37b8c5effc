//! The HTTP server: routing, auth, faults, the streaming writer and the request log.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame as HttpFrame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::content::{self, Answer, Filters};
use crate::fault::{Fault, Script, Target};
use crate::io::{Connection, DROP_MARKER, FaultIo};
use crate::wire::{self, Asked, Frame};

/// The Sonar models the real service accepts.
pub const MODELS: &[&str] = &[
    "sonar",
    "sonar-pro",
    "sonar-reasoning-pro",
    "sonar-deep-research",
];
/// The Agent API presets: the current names (`fast`, `medium`, `high`, as the official MCP
/// server uses them) and the older ones.
pub const PRESETS: &[&str] = &[
    "fast",
    "medium",
    "high",
    "fast-search",
    "pro-search",
    "deep-research",
];

/// Whether a model or preset runs deep research (minutes, mostly quiet, before its answer).
pub fn is_research(model: &str) -> bool {
    matches!(model, "sonar-deep-research" | "deep-research" | "high")
}

/// How fast answers come, and how long they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pace {
    /// Wait before the response headers (the search phase of a real request).
    pub first_byte: Duration,
    /// Characters of text per chunk.
    pub chunk_chars: usize,
    /// Wait between chunks.
    pub chunk_delay: Duration,
    /// Words in an answer.
    pub answer_words: usize,
    /// Benchmark mode: chunks serialised once per distinct request and written in 16 KiB
    /// batches, with no delays (faults still apply).
    pub firehose: bool,
    /// Deep research's silence: after its first event, a research model (see
    /// [`is_research`]) sends only `: keep-alive` comments for this long (minutes on the real
    /// service; scaled down here).
    pub research_quiet: Duration,
}

impl Pace {
    /// No waiting at all: for tests.
    pub fn instant() -> Self {
        Pace {
            first_byte: Duration::ZERO,
            chunk_chars: 12,
            chunk_delay: Duration::ZERO,
            answer_words: 60,
            firehose: false,
            research_quiet: Duration::ZERO,
        }
    }

    /// About the real service's feel: 400 ms to the first byte, then 12 characters every 25 ms
    /// (and deep research quiet for 3 s, not minutes).
    pub fn realistic() -> Self {
        Pace {
            first_byte: Duration::from_millis(400),
            chunk_delay: Duration::from_millis(25),
            answer_words: 120,
            research_quiet: Duration::from_secs(3),
            ..Pace::instant()
        }
    }

    /// The benchmark load source: long answers as fast as the socket takes them.
    pub fn firehose(answer_words: usize) -> Self {
        Pace {
            answer_words,
            firehose: true,
            ..Pace::instant()
        }
    }
}

impl Default for Pace {
    fn default() -> Self {
        Pace::instant()
    }
}

/// How a request ended, as the simulator saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// Still being answered.
    InProgress,
    /// The whole answer was sent.
    Complete,
    /// An error status was sent (scripted, or for a bad request or key).
    ErrorStatus,
    /// The connection was closed before any response.
    DroppedBeforeHeaders,
    /// The connection was closed mid-stream, as scripted.
    Dropped,
    /// The stream went silent, as scripted, until the client left.
    Stalled,
    /// An error event ended the stream, as scripted.
    ErrorEvent,
    /// The client went away before the end.
    ClientGone,
}

/// One request, as the simulator logged it. Holds the key's index, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogEntry {
    /// Arrival order, from 0.
    pub sequence: usize,
    /// Arrival time since the simulator started.
    pub at: Duration,
    /// The configured key used, if it was one of them.
    pub key_index: Option<usize>,
    /// The path requested.
    pub endpoint: String,
    /// The model or preset asked for.
    pub model: String,
    /// Whether a stream was asked for.
    pub stream: bool,
    /// The status sent (0 when none was).
    pub status: u16,
    /// Answer events sent.
    pub events_sent: usize,
    /// How it ended.
    pub ending: Ending,
    /// When the first answer event was handed to the connection, since the simulator started
    /// (see [`Simulator::started_at`]).
    pub first_event_at: Option<Duration>,
    /// The request body as sent, when [`SimConfig::record_bodies`] is on.
    pub body: Option<String>,
}

impl fmt::Display for LogEntry {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self
            .key_index
            .map_or_else(|| "-".to_owned(), |index| index.to_string());
        write!(
            formatter,
            "#{} {:>8.3}s key={key} {} model={} stream={} status={} events={} {:?}",
            self.sequence,
            self.at.as_secs_f64(),
            self.endpoint,
            self.model,
            self.stream,
            self.status,
            self.events_sent,
            self.ending
        )
    }
}

/// What to start a [`Simulator`] with.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SimConfig {
    /// Accepted Bearer keys; empty accepts any request.
    pub keys: Vec<String>,
    /// Pace of the answers.
    pub pace: Pace,
    /// Faults scripted from the start: (target, fault, times).
    pub faults: Vec<(Target, Fault, usize)>,
    /// Keep each request's body in its log entry (for contract checks of what clients send).
    pub record_bodies: bool,
    /// Keep at most this many log entries, dropping the oldest (a long-running embedded
    /// simulator must not grow without bound); `None` keeps every one (for tests).
    pub log_capacity: Option<usize>,
}

/// The request log: entries by sequence number, the oldest dropped past the capacity.
#[derive(Debug, Default)]
struct RequestLog {
    entries: std::collections::VecDeque<LogEntry>,
    /// Entries dropped from the front so far: entry `sequence` is at `sequence - dropped`.
    dropped: usize,
    capacity: Option<usize>,
}

impl RequestLog {
    /// Adds an entry made by `make` from its sequence number; returns the number.
    fn push(&mut self, make: impl FnOnce(usize) -> LogEntry) -> usize {
        let sequence = self.dropped + self.entries.len();
        self.entries.push_back(make(sequence));
        if let Some(capacity) = self.capacity {
            while self.entries.len() > capacity.max(1) {
                self.entries.pop_front();
                self.dropped += 1;
            }
        }
        sequence
    }

    /// The entry `sequence`, unless it was dropped.
    fn get_mut(&mut self, sequence: usize) -> Option<&mut LogEntry> {
        self.entries.get_mut(sequence.checked_sub(self.dropped)?)
    }

    fn entries(&mut self) -> &[LogEntry] {
        self.entries.make_contiguous()
    }
}

struct Shared {
    keys: Vec<String>,
    record_bodies: bool,
    /// Bumped on every new log entry, so tests can wait for a request without polling.
    logged: watch::Sender<usize>,
    pace: Mutex<Pace>,
    script: Mutex<Script>,
    log: Mutex<RequestLog>,
    started: Instant,
    in_flight: watch::Sender<usize>,
    firehose: Mutex<HashMap<u64, Firehose>>,
    shutdown: watch::Receiver<bool>,
}

/// A firehose stream, serialised once: its 16 KiB batches and its number of events.
type Firehose = (Arc<Vec<Bytes>>, usize);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running simulator on loopback. Dropping it stops it.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Simulator")
            .field("addr", &self.addr)
            .field("keys", &self.shared.keys.len())
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Starts on `127.0.0.1` at a free port.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(config: SimConfig) -> io::Result<Simulator> {
        Simulator::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts on `addr`.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn bind(addr: SocketAddr, config: SimConfig) -> io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, shutdown) = watch::channel(false);
        let mut script = Script::default();
        for (target, fault, times) in config.faults {
            script.push(target, fault, times);
        }
        let shared = Arc::new(Shared {
            keys: config.keys,
            record_bodies: config.record_bodies,
            logged: watch::channel(0).0,
            pace: Mutex::new(config.pace),
            script: Mutex::new(script),
            log: Mutex::new(RequestLog {
                capacity: config.log_capacity,
                ..RequestLog::default()
            }),
            started: Instant::now(),
            in_flight: watch::channel(0).0,
            firehose: Mutex::new(HashMap::new()),
            shutdown: shutdown.clone(),
        });
        let server = tokio::spawn(serve(listener, shared.clone(), shutdown));
        Ok(Simulator {
            addr,
            shared,
            stop,
            server: Some(server),
        })
    }

    /// When it started: the origin of [`LogEntry::at`] and [`LogEntry::first_event_at`].
    pub fn started_at(&self) -> std::time::Instant {
        self.shared.started.into_std()
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to point a client at, like `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Scripts `fault` for the next `times` requests of `target`.
    pub fn script(&self, target: Target, fault: Fault, times: usize) {
        lock(&self.shared.script).push(target, fault, times);
    }

    /// Forgets every scripted fault not yet used.
    pub fn clear_script(&self) {
        lock(&self.shared.script).clear();
    }

    /// Changes the pace of later requests.
    pub fn set_pace(&self, pace: Pace) {
        *lock(&self.shared.pace) = pace;
    }

    /// The request log so far.
    pub fn log(&self) -> Vec<LogEntry> {
        lock(&self.shared.log).entries().to_vec()
    }

    /// The request log as text, one request per line.
    pub fn log_text(&self) -> String {
        self.log()
            .iter()
            .map(|entry| format!("{entry}\n"))
            .collect()
    }

    /// Waits until the log satisfies `condition` (checked now and after each new request).
    pub async fn wait_for_log(&self, mut condition: impl FnMut(&[LogEntry]) -> bool) {
        let mut logged = self.shared.logged.subscribe();
        loop {
            if condition(lock(&self.shared.log).entries()) {
                return;
            }
            // The sender lives as long as `self`, so this cannot fail while we borrow it.
            if logged.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until no request is being answered (every log entry is final).
    pub async fn wait_idle(&self) {
        let mut in_flight = self.shared.in_flight.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = in_flight.wait_for(|count| *count == 0).await;
    }

    /// The complete answer to `model` (or preset) for the conversation's message contents
    /// (with the Agent API, the instructions first, then the input), at the current pace.
    pub fn expected_answer(&self, model: &str, conversation: &[&str]) -> Answer {
        let words = lock(&self.shared.pace).answer_words;
        content::answer(model, conversation, words, &Filters::default())
    }

    /// The exact text a client should end up with (reasoning excluded), for a request with
    /// `max_tokens` (Sonar) or `max_output_tokens` (Agent API) when given.
    pub fn expected_text(
        &self,
        model: &str,
        conversation: &[&str],
        max_tokens: Option<usize>,
    ) -> String {
        let words = lock(&self.shared.pace).answer_words;
        expected_text(model, conversation, words, max_tokens)
    }

    /// Stops accepting, closes every connection, and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The exact text a complete answer delivers for `model` (or preset) and the conversation,
/// with answers of `answer_words` words, cut at `max_tokens` when given.
pub fn expected_text(
    model: &str,
    conversation: &[&str],
    answer_words: usize,
    max_tokens: Option<usize>,
) -> String {
    wire::delivered_text(
        &content::answer(model, conversation, answer_words, &Filters::default()),
        max_tokens,
    )
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                connections.spawn(async move {
                    let connection = Arc::new(Connection::default());
                    let io = TokioIo::new(FaultIo::new(stream, connection.clone()));
                    let service = service_fn(move |request| {
                        handle(shared.clone(), connection.clone(), request)
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // Errors here are the connections a fault dropped, or clients that left.
                    let _ = builder.serve_connection(io, service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.shutdown().await;
}

/// The response body: a whole body, or a stream fed by a writer task.
pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Result<Bytes, io::Error>>),
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<HttpFrame<Bytes>, io::Error>>> {
        match self.get_mut() {
            SimBody::Full(body) => Poll::Ready(body.take().map(|body| Ok(HttpFrame::data(body)))),
            SimBody::Channel(receiver) => receiver
                .poll_recv(context)
                .map(|item| item.map(|result| result.map(HttpFrame::data))),
        }
    }
}

/// Counts a request in flight for as long as it lives; a request dropped before its log
/// entry was finished (the client left, and hyper cancelled the handler) is logged as such.
struct InFlight {
    shared: Arc<Shared>,
    log_index: Option<usize>,
}

impl InFlight {
    fn new(shared: Arc<Shared>) -> Self {
        shared.in_flight.send_modify(|count| *count += 1);
        InFlight {
            shared,
            log_index: None,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(index) = self.log_index
            && let Some(entry) = lock(&self.shared.log).get_mut(index)
            && entry.ending == Ending::InProgress
        {
            entry.ending = Ending::ClientGone;
        }
        self.shared.in_flight.send_modify(|count| *count -= 1);
    }
}

fn json_response(status: u16, body: &Value, headers: &[(String, String)]) -> Response<SimBody> {
    response(
        status,
        "application/json",
        Bytes::from(body.to_string()),
        headers,
    )
}

fn response(
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
fn error_response(
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
enum Api {
    Sonar,
    Agent,
    Search,
    /// `POST /v1/agent/{id}/cancel`.
    Cancel,
}

/// The run id of a cancel path (`/v1/agent/{id}/cancel`, also under `/v1/responses`).
fn cancel_id(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/v1/agent/")
        .or_else(|| path.strip_prefix("/v1/responses/"))?;
    let id = rest.strip_suffix("/cancel")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

async fn handle(
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<SimBody>, io::Error> {
    let path = request.uri().path().to_owned();
    let api = match (request.method().as_str(), path.as_str()) {
        ("GET", "/health") => {
            return Ok(json_response(
                200,
                &serde_json::json!({"status": "ok"}),
                &[],
            ));
        }
        // The request log, for checks from another process (key indexes, never keys).
        ("GET", "/_sim/log") => {
            let entries: Vec<Value> = lock(&shared.log)
                .entries()
                .iter()
                .map(|entry| {
                    serde_json::json!({
                        "sequence": entry.sequence, "key_index": entry.key_index,
                        "endpoint": entry.endpoint, "model": entry.model, "stream": entry.stream,
                        "status": entry.status, "ending": format!("{:?}", entry.ending),
                    })
                })
                .collect();
            return Ok(json_response(200, &Value::Array(entries), &[]));
        }
        ("POST", "/chat/completions" | "/v1/sonar" | "/v1/chat/completions") => Api::Sonar,
        ("POST", "/v1/agent" | "/v1/responses" | "/responses") => Api::Agent,
        ("POST", cancel) if cancel_id(cancel).is_some() => Api::Cancel,
        ("POST", "/search" | "/v1/search") => Api::Search,
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
    let body = match http_body_util::Limited::new(request.into_body(), 4 << 20)
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
        .and_then(|body| body["model"].as_str().or(body["preset"].as_str()))
        .unwrap_or_default()
        .to_owned();
    let stream = parsed
        .as_ref()
        .is_some_and(|body| body["stream"] == Value::Bool(true));
    let log_index = lock(&shared.log).push(|sequence| LogEntry {
        sequence,
        at: shared.started.elapsed(),
        key_index,
        endpoint: path.clone(),
        model: model.clone(),
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
        if let Some(entry) = lock(&shared.log).get_mut(log_index) {
            entry.status = status;
            entry.events_sent = events;
            entry.ending = ending;
        }
    };

    if !shared.keys.is_empty() && key_index.is_none() {
        finish(401, 0, Ending::ErrorStatus);
        return Ok(error_response(401, None, &[]));
    }
    if api == Api::Cancel {
        finish(200, 0, Ending::Complete);
        let id = cancel_id(&path).unwrap_or_default();
        return Ok(json_response(200, &wire::agent_cancelled(id), &[]));
    }
    let fault = lock(&shared.script).next(key_index);
    let pace = *lock(&shared.pace);
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
    let Some(body) = parsed else {
        finish(422, 0, Ending::ErrorStatus);
        return Ok(json_response(
            422,
            &wire::error_body(422, Some("Invalid JSON body")),
            &[],
        ));
    };
    let prepared = match prepare(api, &body, &model, pace) {
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
    // Built by the writer, and only when the firehose cache does not have it already.
    let frame_id = id.clone();
    let frames = move || match api {
        Api::Agent => wire::agent_stream(&frame_id, &answer, &asked, pace.chunk_chars, &queries),
        _ => wire::sonar_stream(&frame_id, &answer, &asked, pace.chunk_chars),
    };
    let (sender, receiver) = mpsc::channel(16);
    let writer = Writer {
        shared: shared.clone(),
        connection,
        log_index,
        fault,
        pace,
        api,
        model: model.clone(),
        cache_key: conversation_hash,
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
    Ok(response)
}

struct Prepared {
    answer: Answer,
    asked: Asked,
    id: String,
    conversation_hash: u64,
    queries: Vec<String>,
}

/// Validates a request as the real service does, and works out its answer.
fn prepare(api: Api, body: &Value, model: &str, pace: Pace) -> Result<Prepared, (u16, Value)> {
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
    let queries = parts
        .last()
        .map(|last| vec![(*last).to_owned(), format!("{last} latest research")])
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

/// Writes one stream, applying its fault, and logs how it ended.
struct Writer {
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    log_index: usize,
    fault: Fault,
    pace: Pace,
    api: Api,
    model: String,
    cache_key: u64,
    _guard: InFlight,
}

type Sender = mpsc::Sender<Result<Bytes, io::Error>>;

impl Writer {
    async fn run(self, frames: impl FnOnce() -> Vec<Frame>, sender: Sender) {
        let (events, ending) = if self.pace.firehose && self.fault == Fault::default() {
            self.firehose(frames, &sender).await
        } else {
            self.write(&frames(), &sender).await
        };
        if let Some(entry) = lock(&self.shared.log).get_mut(self.log_index) {
            entry.status = 200;
            entry.events_sent = events;
            entry.ending = ending;
        }
    }

    async fn firehose(
        &self,
        frames: impl FnOnce() -> Vec<Frame>,
        sender: &Sender,
    ) -> (usize, Ending) {
        let cache_key = self.cache_key ^ self.pace.answer_words as u64;
        let cached = lock(&self.shared.firehose).get(&cache_key).cloned();
        let (batches, events) = match cached {
            Some(cached) => cached,
            None => {
                let frames = frames();
                let mut batches = Vec::new();
                let mut batch = Vec::with_capacity(16 << 10);
                for frame in &frames {
                    batch.extend_from_slice(&frame.encode(self.fault.line_ending, false));
                    if batch.len() >= 16 << 10 {
                        batches.push(Bytes::from(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(16 << 10),
                        )));
                    }
                }
                if !batch.is_empty() {
                    batches.push(Bytes::from(batch));
                }
                let cached = (Arc::new(batches), frames.len());
                lock(&self.shared.firehose).insert(cache_key, cached.clone());
                cached
            }
        };
        self.first_event();
        for batch in batches.iter() {
            if sender.send(Ok(batch.clone())).await.is_err() {
                return (0, Ending::ClientGone);
            }
        }
        (events, Ending::Complete)
    }

    fn first_event(&self) {
        if let Some(entry) = lock(&self.shared.log).get_mut(self.log_index) {
            entry.first_event_at = Some(self.shared.started.elapsed());
        }
    }

    /// Resets the connection once everything sent so far has reached the socket.
    async fn drop_connection(&self, sender: &Sender) {
        self.connection.arm();
        let _ = sender.send(Ok(Bytes::from_static(DROP_MARKER))).await;
        // Hyper stops reading this body when the connection dies; wait for that.
        sender.closed().await;
    }

    async fn send(&self, sender: &Sender, bytes: Bytes) -> bool {
        if self.fault.one_byte_pieces {
            for index in 0..bytes.len() {
                if sender
                    .send(Ok(bytes.slice(index..index + 1)))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            true
        } else {
            sender.send(Ok(bytes)).await.is_ok()
        }
    }

    /// A quiet stretch: only `keep_alive` lines, every 50 ms, for `duration`; false when the
    /// client left.
    async fn quiet(
        &self,
        sender: &Sender,
        duration: Duration,
        keep_alive: crate::fault::KeepAlive,
    ) -> bool {
        use crate::fault::KeepAlive;
        let ending = self.fault.line_ending.as_str();
        let line = match keep_alive {
            KeepAlive::Comment => format!(": keep-alive{ending}"),
            KeepAlive::Retry => format!("retry: 3000{ending}"),
            KeepAlive::Ping => format!("data: ping{ending}{ending}"),
            KeepAlive::Nothing => String::new(),
        };
        let until = Instant::now() + duration;
        while Instant::now() < until {
            if !line.is_empty() && !self.send(sender, Bytes::from(line.clone())).await {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until.min(Instant::now() + Duration::from_millis(50))) => {}
                _ = sender.closed() => return false,
            }
        }
        true
    }

    async fn write(&self, frames: &[Frame], sender: &Sender) -> (usize, Ending) {
        let fault = &self.fault;
        let ending = fault.line_ending.as_str();
        if let Some(bytes) = fault.oversized_line {
            let line = format!("data: {}{ending}{ending}", "x".repeat(bytes));
            if !self.send(sender, Bytes::from(line)).await {
                return (0, Ending::ClientGone);
            }
        }
        // Deep research is quiet after its first event (only comments), unless a scripted
        // quiet stretch says otherwise.
        let quiet = match (fault.quiet_after_events, fault.quiet) {
            (Some(events), Some(duration)) => Some((events, duration, fault.quiet_keep_alive)),
            _ if crate::server::is_research(&self.model) && !self.pace.research_quiet.is_zero() => {
                Some((
                    1,
                    self.pace.research_quiet,
                    crate::fault::KeepAlive::Comment,
                ))
            }
            _ => None,
        };
        for (index, frame) in frames.iter().enumerate() {
            if let Some((events, duration, keep_alive)) = quiet
                && events == index
                && !self.quiet(sender, duration, keep_alive).await
            {
                return (index, Ending::ClientGone);
            }
            if fault.stall_after_events == Some(index) {
                let mut shutdown = self.shared.shutdown.clone();
                tokio::select! {
                    _ = sender.closed() => {}
                    _ = shutdown.wait_for(|stopped| *stopped) => {}
                }
                return (index, Ending::Stalled);
            }
            if fault.drop_after_events == Some(index) {
                self.drop_connection(sender).await;
                return (index, Ending::Dropped);
            }
            if fault.error_event_after == Some(index) {
                let error = match self.api {
                    Api::Agent => wire::agent_failed_frame(index + 1),
                    _ => wire::sonar_error_frame(),
                };
                self.send(sender, error.encode(fault.line_ending, false))
                    .await;
                return (index, Ending::ErrorEvent);
            }
            let encoded = frame.encode(fault.line_ending, fault.malformed_event == Some(index));
            if fault.drop_mid_event == Some(index) {
                self.send(sender, encoded.slice(..encoded.len() / 2)).await;
                self.drop_connection(sender).await;
                return (index, Ending::Dropped);
            }
            if index > 0 && !self.pace.chunk_delay.is_zero() {
                tokio::time::sleep(self.pace.chunk_delay).await;
            }
            if index == 0 {
                self.first_event();
            }
            if fault.keep_alive
                && !self
                    .send(sender, Bytes::from(format!(": keep-alive{ending}{ending}")))
                    .await
            {
                return (index, Ending::ClientGone);
            }
            if fault.ping_data
                && !self
                    .send(sender, Bytes::from(format!("data: ping{ending}{ending}")))
                    .await
            {
                return (index, Ending::ClientGone);
            }
            if !self.send(sender, encoded).await {
                return (index, Ending::ClientGone);
            }
        }
        if fault.done_marker
            && !self
                .send(sender, Bytes::from(format!("data: [DONE]{ending}{ending}")))
                .await
        {
            return (frames.len(), Ending::ClientGone);
        }
        (frames.len(), Ending::Complete)
    }
}
