//! `cargo xtask bench [AREA] [--quick]`: runs the criterion benches of the `benches` crate and
//! prints each area's figures from criterion's estimates, ending with its summary line.

use std::path::Path;

use serde_json::Value;

use crate::Result;

const AREAS: &[&str] = &["parse", "decode", "resilience", "sim", "provider", "cache"];

pub(crate) fn run(root: &Path, args: &[&str]) -> Result {
    let quick = args.contains(&"--quick");
    // The end-to-end comparison runs processes, not criterion.
    if args.first() == Some(&"e2e") {
        if args.contains(&"--from-results") {
            return crate::e2e::redraw(root);
        }
        return crate::e2e::run(root, quick);
    }
    let chosen: Vec<&str> = args
        .iter()
        .copied()
        .filter(|arg| *arg != "--quick")
        .collect();
    for area in &chosen {
        if !AREAS.contains(area) {
            return Err(format!("unknown bench area {area:?}; known: {}", AREAS.join(", ")).into());
        }
    }
    let areas = if chosen.is_empty() {
        AREAS.to_vec()
    } else {
        chosen
    };
    for area in areas {
        let envs: &[(&str, &str)] = if quick { &[("BENCH_QUICK", "1")] } else { &[] };
        if area == "provider" {
            // The memory figure runs the simulator as its own process.
            crate::run(
                "cargo",
                &["build", "--locked", "--release", "-p", "pplx-sim"],
                &[],
            )?;
        }
        crate::run(
            "cargo",
            &["bench", "--locked", "-p", "benches", "--bench", area],
            envs,
        )?;
        let criterion = root.join("target/criterion");
        match area {
            "parse" => report_parse(&criterion, root, !quick)?,
            "decode" => report_decode(&criterion)?,
            "resilience" => report_resilience(&criterion)?,
            "sim" => report_sim(&criterion)?,
            "provider" => report_provider(&criterion)?,
            "cache" => report_cache(&criterion)?,
            _ => unreachable!("areas are checked above"),
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// The median time of one iteration in nanoseconds.
fn median_ns(criterion: &Path, group: &str, function: &str) -> Result<f64> {
    let estimates = read_json(
        &criterion
            .join(group)
            .join(function)
            .join("new/estimates.json"),
    )?;
    estimates["median"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("no median for {group}/{function}").into())
}

const PARSE_GROUPS: &[&str] = &[
    "sse_lf_1400",
    "sse_lf_16384",
    "sse_crlf_1400",
    "sse_crlf_16384",
];
const PARSERS: &[&str] = &[
    "sse-parse",
    "sse-parse-feed",
    "sse-stream",
    "eventsource-stream",
    "memchr-floor",
];

fn report_parse(criterion: &Path, root: &Path, full_run: bool) -> Result {
    let mut chart = Vec::new();
    println!("| input | parser | MB/s | events/s | allocations/event |\n|---|---|---:|---:|---:|");
    // Same-run ratios of sse-parse to each comparator, one per input.
    let mut ratios: [Vec<f64>; 3] = Default::default();
    for group in PARSE_GROUPS {
        let meta = read_json(&criterion.join(group).join("meta.json"))?;
        let bytes = meta["bytes"].as_f64().ok_or("meta without bytes")?;
        let events = meta["events"].as_f64().ok_or("meta without events")?;
        let ours = median_ns(criterion, group, "sse-parse")?;
        for parser in PARSERS {
            let nanos = median_ns(criterion, group, parser)?;
            let allocations = meta["allocations_per_event"][parser]
                .as_f64()
                .unwrap_or(f64::NAN);
            println!(
                "| {group} | {parser} | {:.0} | {:.0} | {allocations:.3} |",
                bytes / nanos * 1e3,
                events / nanos * 1e9,
            );
            chart.push((
                format!("{}: {parser}", group.trim_start_matches("sse_")),
                bytes / nanos * 1e3,
            ));
        }
        ratios[0].push(median_ns(criterion, group, "eventsource-stream")? / ours);
        ratios[1].push(median_ns(criterion, group, "sse-stream")? / ours);
        ratios[2].push(median_ns(criterion, group, "memchr-floor")? / ours);
    }
    let long_line = "sse_long_line_4MiB";
    for parser in PARSERS {
        if let Ok(nanos) = median_ns(criterion, long_line, parser) {
            println!(
                "| {long_line} | {parser} | {:.0} | 1 event | - |",
                (4 << 20) as f64 / nanos * 1e3
            );
            chart.push((
                format!("long_line_4MiB: {parser}"),
                (4 << 20) as f64 / nanos * 1e3,
            ));
        }
    }
    let geometric_mean = |values: &[f64]| {
        (values.iter().map(|value| value.ln()).sum::<f64>() / values.len() as f64).exp()
    };
    let chart = crate::charts::save(
        root,
        "parse-throughput.svg",
        "SSE parsers, MB/s by input (higher is better)",
        "MB/s",
        &chart,
        PARSERS.len(),
        full_run,
    )?;
    eprintln!("parse: chart {}", chart.display());
    println!(
        "(ratios: geometric mean over the four 64 MiB-class inputs, sse-parse = the Bytes stream adapter)"
    );
    println!(
        "sse-parse vs eventsource-stream: {:.1}x, vs sse-stream: {:.2}x, vs memchr floor: {:.0}%",
        geometric_mean(&ratios[0]),
        geometric_mean(&ratios[1]),
        geometric_mean(&ratios[2]) * 100.0,
    );
    Ok(())
}

fn report_decode(criterion: &Path) -> Result {
    let group = "decode_sonar";
    let meta = read_json(&criterion.join(group).join("meta.json"))?;
    let chunks = meta["chunks"].as_f64().ok_or("meta without chunks")?;
    let bytes = meta["bytes"].as_f64().ok_or("meta without bytes")?;
    println!("| approach | chunks/s | ns/chunk | MB/s |\n|---|---:|---:|---:|");
    let mut nanos = Vec::new();
    for approach in ["serde-borrowed", "serde-value", "scanner", "sonic-lazy"] {
        let total = median_ns(criterion, group, approach)?;
        println!(
            "| {approach} | {:.0} | {:.0} | {:.0} |",
            chunks / (total / 1e9),
            total / chunks,
            bytes / total * 1e3
        );
        nanos.push(total);
    }
    println!(
        "decode: {chunks:.0} chunks of {:.1} KB on average; serde-borrowed {:.0} ns/chunk, serde-value {:.2}x its time, scanner (the client's) {:.2}x its time, sonic-rs lazy {:.2}x its time",
        bytes / chunks / 1e3,
        nanos[0] / chunks,
        nanos[1] / nanos[0],
        nanos[2] / nanos[0],
        nanos[3] / nanos[0],
    );
    Ok(())
}

fn report_resilience(criterion: &Path) -> Result {
    let group = "resilience_success_path";
    println!("| operation | median ns |\n|---|---:|");
    for function in [
        "breaker_check",
        "key_pick",
        "breaker_and_key_1_thread",
        "breaker_and_key_2_threads",
    ] {
        println!(
            "| {function} | {:.1} |",
            median_ns(criterion, group, function)?
        );
    }
    println!(
        "breaker check + key pick: {:.0} ns on one thread, {:.0} ns on two",
        median_ns(criterion, group, "breaker_and_key_1_thread")?,
        median_ns(criterion, group, "breaker_and_key_2_threads")?,
    );
    let shared = "resilience_shared";
    if !criterion.join(shared).exists() {
        println!("shared state: not measured (no redis-server)");
        return Ok(());
    }
    println!("\n| shared state | median ns |\n|---|---:|");
    for function in [
        "key_pick_alone",
        "key_pick_shared_redis",
        "publish_redis",
        "rate_slot_local",
        "rate_slot_redis",
    ] {
        println!(
            "| {function} | {:.1} |",
            median_ns(criterion, shared, function)?
        );
    }
    println!(
        "shared state: key pick {:.0} ns alone, {:.0} ns sharing cooldowns in Redis; a key_rpm slot adds {:.1} us with Redis on loopback",
        median_ns(criterion, shared, "key_pick_alone")?,
        median_ns(criterion, shared, "key_pick_shared_redis")?,
        (median_ns(criterion, shared, "rate_slot_redis")?
            - median_ns(criterion, shared, "rate_slot_local")?)
            / 1e3,
    );
    Ok(())
}

fn report_sim(criterion: &Path) -> Result {
    let group = "sim_firehose";
    let meta = read_json(&criterion.join(group).join("meta.json"))?;
    let bytes = meta["stream_bytes"]
        .as_f64()
        .ok_or("meta without stream_bytes")?;
    let events = meta["stream_events"]
        .as_f64()
        .ok_or("meta without stream_events")?;
    println!("| connections | streams/s | events/s | MB/s |\n|---:|---:|---:|---:|");
    let mut summary = Vec::new();
    for (function, streams) in [("1_connection", 1.0), ("64_connections", 64.0)] {
        let seconds = median_ns(criterion, group, function)? / 1e9;
        let events_per_second = events * streams / seconds;
        println!(
            "| {streams:.0} | {:.0} | {events_per_second:.0} | {:.0} |",
            streams / seconds,
            bytes * streams / seconds / 1e6
        );
        summary.push(events_per_second);
    }
    println!(
        "sim firehose: {:.0} events/s on one connection, {:.0} events/s on 64",
        summary[0], summary[1]
    );
    Ok(())
}

fn report_provider(criterion: &Path) -> Result {
    let group = "provider_stream";
    let meta = read_json(&criterion.join(group).join("meta.json"))?;
    let deltas = meta["deltas"].as_f64().ok_or("meta without deltas")?;
    println!("| client | chunks/s | client CPU ns/chunk |\n|---|---:|---:|");
    let mut rates = Vec::new();
    for client in ["pplx-provider", "async-openai", "pplx-provider-no-layers"] {
        let rate = deltas / (median_ns(criterion, group, client)? / 1e9);
        let cpu = meta["cpu_ns_per_chunk"][client]
            .as_f64()
            .unwrap_or(f64::NAN);
        println!("| {client} | {rate:.0} | {cpu:.0} |");
        rates.push((rate, cpu));
    }
    let first = read_json(&criterion.join("provider_first_delta").join("meta.json"))?;
    println!(
        "first delta: {:.1} µs p50, {:.1} µs p99 added by the client, from the chat_stream call (simulator's own time subtracted)",
        first["p50_us"].as_f64().unwrap_or(f64::NAN),
        first["p99_us"].as_f64().unwrap_or(f64::NAN),
    );
    if let Ok(resume) = read_json(&criterion.join("provider_resume").join("meta.json")) {
        let number = |key: &str| resume[key].as_f64().unwrap_or(f64::NAN);
        println!(
            "resume: {:.0} µs p50, {:.0} µs p99 from a cut to the next word (an uncut stream's widest gap between words: {:.0} µs p50, {:.0} µs p99); whole cut stream {:.2}x an uncut one's time",
            number("cut_p50_us"),
            number("cut_p99_us"),
            number("uncut_p50_us"),
            number("uncut_p99_us"),
            median_ns(criterion, "provider_resume", "stream_cut_once")?
                / median_ns(criterion, "provider_resume", "stream_uncut")?,
        );
    }
    if let Ok(memory) = read_json(&criterion.join("provider_memory").join("meta.json")) {
        println!(
            "memory: {:.1} KiB resident per stream with {} streams open",
            memory["bytes_per_stream"].as_f64().unwrap_or(f64::NAN) / 1024.0,
            memory["streams"]
        );
    }
    println!(
        "provider vs async-openai: {:.1}x chunks/s, {:.2}x CPU per chunk; reliability layers: {:+.1}% CPU per chunk (same client with them off)",
        rates[0].0 / rates[1].0,
        rates[0].1 / rates[1].1,
        (rates[0].1 / rates[2].1 - 1.0) * 100.0,
    );
    Ok(())
}

fn report_cache(criterion: &Path) -> Result {
    println!("| operation | median |\n|---|---:|");
    let memory = median_ns(criterion, "cache_hit", "memory_chat")?;
    println!("| hit, in memory | {:.1} µs |", memory / 1e3);
    let redis = median_ns(criterion, "cache_hit", "redis_chat").ok();
    if let Some(redis) = redis {
        println!("| hit, Redis on loopback | {:.1} µs |", redis / 1e3);
    }
    let replay = median_ns(criterion, "cache_replay", "memory_stream_hit")?;
    println!(
        "| streaming hit, 503 events replayed | {:.1} µs |",
        replay / 1e3
    );
    println!(
        "cache: hit {:.1} µs in memory, {} through Redis; replay {:.0} events/s",
        memory / 1e3,
        redis.map_or("n/a".to_owned(), |redis| format!("{:.1} µs", redis / 1e3)),
        503.0 / (replay / 1e9)
    );
    Ok(())
}
