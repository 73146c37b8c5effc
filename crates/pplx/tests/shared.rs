//! Several `pplx` processes on one set of keys, sharing state through a real redis-server:
//! a rate-limited or refused key learned by one is skipped by the next, a shared rate spaces
//! four concurrent processes, and Redis dying and coming back fails no request. The
//! simulator's log (which key each request used, and when) is the proof.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use cache::testing::RedisServer;
use pplx_sim::{Fault, Pace, SimConfig, Simulator, Target};

const KEYS: [&str; 2] = ["shared-key-a", "shared-key-b"];

async fn simulator(keys: &[&str]) -> Simulator {
    let mut config = SimConfig::default();
    config.keys = keys.iter().map(|key| (*key).to_owned()).collect();
    config.pace = Pace::instant();
    Simulator::start(config).await.unwrap()
}

/// A config file with `text`, in a fresh directory.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pplx-shared-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One `pplx` process asking `question` with `keys` against `sim`, sharing state in `redis`.
async fn pplx(
    sim: &Simulator,
    keys: &[&str],
    redis: &str,
    config: Option<&PathBuf>,
    question: &str,
) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
    command
        .args(["--no-log", "--no-cache", "--shared-state", redis, question])
        .env_remove("PERPLEXITY_API_KEY")
        .env("PERPLEXITY_API_KEYS", keys.join(","))
        .env("PERPLEXITY_BASE_URL", sim.base_url())
        .env("PPLX_SHARED_SECRET", "a shared secret for the test")
        .env("XDG_CONFIG_HOME", "/nonexistent-pplx-test-config")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap()
        .unwrap()
}

fn assert_answered(output: &Output) {
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.stdout.is_empty());
}

/// The key index of each request in the simulator's log from `from` on.
fn keys_used(sim: &Simulator, from: usize) -> Vec<Option<usize>> {
    sim.log()[from..]
        .iter()
        .map(|entry| entry.key_index)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_key_in_one_process_is_skipped_by_the_next() {
    let redis = RedisServer::start().unwrap();
    let sim = simulator(&KEYS).await;
    sim.script(Target::Key(0), Fault::rate_limited(30), 1);
    let first = pplx(&sim, &KEYS, redis.url(), None, "Explain quantum computing").await;
    assert_answered(&first);
    let log = sim.log();
    assert_eq!(
        log.iter()
            .map(|entry| (entry.key_index, entry.status))
            .collect::<Vec<_>>(),
        [(Some(0), 429), (Some(1), 200)],
        "the first process met the 429 on key a and rotated"
    );
    // A new process picks the least recently used key first, which is key a, unless it
    // knows key a cools for 30 s.
    for question in ["What is Rust?", "What is Redis?"] {
        let from = sim.log().len();
        assert_answered(&pplx(&sim, &KEYS, redis.url(), None, question).await);
        assert_eq!(keys_used(&sim, from), [Some(1)], "{}", sim.log_text());
    }

    // Without the shared state, the same new process would have gone to key a.
    let alone = simulator(&KEYS).await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pplx"));
    let output = command
        .args(["--no-log", "--no-cache", "What is Rust?"])
        .env("PERPLEXITY_API_KEYS", KEYS.join(","))
        .env("PERPLEXITY_BASE_URL", alone.base_url())
        .env("XDG_CONFIG_HOME", "/nonexistent-pplx-test-config")
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    assert_eq!(keys_used(&alone, 0), [Some(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_skipped_by_every_process() {
    let redis = RedisServer::start().unwrap();
    let sim = simulator(&KEYS).await;
    sim.script(Target::Key(0), Fault::status(401), 1);
    assert_answered(&pplx(&sim, &KEYS, redis.url(), None, "Explain quantum computing").await);
    assert_eq!(keys_used(&sim, 0), [Some(0), Some(1)]);
    let from = sim.log().len();
    let (second, third) = tokio::join!(
        pplx(&sim, &KEYS, redis.url(), None, "What is Rust?"),
        pplx(&sim, &KEYS, redis.url(), None, "What is Redis?"),
    );
    assert_answered(&second);
    assert_answered(&third);
    assert_eq!(
        keys_used(&sim, from),
        [Some(1), Some(1)],
        "{}",
        sim.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_together_stay_under_the_shared_rate() {
    let redis = RedisServer::start().unwrap();
    let one_key = [KEYS[0]];
    let sim = simulator(&one_key).await;
    // 300 a minute: one request every 200 ms, whatever the number of processes.
    let config = config_file("rate", "key_rpm = 300\n");
    let workers = (0..4).map(|worker| {
        let (sim, redis, config) = (&sim, redis.url(), &config);
        async move {
            for question in 0..3 {
                let output = pplx(
                    sim,
                    &one_key,
                    redis,
                    Some(config),
                    &format!("Question {question} of worker {worker}"),
                )
                .await;
                assert_answered(&output);
            }
        }
    });
    futures_util::future::join_all(workers).await;
    let log = sim.log();
    assert_eq!(log.len(), 12, "{}", sim.log_text());
    // Redis spaces admissions 200 ms apart; the requests reach the simulator a little after
    // their admission, so neighbours may come a few milliseconds closer.
    for pair in log.windows(2) {
        let gap = pair[1].at.saturating_sub(pair[0].at);
        assert!(
            gap >= Duration::from_millis(150),
            "{gap:?} between requests\n{}",
            sim.log_text()
        );
    }
    let span = log[11].at - log[0].at;
    assert!(
        span >= Duration::from_millis(11 * 190),
        "{span:?} for 12 requests at 5 a second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_and_coming_back_fails_no_request() {
    let redis = Arc::new(tokio::sync::Mutex::new(RedisServer::start().unwrap()));
    let url = redis.lock().await.url().to_owned();
    let sim = simulator(&KEYS).await;
    let config = config_file("outage", "key_rpm = 6000\n");
    let mut answered = 0;
    for round in 0..6 {
        match round {
            2 => redis.lock().await.stop(),
            4 => redis.lock().await.restart().unwrap(),
            _ => {}
        }
        let (first_question, second_question) = (
            format!("Round {round}, first"),
            format!("Round {round}, second"),
        );
        let (first, second) = tokio::join!(
            pplx(&sim, &KEYS, &url, Some(&config), &first_question),
            pplx(&sim, &KEYS, &url, Some(&config), &second_question),
        );
        assert_answered(&first);
        assert_answered(&second);
        answered += 2;
        if (2..4).contains(&round) {
            let said = String::from_utf8_lossy(&first.stderr).into_owned();
            assert!(!said.contains("panicked"), "{said}");
        }
    }
    assert_eq!(answered, 12);
    assert!(
        sim.log().iter().all(|entry| entry.status == 200),
        "{}",
        sim.log_text()
    );
}
