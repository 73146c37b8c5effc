//! The soak test behind `cargo xtask soak [--quick]`: the whole stack (the cache in front of
//! the provider with its retries, key pool, breaker and fallback) against the in-process
//! simulator with a seeded mix of faults, many streams at once, round after round.
//!
//! Every request is checked against the simulator's exact expected text: a complete answer
//! must be that text (after its last restart), an interruption must carry exactly the text
//! handed out, which must be a prefix of it. Anything else is counted as lost or duplicated;
//! a request that outlives its deadline by a margin is hung. Memory is the process's
//! resident set, read after every round. The last line is the summary; the exit status is
//! non-zero when anything was lost, duplicated or hung, or (with `--check-growth`) when the
//! resident set grew between the second and the last round.
//!
//! `soak [--streams N] [--rounds R] [--seed S] [--check-growth]`

use resilience::backoff::SmallRng;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache::{CacheConfig, CachedProvider};
use chat_core::{ChatEvent, ChatProvider, ChatRequest, Error};
use futures_util::StreamExt;
use pplx_sim::{Fault, KeepAlive, Pace, SimConfig, Simulator, Target};
use provider_perplexity::{AfterCommit, PerplexityConfig, PerplexityProvider};
use resilience::{ApiKey, BackoffPolicy, Jitter};

const KEYS: usize = 8;
const MODELS: &[&str] = &[
    "sonar",
    "sonar-pro",
    "sonar-reasoning-pro",
    "fast",
    "medium",
];

struct Args {
    streams: usize,
    rounds: usize,
    seed: u64,
    check_growth: bool,
}

