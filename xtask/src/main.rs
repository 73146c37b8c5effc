//! Project automation, run as `cargo xtask <command>` (the alias is in `.cargo/config.toml`).
//!
//! - `ci`: everything CI checks: fmt, clippy, tests, rustdoc, tidy, cargo deny, the quick
//!   soak, the fuzz smoke, then `interop`.
//! - `package`: each library crate's features alone and none, then `cargo package` of all
//!   of them (part of `ci`).
//! - `interop`: the official Python SDKs (from PyPI) against the simulator binary.
//! - `bench [AREA] [--quick]`: the criterion benches, then a one-line summary per area;
//!   `bench e2e [--quick]` is the end-to-end comparison, and `bench e2e --from-results` prints
//!   its report and draws its charts again from the last run.
//! - `soak [--quick]`: the whole stack under a seeded fault mix (`--quick` is part of `ci`).
//! - `fuzz TARGET|all [--seconds N]`: the cargo-fuzz targets (sse, decode, headers, config);
//!   not part of CI.

mod bench;
mod charts;
mod child;
mod e2e;
mod interop;
mod package;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["ci"] => ci(),
        ["tidy"] => tidy::check(&root()),
        ["package"] => package::features(&root()).and_then(|()| package::package(&root())),
        ["newest"] => package::newest(&root()),
        ["interop"] => interop::run(&root()),
        ["bench", rest @ ..] => bench::run(&root(), rest),
        ["fuzz", target, rest @ ..] => fuzz(target, rest),
        ["soak"] => soak(false),
        ["soak", "--quick"] => soak(true),
        _ => {
            eprintln!(
                "usage: cargo xtask ci | tidy | package | newest | interop | soak [--quick] | bench [AREA] [--quick] | fuzz TARGET|all [--seconds N]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs `program args` in the workspace root, failing when it fails.
fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed: {status}", args.join(" ")).into())
    }
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// The time each step of `ci` took, printed as a table at the end (and when a step fails), so
/// every run's log shows where its minutes went.
struct Steps {
    started: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Steps {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            done: Vec::new(),
        }
    }

    /// Runs one named step, timing it; on failure the table so far is printed first.
    fn run(&mut self, name: &'static str, step: impl FnOnce() -> Result) -> Result {
        eprintln!("ci: step {name}");
        let started = Instant::now();
        let result = step();
        let took = started.elapsed();
        eprintln!("ci: step {name} took {:.1}s", took.as_secs_f64());
        self.done.push((name, took));
        if result.is_err() {
            self.table();
        }
        result
    }

    fn table(&self) {
        eprintln!("ci: step seconds");
        for (name, took) in &self.done {
            eprintln!("ci: {name:<10} {:>7.1}", took.as_secs_f64());
        }
    }
}

