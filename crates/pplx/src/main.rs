//! `pplx`: ask Perplexity from the terminal.
//!
//! `pplx "Explain quantum computing"` streams the answer to stdout, then its sources. With no
//! key configured it answers from the built-in simulator (and says so on stderr). With no
//! question and a terminal on stdin it starts an interactive session. Exit codes: 0 answered,
//! 1 failed, 2 usage error, 130 interrupted (Ctrl-C).

mod render;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{
    ChatEvent, ChatProvider, ChatRequest, ChatResponse, Error, Message, Sources, Usage,
};
use clap::Parser;
use futures_util::StreamExt;
use provider_perplexity::PerplexityProvider;
use serde::Serialize;

use crate::render::Renderer;

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

/// Ask Perplexity: answers stream in as they are written, with their sources.
#[derive(Debug, Parser)]
#[command(
    name = "pplx",
    version,
    after_help = "Exit codes: 0 answered, 1 failed, 2 usage error, 130 interrupted.\nKeys come from PERPLEXITY_API_KEY or PERPLEXITY_API_KEYS (comma-separated); without one, the built-in simulator answers."
)]
struct Args {
    /// The question (words are joined); `-` or a pipe reads it from stdin; none starts an
    /// interactive session on a terminal.
    question: Vec<String>,
    /// Model or alias (fast, pro, reason, research, or any from the config file).
    #[arg(long, short)]
    model: Option<String>,
    /// A system prompt.
    #[arg(long)]
    system: Option<String>,
    /// Which API: sonar or agent.
    #[arg(long, value_parser = ["sonar", "agent"])]
    api: Option<String>,
    /// Ask for the whole answer at once instead of streaming it.
    #[arg(long)]
    no_stream: bool,
    /// Do not use the response cache.
    #[arg(long)]
    no_cache: bool,
    /// The response cache: memory (the default, for this process) or redis://HOST:PORT
    /// (shared by every pplx using it).
    #[arg(long, value_name = "memory|redis://…")]
    cache: Option<String>,
    /// The API's base URL (also PERPLEXITY_BASE_URL).
    #[arg(long)]
    base_url: Option<String>,
    /// Answer from the built-in simulator even if a key is set.
    #[arg(long)]
    sim: bool,
    /// Time to first token, tokens/s, attempts, key rotations, fallback, cache, cost: to stderr.
    #[arg(long)]
    stats: bool,
    /// One JSON object per line on stdout, for scripts.
    #[arg(long)]
    json: bool,
    /// Show the model's reasoning, dimmed.
    #[arg(long)]
    show_reasoning: bool,
    /// The config file (default $XDG_CONFIG_HOME/pplx/config.toml).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pplx: cannot start: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    ExitCode::from(runtime.block_on(run(args)))
}

/// Everything a session needs.
struct Session {
    provider: Arc<dyn ChatProvider>,
    /// The provider under the cache, for its key statistics.
    perplexity: PerplexityProvider,
    model: String,
    system: Option<String>,
    json: bool,
    stats: bool,
    show_reasoning: bool,
    stream: bool,
    /// Keeps the embedded simulator alive while the session runs.
    _sim: Option<pplx_sim::Simulator>,
}

async fn run(args: Args) -> u8 {
    let file = match pplx::config::load(args.config.as_deref()) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("pplx: config: {error}");
            return EXIT_USAGE;
        }
    };
    let question = match question(&args) {
        Ok(question) => question,
        Err(code) => return code,
    };
    let session = match session(&args, file).await {
        Ok(session) => session,
        Err(error) => {
            eprintln!("pplx: {error}");
            return EXIT_USAGE;
        }
    };
    match question {
        Some(question) => {
            let mut history = Vec::new();
            ask(&session, &mut history, &question).await
        }
        None => interactive(session).await,
    }
}

/// The question from the arguments, or stdin (`-` or a pipe); `None` for an interactive session.
fn question(args: &Args) -> Result<Option<String>, u8> {
    let from_stdin =
        args.question == ["-"] || (args.question.is_empty() && !std::io::stdin().is_terminal());
    if from_stdin {
        let mut text = String::new();
        if let Err(error) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("pplx: cannot read the question from stdin: {error}");
            return Err(EXIT_USAGE);
        }
        if text.trim().is_empty() {
            eprintln!("pplx: the question on stdin is empty");
            return Err(EXIT_USAGE);
        }
        return Ok(Some(text.trim().to_owned()));
    }
    if args.question.is_empty() {
        return Ok(None);
    }
    Ok(Some(args.question.join(" ")))
}

