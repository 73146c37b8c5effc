//! One streamed answer as a state machine, in plain Rust: each phase is a [`Phase`], each
//! transition a method that takes the phase it leaves and says what comes next and what the
//! caller gets. The phases, in the order an answer meets them:
//!
//! - [`Phase::Connecting`]: a stream is opened and read up to the commit point (the first
//!   answer text, or `Done` for an empty answer) under the retrier: breaker, keys, backoff,
//!   budget and the total deadline. The events before the commit point are held.
//! - [`Phase::Streaming`]: the held events, then the live stream, go to the caller. A break
//!   here is first read again from the run when it is an Agent API background run
//!   ([`Answer::resume`]: the same answer goes on, nothing repeated); otherwise, or when the
//!   run cannot continue, it either restarts the answer ([`Phase::Connecting`] again, after
//!   a `Restart` event) or ends it with an interruption.
//! - [`Phase::Replaying`]: the non-streaming fallback's answer, as the same events.
//! - [`Phase::Releasing`]: `Done` went out; the connection goes back to the pool before the
//!   stream ends, for a caller that reads on.
//! - [`Phase::Finished`]: nothing more.
//!
//! [`Answer::fail`] is the one place a stream's error is made, from the text the caller
//! holds ([`Ledger`]), so every interruption carries exactly that text.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use chat_core::{ChatEvent, ChatRequest, Error};
use futures_core::Stream;
use resilience::breaker::OwnedPermit;
use resilience::keys::KeyLease;
use resilience::{CallOutcome, Classify, FailureClass, KeyOutcome};
use tokio::time::Instant;

use crate::AfterCommit;
use crate::api::LongRunning;
use crate::client::Live;
use crate::delivery::Ledger;
use crate::endpoint::{Endpoint, Method, Route, Tally};
use crate::runs::CancelOnDrop;

mod attempt;

use attempt::{Opening, falls_back};

/// The answer to `request` on `route`, as a stream that ends with `Done` or one error.
pub(crate) fn stream(
    endpoint: Arc<Endpoint>,
    route: Route,
    request: ChatRequest,
) -> impl Stream<Item = Result<ChatEvent, Error>> + Send + 'static {
    let work = crate::runs::long_running(&endpoint, &route, &request, true);
    let body = stream_body(&route, &request, work);
    let cancel = CancelOnDrop::new(endpoint.clone(), work);
    run(Answer::new(
        endpoint,
        route,
        cancel,
        work,
        (request, body),
        None,
    ))
}

/// The answer of the existing work `id` (a background run), read from its first event: no
/// request is sent to start one, nothing falls back or restarts (either would start another
/// run), and a reader who leaves does not cancel it.
pub(crate) fn attach(
    endpoint: Arc<Endpoint>,
    route: Route,
    work: &'static dyn LongRunning,
    id: String,
) -> impl Stream<Item = Result<ChatEvent, Error>> + Send + 'static {
    let cancel = CancelOnDrop::keeping(endpoint.clone(), work);
    let nothing_sent = (ChatRequest::default(), Bytes::new());
    run(Answer::new(
        endpoint,
        route,
        cancel,
        Some(work),
        nothing_sent,
        Some(id),
    ))
}

fn run(answer: Box<Answer>) -> impl Stream<Item = Result<ChatEvent, Error>> + Send + 'static {
    futures_util::stream::unfold(answer, |mut answer| async {
        let item = answer.next().await?;
        Some((item, answer))
    })
}

/// The streaming body: as `work` creates it (a run that can be read again), or plain.
fn stream_body(route: &Route, request: &ChatRequest, work: Option<&dyn LongRunning>) -> Bytes {
    let body = match work {
        Some(work) => work.create(request, &route.model, true).1,
        None => crate::api::request_body(route.api, request, &route.model, true),
    };
    Bytes::from(body)
}

