//! The transport: one HTTP request per attempt, with its deadlines and its status mapped to
//! the core error; and the live stream of one attempt.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chat_core::{ChatEvent, Error, TimeoutPhase};
use http_body_util::{BodyDataStream, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use resilience::ApiKey;
use sse_parse::{EventStream, Item, Limits};

use crate::decode::{Decoder, Feed};
use crate::{Proxy, Timeouts, wire};

pub(crate) type HttpClient = Client<HttpsConnector<ProxyConnector>, Full<Bytes>>;

/// A client with connection reuse, rustls with the webpki roots (and `extra_roots`, DER
/// certificates to trust besides), HTTP/2 by ALPN and HTTP/1.1, through a proxy when one is
/// configured.
pub(crate) fn http_client(
    connect_timeout: Duration,
    proxy: &Proxy,
    extra_roots: &[Vec<u8>],
) -> Result<HttpClient, Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let connector = ProxyConnector {
        direct: http,
        matcher: Arc::new(proxy_matcher(proxy)?),
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for certificate in extra_roots {
        roots
            .add(rustls::pki_types::CertificateDer::from(certificate.clone()))
            .map_err(|error| {
                Error::config(format!("a root certificate cannot be used: {error}"))
            })?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::config(format!("TLS: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The builder offers HTTP/2 and HTTP/1.1 by ALPN, as enabled below.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https))
}

/// The proxy rules: hyper-util's matcher (curl's rules for the variables and `NO_PROXY`).
fn proxy_matcher(proxy: &Proxy) -> Result<Matcher, Error> {
    let from_url = |url: &str, no_proxy: &str| -> Result<Matcher, Error> {
        let parsed: Uri = url
            .trim()
            .parse()
            .map_err(|_| Error::config("the proxy is not a URL (http://host:port)"))?;
        if parsed.host().is_none() || !matches!(parsed.scheme_str(), Some("http") | None) {
            return Err(Error::config(
                "the proxy must be an http:// URL with a host (http://host:port)",
            ));
        }
        Ok(Matcher::builder()
            .all(url.trim().to_owned())
            .no(no_proxy.to_owned())
            .build())
    };
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
    };
    match proxy {
        Proxy::Direct => Ok(Matcher::builder().build()),
        Proxy::Url { url, no_proxy } => from_url(url, no_proxy),
        // In the official server's order, for every destination.
        _ => {
            let url = [
                "PERPLEXITY_PROXY",
                "HTTPS_PROXY",
                "https_proxy",
                "HTTP_PROXY",
                "http_proxy",
                "ALL_PROXY",
                "all_proxy",
            ]
            .into_iter()
            // Under CGI, HTTP_PROXY comes from a request's `Proxy:` header ("httpoxy"): as
            // curl does, it is not trusted there.
            .filter(|name| *name != "HTTP_PROXY" || std::env::var_os("REQUEST_METHOD").is_none())
            .find_map(env);
            match url {
                Some(url) => from_url(
                    &url,
                    &env("NO_PROXY")
                        .or_else(|| env("no_proxy"))
                        .unwrap_or_default(),
                ),
                None => Ok(Matcher::builder().build()),
            }
        }
    }
}

/// Connects directly, or through a CONNECT tunnel when the proxy rules say so; TLS (for
/// `https://`) then runs end to end inside the tunnel.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    direct: HttpConnector,
    matcher: Arc<Matcher>,
}

type Connecting = Pin<
    Box<
        dyn std::future::Future<
                Output = Result<
                    TokioIo<tokio::net::TcpStream>,
                    Box<dyn std::error::Error + Send + Sync>,
                >,
            > + Send,
    >,
>;

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Connecting;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.direct.poll_ready(context).map_err(Into::into)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        match self.matcher.intercept(&destination) {
            Some(intercept) => {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), self.direct.clone());
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move {
                    let mut tunnel = tunnel;
                    std::future::poll_fn(|context| tunnel.poll_ready(context)).await?;
                    Ok(tunnel.call(destination).await?)
                })
            }
            None => {
                let connecting = self.direct.call(destination);
                Box::pin(async move { Ok(connecting.await?) })
            }
        }
    }
}

