//! `cargo xtask bench e2e [--quick]`: our client against the clients users would otherwise
//! pick, end to end over loopback, each in its own process against the simulator's firehose
//! (its own process too): `provider-perplexity`, `async-openai` 0.43, and the official
//! `openai` and `perplexityai` Python SDKs (from a venv made from PyPI).
//!
//! The scenarios run on the Agent API, the default path (each client's Responses-style
//! stream of `sonar` as the migration guide maps it); the `-chat` rows repeat some on chat
//! completions (OpenAI-compatible endpoints; the simulator keeps them with `legacy_sonar`).
//! Then our overhead: the provider against the floor (`provider_perplexity::bench::Floor`:
//! its HTTP client, SSE parser and decoder alone) at 1, 16, 64 and 256 streams at once, the
//! added time to the first delta at p50 and p99, and short answers per second sustained.
//!
//! Scenarios: one long stream (chunks/s, CPU per chunk), 100 and 1,000 concurrent streams
//! (total chunks/s, client-added time to first delta, peak memory), 300 short streams one
//! after another (time to first delta), answers not streamed, and over HTTPS (the simulator's
//! self-signed certificate, trusted by each client): short streams one after another and 100
//! at once, where HTTP/1.1 clients pay a TLS handshake per new connection and a client that
//! speaks HTTP/2 (chosen by ALPN) can share one. Every client runs on one
//! thread. Clients take turns within each repetition; figures are medians over
//! repetitions, and ratios are of medians from the same run. The client-added time to first
//! delta is the time from the call to the first delta, minus the simulator's own time from
//! taking the request to writing its first event (from its log).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::Value;

use crate::Result;
use crate::child::Running;

const KEY: &str = "e2e-key";
const CLIENTS: &[&str] = &["ours", "async-openai", "openai-python", "perplexityai"];

/// One scenario: a name, the answer's length, streams at once, runs in a row, over HTTPS or
/// not, and the API (`agent` or `chat`).
struct Scenario {
    name: &'static str,
    kind: &'static str,
    words: usize,
    streams: usize,
    runs: usize,
    tls: bool,
    api: &'static str,
}

/// The Agent API's scenarios, then chat completions' rows (all of them in a full run; the
/// long answer, 100 at once and one at a time in a quick one).
fn scenarios(quick: bool) -> Vec<Scenario> {
    let agent = agent_scenarios(quick);
    let chat_names: &[&str] = if quick {
        &["long", "c100", "first"]
    } else {
        &[
            "long",
            "c100",
            "c1000",
            "first",
            "nonstream",
            "first-tls",
            "c100-tls",
        ]
    };
    let chat: Vec<Scenario> = agent_scenarios(quick)
        .into_iter()
        .filter(|scenario| chat_names.contains(&scenario.name))
        .map(|scenario| Scenario {
            name: chat_name(scenario.name),
            api: "chat",
            ..scenario
        })
        .collect();
    agent.into_iter().chain(chat).collect()
}

/// A scenario's name on chat completions.
fn chat_name(name: &str) -> &'static str {
    match name {
        "long" => "long-chat",
        "c100" => "c100-chat",
        "c1000" => "c1000-chat",
        "first" => "first-chat",
        "nonstream" => "nonstream-chat",
        "first-tls" => "first-tls-chat",
        _ => "c100-tls-chat",
    }
}

fn agent_scenarios(quick: bool) -> Vec<Scenario> {
    let scale = |quick_value: usize, full: usize| if quick { quick_value } else { full };
    vec![
        Scenario {
            name: "long",
            kind: "long",
            words: scale(4_000, 20_000),
            streams: 1,
            runs: scale(2, 3),
            tls: false,
            api: "agent",
        },
        Scenario {
            name: "c100",
            kind: "concurrent",
            words: scale(100, 200),
            streams: 100,
            runs: 1,
            tls: false,
            api: "agent",
        },
        Scenario {
            name: "c1000",
            kind: "concurrent",
            words: scale(30, 60),
            streams: 1_000,
            runs: 1,
            tls: false,
            api: "agent",
        },
        Scenario {
            name: "first",
            kind: "concurrent",
            words: 20,
            streams: 1,
            runs: scale(100, 300),
            tls: false,
            api: "agent",
        },
        Scenario {
            name: "nonstream",
            kind: "nonstream",
            words: 200,
            streams: scale(100, 300),
            runs: 1,
            tls: false,
            api: "agent",
        },
        Scenario {
            name: "first-tls",
            kind: "concurrent",
            words: 20,
            streams: 1,
            runs: scale(100, 300),
            tls: true,
            api: "agent",
        },
        Scenario {
            name: "c100-tls",
            kind: "concurrent",
            words: scale(100, 200),
            streams: 100,
            runs: 1,
            tls: true,
            api: "agent",
        },
    ]
}

