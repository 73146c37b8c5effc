//! The endpoints the simulator serves, as the router names them.

/// An endpoint: each API's chat route, and the routes of runs and jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Sonar,
    Agent,
    Search,
    /// `POST /v1/agent/{id}/cancel`.
    Cancel,
    /// `GET /v1/responses/{id}` (with `stream=true&starting_after=N`: the run's events again).
    Retrieve,
    /// `POST /async/chat/completions`: a Sonar request as an async job.
    AsyncCreate,
    /// `GET /async/chat/completions/{id}`: the job as it stands.
    AsyncGet,
    /// `GET /async/chat/completions`: the jobs kept.
    AsyncList,
}
