//! Publish-readiness: every library crate builds, clippy-clean, with each of its features
//! alone and with none (the check `cargo hack --each-feature --no-dev-deps` makes), and `cargo package`
//! packages and verifies them: in the real workspace those outside the workspace-hack's
//! reach, then all of them together in a copy without the workspace-hack (as `cargo hakari
//! publish` would publish them).

use std::path::Path;
use std::process::Command;

use crate::{Result, run};

/// The crates meant for crates.io, in dependency order: their package names, all free there
/// (`cargo info NAME`), each library keeping its short name (`sse_parse`, `chat_core`, ...).
pub(crate) const LIBRARIES: &[&str] = &[
    "pplx-sse-parse",
    "pplx-resilience",
    "pplx-resilience-redis",
    "pplx-chat-core",
    "pplx-cache",
    "pplx-provider-perplexity",
    "pplx-sim",
    "pplx-setup",
];

/// The libraries that reach the workspace-hack (`pplx-sim` depends on it, `pplx-setup` on
/// `pplx-sim`): packaged only in the copy without it.
const REACH_THE_HACK: &[&str] = &["pplx-sim", "pplx-setup"];

/// `cargo clippy` of each library crate with no features, then with each feature alone.
pub(crate) fn features(root: &Path) -> Result {
    let output = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(root)
        .output()?;
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let mut checks = 0;
    for package in metadata["packages"].as_array().ok_or("no packages")? {
        let name = package["name"].as_str().unwrap_or_default();
        if !LIBRARIES.contains(&name) {
            continue;
        }
        let mut combinations = vec![String::new()];
        if let Some(features) = package["features"].as_object() {
            combinations.extend(
                features
                    .keys()
                    .filter(|feature| *feature != "default")
                    .cloned(),
            );
        }
        for features in &combinations {
            let mut args = vec![
                "clippy",
                "--locked",
                "--quiet",
                "-p",
                name,
                "--lib",
                "--no-default-features",
            ];
            if !features.is_empty() {
                args.extend(["--features", features]);
            }
            // Warnings are errors for this crate only (as flags after `--`), so the
            // dependencies' builds are shared with the other checks, not rebuilt.
            args.extend(["--", "-D", "warnings"]);
            run("cargo", &args, &[])?;
            checks += 1;
        }
    }
    eprintln!(
        "features: {checks} feature combinations of {} crates build",
        LIBRARIES.len()
    );
    Ok(())
}

/// `cargo package` (with verification) of the library crates: first in the real workspace,
/// every library the workspace-hack does not reach (each verified against the others'
/// packages, not their sources: no dependency is left for crates.io to answer with a
/// stranger's crate); then all of them in a scratch copy of the workspace without the
/// workspace-hack, which only unifies features here and is never published.
pub(crate) fn package(root: &Path) -> Result {
    forget_earlier_packages()?;
    // `--allow-dirty`: a check of the tree as it is, committed or not.
    let mut args = vec!["package", "--locked", "--allow-dirty", "--quiet"];
    for library in LIBRARIES
        .iter()
        .filter(|name| !REACH_THE_HACK.contains(name))
    {
        args.extend(["-p", library]);
    }
    let status = Command::new("cargo")
        .args(&args)
        .current_dir(root)
        .status()?;
    if !status.success() {
        return Err(format!("cargo package in the workspace failed: {status}").into());
    }
    eprintln!(
        "package: {} library crates packaged and verified in the workspace itself",
        LIBRARIES.len() - REACH_THE_HACK.len()
    );
    package_without_hack(root)
}

/// `cargo package` of every library crate in a scratch copy without the workspace-hack.
fn package_without_hack(root: &Path) -> Result {
    let scratch = root.join("target/package-check");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let listed = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
        ])
        .current_dir(root)
        .output()?;
    if !listed.status.success() {
        return Err("git ls-files failed".into());
    }
    for file in listed
        .stdout
        .split(|byte| *byte == 0)
        .filter(|file| !file.is_empty())
    {
        let relative = Path::new(std::str::from_utf8(file)?);
        let source = root.join(relative);
        if !source.is_file() {
            continue;
        }
        let target = scratch.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&source, &target)?;
        if relative.file_name() == Some(std::ffi::OsStr::new("Cargo.toml")) {
            without_workspace_hack(&target)?;
        }
    }
    forget_earlier_packages()?;
    // Not `--locked`: without the workspace-hack edges the scratch lock file changes (only
    // edges go; every version stays as locked).
    let mut args = vec!["package", "--allow-dirty", "--quiet"];
    for library in LIBRARIES {
        args.extend(["-p", library]);
    }
    // A target directory of its own, made afresh: cargo takes registry sources as
    // immutable, so builds of our crates' earlier packages (same name and version) would
    // otherwise be reused as they are.
    let status = Command::new("cargo")
        .args(&args)
        .env("CARGO_TARGET_DIR", scratch.join("target"))
        .env("CARGO_INCREMENTAL", "0")
        // Verification only compiles: no debug info, so this second tree of builds stays
        // small (a CI run once ran out of disk here).
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .current_dir(&scratch)
        .status()?;
    if !status.success() {
        return Err(format!("cargo package failed: {status}").into());
    }
    // Its builds are of no use later, and take gigabytes.
    std::fs::remove_dir_all(&scratch)?;
    eprintln!(
        "package: {} library crates packaged and verified",
        LIBRARIES.len()
    );
    Ok(())
}

/// Removes the dependency on `pplx-workspace-hack` from a manifest, as `cargo hakari
/// publish` does: it only unifies features inside this workspace, and is never published.
fn without_workspace_hack(manifest: &Path) -> Result {
    let text = std::fs::read_to_string(manifest)?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("pplx-workspace-hack = "))
        .collect();
    if kept.len() != text.lines().count() {
        std::fs::write(manifest, kept.join("\n") + "\n")?;
    }
    Ok(())
}

/// Cargo unpacks the packages it verifies from a local registry into
/// `$CARGO_HOME/registry/src/-HASH/` and reuses what is there for the same version, so a
/// second run would verify against the first run's sources. Those unnamed registries are
/// only ever this step's: remove our crates from them first.
fn forget_earlier_packages() -> Result {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let Ok(registries) = std::fs::read_dir(cargo_home.join("registry/src")) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for unpacked in std::fs::read_dir(registry.path())?.flatten() {
            let name = unpacked.file_name().to_string_lossy().into_owned();
            if LIBRARIES.iter().any(|library| {
                name.strip_prefix(library)
                    .is_some_and(|rest| rest.starts_with("-0") || rest.starts_with("-1"))
            }) {
                std::fs::remove_dir_all(unpacked.path())?;
            }
        }
    }
    Ok(())
}
