//! Background runs (the Agent API's `background: true`): each streamed run's events are kept,
//! so `GET /v1/responses/{id}?stream=true&starting_after=N` can send them again after event
//! N, and `GET /v1/responses/{id}` can say how the run ended. Runs are forgotten by age, as
//! the service expires them ([`RUN_RETENTION`]: an expired run is a 404), the oldest first
//! should their events pass a memory bound, and a cancelled run at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::wire::Frame;

/// The most async jobs kept (the oldest is forgotten first).
const JOB_CAPACITY: usize = 256;

/// How long a run is kept after it starts: long enough for any reader to come back after a
/// cut (the real service keeps runs far longer), short enough that a simulator serving
/// for days does not hold them all.
pub(crate) const RUN_RETENTION: Duration = Duration::from_secs(30 * 60);

/// The most bytes of events kept over all runs (the oldest runs go first past it): a bound
/// on memory whatever the crowd, far above what thousands of streams in flight need.
const MAX_BYTES: usize = 512 << 20;

/// One background run: its model and its events, in order (event `n` at index `n - 1`).
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) model: String,
    pub(crate) frames: Vec<Frame>,
}

/// The runs kept, oldest first.
#[derive(Debug)]
pub(crate) struct Runs {
    /// Each run's id, when it started, and its size, oldest first.
    order: VecDeque<(String, Instant, usize)>,
    runs: HashMap<String, Arc<Run>>,
    /// Runs started so far (ids stay unique even for identical requests).
    started: u64,
    /// This simulator's own mark in every id, so ids differ between simulators too.
    salt: u32,
    /// The bytes of events kept.
    bytes: usize,
}

impl Default for Runs {
    fn default() -> Self {
        // The clock, the process and a count of simulators in it.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos())
            ^ std::process::id().rotate_left(16)
            ^ made.wrapping_mul(0x9e37_79b9);
        Runs {
            order: VecDeque::new(),
            runs: HashMap::new(),
            started: 0,
            salt,
            bytes: 0,
        }
    }
}

impl Runs {
    /// A new run's id, made unique from `base` (identical requests get distinct runs, and
    /// two simulators never give the same id).
    pub(crate) fn next_id(&mut self, base: &str) -> String {
        self.started += 1;
        format!("{base}_{:08x}{:x}", self.salt, self.started)
    }

    /// Keeps `run` under `id` (from [`next_id`](Runs::next_id)), forgetting the runs past
    /// their age, then the oldest while the events kept pass the memory bound.
    pub(crate) fn start(&mut self, id: String, run: Run) {
        let now = Instant::now();
        let size: usize = run.frames.iter().map(|frame| frame.data.len() + 32).sum();
        while let Some((_, started, kept)) = self.order.front() {
            let expired = now.duration_since(*started) >= RUN_RETENTION;
            if !expired && self.bytes + size <= MAX_BYTES {
                break;
            }
            let kept = *kept;
            if let Some((oldest, _, _)) = self.order.pop_front() {
                self.runs.remove(&oldest);
                self.bytes -= kept;
            }
        }
        self.bytes += size;
        self.order.push_back((id.clone(), now, size));
        self.runs.insert(id, Arc::new(run));
    }

    /// The run `id`, if it is still kept.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Run>> {
        self.runs.get(id).cloned()
    }

    /// Forgets run `id` (cancelled); whether it was kept.
    pub(crate) fn forget(&mut self, id: &str) -> bool {
        let bytes = &mut self.bytes;
        self.order.retain(|(kept, _, size)| {
            let keep = kept != id;
            if !keep {
                *bytes -= size;
            }
            keep
        });
        self.runs.remove(id).is_some()
    }

    /// Runs started so far.
    pub(crate) fn started(&self) -> u64 {
        self.started
    }

    /// Forgets every run, as if they had all expired.
    pub(crate) fn expire_all(&mut self) {
        self.order.clear();
        self.runs.clear();
        self.bytes = 0;
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

/// Sonar's async jobs (`POST /async/chat/completions`, `GET /async/chat/completions/{id}`):
/// each kept with its finished completion, made `IN_PROGRESS` by its first read and
/// `COMPLETED` by the next, as a minutes-long deep research would be seen by a poller. A
/// create that repeats an idempotency key (from the same API key) gets the job it made
/// before, not a second one. Bounded as the runs are: the oldest job is forgotten first.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    order: VecDeque<String>,
    jobs: HashMap<String, Job>,
    /// Job ids by (API key index, idempotency key).
    idempotent: HashMap<(Option<usize>, String), String>,
    /// Jobs started so far.
    started: u64,
}

