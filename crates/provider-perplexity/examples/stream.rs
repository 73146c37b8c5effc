//! Streams an answer to "Explain quantum computing" with four rotating keys and prints its
//! sources, offline: against the simulator, with the first key rate limited (the pool
//! cools it and the answer comes through another).
//!
//! `cargo run -p pplx-provider-perplexity --example stream`

use futures_util::StreamExt;
use pplx_sim::{Fault, SimConfig, Simulator, Target};
use provider_perplexity::{ChatEvent, ChatProvider, PerplexityProvider};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys = ["pplx-key-1", "pplx-key-2", "pplx-key-3", "pplx-key-4"];
    let mut sim_config = SimConfig::default();
    sim_config.keys = keys.iter().map(|key| (*key).to_owned()).collect();
    let simulator = Simulator::start(sim_config).await?;
    simulator.script(Target::Key(0), Fault::rate_limited(30), 1);

    let provider = PerplexityProvider::builder()
        .keys(keys)
        .model("sonar")
        .base_url(simulator.base_url())
        .build()?;
    let mut stream = provider.chat_stream(provider.request("Explain quantum computing"));
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::TextDelta(text) => print!("{text}"),
            ChatEvent::Done(response) => {
                println!("\n");
                for (number, url) in response.sources.numbered() {
                    println!("[{number}] {url}");
                }
            }
            _ => {}
        }
    }
    Ok(())
}
