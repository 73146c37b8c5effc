//! `pplx man`: the manual page. clap_mangen renders the flags; the commands are described
//! here, not as `pplx-log(1)` pages that are never generated, and the page gains what a man
//! page is read for: the config file, the environment and the exit codes.

use std::io::Write;

/// Every variable `pplx` reads, and what for.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "PERPLEXITY_API_KEY",
        "the API key; with none (and no PERPLEXITY_API_KEYS), the built-in simulator answers",
    ),
    (
        "PERPLEXITY_API_KEYS",
        "several keys, comma-separated (PERPLEXITY_API_KEY_1, _2, ... too): rate-limited keys rotate",
    ),
    (
        "PERPLEXITY_BASE_URL",
        "the API's base URL (a pplx-sim, a proxy); used only with a key",
    ),
    (
        "PERPLEXITY_PROXY, HTTPS_PROXY, HTTP_PROXY, NO_PROXY",
        "an HTTP proxy for requests",
    ),
    (
        "PPLX_SHARED_SECRET",
        "the secret that keys shared state (--shared-state redis://...) for a fleet",
    ),
    (
        "XDG_CONFIG_HOME",
        "where pplx/config.toml is read (default ~/.config)",
    ),
    (
        "XDG_DATA_HOME",
        "where pplx/history.db is kept (default ~/.local/share)",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "export each answer's GenAI span and the client metrics by OTLP there, flushed before exit; nothing is exported when unset",
    ),
    (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/protobuf (the default) or grpc",
    ),
    (
        "OTEL_SERVICE_NAME",
        "the service name exported (default pplx)",
    ),
    (
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        "true: the question and the answer go on the span too (never by default)",
    ),
    (
        "NO_COLOR, TERM",
        "NO_COLOR set (not empty) or TERM=dumb: plain text on a terminal",
    ),
];

/// The files `pplx` reads and writes.
const FILES: &[(&str, &str)] = &[
    (
        "$XDG_CONFIG_HOME/pplx/config.toml",
        "the config file (--config names another): model, api, the keys' variables, cache, log, [aliases], [timeouts], [retry], [breaker], [budget], [families.NAME]; every key optional, an unknown one an error (docs/GUIDE.md has the table)",
    ),
    (
        "$XDG_DATA_HOME/pplx/history.db",
        "the history of questions and answers (SQLite, mode 0600; never a key)",
    ),
];

/// What the exit codes mean.
const EXIT_STATUS: &str = "0 answered (or the reader went away); 1 failed; 2 usage error (a flag, the config file, the environment or the question needs changing); 130 interrupted.";

/// The manual page, roff.
pub(crate) fn page(command: clap::Command) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    writeln!(page, ".SH COMMANDS")?;
    for subcommand in command.get_subcommands() {
        let name = subcommand.get_name();
        let about = subcommand
            .get_about()
            .map(ToString::to_string)
            .unwrap_or_default();
        writeln!(page, ".TP\n\\fBpplx {name}\\fR")?;
        writeln!(page, "{} (pplx help {name} lists its flags)", roff(&about))?;
    }
    writeln!(page, ".SH FILES")?;
    for (file, meaning) in FILES {
        writeln!(page, ".TP\n\\fI{file}\\fR\n{}", roff(meaning))?;
    }
    writeln!(page, ".SH ENVIRONMENT")?;
    for (name, meaning) in ENVIRONMENT {
        writeln!(page, ".TP\n\\fB{name}\\fR\n{}", roff(meaning))?;
    }
    writeln!(page, ".SH EXIT STATUS\n{}", roff(EXIT_STATUS))?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// Text made safe for roff: backslashes doubled, hyphens escaped, and no line that starts
/// with a control character.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
