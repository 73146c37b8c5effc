//! `pplx-mcp`: Perplexity for AI assistants, over the Model Context Protocol; a drop-in for
//! Perplexity's official MCP server (v1.3).
//!
//! stdio by default; `--http [ADDR]` serves Streamable HTTP at `/mcp` (and `GET /health`),
//! on ADDR or else `BIND_ADDRESS` (default 127.0.0.1) and `PORT` (default 8080), checking
//! the `Host` and `Origin` headers against allow-lists (`--allow-host`/`ALLOWED_HOSTS`,
//! `--allow-origin`/`ALLOWED_ORIGINS`) and, when `PPLX_MCP_TOKEN` (or the variable named by
//! `--token-env`) is set, a bearer token. The tools, `perplexity_ask`, `perplexity_reason`,
//! `perplexity_research` and `perplexity_search`, take the official server's arguments and run
//! on its Agent API presets (`[mcp]` in the config picks others, Sonar models included);
//! `perplexity_search_streaming` is the seed server's tool. Reasoning steps, then the answer,
//! stream as progress notifications. The environment is read as the official server reads
//! it: `PERPLEXITY_API_KEY` (required; also `PERPLEXITY_API_KEY_1`.. and
//! `PERPLEXITY_API_KEYS`), `PERPLEXITY_BASE_URL`, `PERPLEXITY_TIMEOUT_MS`,
//! `PERPLEXITY_PROXY` then `HTTPS_PROXY` then `HTTP_PROXY`, `PERPLEXITY_LOG_LEVEL`; flags win.
//! With no key it fails with a clear message; `--sim` answers from the built-in simulator.
//! Logs go to stderr: stdout belongs to the protocol.

mod tools;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use chat_core::ChatProvider;
use clap::Parser;
use pplx_setup::environment::{self, LogLevel, list as env_list, variable as env};
use provider_perplexity::PerplexityProvider;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

/// An MCP server exposing Perplexity: ask, reason, research and search.
#[derive(Debug, Parser)]
#[command(name = "pplx-mcp", version)]
struct Args {
    /// Serve Streamable HTTP at /mcp instead of stdio: on ADDR, or on BIND_ADDRESS (default
    /// 127.0.0.1) and PORT (default 8080).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
    http: Option<String>,
    /// Browser origins allowed to call the HTTP server (repeatable), like http://localhost:3000.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Extra Host names accepted by the HTTP server (loopback names always are).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// The variable holding the bearer token HTTP clients must send (none set: no token).
    #[arg(long, default_value = "PPLX_MCP_TOKEN")]
    token_env: String,
    /// Serve HTTP on a non-loopback address without a token (anyone who can reach it spends
    /// the key): refused unless this is given.
    #[arg(long)]
    allow_unauthenticated: bool,
    /// Answer from the built-in simulator (offline, simulated text) instead of the API.
    #[arg(long)]
    sim: bool,
    /// The config file (default $XDG_CONFIG_HOME/pplx/config.toml).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// The API's base URL (also PERPLEXITY_BASE_URL).
    #[arg(long)]
    base_url: Option<String>,
    /// Allow a plain http:// base URL that is not loopback (the key then crosses the network
    /// unencrypted; also allow_insecure_http = true in the config file).
    #[arg(long)]
    allow_insecure_http: bool,
    /// Do not use the response cache.
    #[arg(long)]
    no_cache: bool,
    /// The response cache: memory or redis://HOST:PORT.
    #[arg(long)]
    cache: Option<String>,
    /// Share key cooldowns, disabled keys, open breakers and per-key rate limits with every
    /// process using the same keys: redis://HOST:PORT (needs PPLX_SHARED_SECRET).
    #[arg(long, value_name = "redis://…")]
    shared_state: Option<String>,
}

/// The server: the provider (behind its cache) for the chat tools, the provider itself for
/// search.
#[derive(Clone)]
struct PplxMcp {
    provider: Arc<dyn ChatProvider>,
    perplexity: PerplexityProvider,
    models: tools::Models,
    instructions: String,
}

