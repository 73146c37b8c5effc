//! The servers the xtask commands start: killed when dropped, so a failed check never leaves
//! one behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::Result;

/// A child process, killed when dropped.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `pplx-sim` as `command` says (its stdout is read here) and returns it with its base
/// URL, the first line it prints, which must start with `prefix`.
pub(crate) fn simulator(command: &mut Command, prefix: &str) -> Result<(Running, String)> {
    let mut child = Running(command.stdout(Stdio::piped()).spawn()?);
    let stdout = child.0.stdout.take().ok_or("no stdout from pplx-sim")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line.trim().to_owned();
    if !url.starts_with(prefix) {
        return Err(format!("pplx-sim printed {url:?} instead of its base URL").into());
    }
    Ok((child, url))
}
