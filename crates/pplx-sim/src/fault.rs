//! Faults a request can be given, scripted per API key and per request sequence.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::Deserialize;

/// How lines end in a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LineEnding {
    /// `\n`, as the real service sends.
    #[default]
    Lf,
    /// `\r\n`.
    Crlf,
    /// `\r`.
    Cr,
}

impl LineEnding {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LineEnding::Lf => "\n",
            LineEnding::Crlf => "\r\n",
            LineEnding::Cr => "\r",
        }
    }
}

/// What a quiet stretch of a stream sends while nothing else comes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeepAlive {
    /// `: keep-alive` comments, as proxies and deep research send them.
    #[default]
    Comment,
    /// `retry: 3000` lines.
    Retry,
    /// `data: ping` lines: not JSON, skipped by the official consumers.
    Ping,
    /// Nothing at all.
    Nothing,
}

/// What goes wrong with one request. The default is nothing; fields combine (a CRLF stream
/// written in 1-byte pieces that drops after 5 events, say). Event counts are of the answer's
/// events (`data:` frames), comments not included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Fault {
    /// Answer with this status (and `headers`, `body`) instead of the answer. Without a
    /// body, the real service's body for that status is sent (the HTML page for 401).
    pub status: Option<u16>,
    /// Headers added to the response.
    pub headers: Vec<(String, String)>,
    /// The response body, for `status`.
    pub body: Option<String>,
    /// Wait this long before sending the headers.
    #[serde(rename = "delay_headers_ms", with = "millis")]
    pub delay_headers: Option<Duration>,
    /// Close the connection without a response.
    pub drop_before_headers: bool,
    /// Close the connection after this many events.
    pub drop_after_events: Option<usize>,
    /// After this many events, send half of the next one, then close.
    pub drop_mid_event: Option<usize>,
    /// After this many events, keep the connection open and send nothing more.
    pub stall_after_events: Option<usize>,
    /// The event with this index (from 0) carries broken JSON.
    pub malformed_event: Option<usize>,
    /// Before the first event, a `data:` line of this many bytes.
    pub oversized_line: Option<usize>,
    /// A `: keep-alive` comment before every event.
    pub keep_alive: bool,
    /// The line ending used.
    pub line_ending: LineEnding,
    /// Write the body one byte per write.
    pub one_byte_pieces: bool,
    /// After this many events, an error event (`event: error` for Sonar, `response.failed` for
    /// the Agent API) ends the stream.
    pub error_event_after: Option<usize>,
    /// Add `data: [DONE]` after the final chunk.
    pub done_marker: bool,
    /// Every chunk says `object: "chat.completion"`, as before mid-2025.
    pub legacy_object: bool,
    /// A `data: ping` line (not JSON: a keep-alive ping) before every event.
    pub ping_data: bool,
    /// After this many events, a quiet stretch of `quiet` (see `quiet_keep_alive`).
    pub quiet_after_events: Option<usize>,
    /// How long the quiet stretch lasts.
    #[serde(rename = "quiet_ms", with = "millis")]
    pub quiet: Option<Duration>,
    /// What the quiet stretch sends, every 50 ms.
    pub quiet_keep_alive: KeepAlive,
    /// A background run read again (`starting_after=N`) skips event N + 1: the resumed stream
    /// has a gap, and a client must not pass the answer off as whole.
    pub resume_gap: bool,
    /// Do the request's work (start the background run or the async job), then close the
    /// connection without answering: the client cannot tell whether anything was started.
    pub lost_reply: bool,
}

impl Fault {
    /// No fault: a normal answer (useful to script "fails twice, then works").
    pub fn none() -> Self {
        Fault::default()
    }

    /// A background run read again skips the event that should come next (see
    /// [`Fault::resume_gap`](Fault#structfield.resume_gap)).
    pub fn resume_gap() -> Self {
        Fault {
            resume_gap: true,
            ..Fault::default()
        }
    }

    /// A response with `status` and the real service's body for it.
    pub fn status(status: u16) -> Self {
        Fault {
            status: Some(status),
            ..Fault::default()
        }
    }

