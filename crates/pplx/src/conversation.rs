//! The conversation a question belongs to: the history opened, the conversation continued
//! (`-c`, `--conversation`) or started, and its earlier exchanges sent as context.

use chat_core::Message;
use pplx::history::History;

use crate::session::Session;
use crate::{Args, EXIT_FAILURE, EXIT_USAGE};

/// Opens the history (unless turned off) and picks the conversation: the last one with
/// `-c`, the one named by `--conversation`, else a new one. Returns the earlier exchanges to
/// send as context. A history that cannot be opened is said once; the answer still comes.
pub(crate) fn start_conversation(
    session: &mut Session,
    args: &Args,
    enabled: bool,
) -> Result<Vec<Message>, u8> {
    let continuing = args.continue_last || args.conversation.is_some();
    if !enabled {
        if continuing {
            eprintln!(
                "pplx: --continue needs the history, which is turned off (--no-log or log = false)"
            );
            return Err(EXIT_USAGE);
        }
        return Ok(Vec::new());
    }
    let Some(history) = open_history(continuing)? else {
        return Ok(Vec::new());
    };
    let conversation = continued_conversation(&history, args)?;
    let found = conversation.is_some();
    let (conversation, context) = match conversation {
        Some(id) => {
            let context = history.messages(id).unwrap_or_else(|error| {
                eprintln!("pplx: history: {error}");
                Vec::new()
            });
            // A conversation goes on with the model it was on, unless one is named.
            if args.model.is_none()
                && let Ok(Some(model)) = history.conversation_model(id)
            {
                session.model = model;
            }
            (Some(id), context)
        }
        None => match history.new_conversation() {
            Ok(id) => (Some(id), Vec::new()),
            Err(error) => {
                eprintln!("pplx: history: {error}; this answer is not kept");
                (None, Vec::new())
            }
        },
    };
    if continuing {
        say_continuing(
            conversation.unwrap_or_default(),
            found,
            &context,
            &session.model,
        );
    }
    session.log = conversation.map(|conversation| (history, std::cell::Cell::new(conversation)));
    Ok(context)
}

/// The history, or `None` (said) when it cannot be opened: then the answer is not kept, and
/// a conversation cannot be continued.
pub(crate) fn open_history(continuing: bool) -> Result<Option<History>, u8> {
    let opened = match History::default_path() {
        Some(path) => History::open(&path).map_err(|error| error.to_string()),
        None => Err("no data directory: set XDG_DATA_HOME or HOME".to_owned()),
    };
    match opened {
        Ok(history) => Ok(Some(history)),
        Err(error) => {
            eprintln!("pplx: history: {error}; this answer is not kept");
            if continuing {
                eprintln!("pplx: cannot continue a conversation without the history");
                return Err(EXIT_FAILURE);
            }
            Ok(None)
        }
    }
}

/// The conversation to continue: the one `--conversation` names (which must exist), or the
/// last one with `-c` (`None` when there is none yet), or none.
fn continued_conversation(history: &History, args: &Args) -> Result<Option<i64>, u8> {
    match (args.conversation, args.continue_last) {
        (Some(id), _) => match history.has_conversation(id) {
            Ok(true) => Ok(Some(id)),
            Ok(false) => {
                eprintln!("pplx: no conversation c{id} in the history (see pplx log)");
                Err(EXIT_USAGE)
            }
            Err(error) => {
                eprintln!("pplx: history: {error}");
                Err(EXIT_FAILURE)
            }
        },
        (None, true) => Ok(history.last_conversation().unwrap_or_else(|error| {
            eprintln!("pplx: history: {error}");
            None
        })),
        (None, false) => Ok(None),
    }
}

/// What continuing conversation `id` means: the exchanges sent along, on which model, or
/// that there is nothing to continue.
fn say_continuing(id: i64, found: bool, context: &[Message], model: &str) {
    match context.len() / 2 {
        0 if !found => eprintln!(
            "pplx: nothing to continue: the history has no conversation yet; starting c{id}"
        ),
        0 => eprintln!(
            "pplx: conversation c{id} has no answered exchange yet: nothing to continue, the question is asked on its own"
        ),
        1 => eprintln!("pplx: continuing conversation c{id} on {model}: 1 earlier exchange"),
        exchanges => eprintln!(
            "pplx: continuing conversation c{id} on {model}: {exchanges} earlier exchanges"
        ),
    }
}
