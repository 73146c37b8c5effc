//! Background runs (the Agent API's `background: true`): each streamed run's events are kept,
//! so `GET /v1/responses/{id}?stream=true&starting_after=N` can send them again after event
//! N, and `GET /v1/responses/{id}` can say how the run ended. Runs are kept in a bounded
//! store (the oldest is forgotten first: an expired run is a 404), and a cancelled run is
//! forgotten at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::wire::Frame;

/// The most runs kept.
const CAPACITY: usize = 256;

/// One background run: its model and its events, in order (event `n` at index `n - 1`).
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) model: String,
    pub(crate) frames: Vec<Frame>,
}

/// The runs kept, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    order: VecDeque<String>,
    runs: HashMap<String, Arc<Run>>,
    /// Runs started so far (ids stay unique even for identical requests).
    started: u64,
}

impl Runs {
    /// A new run's id, made unique from `base` (identical requests get distinct runs).
    pub(crate) fn next_id(&mut self, base: &str) -> String {
        self.started += 1;
        format!("{base}_{:x}", self.started)
    }

    /// Keeps `run` under `id` (from [`next_id`](Runs::next_id)), forgetting the oldest run
    /// when full.
    pub(crate) fn start(&mut self, id: String, run: Run) {
        if self.order.len() >= CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.runs.remove(&oldest);
        }
        self.order.push_back(id.clone());
        self.runs.insert(id, Arc::new(run));
    }

    /// The run `id`, if it is still kept.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Run>> {
        self.runs.get(id).cloned()
    }

    /// Forgets run `id` (cancelled); whether it was kept.
    pub(crate) fn forget(&mut self, id: &str) -> bool {
        self.order.retain(|kept| kept != id);
        self.runs.remove(id).is_some()
    }

    /// Forgets every run, as if they had all expired.
    pub(crate) fn expire_all(&mut self) {
        self.order.clear();
        self.runs.clear();
    }
}

/// The run id and `starting_after` of a retrieve path (`/v1/responses/{id}`, with
/// `stream=true&starting_after=N` in `query` to stream it again after event N).
pub(crate) fn retrieve(path: &str, query: &str) -> Option<(String, Option<usize>, bool)> {
    let id = path
        .strip_prefix("/v1/responses/")
        .or_else(|| path.strip_prefix("/v1/agent/"))?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    let mut stream = false;
    let mut after = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("stream", value)) => stream = value == "true",
            Some(("starting_after", value)) => after = value.parse().ok(),
            _ => {}
        }
    }
    Some((id.to_owned(), after, stream))
}
