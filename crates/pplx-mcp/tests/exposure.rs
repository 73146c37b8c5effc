//! The built binary's HTTP exposure rule: an address beyond loopback with no token is refused
//! while it would spend an API key, and served when the built-in simulator answers (no key
//! is spent: issue 36).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts `pplx-mcp args` and returns what its stderr said up to the line that shows it
/// serving, or all of it if it ended first.
fn start(args: &[&str], key: Option<&str>) -> (String, bool) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pplx-mcp"));
    command
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent-pplx-test-config")
        .env_remove("PERPLEXITY_API_KEY")
        .env_remove("PERPLEXITY_API_KEYS")
        .env_remove("PPLX_MCP_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(key) = key {
        command.env("PERPLEXITY_API_KEY", key);
    }
    let mut child = command.spawn().unwrap();
    let mut said = String::new();
    let mut serving = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("serving MCP at") {
            serving = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    (said, serving)
}

#[test]
fn an_open_address_without_a_token_is_refused_only_when_a_key_would_be_spent() {
    let (said, serving) = start(&["--sim", "--http", "0.0.0.0:0"], None);
    assert!(serving, "{said}");
    assert!(said.contains("no API key is spent"), "{said}");
    let (said, serving) = start(&["--http", "0.0.0.0:0"], Some("pplx-not-a-real-key"));
    assert!(!serving, "{said}");
    assert!(said.contains("would spend the API key"), "{said}");
}
