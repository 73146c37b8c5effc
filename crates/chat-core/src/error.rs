use std::fmt;
use std::time::{Duration, Instant};

use crate::Usage;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;
type SharedSource = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The connection could not be made (DNS, TCP, TLS).
    Connect,
    /// A deadline passed; see [`Error::timeout_phase`].
    Timeout,
    /// The server said 429, or every key is cooling down.
    RateLimited,
    /// The key was refused (401/403), or every key was.
    Auth,
    /// Out of credits or quota (402).
    Quota,
    /// The request is wrong (400, 404, 410, 413, 422): retrying cannot help.
    BadRequest,
    /// The server failed (5xx).
    Server,
    /// Another HTTP status.
    Http,
    /// The server's response could not be understood (bad JSON, a broken event stream).
    Protocol,
    /// The stream ended before its final event, before any answer text was delivered.
    Incomplete,
    /// The stream broke after answer text was delivered; see [`Error::partial_text`].
    Interrupted,
    /// The circuit breaker is open; see [`Error::open_until`].
    CircuitOpen,
    /// The configuration is unusable (no key, a bad base URL, ...).
    Config,
    /// The caller cancelled.
    Cancelled,
    /// The answer grew past the configured bound (text, reasoning and sources together).
    TooLarge,
    /// The server would not stream this request (it answered without a stream, or refused
    /// the `stream` parameter): the same request may still be answered without streaming.
    NotStreaming,
    /// A spending limit was reached: the request was refused before it was sent.
    Budget,
}

impl ErrorKind {
    /// A short stable name, for machine-readable output (`rate_limited`, `timeout`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Auth => "auth",
            ErrorKind::Quota => "quota",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Server => "server",
            ErrorKind::Http => "http",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Incomplete => "incomplete",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Config => "config",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::NotStreaming => "not_streaming",
            ErrorKind::Budget => "budget",
        }
    }
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Making the connection.
    Connect,
    /// Waiting for the response headers.
    Headers,
    /// Waiting for the first event of a stream.
    FirstEvent,
    /// Waiting between two events.
    Idle,
    /// The whole request, retries included.
    Total,
}

impl TimeoutPhase {
    fn describe(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connecting",
            TimeoutPhase::Headers => "waiting for response headers",
            TimeoutPhase::FirstEvent => "waiting for the first event",
            TimeoutPhase::Idle => "waiting for the next event",
            TimeoutPhase::Total => "the total deadline passed",
        }
    }
}

