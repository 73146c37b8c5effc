//! `cargo xtask interop`: clients nobody here wrote, from PyPI, against our servers.
//!
//! Makes a Python venv under `target/interop/venv` from `tests/interop/requirements.txt`,
//! starts the `pplx-sim` binary with `tests/interop/scenario.toml`, and runs
//! `tests/interop/sdks.py` (the official `openai` and `perplexityai` SDKs) against it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::Result;

/// Kills the child process when dropped, so a failed check never leaves a server behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn run(root: &Path) -> Result {
    crate::run("cargo", &["build", "--locked", "-p", "pplx-sim"], &[])?;
    let python = venv(root)?;
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
    let mut child = Running(
        Command::new(&sim)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--instant",
                "--scenario",
                scenario,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().ok_or("no stdout from pplx-sim")?;
    let mut first_line = String::new();
    BufReader::new(stdout).read_line(&mut first_line)?;
    let url = first_line.trim().to_owned();
    if !url.starts_with("http://127.0.0.1:") {
        return Err(format!("pplx-sim printed {url:?} instead of its base URL").into());
    }
    eprintln!("interop: simulator at {url}");
    let status = Command::new(&python)
        .arg(root.join("tests/interop/sdks.py"))
        .env("SIM_URL", &url)
        .env("SIM_KEY", "interop-key")
        .env("SIM_LIMITED_KEY", "limited-key")
        .env("SIM_EXPECTED", expected.to_string())
        .status()?;
    drop(child);
    if status.success() {
        Ok(())
    } else {
        Err("interop checks failed".into())
    }
}

/// The venv's python, creating the venv and installing the pinned clients when needed.
fn venv(root: &Path) -> Result<std::path::PathBuf> {
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
