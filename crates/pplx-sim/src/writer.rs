//! The response body and the streaming writer that applies a request's fault.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame as HttpFrame};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api::Api;
use crate::config::Pace;
use crate::fault::Fault;
use crate::io::{Connection, DROP_MARKER};
use crate::log::Ending;
use crate::state::InFlight;
use crate::state::Shared;
use crate::wire::{self, Frame};

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

/// Writes one stream, applying its fault, and logs how it ended.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) connection: Arc<Connection>,
    pub(crate) log_index: usize,
    pub(crate) fault: Fault,
    pub(crate) pace: Pace,
    pub(crate) api: Api,
    pub(crate) model: String,
    pub(crate) cache_key: u64,
    pub(crate) _guard: InFlight,
}

pub(crate) type Sender = mpsc::Sender<Result<Bytes, io::Error>>;

impl Writer {
    pub(crate) async fn run(self, frames: impl FnOnce() -> Vec<Frame>, sender: Sender) {
        let (events, ending) = if self.pace.firehose && self.fault == Fault::default() {
            self.firehose(frames, &sender).await
        } else {
            self.write(&frames(), &sender).await
        };
        if let Some(entry) = self.shared.log.lock().get_mut(self.log_index) {
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
        let cached = self.shared.firehose.lock().get(&cache_key).cloned();
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
                self.shared
                    .firehose
                    .lock()
                    .insert(cache_key, cached.clone());
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
        if let Some(entry) = self.shared.log.lock().get_mut(self.log_index) {
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
        let quiet = self.quiet_stretch();
        for (index, frame) in frames.iter().enumerate() {
            if let Some((events, duration, keep_alive)) = quiet
                && events == index
                && !self.quiet(sender, duration, keep_alive).await
            {
                return (index, Ending::ClientGone);
            }
            if let Some(end) = self.interrupt(index, sender).await {
                return (index, end);
            }
            if let Err(end) = self.frame(index, frame, sender).await {
                return (index, end);
            }
        }
        if fault.done_marker && !self.pace.chunk_delay.is_zero() {
            // The marker comes a little after the final event, as a chunk would.
            tokio::time::sleep(self.pace.chunk_delay).await;
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

    /// Where the stream goes quiet (after that many events), for how long, and with what
    /// keep-alives: a scripted quiet stretch, or deep research, which is quiet after its first
    /// event (only comments).
    fn quiet_stretch(&self) -> Option<(usize, Duration, crate::fault::KeepAlive)> {
        let fault = &self.fault;
        match (fault.quiet_after_events, fault.quiet) {
            (Some(events), Some(duration)) => Some((events, duration, fault.quiet_keep_alive)),
            _ if crate::config::is_research(&self.model) && !self.pace.research_quiet.is_zero() => {
                Some((
                    1,
                    self.pace.research_quiet,
                    crate::fault::KeepAlive::Comment,
                ))
            }
            _ => None,
        }
    }

    /// A fault that ends the stream before event `index`: a stall, a dropped connection, or
    /// an error event; how it ended.
    async fn interrupt(&self, index: usize, sender: &Sender) -> Option<Ending> {
        let fault = &self.fault;
        if fault.stall_after_events == Some(index) {
            let mut shutdown = self.shared.shutdown.clone();
            tokio::select! {
                _ = sender.closed() => {}
                _ = shutdown.wait_for(|stopped| *stopped) => {}
            }
            return Some(Ending::Stalled);
        }
        if fault.drop_after_events == Some(index) {
            self.drop_connection(sender).await;
            return Some(Ending::Dropped);
        }
        if fault.error_event_after == Some(index) {
            let error = match self.api {
                Api::Agent => wire::agent_failed_frame(index + 1),
                _ => wire::sonar_error_frame(),
            };
            self.send(sender, error.encode(fault.line_ending, false))
                .await;
            return Some(Ending::ErrorEvent);
        }
        None
    }

    /// Event `index`, paced, with the keep-alives the fault adds before it; a connection
    /// dropped in its middle, or a client gone, is how the stream ended.
    async fn frame(&self, index: usize, frame: &Frame, sender: &Sender) -> Result<(), Ending> {
        let fault = &self.fault;
        let ending = fault.line_ending.as_str();
        let encoded = frame.encode(fault.line_ending, fault.malformed_event == Some(index));
        if fault.drop_mid_event == Some(index) {
            self.send(sender, encoded.slice(..encoded.len() / 2)).await;
            self.drop_connection(sender).await;
            return Err(Ending::Dropped);
        }
        if index > 0 && !self.pace.chunk_delay.is_zero() {
            tokio::time::sleep(self.pace.chunk_delay).await;
        }
        if index == 0 {
            self.first_event();
        }
        let keep_alive = fault
            .keep_alive
            .then(|| Bytes::from(format!(": keep-alive{ending}{ending}")));
        let ping = fault
            .ping_data
            .then(|| Bytes::from(format!("data: ping{ending}{ending}")));
        for piece in [keep_alive, ping, Some(encoded)].into_iter().flatten() {
            if !self.send(sender, piece).await {
                return Err(Ending::ClientGone);
            }
        }
        Ok(())
    }
}