/// The one error of every provider: opaque, with queries rather than vendor types.
///
/// Providers build it with the constructors; callers ask it questions
/// ([`is_retryable`](Error::is_retryable), [`retry_after`](Error::retry_after),
/// [`partial_text`](Error::partial_text), ...). Messages are for people and never hold key
/// material. Cloning is cheap (the source is shared), so one failure can reach several
/// callers as the same error.
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    retry_after: Option<Duration>,
    /// The server's own verdict (`x-should-retry`), which wins over every status rule.
    should_retry: Option<bool>,
    /// The request parameter a refusal names (`error.param`, a 422's location).
    param: Option<String>,
    /// The message already says when to retry (the key pool's "next free in"), so Display
    /// does not add it again.
    says_when: bool,
    phase: Option<TimeoutPhase>,
    partial: Option<(String, Option<Usage>)>,
    /// What the server reported the failed request used (and cost): a run it cancelled.
    usage: Option<Usage>,
    open_until: Option<Instant>,
    source: Option<SharedSource>,
    /// The server reported this failure itself, in a body or a stream (an Agent API
    /// `ErrorInfo`), rather than with an HTTP status: a rate limit or a refused key said so
    /// is the server's word, like a 429 or a 401.
    reported: bool,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                status: None,
                retry_after: None,
                should_retry: None,
                param: None,
                says_when: false,
                reported: false,
                phase: None,
                partial: None,
                usage: None,
                open_until: None,
                source: None,
            }),
        }
    }

    /// The connection failed.
    pub fn connect(source: impl Into<Source>) -> Self {
        Error::new(ErrorKind::Connect, "connection failed").with_source(source)
    }

    /// A deadline passed.
    pub fn timeout(phase: TimeoutPhase) -> Self {
        let mut error = Error::new(
            ErrorKind::Timeout,
            format!("timed out {}", phase.describe()),
        );
        error.inner.phase = Some(phase);
        error
    }

    /// The server answered `status` (not 2xx); `message` says what it said, without secrets.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        let kind = match status {
            400 | 404 | 410 | 413 | 422 => ErrorKind::BadRequest,
            401 | 403 => ErrorKind::Auth,
            402 => ErrorKind::Quota,
            429 => ErrorKind::RateLimited,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::Http,
        };
        let mut error = Error::new(kind, message);
        error.inner.status = Some(status);
        error
    }

    /// The response could not be understood.
    pub fn protocol(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Protocol, message)
    }

    /// The stream ended before its final event and before any answer text.
    pub fn incomplete(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Incomplete, message)
    }

    /// The stream broke after `text` had been delivered; `cause` is why.
    pub fn interrupted(text: String, usage: Option<Usage>, cause: Error) -> Self {
        let message = format!(
            "stream interrupted after {} characters of answer",
            text.chars().count()
        );
        let mut error = Error::new(ErrorKind::Interrupted, message);
        error.inner.retry_after = cause.retry_after();
        let usage = usage.or_else(|| cause.partial_usage().cloned());
        error.inner.partial = Some((text, usage));
        error.with_source(cause)
    }

    /// A failure the server reported in a body or a stream (not with an HTTP status), of
    /// `kind` as its code says: retried, rotated or final as the same failure with a status
    /// would be (a rate limit cools the key, a refused key is disabled, a server error is
    /// retried, anything else is final).
    pub fn reported(kind: ErrorKind, message: impl Into<String>) -> Self {
        let mut error = Error::new(kind, message);
        error.inner.reported = true;
        error
    }

    /// The server would not stream the request; `status` is what it answered with, when
    /// that was an error status. Never retried as a stream.
    pub fn not_streaming(status: Option<u16>, message: impl Into<String>) -> Self {
        let mut error = Error::new(ErrorKind::NotStreaming, message);
        error.inner.status = status;
        error
    }

    /// The configuration is unusable.
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// The answer grew past `limit` bytes (text, reasoning and sources together): a broken or
    /// hostile server, never retried.
    pub fn too_large(limit: usize) -> Self {
        Error::new(
            ErrorKind::TooLarge,
            format!("the answer grew past its bound of {limit} bytes"),
        )
    }

    /// A spending limit was reached; `message` names the limit and the spend. Never
    /// retried.
    pub fn budget(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Budget, message)
    }

    /// The caller cancelled.
    pub fn cancelled() -> Self {
        Error::new(ErrorKind::Cancelled, "cancelled")
    }

    /// Adds what the server reported the failed request used (and cost).
    pub fn with_usage(mut self, usage: Option<Usage>) -> Self {
        self.inner.usage = usage;
        self
    }

    /// Adds the wait the server asked for.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.inner.retry_after = retry_after;
        self
    }

    /// Adds the server's verdict on retrying (the `x-should-retry` header): `Some(false)`
    /// makes the error final and `Some(true)` retryable, whatever its status says.
    pub fn with_should_retry(mut self, should_retry: Option<bool>) -> Self {
        self.inner.should_retry = should_retry;
        self
    }

    /// The same error naming the request parameter the server refused (kept to 64
    /// characters: it comes from the server).
    pub fn with_param(mut self, param: Option<String>) -> Self {
        self.inner.param = param.map(|param| param.chars().take(64).collect());
        self
    }

    /// The request parameter a refusal names (`error.param`, or the last element of a 422's
    /// location), when the server said one: what to change before sending again.
    pub fn param(&self) -> Option<&str> {
        self.inner.param.as_deref()
    }

    /// The same error with every occurrence of each of `secrets` in its message replaced by
    /// `[redacted]`: for messages that quote a server, which may echo a key back.
    pub fn redacted<'secret>(mut self, secrets: impl IntoIterator<Item = &'secret str>) -> Self {
        for secret in secrets {
            if !secret.is_empty() && self.inner.message.contains(secret) {
                self.inner.message = self.inner.message.replace(secret, "[redacted]");
            }
        }
        self
    }

    /// Adds the underlying error.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.inner.source = Some(SharedSource::from(source.into()));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The HTTP status, when the server sent one.
    pub fn status_code(&self) -> Option<u16> {
        self.inner.status
    }

    /// Whether another attempt may succeed (perhaps with another key).
    pub fn is_retryable(&self) -> bool {
        self.class() != Class::Permanent
    }

    /// Whether this is a rate limit (429, or every key cooling).
    pub fn is_rate_limited(&self) -> bool {
        self.inner.kind == ErrorKind::RateLimited
    }

    /// The wait the server (or the key pool, or the breaker) asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Whether a key was refused.
    pub fn is_auth(&self) -> bool {
        self.inner.kind == ErrorKind::Auth
    }

    /// Whether the request itself is wrong.
    pub fn is_bad_request(&self) -> bool {
        self.inner.kind == ErrorKind::BadRequest
    }

    /// Whether a deadline passed.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }

    /// Which deadline passed.
    pub fn timeout_phase(&self) -> Option<TimeoutPhase> {
        self.inner.phase
    }

    /// Whether a stream broke after delivering answer text.
    pub fn is_interrupted(&self) -> bool {
        self.inner.kind == ErrorKind::Interrupted
    }

    /// The exact answer text delivered before an interruption.
    pub fn partial_text(&self) -> Option<&str> {
        self.inner.partial.as_ref().map(|(text, _)| text.as_str())
    }

    /// The usage known when the request failed: at an interruption, or what the server
    /// reported of a run it ended (a cancelled run's usage and cost).
    pub fn partial_usage(&self) -> Option<&Usage> {
        self.inner
            .partial
            .as_ref()
            .and_then(|(_, usage)| usage.as_ref())
            .or(self.inner.usage.as_ref())
    }

    /// Whether the circuit breaker is open.
    pub fn is_circuit_open(&self) -> bool {
        self.inner.kind == ErrorKind::CircuitOpen
    }

    /// When an open breaker lets a call through again.
    pub fn open_until(&self) -> Option<Instant> {
        self.inner.open_until
    }
}

