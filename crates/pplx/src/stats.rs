//! `--stats`: one line on stderr after each answer: first token, tokens per second,
//! attempts, key rotations, fallback, cache, restarts, cost and total time.

use std::time::Duration;

use crate::session::{Progress, Session};

pub(crate) fn print_stats(
    session: &Session,
    before: &[resilience::KeyStats],
    progress: &Progress,
    elapsed: Duration,
) {
    let after = session.perplexity.key_stats();
    let attempts: u64 = after
        .iter()
        .zip(before)
        .map(|(now, then)| now.requests - then.requests)
        .sum();
    let keys_used = after
        .iter()
        .zip(before)
        .filter(|(now, then)| now.requests > then.requests)
        .count();
    let response = progress.answer.response();
    let tokens = response
        .usage
        .as_ref()
        .map_or(0, |usage| usage.completion_tokens);
    let streaming_time = progress
        .first_token
        .map_or(elapsed, |first| elapsed.saturating_sub(first));
    // A rate only for an answer that streamed for a measurable time: a whole answer
    // (--no-stream, a cache hit) arrives at once, and tokens over microseconds is no rate.
    let rate = if session.stream && streaming_time >= Duration::from_millis(10) && tokens > 0 {
        format!("{:.0}", tokens as f64 / streaming_time.as_secs_f64())
    } else {
        "-".to_owned()
    };
    let cost = response
        .usage
        .as_ref()
        .and_then(|usage| usage.cost.as_ref())
        .map_or(0.0, |cost| cost.total_cost);
    let done = progress.answer.is_done();
    let cache = if done && response.cached {
        "hit"
    } else if progress.cache_unreachable {
        "unreachable"
    } else {
        "miss"
    };
    eprintln!(
        "stats: first token {} · {rate} tokens/s · {} · {} · fallback {} · cache {cache} · restarts {} · cost ${cost:.5} · total {:.2} s",
        progress.first_token.map_or("-".to_owned(), |first| format!(
            "{:.0} ms",
            first.as_secs_f64() * 1e3
        )),
        counted(attempts, "attempt"),
        counted(keys_used.saturating_sub(1) as u64, "key rotation"),
        if done && response.fallback {
            "yes"
        } else {
            "no"
        },
        progress.restarts,
        elapsed.as_secs_f64(),
    );
    // The model asked and the one that answered (a fallback chain may answer with another);
    // what a Sonar name was mapped to, said once.
    let mapping = session
        .perplexity
        .mapping(&session.model)
        .filter(|_| !session.mapping_said.replace(true))
        .map(|mapping| format!(" ({mapping})"))
        .unwrap_or_default();
    let answered = Some(response.model.as_str())
        .filter(|model| !model.is_empty())
        .map(|model| format!(" · answered by {model}"))
        .unwrap_or_default();
    // The models of a fallback chain asked first, and why each did not answer.
    let passed: String = response
        .passed_over
        .iter()
        .map(|(model, why)| format!(" · passed over {model}: {why}"))
        .collect();
    eprintln!("stats: model {}{mapping}{answered}{passed}", session.model);
}

/// `1 attempt`, `2 attempts`.
fn counted(count: u64, thing: &str) -> String {
    if count == 1 {
        format!("1 {thing}")
    } else {
        format!("{count} {thing}s")
    }
}