/// The simulator binary, serving a firehose of the scenario's answers; killed when dropped.
struct Simulator {
    _child: Running,
    base_url: String,
    /// Its self-signed certificate (PEM), when it serves HTTPS.
    certificate: Option<PathBuf>,
}

impl Simulator {
    fn start(root: &Path, scenario: &Scenario) -> Result<Simulator> {
        let words = scenario.words;
        let file = root.join(format!("target/e2e/sim-{words}-{}.toml", scenario.api));
        // Chat completions are retired by default, as the service's are: kept for their rows.
        let legacy = scenario.api == "chat";
        std::fs::write(
            &file,
            format!(
                "keys = [\"{KEY}\"]\nlegacy_sonar = {legacy}\n[pace]\nfirst_byte_ms = 0\nchunk_delay_ms = 0\nchunk_chars = 12\nanswer_words = {words}\nfirehose = true\n"
            ),
        )?;
        let mut command = Command::new(root.join("target/release/pplx-sim"));
        command.arg("--scenario").arg(&file);
        let certificate = scenario
            .tls
            .then(|| root.join("target/e2e/sim-certificate.pem"));
        if let Some(path) = &certificate {
            command.arg("--tls").arg("--certificate-out").arg(path);
        }
        let scheme = if scenario.tls { "https://" } else { "http://" };
        let (child, base_url) = crate::child::simulator(command.stderr(Stdio::null()), scheme)?;
        Ok(Simulator {
            _child: child,
            base_url,
            certificate,
        })
    }

    /// `GET path`, as JSON (HTTP/1.0, over TLS when the simulator serves HTTPS).
    fn get_json(&self, path: &str) -> Result<Value> {
        let address = self
            .base_url
            .split_once("://")
            .map_or(self.base_url.as_str(), |(_, address)| address);
        let mut stream = std::net::TcpStream::connect(address)?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
        let mut response = Vec::new();
        match &self.certificate {
            None => {
                stream.write_all(request.as_bytes())?;
                stream.read_to_end(&mut response)?;
            }
            Some(certificate) => {
                let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
                let mut tls = tls_client(certificate, host, stream)?;
                tls.write_all(request.as_bytes())?;
                if let Err(error) = tls.read_to_end(&mut response)
                    && error.kind() != std::io::ErrorKind::UnexpectedEof
                {
                    return Err(error.into());
                }
            }
        }
        let response = String::from_utf8(response)?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .ok_or("a response without a body")?;
        Ok(serde_json::from_str(body)?)
    }

    /// Connections the simulator has accepted so far.
    fn connections(&self) -> Result<u64> {
        self.get_json("/_sim/stats")?["connections"]
            .as_u64()
            .ok_or_else(|| "no connection count in /_sim/stats".into())
    }
}

/// A TLS client over `stream` that trusts only `certificate` (PEM).
fn tls_client(
    certificate: &Path,
    host: &str,
    stream: std::net::TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_file(
        certificate,
    )?)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    Ok(rustls::StreamOwned::new(connection, stream))
}

/// The simulator's own median time from taking a request to writing its first event, over
/// the log entries from `from` on, in microseconds.
fn simulator_time(sim: &Simulator, from: usize) -> Result<f64> {
    let log = sim.get_json("/_sim/log")?;
    let mut own: Vec<f64> = log
        .as_array()
        .ok_or("the log is not an array")?
        .iter()
        .skip(from)
        .filter_map(|entry| Some(entry["first_event_us"].as_f64()? - entry["at_us"].as_f64()?))
        .collect();
    Ok(median(&mut own))
}

fn log_len(sim: &Simulator) -> Result<usize> {
    Ok(sim.get_json("/_sim/log")?.as_array().map_or(0, Vec::len))
}

fn median(values: &mut [f64]) -> f64 {
    percentile(values, 0.5)
}

fn percentile(values: &mut [f64], share: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() - 1) as f64 * share).round() as usize;
    values[index]
}