impl ServerHandler for PplxMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pplx-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.instructions.clone())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(tools::list(&self.models))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        tools::call(
            &self.provider,
            &self.perplexity,
            &self.models,
            request,
            context,
        )
        .await
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // PERPLEXITY_LOG_LEVEL, as the official server reads it (debug, info, warn, error).
    let level = match environment::log_level().unwrap_or_else(|error| {
        eprintln!("pplx-mcp: {error}");
        LogLevel::Warn
    }) {
        LogLevel::Trace => tracing::Level::TRACE,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Error => tracing::Level::ERROR,
        _ => tracing::Level::WARN,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pplx-mcp: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    // OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; Prometheus text at /metrics over HTTP.
    let telemetry = match pplx_setup::telemetry::Telemetry::start(
        "pplx-mcp",
        args.http.is_some(),
        runtime.handle(),
    ) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("pplx-mcp: {}", error.report());
            return ExitCode::FAILURE;
        }
    };
    logging(level, &telemetry);
    let served = runtime.block_on(run(args, telemetry.prometheus()));
    for problem in telemetry.shutdown() {
        eprintln!("pplx-mcp: telemetry: {problem}");
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pplx-mcp: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Logs on stderr at `level`; with OTLP export, every answer's span (info and above) to the
/// exporter too.
fn logging(level: tracing::Level, telemetry: &pplx_setup::telemetry::Telemetry) {
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(tracing_subscriber::filter::LevelFilter::from_level(level));
    let spans = telemetry.tracer().map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let subscriber = tracing_subscriber::registry().with(logs).with(spans);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

async fn run(
    args: Args,
    metrics: Option<pplx_setup::telemetry::PrometheusMetrics>,
) -> Result<(), String> {
    let file = pplx_setup::config::load(args.config.as_deref())
        .map_err(|error| error.report().to_string())?;
    let models = models(&file.mcp);
    let setup = pplx_setup::setup(&setup_options(&args)?, file)
        .await
        .map_err(|error| error.report().to_string())?;
    if let Some(notice) = &setup.notice {
        eprintln!("pplx-mcp: {notice}");
    }
    for warning in &setup.warnings {
        eprintln!("pplx-mcp: {warning}");
    }
    let mut instructions = "Perplexity: web-grounded answers with citations. Use perplexity_search for URLs, facts and news; perplexity_ask for quick answers; perplexity_reason for step-by-step analysis; perplexity_research for in-depth multi-source research (slow). All tools are read-only. Answers stream as progress notifications when a progress token is given.".to_owned();
    let simulated = setup.is_simulated();
    if simulated {
        instructions.push_str(" This server has no Perplexity API key: answers come from a built-in simulator and are not real.");
    }
    let server = PplxMcp {
        provider: setup.provider,
        perplexity: setup.perplexity,
        models,
        instructions,
    };
    let _simulator = setup.simulator;
    match &args.http {
        None => serve_stdio(server).await,
        Some(addr) => serve_http(server, &args, addr, simulated, metrics).await,
    }
}

/// The models behind the chat tools: the config file's `[mcp]`, else the official server's.
fn models(file: &pplx_setup::config::McpFile) -> tools::Models {
    let defaults = tools::Models::default();
    tools::Models {
        ask: file.ask_model.clone().unwrap_or(defaults.ask),
        reason: file.reason_model.clone().unwrap_or(defaults.reason),
        research: file.research_model.clone().unwrap_or(defaults.research),
    }
}

/// What the command line and `PERPLEXITY_TIMEOUT_MS` ask of the shared setup; a key is
/// required (unless `--sim`), as the official server requires one.
fn setup_options(args: &Args) -> Result<pplx_setup::SetupOptions, String> {
    Ok(pplx_setup::SetupOptions {
        base_url: args.base_url.clone(),
        allow_insecure_http: args.allow_insecure_http,
        sim: args.sim,
        cache: args.cache.clone(),
        no_cache: args.no_cache,
        shared_state: args.shared_state.clone(),
        require_key: true,
        total_timeout: environment::total_timeout().map_err(|error| error.report().to_string())?,
        ..pplx_setup::SetupOptions::default()
    })
}

async fn serve_stdio(server: PplxMcp) -> Result<(), String> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|error| format!("cannot start on stdio: {error}"))?;
    running
        .waiting()
        .await
        .map_err(|error| format!("stdio session failed: {error}"))?;
    Ok(())
}

