//! Sets up a provider the way `pplx` and `pplx-mcp` do (config file, environment, cache,
//! and the built-in simulator: `sim` is set, so this runs offline whatever keys are set),
//! then asks one question and prints the notice, the answer and its sources.
//!
//! `cargo run -p pplx-setup --features simulator --example ask`

use chat_core::ChatRequest;
use pplx_setup::{SetupOptions, config};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A missing default config file is an empty config; a named one must exist.
    let file = config::load(None)?;
    let options = SetupOptions {
        sim: true,
        ..SetupOptions::default()
    };
    let setup = pplx_setup::setup(&options, file).await?;
    if let Some(notice) = &setup.notice {
        eprintln!("ask: {notice}");
    }
    let answer = setup
        .provider
        .chat(ChatRequest::new(&setup.model, "Explain quantum computing"))
        .await?;
    println!("{}", answer.text);
    for (number, url) in answer.sources.numbered() {
        println!("[{number}] {url}");
    }
    Ok(())
}
