//! Background runs: `--detach` starts one and prints its id; `pplx attach [ID]` reads it into
//! the history.

use chat_core::Message;
use pplx::history::Entry;

use crate::conversation::open_history;
use crate::session::{Session, advice, ask, request, session};
use crate::{Args, EXIT_FAILURE, EXIT_USAGE, write_stdout};

/// `--detach`: the question starts a background run; its id goes to stdout (and the
/// history, so `pplx attach` finds it).
pub(crate) async fn detach(session: &Session, context: &[Message], question: &str) -> u8 {
    if session._sim.is_some() {
        // Its runs end with this process: an id printed now could never be attached.
        eprintln!(
            "pplx: --detach needs a server that outlives this command, and the built-in simulator ends with it: run pplx-sim and point PERPLEXITY_BASE_URL at it with any PERPLEXITY_API_KEY (a simulator takes any), or set a real key"
        );
        return EXIT_USAGE;
    }
    let request = request(session, context, question);
    match session.perplexity.start_run(request).await {
        Ok(id) => {
            if let Some((history, conversation)) = &session.log {
                let (model, api) = session.perplexity.resolve(&session.model);
                let mut entry = Entry::default();
                entry.conversation = conversation.get();
                entry.question = question.to_owned();
                entry.model = model;
                entry.api = api.as_str().to_owned();
                entry.simulated = session._sim.is_some();
                entry.run_id = Some(id.clone());
                entry.detached = true;
                entry.filters = session.filters_kept();
                if let Err(error) = history.record(&entry) {
                    eprintln!("pplx: history: {error}; pplx attach needs the id: {id}");
                }
            }
            write_stdout(format!("{id}\n").as_bytes())
        }
        Err(error) => {
            eprintln!("pplx: {}", advice(&error, session.mode));
            if error.kind() == chat_core::ErrorKind::Config {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            }
        }
    }
}

/// `pplx attach [ID]`: the run (default: the last detached one), streamed and kept.
pub(crate) async fn attach_run(
    args: &Args,
    file: pplx_setup::config::FileConfig,
    id: Option<&str>,
) -> u8 {
    let Some(history) = open_history(true).ok().flatten() else {
        return EXIT_FAILURE;
    };
    let found = match id {
        Some(id) => history.detached_run(Some(id)),
        None => history.detached_run(None),
    };
    // A run this history did not start (or a question that began with `attach`).
    let unknown = matches!(found, Ok(None)) && id.is_some();
    let (run_id, question, model, conversation) = match found {
        Ok(Some(found)) => found,
        Ok(None) if id.is_some() => {
            // A run started elsewhere: read it on the default model's deadlines.
            (
                id.unwrap_or_default().to_owned(),
                String::new(),
                String::new(),
                None,
            )
        }
        Ok(None) => {
            eprintln!("pplx: no detached run in the history: start one with pplx --detach \"...\"");
            return EXIT_USAGE;
        }
        Err(error) => {
            eprintln!("pplx: history: {error}");
            return EXIT_FAILURE;
        }
    };
    let mut session = match session(args, file, Vec::new(), None).await {
        Ok(session) => session,
        Err(code) => return code,
    };
    if !model.is_empty() {
        session.model = model;
    }
    if !args.no_log {
        let conversation = conversation
            .map(Ok)
            .unwrap_or_else(|| history.new_conversation());
        if let Ok(conversation) = conversation {
            session.log = Some((history, std::cell::Cell::new(conversation)));
        }
    }
    session.attached = Some(run_id.clone());
    let mut context = Vec::new();
    let code = ask(&session, &mut context, &question).await;
    if unknown && code != 0 {
        eprintln!(
            "pplx: {run_id:?} is no run this history started; to ask a question that begins with `attach`, quote it: pplx \"attach {run_id} ...\""
        );
    }
    code
}
