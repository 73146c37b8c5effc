//! Checks that crates depend only downwards through the layers of `../shared/STYLE.md`, as
//! listed in docs/ARCHITECTURE.md, and that the programs share one build of their
//! dependencies (the workspace-hack crate is up to date).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::Result;

/// The layer of each workspace crate; a crate may depend only on lower layers.
fn layer(name: &str) -> Option<u8> {
    Some(match name {
        // Only features of outside crates, for the programs (see its Cargo.toml).
        "pplx-sse-parse" | "pplx-workspace-hack" => 0,
        "pplx-resilience" => 1,
        "pplx-chat-core" => 2,
        "pplx-cache" | "pplx-resilience-redis" => 3,
        name if name.starts_with("pplx-provider-") => 4,
        // The simulator's library is embedded by the programs (their offline mode).
        "pplx-sim" => 5,
        // What both programs share: config, keys, simulator fallback, cache choice.
        "pplx-setup" => 6,
        // The programs; neither depends on the other.
        "pplx" | "pplx-mcp" => 7,
        // Tooling sits above everything and may use anything.
        "tests" | "benches" | "xtask" => 8,
        _ => return None,
    })
}

pub(crate) fn check(root: &Path) -> Result {
    let output = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(root)
        .output()?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned().into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let packages = metadata["packages"].as_array().ok_or("no packages")?;
    let members: Vec<&str> = packages
        .iter()
        .filter_map(|package| package["name"].as_str())
        .collect();
    let mut problems = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        let Some(own_layer) = layer(name) else {
            problems.push(format!("{name}: no layer assigned in xtask/src/tidy.rs"));
            continue;
        };
        // The libraries are published (under free names); programs and tooling are not.
        let publishable = package["publish"] != serde_json::json!([]);
        let library = crate::package::LIBRARIES.contains(&name);
        if publishable != library {
            let should = if library {
                "publish = true"
            } else {
                "publish = false"
            };
            problems.push(format!("{name}: must say {should}"));
        }
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let dependency_name = dependency["name"].as_str().unwrap_or_default();
            let is_normal = dependency["kind"].is_null();
            if !members.contains(&dependency_name) || !is_normal {
                continue;
            }
            let dependency_layer = layer(dependency_name).unwrap_or(u8::MAX);
            if dependency_layer >= own_layer && own_layer < 8 {
                problems.push(format!(
                    "{name} (layer {own_layer}) depends on {dependency_name} (layer {dependency_layer}): layers point down only"
                ));
            }
        }
    }
    let shared = shared_build(root, &mut problems)?;
    if problems.is_empty() {
        eprintln!("tidy: {} crates, layers point down", members.len());
        eprintln!("tidy: the programs build {shared} shared dependencies with the same features");
        Ok(())
    } else {
        Err(format!("tidy:\n  {}", problems.join("\n  ")).into())
    }
}

/// The programs a user builds one after another (`cargo run -p pplx`, then `-p pplx-mcp`).
const PROGRAMS: &[&str] = &["pplx", "pplx-mcp", "pplx-sim"];

/// Checks that every outside package two programs both build gets the same features in
/// each (what `pplx-workspace-hack` is for: otherwise each program's build recompiles
/// tokio, hyper and the rest with its own). Returns how many packages they share.
fn shared_build(root: &Path, problems: &mut Vec<String>) -> Result<usize> {
    // package and version -> the feature sets it is built with, per program.
    let mut builds: BTreeMap<String, BTreeMap<&str, BTreeSet<String>>> = BTreeMap::new();
    for program in PROGRAMS {
        let output = Command::new("cargo")
            .args(["tree", "--locked", "-p", program, "-e", "normal,build"])
            .args(["--prefix", "none", "--no-dedupe", "-f", "{p}|{f}"])
            .current_dir(root)
            .output()?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned().into());
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Some((package, features)) = line.split_once('|') else {
                continue;
            };
            // `name vX.Y.Z`, then `(proc-macro)` or a path for some: the first two words.
            let package: Vec<&str> = package.split_whitespace().take(2).collect();
            builds
                .entry(package.join(" "))
                .or_default()
                .entry(program)
                .or_default()
                .insert(features.to_owned());
        }
    }
    let mut shared = 0;
    for (package, programs) in &builds {
        if programs.len() < 2 {
            continue;
        }
        shared += 1;
        let mut sets = programs.values();
        let first = sets.next();
        if sets.any(|set| Some(set) != first) {
            problems.push(format!(
                "{package} is built with different features by {programs:?}: run `cargo hakari generate && cargo hakari manage-deps` (cargo install cargo-hakari)"
            ));
        }
    }
    Ok(shared)
}
