//! `pplx`: ask Perplexity from the terminal.
//!
//! `pplx "Explain quantum computing"` streams the answer to stdout, then its sources. With no
//! key configured it answers from the built-in simulator (and says so on stderr). With no
//! question and a terminal on stdin it starts an interactive session. Exit codes: 0 answered,
//! 1 failed, 2 usage error, 130 interrupted (Ctrl-C).

/// `eprintln!` that never panics: a line for a reader that went away (`pplx ... 2>&1 | head
/// -1`) is dropped, as a closed stdout's output is, so every command stops quietly. It shadows
/// the standard macro in every module below.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod attach;
mod conversation;
mod detached;
mod filters;
mod interactive;
mod json;
mod log;
mod manual;
mod output;
mod render;
mod session;
mod stats;
mod typeahead;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::conversation::start_conversation;
use crate::detached::{attach_run, detach};
use crate::session::{ask, session};

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
    /// The model (its help is `MODEL_NAMES`, set in `command`).
    #[arg(long, short, value_name = "NAME")]
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
    /// Which API: agent (the default) or sonar (chat completions, for OpenAI-compatible
    /// endpoints; Perplexity retired its Sonar chat completions on 2026-09-27).
    #[arg(long, value_parser = ["sonar", "agent"])]
    api: Option<String>,
    /// Search only DOMAIN (repeat for several, at most 20); `-DOMAIN` leaves one out.
    #[arg(long = "domain", value_name = "DOMAIN", allow_hyphen_values = true)]
    domains: Vec<String>,
    /// Only pages from the last hour, day, week, month or year.
    #[arg(long, value_parser = ["hour", "day", "week", "month", "year"], conflicts_with_all = ["after", "before"])]
    recency: Option<String>,
    /// Only pages published after DATE (2026-03-31 or 3/31/2026).
    #[arg(long, value_name = "DATE")]
    after: Option<String>,
    /// Only pages published before DATE.
    #[arg(long, value_name = "DATE")]
    before: Option<String>,
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
    /// The model names the Agent API takes (`GET /v1/models`), one per line.
    Models,
    /// The spend of the current period against `[budget]` in the config file (reported
    /// costs, shared through `shared_state` or the history database).
    Budget,
    /// Read a background run started with `--detach`, from its first event: live if it
    /// still runs, whole if it has ended. The answer is kept in the history.
    Attach {
        /// The run's id, as `--detach` printed it (default: the last detached run).
        id: Option<String>,
    },
}

