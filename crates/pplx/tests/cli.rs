//! The built `pplx` binary against the simulator: plain, `--json`, `--no-stream`, piped
//! stdin, every error class and its exit code, and a pseudo-terminal session with Ctrl-C.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pplx_sim::{Fault, Pace, SimConfig, Simulator, Target};
use serde_json::Value;

const KEY: &str = "cli-test-key";
const QUESTION: &str = "Explain quantum computing";

async fn simulator() -> Simulator {
    let mut config = SimConfig::default();
    config.keys = vec![KEY.to_owned()];
    config.pace = Pace::instant();
    config.record_bodies = true;
    Simulator::start(config).await.unwrap()
}

/// A fresh data directory (for the history database), so tests never share one by accident.
fn data_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pplx-cli-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `pplx` with `args` against `sim` (or with no key when `sim` is `None`), with a fresh
/// history.
async fn pplx(sim: Option<&Simulator>, args: &[&str], stdin: Option<&str>) -> Output {
    pplx_with(&data_dir(), sim, args, stdin).await
}

/// Runs `pplx` with its history in `data`.
async fn pplx_with(
    data: &Path,
    sim: Option<&Simulator>,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
    command.args(args);
    run(environment(command, data, sim), stdin).await
}

/// `command` (`pplx`, perhaps through a shell) with its history in `data`, against `sim` (or
/// with no key when `sim` is `None`), with no config file and stdio piped.
fn environment(
    mut command: tokio::process::Command,
    data: &Path,
    sim: Option<&Simulator>,
) -> tokio::process::Command {
    command
        .env("XDG_DATA_HOME", data)
        .env_remove("PERPLEXITY_API_KEY")
        .env_remove("PERPLEXITY_API_KEYS")
        .env_remove("PERPLEXITY_BASE_URL")
        .env("XDG_CONFIG_HOME", "/nonexistent-pplx-test-config")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(sim) = sim {
        command
            .env("PERPLEXITY_API_KEY", KEY)
            .env("PERPLEXITY_BASE_URL", sim.base_url());
    }
    command
}