/// Whether a break is one a background run can be read again after: the connection broke,
/// the stream ended early, stalled past a deadline other than the total one, or an event
/// came cut (bad JSON). A failure the run reported itself (`response.failed`) is final.
fn resumable(cause: &Error) -> bool {
    use chat_core::{ErrorKind, TimeoutPhase};
    match cause.kind() {
        ErrorKind::Incomplete | ErrorKind::Protocol => true,
        ErrorKind::Timeout => cause.timeout_phase() != Some(TimeoutPhase::Total),
        _ => false,
    }
}

/// Where an answer is.
enum Phase {
    /// Opening a stream and reading it to the commit point.
    Connecting,
    /// Past the commit point.
    Streaming(Box<Streaming>),
    /// The fallback's events, in order.
    Replaying(VecDeque<ChatEvent>),
    /// `Done` went out; the connection is on its way back to the pool.
    Releasing(Option<tokio::task::JoinHandle<()>>),
    /// The stream has ended.
    Finished,
}

/// A stream past its commit point, with what its outcome must be reported to.
struct Streaming {
    live: Live,
    /// Events read before the commit point, the commit point's own last.
    held: VecDeque<ChatEvent>,
    /// The key the stream runs on: it hears of a break.
    lease: KeyLease,
    /// The breaker hears of the call's outcome at its end, not at its first word: a server
    /// that always breaks streams after one token must open it.
    permit: Option<OwnedPermit>,
}

/// The next phase, and what the caller gets on the way (nothing when a phase only hands
/// over to the next).
type Transition = (Phase, Option<Result<ChatEvent, Error>>);

struct Answer {
    endpoint: Arc<Endpoint>,
    route: Route,
    /// Kept for the fallback, which sends it again without streaming.
    request: ChatRequest,
    body: Bytes,
    /// An existing background run to read (`PerplexityProvider::attach`), instead of a
    /// request that starts one.
    existing: Option<String>,
    deadline: Instant,
    cancel: CancelOnDrop,
    tally: Tally,
    restarts: u32,
    /// How many times a broken stream was read again from where it broke.
    resumed: u32,
    /// Resumes in a row that brought no new event (a run read again that breaks at once):
    /// bounded by the retry policy's attempts, so a server that never gets further ends.
    stalled_resumes: u32,
    /// The cursor the last resume started from.
    resumed_from: Option<u64>,
    /// The long-running work the stream runs as, if any (see `runs::long_running`): a
    /// break is read again from it.
    work: Option<&'static dyn LongRunning>,
    ledger: Ledger,
    phase: Phase,
}

impl Answer {
    /// An answer about to connect: sending `sent` (the request and its body), or reading the
    /// existing run `existing` of `work`.
    fn new(
        endpoint: Arc<Endpoint>,
        route: Route,
        cancel: CancelOnDrop,
        work: Option<&'static dyn LongRunning>,
        sent: (ChatRequest, Bytes),
        existing: Option<String>,
    ) -> Box<Answer> {
        let (request, body) = sent;
        Box::new(Answer {
            deadline: resilience::backoff::later(Instant::now(), route.timeouts.total),
            cancel,
            endpoint,
            route,
            request,
            body,
            existing,
            tally: Tally::default(),
            restarts: 0,
            resumed: 0,
            stalled_resumes: 0,
            resumed_from: None,
            work,
            ledger: Ledger::default(),
            phase: Phase::Connecting,
        })
    }

    /// The caller's next item; `None` once the stream has ended.
    async fn next(&mut self) -> Option<Result<ChatEvent, Error>> {
        loop {
            let (phase, item) = match std::mem::replace(&mut self.phase, Phase::Finished) {
                Phase::Connecting => self.connect().await,
                Phase::Streaming(streaming) => self.stream(streaming).await,
                Phase::Replaying(events) => self.replay(events),
                Phase::Releasing(released) => {
                    // A caller reading on past `Done` ends once the connection is back in
                    // the pool (or given up).
                    if let Some(released) = released {
                        let _ = released.await;
                    }
                    (Phase::Finished, None)
                }
                Phase::Finished => return None,
            };
            self.phase = phase;
            if let Some(item) = item {
                if let Ok(event) = &item {
                    self.ledger.note(event);
                }
                return Some(item);
            }
        }
    }