/// Streamable HTTP at `addr` (empty: `BIND_ADDRESS` and `PORT`), behind the token and the
/// Host and Origin allow-lists (flags win; the official server's variables otherwise).
async fn serve_http(
    server: PplxMcp,
    args: &Args,
    addr: &str,
    simulated: bool,
    metrics: Option<pplx_setup::telemetry::PrometheusMetrics>,
) -> Result<(), String> {
    let addr = http_address(addr)?;
    let token = env(&args.token_env);
    check_exposure(
        addr,
        token.is_some(),
        args.allow_unauthenticated || simulated,
        &args.token_env,
    )?;
    if simulated && token.is_none() && !addr.ip().is_loopback() {
        eprintln!(
            "pplx-mcp: serving {addr} with no token: the built-in simulator answers, so no API key is spent"
        );
    }
    let hosts = if args.allow_hosts.is_empty() {
        env_list("ALLOWED_HOSTS")
    } else {
        args.allow_hosts.clone()
    };
    let origins = if args.allow_origins.is_empty() {
        env_list("ALLOWED_ORIGINS")
    } else {
        args.allow_origins.clone()
    };
    http::serve(server, addr, &hosts, &origins, token, metrics).await
}

/// Refuses to serve a non-loopback address with no token unless explicitly allowed (or no
/// key is in use: the simulator answers): anyone on the network could spend the API key.
fn check_exposure(
    addr: SocketAddr,
    has_token: bool,
    allow_unauthenticated: bool,
    token_env: &str,
) -> Result<(), String> {
    if addr.ip().is_loopback() || has_token || allow_unauthenticated {
        return Ok(());
    }
    Err(format!(
        "refusing to serve {addr} without a token: anyone who can reach it would spend the API key. Set {token_env}, bind to 127.0.0.1, or pass --allow-unauthenticated"
    ))
}

/// The HTTP address: `--http ADDR`, else `BIND_ADDRESS` (default 127.0.0.1) and `PORT`
/// (default 8080).
fn http_address(flag: &str) -> Result<SocketAddr, String> {
    if !flag.is_empty() {
        return flag
            .parse()
            .map_err(|_| format!("--http {flag:?}: an address like 127.0.0.1:8080"));
    }
    let ip = env("BIND_ADDRESS").unwrap_or_else(|| "127.0.0.1".to_owned());
    let ip: std::net::IpAddr = ip
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| format!("BIND_ADDRESS is {ip:?}: an IP address like 127.0.0.1"))?;
    let port = env("PORT").unwrap_or_else(|| "8080".to_owned());
    let port: u16 = port
        .parse()
        .map_err(|_| format!("PORT is {port:?}: a port number"))?;
    Ok(SocketAddr::new(ip, port))
}

mod http {
    //! Streamable HTTP at `/mcp`, with the Host/Origin allow-lists and the bearer token.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::combinators::BoxBody;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    use tower_service::Service;

    use pplx_setup::telemetry::PrometheusMetrics;

    use super::PplxMcp;