/// How a failure should be handled: the same classes as `resilience::FailureClass`, kept
/// here so that `is_retryable` works without the `resilience` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Transient,
    RateLimited,
    KeyRejected,
    QuotaExhausted,
    Permanent,
}

impl Error {
    fn class(&self) -> Class {
        match self.inner.should_retry {
            Some(false) => return Class::Permanent,
            // Key failures keep their class (they rotate keys); anything else is retried.
            Some(true)
                if !matches!(
                    self.inner.kind,
                    ErrorKind::RateLimited | ErrorKind::Auth | ErrorKind::Quota
                ) =>
            {
                return Class::Transient;
            }
            _ => {}
        }
        match self.inner.kind {
            ErrorKind::RateLimited if self.inner.status == Some(429) || self.inner.reported => {
                Class::RateLimited
            }
            ErrorKind::Auth if self.inner.status.is_some() || self.inner.reported => {
                Class::KeyRejected
            }
            ErrorKind::Quota => Class::QuotaExhausted,
            ErrorKind::Connect
            | ErrorKind::Server
            | ErrorKind::Protocol
            | ErrorKind::Incomplete => Class::Transient,
            ErrorKind::Timeout if self.inner.phase != Some(TimeoutPhase::Total) => Class::Transient,
            ErrorKind::Http if matches!(self.inner.status, Some(408 | 409)) => Class::Transient,
            _ => Class::Permanent,
        }
    }
}