/// Runs one client on one scenario; its JSON line, with the simulator's own time and the
/// connections the client opened added.
fn run_client(
    root: &Path,
    python: &Path,
    client: &str,
    sim: &Simulator,
    scenario: &Scenario,
) -> Result<Value> {
    let before = log_len(sim)?;
    let connections_before = sim.connections()?;
    let (streams, runs) = (scenario.streams.to_string(), scenario.runs.to_string());
    let mut command = match client {
        "ours" | "async-openai" | "floor" => {
            let mut command = Command::new(root.join("target/release/examples/e2e_client"));
            command.arg(client);
            command
        }
        _ => {
            let mut command = Command::new(python);
            command
                .arg(root.join("benches/e2e/client.py"))
                .arg(if client == "openai-python" {
                    "openai"
                } else {
                    "perplexityai"
                });
            command
        }
    };
    if let Some(certificate) = &sim.certificate {
        command.env("E2E_CA_FILE", certificate);
    }
    let output = command
        .args([
            scenario.api,
            &sim.base_url,
            KEY,
            scenario.kind,
            &streams,
            &runs,
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("{client} on {} failed: {}", scenario.name, output.status).into());
    }
    let text = String::from_utf8(output.stdout)?;
    let mut result: Value = serde_json::from_str(text.trim())?;
    result["sim_own_us"] = Value::from(simulator_time(sim, before)?);
    // The two requests of this harness's own count each opened one.
    let opened = sim.connections()?.saturating_sub(connections_before + 2);
    result["connections"] = Value::from(opened);
    Ok(result)
}

/// The figures of one client on one scenario, medians over repetitions.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    chunks_per_second: f64,
    cpu_ns_per_chunk: f64,
    ttft_p50_us: f64,
    ttft_p99_us: f64,
    peak_rss_mib: f64,
    connections: f64,
}

