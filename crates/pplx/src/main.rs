//! `pplx`: ask Perplexity from the terminal.
//!
//! `pplx "Explain quantum computing"` streams the answer to stdout, then its sources. With no
//! key configured it answers from the built-in simulator (and says so on stderr). With no
//! question and a terminal on stdin it starts an interactive session. Exit codes: 0 answered,
//! 1 failed, 2 usage error, 130 interrupted (Ctrl-C).

mod attach;
mod interactive;
mod json;
mod log;
mod output;
mod render;
mod stats;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{
    ChatEvent, ChatProvider, ChatRequest, ChatResponse, Error, Message, Sources, Usage,
};
use clap::{CommandFactory, Parser, Subcommand};
use futures_util::StreamExt;
use pplx::history::{Entry, History};
use provider_perplexity::PerplexityProvider;

use crate::output::Output;

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
    #[command(subcommand)]
    command: Option<Command>,
    /// The question (words are joined); `-` or a pipe reads it from stdin; none starts an
    /// interactive session on a terminal.
    question: Vec<String>,
    /// Continue the last conversation: its exchanges are sent as context. With no question,
    /// resume it in an interactive session.
    #[arg(long = "continue", short = 'c')]
    continue_last: bool,
    /// Continue conversation ID, as `pplx log` shows it (`c3`, or `3`).
    #[arg(long, value_name = "ID", conflicts_with = "continue_last", value_parser = pplx::history::parse_conversation)]
    conversation: Option<i64>,
    /// Do not keep this question and its answer in the history.
    #[arg(long)]
    no_log: bool,
    /// Model or alias (fast, pro, reason, research, or any from the config file).
    #[arg(long, short)]
    model: Option<String>,
    /// A system prompt.
    #[arg(long)]
    system: Option<String>,
    /// Structured output: the answer follows the JSON Schema in FILE, and is printed as the
    /// parsed JSON object (exit 1 if the answer is not JSON).
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    json_schema: Option<std::path::PathBuf>,
    /// Send FILE with the question: an image (PNG, JPEG, WebP, GIF) or a PDF, at most 50 MB,
    /// inline. Repeat for several; the history keeps their names and sizes, not their bytes.
    #[arg(long, value_name = "FILE")]
    attach: Vec<std::path::PathBuf>,
    /// Which API: sonar or agent.
    #[arg(long, value_parser = ["sonar", "agent"])]
    api: Option<String>,
    /// Do not resume a broken Agent API stream from where it broke (it then fails, or
    /// restarts with `after_commit = "restart"`); also `resume = false` in the config file.
    #[arg(long)]
    no_resume: bool,
    /// Start the question as a background run (Agent API), print its id and exit; `pplx
    /// attach` reads it later, live if it still runs.
    #[arg(long, conflicts_with_all = ["json_schema", "no_stream"])]
    detach: bool,
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
    /// Share key cooldowns, disabled keys, open breakers and per-key rate limits with every
    /// process using the same keys: redis://HOST:PORT (needs PPLX_SHARED_SECRET).
    #[arg(long, value_name = "redis://…")]
    shared_state: Option<String>,
    /// The API's base URL (also PERPLEXITY_BASE_URL).
    #[arg(long)]
    base_url: Option<String>,
    /// Allow a plain http:// base URL that is not loopback (the key then crosses the network
    /// unencrypted; also allow_insecure_http = true in the config file).
    #[arg(long)]
    allow_insecure_http: bool,
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

/// Commands besides asking.
#[derive(Debug, Subcommand)]
enum Command {
    /// The history: recent questions and answers, `search WORDS`, `show ID`.
    Log(log::LogArgs),
    /// A completion script for a shell, on stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The manual page (roff), on stdout.
    Man,
    /// Read a background run started with `--detach`, from its first event: live if it
    /// still runs, whole if it has ended. The answer is kept in the history.
    Attach {
        /// The run's id, as `--detach` printed it (default: the last detached run).
        id: Option<String>,
    },
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

/// Writes `bytes` to stdout. A reader that went away (`pplx man | head`) is not a failure:
/// the command ends quietly with 0, as other Unix tools do.
fn write_stdout(bytes: &[u8]) -> u8 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(error) => {
            eprintln!("pplx: cannot write to stdout: {error}");
            EXIT_FAILURE
        }
    }
}

