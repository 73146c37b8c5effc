//! A session: what asking needs (the provider, the model, the output mode, the history),
//! made once from the arguments and the config file; one question asked and streamed to its
//! output, kept in the history; and errors as advice in the terms of where they were asked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_core::{Accumulator, ChatEvent, ChatProvider, ChatRequest, Error, Message};
use futures_util::StreamExt;
use pplx::history::{Entry, History};
use provider_perplexity::PerplexityProvider;

use crate::output::{self, Output};
use crate::{Args, EXIT_FAILURE, EXIT_INTERRUPTED, stats, write_stdout};

/// Where a question was asked, for hints in that place's own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// From the command line: hints name flags (`--model sonar`).
    Command,
    /// In an interactive session: hints name slash commands (`/model sonar`).
    Interactive,
}

/// Everything a session needs.
pub(crate) struct Session {
    pub(crate) provider: Arc<dyn ChatProvider>,
    /// The provider under the cache, for its key statistics.
    pub(crate) perplexity: PerplexityProvider,
    pub(crate) model: String,
    pub(crate) system: Option<String>,
    pub(crate) json: bool,
    pub(crate) stats: bool,
    pub(crate) show_reasoning: bool,
    pub(crate) stream: bool,
    /// Keeps the embedded simulator alive while the session runs.
    pub(crate) _sim: Option<pplx_setup::Simulator>,
    /// The response cache, for its statistics (`None` when it is off).
    pub(crate) cache: Option<cache::CachedProvider<PerplexityProvider>>,
    /// Whether the cache is shared (Redis), and may be unreachable.
    pub(crate) shared_cache: bool,
    /// Whether the unreachable shared cache was said already (once a process).
    pub(crate) cache_warned: std::cell::Cell<bool>,
    pub(crate) mode: Mode,
    /// The history and the conversation being written, unless the history is off.
    pub(crate) log: Option<(History, std::cell::Cell<i64>)>,
    /// The `--attach` files, sent with the command line's question (and what the history
    /// keeps of each).
    pub(crate) attachments: Vec<(chat_core::Attachment, pplx::history::Attached)>,
    /// `--json-schema`: structured output, the answer printed as the parsed object.
    pub(crate) json_schema: Option<provider_perplexity::JsonSchema>,
    /// `pplx attach`: the background run to read instead of asking.
    pub(crate) attached: Option<String>,
    /// `--domain`, `--recency`, `--after`, `--before`: every question's search filters.
    pub(crate) filters: provider_perplexity::SearchFilters,
    /// The model list (`GET /v1/models`), read once when `/model` needs it; `None` when it
    /// could not be read.
    pub(crate) models: tokio::sync::OnceCell<Option<Vec<String>>>,
    /// What a Sonar name was mapped to was said (`--stats` says it once).
    pub(crate) mapping_said: std::cell::Cell<bool>,
}

pub(crate) async fn session(
    args: &Args,
    file: pplx_setup::config::FileConfig,
    attachments: Vec<(chat_core::Attachment, pplx::history::Attached)>,
    json_schema: Option<provider_perplexity::JsonSchema>,
) -> Result<Session, u8> {
    let made = session_from(args, file, attachments, json_schema).await;
    made.map_err(|error| {
        eprintln!("pplx: {}", error.report());
        if error.is_usage() {
            crate::EXIT_USAGE
        } else {
            EXIT_FAILURE
        }
    })
}

/// [`session`], its error not said yet.
async fn session_from(
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
        spend_ledger: spend_book(&file),
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
        filters: provider_perplexity::SearchFilters::default(),
        models: tokio::sync::OnceCell::new(),
        mapping_said: std::cell::Cell::new(false),
    })
}

/// With a `[budget]`, its spend kept in the history database, so that every run of this
/// user counts against one limit (Redis, when shared state is named, wins over it).
fn spend_book(
    file: &pplx_setup::config::FileConfig,
) -> Option<std::sync::Arc<dyn provider_perplexity::SpendLedger>> {
    file.budget.usd?;
    let path = pplx::history::History::default_path()?;
    match pplx::history::SpendBook::open(&path) {
        Ok(book) => Some(std::sync::Arc::new(book)),
        Err(error) => {
            eprintln!(
                "pplx: the budget's spend cannot be kept in {} ({error}); this run counts its own spend",
                path.display()
            );
            None
        }
    }
}

/// What the answer so far looks like, for the stats, the error line and the history.
#[derive(Default)]
pub(crate) struct Progress {
    /// The answer as its events built it (since the last `Restart`; the whole response once
    /// `Done` arrived).
    pub(crate) answer: Accumulator,
    pub(crate) first_token: Option<Duration>,
    pub(crate) restarts: u32,
    /// How it ended, for the history.
    pub(crate) outcome: Outcome,
    /// The reader of stdout went away (`pplx … | head -1`): the answer stopped there.
    pub(crate) stdout_closed: bool,
    /// The shared cache could not be reached for this answer.
    pub(crate) cache_unreachable: bool,
}