#[cfg(feature = "resilience")]
impl resilience::Classify for Error {
    fn failure_class(&self) -> resilience::FailureClass {
        use resilience::FailureClass;
        match self.class() {
            Class::Transient => FailureClass::Transient,
            Class::RateLimited => FailureClass::RateLimited,
            Class::KeyRejected => FailureClass::KeyRejected,
            Class::QuotaExhausted => FailureClass::QuotaExhausted,
            Class::Permanent => FailureClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }
}

#[cfg(feature = "resilience")]
impl From<resilience::Error> for Error {
    fn from(error: resilience::Error) -> Self {
        let retry_after = error.retry_after();
        let message = error.to_string();
        let mut converted = match &error {
            resilience::Error::CircuitOpen { until } => {
                let mut converted = Error::new(ErrorKind::CircuitOpen, message);
                converted.inner.open_until = Some(until.into_std());
                converted
            }
            resilience::Error::NoKeyAvailable(unavailable) => {
                let kind = if unavailable.next_free.is_some() {
                    ErrorKind::RateLimited
                } else if unavailable.keys == 0 {
                    ErrorKind::Config
                } else {
                    ErrorKind::Auth
                };
                Error::new(kind, message)
            }
            resilience::Error::DeadlineExceeded => return Error::timeout(TimeoutPhase::Total),
            _ => Error::new(ErrorKind::Http, message),
        };
        converted.inner.says_when = matches!(
            &error,
            resilience::Error::NoKeyAvailable(unavailable) if unavailable.next_free.is_some()
        );
        converted.inner.retry_after = retry_after;
        converted
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.inner.message)?;
        if let Some(status) = self.inner.status
            && !self.inner.message.contains(&status.to_string())
        {
            write!(formatter, " (HTTP {status})")?;
        }
        if let Some(wait) = self.inner.retry_after
            && self.inner.kind != ErrorKind::Interrupted
            && !self.inner.says_when
        {
            write!(formatter, ", retry after {:.1} s", wait.as_secs_f64())?;
        }
        Ok(())
    }
}

impl Error {
    /// The error with its causes, for people: `message: cause: cause's cause`. `Display`
    /// alone shows this error only (its causes come through
    /// [`source`](std::error::Error::source), so that error reporters do not print them
    /// twice); see [`Report`].
    pub fn report(&self) -> Report<'_> {
        Report::new(self)
    }
}