/// Where a question was asked, for hints in that place's own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// From the command line: hints name flags (`--model sonar`).
    Command,
    /// In an interactive session: hints name slash commands (`/model sonar`).
    Interactive,
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
    _sim: Option<pplx_setup::Simulator>,
    /// The response cache, for its statistics (`None` when it is off).
    cache: Option<cache::CachedProvider<PerplexityProvider>>,
    /// Whether the cache is shared (Redis), and may be unreachable.
    shared_cache: bool,
    /// Whether the unreachable shared cache was said already (once a process).
    cache_warned: std::cell::Cell<bool>,
    mode: Mode,
    /// The history and the conversation being written, unless the history is off.
    log: Option<(History, std::cell::Cell<i64>)>,
    /// The `--attach` files, sent with the command line's question (and what the history
    /// keeps of each).
    attachments: Vec<(chat_core::Attachment, pplx::history::Attached)>,
    /// `--json-schema`: structured output, the answer printed as the parsed object.
    json_schema: Option<provider_perplexity::JsonSchema>,
    /// `pplx attach`: the background run to read instead of asking.
    attached: Option<String>,
}

async fn run(args: Args) -> u8 {
    match &args.command {
        Some(Command::Log(log)) => return log::run(log),
        Some(Command::Completions { shell }) => {
            // Written whole from memory: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Args::command(), "pplx", &mut script);
            return write_stdout(&script);
        }
        Some(Command::Man) => {
            let mut page = Vec::new();
            return match clap_mangen::Man::new(Args::command()).render(&mut page) {
                Ok(()) => write_stdout(&page),
                Err(error) => {
                    eprintln!("pplx: {error}");
                    EXIT_FAILURE
                }
            };
        }
        Some(Command::Attach { .. }) | None => {}
    }
    let file = match pplx_setup::config::load(args.config.as_deref()) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("pplx: config: {}", error.report());
            return EXIT_USAGE;
        }
    };
    if let Some(Command::Attach { id }) = &args.command {
        return attach_run(&args, file, id.as_deref()).await;
    }
    let question = match question(&args) {
        Ok(question) => question,
        Err(code) => return code,
    };
    if args.detach && question.is_none() {
        eprintln!("pplx: --detach goes with a question: pplx --detach \"...\"");
        return EXIT_USAGE;
    }
    let attachments = match attachments(&args, question.is_some()) {
        Ok(attachments) => attachments,
        Err(code) => return code,
    };
    let json_schema = match json_schema(&args) {
        Ok(schema) => schema,
        Err(code) => return code,
    };
    let log_enabled = !args.no_log && file.log != Some(false);
    let mut session = match session(&args, file, attachments, json_schema).await {
        Ok(session) => session,
        Err(error) => {
            eprintln!("pplx: {}", error.report());
            return if error.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            };
        }
    };
    let context = match start_conversation(&mut session, &args, log_enabled) {
        Ok(context) => context,
        Err(code) => return code,
    };
    match question {
        Some(question) if args.detach => detach(&session, &context, &question).await,
        Some(question) => {
            let mut history = context;
            ask(&session, &mut history, &question).await
        }
        None => interactive::interactive(session, context).await,
    }
}

