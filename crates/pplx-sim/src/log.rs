//! The request log: how each request ended, as the simulator saw it, and the count of
//! requests in flight.

use std::fmt;
use std::time::Duration;

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
    /// (see [`Simulator::started_at`](crate::Simulator::started_at)).
    pub first_event_at: Option<Duration>,
    /// The request body as sent, when [`SimConfig::record_bodies`](crate::SimConfig::record_bodies) is on.
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

/// The request log: entries by sequence number, the oldest dropped past the capacity.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    pub(crate) entries: std::collections::VecDeque<LogEntry>,
    /// Entries dropped from the front so far: entry `sequence` is at `sequence - dropped`.
    pub(crate) dropped: usize,
    pub(crate) capacity: Option<usize>,
}

impl RequestLog {
    /// Adds an entry made by `make` from its sequence number; returns the number.
    pub(crate) fn push(&mut self, make: impl FnOnce(usize) -> LogEntry) -> usize {
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
    pub(crate) fn get_mut(&mut self, sequence: usize) -> Option<&mut LogEntry> {
        self.entries.get_mut(sequence.checked_sub(self.dropped)?)
    }

    pub(crate) fn entries(&mut self) -> &[LogEntry] {
        self.entries.make_contiguous()
    }
}
