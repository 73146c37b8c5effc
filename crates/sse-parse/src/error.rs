use std::fmt;

/// Why a stream could not be parsed.
///
/// Limit errors end the stream: the parser drops the offending line or event and returns the
/// same error from every later [`feed`](crate::EventParser::feed) until it is
/// [`finish`](crate::EventParser::finish)ed, so no event after the breach is ever mistaken for
/// a complete one.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A line grew past [`Limits::max_line`](crate::Limits::max_line) bytes before its end.
    LineTooLong {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// An event's data buffer (values plus one LF per `data` line) grew past
    /// [`Limits::max_event_data`](crate::Limits::max_event_data) bytes.
    EventTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The body the events were read from failed (only from the `stream` adapter).
    Body(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// Whether a configured size limit was exceeded (the input is hostile or broken).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Error::LineTooLong { .. } | Error::EventTooLarge { .. }
        )
    }

    /// Whether the underlying body failed, rather than the parser.
    pub fn is_body(&self) -> bool {
        matches!(self, Error::Body(_))
    }

    /// A copy of a limit error, to report it again; `None` for a body error.
    pub(crate) fn clone_limit(&self) -> Option<Error> {
        match self {
            Error::LineTooLong { limit } => Some(Error::LineTooLong { limit: *limit }),
            Error::EventTooLarge { limit } => Some(Error::EventTooLarge { limit: *limit }),
            Error::Body(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LineTooLong { limit } => {
                write!(formatter, "event stream line longer than {limit} bytes")
            }
            Error::EventTooLarge { limit } => {
                write!(
                    formatter,
                    "event stream event data larger than {limit} bytes"
                )
            }
            Error::Body(_) => formatter.write_str("event stream body failed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Body(source) => Some(source.as_ref()),
            _ => None,
        }
    }
}
