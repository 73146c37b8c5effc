//! Work the server keeps going on its own, whatever the API calls it (the Agent API's
//! background runs, Sonar's async jobs; each API says what it has through
//! `Protocol::long_running`): the one rule that decides when an answer runs that way, the
//! one loop that creates such work and polls it to its answer, starting a run to read later,
//! and the guard that cancels work its caller abandoned.

use std::sync::Arc;

use bytes::Bytes;
use chat_core::{ChatRequest, ChatResponse, Error, TimeoutPhase};
use resilience::ApiKey;
use tokio::time::Instant;

use crate::api::LongRunning;
use crate::client::RunSlot;
use crate::endpoint::{Endpoint, Method, Route, Tally};

/// The long-running work an answer to `request` on `route` runs as (a stream that can be
/// read again, when `streaming`; a whole answer polled to its end, when not), or `None` for a
/// plain request. The one rule for both: resuming must be on and the API must have such work
/// for the model; then the caller's own `background` value decides, and without one, the
/// work is used unless the server refused it before.
pub(crate) fn long_running(
    endpoint: &Endpoint,
    route: &Route,
    request: &ChatRequest,
    streaming: bool,
) -> Option<&'static dyn LongRunning> {
    if !endpoint.config.resume {
        return None;
    }
    let work = route
        .api
        .protocol()
        .long_running(&route.model, streaming, &endpoint.config)?;
    let wanted = match request.options.get("background") {
        Some(asked) => asked.as_bool() == Some(true),
        None => !endpoint.refused(route.api),
    };
    wanted.then_some(work)
}

/// A whole answer as `work`: created (under the retrier, keys rotating), then read with the
/// key that created it (waits from `poll_first_delay`, doubling to `poll_max_delay`) until it
/// ends, within `deadline`. An endpoint that refuses the work is asked plainly, from now on.
/// A caller who leaves, or the deadline, cancels work that can be cancelled.
pub(crate) async fn whole(
    endpoint: &Arc<Endpoint>,
    route: &Route,
    request: &ChatRequest,
    work: &'static dyn LongRunning,
    deadline: Instant,
) -> Result<ChatResponse, Error> {
    let tally = Tally::default();
    let (path, body) = work.create(request, &route.model, false);
    let created = endpoint
        .post(route, path, Bytes::from(body), deadline, &tally, kept)
        .await;
    let (mut bytes, key) = match created {
        Ok(created) => created,
        Err(error) if work.refused_by(&error) => {
            tracing::warn!(error = %error.report(), "long-running work refused; asking plainly");
            endpoint.refuse(route.api);
            let plain = crate::api::request_body(route.api, request, &route.model, false);
            return endpoint
                .complete(route, Bytes::from(plain), deadline, &tally)
                .await;
        }
        Err(error) => return Err(error),
    };
    let (id, going) = work.state(&bytes);
    if going && !id.is_empty() {
        let cancel = CancelOnDrop::new(endpoint.clone(), work);
        cancel.arm(&id, &key);
        bytes = poll(endpoint, route, work, &id, &key, deadline).await?;
        cancel.disarm();
    }
    let mut response = endpoint.decode(&bytes, |body| work.answer(body))?;
    tally.stamp(&mut response);
    Ok(response)
}

/// Reads the work `id` with `key` until it ended, waiting from `poll_first_delay`, doubling to
/// `poll_max_delay`, within `deadline`; its last body. Each read is retried with the same key
/// under the route's retrier.
async fn poll(
    endpoint: &Endpoint,
    route: &Route,
    work: &dyn LongRunning,
    id: &str,
    key: &ApiKey,
    deadline: Instant,
) -> Result<Bytes, Error> {
    let path = work.read_path(id);
    let mut delay = endpoint.config.poll_first_delay;
    loop {
        let until = resilience::backoff::later(Instant::now(), delay);
        if until >= deadline {
            return Err(Error::timeout(TimeoutPhase::Total));
        }
        tokio::time::sleep_until(until).await;
        delay = delay.saturating_mul(2).min(endpoint.config.poll_max_delay);
        let bytes = endpoint.get(route, &path, key, deadline, kept).await?;
        if !work.state(&bytes).1 {
            return Ok(bytes);
        }
    }
}