/// One async job.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) model: String,
    /// The chat completion it ends with.
    pub(crate) completion: serde_json::Value,
    /// Reads so far: the first finds it in progress, the second done.
    pub(crate) reads: u32,
    /// Who made it, and under which idempotency key, to forget both together.
    owner: (Option<usize>, Option<String>),
}

/// The status a job has after `reads` reads.
fn job_status(reads: u32) -> &'static str {
    match reads {
        0 => "CREATED",
        1 => "IN_PROGRESS",
        _ => "COMPLETED",
    }
}

impl Job {
    /// The job as the SDK's `AsyncApiChatCompletionsResponseOutput` has it.
    pub(crate) fn body(&self) -> serde_json::Value {
        let status = job_status(self.reads);
        let mut body = serde_json::json!({
            "id": self.id, "model": self.model, "status": status,
            "created_at": crate::wire::CREATED,
        });
        if self.reads >= 1 {
            body["started_at"] = crate::wire::CREATED.into();
        }
        if status == "COMPLETED" {
            body["completed_at"] = crate::wire::CREATED.into();
            body["response"] = self.completion.clone();
        }
        body
    }

    /// The job as a list shows it (`AsyncApiChatCompletionsResponseSummaryOutput`).
    pub(crate) fn summary(&self) -> serde_json::Value {
        let mut body = self.body();
        if let Some(fields) = body.as_object_mut() {
            fields.remove("response");
        }
        body
    }
}

impl Jobs {
    /// The job for `idempotency_key` from `key_index`, if one was made; otherwise a new one
    /// (its id made from `base`) ending with `completion`. Whether it is new, and the job.
    pub(crate) fn create(
        &mut self,
        key_index: Option<usize>,
        idempotency_key: Option<&str>,
        base: &str,
        model: &str,
        completion: serde_json::Value,
    ) -> (bool, Job) {
        if let Some(key) = idempotency_key
            && let Some(job) = self
                .idempotent
                .get(&(key_index, key.to_owned()))
                .and_then(|id| self.jobs.get(id))
        {
            return (false, job.clone());
        }
        if self.order.len() >= JOB_CAPACITY
            && let Some(oldest) = self.order.pop_front()
            && let Some(job) = self.jobs.remove(&oldest)
            && let (owner, Some(key)) = job.owner
        {
            self.idempotent.remove(&(owner, key));
        }
        self.started += 1;
        let id = format!("{base}_job_{:x}", self.started);
        let job = Job {
            id: id.clone(),
            model: model.to_owned(),
            completion,
            reads: 0,
            owner: (key_index, idempotency_key.map(str::to_owned)),
        };
        if let Some(key) = idempotency_key {
            self.idempotent
                .insert((key_index, key.to_owned()), id.clone());
        }
        self.order.push_back(id.clone());
        self.jobs.insert(id, job.clone());
        (true, job)
    }

    /// Job `id` as this read finds it (each read moves it on), if it is kept.
    pub(crate) fn read(&mut self, id: &str) -> Option<Job> {
        let job = self.jobs.get_mut(id)?;
        job.reads = job.reads.saturating_add(1).min(2);
        Some(job.clone())
    }

