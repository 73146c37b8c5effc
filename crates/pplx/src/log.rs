//! `pplx log`: the history, read back. `pplx log` lists recent entries, `pplx log search
//! WORDS` finds entries by their words (SQLite FTS5), `pplx log show ID` prints an answer
//! again with its sources; `--json` gives one JSON object per entry and line.

use std::io::Write;

use clap::{Args, Subcommand};
use pplx::history::{Entry, History, format_time};

/// `pplx log [--limit N] [--json] [search WORDS | show ID]`.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    #[command(subcommand)]
    action: Option<LogAction>,
    /// How many entries to list.
    #[arg(long, default_value_t = 20, global = true)]
    limit: usize,
    /// One JSON object per entry and line.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum LogAction {
    /// Entries whose question or answer has every one of these words.
    Search {
        /// The words.
        #[arg(required = true)]
        words: Vec<String>,
    },
    /// One entry, whole, with its sources; or a whole conversation (`c3`).
    Show {
        /// An entry's number (the first column of `pplx log`), or a conversation's (`c3`).
        #[arg(value_parser = parse_target)]
        id: Target,
    },
}

/// What `pplx log show` shows.
#[derive(Debug, Clone, Copy)]
enum Target {
    Entry(i64),
    Conversation(i64),
}

fn parse_target(text: &str) -> Result<Target, String> {
    if text.starts_with(['c', 'C']) {
        return pplx::history::parse_conversation(text).map(Target::Conversation);
    }
    text.parse().map(Target::Entry).map_err(|_| {
        format!("{text:?} is neither an entry (12) nor a conversation (c3), as pplx log shows them")
    })
}

pub(crate) fn run(args: &LogArgs) -> u8 {
    let Some(path) = History::default_path() else {
        eprintln!("pplx: no data directory: set XDG_DATA_HOME or HOME");
        return 1;
    };
    let history = match History::open(&path) {
        Ok(history) => history,
        Err(error) => {
            eprintln!("pplx: history: {error} ({})", path.display());
            return 1;
        }
    };
    let entries = match &args.action {
        None => history.recent(args.limit),
        Some(LogAction::Search { words }) => history.search(words, args.limit),
        Some(LogAction::Show {
            id: Target::Entry(id),
        }) => match history.get(*id) {
            Ok(Some(entry)) => {
                show(&entry, args.json);
                return 0;
            }
            Ok(None) => {
                eprintln!("pplx: no entry {id} in the history");
                return 1;
            }
            Err(error) => Err(error),
        },
        Some(LogAction::Show {
            id: Target::Conversation(id),
        }) => match history.conversation(*id) {
            Ok(entries) if entries.is_empty() => {
                eprintln!("pplx: no conversation c{id} in the history");
                return 1;
            }
            Ok(entries) => {
                for (index, entry) in entries.iter().enumerate() {
                    if index > 0 && !args.json {
                        let _ = writeln!(std::io::stdout());
                    }
                    show(entry, args.json);
                }
                return 0;
            }
            Err(error) => Err(error),
        },
    };
    match entries {
        Ok(entries) if entries.is_empty() && !args.json => {
            // Said on stderr, so stdout stays empty for scripts.
            match &args.action {
                Some(LogAction::Search { .. }) => eprintln!("pplx: no entry matches"),
                _ => eprintln!("pplx: the history is empty: questions asked are kept here"),
            }
            0
        }
        Ok(entries) => {
            list(&entries, args.json);
            0
        }
        Err(error) => {
            eprintln!("pplx: history: {error}");
            1
        }
    }
}

fn list(entries: &[Entry], json: bool) {
    let mut stdout = std::io::stdout().lock();
    for entry in entries {
        if json {
            let _ = serde_json::to_writer(&mut stdout, entry);
            let _ = stdout.write_all(b"\n");
            continue;
        }
        let question: String = entry.question.chars().take(70).collect();
        let ellipsis = if entry.question.chars().count() > 70 {
            "…"
        } else {
            ""
        };
        let status = match &entry.error_kind {
            Some(kind) => format!(" [{kind}]"),
            None => String::new(),
        };
        let _ = writeln!(
            stdout,
            "{:>5}  {}  c{:<4} {:<20} {question}{ellipsis}{status}",
            entry.id,
            format_time(entry.at),
            entry.conversation,
            entry.model
        );
    }
}

fn show(entry: &Entry, json: bool) {
    let mut stdout = std::io::stdout().lock();
    if json {
        let _ = serde_json::to_writer(&mut stdout, entry);
        let _ = stdout.write_all(b"\n");
        return;
    }
    let styled = crate::output::styled_terminal();
    let (bold, dim, reset) = if styled {
        ("\x1b[1m", "\x1b[2m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    let _ = writeln!(stdout, "{bold}{}{reset}", entry.question);
    let mut facts = vec![
        format_time(entry.at),
        format!("conversation {}", entry.conversation),
        entry.model.clone(),
    ];
    if let Some(cost) = entry.cost {
        facts.push(format!("${cost:.4}"));
    }
    for attached in &entry.attachments {
        facts.push(format!(
            "attached {} ({} bytes)",
            attached.name, attached.bytes
        ));
    }
    for (flag, name) in [
        (entry.fallback, "fallback"),
        (entry.cached, "cached"),
        (entry.simulated, "simulated"),
    ] {
        if flag {
            facts.push(name.to_owned());
        }
    }
    let _ = writeln!(stdout, "{dim}{}{reset}\n", facts.join(" · "));
    let _ = writeln!(stdout, "{}", entry.answer);
    if let (Some(kind), Some(message)) = (&entry.error_kind, &entry.error_message) {
        let _ = writeln!(stdout, "\n{dim}({kind}: {message}){reset}");
    }
    drop(stdout);
    crate::output::print_sources(&entry.sources, styled);
}