/// Checks a base URL: `https://`, or `http://` to loopback (or anywhere, when allowed).
pub(crate) fn check_base_url(base_url: &str, allow_insecure_http: bool) -> Result<String, Error> {
    let trimmed = base_url.trim().trim_end_matches('/');
    let uri: Uri = trimmed
        .parse()
        .map_err(|_| Error::config(format!("the base URL {trimmed:?} is not a URL")))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") => {
            let loopback = host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback && !allow_insecure_http {
                return Err(Error::config(format!(
                    "plain http to {host} would send the API key unencrypted; use https, or allow plain http explicitly"
                )));
            }
        }
        _ => {
            return Err(Error::config(format!(
                "the base URL {trimmed:?} must start with https://"
            )));
        }
    }
    Ok(trimmed.to_owned())
}

/// Sends `request` and returns the response once its headers arrive with a 2xx status; any
/// other answer is its error. Called only through `Endpoint::send`, which redacts what comes
/// back.
pub(crate) async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    stream: bool,
    timeouts: &Timeouts,
) -> Result<Response<Incoming>, Error> {
    let started = tokio::time::Instant::now();
    let response = match tokio::time::timeout(timeouts.headers, client.request(request)).await {
        Err(_) => return Err(Error::timeout(TimeoutPhase::Headers)),
        Ok(Err(error)) => return Err(transport_error(error)),
        Ok(Ok(response)) => response,
    };
    tracing::info!(
        status = response.status().as_u16(),
        headers_ms = started.elapsed().as_millis() as u64,
        "response headers"
    );
    if response.status().is_success() {
        return Ok(response);
    }
    Err(refusal(response, stream, timeouts).await)
}

/// Whether `response` is an event stream (by its content type).
pub(crate) fn is_event_stream(response: &Response<Incoming>) -> bool {
    response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"))
}