    /// A 429 with `retry-after: seconds`, as the real service sends it.
    pub fn rate_limited(seconds: u64) -> Self {
        Fault::status(429).header("retry-after", &seconds.to_string())
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the response body.
    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }

    /// Waits before the headers.
    pub fn delay_headers(mut self, delay: Duration) -> Self {
        self.delay_headers = Some(delay);
        self
    }

    /// Starts what the request asks for (a background run, an async job), then closes the
    /// connection without a response (see
    /// [`Fault::lost_reply`](Fault#structfield.lost_reply)).
    pub fn lost_reply() -> Self {
        Fault {
            lost_reply: true,
            ..Fault::default()
        }
    }

    /// Closes the connection without a response.
    pub fn drop_before_headers() -> Self {
        Fault {
            drop_before_headers: true,
            ..Fault::default()
        }
    }

    /// Closes the connection after `events` events.
    pub fn drop_after_events(events: usize) -> Self {
        Fault {
            drop_after_events: Some(events),
            ..Fault::default()
        }
    }

    /// Sends half of event `events + 1`, then closes.
    pub fn drop_mid_event(events: usize) -> Self {
        Fault {
            drop_mid_event: Some(events),
            ..Fault::default()
        }
    }

    /// Goes silent after `events` events, keeping the connection open.
    pub fn stall_after_events(events: usize) -> Self {
        Fault {
            stall_after_events: Some(events),
            ..Fault::default()
        }
    }

    /// Event `index` (from 0) carries broken JSON.
    pub fn malformed_event(index: usize) -> Self {
        Fault {
            malformed_event: Some(index),
            ..Fault::default()
        }
    }

    /// A `data:` line of `bytes` bytes before the first event.
    pub fn oversized_line(bytes: usize) -> Self {
        Fault {
            oversized_line: Some(bytes),
            ..Fault::default()
        }
    }

    /// An error event after `events` events.
    pub fn error_event_after(events: usize) -> Self {
        Fault {
            error_event_after: Some(events),
            ..Fault::default()
        }
    }

    /// Keep-alive comments before every event.
    pub fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }

    /// Uses `ending` for line ends.
    pub fn line_ending(mut self, ending: LineEnding) -> Self {
        self.line_ending = ending;
        self
    }

    /// Writes the body one byte at a time.
    pub fn one_byte_pieces(mut self) -> Self {
        self.one_byte_pieces = true;
        self
    }

    /// Adds `data: [DONE]` after the final chunk.
    pub fn done_marker(mut self) -> Self {
        self.done_marker = true;
        self
    }

    /// After `events` events, `duration` with only `keep_alive` lines (every 50 ms).
    pub fn quiet_after_events(events: usize, duration: Duration, keep_alive: KeepAlive) -> Self {
        Fault {
            quiet_after_events: Some(events),
            quiet: Some(duration),
            quiet_keep_alive: keep_alive,
            ..Fault::default()
        }
    }

    /// A `data: ping` keep-alive line before every event.
    pub fn ping_data(mut self) -> Self {
        self.ping_data = true;
        self
    }

    /// Says `object: "chat.completion"` on every chunk.
    pub fn legacy_object(mut self) -> Self {
        self.legacy_object = true;
        self
    }
}

/// Which requests a scripted fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// Requests made with the configured key of this index.
    Key(usize),
    /// Any request (after the per-key scripts).
    Any,
}

/// Queued faults: each request takes the next fault for its key, else the next for any key.
#[derive(Debug, Default)]
pub(crate) struct Script {
    queues: HashMap<Target, VecDeque<Fault>>,
}

impl Script {
    pub(crate) fn push(&mut self, target: Target, fault: Fault, times: usize) {
        let queue = self.queues.entry(target).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    pub(crate) fn next(&mut self, key: Option<usize>) -> Fault {
        key.and_then(|key| self.queues.get_mut(&Target::Key(key))?.pop_front())
            .or_else(|| self.queues.get_mut(&Target::Any)?.pop_front())
            .unwrap_or_default()
    }

    pub(crate) fn clear(&mut self) {
        self.queues.clear();
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}