/// `--detach`: the question starts a background run; its id goes to stdout (and the
/// history, so `pplx attach` finds it).
async fn detach(session: &Session, context: &[Message], question: &str) -> u8 {
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
                if let Err(error) = history.record(&entry) {
                    eprintln!("pplx: history: {error}; pplx attach needs the id: {id}");
                }
            }
            if session._sim.is_some() {
                eprintln!(
                    "pplx: the built-in simulator keeps runs only while this process lives: pplx attach cannot read this one later"
                );
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
async fn attach_run(args: &Args, file: pplx_setup::config::FileConfig, id: Option<&str>) -> u8 {
    let Some(history) = open_history(true).ok().flatten() else {
        return EXIT_FAILURE;
    };
    let found = match id {
        Some(id) => history.detached_run(Some(id)),
        None => history.detached_run(None),
    };
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
        Err(error) => {
            eprintln!("pplx: {}", error.report());
            return if error.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            };
        }
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
    session.attached = Some(run_id);
    let mut context = Vec::new();
    ask(&session, &mut context, &question).await
}

/// Opens the history (unless turned off) and picks the conversation: the last one with
/// `-c`, the one named by `--conversation`, else a new one. Returns the earlier exchanges to
/// send as context. A history that cannot be opened is said once; the answer still comes.
fn start_conversation(
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
fn open_history(continuing: bool) -> Result<Option<History>, u8> {
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

/// The `--json-schema` file as structured output, read and checked before anything is sent:
/// a missing or unreadable file, or one that is not a JSON object, is a usage error.
fn json_schema(args: &Args) -> Result<Option<provider_perplexity::JsonSchema>, u8> {
    let Some(path) = &args.json_schema else {
        return Ok(None);
    };
    let shown = path.display();
    let parsed = std::fs::read(path)
        .map_err(|error| error.to_string())
        .and_then(|bytes| {
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|error| error.to_string())
        });
    let schema = match parsed {
        Ok(schema @ serde_json::Value::Object(_)) => schema,
        Ok(_) => {
            eprintln!("pplx: --json-schema {shown}: a JSON Schema is an object");
            return Err(EXIT_USAGE);
        }
        Err(error) => {
            eprintln!("pplx: --json-schema {shown}: {error}");
            return Err(EXIT_USAGE);
        }
    };
    // The format's name: the file's stem, as the name pattern allows (`answer` otherwise).
    let name: String = path
        .file_stem()
        .map(|stem| stem.to_string_lossy())
        .unwrap_or_default()
        .chars()
        .filter(|character| character.is_ascii_alphanumeric() || "_-".contains(*character))
        .take(64)
        .collect();
    let name = if name.is_empty() {
        "answer".to_owned()
    } else {
        name
    };
    Ok(Some(provider_perplexity::JsonSchema::new(name, schema)))
}

/// The `--attach` files, each read and checked before anything is sent: a missing,
/// unreadable, too large or unsupported file is a usage error.
fn attachments(
    args: &Args,
    has_question: bool,
) -> Result<Vec<(chat_core::Attachment, pplx::history::Attached)>, u8> {
    if !args.attach.is_empty() && !has_question {
        eprintln!("pplx: --attach goes with a question: pplx --attach FILE \"what is this?\"");
        return Err(EXIT_USAGE);
    }
    args.attach
        .iter()
        .map(|path| attach::load(path))
        .collect::<Result<_, _>>()
        .map_err(|reason| {
            eprintln!("pplx: {reason}");
            EXIT_USAGE
        })
}

async fn session(
    args: &Args,
    file: pplx_setup::config::FileConfig,
    attachments: Vec<(chat_core::Attachment, pplx::history::Attached)>,
    json_schema: Option<provider_perplexity::JsonSchema>,
) -> Result<Session, pplx_setup::Error> {
    let options = pplx_setup::SetupOptions {
        api: args.api.clone(),
        base_url: args.base_url.clone(),
        sim: args.sim,
        cache: args.cache.clone(),
        no_cache: args.no_cache,
        shared_state: args.shared_state.clone(),
        model: args.model.clone(),
        allow_insecure_http: args.allow_insecure_http,
        no_resume: args.no_resume,
        ..pplx_setup::SetupOptions::default()
    };
    let setup = pplx_setup::setup(&options, file).await?;
    if let Some(notice) = &setup.notice {
        eprintln!("pplx: {notice}");
    }
    for warning in &setup.warnings {
        eprintln!("pplx: {warning}");
    }
    Ok(Session {
        provider: setup.provider,
        perplexity: setup.perplexity,
        model: setup.model,
        system: args.system.clone(),
        json: args.json,
        stats: args.stats,
        show_reasoning: args.show_reasoning,
        stream: !args.no_stream,
        shared_cache: setup.shared_cache,
        _sim: setup.simulator,
        cache: setup.cache,
        cache_warned: std::cell::Cell::new(false),
        mode: Mode::Command,
        log: None,
        attachments,
        json_schema,
        attached: None,
    })
}

/// What the answer so far looks like, for the stats and the error line.
#[derive(Default)]
struct Progress {
    text: String,
    reasoning: String,
    sources: Sources,
    usage: Option<Usage>,
    first_token: Option<Duration>,
    done: Option<ChatResponse>,
    restarts: u32,
    /// How it failed (kind, message), for the history.
    error: Option<(String, String)>,
    /// The reader of stdout went away (`pplx … | head -1`): the answer stopped there.
    stdout_closed: bool,
    /// The shared cache could not be reached for this answer.
    cache_unreachable: bool,
}

impl Progress {
    /// Whether a write to stdout went through; a closed pipe is noted, and ends the answer.
    fn wrote(&mut self, result: std::io::Result<()>) -> bool {
        match result {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                self.stdout_closed = true;
                false
            }
            // Other write errors (a full disk) are not the answer's failure; it goes on.
            _ => true,
        }
    }
}