async fn session(args: &Args, file: pplx::config::FileConfig) -> Result<Session, String> {
    let options = pplx::SetupOptions {
        api: args.api.clone(),
        base_url: args.base_url.clone(),
        sim: args.sim,
        cache: args.cache.clone(),
        no_cache: args.no_cache,
        model: args.model.clone(),
        ..pplx::SetupOptions::default()
    };
    let setup = pplx::setup(&options, file, "pplx").await?;
    Ok(Session {
        provider: setup.provider,
        perplexity: setup.perplexity,
        model: setup.model,
        system: args.system.clone(),
        json: args.json,
        stats: args.stats,
        show_reasoning: args.show_reasoning,
        stream: !args.no_stream,
        _sim: setup.simulator,
    })
}

/// One line of `--json` output. Field order is the documented one.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum JsonLine<'a> {
    Delta {
        text: &'a str,
    },
    Reasoning {
        text: &'a str,
    },
    Sources {
        citations: &'a [String],
        search_results: Vec<JsonResult<'a>>,
    },
    Usage {
        prompt_tokens: u64,
        completion_tokens: u64,
        total_tokens: u64,
        cost: Option<f64>,
    },
    Restart,
    Done {
        finish_reason: &'a str,
        fallback: bool,
        cached: bool,
        /// The built-in simulator answered: the text is not a real answer.
        simulated: bool,
        text: &'a str,
    },
    Error {
        kind: &'a str,
        message: String,
        partial: &'a str,
    },
}

#[derive(Serialize)]
struct JsonResult<'a> {
    title: &'a str,
    url: &'a str,
    date: Option<&'a str>,
}

fn json_line(line: &JsonLine<'_>) {
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut stdout, line);
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
}

/// Shows a spinner on stderr until dropped (only on a terminal).
struct Spinner(Option<tokio::task::JoinHandle<()>>);

impl Spinner {
    fn start(enabled: bool) -> Self {
        if !enabled {
            return Spinner(None);
        }
        Spinner(Some(tokio::spawn(async {
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            for frame in frames.iter().cycle() {
                eprint!("\r{frame} searching…");
                tokio::time::sleep(Duration::from_millis(80)).await;
            }
        })))
    }

