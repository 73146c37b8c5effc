//! `pplx-sim --listen 127.0.0.1:PORT [--scenario FILE.toml] [--keys k1,k2]`: serves the
//! simulator until Ctrl-C. The first line on stdout is the base URL; the request log goes to
//! stderr at the end.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use pplx_sim::{Scenario, Simulator};

/// A loopback Perplexity API server with injectable faults.
#[derive(Debug, Parser)]
#[command(name = "pplx-sim", version)]
struct Args {
    /// Address to serve on (loopback; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A scenario file: keys, pace and faults (see the crate docs for its format).
    #[arg(long)]
    scenario: Option<std::path::PathBuf>,
    /// Accepted API keys, comma-separated (overrides the scenario's); none accepts any.
    #[arg(long, value_delimiter = ',')]
    keys: Option<Vec<String>>,
    /// No delays (the default pace is about the real service's).
    #[arg(long)]
    instant: bool,
    /// Serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN) with a self-signed certificate.
    #[arg(long)]
    tls: bool,
    /// Answer chat completions as any OpenAI-compatible endpoint: any model name, and
    /// function tools (Perplexity's own endpoint takes Sonar models only, without tools).
    #[arg(long)]
    compatible: bool,
    /// Keep Perplexity's Sonar chat completions and async jobs, as before their retirement
    /// on 2026-09-27 (by default they answer 404, as the service does).
    #[arg(long)]
    legacy_sonar: bool,
    /// Where to write that certificate (PEM), for clients to trust.
    #[arg(long, value_name = "FILE", requires = "tls")]
    certificate_out: Option<std::path::PathBuf>,
    /// Print the exact text a complete answer to MODEL (or preset) for QUESTION delivers
    /// with this pace, and exit.
    #[arg(long, num_args = 2, value_names = ["MODEL", "QUESTION"])]
    expected: Option<Vec<String>>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "pplx-sim: serves loopback only; {} is not a loopback address",
            args.listen
        );
        return ExitCode::from(2);
    }
    let mut scenario = Scenario::default();
    if let Some(path) = &args.scenario {
        let parsed = std::fs::read_to_string(path)
            .map_err(|error| error.to_string())
            .and_then(|text| Scenario::parse(&text));
        match parsed {
            Ok(parsed) => scenario = parsed,
            Err(error) => {
                eprintln!("pplx-sim: cannot use scenario {}: {error}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    if let Some(keys) = args.keys {
        scenario.keys = keys;
    }
    let mut config = scenario.into_config();
    if args.instant {
        config.pace = pplx_sim::Pace::instant();
    }
    config.tls |= args.tls;
    config.compatible |= args.compatible;
    config.legacy_sonar |= args.legacy_sonar;
    if let Some([model, question]) = args.expected.as_deref() {
        print!(
            "{}",
            pplx_sim::expected_text(model, &[question], config.pace.answer_words, None)
        );
        return ExitCode::SUCCESS;
    }
    let sim = match Simulator::bind(args.listen, config).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("pplx-sim: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(pem)) = (&args.certificate_out, sim.certificate_pem())
        && let Err(error) = std::fs::write(path, pem)
    {
        eprintln!("pplx-sim: cannot write {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    println!("{}", sim.base_url());
    let _ = tokio::signal::ctrl_c().await;
    eprint!("{}", sim.log_text());
    sim.shutdown().await;
    ExitCode::SUCCESS
}
