//! The environment variables the programs read besides the keys and the base URL (which
//! [`setup`](crate::setup) reads): each one named here once, read and checked here.

use std::time::Duration;

use crate::Error;

/// A bound on each whole call, in milliseconds (as the official MCP server reads it).
pub const TIMEOUT_ENV: &str = "PERPLEXITY_TIMEOUT_MS";

/// How much the programs log: `error`, `warn`, `info`, `debug` or `trace`.
pub const LOG_LEVEL_ENV: &str = "PERPLEXITY_LOG_LEVEL";

/// The longest [`TIMEOUT_ENV`] taken: a day. A bound, not an invitation to overflow a
/// deadline.
const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// A variable's value, trimmed; `None` when it is unset, blank or not Unicode.
pub fn variable(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// A comma-separated variable as a list (blank items dropped).
pub fn list(name: &str) -> Vec<String> {
    variable(name)
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// [`TIMEOUT_ENV`] as a duration (clamped to a day), `None` when unset.
///
/// # Errors
/// [`Error::InvalidValue`] when it is not a positive number of milliseconds.
pub fn total_timeout() -> Result<Option<Duration>, Error> {
    timeout_from(variable(TIMEOUT_ENV).as_deref())
}

fn timeout_from(text: Option<&str>) -> Result<Option<Duration>, Error> {
    let Some(text) = text else {
        return Ok(None);
    };
    match text.parse::<u64>() {
        Ok(millis) if millis > 0 => Ok(Some(Duration::from_millis(millis.min(MAX_TIMEOUT_MS)))),
        _ => Err(Error::invalid(
            TIMEOUT_ENV,
            format!("{text:?}: a positive number of milliseconds"),
        )),
    }
}

/// How much to log, from [`LOG_LEVEL_ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogLevel {
    /// Failures only.
    Error,
    /// Failures and what was worked around (the default).
    Warn,
    /// Each request.
    Info,
    /// Each attempt.
    Debug,
    /// Everything.
    Trace,
}

/// [`LOG_LEVEL_ENV`] (any case); `Warn` when unset.
///
/// # Errors
/// A value that is no level (`verbose`), naming the levels; the caller says so and logs at
/// `Warn`.
pub fn log_level() -> Result<LogLevel, Error> {
    level_from(&variable(LOG_LEVEL_ENV).unwrap_or_default())
}

fn level_from(text: &str) -> Result<LogLevel, Error> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "error" => LogLevel::Error,
        "" | "warn" | "warning" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        _ => {
            return Err(Error::invalid(
                LOG_LEVEL_ENV,
                format!(
                    "{text:?} is no level: use error, warn, info, debug or trace (warn is used)"
                ),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_is_a_positive_number_of_milliseconds_clamped_to_a_day() {
        assert_eq!(timeout_from(None).unwrap(), None);
        assert_eq!(
            timeout_from(Some("1500")).unwrap(),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(
            timeout_from(Some("99999999999999999")).unwrap(),
            Some(Duration::from_millis(MAX_TIMEOUT_MS))
        );
        for bad in ["0", "-5", "1.5", "soon", "18446744073709551616"] {
            let error = timeout_from(Some(bad)).unwrap_err();
            assert!(error.is_usage(), "{bad}");
            assert!(error.to_string().contains(TIMEOUT_ENV), "{error}");
        }
    }

    #[test]
    fn log_levels_in_any_case_and_warn_otherwise() {
        assert_eq!(level_from("DEBUG").unwrap(), LogLevel::Debug);
        assert_eq!(level_from("error").unwrap(), LogLevel::Error);
        assert_eq!(level_from("").unwrap(), LogLevel::Warn);
        let said = level_from("verbose").unwrap_err().to_string();
        assert!(
            said.contains(LOG_LEVEL_ENV) && said.contains("debug"),
            "an unknown level is said (issue 36): {said}"
        );
    }
}
