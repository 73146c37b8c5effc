//! Implements `ChatProvider` for a provider that answers from a table, streaming its answer
//! word by word, and consumes it as a caller would: deltas as they come, then `Done` with the
//! assembled response (the same one `chat` returns). With default features chat-core pulls
//! no runtime: tokio here only drives the example.
//!
//! `cargo run -p pplx-chat-core --example canned`

use async_trait::async_trait;
use chat_core::{
    Accumulator, ChatEvent, ChatProvider, ChatRequest, ChatResponse, ChatStream, Error,
};
use futures_util::StreamExt;

/// Answers known questions; anything else is a typed error.
struct Canned;

impl Canned {
    fn events(request: &ChatRequest) -> Result<Vec<ChatEvent>, Error> {
        let question = request
            .messages
            .last()
            .map_or("", |message| message.content.as_str());
        let answer = match question {
            "Explain quantum computing" => {
                "Quantum computers use qubits, which hold superpositions of 0 and 1."
            }
            _ => return Err(Error::status(400, "no canned answer for that question")),
        };
        let mut answer_so_far = Accumulator::default();
        let mut events = Vec::new();
        for word in answer.split_inclusive(' ') {
            let delta = ChatEvent::TextDelta(word.to_owned());
            answer_so_far.push(&delta);
            events.push(delta);
        }
        events.push(ChatEvent::Done(Box::new(answer_so_far.into_response())));
        Ok(events)
    }
}

#[async_trait]
impl ChatProvider for Canned {
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let mut answer = Accumulator::default();
        for event in Canned::events(&request)? {
            answer.push(&event);
        }
        Ok(answer.into_response())
    }

    fn chat_stream(&self, request: ChatRequest) -> ChatStream {
        let events: Vec<Result<ChatEvent, Error>> = match Canned::events(&request) {
            Ok(events) => events.into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error)],
        };
        Box::pin(futures_util::stream::iter(events))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let provider: std::sync::Arc<dyn ChatProvider> = std::sync::Arc::new(Canned);
    let mut stream = provider.chat_stream(ChatRequest::new("canned", "Explain quantum computing"));
    let mut deltas = 0;
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::TextDelta(text) => {
                deltas += 1;
                print!("{text}");
            }
            ChatEvent::Done(response) => {
                println!("\n({deltas} deltas; done: {:?})", response.finish_reason)
            }
            _ => {}
        }
    }
    let whole = provider
        .chat(ChatRequest::new("canned", "Explain quantum computing"))
        .await?;
    println!("chat() gives the same text: {}", !whole.text.is_empty());
    match provider
        .chat(ChatRequest::new("canned", "What is love?"))
        .await
    {
        Err(error) => println!(
            "an unknown question: {error} (retryable: {})",
            error.is_retryable()
        ),
        Ok(_) => unreachable!("only canned questions have answers"),
    }
    Ok(())
}
