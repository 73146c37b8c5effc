//! The state one simulator's requests share: keys, pace, script, the request log, the
//! firehose cache, runs and jobs, and the count of requests in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Pace;
use crate::fault::Script;
use crate::log::{Ending, RequestLog};

/// What every request of one simulator sees.
pub(crate) struct Shared {
    pub(crate) keys: Vec<String>,
    pub(crate) record_bodies: bool,
    pub(crate) compatible: bool,
    /// Chat completions are served (`compatible` or `legacy_sonar`).
    pub(crate) chat_completions: bool,
    /// Bumped on every new log entry, so tests can wait for a request without polling.
    pub(crate) logged: watch::Sender<usize>,
    pub(crate) pace: Mutex<Pace>,
    pub(crate) script: Mutex<Script>,
    pub(crate) log: Mutex<RequestLog>,
    pub(crate) started: Instant,
    pub(crate) in_flight: watch::Sender<usize>,
    pub(crate) firehose: Mutex<HashMap<u64, Firehose>>,
    /// The background runs kept, for retrieving and resuming.
    pub(crate) runs: Mutex<crate::runs::Runs>,
    /// Sonar's async jobs.
    pub(crate) jobs: Mutex<crate::runs::Jobs>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Connections accepted so far.
    pub(crate) connections: AtomicUsize,
    /// The TLS side, when serving HTTPS.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A firehose stream, serialised once: its 16 KiB batches and its number of events.
pub(crate) type Firehose = (Arc<Vec<Bytes>>, usize);

/// Counts a request in flight for as long as it lives; a request dropped before its log
/// entry was finished (the client left, and hyper cancelled the handler) is logged as such.
pub(crate) struct InFlight {
    pub(crate) shared: Arc<Shared>,
    pub(crate) log_index: Option<usize>,
}

impl InFlight {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
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
            && let Some(entry) = self.shared.log.lock().get_mut(index)
            && entry.ending == Ending::InProgress
        {
            entry.ending = Ending::ClientGone;
        }
        self.shared.in_flight.send_modify(|count| *count -= 1);
    }
}