/// A body kept as it is: its state is read from it, and its answer once the work ended.
fn kept(body: &[u8]) -> Result<Bytes, Error> {
    Ok(Bytes::copy_from_slice(body))
}

/// Starts `request` as long-running work that streams (an Agent API background run) and
/// returns its id at once.
pub(crate) async fn start(
    endpoint: &Endpoint,
    route: &Route,
    request: &ChatRequest,
) -> Result<String, Error> {
    let Some(work) = route
        .api
        .protocol()
        .long_running(&route.model, true, &endpoint.config)
    else {
        return Err(Error::config(format!(
            "{:?} is answered by chat completions, which runs nothing in the background: ask a provider/model, an effort level (fast, low, medium, high, xhigh), or api = agent",
            route.model
        )));
    };
    let (path, body) = work.create(request, &route.model, false);
    let deadline = resilience::backoff::later(Instant::now(), route.timeouts.headers);
    let (bytes, _key) = endpoint
        .post(
            route,
            path,
            Bytes::from(body),
            deadline,
            &Tally::default(),
            kept,
        )
        .await?;
    let (id, _) = work.state(&bytes);
    if id.is_empty() {
        return Err(Error::protocol(
            "the server started a run without naming it",
        ));
    }
    Ok(id)
}

/// Cancels abandoned work on the server (an Agent API run: `POST /v1/agent/{id}/cancel`, as
/// the official server does), so that a caller who leaves, or a stream that breaks, stops its
/// billing. It learns the work's id and key as they are reported, is disarmed when the work
/// completes, and sends the cancel when dropped while armed.
pub(crate) struct CancelOnDrop {
    endpoint: Arc<Endpoint>,
    work: Option<&'static dyn LongRunning>,
    run: RunSlot,
    /// A run started detached is never cancelled by a reader who leaves: it was meant to
    /// run on its own, and can be attached to again.
    keeps_runs: bool,
}

impl CancelOnDrop {
    /// A guard for `work` (none: nothing to cancel).
    pub(crate) fn new(
        endpoint: Arc<Endpoint>,
        work: impl Into<Option<&'static dyn LongRunning>>,
    ) -> Self {
        CancelOnDrop {
            endpoint,
            work: work.into(),
            run: RunSlot::default(),
            keeps_runs: false,
        }
    }

    /// For a reader of a detached run: nothing is ever cancelled.
    pub(crate) fn keeping(endpoint: Arc<Endpoint>, work: &'static dyn LongRunning) -> Self {
        CancelOnDrop {
            endpoint,
            work: Some(work),
            run: RunSlot::default(),
            keeps_runs: true,
        }
    }

    /// Where a stream records the run it names, when there is work to guard.
    pub(crate) fn slot(&self) -> Option<RunSlot> {
        self.work.map(|_| self.run.clone())
    }

    /// The work `id`, started with `key`, is going.
    fn arm(&self, id: &str, key: &ApiKey) {
        *self.run.lock() = Some((id.to_owned(), key.clone()));
    }

    /// The key that started the run, while it is known and armed (a resume reads it with
    /// the same key).
    pub(crate) fn key(&self) -> Option<ApiKey> {
        self.run.lock().as_ref().map(|(_, key)| key.clone())
    }

    /// The work ended on its own: nothing to cancel.
    pub(crate) fn disarm(&self) {
        *self.run.lock() = None;
    }

    /// Cancels the work now (a restart abandons it), then forgets it.
    pub(crate) fn fire(&self) {
        let run = self.run.lock().take();
        let Some((id, key)) = run else { return };
        let path = self.work.and_then(|work| work.cancel_path(&id));
        let (Some(path), false) = (path, self.keeps_runs) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let endpoint = self.endpoint.clone();
        runtime.spawn(async move {
            let method = Method::Post(Bytes::from_static(b"{}"));
            let timeouts = endpoint.config.timeouts;
            match endpoint.send(method, &path, &key, false, &timeouts).await {
                Ok(_) => tracing::info!(run = %id, "cancelled the abandoned run"),
                // The run may already be over; nothing to do either way.
                Err(error) => {
                    tracing::debug!(run = %id, error = %error.report(), "cancelling the run failed");
                }
            }
        });
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.fire();
    }
}
