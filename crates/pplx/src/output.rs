//! Where an answer goes: [`Terminal`] (markdown rendered as it streams, a spinner until the
//! first token, the sources after the answer, errors as advice on stderr) or [`Json`]
//! (`--json`: one object per line, docs/GUIDE.md has the schema). Asking speaks to
//! [`Output`] only, so neither mode is a branch in every arm.

use std::io::{self, IsTerminal, StdoutLock, Write};
use std::time::Duration;

use chat_core::{ChatResponse, Error, Sources, Usage};

use crate::json::{JsonLine, JsonResult, JsonUsage, json_line};
use crate::render::Renderer;
use crate::session::{Mode, advice};

/// An answer's way out. A write that fails with a broken pipe tells the caller the reader
/// has gone.
pub(crate) trait Output {
    /// The next piece of the answer.
    fn delta(&mut self, text: &str) -> io::Result<()>;
    /// The next piece of the model's reasoning.
    fn reasoning(&mut self, text: &str) -> io::Result<()>;
    /// The sources so far.
    fn sources(&mut self, sources: &Sources) -> io::Result<()>;
    /// Token counts and cost.
    fn usage(&mut self, usage: &Usage) -> io::Result<()>;
    /// The stream broke and the answer starts over.
    fn restart(&mut self) -> io::Result<()>;
    /// The whole response.
    fn done(&mut self, response: &ChatResponse) -> io::Result<()>;
    /// The answer is whole, with these sources.
    fn complete(&mut self, sources: &Sources);
    /// Ctrl-C stopped the answer after `partial`.
    fn interrupted(&mut self, partial: &str);
    /// The answer failed after `partial`, asked in `mode`.
    fn failed(&mut self, error: &Error, partial: &str, mode: Mode);
}

/// The most characters of a progress line the spinner shows.
const PROGRESS_CHARS: usize = 70;

/// Whether stdout takes styling (colour, links, redrawn lines): a terminal, not `TERM=dumb`,
/// and no `NO_COLOR` (set and not empty, as no-color.org says).
pub(crate) fn styled_terminal() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    let dumb = std::env::var("TERM").is_ok_and(|term| term == "dumb");
    io::stdout().is_terminal() && !no_color && !dumb
}

/// The answer on a terminal (or plain when piped).
pub(crate) struct Terminal {
    renderer: Renderer<StdoutLock<'static>>,
    spinner: indicatif::ProgressBar,
    styled: bool,
    show_reasoning: bool,
    /// Answer text is on screen (since the last restart).
    wrote_text: bool,
}

impl Terminal {
    pub(crate) fn new(show_reasoning: bool) -> Self {
        let styled = styled_terminal();
        let width = terminal_size::terminal_size().map_or(80, |(width, _)| usize::from(width.0));
        let spinner = if io::stderr().is_terminal() {
            let spinner = indicatif::ProgressBar::new_spinner().with_message("searching…");
            spinner.enable_steady_tick(Duration::from_millis(80));
            spinner
        } else {
            indicatif::ProgressBar::hidden()
        };
        Terminal {
            renderer: Renderer::new(io::stdout().lock(), styled, width),
            spinner,
            styled,
            show_reasoning,
            wrote_text: false,
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.spinner.finish_and_clear();
    }
}

impl Output for Terminal {
    fn delta(&mut self, text: &str) -> io::Result<()> {
        self.spinner.finish_and_clear();
        self.wrote_text = true;
        self.renderer.push(text)
    }

    fn reasoning(&mut self, text: &str) -> io::Result<()> {
        if !self.show_reasoning {
            // The progress lines (`Searching: ...`, `Reading: ...`, `Using skill: ...`) say
            // what the run is doing while nothing else is on screen.
            if !self.wrote_text
                && let Some(line) = text.lines().rev().find(|line| !line.trim().is_empty())
            {
                let line: String = line.trim().chars().take(PROGRESS_CHARS).collect();
                self.spinner.set_message(line);
            }
            return Ok(());
        }
        self.spinner.finish_and_clear();
        self.renderer.dim(text)
    }

    fn sources(&mut self, _: &Sources) -> io::Result<()> {
        Ok(())
    }

    fn usage(&mut self, _: &Usage) -> io::Result<()> {
        Ok(())
    }

    fn restart(&mut self) -> io::Result<()> {
        self.wrote_text = false;
        let finished = self.renderer.finish();
        eprintln!("pplx: the stream broke; starting the answer over");
        finished
    }

    fn done(&mut self, _: &ChatResponse) -> io::Result<()> {
        Ok(())
    }

    fn complete(&mut self, sources: &Sources) {
        self.spinner.finish_and_clear();
        let _ = self.renderer.finish();
        print_sources(sources, self.styled);
    }

    fn interrupted(&mut self, _: &str) {
        self.spinner.finish_and_clear();
        let _ = self.renderer.finish();
        eprintln!("pplx: interrupted");
    }

