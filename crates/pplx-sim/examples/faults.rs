//! Starts the simulator with a rate limit scripted for the first request, then asks it twice
//! over plain HTTP/1.1 (no client library, so the wire is what you see): the first answer is
//! the real service's 429, the second a streamed answer. Prints both and the request log.
//!
//! `cargo run -p pplx-sim --example faults`

use pplx_sim::{Fault, SimConfig, Simulator, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request over a fresh connection; the whole response as text.
async fn post(simulator: &Simulator, body: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(simulator.addr()).await?;
    let request = format!(
        "POST /v1/agent HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer example-key\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        simulator.addr(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut config = SimConfig::default();
    config.keys = vec!["example-key".to_owned()];
    let simulator = Simulator::start(config).await?;
    simulator.script(Target::Any, Fault::rate_limited(1), 1);

    let body = r#"{"model":"perplexity/sonar","stream":true,"tools":[{"type":"web_search"}],"input":"Explain quantum computing"}"#;
    let limited = post(&simulator, body).await?;
    let status_line = limited.lines().next().unwrap_or_default();
    println!("first request:  {status_line}");
    assert!(
        status_line.contains("429"),
        "the scripted fault answers first"
    );

    let streamed = post(&simulator, body).await?;
    let events = streamed
        .lines()
        .filter(|line| line.starts_with("data: "))
        .count();
    println!(
        "second request: {} ({events} SSE events)",
        streamed.lines().next().unwrap_or_default()
    );
    if let Some(first) = streamed.lines().find(|line| line.starts_with("data: ")) {
        println!("its first event: {}", &first[..first.len().min(160)]);
    }
    assert!(events > 1, "the second request streams an answer");

    simulator.wait_idle().await;
    print!("request log:\n{}", simulator.log_text());
    Ok(())
}
