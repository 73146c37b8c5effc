//! The interactive session: a line editor (rustyline) on a blocking thread, slash commands,
//! and each question asked in the conversation so far.

use chat_core::Message;

use crate::session::{Mode, Session, ask};
use crate::{EXIT_FAILURE, EXIT_INTERRUPTED};

/// What `/help` says.
fn help() -> String {
    format!(
        "\
/model          the model in use
/model NAME     ask with NAME from now on: {}
/clear          start a new conversation
/help           this list
/exit, /quit    leave (also Ctrl-D; Ctrl-C at the prompt)
Anything else is a question, asked in the conversation so far; Ctrl-C stops an answer.",
        provider_perplexity::MODEL_NAMES
    )
}

pub(crate) async fn interactive(mut session: Session, context: Vec<Message>) -> u8 {
    session.mode = Mode::Interactive;
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(error) => {
            eprintln!("pplx: cannot start the line editor: {error}");
            return EXIT_FAILURE;
        }
    };
    // The lines typed, kept between sessions beside the history (as private as it), unless
    // nothing is to be kept (--no-log).
    let lines = session
        .log
        .is_some()
        .then(pplx::history::History::default_path)
        .flatten()
        .map(|path| path.with_file_name("line-history"));
    if let Some(path) = &lines {
        let _ = editor.load_history(path);
    }
    eprintln!(
        "pplx {} — ask anything; /help lists the commands. Ctrl-C stops an answer; at the prompt it exits.",
        session.model
    );
    // A resumed conversation goes on from its exchanges so far.
    let mut history = context;
    // Lines typed while an answer streamed, asked in turn.
    let mut typed_ahead = std::collections::VecDeque::new();
    loop {
        let line = match typed_ahead.pop_front() {
            Some(line) => {
                eprintln!("› {line}");
                line
            }
            None => match read_line(editor).await {
                Ok((returned, line)) => {
                    editor = returned;
                    line.trim().to_owned()
                }
                Err(code) => return code,
            },
        };
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line.as_str());
        if let Some(path) = &lines {
            keep_lines(&mut editor, path);
        }
        if line.starts_with('/') {
            if command(&mut session, &mut history, &line).await {
                return 0;
            }
            continue;
        }
        // Ctrl-C during an answer cancels it and comes back here. What is typed meanwhile is
        // not echoed into the answer, and is asked after it.
        let echo = crate::typeahead::EchoOff::new();
        let _ = ask(&session, &mut history, &line).await;
        drop(echo);
        typed_ahead.extend(crate::typeahead::pending_lines());
    }
}

/// One line from the editor, on a blocking thread (it blocks while it waits: not a runtime
/// worker, so timers, the embedded simulator and the cache run meanwhile), and the editor
/// back. `Err` is the session's exit code: Ctrl-C at the prompt, Ctrl-D, a failure.
async fn read_line(
    mut editor: rustyline::DefaultEditor,
) -> Result<(rustyline::DefaultEditor, String), u8> {
    let read = tokio::task::spawn_blocking(move || {
        let line = editor.readline("› ");
        (editor, line)
    })
    .await;
    let Ok((editor, line)) = read else {
        eprintln!("pplx: the line editor stopped");
        return Err(EXIT_FAILURE);
    };
    match line {
        Ok(line) => Ok((editor, line)),
        Err(rustyline::error::ReadlineError::Interrupted) => Err(EXIT_INTERRUPTED),
        Err(rustyline::error::ReadlineError::Eof) => Err(0),
        Err(error) => {
            eprintln!("pplx: {error}");
            Err(EXIT_FAILURE)
        }
    }
}

/// Whether `model` can be asked: a name Perplexity serves (checked here), and, for a
/// `provider/model` name, one the model list has when the list can be read (`pplx models`).
async fn check_model(session: &Session, model: &str) -> Result<(), String> {
    let config = session.perplexity.config();
    config
        .check_model(model)
        .map_err(|error| error.report().to_string())?;
    let resolved = config.aliases.resolve(model);
    if !resolved.contains('/') {
        return Ok(());
    }
    let listed = session
        .models
        .get_or_init(|| async { session.perplexity.models().await.ok() })
        .await;
    match listed {
        Some(models) if !models.is_empty() && !models.iter().any(|known| known == resolved) => Err(
            format!("the Agent API does not list {resolved:?} (pplx models shows what it does)"),
        ),
        _ => Ok(()),
    }
}

/// Saves the line history to `path`, readable by its owner only (it holds questions): the
/// file is made private before anything is written to it (the editor rewrites it in place).
fn keep_lines(editor: &mut rustyline::DefaultEditor, path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let made = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path);
        let private = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        if made.is_err() || private.is_err() {
            return;
        }
    }
    let _ = editor.save_history(path);
}

/// Runs a slash command; `true` when it ends the session.
async fn command(session: &mut Session, history: &mut Vec<Message>, line: &str) -> bool {
    match line
        .split_once(' ')
        .map_or((line, ""), |(command, rest)| (command, rest.trim()))
    {
        ("/exit" | "/quit", _) => return true,
        ("/clear", _) => {
            history.clear();
            // A new conversation in the history too.
            if let Some((log, conversation)) = &session.log
                && let Ok(id) = log.new_conversation()
            {
                conversation.set(id);
            }
            eprintln!("(conversation cleared)");
        }
        ("/help", _) => eprintln!("{}", help()),
        ("/model", "") => eprintln!("model: {}", session.model),
        ("/model", model) => match check_model(session, model).await {
            Ok(()) => {
                session.model = model.to_owned();
                eprintln!("model: {model}");
            }
            Err(reason) => eprintln!("{reason}; still on {}", session.model),
        },
        (command, _) => eprintln!("unknown command {command}; /help lists the commands"),
    }
    false
}