fn ci() -> Result {
    let mut steps = Steps::new();
    steps.run("fmt", || run("cargo", &["fmt", "--all", "--check"], &[]))?;
    steps.run("clippy", clippy)?;
    steps.run("test", test)?;
    steps.run("doc", || {
        run(
            "cargo",
            &[
                "doc",
                "--workspace",
                "--no-deps",
                "--all-features",
                "--locked",
            ],
            &[("RUSTDOCFLAGS", "-D warnings")],
        )
    })?;
    steps.run("tidy", || tidy::check(&root()))?;
    steps.run("features", || package::features(&root()))?;
    steps.run("deny", deny)?;
    steps.run("programs", build_programs)?;
    steps.run("examples", examples)?;
    steps.run("soak", || soak(true))?;
    // The fuzz smoke: every target briefly, so a target that no longer builds or crashes at
    // once is caught (the long runs are in docs/RELIABILITY.md).
    steps.run("fuzz", || fuzz("all", &["--seconds", "10"]))?;
    steps.run("interop", || interop::run(&root()))?;
    steps.run("newest", || package::newest(&root()))?;
    // Last: it removes the workspace's builds of our libraries (see `package::package`).
    steps.run("package", || package::package(&root()))?;
    steps.table();
    eprintln!(
        "ci: all checks passed in {:.0}s",
        steps.started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Clippy over everything with every feature, then the crates with optional features without
/// them (they must be clean both ways).
fn clippy() -> Result {
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    run(
        "cargo",
        &[
            "clippy",
            "--locked",
            "-p",
            "pplx-sse-parse",
            "-p",
            "pplx-cache",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )
}

/// Every test: nextest when the machine has it (then the doctests, which it does not run),
/// else `cargo test`.
fn test() -> Result {
    if !has_nextest() {
        return run(
            "cargo",
            &["test", "--workspace", "--all-features", "--locked"],
            &[],
        );
    }
    run(
        "cargo",
        &[
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--locked",
            "--no-fail-fast",
        ],
        &[],
    )?;
    run(
        "cargo",
        &["test", "--workspace", "--all-features", "--locked", "--doc"],
        &[],
    )
}

/// The offline examples CI runs, by package.
const EXAMPLES: &[(&str, &str)] = &[
    ("pplx-chat-core", "canned"),
    ("pplx-provider-perplexity", "stream"),
    ("pplx-resilience", "flaky"),
    ("pplx-cache", "cached"),
    ("pplx-sim", "faults"),
    ("pplx-setup", "ask"),
];

/// The programs CI runs (every binary, the offline examples, the soak and the contract
/// recorder), in one build with the tests' features and profile: the libraries the tests
/// built are reused, and every later step (examples, soak, interop) finds its program built.
/// A second call is a no-op.
fn build_programs() -> Result {
    let mut args = vec![
        "build",
        "--workspace",
        "--all-features",
        "--locked",
        "--bins",
        "--example",
        "soak",
        "--example",
        "contract-requests",
    ];
    for (_, example) in EXAMPLES {
        args.extend(["--example", example]);
    }
    run("cargo", &args, &[])
}

/// The offline examples run (all of them build with clippy --all-targets).
fn examples() -> Result {
    build_programs()?;
    for (_, example) in EXAMPLES {
        let binary = root().join("target/debug/examples").join(example);
        let binary = binary.to_str().ok_or("non-UTF-8 path")?;
        run(binary, &[], &[])?;
    }
    Ok(())
}

/// `cargo deny`: licences, bans and sources must pass; advisories too, when the RustSec
/// database (a git repository on GitHub) can be fetched. A machine that cannot reach it says
/// so plainly instead of failing on its network.
fn deny() -> Result {
    run(
        "cargo",
        &[
            "deny",
            "--all-features",
            "check",
            "licenses",
            "bans",
            "sources",
        ],
        &[],
    )?;
    eprintln!("$ cargo deny --all-features check advisories");
    let output = Command::new("cargo")
        .args(["deny", "--all-features", "check", "advisories"])
        .current_dir(root())
        .output()
        .map_err(|error| format!("cannot run cargo deny: {error}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        eprintln!("deny: advisories ok");
        Ok(())
    } else if stderr.contains("failed to fetch advisory database") {
        eprintln!(
            "deny: advisories NOT checked: the RustSec database (github.com/RustSec/advisory-db) cannot be reached from this machine"
        );
        Ok(())
    } else {
        eprintln!("{stderr}");
        Err("cargo deny found advisories".into())
    }
}

/// The soak test (`tests/examples/soak.rs`): `--quick` in CI (a debug build, 300 streams a
/// round), else the full run (release, 2,000 concurrent streams a round). Its last line is the
/// summary; it fails on any lost, duplicated or hung request, or on memory growth.
fn soak(quick: bool) -> Result {
    let (profile, streams, rounds): (&[&str], &str, &str) = if quick {
        (&[], "300", "4")
    } else {
        (&["--release"], "2000", "3")
    };
    if quick {
        build_programs()?;
    } else {
        let mut build = vec!["build", "--locked", "-p", "tests", "--example", "soak"];
        build.extend_from_slice(profile);
        run("cargo", &build, &[])?;
    }
    let binary = root().join(if quick {
        "target/debug/examples/soak"
    } else {
        "target/release/examples/soak"
    });
    let binary = binary.to_str().ok_or("non-UTF-8 path")?;
    // Thousands of loopback sockets: raise the descriptor limit to what the machine allows.
    run(
        "sh",
        &[
            "-c",
            r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#,
            binary,
            "--streams",
            streams,
            "--rounds",
            rounds,
            "--check-growth",
        ],
        &[],
    )
}

/// The cargo-fuzz targets in `fuzz/`.
const FUZZ_TARGETS: &[&str] = &["sse", "decode", "headers", "config"];

/// `fuzz TARGET|all [--seconds N]`: each target for N seconds (default 60), one after the
/// other; a crash fails, leaving its input under `fuzz/artifacts/`.
fn fuzz(target: &str, args: &[&str]) -> Result {
    let seconds = match args {
        [] => "60",
        ["--seconds", seconds] => seconds,
        _ => {
            return Err(
                "usage: cargo xtask fuzz sse|decode|headers|config|all [--seconds N]".into(),
            );
        }
    };
    seconds
        .parse::<u64>()
        .map_err(|_| format!("--seconds wants a whole number, got {seconds:?}"))?;
    let targets: Vec<&str> = match target {
        "all" => FUZZ_TARGETS.to_vec(),
        one if FUZZ_TARGETS.contains(&one) => vec![one],
        other => {
            return Err(format!("no fuzz target {other:?}: {}", FUZZ_TARGETS.join(", ")).into());
        }
    };
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !installed {
        run("cargo", &["install", "cargo-fuzz", "--locked"], &[])?;
    }
    // Every target in one build first, so the shared dependencies build in parallel once
    // (`cargo fuzz run` then finds its target built).
    let mut build = vec!["fuzz", "build", "--fuzz-dir", "fuzz", "--sanitizer", "none"];
    if targets.len() == 1 {
        build.extend(&targets);
    }
    run("cargo", &build, &[("RUSTC_BOOTSTRAP", "1")])?;
    let max_time = format!("-max_total_time={seconds}");
    for target in targets {
        // cargo-fuzz passes nightly-only flags; the machine has one stable toolchain.
        run(
            "cargo",
            &[
                "fuzz",
                "run",
                "--fuzz-dir",
                "fuzz",
                "--sanitizer",
                "none",
                target,
                "--",
                &max_time,
            ],
            &[("RUSTC_BOOTSTRAP", "1")],
        )?;
    }
    Ok(())
}
