//! Publish-readiness: every library crate builds, clippy-clean, with each of its features
//! alone and with none (the check `cargo hack --each-feature --no-dev-deps` makes), and `cargo package`
//! packages and verifies all of them together in a copy without the workspace-hack (as
//! `cargo hakari publish` would publish them), building into the workspace's own target.

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

/// `cargo package` (with verification) of every library crate, in a scratch copy of the
/// workspace without the workspace-hack (which only unifies features here and is never
/// published): each verified against the others' packages, not their sources, so no
/// dependency is left for crates.io to answer with a stranger's crate.
pub(crate) fn package(root: &Path) -> Result {
    let scratch = root.join("target/package-check");
    copy_workspace(root, &scratch)?;
    forget_earlier_packages()?;
    // The workspace's own target directory, so that every dependency the tests built is
    // reused (only those whose features differ without the workspace-hack are built again).
    // Cargo takes registry sources as immutable, so builds of our crates' earlier packages
    // (same name and version) would be reused as they are: they are removed first. That
    // removes the workspace's builds of them too, which is why `ci` packages last.
    let target = root.join("target");
    let cargo = |args: &[&str]| {
        Command::new("cargo")
            .args(args)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&scratch)
            .status()
    };
    let mut clean = vec!["clean", "--quiet"];
    for library in LIBRARIES {
        clean.extend(["-p", library]);
    }
    if !cargo(&clean)?.success() {
        return Err("cargo clean of the earlier packages failed".into());
    }
    // Not `--locked`: without the workspace-hack edges the scratch lock file changes (only
    // edges go; every version stays as locked).
    let mut args = vec!["package", "--allow-dirty", "--quiet"];
    for library in LIBRARIES {
        args.extend(["-p", library]);
    }
    let status = cargo(&args)?;
    if !status.success() {
        return Err(format!("cargo package failed: {status}").into());
    }
    std::fs::remove_dir_all(&scratch)?;
    eprintln!(
        "package: {} library crates packaged and verified",
        LIBRARIES.len()
    );
    Ok(())
}

/// A copy of the workspace's files (tracked and new, not ignored) at `scratch`, without the
/// workspace-hack edges (see [`without_workspace_hack`]).
fn copy_workspace(root: &Path, scratch: &Path) -> Result {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)?;
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
    Ok(())
}

/// The libraries as a new user gets them: a copy of the workspace whose dependencies are
/// updated to the newest compatible versions (`cargo update`), checked with every feature. Any
/// warning from our crates fails (a new user saw two deprecation warnings in every build that
/// the locked versions did not show); registry crates' lints are capped by cargo.
pub(crate) fn newest(root: &Path) -> Result {
    let scratch = root.join("target/newest-check");
    copy_workspace(root, &scratch)?;
    let target = root.join("target/newest");
    let cargo = |args: &[&str]| {
        Command::new("cargo")
            .args(args)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&scratch)
            .output()
    };
    let updated = cargo(&["update", "--quiet"])?;
    if !updated.status.success() {
        return Err(format!(
            "cargo update failed: {}",
            String::from_utf8_lossy(&updated.stderr)
        )
        .into());
    }
    let mut args = vec![
        "check",
        "--quiet",
        "--lib",
        "--all-features",
        "--message-format",
        "short",
    ];
    for library in LIBRARIES {
        args.extend(["-p", library]);
    }
    let checked = cargo(&args)?;
    let said = String::from_utf8_lossy(&checked.stderr);
    let warnings: Vec<&str> = said
        .lines()
        .filter(|line| line.contains("warning") || line.contains("error"))
        .collect();
    std::fs::remove_dir_all(&scratch)?;
    if !checked.status.success() || !warnings.is_empty() {
        return Err(format!(
            "the libraries on the newest compatible dependencies:\n{}",
            warnings.join("\n")
        )
        .into());
    }
    eprintln!(
        "newest: {} library crates check clean on the newest compatible dependencies",
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
