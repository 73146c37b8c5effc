//! A hostile or broken server, on a raw socket: whatever it sends, the client keeps bounded
//! memory and time, answers with a typed error, and keeps the exact partial text. Each server
//! counts the bytes it managed to write, which bounds what the client could have held.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chat_core::{ChatEvent, ChatProvider, ChatRequest, Error, ErrorKind, TimeoutPhase};
use futures_util::StreamExt;
use provider_perplexity::{PerplexityConfig, PerplexityProvider};
use resilience::{ApiKey, BackoffPolicy, Jitter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a connection writes after the request: a status line and headers, then the body.
type Script =
    Arc<dyn Fn(Writer) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The server's side of one connection, counting what it wrote.
struct Writer {
    stream: TcpStream,
    written: Arc<AtomicUsize>,
}

impl Writer {
    /// Writes `bytes`; false once the client is gone.
    async fn write(&mut self, bytes: &[u8]) -> bool {
        let ok = self.stream.write_all(bytes).await.is_ok();
        if ok {
            self.written.fetch_add(bytes.len(), Ordering::Relaxed);
        }
        ok
    }

    async fn head(&mut self, status: &str, headers: &[&str]) -> bool {
        let mut head = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
        for header in headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        self.write(head.as_bytes()).await
    }
}

/// A server on loopback running `script` for every request; returns its URL and the bytes
/// written so far.
async fn hostile(script: Script) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let script = script.clone();
            let written = counter.clone();
            tokio::spawn(async move {
                // Read the request head and its body (the client sends a content-length).
                let mut request = Vec::new();
                let mut buffer = [0_u8; 4096];
                loop {
                    let Ok(read) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|value| value.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                script(Writer { stream, written }).await;
            });
        }
    });
    (url, written)
}

fn script<F, Fut>(body: F) -> Script
where
    F: Fn(Writer) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |writer| Box::pin(body(writer)))
}

const EVENT_LIMIT: usize = 64 << 10;
const ANSWER_LIMIT: usize = 256 << 10;

fn provider(url: &str) -> PerplexityProvider {
    let mut config = PerplexityConfig::default();
    config.base_url = url.to_owned();
    config.keys = vec![ApiKey::new("hostile-test-key")];
    config.backoff = BackoffPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        max_attempts: 2,
        jitter: Jitter::None,
        ..BackoffPolicy::default()
    };
    config.fallback = false;
    config.max_event_bytes = EVENT_LIMIT;
    config.max_answer_bytes = ANSWER_LIMIT;
    config.timeouts.first_event = Duration::from_secs(2);
    config.timeouts.idle = Duration::from_secs(1);
    config.timeouts.total = Duration::from_secs(20);
    // The hostile servers here speak chat completions.
    config.api = Some(provider_perplexity::Api::Sonar);
    PerplexityProvider::new(config).unwrap()
}