    /// The jobs kept, newest first, as a list shows them.
    pub(crate) fn list(&self) -> Vec<serde_json::Value> {
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.jobs.get(id))
            .map(Job::summary)
            .collect()
    }

    /// Jobs started so far (a repeated idempotency key starts none).
    pub(crate) fn started(&self) -> u64 {
        self.started
    }
}

/// The job id of an async job's path (`/async/chat/completions/{id}`).
pub(crate) fn job_id(path: &str) -> Option<&str> {
    let id = path.strip_prefix("/async/chat/completions/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::{Jobs, RUN_RETENTION, Run, Runs};

    fn run() -> Run {
        Run {
            model: "fast".into(),
            frames: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runs_are_forgotten_by_age_not_by_how_many_came_after() {
        let mut runs = Runs::default();
        let first = runs.next_id("resp_a");
        runs.start(first.clone(), run());
        for _ in 0..5_000 {
            let id = runs.next_id("resp_b");
            runs.start(id, run());
        }
        assert!(runs.get(&first).is_some(), "a crowd does not push it out");
        tokio::time::advance(RUN_RETENTION).await;
        let last = runs.next_id("resp_c");
        runs.start(last.clone(), run());
        assert!(runs.get(&first).is_none(), "past its age it is gone");
        assert!(runs.get(&last).is_some());
        assert_eq!(runs.order.len(), 1);
        // Ids differ between simulators, for the same request.
        let mut other = Runs::default();
        assert_ne!(other.next_id("resp_a"), first);
    }

    #[test]
    fn a_repeated_idempotency_key_gets_the_same_job_and_only_from_the_same_key() {
        let mut jobs = Jobs::default();
        let completion = serde_json::json!({"id": "c"});
        let (new, first) = jobs.create(Some(0), Some("k1"), "x", "sonar", completion.clone());
        assert!(new);
        let (new, again) = jobs.create(Some(0), Some("k1"), "x", "sonar", completion.clone());
        assert!(!new);
        assert_eq!(again.id, first.id);
        // Another API key's job under the same idempotency key is its own.
        let (new, other) = jobs.create(Some(1), Some("k1"), "x", "sonar", completion.clone());
        assert!(new);
        assert_ne!(other.id, first.id);
        // Without a key, every create is a job.
        assert!(
            jobs.create(Some(0), None, "x", "sonar", completion.clone())
                .0
        );
        assert_eq!(jobs.started(), 3);
    }

    #[test]
    fn a_job_is_created_then_in_progress_then_completed_with_its_answer() {
        let mut jobs = Jobs::default();
        let (_, job) = jobs.create(None, None, "x", "sonar", serde_json::json!({"id": "c"}));
        assert_eq!(job.body()["status"], "CREATED");
        assert!(job.body().get("response").is_none());
        assert_eq!(jobs.read(&job.id).unwrap().body()["status"], "IN_PROGRESS");
        let done = jobs.read(&job.id).unwrap().body();
        assert_eq!(done["status"], "COMPLETED");
        assert_eq!(done["response"]["id"], "c");
        assert_eq!(jobs.read(&job.id).unwrap().body()["status"], "COMPLETED");
        assert!(jobs.list()[0].get("response").is_none());
        assert!(jobs.read("nope").is_none());
    }

    #[test]
    fn the_store_is_bounded_and_forgets_the_oldest_jobs_keys_with_them() {
        let mut jobs = Jobs::default();
        let first = jobs
            .create(None, Some("k0"), "x", "sonar", serde_json::json!({}))
            .1;
        for index in 1..=super::JOB_CAPACITY {
            let key = format!("k{index}");
            jobs.create(None, Some(&key), "x", "sonar", serde_json::json!({}));
        }
        assert!(jobs.read(&first.id).is_none());
        assert_eq!(jobs.list().len(), super::JOB_CAPACITY);
        assert_eq!(jobs.idempotent.len(), super::JOB_CAPACITY);
        // Its key is free again: a new job.
        assert!(
            jobs.create(None, Some("k0"), "x", "sonar", serde_json::json!({}))
                .0
        );
    }
}
