use std::fmt;

use tokio::time::Instant;

use crate::keys::NoKeyAvailable;

/// Why the retry driver stopped without an error of the operation's own to return.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The circuit breaker is open: calls fail fast.
    CircuitOpen {
        /// When it lets a probe through.
        until: Instant,
    },
    /// Every key is cooling down or disabled, and the first to free up is too far away.
    NoKeyAvailable(NoKeyAvailable),
    /// The operation's total deadline passed.
    DeadlineExceeded,
}

impl Error {
    /// How long until the condition may clear: the breaker's open time, or the first key's
    /// cooldown, measured from now. `None` when waiting cannot help.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        let until = match self {
            Error::CircuitOpen { until } => *until,
            Error::NoKeyAvailable(unavailable) => unavailable.next_free?,
            Error::DeadlineExceeded => return None,
        };
        Some(until.saturating_duration_since(Instant::now()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::CircuitOpen { .. } => {
                let seconds = self.retry_after().unwrap_or_default().as_secs_f64().ceil();
                write!(
                    formatter,
                    "circuit breaker open, next try in {seconds:.0} s"
                )
            }
            Error::NoKeyAvailable(unavailable) => match self.retry_after() {
                Some(wait) => write!(
                    formatter,
                    "rate limited on all {} keys, next free in {:.0} s",
                    unavailable.keys,
                    wait.as_secs_f64().ceil()
                ),
                None if unavailable.keys == 0 => formatter.write_str("no API key configured"),
                None => write!(formatter, "all {} API keys were rejected", unavailable.keys),
            },
            Error::DeadlineExceeded => formatter.write_str("total deadline exceeded"),
        }
    }
}

impl std::error::Error for Error {}