/// The request for `question`: the system prompt, the conversation so far, the question.
fn request(session: &Session, history: &[Message], question: &str) -> ChatRequest {
    let mut messages = Vec::new();
    if let Some(system) = &session.system {
        messages.push(Message::system(system.clone()));
    }
    messages.extend(history.iter().cloned());
    let mut asked = Message::user(question);
    asked.attachments = session
        .attachments
        .iter()
        .map(|(attachment, _)| attachment.clone())
        .collect();
    messages.push(asked);
    let mut request = ChatRequest {
        model: session.model.clone(),
        messages,
        ..ChatRequest::default()
    };
    if let Some(schema) = &session.json_schema {
        request
            .options
            .insert("response_format".into(), schema.response_format());
    }
    request
}

async fn ask(session: &Session, history: &mut Vec<Message>, question: &str) -> u8 {
    let request = request(session, history, question);
    let before = session.perplexity.key_stats();
    let cache_before = session.cache.as_ref().map(|cache| cache.stats());
    let started = Instant::now();
    let mut output: Box<dyn Output> = if session.json {
        Box::new(output::Json {
            simulated: session._sim.is_some(),
        })
    } else if session.json_schema.is_some() {
        Box::new(output::Structured)
    } else {
        Box::new(output::Terminal::new(session.show_reasoning))
    };
    let mut progress = Progress::default();
    let outcome = tokio::select! {
        outcome = answer(session, request, output.as_mut(), &mut progress, started) => Some(outcome),
        _ = tokio::signal::ctrl_c() => None,
    };
    let code = match outcome {
        None => {
            // The answer's future is dropped: the request is cancelled, the connection closed.
            progress.error = Some(("cancelled".to_owned(), "interrupted".to_owned()));
            output.interrupted(&progress.text);
            EXIT_INTERRUPTED
        }
        // Nobody reads the rest: the stream is dropped (the request cancelled) quietly.
        Some(Ok(())) if progress.stdout_closed => {
            if progress.done.is_none() {
                progress.error = Some(("cancelled".to_owned(), "stdout was closed".to_owned()));
            }
            0
        }
        Some(Ok(())) if session.json_schema.is_some() => structured(&mut progress),
        Some(Ok(())) => {
            output.complete(&progress.sources);
            0
        }
        Some(Err(error)) => {
            let partial = error.partial_text().unwrap_or(&progress.text).to_owned();
            progress.error = Some((error.kind().as_str().to_owned(), error.report().to_string()));
            output.failed(&error, &partial, session.mode);
            progress.text = partial;
            EXIT_FAILURE
        }
    };
    drop(output);
    progress.cache_unreachable = cache_unreachable(session, cache_before);
    if session.stats {
        stats::print_stats(session, &before, &progress, started.elapsed());
    }
    record(session, question, &progress, code, started.elapsed());
    if code == 0 && progress.error.is_none() {
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

/// `--json-schema`'s answer, parsed and printed as one JSON object; an answer that is not
/// JSON is a failure (exit 1) that shows what came.
fn structured(progress: &mut Progress) -> u8 {
    let mut response = progress.done.clone().unwrap_or_default();
    if response.text.is_empty() {
        response.text = progress.text.clone();
    }
    match provider_perplexity::parse_answer::<serde_json::Value>(&response) {
        Ok(object) => {
            let mut text = serde_json::to_string_pretty(&object).unwrap_or_default();
            text.push('\n');
            write_stdout(text.as_bytes())
        }
        Err(error) => {
            eprintln!(
                "pplx: {}; the answer was:\n{}",
                error.report(),
                response.text
            );
            progress.error = Some((error.kind().as_str().to_owned(), error.report().to_string()));
            EXIT_FAILURE
        }
    }
}

/// Whether the shared cache could not be reached since `before` (its statistics then); said
/// once a process.
fn cache_unreachable(session: &Session, before: Option<cache::CacheStats>) -> bool {
    let (Some(cache), Some(before)) = (&session.cache, before) else {
        return false;
    };
    let unreachable = session.shared_cache && cache.stats().unavailable > before.unavailable;
    if unreachable && !session.cache_warned.replace(true) {
        eprintln!("pplx: the shared cache (Redis) cannot be reached; this answer was not cached");
    }
    unreachable
}

/// Keeps the exchange in the history, whatever its outcome; a history that fails is said,
/// and the answer (already printed) stands.
fn record(session: &Session, question: &str, progress: &Progress, code: u8, elapsed: Duration) {
    let Some((history, conversation)) = &session.log else {
        return;
    };
    let done = progress.done.as_ref();
    let (model, api) = session.perplexity.resolve(&session.model);
    let usage = done
        .and_then(|done| done.usage.clone())
        .or(progress.usage.clone());
    let mut entry = Entry::default();
    entry.conversation = conversation.get();
    entry.question = question.to_owned();
    entry.answer = done.map_or_else(|| progress.text.clone(), |done| done.text.clone());
    entry.reasoning =
        done.map_or_else(|| progress.reasoning.clone(), |done| done.reasoning.clone());
    entry.model = model;
    entry.api = api.as_str().to_owned();
    entry.sources = done.map_or_else(|| progress.sources.clone(), |done| done.sources.clone());
    entry.cost = usage
        .as_ref()
        .and_then(|usage| usage.cost.as_ref())
        .map(|cost| cost.total_cost);
    entry.usage = usage;
    entry.first_token_ms = progress.first_token.map(|first| first.as_millis() as u64);
    entry.total_ms = elapsed.as_millis() as u64;
    entry.fallback = done.is_some_and(|done| done.fallback);
    entry.cached = done.is_some_and(|done| done.cached);
    entry.simulated = session._sim.is_some();
    entry.run_id = session.attached.clone();
    entry.attachments = session
        .attachments
        .iter()
        .map(|(_, attached)| attached.clone())
        .collect();
    if code != 0 || progress.error.is_some() {
        let (kind, message) = progress
            .error
            .clone()
            .unwrap_or_else(|| ("failed".to_owned(), "the request failed".to_owned()));
        entry.error_kind = Some(kind);
        entry.error_message = Some(message);
    }
    if let Err(error) = history.record(&entry) {
        eprintln!("pplx: history: {error}; this answer is not kept");
    }
}

/// Streams the answer to `output`, keeping `progress`; stops early, with `Ok`, when the
/// reader of stdout has gone.
async fn answer(
    session: &Session,
    request: ChatRequest,
    output: &mut dyn Output,
    progress: &mut Progress,
    started: Instant,
) -> Result<(), Error> {
    let mut stream = if let Some(run) = &session.attached {
        session.perplexity.attach(run, &session.model)
    } else if session.stream {
        session.provider.chat_stream(request)
    } else {
        let provider = session.provider.clone();
        let response = provider.chat(request).await?;
        let events: Vec<Result<ChatEvent, Error>> =
            response.into_events().into_iter().map(Ok).collect();
        Box::pin(futures_util::stream::iter(events))
    };
    while let Some(event) = stream.next().await {
        let written = match &event? {
            ChatEvent::TextDelta(text) => {
                progress
                    .first_token
                    .get_or_insert_with(|| started.elapsed());
                progress.text.push_str(text);
                output.delta(text)
            }
            ChatEvent::ReasoningDelta(text) => {
                progress.reasoning.push_str(text);
                output.reasoning(text)
            }
            ChatEvent::Sources(sources) => {
                progress.sources = sources.clone();
                output.sources(sources)
            }
            ChatEvent::Usage(usage) => {
                progress.usage = Some(usage.clone());
                output.usage(usage)
            }
            ChatEvent::Restart => {
                progress.text.clear();
                progress.restarts += 1;
                output.restart()
            }
            ChatEvent::Done(response) => {
                progress.done = Some((**response).clone());
                output.done(response)
            }
            _ => Ok(()),
        };
        if !progress.wrote(written) {
            return Ok(());
        }
    }
    Ok(())
}

/// The error as advice: what happened and what to do, in the terms of the `mode` it was
/// asked in (flags on the command line, slash commands in a session).
pub(crate) fn advice(error: &Error, mode: Mode) -> String {
    use chat_core::ErrorKind;
    let report = error.report();
    match (error.kind(), mode) {
        (ErrorKind::BadRequest, Mode::Interactive) => {
            format!("{report} (try /model sonar, or /help)")
        }
        (ErrorKind::Config, Mode::Interactive) => {
            format!("{report}; restart with --sim to use the built-in simulator")
        }
        (kind, _) => advice_anywhere(error, kind),
    }
}

fn advice_anywhere(error: &Error, kind: chat_core::ErrorKind) -> String {
    use chat_core::ErrorKind;
    let report = error.report();
    match kind {
        ErrorKind::Config => format!("{report}; or run with --sim to use the built-in simulator"),
        ErrorKind::Auth => format!("{report}: check PERPLEXITY_API_KEY (or PERPLEXITY_API_KEYS)"),
        ErrorKind::Quota => format!("{report}: add credits to the API account, or use another key"),
        ErrorKind::RateLimited => report.to_string(),
        ErrorKind::BadRequest => format!("{report} (try --model sonar)"),
        ErrorKind::Interrupted => format!("{report}; the text above is what arrived"),
        ErrorKind::CircuitOpen => format!("{report}: the API keeps failing; try again shortly"),
        ErrorKind::Connect => format!("{report}: check the network or --base-url"),
        _ => report.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_in_the_terms_of_where_the_question_was_asked() {
        let refused = Error::status(400, "Invalid model 'x'");
        let command = advice(&refused, Mode::Command);
        assert!(command.contains("--model sonar"), "{command}");
        let session = advice(&refused, Mode::Interactive);
        assert!(
            session.contains("/model sonar") && !session.contains("--model"),
            "{session}"
        );
        let unconfigured = Error::config("no key");
        assert!(advice(&unconfigured, Mode::Command).contains("run with --sim"));
        assert!(advice(&unconfigured, Mode::Interactive).contains("restart with --sim"));
    }
}