    /// Opens a stream and reads it to the commit point; falls back, or fails, when that
    /// cannot be had.
    async fn connect(&mut self) -> Transition {
        let (endpoint, route, tally, cancel) =
            (&self.endpoint, &self.route, &self.tally, &self.cancel);
        let opened = route
            .retrier
            .run_until_settled(self.deadline, |attempt| {
                tally.note(&attempt);
                let opening = match (self.work, self.existing.as_deref()) {
                    (Some(work), Some(id)) => Opening::Run(work, id),
                    _ => Opening::Request(self.body.clone()),
                };
                async move { attempt::open(endpoint, route, opening, &attempt.key, cancel).await }
            })
            .await;
        match opened {
            Ok(((mut live, held), lease, permit)) => {
                live.set_total_deadline(self.deadline);
                let streaming = Streaming {
                    live,
                    held: held.into(),
                    lease,
                    permit: Some(permit),
                };
                (Phase::Streaming(Box::new(streaming)), None)
            }
            Err(error)
                if self.existing.is_none()
                    && self.work.is_some_and(|work| work.refused_by(&error)) =>
            {
                // The server does not take this work: plain streams from now on.
                tracing::warn!(error = %error.report(), "background runs refused; streaming without them");
                self.endpoint.refuse(self.route.api);
                self.work = None;
                self.body = stream_body(&self.route, &self.request, None);
                (Phase::Connecting, None)
            }
            Err(error)
                if self.endpoint.config.fallback
                    && self.existing.is_none()
                    && self.restarts == 0
                    && falls_back(&error) =>
            {
                self.fall_back(error).await
            }
            Err(error) => {
                tracing::warn!(error = %error.report(), "stream failed before any answer text");
                self.fail(error, None)
            }
        }
    }

    /// One non-streaming request (with the same protections) answers instead, delivered as
    /// the same events, marked `fallback`.
    async fn fall_back(&mut self, cause: Error) -> Transition {
        self.cancel.fire();
        tracing::warn!(
            error = %cause.report(),
            "streaming failed; falling back to one non-streaming request"
        );
        let body = Bytes::from(crate::api::request_body(
            self.route.api,
            &self.request,
            &self.route.model,
            false,
        ));
        let completed = self
            .endpoint
            .complete(&self.route, body, self.deadline, &self.tally)
            .await;
        match completed {
            Ok(mut response) => {
                response.fallback = true;
                self.replay(response.into_events().into())
            }
            Err(error) => self.fail(error, None),
        }
    }

    /// The next event past the commit point: a held one, else a live one.
    async fn stream(&mut self, mut streaming: Box<Streaming>) -> Transition {
        let event = match streaming.held.pop_front() {
            Some(event) => Ok(event),
            None => match streaming.live.next().await {
                Ok(Some(event)) => Ok(event),
                Ok(None) => Err(Error::incomplete("the stream ended before its final event")),
                Err(error) => Err(error),
            },
        };
        match event {
            Ok(ChatEvent::Done(response)) => self.done(streaming, response),
            Ok(event) => (Phase::Streaming(streaming), Some(Ok(event))),
            Err(cause) => {
                if self.work.is_some() && resumable(&cause) {
                    match self.resume(&mut streaming, &cause).await {
                        Ok(()) => return (Phase::Streaming(streaming), None),
                        Err(why) => {
                            tracing::warn!(error = %why.report(), "the run cannot be read again");
                        }
                    }
                }
                self.broke(streaming, cause)
            }
        }
    }