fn main() -> ExitCode {
    let args = match command()
        .try_get_matches()
        .and_then(|matches| <Args as clap::FromArgMatches>::from_arg_matches(&matches))
    {
        Ok(args) => args,
        Err(error) => {
            let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = error.print();
            if error.use_stderr()
                && let Some(word) = begins_with_command(std::env::args().skip(1))
            {
                eprintln!(
                    "pplx: `{word}` is a command; to ask a question that begins with it, quote the question (pplx \"{word} ...\") or put -- first (pplx -- {word} ...)"
                );
            }
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
    let telemetry = match telemetry(runtime.handle()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("pplx: {}", error.report());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let code = runtime.block_on(run(args));
    // The last answer's span and metrics leave before the process does.
    for problem in telemetry.shutdown() {
        eprintln!("pplx: telemetry: {problem}");
    }
    ExitCode::from(code)
}

/// OpenTelemetry when `OTEL_EXPORTER_OTLP_ENDPOINT` asks for it: the answers' spans through
/// tracing-opentelemetry, the metrics through the global meter. Nothing otherwise.
fn telemetry(
    runtime: &tokio::runtime::Handle,
) -> Result<pplx_setup::telemetry::Telemetry, pplx_setup::Error> {
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    let telemetry = pplx_setup::telemetry::Telemetry::start("pplx", false, runtime)?;
    if let Some(tracer) = telemetry.tracer() {
        let spans = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
        let subscriber = tracing_subscriber::registry().with(spans);
        let _ = tracing::subscriber::set_global_default(subscriber);
    }
    Ok(telemetry)
}

/// The command line: `Args`, with `--model`'s help the one list of model names every
/// message gives.
fn command() -> clap::Command {
    Args::command().mut_arg("model", |arg| {
        arg.help(format!("The model: {}", provider_perplexity::MODEL_NAMES))
    })
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

async fn run(args: Args) -> u8 {
    if let Some(code) = offline_command(&args) {
        return code;
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
    if let Some(Command::Models) = &args.command {
        return models(&args, file).await;
    }
    if let Some(Command::Budget) = &args.command {
        return budget(&args, file).await;
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
    let filters = match filters::from_args(&args) {
        Ok(filters) => filters,
        Err(reason) => {
            eprintln!("pplx: {reason}");
            return EXIT_USAGE;
        }
    };
    let log_enabled = !args.no_log && file.log != Some(false);
    let mut session = match session(&args, file, attachments, json_schema).await {
        Ok(session) => session,
        Err(code) => return code,
    };
    session.filters = filters;
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

/// `pplx budget`: the period's spend, held amounts and what is left of the limit (with
/// `--json`, one `{"type": "budget", ...}` object).
async fn budget(args: &Args, file: pplx_setup::config::FileConfig) -> u8 {
    let session = match session(args, file, Vec::new(), None).await {
        Ok(session) => session,
        Err(code) => return code,
    };
    let Some(spend) = session.perplexity.spend().await else {
        return write_stdout(
            b"no budget is set: add [budget] with usd = 5.0 (and period = \"day\", \"month\" or \"total\") to the config file\n",
        );
    };
    let left = (spend.limit.usd - spend.spent_usd - spend.held_usd).max(0.0);
    let line = if args.json {
        format!(
            "{}\n",
            serde_json::json!({
                "type": "budget",
                "period": spend.period,
                "limit_usd": spend.limit.usd,
                "spent_usd": spend.spent_usd,
                "held_usd": spend.held_usd,
                "in_flight": spend.in_flight,
                "left_usd": left,
            })
        )
    } else {
        format!("{spend}; {} left\n", resilience::spend::dollars(left))
    };
    write_stdout(line.as_bytes())
}

/// `pplx models`: the model names the Agent API takes, one per line (with `--json`, one
/// `{"type": "model", "id": ...}` object per line).
async fn models(args: &Args, file: pplx_setup::config::FileConfig) -> u8 {
    let session = match session(args, file, Vec::new(), None).await {
        Ok(session) => session,
        Err(code) => return code,
    };
    match session.perplexity.models().await {
        Ok(models) => {
            let lines: String = models
                .iter()
                .map(|id| {
                    if args.json {
                        format!("{}\n", serde_json::json!({"type": "model", "id": id}))
                    } else {
                        format!("{id}\n")
                    }
                })
                .collect();
            write_stdout(lines.as_bytes())
        }
        Err(error) => {
            eprintln!("pplx: cannot list the models: {}", error.report());
            EXIT_FAILURE
        }
    }
}

/// The subcommands that ask nothing (`log`, `completions`, `man`), run; `None` for the rest.
fn offline_command(args: &Args) -> Option<u8> {
    match &args.command {
        Some(Command::Log(log)) => Some(log::run(log)),
        Some(Command::Completions { shell }) => {
            // Written whole from memory: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command(), "pplx", &mut script);
            Some(write_stdout(&script))
        }
        Some(Command::Man) => Some(match manual::page(command()) {
            Ok(page) => write_stdout(&page),
            Err(error) => {
                eprintln!("pplx: {error}");
                EXIT_FAILURE
            }
        }),
        Some(Command::Attach { .. } | Command::Models | Command::Budget) | None => None,
    }
}

/// The names of the subcommands (and clap's `help`).
fn command_names() -> Vec<String> {
    let mut names: Vec<String> = command()
        .get_subcommands()
        .map(|subcommand| subcommand.get_name().to_owned())
        .collect();
    names.push("help".to_owned());
    names
}

/// The command the arguments begin with (the first that is not a flag), if they do.
fn begins_with_command(mut args: impl Iterator<Item = String>) -> Option<String> {
    let first = args.find(|arg| !arg.starts_with('-'))?;
    command_names().contains(&first).then_some(first)
}

/// The command a one-word question is a near miss of (`logs` for `log`), unless the question
/// came after `--`, which says it is one.
fn near_command(question: &[String]) -> Option<String> {
    let [word] = question else {
        return None;
    };
    if std::env::args().any(|arg| arg == "--") {
        return None;
    }
    let word = word.trim().to_lowercase();
    command_names().into_iter().find(|name| {
        name.len() >= 3
            && *name != word
            && name.get(..1) == word.get(..1)
            && strsim::damerau_levenshtein(name, &word) <= 1
    })
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
    if let Some(name) = near_command(&args.question) {
        let word = &args.question[0];
        eprintln!(
            "pplx: {word:?} looks like the command `pplx {name}`; to ask it as a question, put -- first: pplx -- {word}"
        );
        return Err(EXIT_USAGE);
    }
    let question = args.question.join(" ");
    if question.trim().is_empty() {
        eprintln!("pplx: the question is blank: ask something, as pplx \"What is Rust?\"");
        return Err(EXIT_USAGE);
    }
    Ok(Some(question))
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
