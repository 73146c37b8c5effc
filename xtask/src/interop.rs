//! `cargo xtask interop`: clients nobody here wrote, from PyPI, against our servers.
//!
//! Makes a Python venv under `target/interop/venv` from `tests/interop/requirements.txt`,
//! starts the `pplx-sim` binary with `tests/interop/scenario.toml`, and runs
//! `tests/interop/sdks.py` (the official `openai` and `perplexityai` SDKs) against it; then the
//! contract step, `tests/interop/contract.py`: the `perplexityai` SDK's own types judge every
//! shape the simulator emits and every request body our client sends (recorded by
//! `cargo run -p tests --example contract-requests`); then Perplexity's official MCP server
//! (npm, `tests/interop/official-mcp`) against the simulator through its four tools
//! (`tests/interop/official_mcp.py`); then starts `pplx-mcp` and runs
//! `tests/interop/mcp_client.py` (the official `mcp` package) over stdio and Streamable HTTP.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::Result;
use crate::child::Running;

pub(crate) fn run(root: &Path) -> Result {
    // The simulator, pplx-mcp and the contract recorder, as `ci` builds them (a no-op there).
    crate::build_programs()?;
    let python = venv(root)?;
    let (_sim, url) = simulator(root)?;
    let (_compatible_sim, compatible_url) = compatible_simulator(root)?;
    sdks(root, &python, &url)?;
    contract(root, &python, &url, &compatible_url)?;
    official_mcp(root, &python, &url)?;
    mcp(root, &python, &url)
}

/// Starts the `pplx-sim` binary with the interop scenario; it stops when the first value is
/// dropped. The second is its base URL.
fn simulator(root: &Path) -> Result<(Running, String)> {
    let (child, url) = crate::child::simulator(
        Command::new(root.join("target/debug/pplx-sim"))
            .args(["--listen", "127.0.0.1:0", "--instant", "--scenario"])
            .arg(root.join("tests/interop/scenario.toml"))
            .stderr(Stdio::inherit()),
        "http://127.0.0.1:",
    )?;
    eprintln!("interop: simulator at {url}");
    Ok((child, url))
}

/// A second `pplx-sim` playing a generic OpenAI-compatible endpoint (`--compatible`: any
/// model, function tools), for the contract step's chat-completions tool checks.
fn compatible_simulator(root: &Path) -> Result<(Running, String)> {
    let (child, url) = crate::child::simulator(
        Command::new(root.join("target/debug/pplx-sim"))
            .args(["--listen", "127.0.0.1:0", "--instant", "--compatible"])
            .stderr(Stdio::inherit()),
        "http://127.0.0.1:",
    )?;
    eprintln!("interop: compatible-endpoint simulator at {url}");
    Ok((child, url))
}