    /// Reads the run again from after the last event applied, with the key that started it,
    /// retried with that key under the route's retrier (breaker, backoff, retry budget),
    /// within the total deadline. A run that expired (404), a refusal, or a stream that
    /// cannot continue the run is the error.
    async fn resume(&mut self, streaming: &mut Streaming, cause: &Error) -> Result<(), Error> {
        let Some((id, cursor)) = streaming.live.resume_point() else {
            return Err(Error::incomplete(
                "the stream broke before it named its run",
            ));
        };
        if self.resumed_from == Some(cursor) {
            self.stalled_resumes += 1;
            if self.stalled_resumes >= self.endpoint.config.backoff.max_attempts {
                return Err(Error::incomplete(
                    "the run read again kept breaking before its next event",
                ));
            }
        } else {
            self.stalled_resumes = 0;
        }
        self.resumed_from = Some(cursor);
        let (Some(key), Some(path)) = (
            self.cancel.key(),
            self.work.and_then(|work| work.resume_path(&id, cursor)),
        ) else {
            return Err(Error::incomplete("the run is not known"));
        };
        tracing::warn!(%cause, cursor, "stream broke; reading the run again after its last event");
        let (endpoint, timeouts) = (&self.endpoint, &self.route.timeouts);
        let response = self
            .route
            .retrier
            .run_with_key(&key, self.deadline, |_| {
                // A run the service no longer has (404) is final, as every refusal is.
                endpoint.send(Method::Get, &path, &key, true, timeouts)
            })
            .await?;
        if !crate::client::is_event_stream(&response) {
            return Err(Error::protocol("the run was read again without a stream"));
        }
        streaming
            .live
            .resume(response, self.endpoint.config.max_event_bytes);
        self.resumed += 1;
        Ok(())
    }

    /// The answer is complete: the run needs no cancelling, the breaker hears of a success,
    /// and the connection goes back to the pool before the caller gets `Done` (a caller
    /// stops there and drops the stream, and the connection should outlive it).
    fn done(
        &mut self,
        mut streaming: Box<Streaming>,
        mut response: Box<chat_core::ChatResponse>,
    ) -> Transition {
        self.cancel.disarm();
        if let Some(permit) = streaming.permit.take() {
            permit.record(CallOutcome::Success);
        }
        tracing::info!(
            events = streaming.live.events_seen(),
            resumed = self.resumed,
            "stream complete"
        );
        self.tally.stamp(&mut response);
        response.resumed = self.resumed;
        let released = streaming.live.release();
        (
            Phase::Releasing(released),
            Some(Ok(ChatEvent::Done(response))),
        )
    }

    /// The stream broke past the commit point: the key and the breaker hear of it, the run
    /// is abandoned, and the answer restarts (when the policy allows one more) or ends with
    /// an interruption. Nothing is replayed behind the caller's back.
    fn broke(&mut self, mut streaming: Box<Streaming>, cause: Error) -> Transition {
        let class = cause.failure_class();
        streaming.lease.report(KeyOutcome::Failure(class));
        if let Some(permit) = streaming.permit.take() {
            permit.record(if class == FailureClass::Transient {
                CallOutcome::Failure
            } else {
                CallOutcome::Ignored
            });
        }
        self.cancel.fire();
        if let AfterCommit::Restart { max_restarts } = self.endpoint.config.after_commit
            && self.existing.is_none()
            && self.restarts < max_restarts
            && Instant::now() < self.deadline
        {
            self.restarts += 1;
            tracing::warn!(
                %cause,
                restarts = self.restarts,
                "stream broke after the commit point; restarting"
            );
            return (Phase::Connecting, Some(Ok(ChatEvent::Restart)));
        }
        let usage = streaming.live.usage();
        self.fail(cause, usage)
    }

    /// The next of a whole answer's events; `Done` ends the stream.
    fn replay(&mut self, mut events: VecDeque<ChatEvent>) -> Transition {
        match events.pop_front() {
            Some(done @ ChatEvent::Done(_)) => (Phase::Finished, Some(Ok(done))),
            Some(event) => (Phase::Replaying(events), Some(Ok(event))),
            // A whole answer's events end with `Done`; without it the answer is not whole.
            None => self.fail(
                Error::incomplete("the answer ended without its final event"),
                None,
            ),
        }
    }

    /// The end, with an error: the one place a stream's failure is made.
    fn fail(&mut self, cause: Error, usage: Option<chat_core::Usage>) -> Transition {
        (
            Phase::Finished,
            Some(Err(self.ledger.failure(cause, usage))),
        )
    }
}
