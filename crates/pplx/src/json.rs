//! The `--json` output: one JSON object per line, in the documented field order (serde
//! structs, so the order is the declaration's). docs/GUIDE.md lists the schema.

use std::io::Write;

use serde::Serialize;

/// One line of `--json` output. Field order is the documented one.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum JsonLine<'a> {
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
        /// How many times the stream was read again from where it broke.
        resumed: u32,
        /// The built-in simulator answered: the text is not a real answer.
        simulated: bool,
        /// The model that answered, as the server names it (a `models` chain's member, the
        /// model behind an effort); `null` when the server named none.
        model: Option<&'a str>,
        /// The answer's token counts; `null` when the server reported none.
        usage: Option<JsonUsage>,
        /// What the server reported the answer cost, in US dollars; `null` when it did not.
        cost_usd: Option<f64>,
        text: &'a str,
    },
    Error {
        kind: &'a str,
        message: String,
        partial: &'a str,
    },
}

/// Token counts on the `done` line.
#[derive(Serialize)]
pub(crate) struct JsonUsage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
}

#[derive(Serialize)]
pub(crate) struct JsonResult<'a> {
    pub(crate) title: &'a str,
    pub(crate) url: &'a str,
    pub(crate) date: Option<&'a str>,
}

/// Writes one line; the error tells a closed stdout from a written line.
pub(crate) fn json_line(line: &JsonLine<'_>) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, line)?;
    stdout.write_all(b"\n")?;
    stdout.flush()
}