/// Any error with its chain of causes on one line, `message: cause: cause's cause`: what a
/// program prints. A cause whose text the line already holds (an error that also writes its
/// source into its own message) is not repeated.
///
/// ```
/// let cause = std::io::Error::other("connection reset by peer");
/// let error = chat_core::Error::incomplete("the connection broke").with_source(cause);
/// assert_eq!(error.to_string(), "the connection broke");
/// assert_eq!(error.report().to_string(), "the connection broke: connection reset by peer");
/// ```
#[derive(Clone, Copy)]
pub struct Report<'a>(&'a (dyn std::error::Error + 'static));

impl<'a> Report<'a> {
    /// `error` with its causes.
    pub fn new(error: &'a (dyn std::error::Error + 'static)) -> Self {
        Report(error)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        // Bounded: a cycle of causes (a broken `source`) cannot loop for ever.
        for _ in 0..16 {
            let Some(error) = cause else { break };
            let text = error.to_string();
            if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = error.source();
        }
        formatter.write_str(&line)
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = formatter.debug_struct("Error");
        debug
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(status) = self.inner.status {
            debug.field("status", &status);
        }
        if let Some(retry_after) = self.inner.retry_after {
            debug.field("retry_after", &retry_after);
        }
        if let Some(phase) = self.inner.phase {
            debug.field("phase", &phase);
        }
        if let Some((text, _)) = &self.inner.partial {
            debug.field("partial_chars", &text.chars().count());
        }
        if let Some(source) = &self.inner.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
#[cfg(feature = "resilience")]
mod tests {
    use resilience::{Classify, FailureClass};

    use super::*;

    #[test]
    fn statuses_map_to_kinds_and_classes() {
        let cases = [
            (400, ErrorKind::BadRequest, FailureClass::Permanent),
            (401, ErrorKind::Auth, FailureClass::KeyRejected),
            (402, ErrorKind::Quota, FailureClass::QuotaExhausted),
            (403, ErrorKind::Auth, FailureClass::KeyRejected),
            (408, ErrorKind::Http, FailureClass::Transient),
            (409, ErrorKind::Http, FailureClass::Transient),
            (418, ErrorKind::Http, FailureClass::Permanent),
            (422, ErrorKind::BadRequest, FailureClass::Permanent),
            (429, ErrorKind::RateLimited, FailureClass::RateLimited),
            (500, ErrorKind::Server, FailureClass::Transient),
            (503, ErrorKind::Server, FailureClass::Transient),
        ];
        for (status, kind, class) in cases {
            let error = Error::status(status, "the server said no");
            assert_eq!(
                (error.kind(), error.failure_class()),
                (kind, class),
                "{status}"
            );
            assert_eq!(error.is_retryable(), class != FailureClass::Permanent);
        }
    }

    #[test]
    fn the_servers_should_retry_header_wins_over_the_status() {
        let final_503 = Error::status(503, "overloaded").with_should_retry(Some(false));
        assert_eq!(final_503.failure_class(), FailureClass::Permanent);
        let retried_400 = Error::status(400, "try again").with_should_retry(Some(true));
        assert_eq!(retried_400.failure_class(), FailureClass::Transient);
        let limited = Error::status(429, "slow down").with_should_retry(Some(true));
        assert_eq!(limited.failure_class(), FailureClass::RateLimited);
        let plain = Error::status(503, "overloaded").with_should_retry(None);
        assert_eq!(plain.failure_class(), FailureClass::Transient);
    }

    #[test]
    fn the_wait_is_said_once_whatever_the_servers_words() {
        let error = Error::status(429, "try the next region")
            .with_retry_after(Some(Duration::from_secs(2)));
        assert_eq!(
            error.to_string(),
            "try the next region (HTTP 429), retry after 2.0 s"
        );
    }

    #[test]
    fn an_interruption_keeps_the_partial_text_and_its_cause() {
        let cause = Error::connect(std::io::Error::other("connection reset"));
        let error = Error::interrupted("Olympus Mons".into(), None, cause);
        assert!(error.is_interrupted());
        assert!(
            !error.is_retryable(),
            "after the commit point nothing is replayed"
        );
        assert_eq!(error.partial_text(), Some("Olympus Mons"));
        // `Display` is this error only; each cause comes once, through `source`, and the
        // report prints the chain.
        assert_eq!(
            error.to_string(),
            "stream interrupted after 12 characters of answer"
        );
        let source = std::error::Error::source(&error).unwrap();
        assert_eq!(source.to_string(), "connection failed");
        let root = source.source().unwrap();
        assert_eq!(root.to_string(), "connection reset");
        assert!(root.source().is_none());
        assert_eq!(
            error.report().to_string(),
            "stream interrupted after 12 characters of answer: connection failed: connection reset"
        );
    }

    #[test]
    fn a_report_prints_each_cause_once_even_when_a_cause_repeats_its_own() {
        /// An error that, as hyper 0.14's did, writes its source into its own message.
        #[derive(Debug)]
        struct Repeats(std::io::Error);
        impl fmt::Display for Repeats {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "client error: {}", self.0)
            }
        }
        impl std::error::Error for Repeats {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Error::connect(Repeats(std::io::Error::other("refused")));
        assert_eq!(
            error.report().to_string(),
            "connection failed: client error: refused"
        );
    }

    #[test]
    fn timeouts_say_their_phase_and_only_the_total_one_is_final() {
        let idle = Error::timeout(TimeoutPhase::Idle);
        assert!(idle.is_timeout() && idle.is_retryable());
        assert_eq!(idle.timeout_phase(), Some(TimeoutPhase::Idle));
        assert_eq!(idle.to_string(), "timed out waiting for the next event");
        assert!(!Error::timeout(TimeoutPhase::Total).is_retryable());
    }

    #[tokio::test(start_paused = true)]
    async fn resilience_errors_become_queries() {
        let until = tokio::time::Instant::now() + Duration::from_secs(41);
        let keys = (0..3)
            .map(|index| resilience::ApiKey::new(format!("k{index}")))
            .collect();
        let pool = resilience::KeyPool::new(keys, resilience::KeyPoolConfig::default());
        for _ in 0..3 {
            let lease = pool.try_acquire().unwrap();
            let retry_after = Some(Duration::from_secs(41));
            lease.report(resilience::KeyOutcome::RateLimited { retry_after });
        }
        let unavailable = pool.try_acquire().unwrap_err();
        let error = Error::from(resilience::Error::NoKeyAvailable(unavailable));
        assert!(error.is_rate_limited());
        assert_eq!(error.retry_after(), Some(Duration::from_secs(41)));
        assert_eq!(
            error.to_string(),
            "rate limited on all 3 keys, next free in 41 s"
        );
        assert_eq!(
            error.failure_class(),
            FailureClass::Permanent,
            "the pool already waited"
        );
        let open = Error::from(resilience::Error::CircuitOpen { until });
        assert!(open.is_circuit_open());
        assert_eq!(open.open_until(), Some(until.into_std()));
    }
}