/// The official `openai` and `perplexityai` SDKs against the simulator binary at `url`.
fn sdks(root: &Path, python: &Path, url: &str) -> Result {
    let sim = root.join("target/debug/pplx-sim");
    let scenario = root.join("tests/interop/scenario.toml");
    let scenario = scenario.to_str().ok_or("non-UTF-8 path")?;
    let expected = |model: &str| -> Result<String> {
        let output = Command::new(&sim)
            .args([
                "--instant",
                "--scenario",
                scenario,
                "--expected",
                model,
                "Explain quantum computing",
            ])
            .output()?;
        if !output.status.success() {
            return Err(format!(
                "pplx-sim --expected failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(String::from_utf8(output.stdout)?)
    };
    let expected = serde_json::json!({
        "sonar": expected("sonar")?,
        "agent": expected("openai/gpt-5-mini")?,
    });
    let status = Command::new(python)
        .arg(root.join("tests/interop/sdks.py"))
        .env("SIM_URL", url)
        .env("SIM_KEY", "interop-key")
        .env("SIM_LIMITED_KEY", "limited-key")
        .env("SIM_EXPECTED", expected.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err("interop checks failed".into())
    }
}

/// The contract step: the official SDK's types judge the simulator's responses (at `url`)
/// and the request bodies our client sends.
fn contract(root: &Path, python: &Path, url: &str, compatible_url: &str) -> Result {
    let requests = root.join("target/interop/requests.jsonl");
    let output = Command::new(root.join("target/debug/examples/contract-requests"))
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err("the contract-requests example failed".into());
    }
    std::fs::write(&requests, &output.stdout)?;
    let status = Command::new(python)
        .arg(root.join("tests/interop/contract.py"))
        .env("SIM_URL", url)
        .env("SIM_COMPATIBLE_URL", compatible_url)
        .env("SIM_KEY", "interop-key")
        .env("SIM_FAILING_KEY", "failing-key")
        .env("CONTRACT_REQUESTS", &requests)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err("contract checks failed".into())
    }
}

/// Perplexity's official MCP server (npm, pinned by `tests/interop/official-mcp`'s lock file)
/// against the simulator at `url`: its own schemas judge what the simulator sends, through
/// all four of its tools (`tests/interop/official_mcp.py`, with the Python `mcp` client).
fn official_mcp(root: &Path, python: &Path, url: &str) -> Result {
    let dir = root.join("target/interop/official-mcp");
    std::fs::create_dir_all(&dir)?;
    let pinned = root.join("tests/interop/official-mcp");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(pinned.join(file), dir.join(file))?;
    }
    let server = dir.join("node_modules/@perplexity-ai/mcp-server/dist/index.js");
    if !server.exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()?;
        if !status.success() {
            return Err("npm ci of the official MCP server failed".into());
        }
    }
    let status = Command::new(python)
        .arg(root.join("tests/interop/official_mcp.py"))
        .env("OFFICIAL_MCP_JS", &server)
        .env("SIM_URL", url)
        .env("SIM_KEY", "interop-key")
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err("the official MCP server's checks failed".into())
    }
}

/// The official Python `mcp` package against `pplx-mcp`, over stdio and Streamable HTTP.
fn mcp(root: &Path, python: &Path, sim_url: &str) -> Result {
    let server = root.join("target/debug/pplx-mcp");
    let token = "interop-token";
    let mut child = Running(
        Command::new(&server)
            .args([
                "--sim",
                "--no-cache",
                "--http",
                "127.0.0.1:0",
                "--allow-origin",
                "http://localhost:3000",
            ])
            .env("PPLX_MCP_TOKEN", token)
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?,
    );
    let stderr = child.0.stderr.take().ok_or("no stderr from pplx-mcp")?;
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines.next().ok_or("pplx-mcp exited before serving")??;
        if let Some(url) = line.strip_prefix("pplx-mcp: serving MCP at ") {
            break url.trim().to_owned();
        }
    };
    // Keep reading its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    eprintln!("interop: pplx-mcp at {url}");
    let status = Command::new(python)
        .arg(root.join("tests/interop/mcp_client.py"))
        .env("PPLX_MCP_BIN", &server)
        .env("PPLX_MCP_URL", &url)
        .env("SIM_URL", sim_url)
        .env("PPLX_MCP_TOKEN", token)
        .status()?;
    drop(child);
    if status.success() {
        Ok(())
    } else {
        Err("MCP interop checks failed".into())
    }
}

/// The venv's python, creating the venv and installing the pinned clients when needed.
pub(crate) fn venv(root: &Path) -> Result<std::path::PathBuf> {
    let dir = root.join("target/interop/venv");
    let python = dir.join("bin/python");
    let requirements = root.join("tests/interop/requirements.txt");
    let stamp = dir.join("requirements.stamp");
    let wanted = std::fs::read_to_string(&requirements)?;
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted)
    {
        return Ok(python);
    }
    let dir_text = dir.to_str().ok_or("non-UTF-8 path")?;
    crate::run("python3", &["-m", "venv", dir_text], &[])?;
    let python_text = python.to_str().ok_or("non-UTF-8 path")?;
    let requirements_text = requirements.to_str().ok_or("non-UTF-8 path")?;
    crate::run(
        python_text,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            requirements_text,
        ],
        &[],
    )?;
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}