/// Runs `command` with `stdin` written to it, within a minute.
async fn run(mut command: tokio::process::Command, stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[tokio::test]
async fn a_question_streams_the_answer_then_its_sources() {
    let sim = simulator().await;
    let expected = sim.expected_answer("sonar", &[QUESTION]);
    let output = pplx(Some(&sim), &["Explain", "quantum", "computing"], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let (answer, sources) = text.split_once("\n\nSources\n").unwrap();
    assert_eq!(answer, expected.text);
    assert_eq!(sources.lines().count(), expected.citations.len());
    assert_eq!(
        sources.lines().next().unwrap(),
        format!(
            "[1] {} — {}",
            expected.search_results[0].title, expected.citations[0]
        )
    );
    assert!(!text.contains('\x1b'), "piped output is plain");
}

#[tokio::test]
async fn json_output_is_one_object_per_line_in_the_documented_shape() {
    let sim = simulator().await;
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    let output = pplx(Some(&sim), &["--json", QUESTION], None).await;
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let types: Vec<&str> = lines
        .iter()
        .map(|line| line["type"].as_str().unwrap())
        .collect();
    // The Agent API's run reasons (searches) first; then its sources, the answer, the end.
    let answering: Vec<&str> = types
        .iter()
        .copied()
        .skip_while(|kind| *kind == "reasoning")
        .collect();
    assert_eq!(answering.first(), Some(&"sources"), "{types:?}");
    assert_eq!(&answering[answering.len() - 2..], ["usage", "done"]);
    assert!(
        answering[1..answering.len() - 2]
            .iter()
            .all(|kind| *kind == "delta"),
        "{types:?}"
    );
    let deltas: String = lines
        .iter()
        .filter(|line| line["type"] == "delta")
        .map(|line| line["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, expected);
    let done = lines.last().unwrap();
    assert_eq!(done["text"], expected.as_str());
    assert_eq!(
        (
            done["finish_reason"].as_str(),
            done["fallback"].as_bool(),
            done["cached"].as_bool(),
            done["simulated"].as_bool()
        ),
        (Some("stop"), Some(false), Some(false), Some(false))
    );
    // The model that answered, the usage and the reported cost (issue 34's done line).
    let usage = lines.iter().find(|line| line["type"] == "usage").unwrap();
    assert_eq!(done["usage"]["total_tokens"], usage["total_tokens"]);
    assert_eq!(done["cost_usd"], usage["cost"]);
    assert!(
        done["cost_usd"].as_f64().is_some_and(|cost| cost > 0.0),
        "{done}"
    );
    assert!(
        done["model"]
            .as_str()
            .is_some_and(|model| !model.is_empty()),
        "{done}"
    );
    let first_line = stdout(&output)
        .lines()
        .find(|line| !line.starts_with(r#"{"type":"reasoning""#))
        .unwrap()
        .to_owned();
    assert!(
        first_line.starts_with(r#"{"type":"sources","citations":["#),
        "{first_line}"
    );
    let result = &first_line[first_line.find(r#""search_results":[{"#).unwrap()..];
    let (title, url, date) = (
        result.find(r#""title":"#).unwrap(),
        result.find(r#""url":"#).unwrap(),
        result.find(r#""date":"#).unwrap(),
    );
    assert!(
        title < url && url < date,
        "search results are title, url, date: {result}"
    );
    let delta_line = stdout(&output)
        .lines()
        .find(|line| line.starts_with(r#"{"type":"delta""#))
        .unwrap()
        .to_owned();
    assert!(
        delta_line.starts_with(r#"{"type":"delta","text":"#),
        "{delta_line}"
    );
}

#[tokio::test]
async fn no_stream_and_piped_questions() {
    let sim = simulator().await;
    let output = pplx(
        Some(&sim),
        &["--no-stream", "--model", "pro", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).starts_with(&sim.expected_text("sonar-pro", &[QUESTION], None)));
    let output = pplx(Some(&sim), &[], Some(&format!("{QUESTION}\n"))).await;
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).starts_with(&sim.expected_text("sonar", &[QUESTION], None)));
    let output = pplx(Some(&sim), &["-"], Some(QUESTION)).await;
    assert!(stdout(&output).starts_with(&sim.expected_text("sonar", &[QUESTION], None)));
    sim.wait_idle().await;
    // Every one asked on the Agent API (the whole answer as a background run, then polled).
    let streams: Vec<bool> = sim
        .log()
        .iter()
        .filter(|entry| entry.endpoint == "/v1/agent")
        .map(|entry| entry.stream)
        .collect();
    assert_eq!(streams, [false, true, true]);
    assert!(
        sim.log()
            .iter()
            .all(|entry| !entry.endpoint.contains("chat/completions"))
    );
}

#[tokio::test]
async fn errors_read_like_advice_with_their_exit_codes() {
    let sim = simulator().await;
    sim.script(Target::Any, Fault::status(401), 1);
    let output = pplx(Some(&sim), &[QUESTION], None).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("check PERPLEXITY_API_KEY"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains(KEY));

    // A name of the right shape the server does not have: its 400, with where to look.
    let refused = r#"{"error":{"message":"Invalid model 'openai/gpt-0'","type":"invalid_request_error","param":"model","code":"invalid_model"}}"#;
    sim.script(Target::Any, Fault::status(400).body(refused), 1);
    let output = pplx(Some(&sim), &["--model", "openai/gpt-0", QUESTION], None).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("openai/gpt-0") && stderr(&output).contains("pplx models"),
        "{}",
        stderr(&output)
    );

    sim.script(Target::Any, Fault::rate_limited(41), 1);
    let output = pplx(Some(&sim), &[QUESTION], None).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("rate limited on all 1 keys, next free in 41 s"),
        "{}",
        stderr(&output)
    );

    // A break after answer text (the Agent API's run reasons and searches first): without
    // resuming, an interruption that carries the text delivered.
    sim.script(Target::Any, Fault::drop_after_events(12), 1);
    let output = pplx(Some(&sim), &["--json", "--no-resume", QUESTION], None).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let deltas: String = lines
        .iter()
        .filter(|line| line["type"] == "delta")
        .map(|line| line["text"].as_str().unwrap())
        .collect();
    let error = lines.last().unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["kind"], "interrupted");
    assert_eq!(error["partial"], deltas.as_str());
    assert!(!deltas.is_empty());

    let output = pplx(Some(&sim), &["--no-such-flag"], None).await;
    assert_eq!(output.status.code(), Some(2));
    let output = pplx(
        Some(&sim),
        &["--config", "/nonexistent/pplx.toml", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn with_no_key_the_built_in_simulator_answers() {
    let output = pplx(None, &["--json", QUESTION], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).lines().count(),
        1,
        "one line says so: {}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("built-in simulator"));
    let done: Value = serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    assert_eq!(done["type"], "done");
    assert!(!done["text"].as_str().unwrap().is_empty());
    assert_eq!(
        done["simulated"], true,
        "--json says the answer is simulated"
    );
}

#[tokio::test]
async fn simulated_answers_never_reach_a_shared_cache() {
    let redis = cache::testing::RedisServer::start().unwrap();
    // Two offline runs on the same Redis: neither stores its simulated text there.
    for _ in 0..2 {
        let output = pplx(
            None,
            &["--sim", "--json", "--cache", redis.url(), QUESTION],
            None,
        )
        .await;
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let done: Value = serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
        assert_eq!(
            (done["cached"].as_bool(), done["simulated"].as_bool()),
            (Some(false), Some(true))
        );
    }
    // A real endpoint on the same Redis is asked, not answered with simulated text.
    let sim = simulator().await;
    let output = pplx(
        Some(&sim),
        &["--json", "--cache", redis.url(), QUESTION],
        None,
    )
    .await;
    let done: Value = serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    assert_eq!(
        (done["cached"].as_bool(), done["simulated"].as_bool()),
        (Some(false), Some(false))
    );
    sim.wait_idle().await;
    assert_eq!(sim.log().len(), 1);
}

/// The exit code of a finished terminal session (`None` when a signal ended it).
fn exit_code(session: &expectrl::session::OsSession) -> Option<i32> {
    match session.get_process().wait().unwrap() {
        expectrl::process::unix::WaitStatus::Exited(_, code) => Some(code),
        _ => None,
    }
}

/// `pplx` in a pseudo-terminal, on the built-in simulator.
fn in_terminal(args: &[&str]) -> expectrl::session::OsSession {
    in_terminal_with(&data_dir(), args)
}

fn in_terminal_with(data: &Path, args: &[&str]) -> expectrl::session::OsSession {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
    command
        .args(args)
        .env("XDG_DATA_HOME", data)
        .env_remove("PERPLEXITY_API_KEY")
        .env_remove("PERPLEXITY_API_KEYS")
        .env("XDG_CONFIG_HOME", "/nonexistent-pplx-test-config")
        .env("TERM", "xterm");
    let mut session = expectrl::Session::spawn(command).unwrap();
    session.set_expect_timeout(Some(Duration::from_secs(20)));
    session
}

#[test]
fn in_a_terminal_it_spins_renders_and_stops_cleanly_on_ctrl_c() {
    use expectrl::{Eof, Expect, Regex};
    let mut session = in_terminal(&["--sim", "--show-reasoning", "--model", "reason", QUESTION]);
    session.expect("built-in simulator").unwrap();
    session.expect("searching").unwrap();
    // Reasoning, dimmed, then the answer: a finished line is redrawn, citation marks styled.
    session.expect("\x1b[2m").unwrap();
    session.expect(Regex("\x1b\\[34m\\[[0-9]+\\]")).unwrap();
    session.send("\x03").unwrap();
    session.expect("interrupted").unwrap();
    session.expect(Eof).unwrap();
    assert_eq!(exit_code(&session), Some(130));
}

#[tokio::test]
async fn two_processes_share_answers_through_redis() {
    let redis = cache::testing::RedisServer::start().unwrap();
    let sim = simulator().await;
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    let mut dones = Vec::new();
    for _ in 0..2 {
        let output = pplx(
            Some(&sim),
            &["--json", "--cache", redis.url(), QUESTION],
            None,
        )
        .await;
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let done: Value = serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
        assert_eq!(done["text"], expected.as_str());
        dones.push(done["cached"].as_bool().unwrap());
    }
    assert_eq!(dones, [false, true]);
    sim.wait_idle().await;
    assert_eq!(
        sim.log().len(),
        1,
        "the second process was answered by Redis"
    );
    let output = pplx(Some(&sim), &["--json", "--no-cache", QUESTION], None).await;
    let done: Value = serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    assert_eq!(done["cached"], false);
}

#[test]
fn an_interactive_session_switches_models_and_survives_ctrl_c() {
    use expectrl::{Eof, Expect};
    let mut session = in_terminal(&["--sim"]);
    session.expect("/help lists the commands").unwrap();
    session.expect("› ").unwrap();
    session.send_line("/help").unwrap();
    for command in ["/model NAME", "/clear", "/help", "/exit"] {
        session.expect(command).unwrap();
    }
    session.expect("› ").unwrap();
    // An unknown model is refused at once, with what would be right; the model stays.
    session.send_line("/model no-such-model").unwrap();
    session.expect("unknown model \"no-such-model\"").unwrap();
    session.expect("sonar-pro").unwrap();
    session.expect("still on sonar").unwrap();
    session.expect("› ").unwrap();
    session.send_line("/model pro").unwrap();
    session.expect("model: pro").unwrap();
    session.send_line("What is Olympus Mons?").unwrap();
    session.expect("Sources").unwrap();
    session.expect("› ").unwrap();
    // A second question, cut short: Ctrl-C stops the answer and returns to the prompt.
    session.send_line("And how tall is it?").unwrap();
    session.expect("searching").unwrap();
    session.send("\x03").unwrap();
    session.expect("interrupted").unwrap();
    session.expect("› ").unwrap();
    session.send_line("/exit").unwrap();
    session.expect(Eof).unwrap();
    assert_eq!(exit_code(&session), Some(0));
}

#[tokio::test]
async fn an_explicit_api_wins_and_agent_alone_asks_the_default_preset() {
    let sim = simulator().await;
    let output = pplx(Some(&sim), &["--api", "agent", QUESTION], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let expected = sim.expected_text("fast", &[QUESTION], None);
    assert!(
        stdout(&output).starts_with(&expected),
        "{}",
        stdout(&output)
    );
    let output = pplx(
        Some(&sim),
        &[
            "--api",
            "agent",
            "-m",
            "openai/gpt-5-mini",
            "--no-cache",
            QUESTION,
        ],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    sim.wait_idle().await;
    let asked: Vec<(String, String)> = sim
        .log()
        .iter()
        .map(|entry| (entry.endpoint.clone(), entry.model.clone()))
        .collect();
    assert_eq!(
        asked,
        [
            ("/v1/agent".to_owned(), "fast".to_owned()),
            ("/v1/agent".to_owned(), "openai/gpt-5-mini".to_owned())
        ]
    );
}

/// `pplx log ... --json` as JSON values.
async fn log_json(data: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["log"];
    all.extend_from_slice(args);
    all.push("--json");
    let output = pplx_with(data, None, &all, None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn every_answer_is_kept_searchable_and_shown_again() {
    let sim = simulator().await;
    let data = data_dir();
    let volcano = "What is the tallest volcano";
    for question in [volcano, QUESTION] {
        let output = pplx_with(&data, Some(&sim), &["--no-cache", question], None).await;
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    let recent = log_json(&data, &[]).await;
    let questions: Vec<&str> = recent
        .iter()
        .map(|entry| entry["question"].as_str().unwrap())
        .collect();
    assert_eq!(questions, [QUESTION, volcano], "newest first");
    let found = log_json(&data, &["search", "volcano"]).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["question"], volcano);
    let id = found[0]["id"].as_i64().unwrap().to_string();
    let shown = log_json(&data, &["show", &id]).await;
    let expected = sim.expected_text("sonar", &[volcano], None);
    assert_eq!(shown[0]["answer"], expected.as_str());
    assert!(shown[0]["sources"]["citations"].as_array().unwrap().len() >= 3);
    assert_eq!(shown[0]["model"], "sonar");
    assert!(shown[0]["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let text = pplx_with(&data, None, &["log", "show", &id], None).await;
    let text = stdout(&text);
    assert!(
        text.starts_with(volcano) && text.contains(&expected) && text.contains("Sources"),
        "{text}"
    );
    // Nothing kept with --no-log.
    let output = pplx_with(
        &data,
        Some(&sim),
        &["--no-log", "--no-cache", "Unlogged question"],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0));
    // Nor with log = false in the config file.
    let config = data.join("no-log.toml");
    std::fs::write(&config, "log = false\n").unwrap();
    let config = config.to_str().unwrap();
    let output = pplx_with(
        &data,
        Some(&sim),
        &["--config", config, "--no-cache", "Unlogged too"],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(log_json(&data, &[]).await.len(), 2);
}

#[tokio::test]
async fn continue_sends_the_conversation_so_far() {
    let sim = simulator().await;
    let data = data_dir();
    let first = "What is the tallest volcano";
    let second = "And the second tallest?";
    pplx_with(&data, Some(&sim), &["--no-cache", first], None).await;
    let output = pplx_with(&data, Some(&sim), &["--no-cache", "-c", second], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("continuing conversation c1 on sonar: 1 earlier exchange\n"),
        "{}",
        stderr(&output)
    );
    sim.wait_idle().await;
    let log = sim.log();
    let body: Value = serde_json::from_str(log[1].body.as_deref().unwrap()).unwrap();
    let answer = sim.expected_text("sonar", &[first], None);
    assert_eq!(
        body["input"],
        serde_json::json!([
            {"type": "message", "role": "user", "content": first},
            {"type": "message", "role": "assistant", "content": answer},
            {"type": "message", "role": "user", "content": second},
        ])
    );
    // Both exchanges are one conversation; a plain question starts another.
    pplx_with(&data, Some(&sim), &["--no-cache", "Unrelated"], None).await;
    let recent = log_json(&data, &[]).await;
    let conversations: Vec<i64> = recent
        .iter()
        .map(|entry| entry["conversation"].as_i64().unwrap())
        .collect();
    assert_eq!(conversations[1], conversations[2]);
    assert_ne!(conversations[0], conversations[1]);
    // --conversation names one, bare or as `pplx log` prints it; an unknown one is a usage
    // error.
    let listed = stdout(&pplx_with(&data, None, &["log"], None).await);
    let printed = format!("c{}", conversations[1]);
    assert!(listed.contains(&format!(" {printed} ")), "{listed}");
    for named in [conversations[1].to_string(), printed.clone()] {
        let output = pplx_with(
            &data,
            Some(&sim),
            &["--no-cache", "--conversation", &named, "Third?"],
            None,
        )
        .await;
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    // `pplx log show c1` shows the whole conversation, in order.
    let shown = pplx_with(&data, None, &["log", "show", &printed], None).await;
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    let shown = stdout(&shown);
    let at = |text: &str| {
        shown
            .find(text)
            .unwrap_or_else(|| panic!("{text}: {shown}"))
    };
    assert!(at(first) < at(second) && at(second) < at("Third?"));
    assert!(!shown.contains("Unrelated"), "{shown}");
    let output = pplx_with(&data, None, &["log", "show", "c999"], None).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no conversation c999"));
    let output = pplx_with(&data, Some(&sim), &["--conversation", "999", "x"], None).await;
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn two_processes_writing_history_at_once_lose_nothing() {
    let sim = simulator().await;
    let data = data_dir();
    let runs = (0..8).map(|index| {
        let data = data.clone();
        let sim = &sim;
        async move {
            let question = format!("Question number {index}");
            pplx_with(&data, Some(sim), &["--no-cache", &question], None).await
        }
    });
    let outputs = futures_util::future::join_all(runs).await;
    let said: Vec<String> = outputs.iter().map(stderr).collect();
    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
    }
    assert_eq!(
        log_json(&data, &["--limit", "100"]).await.len(),
        8,
        "{said:#?}"
    );
}

#[tokio::test]
async fn a_damaged_or_locked_history_is_said_and_the_answer_still_prints() {
    let sim = simulator().await;
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    let data = data_dir();
    std::fs::create_dir_all(data.join("pplx")).unwrap();
    std::fs::write(
        data.join("pplx/history.db"),
        b"this is not a database, just text",
    )
    .unwrap();
    let output = pplx_with(&data, Some(&sim), &["--no-cache", QUESTION], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).starts_with(&expected));
    assert!(
        stderr(&output).contains("history database is damaged"),
        "{}",
        stderr(&output)
    );

    let data = data_dir();
    pplx_with(&data, Some(&sim), &["--no-cache", "First"], None).await;
    let locker = rusqlite::Connection::open(data.join("pplx/history.db")).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let output = pplx_with(&data, Some(&sim), &["--no-cache", QUESTION], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).starts_with(&expected));
    assert!(stderr(&output).contains("locked"), "{}", stderr(&output));
    locker.execute_batch("ROLLBACK").unwrap();
}

#[tokio::test]
async fn completions_a_man_page_and_reasoning_apart_when_piped() {
    for shell in ["bash", "zsh", "fish"] {
        let output = pplx(None, &["completions", shell], None).await;
        assert_eq!(output.status.code(), Some(0));
        assert!(stdout(&output).contains("pplx"), "{shell}");
    }
    let output = pplx(None, &["man"], None).await;
    let page = stdout(&output);
    assert!(page.contains(".TH pplx"));
    // No reference to pages that are never generated; the config file and the environment
    // have sections of their own (issue 36).
    assert!(
        !page.contains("pplx\\-log(1)") && !page.contains("(1)"),
        "{page}"
    );
    for section in [
        ".SH COMMANDS",
        ".SH FILES",
        ".SH ENVIRONMENT",
        ".SH EXIT STATUS",
    ] {
        assert!(page.contains(section), "{section}");
    }
    assert!(page.contains("pplx help log") && page.contains("PERPLEXITY_API_KEY"));
    let sim = simulator().await;
    let model = "sonar-reasoning-pro";
    let answer = sim.expected_answer(model, &[QUESTION]);
    let output = pplx(
        Some(&sim),
        &["--show-reasoning", "-m", model, QUESTION],
        None,
    )
    .await;
    let text = stdout(&output);
    // The run's reasoning (its searches) first, apart; then the answer.
    let (reasoning, rest) = text.split_once("\n\n").unwrap();
    assert!(reasoning.contains("Searching: "), "{text}");
    assert!(rest.contains(&answer.text), "{text}");
    let output = pplx(Some(&sim), &["-m", model, QUESTION], None).await;
    assert!(
        !stdout(&output).contains("Searching: "),
        "reasoning only when asked"
    );
}

#[test]
fn an_interactive_session_resumes_its_conversation_with_links() {
    use expectrl::{Eof, Expect};
    let data = data_dir();
    let mut session = in_terminal_with(&data, &["--sim"]);
    session.expect("› ").unwrap();
    session.send_line("What is Olympus Mons?").unwrap();
    // Sources are clickable links on a terminal.
    session.expect("\x1b]8;;https://").unwrap();
    session.expect("› ").unwrap();
    session.send_line("/exit").unwrap();
    session.expect(Eof).unwrap();
    let mut session = in_terminal_with(&data, &["--sim", "-c"]);
    session
        .expect("continuing conversation c1 on sonar: 1 earlier exchange")
        .unwrap();
    session.expect("› ").unwrap();
    session.send_line("And its height?").unwrap();
    session.expect("› ").unwrap();
    session.send_line("/exit").unwrap();
    session.expect(Eof).unwrap();
    let history = pplx::history::History::open(&data.join("pplx/history.db")).unwrap();
    let entries = history.recent(10).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0].conversation, entries[1].conversation,
        "one conversation"
    );
    assert_eq!(entries[0].question, "And its height?");
    // The lines typed are kept between sessions, beside the history and as private.
    let lines = data.join("pplx/line-history");
    let kept = std::fs::read_to_string(&lines).unwrap();
    assert!(
        kept.contains("What is Olympus Mons?") && kept.contains("And its height?"),
        "{kept}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&lines).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// Every command, with its stdout closed before it writes (`pplx man | head` once the reader
/// has gone): it ends with 0 and says nothing, as Unix tools do.
#[tokio::test]
async fn every_command_ends_quietly_when_its_reader_goes_away() {
    let sim = simulator().await;
    let data = data_dir();
    let output = pplx_with(&data, Some(&sim), &[QUESTION], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let commands: &[&[&str]] = &[
        &["completions", "bash"],
        &["completions", "zsh"],
        &["completions", "fish"],
        &["man"],
        &["log"],
        &["log", "--json"],
        &["log", "search", "quantum"],
        &["log", "show", "1"],
        &["log", "show", "c1"],
        &["--help"],
        &["--version"],
        &[QUESTION],
        &["--json", QUESTION],
        &["--no-stream", QUESTION],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
        command.args(*args);
        let mut command = environment(command, &data, Some(&sim));
        command.stdout(writer);
        let output = run(command, None).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{args:?}");
    }
}

/// A conversation goes on with the model it was on unless one is named; continuing with
/// nothing to continue says so.
#[tokio::test]
async fn continue_keeps_the_conversations_model() {
    let sim = simulator().await;
    let data = data_dir();
    let output = pplx_with(&data, Some(&sim), &["--no-cache", "-c", "First?"], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("nothing to continue: the history has no conversation yet"),
        "{}",
        stderr(&output)
    );
    let ask = |args: &'static [&'static str]| pplx_with(&data, Some(&sim), args, None);
    ask(&["--no-cache", "--model", "reason", "Second?"]).await;
    let output = ask(&["--no-cache", "-c", "Third?"]).await;
    assert!(
        stderr(&output).contains("on sonar-reasoning-pro: 1 earlier exchange"),
        "{}",
        stderr(&output)
    );
    ask(&["--no-cache", "-c", "--model", "sonar-pro", "Fourth?"]).await;
    sim.wait_idle().await;
    let models: Vec<String> = sim
        .log()
        .iter()
        .map(|entry| {
            let body: Value = serde_json::from_str(entry.body.as_deref().unwrap()).unwrap();
            // What the Agent API was asked: the model, or the effort a Sonar name maps to.
            let engine = body.get("model").or(body.get("effort")).unwrap();
            engine.as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(models, ["perplexity/sonar", "low", "low", "low"]);
}

/// `--base-url` with plain http: refused with the switch that allows it, which works;
/// ignored without a key, and said.
#[tokio::test]
async fn plain_http_names_its_switch_and_an_ignored_base_url_is_said() {
    let sim = simulator().await;
    // 0.0.0.0 reaches this machine but is not a loopback address: plain http to it is
    // refused unless allowed.
    let port = sim.base_url().rsplit(':').next().unwrap().to_owned();
    let exposed = format!("http://0.0.0.0:{port}");
    let mut command = vec!["--no-cache", "--base-url", exposed.as_str(), QUESTION];
    let output = pplx(Some(&sim), &command, None).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("pass --allow-insecure-http, or set allow_insecure_http = true"),
        "{}",
        stderr(&output)
    );
    command.insert(0, "--allow-insecure-http");
    let output = pplx(Some(&sim), &command, None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).split("\n\nSources").next().unwrap(),
        sim.expected_text("sonar", &[QUESTION], None)
    );

    let output = pplx(
        None,
        &["--base-url", "https://api.example.com", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--base-url is ignored: the built-in simulator answers")
            && stderr(&output).contains("set PERPLEXITY_API_KEY"),
        "{}",
        stderr(&output)
    );
}

/// A shared cache nobody answers at: the answer comes, and stderr says once that it was not
/// cached; `--stats` says one attempt, in the singular.
#[tokio::test]
async fn an_unreachable_shared_cache_is_said_and_the_answer_still_comes() {
    let sim = simulator().await;
    let output = pplx(
        Some(&sim),
        &["--stats", "--cache", "redis://127.0.0.1:1", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let said = stderr(&output);
    assert_eq!(
        said.matches("the shared cache (Redis) cannot be reached; this answer was not cached")
            .count(),
        1,
        "{said}"
    );
    assert!(said.contains(" · 1 attempt · 0 key rotations · "), "{said}");
    assert!(said.contains(" · cache unreachable · "), "{said}");
    assert!(stdout(&output).starts_with(&sim.expected_text("sonar", &[QUESTION], None)));

    let output = pplx(Some(&sim), &["--stats", QUESTION], None).await;
    assert!(
        !stderr(&output).contains("cannot be reached"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains(" · cache miss · "),
        "{}",
        stderr(&output)
    );
}

/// A long question without spaces, in the default (no key) mode: the built-in simulator
/// answers within a 256 MiB data limit (it used to take gigabytes and not finish).
#[tokio::test]
async fn a_long_question_is_answered_in_bounded_memory() {
    for length in [10_000, 300_000] {
        let question = "x".repeat(length);
        // The shell limits the data segment, then becomes pplx.
        let mut command = tokio::process::Command::new("sh");
        command.args([
            "-c",
            "ulimit -d 262144 && exec \"$0\"",
            env!("CARGO_BIN_EXE_pplx"),
        ]);
        let command = environment(command, &data_dir(), None);
        let output = run(command, Some(&question)).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{length}: {}",
            stderr(&output)
        );
        let answer = stdout(&output);
        assert!(answer.starts_with("This answer about xxxxxxxx"), "{answer}");
        assert!(answer.len() < 16 << 10, "{length}: {} bytes", answer.len());
    }
}

#[tokio::test]
async fn attached_files_are_sent_inline_and_bad_ones_stop_before_anything_is_sent() {
    let sim = simulator().await;
    let data = data_dir();
    let png = data.join("cat.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\nsome pixels").unwrap();
    let pdf = data.join("report.pdf");
    std::fs::write(&pdf, b"%PDF-1.7\nsome pages").unwrap();
    let (png, pdf) = (png.to_str().unwrap(), pdf.to_str().unwrap());
    let output = pplx_with(
        &data,
        Some(&sim),
        &[
            "--no-cache",
            "--attach",
            png,
            "--attach",
            pdf,
            "What are these?",
        ],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output)
            .starts_with("You attached an image (image/png, 19 bytes), report.pdf (19 bytes). "),
        "{}",
        stdout(&output)
    );
    sim.wait_idle().await;
    let sent: Value = serde_json::from_str(sim.log()[0].body.as_deref().unwrap()).unwrap();
    let parts = &sent["input"][0]["content"];
    assert_eq!(
        parts[0],
        serde_json::json!({"type": "input_text", "text": "What are these?"})
    );
    assert!(
        parts[1]["image_url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    assert_eq!(parts[2]["filename"], "report.pdf");
    // The history keeps names and sizes, not bytes.
    let kept = log_json(&data, &[]).await;
    assert_eq!(
        kept[0]["attachments"],
        serde_json::json!([
            {"name": "cat.png", "bytes": 19, "media_type": "image/png"},
            {"name": "report.pdf", "bytes": 19, "media_type": "application/pdf"},
        ])
    );
    let shown = pplx_with(
        &data,
        None,
        &["log", "show", &kept[0]["id"].to_string()],
        None,
    )
    .await;
    assert!(
        stdout(&shown).contains("attached cat.png (19 bytes)"),
        "{}",
        stdout(&shown)
    );

    // Each bad file is a usage error, said by name, and nothing reaches the server.
    let text = data.join("notes.txt");
    std::fs::write(&text, "plain words").unwrap();
    let huge = data.join("huge.png");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(50_000_001).unwrap();
    let cases = [
        (data.join("missing.png"), "missing.png"),
        (text, "not a PNG, JPEG, WebP or GIF image, nor a PDF"),
        (huge, "over the 50000000-byte limit"),
        (data.clone(), "not a file"),
    ];
    for (path, said) in &cases {
        let output = pplx_with(
            &data,
            Some(&sim),
            &["--attach", path.to_str().unwrap(), "What is this?"],
            None,
        )
        .await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{path:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(said),
            "{path:?}: {}",
            stderr(&output)
        );
    }
    // With no question there is nothing to attach to.
    let output = pplx_with(&data, Some(&sim), &["--attach", png], Some("")).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    sim.wait_idle().await;
    assert_eq!(sim.log().len(), 1, "only the good request was sent");
}

#[tokio::test]
async fn json_schema_prints_the_parsed_object_and_a_bad_schema_stops_before_sending() {
    let sim = simulator().await;
    let data = data_dir();
    let schema = data.join("volcano.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"name": {"type": "string"}, "height_m": {"type": "integer"}}, "required": ["name"]}"#,
    )
    .unwrap();
    let schema = schema.to_str().unwrap();
    let output = pplx_with(
        &data,
        Some(&sim),
        &[
            "--no-cache",
            "--json-schema",
            schema,
            "What is the tallest volcano?",
        ],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(printed["height_m"], 1, "{printed}");
    assert!(
        printed["name"]
            .as_str()
            .unwrap()
            .contains("tallest volcano"),
        "{printed}"
    );
    sim.wait_idle().await;
    let sent: Value = serde_json::from_str(sim.log()[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(sent["response_format"]["json_schema"]["name"], "volcano");
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"]["required"],
        serde_json::json!(["name"])
    );

    let not_json = data.join("schema.txt");
    std::fs::write(&not_json, "type: object").unwrap();
    let not_an_object = data.join("list.json");
    std::fs::write(&not_an_object, "[1, 2]").unwrap();
    for (path, said) in [
        (data.join("absent.json"), "absent.json"),
        (not_json, "at line 1 column"),
        (not_an_object, "a JSON Schema is an object"),
    ] {
        let output = pplx_with(
            &data,
            Some(&sim),
            &["--json-schema", path.to_str().unwrap(), "What is this?"],
            None,
        )
        .await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{path:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(said),
            "{path:?}: {}",
            stderr(&output)
        );
    }
    let output = pplx_with(
        &data,
        Some(&sim),
        &["--json", "--json-schema", schema, "x"],
        None,
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "--json and --json-schema conflict"
    );
    sim.wait_idle().await;
    assert_eq!(sim.log().len(), 1, "only the good request was sent");
}

#[tokio::test]
async fn effort_levels_pinned_or_not_go_to_the_agent_api_as_effort() {
    let sim = simulator().await;
    for level in ["xhigh", "low", "fast@2026-10-16.0"] {
        let output = pplx(Some(&sim), &["-m", level, "--no-cache", QUESTION], None).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{level}: {}",
            stderr(&output)
        );
    }
    sim.wait_idle().await;
    let sent: Vec<(String, Value, Value)> = sim
        .log()
        .iter()
        .map(|entry| {
            let body: Value = serde_json::from_str(entry.body.as_deref().unwrap()).unwrap();
            (
                entry.endpoint.clone(),
                body["effort"].clone(),
                body["preset"].clone(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        ["xhigh", "low", "fast@2026-10-16.0"].map(|level| (
            "/v1/agent".to_owned(),
            Value::from(level),
            Value::Null
        ))
    );
}

#[tokio::test]
async fn a_cut_agent_stream_is_resumed_and_said_and_no_resume_turns_it_off() {
    let sim = simulator().await;
    sim.script(Target::Any, Fault::drop_after_events(9), 1);
    let output = pplx(
        Some(&sim),
        &["--json", "-m", "fast", "--no-cache", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let done = lines.last().unwrap();
    assert_eq!(done["type"], "done");
    assert_eq!(done["resumed"], 1);
    assert_eq!(
        done["text"],
        sim.expected_text("fast", &[QUESTION], None).as_str()
    );
    assert!(lines.iter().all(|line| line["type"] != "restart"));

    // --no-resume: a plain stream, and the same cut is an interruption (exit 1).
    let sim = simulator().await;
    sim.script(Target::Any, Fault::drop_after_events(9), 1);
    let output = pplx(
        Some(&sim),
        &["--no-resume", "-m", "fast", "--no-cache", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    sim.wait_idle().await;
    let sent: Value = serde_json::from_str(sim.log()[0].body.as_deref().unwrap()).unwrap();
    assert!(sent.get("background").is_none(), "{sent}");
}

#[tokio::test]
async fn detach_prints_a_run_id_and_attach_streams_that_run_into_the_history() {
    let sim = simulator().await;
    let data = data_dir();
    // Nothing to attach to yet.
    let output = pplx_with(&data, Some(&sim), &["attach"], None).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no detached run"),
        "{}",
        stderr(&output)
    );
    // Chat completions run nothing in the background.
    let output = pplx_with(
        &data,
        Some(&sim),
        &["--detach", "--api", "sonar", "-m", "sonar", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    let output = pplx_with(
        &data,
        Some(&sim),
        &["--detach", "-m", "fast", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let id = stdout(&output).trim().to_owned();
    assert!(id.starts_with("resp_"), "{id}");
    // Read from its first event, cut once on the way: the whole answer, exactly.
    sim.script(Target::Any, Fault::drop_after_events(10), 1);
    let output = pplx_with(&data, Some(&sim), &["--json", "attach"], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let done: Value = serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    assert_eq!(
        done["text"],
        sim.expected_text("fast", &[QUESTION], None).as_str()
    );
    assert_eq!(done["resumed"], 1);
    // One question, one entry: the one the detach made, filled in by the attach.
    let kept = log_json(&data, &[]).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        (kept[0]["detached"].as_bool(), kept[0]["run_id"].as_str()),
        (Some(true), Some(id.as_str()))
    );
    assert_eq!(kept[0]["question"], QUESTION);
    assert_eq!(kept[0]["answer"], done["text"]);
    // By id too, and still one entry.
    let output = pplx_with(&data, Some(&sim), &["attach", &id], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).starts_with(&sim.expected_text("fast", &[QUESTION], None)));
    let kept = log_json(&data, &[]).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["answer"], done["text"]);
    sim.wait_idle().await;
    let starts = sim
        .log()
        .iter()
        .filter(|entry| entry.endpoint == "/v1/agent")
        .count();
    assert_eq!(starts, 1, "one run for the detach and both attaches");
}

/// The bodies of the chat requests `sim` was sent (runs created), in order.
async fn agent_bodies(sim: &Simulator) -> Vec<Value> {
    sim.wait_idle().await;
    sim.log()
        .iter()
        .filter(|entry| entry.endpoint == "/v1/agent")
        .map(|entry| serde_json::from_str(entry.body.as_deref().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn every_sonar_name_and_no_stream_answer_on_the_agent_api_and_stats_say_the_mapping() {
    let sim = simulator().await;
    for (model, engine) in [
        ("sonar", "perplexity/sonar"),
        ("sonar-pro", "low"),
        ("sonar-reasoning", "low"),
        ("sonar-reasoning-pro", "low"),
        ("sonar-deep-research", "medium"),
    ] {
        for no_stream in [false, true] {
            let mut args = vec!["--no-cache", "--stats", "-m", model, QUESTION];
            if no_stream {
                args.insert(0, "--no-stream");
            }
            let output = pplx(Some(&sim), &args, None).await;
            assert_eq!(
                output.status.code(),
                Some(0),
                "{model}: {}",
                stderr(&output)
            );
            let expected = sim.expected_text(model, &[QUESTION], None);
            assert!(stdout(&output).starts_with(&expected), "{model}");
            assert!(
                stderr(&output).contains(&format!("stats: model {model} ({model} -> ")),
                "{model}: {}",
                stderr(&output)
            );
            assert!(stderr(&output).contains(&format!("answered by {engine}")));
        }
    }
    let bodies = agent_bodies(&sim).await;
    assert_eq!(bodies.len(), 10);
    assert!(
        sim.log()
            .iter()
            .all(|entry| !entry.endpoint.contains("chat"))
    );
    assert_eq!(
        bodies[0]["tools"],
        serde_json::json!([{"type": "web_search"}])
    );
}

#[tokio::test]
async fn api_sonar_where_chat_completions_are_gone_says_what_to_do() {
    let sim = simulator().await;
    let output = pplx(Some(&sim), &["--api", "sonar", QUESTION], None).await;
    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    for part in [
        "does not serve chat completions",
        "retired Sonar chat completions on 2026-09-27",
        "leave out --api sonar",
    ] {
        assert!(said.contains(part), "{part}: {said}");
    }
}

#[tokio::test]
async fn search_filters_go_inside_web_search_and_the_history_keeps_them() {
    let sim = simulator().await;
    let data = data_dir();
    let output = pplx_with(
        &data,
        Some(&sim),
        &[
            "--no-cache",
            "--domain",
            "nasa.gov",
            "--domain",
            "-reddit.com",
            "--after",
            "2026-01-31",
            "--before",
            "3/1/2026",
            QUESTION,
        ],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let filters = serde_json::json!({
        "search_domain_filter": ["nasa.gov", "-reddit.com"],
        "search_after_date_filter": "01/31/2026",
        "search_before_date_filter": "03/01/2026",
    });
    let bodies = agent_bodies(&sim).await;
    assert_eq!(
        bodies[0]["tools"],
        serde_json::json!([{"type": "web_search", "filters": filters}])
    );
    assert!(bodies[0].get("search_domain_filter").is_none());
    assert_eq!(log_json(&data, &[]).await[0]["filters"], filters);
    let output = pplx(
        Some(&sim),
        &["--no-cache", "--recency", "day", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let bodies = agent_bodies(&sim).await;
    assert_eq!(
        bodies[1]["tools"][0]["filters"]["search_recency_filter"],
        "day"
    );
    for bad in [
        &["--recency", "day", "--after", "2026-01-01", QUESTION][..],
        &["--domain", "not a domain", QUESTION],
        &["--after", "2026-02-30", QUESTION],
        &["--recency", "fortnight", QUESTION],
    ] {
        let output = pplx(Some(&sim), bad, None).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{bad:?}: {}",
            stderr(&output)
        );
    }
    assert_eq!(agent_bodies(&sim).await.len(), 2, "nothing more was sent");
}

#[tokio::test]
async fn models_lists_what_the_agent_api_takes() {
    let sim = simulator().await;
    let output = pplx(Some(&sim), &["models"], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let listed = stdout(&output);
    assert_eq!(listed.lines().collect::<Vec<_>>(), pplx_sim::AGENT_MODELS);
    let output = pplx(None, &["--json", "models"], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let first: Value = serde_json::from_str(stdout(&output).lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"type": "model", "id": "perplexity/sonar"})
    );
}

/// Runs `pplx args` (no key: the built-in simulator answers) with stderr, and stdout too when
/// `both`, writing into a pipe whose reader has already gone away (`pplx ... 2>&1 | true`).
fn with_reader_gone(args: &[&str], both: bool) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
    command
        .args(args)
        .env("XDG_DATA_HOME", data_dir())
        .env("XDG_CONFIG_HOME", "/nonexistent-pplx-test-config")
        .env_remove("PERPLEXITY_API_KEY")
        .env_remove("PERPLEXITY_API_KEYS")
        .env_remove("PERPLEXITY_BASE_URL")
        .stdin(std::process::Stdio::null())
        .stderr(writer.try_clone().unwrap());
    if both {
        command.stdout(writer);
    } else {
        command.stdout(std::process::Stdio::piped());
    }
    command.output().unwrap()
}

/// A reader of stderr that goes away is no failure (issue 36): no panic (exit 101), and a
/// question still answered ends with 0, as a closed stdout does.
#[test]
fn a_reader_of_stderr_that_goes_away_is_not_a_panic() {
    let output = with_reader_gone(&["--stats", "What is Rust?"], false);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Rust"));
    for (args, code) in [
        (&["--stats", "What is Rust?"][..], 0),
        (&["hi"], 0),
        (&["-m", "nonsense", "hi"], 2),
    ] {
        let output = with_reader_gone(args, true);
        assert_eq!(output.status.code(), Some(code), "{args:?}");
    }
}

/// One check of model names, before anything is sent, for `-m` and the config file, with the
/// one list of names (issue 36).
#[tokio::test]
async fn model_names_are_checked_once_before_anything_is_sent() {
    let sim = simulator().await;
    for name in ["nonsense-model", "fast@bogus", "fast@2026-10-16"] {
        let output = pplx(Some(&sim), &["-m", name, QUESTION], None).await;
        assert_eq!(output.status.code(), Some(2), "{name}: {}", stderr(&output));
        let said = stderr(&output);
        assert!(
            said.contains(provider_perplexity::MODEL_NAMES) && !said.contains("--model sonar"),
            "{said}"
        );
    }
    // The message names the file and the line (issue 36).
    refused_by_config(&sim, "model = \"gpt-4o\"\n", 1).await;
    sim.wait_idle().await;
    assert!(sim.log().is_empty(), "nothing was sent");
    let help = pplx(None, &["--help"], None).await;
    assert!(stdout(&help).contains(provider_perplexity::MODEL_NAMES));
}

/// A blank question is a usage error before anything is sent, from the arguments as from
/// stdin (issue 36).
#[tokio::test]
async fn blank_questions_are_usage_errors_and_never_sent() {
    let sim = simulator().await;
    for (args, stdin) in [
        (&[""][..], None),
        (&["   "], None),
        (&["", " \t"], None),
        (&["-"], Some(" \n ")),
    ] {
        let output = pplx(Some(&sim), args, stdin).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(stderr(&output).contains("blank") || stderr(&output).contains("empty"));
    }
    sim.wait_idle().await;
    assert!(sim.log().is_empty(), "nothing was sent");
}

/// A question that begins with a command's name, or a near miss of one, is refused with the
/// way out (quote it, or `--` first), and nothing is sent (issue 36).
#[tokio::test]
async fn questions_that_begin_with_a_command_name_the_way_out() {
    let sim = simulator().await;
    for question in [
        "help me write a poem",
        "log base 2 of 1024",
        "attach a file to an email how",
    ] {
        let args: Vec<&str> = question.split(' ').collect();
        let output = pplx(Some(&sim), &args, None).await;
        assert_eq!(output.status.code(), Some(2), "{question}");
        let word = args[0];
        assert!(
            stderr(&output).contains(&format!("pplx -- {word} ...")),
            "{question}: {}",
            stderr(&output)
        );
    }
    let output = pplx(Some(&sim), &["logs"], None).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("pplx -- logs"),
        "{}",
        stderr(&output)
    );
    sim.wait_idle().await;
    assert!(sim.log().is_empty(), "nothing was sent");

    let output = pplx(Some(&sim), &["attach", "cats"], None).await;
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("pplx \"attach cats ...\""),
        "{}",
        stderr(&output)
    );
    // After `--` it is a question, and asked.
    let output = pplx(Some(&sim), &["--no-cache", "--", "logs"], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = pplx(Some(&sim), &["--no-cache", "--", "help", "me"], None).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// A question refused before sending for its size is a usage error (2), and the history
/// keeps an excerpt and the size, not the question (issue 36: 100 MB made a 100.9 MB
/// history).
#[tokio::test]
async fn a_question_refused_for_its_size_is_a_usage_error_kept_as_an_excerpt() {
    let sim = simulator().await;
    let data = data_dir();
    let question = "y".repeat((80 << 20) + 1);
    let output = pplx_with(&data, Some(&sim), &["-"], Some(&question)).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("max_request_bytes"),
        "{}",
        stderr(&output)
    );
    sim.wait_idle().await;
    assert!(sim.log().is_empty(), "nothing was sent");
    let history = pplx::history::History::open(&data.join("pplx/history.db")).unwrap();
    let kept = &history.recent(1).unwrap()[0];
    assert!(kept.question.len() < 2 * pplx::history::FAILED_QUESTION_EXCERPT);
    assert!(kept.question.contains(&format!("{} bytes", question.len())));
    drop(history);
    let size: u64 = std::fs::read_dir(data.join("pplx"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert!(size < 4 << 20, "the history takes {size} bytes");
}

/// Offline, `--detach` refuses before printing an id no one could attach (the built-in
/// simulator ends with the process), and says how to detach against a pplx-sim (issue 36).
#[tokio::test]
async fn offline_detach_refuses_rather_than_print_an_id_attach_cannot_read() {
    let output = pplx(None, &["--detach", "-m", "high", QUESTION], None).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(stdout(&output), "", "no run id");
    assert!(
        stderr(&output).contains("PERPLEXITY_BASE_URL") && stderr(&output).contains("pplx-sim"),
        "{}",
        stderr(&output)
    );
}

/// `NO_COLOR` and `TERM=dumb` get no colour and no hyperlinks on a terminal (issue 36).
#[test]
fn no_color_and_a_dumb_terminal_get_plain_text() {
    use expectrl::{Eof, Expect};
    for (name, value) in [("NO_COLOR", "1"), ("TERM", "dumb")] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
        command
            .args(["--sim", "--no-log", QUESTION])
            .env("XDG_DATA_HOME", data_dir())
            .env_remove("PERPLEXITY_API_KEY")
            .env_remove("PERPLEXITY_API_KEYS")
            .env("XDG_CONFIG_HOME", "/nonexistent-pplx-test-config")
            .env("TERM", "xterm")
            .env(name, value);
        let mut session = expectrl::Session::spawn(command).unwrap();
        session.set_expect_timeout(Some(Duration::from_secs(20)));
        let answer = session.expect("Sources").unwrap();
        let mut seen = String::from_utf8_lossy(answer.before()).into_owned();
        seen.push_str("Sources");
        let rest = session.expect(Eof).unwrap();
        for part in std::iter::once(rest.before()).chain(rest.matches()) {
            seen.push_str(&String::from_utf8_lossy(part));
        }
        assert!(seen.contains("Sources"), "{name}: {seen}");
        let styled = regex_lite_sgr(&seen);
        assert!(
            !styled && !seen.contains("\x1b]8;;"),
            "{name}={value}: {seen:?}"
        );
    }
}

/// Whether `text` holds an SGR sequence (`ESC [ digits/; m`): colour, bold, dim.
fn regex_lite_sgr(text: &str) -> bool {
    text.match_indices("\x1b[").any(|(at, _)| {
        let rest = &text[at + 2..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(rest.len());
        rest[end..].starts_with('m')
    })
}

/// `--stats` gives no rate for a whole answer, `pplx log` says when the history is empty, and
/// `--show-reasoning` says when the model sent none (issue 36).
#[tokio::test]
async fn stats_log_and_reasoning_say_what_they_have_not() {
    let sim = simulator().await;
    let output = pplx(
        Some(&sim),
        &["--no-cache", "--stats", "--no-stream", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(" - tokens/s"),
        "{}",
        stderr(&output)
    );
    let output = pplx(Some(&sim), &["log"], None).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("the history is empty"),
        "{}",
        stderr(&output)
    );
    // Sonar chat completions (an endpoint that still has them) send no reasoning for sonar.
    let mut config = SimConfig::default();
    config.keys = vec![KEY.to_owned()];
    config.pace = Pace::instant();
    config.legacy_sonar = true;
    let legacy = Simulator::start(config).await.unwrap();
    let output = pplx(
        Some(&legacy),
        &[
            "--no-cache",
            "--show-reasoning",
            "--api",
            "sonar",
            "-m",
            "sonar",
            QUESTION,
        ],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("sent no reasoning"),
        "{}",
        stderr(&output)
    );
}

/// What is not used is said, not silently dropped (issue 36): a Redis cache while the
/// simulator answers, an API name that is none; and `--stats` counts a closed port's
/// attempts as `max_attempts` says (it gave 8 for 4: the fallback asked the same closed
/// port again).
#[tokio::test]
async fn what_is_not_used_is_said_and_attempts_count_as_documented() {
    let output = pplx(
        None,
        &["--cache", "redis://127.0.0.1:1/", "--no-log", QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stderr(&output)
            .matches("Redis cache (--cache) is not used")
            .count(),
        1,
        "{}",
        stderr(&output)
    );
    let data = data_dir();
    let config = data.join("config.toml");
    std::fs::write(&config, "api = \"chat\"\n").unwrap();
    let output = pplx_with(
        &data,
        None,
        &["--config", config.to_str().unwrap(), QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("use agent"), "{}", stderr(&output));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let data = data_dir();
    let config = data.join("config.toml");
    std::fs::write(
        &config,
        "[retry]\nmax_attempts = 4\nbase_ms = 1\ncap_ms = 2\n",
    )
    .unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
    command.args([
        "--config",
        config.to_str().unwrap(),
        "--stats",
        "--no-log",
        QUESTION,
    ]);
    let mut command = environment(command, &data, None);
    command
        .env("PERPLEXITY_API_KEY", KEY)
        .env("PERPLEXITY_BASE_URL", format!("http://{address}"));
    let output = run(command, None).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(" 4 attempts "),
        "{}",
        stderr(&output)
    );
}

/// Lines typed while an answer streams are not echoed into it, and each is asked after it, in
/// turn (issue 36: they were echoed into the answer and all but the first were lost).
#[test]
fn lines_typed_during_an_answer_are_kept_out_of_it_and_asked_in_turn() {
    use expectrl::{Eof, Expect};
    let data = data_dir();
    let mut session = in_terminal_with(&data, &["--sim"]);
    session.expect("› ").unwrap();
    session.send_line("What is Olympus Mons?").unwrap();
    session.expect("searching").unwrap();
    session.send("Second question?\rThird one?\r").unwrap();
    // The first answer ends (its sources) before either typed line shows, and each is then
    // asked as if typed at the prompt.
    let first = session.expect("› Second question?").unwrap();
    let first = String::from_utf8_lossy(first.before()).into_owned();
    assert!(first.contains("Sources"), "{first:?}");
    assert!(
        !first.contains("Second question?") && !first.contains("Third one?"),
        "typed lines stay out of the answer: {first:?}"
    );
    session.expect("› Third one?").unwrap();
    session.expect("› ").unwrap();
    session.send_line("/exit").unwrap();
    session.expect(Eof).unwrap();
    let history = pplx::history::History::open(&data.join("pplx/history.db")).unwrap();
    let questions: Vec<String> = history
        .recent(10)
        .unwrap()
        .into_iter()
        .rev()
        .map(|entry| entry.question)
        .collect();
    assert_eq!(
        questions,
        ["What is Olympus Mons?", "Second question?", "Third one?"]
    );
}

/// Ctrl-C while the spinner turns clears its line before saying so (issue 36).
#[test]
fn ctrl_c_at_the_spinner_clears_its_line() {
    use expectrl::{Eof, Expect};
    let mut session = in_terminal(&["--sim", "--no-log", "-m", "high", QUESTION]);
    session.expect("searching").unwrap();
    session.send("\x03").unwrap();
    let before = session.expect("pplx: interrupted").unwrap();
    let before = String::from_utf8_lossy(before.before()).into_owned();
    // After the first frame, what came: maybe more frames, then the clearing.
    let last_frame = before.rfind("searching").unwrap_or(0);
    assert!(
        before[last_frame..].contains("\r\x1b[2K"),
        "the spinner's line is cleared after its last frame: {before:?}"
    );
    session.expect(Eof).unwrap();
    assert_eq!(exit_code(&session), Some(130));
}

/// `fallback = [...]` in the config: an overloaded model gives way to the next, the `done`
/// line names the model that answered and `--stats` the one passed over and why (issue 34).
#[tokio::test]
async fn an_overloaded_model_falls_back_as_the_config_says() {
    let sim = simulator().await;
    let data = data_dir();
    let config = data.join("config.toml");
    std::fs::write(
        &config,
        "fallback = [\"fast\"]\n[retry]\nmax_attempts = 2\nbase_ms = 1\ncap_ms = 2\nfallback = false\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let alone = pplx_with(
        &data,
        Some(&sim),
        &[
            "--config",
            config,
            "--no-cache",
            "--json",
            "-m",
            "fast",
            QUESTION,
        ],
        None,
    )
    .await;
    let alone: Value = serde_json::from_str(stdout(&alone).lines().last().unwrap()).unwrap();
    sim.script(Target::Any, Fault::status(529), 2);
    let output = pplx_with(
        &data,
        Some(&sim),
        &[
            "--config",
            config,
            "--no-cache",
            "--json",
            "--stats",
            "-m",
            "medium",
            QUESTION,
        ],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let done: Value = serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    assert_eq!(done["model"], alone["model"], "{done}");
    assert_eq!(
        done["text"],
        sim.expected_text("fast", &[QUESTION], None).as_str()
    );
    assert!(
        stderr(&output).contains("passed over medium: ") && stderr(&output).contains("529"),
        "{}",
        stderr(&output)
    );
    // A chain's names are checked as -m's are, where the file sets them; so is a tier.
    refused_by_config(&sim, "fallback = [\"fast\", \"fast@bogus\"]\n", 1).await;
    refused_by_config(&sim, "rate = \"tier9\"\n", 1).await;
}

/// A config file of `text` makes `pplx` refuse before sending (exit 2), with a message that
/// names the file and the line.
async fn refused_by_config(sim: &Simulator, text: &str, line: usize) {
    let data = data_dir();
    let config = data.join("config.toml");
    std::fs::write(&config, text).unwrap();
    let output = pplx_with(
        &data,
        Some(sim),
        &["--config", config.to_str().unwrap(), QUESTION],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("set at {}:{line}", config.display())),
        "{}",
        stderr(&output)
    );
}

/// `[budget]` (issue 34): every run of one user counts against one limit through the history
/// database; each answer is charged its reported cost; once the next answer's hold does not
/// fit, the question is refused before anything is sent (exit 1, the limit and the spend
/// named); `pplx budget` shows the period's spend.
#[tokio::test]
async fn a_budget_holds_across_runs_through_the_history_database() {
    let sim = simulator().await;
    let data = data_dir();
    let config = data.join("config.toml");
    let unset = pplx_with(&data, Some(&sim), &["budget"], None).await;
    assert_eq!(unset.status.code(), Some(0), "{}", stderr(&unset));
    assert!(
        stdout(&unset).starts_with("no budget is set"),
        "{}",
        stdout(&unset)
    );
    // Each simulated answer costs a little over half a cent and holds its largest so far.
    std::fs::write(
        &config,
        "[budget]\nusd = 0.0125\nperiod = \"month\"\nhold_usd = 0.001\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let mut charged = 0.0;
    for question in ["What is Rust?", "What is Go?"] {
        let output = pplx_with(
            &data,
            Some(&sim),
            &["--config", config, "--no-cache", "--json", question],
            None,
        )
        .await;
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let done: Value = serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
        charged += done["cost_usd"].as_f64().unwrap();
    }
    let shown = pplx_with(
        &data,
        Some(&sim),
        &["--config", config, "--json", "budget"],
        None,
    )
    .await;
    let shown: Value = serde_json::from_str(stdout(&shown).trim()).unwrap();
    assert_eq!(shown["type"], "budget");
    assert_eq!(shown["limit_usd"], 0.0125);
    assert!(
        shown["period"].as_str().unwrap().starts_with("month:"),
        "{shown}"
    );
    assert!(
        (shown["spent_usd"].as_f64().unwrap() - charged).abs() < 1e-5,
        "{shown} against {charged}"
    );
    assert_eq!(shown["in_flight"], 0);
    // About 0.0105 spent: a third answer like the largest would pass 0.0125.
    let before = sim.log().len();
    let refused = pplx_with(
        &data,
        Some(&sim),
        &["--config", config, "--no-cache", "What is Zig?"],
        None,
    )
    .await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains("budget reached: $0.01")
            && said.contains(" spent of $0.0125 a month (month:"),
        "{said}"
    );
    assert!(said.contains("nothing was sent"), "{said}");
    sim.wait_idle().await;
    assert_eq!(
        sim.log().len(),
        before,
        "a refused question reaches no server"
    );
    let plain = pplx_with(&data, Some(&sim), &["--config", config, "budget"], None).await;
    assert!(
        stdout(&plain).contains(" spent of $0.0125 a month (month:"),
        "{}",
        stdout(&plain)
    );
    assert!(stdout(&plain).contains(" left"), "{}", stdout(&plain));
    // A limit that is not a positive amount is refused where the file sets it.
    refused_by_config(&sim, "[budget]\nusd = -1.0\n", 2).await;
    refused_by_config(&sim, "[budget]\nusd = 1.0\nperiod = \"week\"\n", 3).await;
}

/// `pplx args` against `sim`, with a fresh history and the OpenTelemetry variables `otel`
/// set (or, given `None`, unset).
async fn pplx_with_otel(sim: &Simulator, args: &[&str], otel: &[(&str, Option<String>)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
    command.args(args);
    let mut command = environment(command, &data_dir(), Some(sim));
    for (name, value) in otel {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    run(command, None).await
}

/// What an OTLP/HTTP receiver was sent: each request's path and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, bytes::Bytes)>>>;

/// An OTLP/HTTP receiver on loopback (no collector needed): it keeps every request and
/// answers each with an empty export response.
async fn otlp_receiver() -> (std::net::SocketAddr, Received) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Received::default();
    let kept = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let path = request.uri().path().to_owned();
                            let body = request.into_body().collect().await?.to_bytes();
                            kept.lock().unwrap().push((path, body));
                            let mut response = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            ));
                            response.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/x-protobuf"),
                            );
                            Ok::<_, hyper::Error>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, received)
}

/// The messages of type `M` the receiver was sent at `path`, decoded with the protocol's
/// own types.
fn decoded<M: prost::Message + Default>(received: &[(String, bytes::Bytes)], path: &str) -> Vec<M> {
    received
        .iter()
        .filter(|(sent_to, _)| sent_to == path)
        .map(|(_, body)| M::decode(body.clone()).unwrap())
        .collect()
}

/// The spans the receiver was sent at `path`, by resource.
fn exported_spans(
    received: &[(String, bytes::Bytes)],
    path: &str,
) -> Vec<opentelemetry_proto::tonic::trace::v1::ResourceSpans> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    decoded::<ExportTraceServiceRequest>(received, path)
        .into_iter()
        .flat_map(|request| request.resource_spans)
        .collect()
}

/// The metrics the receiver was sent at `path`.
fn exported_metrics(
    received: &[(String, bytes::Bytes)],
    path: &str,
) -> Vec<opentelemetry_proto::tonic::metrics::v1::Metric> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    decoded::<ExportMetricsServiceRequest>(received, path)
        .into_iter()
        .flat_map(|request| request.resource_metrics)
        .flat_map(|resource| resource.scope_metrics)
        .flat_map(|scope| scope.metrics)
        .collect()
}

/// An OTLP/gRPC receiver on loopback: HTTP/2 with gRPC's framing (a flag byte and a
/// length before each message, `grpc-status` in the trailers), written out here so that the
/// test needs no gRPC server; it keeps each call's path and message.
async fn otlp_grpc_receiver() -> (std::net::SocketAddr, Received) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Received::default();
    let kept = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let path = request.uri().path().to_owned();
                            let body = request.into_body().collect().await?.to_bytes();
                            // One uncompressed message: flag 0, its length, the message.
                            let message = body.slice(5.min(body.len())..);
                            kept.lock().unwrap().push((path, message));
                            let mut trailers = hyper::HeaderMap::new();
                            trailers.insert(
                                "grpc-status",
                                hyper::header::HeaderValue::from_static("0"),
                            );
                            // An empty export response (a zero-length message), then the
                            // status in the trailers.
                            let frames = futures_util::stream::iter([
                                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                                    bytes::Bytes::from_static(&[0, 0, 0, 0, 0]),
                                )),
                                Ok(hyper::body::Frame::trailers(trailers)),
                            ]);
                            let mut response =
                                hyper::Response::new(http_body_util::StreamBody::new(frames));
                            response.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/grpc"),
                            );
                            Ok::<_, hyper::Error>(response)
                        }
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    (address, received)
}

/// An attribute's value as text (strings as they are, numbers in decimal).
fn attribute(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let value = attributes
        .iter()
        .find(|pair| pair.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(text) => text.clone(),
        Value::IntValue(number) => number.to_string(),
        Value::DoubleValue(number) => number.to_string(),
        Value::BoolValue(flag) => flag.to_string(),
        other => format!("{other:?}"),
    })
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, an answer leaves as a GenAI span (with its tool
/// steps as children) and the GenAI client metrics, flushed before `pplx` exits; never the
/// key, and no message content unless asked (issue 34).
#[tokio::test]
async fn an_answer_is_exported_by_otlp_as_a_genai_span_and_metrics() {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let sim = simulator().await;
    let (receiver, received) = otlp_receiver().await;
    let output = pplx_with_otel(
        &sim,
        &["--no-cache", "--json", "-m", "fast", QUESTION],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                Some(format!("http://{receiver}")),
            ),
            ("OTEL_SERVICE_NAME", Some("pplx-under-test".to_owned())),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", None),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", None),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let done: Value = serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    let received = received.lock().unwrap().clone();
    let paths: Vec<&str> = received.iter().map(|(path, _)| path.as_str()).collect();
    assert!(
        paths.contains(&"/v1/traces") && paths.contains(&"/v1/metrics"),
        "{paths:?}"
    );
    for (_, body) in &received {
        assert!(
            !String::from_utf8_lossy(body).contains(KEY),
            "the key was exported"
        );
    }

    let spans = exported_spans(&received, "/v1/traces");
    let service = spans
        .iter()
        .filter_map(|resource| resource.resource.as_ref())
        .find_map(|resource| attribute(&resource.attributes, "service.name"));
    assert_eq!(service.as_deref(), Some("pplx-under-test"));
    let spans: Vec<_> = spans
        .into_iter()
        .flat_map(|resource| resource.scope_spans)
        .flat_map(|scope| scope.spans)
        .collect();
    let chat = spans
        .iter()
        .find(|span| span.name == "chat fast")
        .unwrap_or_else(|| {
            panic!(
                "no `chat fast` span in {:?}",
                spans.iter().map(|span| &span.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(chat.kind, 3, "SPAN_KIND_CLIENT");
    let said = |key: &str| attribute(&chat.attributes, key);
    assert_eq!(said("gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(said("gen_ai.provider.name").as_deref(), Some("perplexity"));
    assert_eq!(said("gen_ai.request.model").as_deref(), Some("fast"));
    assert_eq!(
        said("gen_ai.response.model").as_deref(),
        done["model"].as_str()
    );
    // A string array, as the conventions type it.
    let reasons = chat
        .attributes
        .iter()
        .find(|pair| pair.key == "gen_ai.response.finish_reasons")
        .and_then(|pair| pair.value.as_ref()?.value.clone());
    let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::ArrayValue(reasons)) =
        reasons
    else {
        panic!("finish reasons are not an array: {reasons:?}");
    };
    let reasons: Vec<_> = reasons
        .values
        .iter()
        .filter_map(|value| value.value.clone())
        .collect();
    assert_eq!(
        reasons,
        [
            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                "stop".to_owned()
            )
        ]
    );
    assert!(said("gen_ai.response.id").is_some_and(|id| id.starts_with("resp_")));
    assert_eq!(
        said("gen_ai.usage.output_tokens"),
        done["usage"]["completion_tokens"]
            .as_u64()
            .map(|n| n.to_string())
    );
    assert_eq!(
        said("gen_ai.usage.input_tokens"),
        done["usage"]["prompt_tokens"]
            .as_u64()
            .map(|n| n.to_string())
    );
    assert_eq!(said("server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        said("server.port"),
        Some(
            sim.base_url()
                .rsplit(':')
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_owned()
        )
    );
    assert_eq!(said("pplx.attempts").as_deref(), Some("1"));
    assert_eq!(said("pplx.fallback").as_deref(), Some("0"));
    let cost: f64 = said("pplx.cost_usd").unwrap().parse().unwrap();
    assert!((cost - done["cost_usd"].as_f64().unwrap()).abs() < 1e-12);
    assert_eq!(said("error.type"), None);
    assert_eq!(
        said("gen_ai.input.messages"),
        None,
        "no message content unless asked"
    );
    // The run's searches, under the answer's span.
    let steps: Vec<_> = spans
        .iter()
        .filter(|span| span.name == "execute_tool web_search")
        .collect();
    assert!(
        !steps.is_empty(),
        "{:?}",
        spans.iter().map(|span| &span.name).collect::<Vec<_>>()
    );
    for step in &steps {
        assert_eq!(step.trace_id, chat.trace_id);
        assert_eq!(
            attribute(&step.attributes, "gen_ai.tool.name").as_deref(),
            Some("web_search")
        );
    }

    let metrics = exported_metrics(&received, "/v1/metrics");
    let metric = |name: &str| {
        metrics
            .iter()
            .find(|metric| metric.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no {name} in {:?}",
                    metrics
                        .iter()
                        .map(|metric| &metric.name)
                        .collect::<Vec<_>>()
                )
            })
    };
    let duration = metric("gen_ai.client.operation.duration");
    assert_eq!(duration.unit, "s");
    let Some(Data::Histogram(histogram)) = &duration.data else {
        panic!("{duration:?}")
    };
    let point = &histogram.data_points[0];
    assert_eq!(point.count, 1);
    assert_eq!(
        attribute(&point.attributes, "gen_ai.request.model").as_deref(),
        Some("fast")
    );
    assert_eq!(
        attribute(&point.attributes, "gen_ai.provider.name").as_deref(),
        Some("perplexity")
    );
    let tokens = metric("gen_ai.client.token.usage");
    let Some(Data::Histogram(histogram)) = &tokens.data else {
        panic!("{tokens:?}")
    };
    let mut types: Vec<String> = histogram
        .data_points
        .iter()
        .filter_map(|point| attribute(&point.attributes, "gen_ai.token.type"))
        .collect();
    types.sort();
    assert_eq!(types, ["input", "output"]);
    let output_tokens = histogram
        .data_points
        .iter()
        .find(|point| {
            attribute(&point.attributes, "gen_ai.token.type").as_deref() == Some("output")
        })
        .unwrap();
    assert_eq!(
        output_tokens.sum,
        done["usage"]["completion_tokens"].as_f64()
    );
    let first_chunk = metric("gen_ai.client.operation.time_to_first_chunk");
    assert_eq!(first_chunk.unit, "s");
    let Some(Data::Sum(spent)) = &metric("pplx.client.cost").data else {
        panic!()
    };
    let spent = match spent.data_points[0].value {
        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(usd)) => {
            usd
        }
        other => panic!("{other:?}"),
    };
    assert!((spent - done["cost_usd"].as_f64().unwrap()).abs() < 1e-12);
}

/// `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` puts the question and the
/// answer on the span, as the conventions' JSON messages.
#[tokio::test]
async fn message_content_is_exported_only_when_asked() {
    let sim = simulator().await;
    let (receiver, received) = otlp_receiver().await;
    let output = pplx_with_otel(
        &sim,
        &["--no-cache", "-m", "fast", QUESTION],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                Some(format!("http://{receiver}")),
            ),
            (
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
                Some("true".to_owned()),
            ),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let received = received.lock().unwrap().clone();
    let chat = exported_spans(&received, "/v1/traces")
        .into_iter()
        .flat_map(|resource| resource.scope_spans)
        .flat_map(|scope| scope.spans)
        .find(|span| span.name == "chat fast")
        .unwrap();
    let input: Value =
        serde_json::from_str(&attribute(&chat.attributes, "gen_ai.input.messages").unwrap())
            .unwrap();
    assert_eq!(input[0]["role"], "user");
    assert_eq!(input[0]["parts"][0]["content"], QUESTION);
    let output_messages: Value =
        serde_json::from_str(&attribute(&chat.attributes, "gen_ai.output.messages").unwrap())
            .unwrap();
    assert_eq!(output_messages[0]["role"], "assistant");
    assert_eq!(
        output_messages[0]["parts"][0]["content"],
        sim.expected_text("fast", &[QUESTION], None).as_str()
    );
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`: the same span and metrics, by OTLP/gRPC.
#[tokio::test]
async fn grpc_exports_the_same_span_and_metrics() {
    let sim = simulator().await;
    let (receiver, received) = otlp_grpc_receiver().await;
    let output = pplx_with_otel(
        &sim,
        &["--no-cache", "-m", "fast", QUESTION],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                Some(format!("http://{receiver}")),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", Some("grpc".to_owned())),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("telemetry"),
        "{}",
        stderr(&output)
    );
    let received = received.lock().unwrap().clone();
    let spans: Vec<String> = exported_spans(
        &received,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    )
    .into_iter()
    .flat_map(|resource| resource.scope_spans)
    .flat_map(|scope| scope.spans)
    .map(|span| span.name)
    .collect();
    assert!(spans.iter().any(|name| name == "chat fast"), "{spans:?}");
    let metrics: Vec<String> = exported_metrics(
        &received,
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    )
    .into_iter()
    .map(|metric| metric.name)
    .collect();
    assert!(
        metrics
            .iter()
            .any(|name| name == "gen_ai.client.operation.duration"),
        "{metrics:?}"
    );
}

/// An OTLP protocol this build does not speak is a usage error that names the variable,
/// before anything is asked.
#[tokio::test]
async fn an_unknown_otlp_protocol_is_refused_by_name() {
    let sim = simulator().await;
    let before = sim.log().len();
    let output = pplx_with_otel(
        &sim,
        &["--no-cache", "-m", "fast", QUESTION],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                Some("http://127.0.0.1:9".to_owned()),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", Some("http/json".to_owned())),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("OTEL_EXPORTER_OTLP_PROTOCOL") && stderr(&output).contains("grpc"),
        "{}",
        stderr(&output)
    );
    assert_eq!(sim.log().len(), before);
    // An https endpoint is refused by name too: this build's exporters carry no TLS.
    let output = pplx_with_otel(
        &sim,
        &["--no-cache", "-m", "fast", QUESTION],
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            Some("https://collector.example:4318".to_owned()),
        )],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("plain http://"),
        "{}",
        stderr(&output)
    );
    assert_eq!(sim.log().len(), before);
}

/// With no OTLP endpoint, nothing is sent anywhere and the answer comes as before.
#[tokio::test]
async fn no_endpoint_exports_nothing() {
    let sim = simulator().await;
    let (receiver, received) = otlp_receiver().await;
    let output = pplx_with_otel(
        &sim,
        &["--no-cache", "-m", "fast", QUESTION],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", None),
            ("OTEL_SERVICE_NAME", Some(format!("unused-{receiver}"))),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(received.lock().unwrap().is_empty());
}

/// The issue's promise with real processes: eight `pplx` runs at once, sharing one budget
/// through Redis (`--shared-state`), never spend past it together; those refused say so and
/// reach no server, and a ninth run's `pplx budget` shows what they spent.
#[tokio::test]
async fn processes_sharing_redis_never_spend_past_one_budget_together() {
    let redis = cache::testing::RedisServer::start().unwrap();
    let sim = simulator().await;
    let data = data_dir();
    let config = data.join("config.toml");
    // Each request holds a cent; a simulated answer costs about half of one.
    std::fs::write(&config, "[budget]\nusd = 0.03\nhold_usd = 0.01\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let runs = (0..8).map(|index| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
        command.args([
            "--config",
            &config,
            "--no-cache",
            "--json",
            "--shared-state",
            redis.url(),
            "-m",
            "fast",
            &format!("Question {index} about volcanoes"),
        ]);
        // Each its own history: only Redis is shared.
        let mut command = environment(command, &data_dir(), Some(&sim));
        command.env("PPLX_SHARED_SECRET", "a fleet's secret");
        // Spawned now, so the eight run at once.
        tokio::spawn(run(command, None))
    });
    let runs: Vec<_> = runs.collect();
    let mut outputs = Vec::new();
    for run in runs {
        outputs.push(run.await.unwrap());
    }
    let (mut answered, mut refused, mut spent) = (0, 0, 0.0);
    for output in &outputs {
        match output.status.code() {
            Some(0) => {
                let done: Value =
                    serde_json::from_str(stdout(output).lines().last().unwrap()).unwrap();
                spent += done["cost_usd"].as_f64().unwrap();
                answered += 1;
            }
            Some(1) => {
                // With --json, the error is the last line of stdout.
                let error: Value =
                    serde_json::from_str(stdout(output).lines().last().unwrap()).unwrap();
                assert_eq!(error["kind"], "budget", "{error}");
                assert!(
                    error["message"]
                        .as_str()
                        .unwrap()
                        .contains("budget reached"),
                    "{error}{}",
                    stderr(output)
                );
                refused += 1;
            }
            other => panic!("{other:?}: {}", stderr(output)),
        }
    }
    assert!(spent <= 0.03, "{answered} answers spent {spent}, past 0.03");
    assert!(
        answered >= 3,
        "three holds of a cent fit in 0.03: {answered}"
    );
    assert_eq!(answered + refused, 8);
    sim.wait_idle().await;
    let asked = sim
        .log()
        .iter()
        .filter(|entry| entry.endpoint == "/v1/agent")
        .count();
    assert_eq!(asked, answered, "refused runs reach no server");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
    command.args([
        "--config",
        &config,
        "--json",
        "--shared-state",
        redis.url(),
        "budget",
    ]);
    let mut command = environment(command, &data_dir(), Some(&sim));
    command.env("PPLX_SHARED_SECRET", "a fleet's secret");
    let shown = run(command, None).await;
    let shown: Value = serde_json::from_str(stdout(&shown).trim()).unwrap();
    assert!(
        (shown["spent_usd"].as_f64().unwrap() - spent).abs() < 1e-5,
        "{shown} against {spent}"
    );
}