    fn stop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the answer so far looks like, for the stats and the error line.
#[derive(Default)]
struct Progress {
    text: String,
    sources: Sources,
    usage: Option<Usage>,
    first_token: Option<Duration>,
    done: Option<ChatResponse>,
    restarts: u32,
}

async fn ask(session: &Session, history: &mut Vec<Message>, question: &str) -> u8 {
    let mut messages = Vec::new();
    if let Some(system) = &session.system {
        messages.push(Message::system(system.clone()));
    }
    messages.extend(history.iter().cloned());
    messages.push(Message::user(question));
    let request = ChatRequest {
        model: session.model.clone(),
        messages,
        ..ChatRequest::default()
    };
    let before = session.perplexity.key_stats();
    let started = Instant::now();
    let styled = !session.json && std::io::stdout().is_terminal();
    let width = terminal_size::terminal_size().map_or(80, |(width, _)| usize::from(width.0));
    let mut renderer = Renderer::new(std::io::stdout().lock(), styled, width);
    let mut spinner = Spinner::start(!session.json && std::io::stderr().is_terminal());
    let mut progress = Progress::default();
    let outcome = tokio::select! {
        outcome = answer(session, request, &mut renderer, &mut spinner, &mut progress, started) => Some(outcome),
        _ = tokio::signal::ctrl_c() => None,
    };
    spinner.stop();
    let code = match outcome {
        None => {
            // The answer's future is dropped: the request is cancelled, the connection closed.
            if !session.json {
                let _ = renderer.finish();
            }
            drop(renderer);
            if session.json {
                json_line(&JsonLine::Error {
                    kind: "cancelled",
                    message: "interrupted".to_owned(),
                    partial: &progress.text,
                });
            } else {
                eprintln!("pplx: interrupted");
            }
            EXIT_INTERRUPTED
        }
        Some(Ok(())) => {
            if !session.json {
                let _ = renderer.finish();
            }
            drop(renderer);
            if !session.json {
                print_sources(&progress.sources, styled);
            }
            0
        }
        Some(Err(error)) => {
            if !progress.text.is_empty() && !session.json {
                let _ = renderer.finish();
            }
            drop(renderer);
            let partial = error.partial_text().unwrap_or(&progress.text).to_owned();
            if session.json {
                json_line(&JsonLine::Error {
                    kind: error.kind().as_str(),
                    message: error.to_string(),
                    partial: &partial,
                });
            } else {
                eprintln!("pplx: {}", advice(&error));
            }
            EXIT_FAILURE
        }
    };
    if session.stats {
        print_stats(session, &before, &progress, started.elapsed());
    }
    if code == 0 {
        history.push(Message::user(question));
        history.push(Message::assistant(
            progress
                .done
                .as_ref()
                .map_or(progress.text.clone(), |done| done.text.clone()),
        ));
    }
    code
}

async fn answer<W: Write>(
    session: &Session,
    request: ChatRequest,
    renderer: &mut Renderer<W>,
    spinner: &mut Spinner,
    progress: &mut Progress,
    started: Instant,
) -> Result<(), Error> {
    let mut stream = if session.stream {
        session.provider.chat_stream(request)
    } else {
        let provider = session.provider.clone();
        let response = provider.chat(request).await?;
        let events: Vec<Result<ChatEvent, Error>> =
            response.into_events().into_iter().map(Ok).collect();
        Box::pin(futures_util::stream::iter(events))
    };
    while let Some(event) = stream.next().await {
        let event = event?;
        match &event {
            ChatEvent::TextDelta(text) => {
                spinner.stop();
                progress
                    .first_token
                    .get_or_insert_with(|| started.elapsed());
                progress.text.push_str(text);
                if session.json {
                    json_line(&JsonLine::Delta { text });
                } else {
                    let _ = renderer.push(text);
                }
            }
            ChatEvent::ReasoningDelta(text) => {
                if session.json {
                    json_line(&JsonLine::Reasoning { text });
                } else if session.show_reasoning {
                    spinner.stop();
                    let _ = renderer.dim(text);
                }
            }
            ChatEvent::Sources(sources) => {
                progress.sources = sources.clone();
                if session.json {
                    json_line(&JsonLine::Sources {
                        citations: &sources.citations,
                        search_results: sources
                            .search_results
                            .iter()
                            .map(|result| JsonResult {
                                title: &result.title,
                                url: &result.url,
                                date: result.date.as_deref(),
                            })
                            .collect(),
                    });
                }
            }
            ChatEvent::Usage(usage) => {
                progress.usage = Some(usage.clone());
                if session.json {
                    json_line(&JsonLine::Usage {
                        prompt_tokens: usage.prompt_tokens,
                        completion_tokens: usage.completion_tokens,
                        total_tokens: usage.total_tokens,
                        cost: usage.cost.as_ref().map(|cost| cost.total_cost),
                    });
                }
            }
            ChatEvent::Restart => {
                progress.text.clear();
                progress.restarts += 1;
                if session.json {
                    json_line(&JsonLine::Restart);
                } else {
                    let _ = renderer.finish();
                    eprintln!("pplx: the stream broke; starting the answer over");
                }
            }
            ChatEvent::Done(response) => {
                if session.json {
                    json_line(&JsonLine::Done {
                        finish_reason: response.finish_reason.as_str(),
                        fallback: response.fallback,
                        cached: response.cached,
                        simulated: session._sim.is_some(),
                        text: &response.text,
                    });
                }
                progress.done = Some((**response).clone());
            }
            _ => {}
        }
    }
    Ok(())
}

fn print_sources(sources: &Sources, styled: bool) {
    if sources.citations.is_empty() {
        return;
    }
    let (dim, reset) = if styled {
        ("\x1b[2m", "\x1b[0m")
    } else {
        ("", "")
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "\n{dim}Sources{reset}");
    for (number, url) in sources.numbered() {
        let title = sources
            .search_results
            .iter()
            .find(|result| result.url == url)
            .map(|result| result.title.as_str())
            .filter(|title| !title.is_empty());
        match title {
            Some(title) => {
                let _ = writeln!(stdout, "[{number}] {title} — {url}");
            }
            None => {
                let _ = writeln!(stdout, "[{number}] {url}");
            }
        }
    }
    let _ = stdout.flush();
}

fn print_stats(
    session: &Session,
    before: &[resilience::KeyStats],
    progress: &Progress,
    elapsed: Duration,
) {
    let after = session.perplexity.key_stats();
    let attempts: u64 = after
        .iter()
        .zip(before)
        .map(|(now, then)| now.requests - then.requests)
        .sum();
    let keys_used = after
        .iter()
        .zip(before)
        .filter(|(now, then)| now.requests > then.requests)
        .count();
    let tokens = progress
        .usage
        .as_ref()
        .map_or(0, |usage| usage.completion_tokens);
    let streaming_time = progress
        .first_token
        .map_or(elapsed, |first| elapsed.saturating_sub(first));
    let rate = if streaming_time.as_secs_f64() > 0.0 {
        tokens as f64 / streaming_time.as_secs_f64()
    } else {
        0.0
    };
    let cost = progress
        .usage
        .as_ref()
        .and_then(|usage| usage.cost.as_ref())
        .map_or(0.0, |cost| cost.total_cost);
    let done = progress.done.as_ref();
    eprintln!(
        "stats: first token {} · {rate:.0} tokens/s · {attempts} attempts · {} key rotations · fallback {} · cache {} · restarts {} · cost ${cost:.5} · total {:.2} s",
        progress.first_token.map_or("-".to_owned(), |first| format!(
            "{:.0} ms",
            first.as_secs_f64() * 1e3
        )),
        keys_used.saturating_sub(1),
        if done.is_some_and(|done| done.fallback) {
            "yes"
        } else {
            "no"
        },
        if done.is_some_and(|done| done.cached) {
            "hit"
        } else {
            "miss"
        },
        progress.restarts,
        elapsed.as_secs_f64(),
    );
}

/// The error as advice: what happened and what to do.
fn advice(error: &Error) -> String {
    use chat_core::ErrorKind;
    match error.kind() {
        ErrorKind::Config => format!("{error}; or run with --sim to use the built-in simulator"),
        ErrorKind::Auth => format!("{error}: check PERPLEXITY_API_KEY (or PERPLEXITY_API_KEYS)"),
        ErrorKind::Quota => format!("{error}: add credits to the API account, or use another key"),
        ErrorKind::RateLimited => error.to_string(),
        ErrorKind::BadRequest => format!("{error} (try --model sonar)"),
        ErrorKind::Interrupted => format!("{error}; the text above is what arrived"),
        ErrorKind::CircuitOpen => format!("{error}: the API keeps failing; try again shortly"),
        ErrorKind::Connect => format!("{error}: check the network or --base-url"),
        _ => error.to_string(),
    }
}

async fn interactive(mut session: Session) -> u8 {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(error) => {
            eprintln!("pplx: cannot start the line editor: {error}");
            return EXIT_FAILURE;
        }
    };
    eprintln!(
        "pplx {} — ask anything; /model NAME, /clear, /exit. Ctrl-C stops an answer; at the prompt it exits.",
        session.model
    );
    let mut history = Vec::new();
    loop {
        // The line editor blocks its thread while it waits for a line: on a blocking thread,
        // not a runtime worker (timers, the embedded simulator and the cache run meanwhile).
        let read = tokio::task::spawn_blocking(move || {
            let line = editor.readline("› ");
            (editor, line)
        })
        .await;
        let Ok((returned, line)) = read else {
            eprintln!("pplx: the line editor stopped");
            return EXIT_FAILURE;
        };
        editor = returned;
        let line = match line {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => return EXIT_INTERRUPTED,
            Err(rustyline::error::ReadlineError::Eof) => return 0,
            Err(error) => {
                eprintln!("pplx: {error}");
                return EXIT_FAILURE;
            }
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        match line
            .split_once(' ')
            .map_or((line, ""), |(command, rest)| (command, rest.trim()))
        {
            ("/exit" | "/quit", _) => return 0,
            ("/clear", _) => {
                history.clear();
                eprintln!("(conversation cleared)");
            }
            ("/model", "") => eprintln!("model: {}", session.model),
            ("/model", model) => {
                session.model = model.to_owned();
                eprintln!("model: {model}");
            }
            (command, _) if command.starts_with('/') => {
                eprintln!("unknown command {command}; use /model, /clear or /exit")
            }
            _ => {
                // Ctrl-C during an answer cancels it and comes back here.
                let _ = ask(&session, &mut history, line).await;
            }
        }
    }
}