    fn failed(&mut self, error: &Error, _: &str, mode: Mode) {
        self.spinner.finish_and_clear();
        if self.wrote_text {
            let _ = self.renderer.finish();
        }
        eprintln!("pplx: {}", advice(error, mode));
    }
}

/// `--json-schema`: nothing while the answer streams (it is JSON text, not prose); the parsed
/// object is printed whole once it is complete (by `ask`, which owns the exit code).
pub(crate) struct Structured;

impl Output for Structured {
    fn delta(&mut self, _: &str) -> io::Result<()> {
        Ok(())
    }

    fn reasoning(&mut self, _: &str) -> io::Result<()> {
        Ok(())
    }

    fn sources(&mut self, _: &Sources) -> io::Result<()> {
        Ok(())
    }

    fn usage(&mut self, _: &Usage) -> io::Result<()> {
        Ok(())
    }

    fn restart(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn done(&mut self, _: &ChatResponse) -> io::Result<()> {
        Ok(())
    }

    fn complete(&mut self, _: &Sources) {}

    fn interrupted(&mut self, _: &str) {
        eprintln!("pplx: interrupted");
    }

    fn failed(&mut self, error: &Error, _: &str, mode: Mode) {
        eprintln!("pplx: {}", advice(error, mode));
    }
}

/// `--json`: one object per line on stdout.
pub(crate) struct Json {
    /// The built-in simulator answers: said on the `done` line.
    pub(crate) simulated: bool,
}

impl Output for Json {
    fn delta(&mut self, text: &str) -> io::Result<()> {
        json_line(&JsonLine::Delta { text })
    }

    fn reasoning(&mut self, text: &str) -> io::Result<()> {
        json_line(&JsonLine::Reasoning { text })
    }

    fn sources(&mut self, sources: &Sources) -> io::Result<()> {
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
        })
    }

    fn usage(&mut self, usage: &Usage) -> io::Result<()> {
        json_line(&JsonLine::Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
            cost: usage.cost.as_ref().map(|cost| cost.total_cost),
        })
    }

    fn restart(&mut self) -> io::Result<()> {
        json_line(&JsonLine::Restart)
    }

    fn done(&mut self, response: &ChatResponse) -> io::Result<()> {
        json_line(&JsonLine::Done {
            finish_reason: response.finish_reason.as_str(),
            fallback: response.fallback,
            cached: response.cached,
            resumed: response.resumed,
            simulated: self.simulated,
            model: Some(response.model.as_str()).filter(|model| !model.is_empty()),
            usage: response.usage.as_ref().map(|usage| JsonUsage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.total_tokens,
            }),
            cost_usd: response
                .usage
                .as_ref()
                .and_then(|usage| usage.cost.as_ref())
                .map(|cost| cost.total_cost),
            text: &response.text,
        })
    }

    fn complete(&mut self, _: &Sources) {}

    fn interrupted(&mut self, partial: &str) {
        let _ = json_line(&JsonLine::Error {
            kind: "cancelled",
            message: "interrupted".to_owned(),
            partial,
        });
    }

    fn failed(&mut self, error: &Error, partial: &str, _: Mode) {
        let _ = json_line(&JsonLine::Error {
            kind: error.kind().as_str(),
            message: error.report().to_string(),
            partial,
        });
    }
}

/// A URL as a clickable terminal hyperlink (OSC 8) on a terminal that can show one, else as
/// it is. Terminals without OSC 8 support ignore the sequence; unstyled output (`TERM=dumb`,
/// `NO_COLOR`, a pipe: see [`styled_terminal`]) gets plain text.
fn hyperlink(url: &str, styled: bool) -> String {
    // A URL with control characters is never put inside an escape sequence.
    if styled && !url.chars().any(char::is_control) {
        format!("\x1b]8;;{url}\x1b\\{url}\x1b]8;;\x1b\\")
    } else {
        url.to_owned()
    }
}

/// The numbered sources after an answer, with their titles where known.
pub(crate) fn print_sources(sources: &Sources, styled: bool) {
    if sources.citations.is_empty() {
        return;
    }
    let (dim, reset) = if styled {
        ("\x1b[2m", "\x1b[0m")
    } else {
        ("", "")
    };
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "\n{dim}Sources{reset}");
    for (number, url) in sources.numbered() {
        let title = sources
            .search_results
            .iter()
            .find(|result| result.url == url)
            .map(|result| result.title.as_str())
            .filter(|title| !title.is_empty());
        let link = hyperlink(url, styled);
        match title {
            Some(title) => {
                let _ = writeln!(stdout, "[{number}] {title} — {link}");
            }
            None => {
                let _ = writeln!(stdout, "[{number}] {link}");
            }
        }
    }
    let _ = stdout.flush();
}