fn args() -> Args {
    let mut args = Args {
        streams: 2_000,
        rounds: 3,
        seed: 7,
        check_growth: false,
    };
    let given: Vec<String> = std::env::args().skip(1).collect();
    let mut given = given.iter().map(String::as_str);
    while let Some(arg) = given.next() {
        let mut number = || given.next().and_then(|value| value.parse::<u64>().ok());
        match arg {
            "--streams" => args.streams = number().map_or(args.streams, |value| value as usize),
            "--rounds" => args.rounds = number().map_or(args.rounds, |value| value as usize),
            "--seed" => args.seed = number().unwrap_or(args.seed),
            "--check-growth" => args.check_growth = true,
            other => {
                eprintln!("soak: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    args
}

/// One fault of the mix, or none (most requests).
fn fault(rng: &mut SmallRng) -> Option<Fault> {
    Some(match rng.below(20) {
        0 => Fault::rate_limited(0),
        // Absurd hints on server errors: clamped, refused as too long, a typed error. (On a
        // 429 the key would rightly cool for the clamped day, and the run would run out of
        // keys: that is the key pool's own test.)
        1 => Fault::status(503).header("retry-after-ms", "1e300"),
        2 => Fault::status(503),
        3 => Fault::status(500).header("retry-after", "18446744073709551615"),
        4 => Fault::drop_before_headers(),
        5 => Fault::drop_after_events(1 + rng.below(4)),
        6 => Fault::drop_mid_event(2 + rng.below(4)),
        7 => Fault::stall_after_events(2),
        8 => Fault::malformed_event(1 + rng.below(3)),
        9 => Fault::error_event_after(3),
        10 => Fault::quiet_after_events(1, Duration::from_millis(200), KeepAlive::Ping),
        11 => Fault::none().keep_alive().one_byte_pieces(),
        // Cuts mid-answer (past the first words): Agent API runs are read again from where
        // they broke, Sonar answers restart.
        12 => Fault::drop_after_events(9 + rng.below(8)),
        13 => Fault::drop_mid_event(9 + rng.below(8)),
        _ => return None,
    })
}

#[derive(Default, Debug, Clone)]
struct Tally {
    /// Typed errors by kind.
    kinds: std::collections::BTreeMap<&'static str, usize>,
    requests: usize,
    complete: usize,
    typed_errors: usize,
    lost: usize,
    duplicated: usize,
    hung: usize,
    /// Agent API answers (background runs, resumed after a cut).
    agent: usize,
    /// Agent answers read again after a cut at least once, and the resumes in all.
    resumed_answers: usize,
    resumes: u32,
    /// Agent answers that restarted (a cut that could not be resumed).
    agent_restarts: usize,
}

/// An Agent API answer's resumes and restarts, counted.
fn count_agent(tally: &mut Tally, events: &[ChatEvent]) {
    tally.agent += 1;
    if let Some(ChatEvent::Done(response)) = events.last()
        && response.resumed > 0
    {
        tally.resumed_answers += 1;
        tally.resumes += response.resumed;
    }
    if events.contains(&ChatEvent::Restart) {
        tally.agent_restarts += 1;
    }
}

/// Checks one outcome against the exact expected text.
fn judge(tally: &mut Tally, expected: &str, events: &[ChatEvent], error: Option<&Error>) {
    tally.requests += 1;
    // What the caller holds: the text since the last restart.
    let start = events
        .iter()
        .rposition(|event| *event == ChatEvent::Restart)
        .map_or(0, |index| index + 1);
    let text: String = events[start..]
        .iter()
        .filter_map(|event| match event {
            ChatEvent::TextDelta(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let wrong = |tally: &mut Tally, text: &str| {
        if expected.starts_with(text) {
            tally.lost += 1;
        } else {
            tally.duplicated += 1;
        }
    };
    match error {
        None => {
            let done =
                matches!(events.last(), Some(ChatEvent::Done(response)) if response.text == text);
            if text == expected && done {
                tally.complete += 1;
            } else {
                wrong(tally, &text);
            }
        }
        Some(error) => {
            tally.typed_errors += 1;
            *tally.kinds.entry(error.kind().as_str()).or_default() += 1;
            let partial = error.partial_text().unwrap_or_default();
            let exact = partial == text && expected.starts_with(partial);
            if !exact || (!text.is_empty() && !error.is_interrupted()) {
                wrong(tally, &text);
            }
        }
    }
}

/// The resident set, in MiB (Linux; 0 elsewhere).
fn rss_mib() -> f64 {
    benches::resident_bytes() as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() {
    let args = args();
    let keys: Vec<String> = (0..KEYS)
        .map(|index| format!("soak-key-{index:02}"))
        .collect();
    let mut sim_config = SimConfig::default();
    sim_config.keys = keys.clone();
    let mut pace = Pace::instant();
    pace.chunk_delay = Duration::from_millis(2);
    pace.answer_words = 40;
    sim_config.pace = pace;
    sim_config.log_capacity = Some(1_000);
    let reasons = Reasons::install();
    let sim = Simulator::start(sim_config).await.expect("a loopback port");
    // Key 7 is revoked for good: every process must learn to skip it.
    sim.script(Target::Key(KEYS - 1), Fault::status(401), args.streams * 8);

    let mut config = PerplexityConfig::default();
    config.base_url = sim.base_url();
    config.keys = keys.iter().map(ApiKey::new).collect();
    config.backoff = BackoffPolicy {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(100),
        max_attempts: 4,
        jitter: Jitter::Full,
        max_hint: Duration::from_millis(500),
        ..BackoffPolicy::default()
    };
    // The soak is about correctness under faults, not about the breaker shutting them out.
    config.breaker.minimum_calls = u32::MAX;
    config.retry_budget.ratio = 1.0;
    config.key_pool.rate_limit_cooldown = Duration::from_millis(50);
    config.key_pool.max_rate_limit_cooldown = Duration::from_millis(200);
    config.after_commit = AfterCommit::Restart { max_restarts: 1 };
    config.timeouts.idle = Duration::from_secs(2);
    config.timeouts.first_event = Duration::from_secs(5);
    config.timeouts.headers = Duration::from_secs(10);
    config.timeouts.total = Duration::from_secs(60);
    for family in &mut config.families {
        family.timeouts = config.timeouts;
    }
    let perplexity = PerplexityProvider::new(config).expect("a valid config");
    // A small cache, full after the first round, so a growing resident set means a leak.
    let cache = CacheConfig {
        backend: cache::Backend::Memory { max_bytes: 1 << 20 },
        ..CacheConfig::default()
    };
    let provider: Arc<dyn ChatProvider> =
        Arc::new(CachedProvider::new(perplexity, cache).expect("a memory cache"));

    // The fault mix and the questions follow the seed.
    let mut rng = SmallRng::seeded(args.seed | 1);
    let mut tally = Tally::default();
    let mut rss = Vec::new();
    let started = Instant::now();
    for round in 0..args.rounds {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..args.streams {
            if let Some(fault) = fault(&mut rng) {
                sim.script(Target::Any, fault, 1);
            }
            let model = MODELS[rng.below(MODELS.len())];
            // A few questions repeat, so the cache coalesces and replays too.
            let question = if rng.below(10) == 0 {
                format!("Explain quantum computing, part {}", rng.below(5))
            } else {
                format!("Explain quantum computing, round {round} question {index}")
            };
            let expected = sim.expected_text(model, &[&question], None);
            let provider = provider.clone();
            tasks.spawn(async move {
                let mut stream = provider.chat_stream(ChatRequest::new(model, question));
                let mut events = Vec::new();
                let run = async {
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(event) => events.push(event),
                            Err(error) => return Some(error),
                        }
                    }
                    None
                };
                // The total deadline is 60 s: twice that is hung.
                match tokio::time::timeout(Duration::from_secs(120), run).await {
                    Ok(error) => Some((expected, events, error)),
                    Err(_) => None,
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Some((expected, events, error))) => {
                    judge(&mut tally, &expected, &events, error.as_ref());
                    // Every name is answered on the Agent API (Sonar names mapped).
                    count_agent(&mut tally, &events);
                }
                Ok(None) => {
                    tally.requests += 1;
                    tally.hung += 1;
                }
                Err(panic) => panic!("a request task panicked: {panic}"),
            }
        }
        sim.clear_script();
        sim.script(Target::Key(KEYS - 1), Fault::status(401), args.streams * 8);
        rss.push(rss_mib());
        eprintln!(
            "soak: round {} of {}: {} streams, {:.1} s so far, RSS {:.1} MiB, {tally:?}",
            round + 1,
            args.rounds,
            args.streams,
            started.elapsed().as_secs_f64(),
            rss.last().copied().unwrap_or_default()
        );
    }
    let peak = rss.iter().copied().fold(0.0, f64::max);
    println!(
        "soak: {} requests, {} complete, {} typed errors, lost {}, duplicated {}, hung {}, peak RSS {:.0} MiB",
        tally.requests,
        tally.complete,
        tally.typed_errors,
        tally.lost,
        tally.duplicated,
        tally.hung,
        peak
    );
    // Growth is judged from the second round: the first one warms caches and pools.
    let grew = args.check_growth && rss.len() >= 3 && rss[rss.len() - 1] > rss[1] * 1.25 + 16.0;
    if grew {
        eprintln!("soak: memory grew between rounds: {rss:?} MiB");
    }
    // Runs the simulator started (creates that reached it as 200s): beyond one per Agent
    // answer only when an attempt broke before its first word and was tried again.
    println!(
        "soak: agent answers {}, resumed after a cut {} ({} resumes), restarted {}, runs started {}",
        tally.agent,
        tally.resumed_answers,
        tally.resumes,
        tally.agent_restarts,
        sim.runs_started()
    );
    // Why the restarted answers did not go on reading their run: a read again that gave up
    // is a resumable cut lost; a failure the server reported in the stream is final by
    // design (its run is not read again).
    let summary = reasons.summary();
    let count = |prefix: &str| -> usize {
        summary
            .iter()
            .filter(|(reason, _)| reason.starts_with(prefix))
            .map(|(_, count)| count)
            .sum()
    };
    let (gave_up, restarted) = (count("not read again"), count("restarted"));
    println!(
        "soak: restarts after a read again gave up {gave_up}, after a failure the server reported {}",
        restarted.saturating_sub(gave_up)
    );
    for (reason, count) in summary {
        println!("soak: {count} x {reason}");
    }
    if tally.lost + tally.duplicated + tally.hung > 0 || grew {
        std::process::exit(1);
    }
}

/// Why Agent answers restarted instead of being read again: the provider's warnings at the
/// two places a cut answer gives up on its run ("the run cannot be read again", then
/// "stream broke after the commit point; restarting"), counted by their reason with digits
/// folded, so that the summary can say what the restarts were.
#[derive(Clone, Default)]
struct Reasons(Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>);

/// An event's message and its reason field (`error` or `cause`).
#[derive(Default)]
struct Fields {
    message: String,
    reason: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "error" | "cause" => self.reason = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Reasons {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let gave_up = match fields.message.as_str() {
            "the run cannot be read again" => "not read again",
            "stream broke after the commit point; restarting" => "restarted",
            _ => return,
        };
        let mut reason = String::new();
        for char in fields.reason.chars().take(120) {
            match char {
                '0'..='9' if reason.ends_with('#') => {}
                '0'..='9' => reason.push('#'),
                other => reason.push(other),
            }
        }
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *counts.entry(format!("{gave_up}: {reason}")).or_default() += 1;
    }
}

impl Reasons {
    /// Counts from now on: a subscriber for warnings alone (the provider's spans, at the info
    /// level, stay off).
    fn install() -> Reasons {
        use tracing_subscriber::layer::SubscriberExt;
        let reasons = Reasons::default();
        let subscriber =
            tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(
                reasons.clone(),
                tracing_subscriber::filter::LevelFilter::WARN,
            ));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        reasons
    }

    /// Each reason and how often it came, most frequent first.
    fn summary(&self) -> Vec<(String, usize)> {
        let counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut listed: Vec<(String, usize)> = counts
            .iter()
            .map(|(reason, count)| (reason.clone(), *count))
            .collect();
        listed.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        listed
    }
}
