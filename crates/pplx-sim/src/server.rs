//! The simulator's lifecycle: start, the accept loop, stop on drop (the state its requests
//! share is `state.rs`).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Pace;
use crate::config::SimConfig;
use crate::content::{self, Answer, Filters};
use crate::fault::{Fault, Script, Target};
use crate::io::{Connection, FaultIo, Socket};
use crate::log::LogEntry;
use crate::log::RequestLog;
use crate::routes::handle;
use crate::state::Shared;
use crate::wire::{self};

/// A running simulator on loopback. Dropping it stops it.
pub struct Simulator {
    pub(crate) addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) server: Option<tokio::task::JoinHandle<()>>,
    /// The self-signed certificate (DER and PEM), when serving HTTPS.
    pub(crate) certificate: Option<(Vec<u8>, String)>,
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
        let (tls, certificate) = if config.tls {
            let (acceptor, certificate) = tls_acceptor()?;
            (Some(acceptor), Some(certificate))
        } else {
            (None, None)
        };
        let addr = listener.local_addr()?;
        let (stop, shutdown) = watch::channel(false);
        let mut script = Script::default();
        for (target, fault, times) in config.faults {
            script.push(target, fault, times);
        }
        let shared = Arc::new(Shared {
            keys: config.keys,
            record_bodies: config.record_bodies,
            compatible: config.compatible,
            chat_completions: config.compatible || config.legacy_sonar,
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
            runs: Mutex::new(crate::runs::Runs::default()),
            jobs: Mutex::new(crate::runs::Jobs::default()),
            shutdown: shutdown.clone(),
            connections: AtomicUsize::new(0),
            tls,
        });
        let server = tokio::spawn(serve(listener, shared.clone(), shutdown));
        Ok(Simulator {
            addr,
            shared,
            stop,
            server: Some(server),
            certificate,
        })
    }

    /// Connections accepted so far (a client that reuses its connections opens one).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The certificate it serves HTTPS with (DER), for a client to trust; `None` over plain
    /// HTTP.
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.certificate.as_ref().map(|(der, _)| der.as_slice())
    }

    /// The same certificate as PEM, for clients that read a file (Python's `ssl`, curl).
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate.as_ref().map(|(_, pem)| pem.as_str())
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
        let scheme = if self.certificate.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Scripts `fault` for the next `times` requests of `target`.
    pub fn script(&self, target: Target, fault: Fault, times: usize) {
        self.shared.script.lock().push(target, fault, times);
    }

    /// Forgets every scripted fault not yet used.
    pub fn clear_script(&self) {
        self.shared.script.lock().clear();
    }

    /// Changes the pace of later requests.
    pub fn set_pace(&self, pace: Pace) {
        *self.shared.pace.lock() = pace;
    }

    /// The request log so far.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.log.lock().entries().to_vec()
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
            if condition(self.shared.log.lock().entries()) {
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
    /// (with the Agent API, the instructions first, then the input), at the current pace. A
    /// Sonar name is mapped as for [`expected_text`](Simulator::expected_text).
    pub fn expected_answer(&self, model: &str, conversation: &[&str]) -> Answer {
        let words = self.shared.pace.lock().answer_words;
        content::answer(
            self.asked_as(model),
            conversation,
            words,
            &Filters::default(),
        )
    }

    /// The name the simulator answers a client's `model` as: where chat completions are
    /// retired, a Sonar name as the Agent API maps it.
    fn asked_as<'model>(&self, model: &'model str) -> &'model str {
        if self.shared.chat_completions {
            model
        } else {
            crate::config::agent_name(model)
        }
    }

    /// The exact text a client should end up with (reasoning excluded), for a request with
    /// `max_tokens` (Sonar) or `max_output_tokens` (Agent API) when given. Where chat
    /// completions are retired (the default), a Sonar name is asked of the Agent API as
    /// [`agent_name`](crate::agent_name) maps it.
    pub fn expected_text(
        &self,
        model: &str,
        conversation: &[&str],
        max_tokens: Option<usize>,
    ) -> String {
        let words = self.shared.pace.lock().answer_words;
        expected_text(self.asked_as(model), conversation, words, max_tokens)
    }

    /// Forgets every background run, as the service does when they expire: reading one
    /// again is then a 404.
    pub fn expire_runs(&self) {
        self.shared.runs.lock().expire_all();
    }

    /// How many background runs were started (a stream with `background: true`, or a
    /// whole answer created in the background).
    pub fn runs_started(&self) -> u64 {
        self.shared.runs.lock().started()
    }

    /// How many Sonar async jobs (`POST /async/chat/completions`) were started: a create
    /// that repeats an idempotency key starts none.
    pub fn jobs_started(&self) -> u64 {
        self.shared.jobs.lock().started()
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

/// Serves one connection (HTTP/1.1, or HTTP/2 by preface or ALPN) through the fault layer.
async fn serve_connection<S: Socket + Send + 'static>(shared: Arc<Shared>, stream: S) {
    let connection = Arc::new(Connection::default());
    let io = TokioIo::new(FaultIo::new(stream, connection.clone()));
    let service = service_fn(move |request| handle(shared.clone(), connection.clone(), request));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Errors here are the connections a fault dropped, or clients that left.
    let _ = builder.serve_connection(io, service).await;
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost` and `127.0.0.1`,
/// offering HTTP/2 and HTTP/1.1 by ALPN; and the certificate, for clients to trust.
fn tls_acceptor() -> io::Result<(tokio_rustls::TlsAcceptor, (Vec<u8>, String))> {
    let invalid = |error: &dyn fmt::Display| io::Error::other(error.to_string());
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(|error| invalid(&error))?;
    let certificate = certified.cert.der().to_vec();
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid(&error))?
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone().into()], key)
        .map_err(|error| invalid(&error))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        (certificate, pem),
    ))
}

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                shared.connections.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                connections.spawn(async move {
                    match shared.tls.clone() {
                        None => serve_connection(shared, stream).await,
                        Some(acceptor) => {
                            // A client that gives up on the handshake just goes away.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(shared, stream).await;
                            }
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.shutdown().await;
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