    pub(super) async fn serve(
        server: PplxMcp,
        addr: SocketAddr,
        extra_hosts: &[String],
        origins: &[String],
        token: Option<String>,
        metrics: Option<PrometheusMetrics>,
    ) -> Result<(), String> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
        let local = listener.local_addr().map_err(|error| error.to_string())?;
        let mut hosts = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "[::1]".to_owned(),
        ];
        hosts.extend(extra_hosts.iter().cloned());
        let mut config = StreamableHttpServerConfig::default().with_allowed_hosts(hosts);
        if !origins.is_empty() {
            config = config.with_allowed_origins(origins.to_vec());
        }
        let service = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        // The first line on stderr says where it serves.
        eprintln!("pplx-mcp: serving MCP at http://{local}/mcp");
        let token = token.map(|token| format!("Bearer {token}"));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // the server keeps serving. A short pause keeps a persistent error (no
                    // descriptors left) from spinning a core until one is freed.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let service = service.clone();
            let token = token.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
                    answer(service.clone(), token.clone(), metrics.clone(), request)
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), handler)
                    .await;
            });
        }
    }

    /// The MCP service behind `/mcp`.
    type Mcp = StreamableHttpService<PplxMcp, LocalSessionManager>;

    /// One HTTP request: `GET /health`, a 404 off `/mcp` and `/metrics`, a 401 without the
    /// bearer token (when one is set), else the metrics (Prometheus text) or the MCP
    /// service's answer.
    async fn answer(
        mut service: Mcp,
        token: Option<String>,
        metrics: Option<PrometheusMetrics>,
        request: Request<Incoming>,
    ) -> Result<Response<BoxBody<Bytes, std::convert::Infallible>>, std::convert::Infallible> {
        if request.uri().path() == "/health" && request.method() == hyper::Method::GET {
            let mut response = Response::new(
                Full::new(Bytes::from_static(
                    br#"{"status":"ok","service":"perplexity-mcp-server"}"#,
                ))
                .boxed(),
            );
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            return Ok(response);
        }
        let scrape = request.uri().path() == "/metrics" && request.method() == hyper::Method::GET;
        if request.uri().path() != "/mcp" && !scrape {
            return Ok(plain(
                StatusCode::NOT_FOUND,
                "not found: the MCP endpoint is /mcp",
            ));
        }
        if let Some(expected) = &token {
            let given = request
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .map(|value| value.as_bytes())
                .unwrap_or_default();
            if !token_matches(given, expected.as_bytes()) {
                return Ok(plain(
                    StatusCode::UNAUTHORIZED,
                    "a valid bearer token is required",
                ));
            }
        }
        if scrape {
            let Some(metrics) = metrics else {
                return Ok(plain(StatusCode::NOT_FOUND, "not found: no metrics here"));
            };
            let mut response = Response::new(Full::new(Bytes::from(metrics.text())).boxed());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(PrometheusMetrics::CONTENT_TYPE),
            );
            return Ok(response);
        }
        service.call(request).await
    }

    /// Compares a presented `Authorization` value with the expected one in constant time (for
    /// equal lengths), so timing does not reveal how much of a guess was right.
    pub(super) fn token_matches(given: &[u8], expected: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        given.len() == expected.len() && bool::from(given.ct_eq(expected))
    }

    fn plain(
        status: StatusCode,
        text: &'static str,
    ) -> Response<BoxBody<Bytes, std::convert::Infallible>> {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
        *response.status_mut() = status;
        response
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use pplx_sim::{Fault, Pace, SimConfig, Simulator, Target};
    use provider_perplexity::PerplexityConfig;
    use rmcp::model::{
        NumberOrString, ProgressNotificationParam, ProgressToken, RequestMetaObject,
    };
    use rmcp::service::NotificationContext;
    use rmcp::{ClientHandler, RoleClient};
    use serde_json::json;

    use super::*;

    /// A client that keeps every progress value with its message.
    struct Progress(Arc<Mutex<Vec<(f64, String)>>>);

    impl ClientHandler for Progress {
        async fn on_progress(
            &self,
            params: ProgressNotificationParam,
            _: NotificationContext<RoleClient>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push((params.progress, params.message.unwrap_or_default()));
        }
    }

    /// `pplx-mcp` on the official presets for `config` (keyed `mcp-test-key`, at `sim`),
    /// served over an in-memory duplex; a client keeping its progress in `progress`.
    async fn serve(
        sim: &Simulator,
        change: impl FnOnce(&mut PerplexityConfig),
        progress: Arc<Mutex<Vec<(f64, String)>>>,
    ) -> rmcp::service::RunningService<RoleClient, Progress> {
        let mut config = PerplexityConfig::default();
        config.base_url = sim.base_url();
        config.keys = vec![resilience::ApiKey::new("mcp-test-key")];
        change(&mut config);
        let perplexity = PerplexityProvider::new(config).unwrap();
        let server = PplxMcp {
            provider: Arc::new(perplexity.clone()),
            perplexity,
            models: tools::Models::default(),
            instructions: "test".into(),
        };
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move { server.serve(server_io).await.unwrap().waiting().await });
        Progress(progress).serve(client_io).await.unwrap()
    }

    #[tokio::test]
    async fn a_restart_is_said_and_progress_never_goes_back() {
        let mut sim_config = SimConfig::default();
        sim_config.keys = vec!["mcp-test-key".into()];
        sim_config.pace = Pace::instant();
        let sim = Simulator::start(sim_config).await.unwrap();
        // The first answer (on the Agent API: its searches, then text) breaks after some
        // text; not resumed, the restart answers in full.
        sim.script(Target::Any, Fault::drop_after_events(12), 1);
        let values = Arc::new(Mutex::new(Vec::new()));
        let restart = |config: &mut PerplexityConfig| {
            config.after_commit = provider_perplexity::AfterCommit::Restart { max_restarts: 1 };
            config.resume = false;
        };
        let client = serve(&sim, restart, values.clone()).await;
        let question = "Explain quantum computing";
        let mut meta = RequestMetaObject::new();
        meta.set_progress_token(ProgressToken(NumberOrString::Number(1)));
        let mut call = CallToolRequestParams::new("perplexity_search_streaming")
            .with_arguments(json!({"query": question}).as_object().unwrap().clone());
        call.meta = Some(meta);
        let result = client.call_tool(call).await.unwrap();
        let expected = sim.expected_text("sonar", &[question], None);
        assert_eq!(
            result.structured_content.unwrap()["answer"],
            expected.as_str()
        );
        let values = values.lock().unwrap().clone();
        assert!(
            values.windows(2).all(|pair| pair[1].0 > pair[0].0),
            "progress only grows: {values:?}"
        );
        let restart = values
            .iter()
            .position(|(_, message)| message.contains("starts over"))
            .expect("the restart is said");
        let after: String = values[restart + 1..]
            .iter()
            .map(|(_, message)| message.as_str())
            .collect();
        // After the notice, the new run's reasoning (its searches), then its answer exactly.
        assert!(after.ends_with(&expected), "{after}");
        assert!(after.starts_with("Planning the search."), "{after}");
        client.cancel().await.unwrap();
    }

    #[tokio::test]
    async fn research_cut_twice_mid_answer_completes_from_one_run_with_no_restart() {
        let mut sim_config = SimConfig::default();
        sim_config.keys = vec!["mcp-test-key".into()];
        sim_config.pace = Pace::instant();
        sim_config.record_bodies = true;
        let sim = Simulator::start(sim_config).await.unwrap();
        // Cut mid-answer twice: after the first words, then a few events into the resume.
        sim.script(Target::Any, Fault::drop_after_events(14), 1);
        sim.script(Target::Any, Fault::drop_after_events(4), 1);
        let values = Arc::new(Mutex::new(Vec::new()));
        let client = serve(&sim, |_| {}, values.clone()).await;
        let question = "Explain quantum computing";
        let arguments = json!({"messages": [{"role": "user", "content": question}]});
        let mut meta = RequestMetaObject::new();
        meta.set_progress_token(ProgressToken(NumberOrString::Number(3)));
        let mut call = CallToolRequestParams::new("perplexity_research")
            .with_arguments(arguments.as_object().unwrap().clone());
        call.meta = Some(meta);
        let result = client.call_tool(call).await.unwrap();
        assert_eq!(result.is_error, Some(false));
        // The research tool runs on the `high` effort.
        let expected = sim.expected_text("high", &[question], None);
        assert_eq!(
            result.structured_content.unwrap()["answer"],
            expected.as_str()
        );
        let values = values.lock().unwrap().clone();
        assert!(
            values
                .iter()
                .all(|(_, message)| !message.contains("starts over")),
            "no restart: {values:?}"
        );
        sim.wait_idle().await;
        let posts = sim
            .log()
            .iter()
            .filter(|entry| entry.endpoint == "/v1/agent")
            .count();
        assert_eq!(posts, 1, "one run: {}", sim.log_text());
        client.cancel().await.unwrap();
    }

    #[test]
    fn an_open_address_needs_a_token_or_an_explicit_yes() {
        let open: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let error = check_exposure(open, false, false, "PPLX_MCP_TOKEN").unwrap_err();
        assert!(error.contains("PPLX_MCP_TOKEN"), "{error}");
        assert!(check_exposure(open, true, false, "PPLX_MCP_TOKEN").is_ok());
        assert!(check_exposure(open, false, true, "PPLX_MCP_TOKEN").is_ok());
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(check_exposure(loopback, false, false, "PPLX_MCP_TOKEN").is_ok());
        assert!(http::token_matches(b"Bearer s3cret", b"Bearer s3cret"));
        assert!(!http::token_matches(b"Bearer s3cres", b"Bearer s3cret"));
        assert!(!http::token_matches(b"Bearer", b"Bearer s3cret"));
    }

    #[tokio::test]
    async fn ask_and_reason_send_filters_inside_the_web_search_tool() {
        let mut sim_config = SimConfig::default();
        sim_config.keys = vec!["mcp-test-key".into()];
        sim_config.pace = Pace::instant();
        sim_config.record_bodies = true;
        let sim = Simulator::start(sim_config).await.unwrap();
        let client = serve(&sim, |_| {}, Arc::default()).await;
        for tool in ["perplexity_ask", "perplexity_reason"] {
            let arguments = json!({
                "messages": [{"role": "user", "content": "What did NASA launch?"}],
                "search_recency_filter": "week",
                "search_domain_filter": ["nasa.gov"],
                "search_context_size": "high",
            });
            let call = CallToolRequestParams::new(tool)
                .with_arguments(arguments.as_object().unwrap().clone());
            let result = client.call_tool(call).await.unwrap();
            assert_eq!(result.is_error, Some(false), "{tool}");
            // The filters reached the search: every source is on the one allowed domain.
            let structured = result.structured_content.unwrap();
            let citations = structured["citations"].as_array().unwrap();
            assert!(
                !citations.is_empty()
                    && citations
                        .iter()
                        .all(|url| url.as_str().unwrap().starts_with("https://nasa.gov/")),
                "{tool}: {citations:?}"
            );
        }
        sim.wait_idle().await;
        for entry in sim.log() {
            let body: serde_json::Value =
                serde_json::from_str(entry.body.as_deref().unwrap()).unwrap();
            assert!(body["effort"].is_string(), "asked with effort: {body}");
            assert!(body.get("search_recency_filter").is_none(), "{body}");
            assert_eq!(
                body["tools"],
                json!([{"type": "web_search", "filters": {"search_recency_filter": "week",
                    "search_domain_filter": ["nasa.gov"]}, "search_context_size": "high"}])
            );
        }
        client.cancel().await.unwrap();
    }

    #[tokio::test]
    async fn tools_over_an_in_memory_duplex() {
        let mut sim_config = SimConfig::default();
        sim_config.keys = vec!["mcp-test-key".into()];
        let mut pace = Pace::instant();
        pace.chunk_delay = std::time::Duration::from_millis(2);
        sim_config.pace = pace;
        sim_config.record_bodies = true;
        let sim = Simulator::start(sim_config).await.unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let client = serve(&sim, |_| {}, messages.clone()).await;

        let tools = client.list_all_tools().await.unwrap();
        let mut names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "perplexity_ask",
                "perplexity_reason",
                "perplexity_research",
                "perplexity_search",
                "perplexity_search_streaming"
            ]
        );

        let question = "Explain quantum computing";
        let arguments = json!({"messages": [{"role": "user", "content": question}]});
        let mut meta = RequestMetaObject::new();
        meta.set_progress_token(ProgressToken(NumberOrString::Number(7)));
        let mut call = CallToolRequestParams::new("perplexity_ask")
            .with_arguments(arguments.as_object().unwrap().clone());
        call.meta = Some(meta);
        let result = client.call_tool(call).await.unwrap();
        // The ask tool runs on the official server's `fast` preset (the Agent API).
        let expected = sim.expected_text("fast", &[question], None);
        let structured = result.structured_content.unwrap();
        assert_eq!(structured["answer"], expected.as_str());
        let progress: Vec<String> = messages
            .lock()
            .unwrap()
            .iter()
            .map(|(_, message)| message.clone())
            .collect();
        let answer_starts = (0..progress.len())
            .find(|&start| progress[start..].concat() == expected)
            .expect("the progress ends with the answer, exactly");
        assert!(
            progress[..answer_starts]
                .iter()
                .any(|step| step.starts_with("Searching: ")),
            "reasoning steps come first: {progress:?}"
        );
        assert_eq!(result.is_error, Some(false));

        // Legacy arguments are ignored, not refused.
        let legacy = json!({"messages": [{"role": "user", "content": question}], "strip_thinking": "yes", "model": "x"});
        let call = CallToolRequestParams::new("perplexity_reason")
            .with_arguments(legacy.as_object().unwrap().clone());
        assert_eq!(client.call_tool(call).await.unwrap().is_error, Some(false));

        // The seed server's tool and its exact result.
        let call = CallToolRequestParams::new("perplexity_search_streaming")
            .with_arguments(json!({"query": question}).as_object().unwrap().clone());
        let result = client.call_tool(call).await.unwrap();
        let expected = sim.expected_text("sonar", &[question], None);
        let value =
            json!({"success": true, "answer": expected, "model": "sonar", "streaming": true});
        assert_eq!(result.structured_content.as_ref(), Some(&value));
        let text = result.content[0].as_text().unwrap().text.clone();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
        // A Sonar name there too, answered on the Agent API (chat completions are gone here).
        let call = CallToolRequestParams::new("perplexity_search_streaming").with_arguments(
            json!({"query": question, "model": "sonar-pro"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let result = client.call_tool(call).await.unwrap();
        assert_eq!(
            result.structured_content.as_ref().unwrap()["answer"],
            sim.expected_text("sonar-pro", &[question], None).as_str()
        );
        sim.wait_idle().await;
        assert!(
            sim.log()
                .iter()
                .all(|entry| !entry.endpoint.contains("chat/completions")),
            "every tool answered on the Agent API"
        );

        let bad = CallToolRequestParams::new("perplexity_search").with_arguments(
            json!({"query": "x", "max_results": 50})
                .as_object()
                .unwrap()
                .clone(),
        );
        let error = client.call_tool(bad).await.unwrap_err();
        assert!(error.to_string().contains("max_results"), "{error}");

        // `fast` is the tool's (the official server's) value; the Search API's `search_type`
        // has no such value, so it is not forwarded, and `web` is.
        for search_type in ["fast", "web"] {
            let call = CallToolRequestParams::new("perplexity_search").with_arguments(
                json!({"query": "olympus mons", "search_type": search_type})
                    .as_object()
                    .unwrap()
                    .clone(),
            );
            assert_eq!(client.call_tool(call).await.unwrap().is_error, Some(false));
        }
        sim.wait_idle().await;
        let sent: Vec<serde_json::Value> = sim
            .log()
            .iter()
            .filter(|entry| entry.endpoint == "/search")
            .map(|entry| serde_json::from_str(entry.body.as_deref().unwrap()).unwrap())
            .collect();
        assert_eq!(sent.len(), 2);
        assert!(sent[0].get("search_type").is_none(), "{}", sent[0]);
        assert_eq!(sent[1]["search_type"], "web");

        sim.script(Target::Any, Fault::status(401), 1);
        let call = CallToolRequestParams::new("perplexity_ask")
            .with_arguments(arguments.as_object().unwrap().clone());
        let result = client.call_tool(call).await.unwrap();
        assert_eq!(result.is_error, Some(true));
        let text = format!("{:?}", result.content);
        assert!(text.contains("rejected the API key"), "{text}");
        assert!(!text.contains("mcp-test-key"));

        // The seed's tool fails with its own shape, and with the error flag a client checks.
        sim.script(Target::Any, Fault::status(401), 1);
        let call = CallToolRequestParams::new("perplexity_search_streaming")
            .with_arguments(json!({"query": question}).as_object().unwrap().clone());
        let result = client.call_tool(call).await.unwrap();
        assert_eq!(result.is_error, Some(true));
        let value = result.structured_content.unwrap();
        assert_eq!(value["success"], false, "{value}");
        let error = value["error"].as_str().unwrap();
        assert!(error.contains("rejected"), "{value}");
        assert!(!error.contains("mcp-test-key"), "{value}");
        let text = result.content[0].as_text().unwrap().text.clone();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
        client.cancel().await.unwrap();
    }
}
