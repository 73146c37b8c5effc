//! A whole tool loop, offline: the model is offered a `get_weather` function, streams a call
//! to it, the program runs the function and replays its result, and the model answers with
//! it. Against the simulator's Agent API (whose scripted model calls a function the question
//! names); the same code runs against Perplexity with a key and no `base_url`.
//!
//! `cargo run -p pplx-provider-perplexity --example tools`

use futures_util::StreamExt;
use pplx_sim::{SimConfig, Simulator};
use provider_perplexity::{
    Api, ChatEvent, ChatProvider, Message, PerplexityProvider, Tool, ToolCall,
};
use serde_json::{Value, json};

/// The function the model may call: here a stand-in that knows one city.
fn get_weather(arguments: &str) -> String {
    // The arguments are the model's JSON text, unchecked: a bad one gets an error result,
    // which the model can read and correct.
    match serde_json::from_str::<Value>(arguments) {
        Ok(arguments) => {
            let city = arguments["city"].as_str().unwrap_or("nowhere");
            json!({"city": city, "temperature_c": 18, "sky": "clear"}).to_string()
        }
        Err(error) => json!({"error": format!("bad arguments: {error}")}).to_string(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let simulator = Simulator::start(SimConfig::default()).await?;
    let provider = PerplexityProvider::builder()
        .key("pplx-offline")
        .model("openai/gpt-5-mini")
        .base_url(simulator.base_url())
        // Only perplexity.ai is known to serve the Agent API: at another address, say so.
        .api(Api::Agent)
        .build()?;

    let mut request = provider.request("What's the weather in Paris right now?");
    request.tools.push(Tool::function(
        "get_weather",
        "The current weather in a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    ));

    // At most a few rounds: a model that keeps calling is stopped rather than looping.
    for _round in 0..4 {
        let mut calls: Vec<ToolCall> = Vec::new();
        let mut stream = provider.chat_stream(request.clone());
        while let Some(event) = stream.next().await {
            match event? {
                ChatEvent::TextDelta(text) => print!("{text}"),
                ChatEvent::ToolCall(call) => {
                    println!("→ {}({})", call.name, call.arguments);
                    calls.push(call);
                }
                ChatEvent::Done(_) => println!(),
                _ => {}
            }
        }
        if calls.is_empty() {
            return Ok(());
        }
        // The turn that asked, then one result per call, named by its id.
        request.messages.push(Message::tool_calls(calls.clone()));
        for call in &calls {
            let output = match call.name.as_str() {
                "get_weather" => get_weather(&call.arguments),
                other => json!({"error": format!("no function {other}")}).to_string(),
            };
            println!("← {output}");
            request
                .messages
                .push(Message::tool_result(&call.id, output));
        }
    }
    Err("the model was still calling functions after four rounds".into())
}
