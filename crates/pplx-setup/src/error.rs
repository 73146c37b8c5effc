//! The one error `setup` and `config::load` fail with.

use std::fmt;
use std::path::PathBuf;

/// Why the programs' provider could not be set up. Every message is for a person and
/// names what to change; none contains a key.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The config file exists (or was named) but cannot be read.
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, or holds a key we do not know.
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: Box<toml::de::Error>,
    },
    /// A setting (from the file, the options or the environment) cannot be used.
    InvalidValue {
        /// The setting, as the user writes it (`retry.after_commit`, `--cache`, ...).
        name: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// No key is set and the caller asked for one (`SetupOptions::require_key`).
    MissingKey {
        /// The variable holding one key.
        key_env: String,
        /// The variable holding several, comma-separated.
        keys_env: String,
    },
    /// The provider or its cache refused the configuration.
    Provider(chat_core::Error),
    /// The built-in simulator could not start (or this build has none).
    Simulator(std::io::Error),
}

impl Error {
    /// The error with its causes on one line, as the programs print it (`Display` alone
    /// shows this error only; its causes come through `source`).
    pub fn report(&self) -> chat_core::Report<'_> {
        chat_core::Report::new(self)
    }

    pub(crate) fn invalid(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidValue {
            name: name.into(),
            message: message.into(),
        }
    }

    /// Whether the fix is in what the user asked for (a flag, the config file, the
    /// environment) rather than in the machine: programs exit with their usage code then.
    pub fn is_usage(&self) -> bool {
        !matches!(self, Error::Simulator(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ReadConfig { path, .. } => write!(formatter, "cannot read {}", path.display()),
            Error::ParseConfig { path, .. } => write!(formatter, "{}", path.display()),
            Error::InvalidValue { name, message } => write!(formatter, "{name}: {message}"),
            Error::MissingKey { key_env, keys_env } => write!(
                formatter,
                "{key_env} environment variable is required (or {key_env}_1, {key_env}_2, ..., or {keys_env}); run with --sim to answer from the built-in simulator instead"
            ),
            Error::Provider(error) => fmt::Display::fmt(error, formatter),
            Error::Simulator(_) => formatter.write_str("cannot start the built-in simulator"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ReadConfig { source, .. } => Some(source),
            Error::ParseConfig { source, .. } => Some(source.as_ref()),
            // Transparent: the provider's error is shown as this one, its causes follow.
            Error::Provider(error) => std::error::Error::source(error),
            Error::Simulator(error) => Some(error),
            Error::InvalidValue { .. } | Error::MissingKey { .. } => None,
        }
    }
}

impl From<chat_core::Error> for Error {
    fn from(error: chat_core::Error) -> Self {
        Error::Provider(error)
    }
}
