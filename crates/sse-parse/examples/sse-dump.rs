//! Drives the parser from stdin, for outside conformance suites.
//!
//! `sse-dump [--chunk N]` reads stdin with ordinary reads of at most N bytes (default 4096),
//! feeds each read to the parser as it arrives and, flushing after each read, writes one JSON
//! object per line: `{"type":T,"data":D,"id":I}` per event (T is "message" when the stream gave
//! none; D and I are decoded as UTF-8 with U+FFFD for invalid bytes; I is "" when no ID is set)
//! and `{"retry":N}` per valid retry field. Exit status 0 at end of input, 1 when the input
//! breaks a parser limit, 2 for bad arguments.

use std::io::{ErrorKind, Read, Write};
use std::process::ExitCode;

use sse_parse::{EventParser, Item};

fn main() -> ExitCode {
    let chunk_size = match parse_args(std::env::args().skip(1)) {
        Ok(chunk_size) => chunk_size,
        Err(message) => {
            eprintln!("sse-dump: {message}\nusage: sse-dump [--chunk N]");
            return ExitCode::from(2);
        }
    };
    match dump(chunk_size) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sse-dump: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<usize, String> {
    let mut chunk_size = 4096;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--chunk" => {
                let value = args.next().ok_or("--chunk needs a value")?;
                chunk_size = value
                    .parse()
                    .ok()
                    .filter(|&size| size > 0)
                    .ok_or_else(|| format!("--chunk wants a positive number, got {value:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(chunk_size)
}

fn dump(chunk_size: usize) -> Result<(), String> {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut parser = EventParser::new();
    let mut buffer = vec![0; chunk_size];
    let mut lines = String::new();
    loop {
        let read = match stdin.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(format!("cannot read stdin: {error}")),
        };
        let fed = parser.feed(&buffer[..read], |item| match item {
            Item::Event(event) => {
                // Written by hand to keep the key order fixed: type, data, id.
                lines.push_str("{\"type\":");
                push_json_string(&mut lines, &String::from_utf8_lossy(event.event_type()));
                lines.push_str(",\"data\":");
                push_json_string(&mut lines, &event.data_lossy());
                lines.push_str(",\"id\":");
                push_json_string(&mut lines, &String::from_utf8_lossy(event.id()));
                lines.push_str("}\n");
            }
            Item::Retry(millis) => lines.push_str(&format!("{{\"retry\":{millis}}}\n")),
            _ => {}
        });
        // The events before a limit error are written before it is reported.
        stdout
            .write_all(lines.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|error| format!("cannot write stdout: {error}"))?;
        lines.clear();
        fed.map_err(|error| error.to_string())?;
    }
    parser.finish();
    Ok(())
}

fn push_json_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::Value::from(text).to_string());
}