fn figures(results: &[Value]) -> Figures {
    let mut rate = Vec::new();
    let mut cpu = Vec::new();
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut rss = Vec::new();
    let mut connections = Vec::new();
    for result in results {
        let chunks = result["chunks"].as_f64().unwrap_or(0.0).max(1.0);
        let wall = result["wall_s"].as_f64().unwrap_or(f64::NAN);
        rate.push(chunks / wall);
        cpu.push(result["cpu_s"].as_f64().unwrap_or(f64::NAN) * 1e9 / chunks);
        let own = result["sim_own_us"].as_f64().unwrap_or(0.0);
        let mut ttfts: Vec<f64> = result["ttft_us"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .map(|ttft| (ttft - own).max(0.0))
            .collect();
        p50.push(percentile(&mut ttfts, 0.5));
        p99.push(percentile(&mut ttfts, 0.99));
        rss.push(result["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0);
        connections.push(result["connections"].as_f64().unwrap_or(f64::NAN));
    }
    Figures {
        chunks_per_second: median(&mut rate),
        cpu_ns_per_chunk: median(&mut cpu),
        ttft_p50_us: median(&mut p50),
        ttft_p99_us: median(&mut p99),
        peak_rss_mib: median(&mut rss),
        connections: median(&mut connections),
    }
}

pub(crate) fn run(root: &Path, quick: bool) -> Result {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(root.join("target/e2e"))?;
    crate::run(
        "cargo",
        &[
            "build",
            "--locked",
            // Release code with line tables, for profiles (its output is target/release).
            "--profile",
            "bench",
            "-p",
            "pplx-sim",
            "-p",
            "benches",
            // Named, or `--example` alone would build no binary of pplx-sim.
            "--bin",
            "pplx-sim",
            "--example",
            "e2e_client",
        ],
        &[],
    )?;
    let python = crate::interop::venv(root)?;
    let repetitions = if quick { 2 } else { 5 };
    let scenarios = scenarios(quick);
    // results[scenario][client] = one JSON line per repetition.
    let mut results: Vec<Vec<Vec<Value>>> = vec![vec![Vec::new(); CLIENTS.len()]; scenarios.len()];
    for (index, scenario) in scenarios.iter().enumerate() {
        let sim = Simulator::start(root, scenario)?;
        for repetition in 0..repetitions {
            // Clients take turns, in a different order each repetition.
            for turn in 0..CLIENTS.len() {
                let client = (turn + repetition) % CLIENTS.len();
                let result = run_client(root, &python, CLIENTS[client], &sim, scenario)?;
                results[index][client].push(result);
            }
        }
        eprintln!(
            "e2e: {} done ({:.0} s so far)",
            scenario.name,
            started.elapsed().as_secs_f64()
        );
    }
    let json = serde_json::json!({
        "quick": quick,
        "repetitions": repetitions,
        "clients": CLIENTS,
        "scenarios": scenarios.iter().map(|scenario| serde_json::json!({
            "name": scenario.name, "words": scenario.words, "streams": scenario.streams, "runs": scenario.runs, "tls": scenario.tls,
        })).collect::<Vec<_>>(),
        "raw": results,
    });
    std::fs::write(root.join(RESULTS), serde_json::to_string_pretty(&json)?)?;
    let overhead = overhead(root, &python, quick)?;
    std::fs::write(
        root.join(OVERHEAD),
        serde_json::to_string_pretty(&overhead)?,
    )?;
    summarize(root, quick, &scenarios, &results, &overhead)?;
    eprintln!("e2e: {:.0} s in all", started.elapsed().as_secs_f64());
    Ok(())
}

/// Where a run keeps the overhead's raw results.
const OVERHEAD: &str = "target/e2e/overhead.json";

/// The concurrencies the overhead is measured at.
const OVERHEAD_STREAMS: [usize; 4] = [1, 16, 64, 256];

/// Our layers' cost: the provider and the floor, taking turns against one simulator (20-word
/// answers on the Agent API), at each of [`OVERHEAD_STREAMS`] streams at once. Per
/// concurrency and repetition, each client's time to the first delta at p50 and p99 (from
/// the call: both meet the same simulator) and its answers per second; the added time is
/// ours minus the floor's, the median over repetitions.
fn overhead(root: &Path, python: &Path, quick: bool) -> Result<Value> {
    let repetitions = if quick { 3 } else { 7 };
    let total = if quick { 256 } else { 1_024 };
    let mut rows = Vec::new();
    for streams in OVERHEAD_STREAMS {
        let scenario = Scenario {
            name: "overhead",
            kind: "concurrent",
            words: 20,
            streams,
            runs: (total / streams).max(2),
            tls: false,
            api: "agent",
        };
        let sim = Simulator::start(root, &scenario)?;
        let mut raw = vec![Vec::new(), Vec::new()];
        for repetition in 0..repetitions {
            for turn in 0..2 {
                let client = (turn + repetition) % 2;
                let name = ["ours", "floor"][client];
                raw[client].push(run_client(root, python, name, &sim, &scenario)?);
            }
        }
        let stat = |result: &Value, share: f64| {
            let mut ttfts: Vec<f64> = result["ttft_us"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .collect();
            percentile(&mut ttfts, share)
        };
        let rate = |result: &Value| {
            result["chunks"].as_f64().map_or(f64::NAN, |_| {
                (scenario.streams * scenario.runs) as f64
                    / result["wall_s"].as_f64().unwrap_or(f64::NAN)
            })
        };
        let added = |share: f64| {
            let mut differences: Vec<f64> = raw[0]
                .iter()
                .zip(&raw[1])
                .map(|(ours, floor)| stat(ours, share) - stat(floor, share))
                .collect();
            median(&mut differences)
        };
        let per_client = |client: usize, measure: &dyn Fn(&Value) -> f64| {
            let mut values: Vec<f64> = raw[client].iter().map(measure).collect();
            median(&mut values)
        };
        rows.push(serde_json::json!({
            "streams": streams,
            "answers": scenario.streams * scenario.runs,
            "added_p50_us": added(0.5),
            "added_p99_us": added(0.99),
            "ours_p50_us": per_client(0, &|result| stat(result, 0.5)),
            "floor_p50_us": per_client(1, &|result| stat(result, 0.5)),
            "ours_p99_us": per_client(0, &|result| stat(result, 0.99)),
            "floor_p99_us": per_client(1, &|result| stat(result, 0.99)),
            "ours_answers_per_s": per_client(0, &rate),
            "floor_answers_per_s": per_client(1, &rate),
            "raw": raw,
        }));
        eprintln!("e2e: overhead at {streams} streams done");
    }
    Ok(serde_json::json!({"repetitions": repetitions, "words": 20, "rows": rows}))
}

/// Where a run keeps its raw results.
const RESULTS: &str = "target/e2e/results.json";

/// `cargo xtask bench e2e --from-results`: the tables, charts and summary line again from the
/// last run's raw results, without running anything (for work on the report itself).
pub(crate) fn redraw(root: &Path) -> Result {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(root.join(RESULTS))?)?;
    let quick = json["quick"].as_bool().ok_or("results without `quick`")?;
    let scenarios = scenarios(quick);
    let results: Vec<Vec<Vec<Value>>> = serde_json::from_value(json["raw"].clone())?;
    let names: Vec<&str> = json["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|scenario| scenario["name"].as_str())
        .collect();
    if names != scenarios_names(&scenarios) || results.len() != scenarios.len() {
        return Err("the results are from other scenarios: run the bench again".into());
    }
    let overhead: Value = serde_json::from_str(&std::fs::read_to_string(root.join(OVERHEAD))?)?;
    summarize(root, quick, &scenarios, &results, &overhead)
}

/// The tables, the charts and the summary line from the raw results (the charts of a full
/// run are copied to docs/charts).
fn summarize(
    root: &Path,
    quick: bool,
    scenarios: &[Scenario],
    results: &[Vec<Vec<Value>>],
    overhead: &Value,
) -> Result {
    let table: Vec<Vec<Figures>> = results
        .iter()
        .map(|by_client| by_client.iter().map(|runs| figures(runs)).collect())
        .collect();
    report(scenarios, &table);
    let charts = crate::charts::e2e(
        root,
        &scenarios_names(scenarios),
        CLIENTS,
        &table_values(&table),
    )?;
    for chart in &charts {
        // A full run's charts are the ones docs/BENCHMARKS.md shows.
        if !quick && let Some(name) = chart.file_name() {
            let kept = root.join("docs/charts").join(name);
            std::fs::create_dir_all(root.join("docs/charts"))?;
            std::fs::copy(chart, &kept)?;
        }
        eprintln!("e2e: chart {}", chart.display());
    }
    let rows = overhead["rows"].as_array().cloned().unwrap_or_default();
    println!("overhead (the provider over the floor, 20-word answers on the Agent API)");
    println!(
        "| streams at once | answers | added ttft p50 us | added p99 us | ours p50 / p99 us | floor p50 / p99 us | ours answers/s | floor answers/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let number = |name: &str| row[name].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {:.0} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} | {:.0} |",
            number("streams"),
            number("answers"),
            number("added_p50_us"),
            number("added_p99_us"),
            number("ours_p50_us"),
            number("ours_p99_us"),
            number("floor_p50_us"),
            number("floor_p99_us"),
            number("ours_answers_per_s"),
            number("floor_answers_per_s"),
        );
    }
    let long = &table[0];
    let ours = long[0];
    let ratio = |other: usize| ours.chunks_per_second / long[other].chunks_per_second;
    // The lowest ratio to async-openai over the Agent API's scenarios.
    let lowest = scenarios
        .iter()
        .zip(&table)
        .filter(|(scenario, _)| scenario.api == "agent")
        .map(|(_, row)| row[0].chunks_per_second / row[1].chunks_per_second)
        .fold(f64::INFINITY, f64::min);
    let at_16 = rows
        .iter()
        .find(|row| row["streams"].as_u64() == Some(16))
        .cloned()
        .unwrap_or_default();
    println!(
        "e2e agent: chunks/s vs async-openai {:.1}x (lowest scenario {:.1}x), vs openai-python {:.1}x; overhead vs floor p50 {:.0} us, p99 {:.0} us",
        ratio(1),
        lowest,
        ratio(2),
        at_16["added_p50_us"].as_f64().unwrap_or(f64::NAN),
        at_16["added_p99_us"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(())
}

fn scenarios_names(scenarios: &[Scenario]) -> Vec<&'static str> {
    scenarios.iter().map(|scenario| scenario.name).collect()
}

/// (chunks/s, ttft p50) per scenario and client, for the charts.
fn table_values(table: &[Vec<Figures>]) -> Vec<Vec<(f64, f64)>> {
    table
        .iter()
        .map(|row| {
            row.iter()
                .map(|figures| (figures.chunks_per_second, figures.ttft_p50_us))
                .collect()
        })
        .collect()
}

fn report(scenarios: &[Scenario], table: &[Vec<Figures>]) {
    for (scenario, row) in scenarios.iter().zip(table) {
        let shape = if scenario.kind == "nonstream" {
            format!("{} answers one after another", scenario.streams)
        } else {
            format!(
                "{} stream(s) at once, {} run(s)",
                scenario.streams, scenario.runs
            )
        };
        let transport = if scenario.tls { "HTTPS" } else { "HTTP" };
        let api = if scenario.api == "agent" {
            "Agent API"
        } else {
            "chat completions"
        };
        println!(
            "\n{} ({shape}, {}-word answers, {api}, {transport})",
            scenario.name, scenario.words
        );
        let unit = if scenario.kind == "nonstream" {
            "answer"
        } else {
            "chunk"
        };
        println!(
            "| client | {unit}s/s | CPU ns/{unit} | client ttft p50 us | p99 us | peak RSS MiB | connections | {unit}s/s vs ours |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for (client, figures) in CLIENTS.iter().zip(row) {
            println!(
                "| {client} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {:.2}x |",
                figures.chunks_per_second,
                figures.cpu_ns_per_chunk,
                figures.ttft_p50_us,
                figures.ttft_p99_us,
                figures.peak_rss_mib,
                figures.connections,
                figures.chunks_per_second / row[0].chunks_per_second,
            );
        }
    }
    println!();
}