/// Streams one answer; returns the text handed out and how it ended.
async fn ask(provider: &PerplexityProvider) -> (String, Result<(), Error>) {
    let deadline = Duration::from_secs(30);
    let mut stream = provider.chat_stream(ChatRequest::new("sonar", "Explain quantum computing"));
    let mut text = String::new();
    let run = async {
        while let Some(item) = stream.next().await {
            match item {
                Ok(ChatEvent::TextDelta(delta)) => text.push_str(&delta),
                Ok(ChatEvent::Done(_)) => return Ok(()),
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
        panic!("the stream ended with neither Done nor an error");
    };
    let outcome = tokio::time::timeout(deadline, run)
        .await
        .expect("no hang past the deadlines");
    (text, outcome)
}

const SSE: &[&str] = &["content-type: text/event-stream"];

fn chunk(content: &str) -> String {
    let chunk = serde_json::json!({"id": "x", "model": "sonar", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": null}]});
    format!("data: {chunk}\n\n")
}

/// Writes `piece` until the client leaves (or `limit` bytes, so a broken client cannot make
/// the test itself run forever).
async fn endless(writer: &mut Writer, piece: &[u8], limit: usize) {
    let mut sent = 0;
    while sent < limit && writer.write(piece).await {
        sent += piece.len();
    }
}

#[tokio::test]
async fn an_endless_line_or_a_gigabyte_event_is_a_typed_error_within_the_event_bound() {
    for multi_line in [false, true] {
        let (url, written) = hostile(script(move |mut writer| async move {
            writer.head("200 OK", SSE).await;
            writer.write(b"data: ").await;
            let piece: &[u8] = if multi_line {
                b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
            } else {
                b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
            };
            endless(&mut writer, piece, 1 << 30).await;
        }))
        .await;
        let (text, outcome) = ask(&provider(&url)).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
        assert!(text.is_empty());
        // The client stopped reading at its bound (plus what sits in socket buffers), not at
        // the gigabyte the server had in mind.
        let sent = written.load(Ordering::Relaxed);
        assert!(sent < 2 * (EVENT_LIMIT + (8 << 20)), "{sent} bytes sent");
    }
}

#[tokio::test]
async fn never_ending_reasoning_is_bounded_by_the_answer_bound() {
    let (url, written) = hostile(script(|mut writer| async move {
        writer.head("200 OK", SSE).await;
        writer.write(chunk("<think>").as_bytes()).await;
        let thought = chunk(&"I am still thinking. ".repeat(50));
        endless(&mut writer, thought.as_bytes(), 1 << 30).await;
    }))
    .await;
    let (text, outcome) = ask(&provider(&url)).await;
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::TooLarge);
    assert!(text.is_empty());
    assert!(written.load(Ordering::Relaxed) < 16 * ANSWER_LIMIT + (8 << 20));
}

#[tokio::test]
async fn an_answer_past_its_bound_is_an_interruption_with_the_exact_partial() {
    let (url, _) = hostile(script(|mut writer| async move {
        writer.head("200 OK", SSE).await;
        let piece = chunk(&"word ".repeat(200));
        endless(&mut writer, piece.as_bytes(), 1 << 30).await;
    }))
    .await;
    let (text, outcome) = ask(&provider(&url)).await;
    let error = outcome.unwrap_err();
    assert!(error.is_interrupted(), "{error}");
    assert_eq!(error.partial_text(), Some(text.as_str()));
    assert!(text.len() <= ANSWER_LIMIT);
    let cause = std::error::Error::source(&error)
        .and_then(|cause| cause.downcast_ref::<Error>())
        .map(Error::kind);
    assert_eq!(cause, Some(ErrorKind::TooLarge));
}

#[tokio::test]
async fn invalid_utf8_deep_json_and_overflowing_numbers() {
    // Invalid UTF-8 in an event after some text: an interruption with the exact partial.
    let (url, _) = hostile(script(|mut writer| async move {
        writer.head("200 OK", SSE).await;
        writer.write(chunk("Olympus Mons").as_bytes()).await;
        writer
            .write(b"data: {\"choices\":[{\"delta\":{\"content\":\"\xff\xfe\"}}]}\n\n")
            .await;
    }))
    .await;
    let (text, outcome) = ask(&provider(&url)).await;
    let error = outcome.unwrap_err();
    assert_eq!(text, "Olympus Mons");
    assert_eq!(error.partial_text(), Some("Olympus Mons"), "{error}");

    // JSON nested 10,000 deep: a protocol error, not a stack overflow.
    let (url, _) = hostile(script(|mut writer| async move {
        writer.head("200 OK", SSE).await;
        let deep = format!(
            "data: {{\"choices\":{}{}}}\n\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        writer.write(deep.as_bytes()).await;
    }))
    .await;
    let (_, outcome) = ask(&provider(&url)).await;
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Protocol);

    // Numbers past every integer type: usage is unreadable, so there is none; the answer
    // stands.
    let (url, _) = hostile(script(|mut writer| async move {
        writer.head("200 OK", SSE).await;
        writer.write(chunk("Olympus Mons").as_bytes()).await;
        let done = r#"data: {"id":"x","object":"chat.completion.done","usage":{"prompt_tokens":1e999,"completion_tokens":184467440737095516150,"total_tokens":-1,"cost":{"total_cost":1e999}},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}"#;
        writer.write(format!("{done}\n\n").as_bytes()).await;
    }))
    .await;
    let (text, outcome) = ask(&provider(&url)).await;
    outcome.unwrap();
    assert_eq!(text, "Olympus Mons");
}

#[tokio::test]
async fn no_content_type_and_a_trickle_are_typed_errors_in_time() {
    let (url, _) = hostile(script(|mut writer| async move {
        writer.head("200 OK", &[]).await;
        writer.write(chunk("Olympus").as_bytes()).await;
    }))
    .await;
    let (_, outcome) = ask(&provider(&url)).await;
    let error = outcome.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotStreaming, "{error}");
    assert_eq!(error.status_code(), None, "no invented status");

    // One byte every 300 ms: no event is ever whole within the idle deadline.
    let (url, _) = hostile(script(|mut writer| async move {
        writer.head("200 OK", SSE).await;
        for byte in chunk("Olympus Mons").bytes() {
            if !writer.write(&[byte]).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }))
    .await;
    let started = std::time::Instant::now();
    let (_, outcome) = ask(&provider(&url)).await;
    let error = outcome.unwrap_err();
    assert_eq!(
        error.timeout_phase(),
        Some(TimeoutPhase::FirstEvent),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn absurd_retry_after_values_are_clamped_and_reported_not_slept_on() {
    for headers in [
        ["retry-after: 18446744073709551615", "x-pad: 1"],
        ["retry-after-ms: 1e300", "x-pad: 1"],
        [
            "retry-after: 99999999999999999999999999",
            "retry-after-ms: -5",
        ],
    ] {
        let (url, _) = hostile(script(move |mut writer| async move {
            let mut all = vec!["content-type: application/json", "content-length: 2"];
            all.extend(headers);
            writer.head("429 Too Many Requests", &all).await;
            writer.write(b"{}").await;
        }))
        .await;
        let started = std::time::Instant::now();
        let (_, outcome) = ask(&provider(&url)).await;
        let error = outcome.unwrap_err();
        assert!(error.is_rate_limited(), "{error}");
        assert!(error.retry_after().unwrap() <= resilience::MAX_RETRY_AFTER);
        assert!(started.elapsed() < Duration::from_secs(5), "not slept on");
    }
}

#[tokio::test]
async fn a_failed_run_or_job_read_by_polling_never_puts_the_key_in_its_error() {
    let cases = [
        (
            "medium",
            r#"{"id":"resp_1","status":"in_progress","output":[]}"#,
            r#"{"id":"resp_1","status":"failed","output":[],"error":{"code":"invalid_request","message":"the key hostile-test-key is not allowed"}}"#,
        ),
        (
            "sonar-deep-research",
            r#"{"id":"job_1","model":"sonar-deep-research","status":"CREATED","created_at":1}"#,
            r#"{"id":"job_1","model":"sonar-deep-research","status":"FAILED","created_at":1,"error_message":"the key hostile-test-key is not allowed"}"#,
        ),
    ];
    for (model, created, failed) in cases {
        let served = Arc::new(AtomicUsize::new(0));
        let (url, _) = hostile(script(move |mut writer| {
            let body = if served.fetch_add(1, Ordering::Relaxed) == 0 {
                created
            } else {
                failed
            };
            async move {
                let length = format!("content-length: {}", body.len());
                writer
                    .head("200 OK", &["content-type: application/json", &length])
                    .await;
                writer.write(body.as_bytes()).await;
            }
        }))
        .await;
        let mut config = provider(&url).config().clone();
        config.poll_first_delay = Duration::from_millis(1);
        // Sonar's async jobs are asked only at Perplexity's service, and on chat completions.
        config.perplexity_endpoint = Some(true);
        config.api = model
            .starts_with("sonar")
            .then_some(provider_perplexity::Api::Sonar);
        let provider = PerplexityProvider::new(config).unwrap();
        let error = provider
            .chat(ChatRequest::new(model, "Explain quantum computing"))
            .await
            .unwrap_err();
        let shown = format!("{error} {error:?} {}", error.report());
        assert!(shown.contains("is not allowed"), "{model}: {shown}");
        assert!(!shown.contains("hostile-test-key"), "{model}: {shown}");
    }
}

#[tokio::test]
async fn a_cached_answer_is_kept_when_its_only_caller_leaves_at_done_before_the_body_ends() {
    use cache::{CacheConfig, CachedProvider};
    // The answer's end arrives, then the rest of the body (`[DONE]`) only seconds later: a
    // caller that stops at `Done` and drops its stream (as pplx-mcp's tools do) has left
    // long before the upstream stream ends.
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let (url, _) = hostile(script(move |mut writer| {
        count.fetch_add(1, Ordering::Relaxed);
        async move {
            writer.head("200 OK", SSE).await;
            writer.write(chunk("Olympus Mons").as_bytes()).await;
            let done = r#"data: {"id":"x","object":"chat.completion.done","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}]}"#;
            writer.write(format!("{done}\n\n").as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            writer.write(b"data: [DONE]\n\n").await;
        }
    }))
    .await;
    let cached = CachedProvider::new(provider(&url), CacheConfig::default()).unwrap();
    let request = ChatRequest::new("sonar", "What is the tallest volcano?");
    let mut stream = cached.chat_stream(request.clone());
    while let Some(event) = stream.next().await {
        if matches!(event.unwrap(), ChatEvent::Done(_)) {
            break;
        }
    }
    drop(stream);
    let again = cached.chat(request).await.unwrap();
    assert!(again.cached, "the complete answer was not kept");
    assert_eq!(again.text, "Olympus Mons");
    assert_eq!(served.load(Ordering::Relaxed), 1);
}