/// How an answer ended.
#[derive(Debug, Default, PartialEq)]
pub(crate) enum Outcome {
    /// Answered (or still being answered).
    #[default]
    Answered,
    /// Stopped by the user (Ctrl-C) or by the reader of stdout going away.
    Cancelled(&'static str),
    /// Failed: the error's kind and its report.
    Failed { kind: &'static str, message: String },
}

impl Outcome {
    /// The failure `error`.
    fn failed(error: &Error) -> Outcome {
        Outcome::Failed {
            kind: error.kind().as_str(),
            message: error.report().to_string(),
        }
    }

    /// The history's `error_kind` and `error_message`: none for an answer, else why it did
    /// not come (`failed` when the exit code says so without a reason).
    fn kept(&self, code: u8) -> Option<(String, String)> {
        match self {
            Outcome::Answered if code == 0 => None,
            Outcome::Answered => Some(("failed".to_owned(), "the request failed".to_owned())),
            Outcome::Cancelled(why) => Some(("cancelled".to_owned(), (*why).to_owned())),
            Outcome::Failed { kind, message } => Some(((*kind).to_owned(), message.clone())),
        }
    }
}

impl Session {
    /// The search filters as the history keeps them (`null` for none).
    pub(crate) fn filters_kept(&self) -> serde_json::Value {
        if self.filters == provider_perplexity::SearchFilters::default() {
            serde_json::Value::Null
        } else {
            serde_json::to_value(&self.filters).unwrap_or_default()
        }
    }

    /// Where an answer is written: `--json` lines, `--json-schema`'s parsed object, or the
    /// terminal.
    fn output(&self) -> Box<dyn Output> {
        if self.json {
            Box::new(output::Json {
                simulated: self._sim.is_some(),
            })
        } else if self.json_schema.is_some() {
            Box::new(output::Structured)
        } else {
            Box::new(output::Terminal::new(self.show_reasoning))
        }
    }
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
pub(crate) fn request(session: &Session, history: &[Message], question: &str) -> ChatRequest {
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
    if session.filters != provider_perplexity::SearchFilters::default() {
        // Written as Sonar's fields: on the Agent API the provider moves them inside the
        // web_search tool.
        let mut options = provider_perplexity::SonarOptions::default();
        options.filters = session.filters.clone();
        request = options.apply(request);
    }
    request
}

pub(crate) async fn ask(session: &Session, history: &mut Vec<Message>, question: &str) -> u8 {
    let request = request(session, history, question);
    let before = session.perplexity.key_stats();
    let cache_before = session.cache.as_ref().map(|cache| cache.stats());
    let started = Instant::now();
    // Ctrl-C is ours before the spinner shows: the listener registers when first polled, and
    // a SIGINT before that would end the process with no word and no history entry.
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let early = futures_util::FutureExt::now_or_never(&mut interrupted).is_some();
    let mut output = session.output();
    let mut progress = Progress::default();
    let outcome = if early {
        None
    } else {
        tokio::select! {
            outcome = answer(session, request, output.as_mut(), &mut progress, started) => Some(outcome),
            _ = &mut interrupted => None,
        }
    };
    let code = match outcome {
        None => {
            // The answer's future is dropped: the request is cancelled, the connection closed.
            progress.outcome = Outcome::Cancelled("interrupted");
            output.interrupted(progress.answer.text());
            EXIT_INTERRUPTED
        }
        // Nobody reads the rest: the stream is dropped (the request cancelled) quietly.
        Some(Ok(())) if progress.stdout_closed => {
            if !progress.answer.is_done() {
                progress.outcome = Outcome::Cancelled("stdout was closed");
            }
            0
        }
        Some(Ok(())) if session.json_schema.is_some() => structured(&mut progress),
        Some(Ok(())) => {
            output.complete(&progress.answer.response().sources);
            0
        }
        Some(Err(error)) => {
            // The text the error carries is the text the answer holds (since its last
            // restart): the provider's ledger and the accumulator keep the same.
            let partial = error.partial_text().unwrap_or(progress.answer.text());
            output.failed(&error, partial, session.mode);
            progress.outcome = Outcome::failed(&error);
            refusal_code(&error, partial)
        }
    };
    drop(output);
    if code == 0 && session.show_reasoning && progress.answer.response().reasoning.is_empty() {
        eprintln!(
            "pplx: --show-reasoning: {} sent no reasoning to show (only models that reason first send it)",
            session.model
        );
    }
    progress.cache_unreachable = cache_unreachable(session, cache_before);
    if session.stats {
        stats::print_stats(session, &before, &progress, started.elapsed());
    }
    record(session, question, &progress, code, started.elapsed());
    if code == 0 && progress.outcome == Outcome::Answered {
        history.push(Message::user(question));
        history.push(Message::assistant(progress.answer.text()));
    }
    code
}

/// The exit code of a failed answer: a refusal of what was asked, before anything was sent
/// (too large, a name no one serves: no HTTP status, no text) is a usage error (2); any
/// other failure is 1.
fn refusal_code(error: &Error, partial: &str) -> u8 {
    use chat_core::ErrorKind;
    let refused = matches!(error.kind(), ErrorKind::BadRequest | ErrorKind::Config)
        && error.status_code().is_none()
        && partial.is_empty();
    if refused {
        crate::EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// `--json-schema`'s answer, parsed and printed as one JSON object; an answer that is not
/// JSON is a failure (exit 1) that shows what came.
fn structured(progress: &mut Progress) -> u8 {
    let response = progress.answer.response();
    match provider_perplexity::parse_answer::<serde_json::Value>(response) {
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
            progress.outcome = Outcome::failed(&error);
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
    let done = progress.answer.is_done();
    let response = progress.answer.response();
    let (model, api) = session.perplexity.resolve(&session.model);
    let mut entry = Entry::default();
    entry.conversation = conversation.get();
    entry.question = question.to_owned();
    entry.answer = response.text.clone();
    entry.reasoning = response.reasoning.clone();
    entry.model = model;
    entry.api = api.as_str().to_owned();
    entry.sources = response.sources.clone();
    entry.cost = response
        .usage
        .as_ref()
        .and_then(|usage| usage.cost.as_ref())
        .map(|cost| cost.total_cost);
    entry.usage = response.usage.clone();
    entry.first_token_ms = progress.first_token.map(|first| first.as_millis() as u64);
    entry.total_ms = elapsed.as_millis() as u64;
    entry.fallback = done && response.fallback;
    entry.cached = done && response.cached;
    entry.simulated = session._sim.is_some();
    entry.run_id = session.attached.clone();
    entry.attachments = session
        .attachments
        .iter()
        .map(|(_, attached)| attached.clone())
        .collect();
    entry.filters = session.filters_kept();
    if let Some((kind, message)) = progress.outcome.kept(code) {
        entry.error_kind = Some(kind);
        entry.error_message = Some(message);
    }
    // A detached run's reading fills the entry `--detach` made.
    let kept = history.fill_run(&entry).and_then(|filled| {
        if filled {
            Ok(0)
        } else {
            history.record(&entry)
        }
    });
    if let Err(error) = kept {
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
        let event = event?;
        progress.answer.push(&event);
        let written = match &event {
            ChatEvent::TextDelta(text) => {
                progress
                    .first_token
                    .get_or_insert_with(|| started.elapsed());
                output.delta(text)
            }
            ChatEvent::ReasoningDelta(text) => output.reasoning(text),
            ChatEvent::Sources(sources) => output.sources(sources),
            ChatEvent::Usage(usage) => output.usage(usage),
            ChatEvent::Restart => {
                progress.restarts += 1;
                output.restart()
            }
            ChatEvent::Done(response) => output.done(response),
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
    let about_model = error.param() == Some("model") || report.to_string().contains("model");
    let about_key = report.to_string().contains("key");
    match (error.kind(), mode) {
        (ErrorKind::BadRequest, Mode::Interactive) if about_model => {
            format!("{report} (/help lists the model names; /model NAME changes it)")
        }
        (ErrorKind::Config, Mode::Interactive) if about_key => {
            format!("{report}; restart with --sim to use the built-in simulator")
        }
        (ErrorKind::BadRequest, Mode::Command) if about_model => {
            format!("{report} (pplx --help and pplx models list the model names)")
        }
        (ErrorKind::Config, Mode::Command) if about_key => {
            format!("{report}; or run with --sim to use the built-in simulator")
        }
        (ErrorKind::BadRequest | ErrorKind::Config, _) => report.to_string(),
        (kind, _) => advice_anywhere(error, kind),
    }
}

fn advice_anywhere(error: &Error, kind: chat_core::ErrorKind) -> String {
    use chat_core::ErrorKind;
    let report = error.report();
    match kind {
        ErrorKind::Auth => format!("{report}: check PERPLEXITY_API_KEY (or PERPLEXITY_API_KEYS)"),
        ErrorKind::Quota => format!("{report}: add credits to the API account, or use another key"),
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
        assert!(command.contains("pplx models"), "{command}");
        let session = advice(&refused, Mode::Interactive);
        assert!(
            session.contains("/model NAME") && !session.contains("--"),
            "{session}"
        );
        // A hint about models only where the model was the trouble (issue 36).
        for unrelated in [
            Error::status(404, "no such run"),
            Error::status(400, "the question is too large"),
        ] {
            for mode in [Mode::Command, Mode::Interactive] {
                let said = advice(&unrelated, mode);
                assert!(!said.contains("model") && !said.contains("--sim"), "{said}");
            }
        }
        let unconfigured = Error::config("no key");
        assert!(advice(&unconfigured, Mode::Command).contains("run with --sim"));
        assert!(advice(&unconfigured, Mode::Interactive).contains("restart with --sim"));
    }
}