/// The request (a POST of a JSON body, or a GET) to `path`, its key in a sensitive header.
pub(crate) fn request(
    method: hyper::Method,
    base_url: &str,
    path: &str,
    body: Bytes,
    key: &ApiKey,
    stream: bool,
) -> Result<Request<Full<Bytes>>, Error> {
    let mut bearer = format!("Bearer {}", key.expose());
    let authorization = HeaderValue::try_from(bearer.as_str());
    // Our copy of the header text is wiped (hyper keeps its own, marked sensitive below).
    zeroize::Zeroize::zeroize(&mut bearer);
    let mut authorization = authorization
        .map_err(|_| Error::config("an API key holds characters a header cannot carry"))?;
    // Kept out of HTTP/2 header compression tables and of hyper's debug output.
    authorization.set_sensitive(true);
    let accept = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(format!("{base_url}{path}"))
        .header(AUTHORIZATION, authorization);
    if method == hyper::Method::POST {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    builder
        .header(ACCEPT, accept)
        .header(
            USER_AGENT,
            concat!("pplx-stream/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|error| Error::config(format!("cannot build the request: {error}")))
}

/// The error a non-2xx response stands for: its status, the server's words from a bounded
/// read of its body (within the idle deadline), its retry hints, or, for a stream request
/// refused for its `stream` parameter, [`Error::not_streaming`] (it can still be answered
/// without streaming).
async fn refusal(response: Response<Incoming>, stream: bool, timeouts: &Timeouts) -> Error {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let retry_after = resilience::parse_retry_after(
        header("retry-after-ms").as_deref(),
        header("retry-after").as_deref(),
        SystemTime::now(),
    );
    // The server's own verdict on retrying wins over every status rule, as in the SDKs.
    let should_retry = match header("x-should-retry").as_deref().map(str::trim) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let content_type = header("content-type").unwrap_or_default();
    let body = Limited::new(response.into_body(), 64 << 10).collect();
    let body = match tokio::time::timeout(timeouts.idle, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    };
    let mut message = wire::error_message(status, &content_type, &body);
    let param = wire::error_param(&body);
    // The field a refusal names is what to change: said even when the message does not.
    if let Some(param) = param.as_deref().filter(|param| !message.contains(*param)) {
        message = format!("{message} (field {})", wire::short(param));
    }
    let about_stream = matches!(status, 400 | 422)
        && stream
        && param
            .as_deref()
            .is_some_and(|param| param.starts_with("stream"));
    if about_stream {
        return Error::not_streaming(Some(status), message);
    }
    Error::status(status, message)
        .with_retry_after(retry_after)
        .with_should_retry(should_retry)
        .with_param(param)
}

/// A transport failure: a connect timeout, another connect failure, or a broken connection.
fn transport_error(error: hyper_util::client::legacy::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return Error::timeout(TimeoutPhase::Connect);
        }
        source = cause.source();
    }
    if error.is_connect() {
        Error::connect(error)
    } else {
        Error::incomplete("the connection broke before the response").with_source(error)
    }
}

/// Takes every configured key out of an error's message: a server's words are quoted, and a
/// gateway may echo the key it was sent.
#[derive(Clone)]
pub(crate) struct Redactor(Arc<[ApiKey]>);

impl Redactor {
    pub(crate) fn new(keys: Vec<ApiKey>) -> Self {
        Redactor(keys.into())
    }

    pub(crate) fn apply(&self, error: Error) -> Error {
        error.redacted(self.0.iter().map(ApiKey::expose))
    }
}

/// Where a stream records the Agent API run it belongs to (its id, and the key that started
/// it), so that an abandoned run can be cancelled.
pub(crate) type RunSlot = Arc<parking_lot::Mutex<Option<(String, ApiKey)>>>;

/// The stream of one attempt: SSE events decoded into `ChatEvent`s, with the first-event and
/// idle deadlines.
pub(crate) struct Live {
    events: EventStream<BodyDataStream<Incoming>>,
    decoder: Decoder,
    pending: VecDeque<ChatEvent>,
    seen_event: bool,
    timeouts: Timeouts,
    started: tokio::time::Instant,
    events_seen: u64,
    /// Where to record the run's id, with the key that started it (Agent API).
    run: Option<(RunSlot, ApiKey)>,
    /// The whole call's deadline, checked by the same timer as the event deadlines (one
    /// timer per event, not two).
    total: Option<tokio::time::Instant>,
    /// The server's words reach the caller without a key in them.
    redactor: Redactor,
}

impl Live {
    /// The events of `response`, read by `feed`; `bounds` are the largest event and the
    /// largest answer, in bytes.
    pub(crate) fn new(
        response: Response<Incoming>,
        feed: Box<dyn Feed>,
        timeouts: Timeouts,
        bounds: (usize, usize),
        run: Option<(RunSlot, ApiKey)>,
        redactor: Redactor,
    ) -> Self {
        let (max_event_bytes, max_answer_bytes) = bounds;
        let limits = Limits::new(max_event_bytes, max_event_bytes);
        Live {
            events: EventStream::with_limits(BodyDataStream::new(response.into_body()), limits),
            decoder: Decoder::bounded(feed, max_answer_bytes),
            pending: VecDeque::new(),
            seen_event: false,
            timeouts,
            started: tokio::time::Instant::now(),
            events_seen: 0,
            run,
            total: None,
            redactor,
        }
    }

    /// Goes on reading the same answer from `response`, a background run's events again
    /// after a break: the decoder keeps the answer so far, drops what it already applied and
    /// refuses a gap; the first-event deadline applies again.
    pub(crate) fn resume(&mut self, response: Response<Incoming>, max_event_bytes: usize) {
        let limits = Limits::new(max_event_bytes, max_event_bytes);
        self.events = EventStream::with_limits(BodyDataStream::new(response.into_body()), limits);
        self.pending.clear();
        self.seen_event = false;
        self.started = tokio::time::Instant::now();
        self.decoder.resuming();
    }

    /// Where a resumed stream must continue, and the run it belongs to: `None` when the
    /// stream cannot be resumed (no numbered event yet, no run id, or a resumed stream that
    /// did not continue the run).
    pub(crate) fn resume_point(&self) -> Option<(String, u64)> {
        if !self.decoder.resumable() {
            return None;
        }
        Some((
            self.decoder.response_id()?.to_owned(),
            self.decoder.cursor()?,
        ))
    }

    /// Ends the stream with a `Total` timeout at `deadline`.
    pub(crate) fn set_total_deadline(&mut self, deadline: tokio::time::Instant) {
        self.total = Some(deadline);
    }

    /// The usage known so far (for an interruption's error).
    pub(crate) fn usage(&self) -> Option<chat_core::Usage> {
        self.decoder.usage()
    }

    /// SSE events received.
    pub(crate) fn events_seen(&self) -> u64 {
        self.events_seen
    }

    /// Reads what is left of the body after the final event (a `[DONE]` marker, an empty
    /// last chunk, the end of the response) in the background, so that the connection goes
    /// back to the pool for the next request instead of being closed. A server that keeps
    /// sending gets a second and a few more events, then the connection is closed.
    ///
    /// The task is returned, so a caller that reads on past `Done` can wait for it.
    pub(crate) fn release(self) -> Option<tokio::task::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut events = self.events;
        Some(runtime.spawn(async move {
            let rest = async {
                for _ in 0..16 {
                    let next = std::future::poll_fn(|context| {
                        futures_core::Stream::poll_next(Pin::new(&mut events), context)
                    });
                    match next.await {
                        Some(Ok(_)) => {}
                        // The end (the connection is reusable), or a broken body (it is not).
                        None | Some(Err(_)) => return,
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), rest).await;
        }))
    }

    /// The next event; `None` after `Done`. An error the server's events report is
    /// redacted: a server's message may echo the key.
    pub(crate) async fn next(&mut self) -> Result<Option<ChatEvent>, Error> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if self.decoder.is_done() {
                return Ok(None);
            }
            let (deadline, phase) = if self.seen_event {
                (self.timeouts.idle, TimeoutPhase::Idle)
            } else {
                (self.timeouts.first_event, TimeoutPhase::FirstEvent)
            };
            let next = std::future::poll_fn(|context| {
                futures_core::Stream::poll_next(Pin::new(&mut self.events), context)
            });
            let event_deadline = resilience::backoff::later(tokio::time::Instant::now(), deadline);
            let (until, phase) = match self.total {
                Some(total) if total <= event_deadline => (total, TimeoutPhase::Total),
                _ => (event_deadline, phase),
            };
            let item = match tokio::time::timeout_at(until, next).await {
                Err(_) => return Err(Error::timeout(phase)),
                Ok(None) => {
                    return Err(Error::incomplete("the stream ended before its final event"));
                }
                Ok(Some(Err(error))) if error.is_body() => {
                    return Err(
                        Error::incomplete("the connection broke mid-stream").with_source(error)
                    );
                }
                Ok(Some(Err(error))) => {
                    return Err(Error::protocol(format!("broken event stream: {error}")));
                }
                Ok(Some(Ok(item))) => item,
            };
            let Item::Event(event) = item else { continue };
            if !self.seen_event {
                self.seen_event = true;
                tracing::info!(
                    first_event_ms = self.started.elapsed().as_millis() as u64,
                    "first event"
                );
            }
            self.events_seen += 1;
            // Where the server's text enters the stream (every other error here is ours).
            self.decoder
                .feed_bytes(event.event_type(), event.data(), &mut self.pending)
                .map_err(|error| self.redactor.apply(error))?;
            if let (Some((slot, key)), Some(id)) = (&self.run, self.decoder.response_id()) {
                let mut run = slot.lock();
                if run.as_ref().is_none_or(|(known, _)| known != id) {
                    *run = Some((id.to_owned(), key.clone()));
                }
            }
        }
    }
}

/// The TLS crypto provider: *ring*'s. rustls 0.23.48 deprecates it for want of post-quantum
/// key exchange (X25519MLKEM768, which the aws-lc-rs provider has); aws-lc-rs would add a
/// C library's build to every fresh build, so *ring* stays, by choice, until rustls offers a
/// post-quantum group on it.
#[allow(
    deprecated,
    reason = "ring is chosen deliberately; see the doc comment (deprecated since rustls 0.23.48)"
)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
