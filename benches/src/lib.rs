//! Shared inputs for the criterion benches in `benches/benches/`: deterministic synthetic
//! streams shaped like Perplexity's, and an allocation counter for the bench binaries.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;

/// The deterministic random source for bench inputs (so every run measures the same bytes).
pub use resilience::backoff::SmallRng as Rng;

const WORDS: &[&str] = &[
    "Olympus",
    "Mons",
    "is",
    "the",
    "tallest",
    "volcano",
    "in",
    "the",
    "solar",
    "system",
    "quantum",
    "computers",
    "use",
    "qubits",
    "that",
    "can",
    "be",
    "in",
    "superposition",
    "and",
    "entanglement",
    "lets",
    "them",
    "solve",
    "certain",
    "problems",
    "faster",
    "[1]",
    "[2][3]",
];

fn words(rng: &mut Rng, bytes: usize) -> String {
    let mut text = String::new();
    while text.len() < bytes {
        text.push_str(WORDS[rng.below(WORDS.len())]);
        text.push(' ');
    }
    text
}

fn sources(rng: &mut Rng) -> String {
    let count = 3 + rng.below(5);
    let citations: Vec<String> = (0..count)
        .map(|index| format!("\"https://example{index}.org/{}\"", rng.below(1_000_000)))
        .collect();
    let results: Vec<String> = (0..count)
        .map(|index| {
            format!(
                "{{\"title\":\"Result {index}\",\"url\":\"https://example{index}.org/page\",\"date\":\"2025-11-02\",\"last_updated\":\"2026-03-14\",\"snippet\":\"{}\",\"source\":\"web\"}}",
                words(rng, 300)
            )
        })
        .collect();
    format!(
        "\"citations\":[{}],\"search_results\":[{}],",
        citations.join(","),
        results.join(",")
    )
}

/// About `target_bytes` of a Perplexity-like chat-completion stream: `data:` lines of JSON
/// from 300 to 1,500 bytes, one in ten carrying citations and search results of a few KB, and
/// a `: keep-alive` comment now and then. `line_end` is `"\n"` or `"\r\n"`.
/// Returns the stream and its number of events.
pub fn perplexity_stream(target_bytes: usize, line_end: &str) -> (Vec<u8>, usize) {
    let mut rng = Rng::seeded(0x5EED);
    let mut body = String::with_capacity(target_bytes + 8192);
    let mut events = 0;
    let mut message = String::new();
    while body.len() < target_bytes {
        let delta_len = 20 + rng.below(100);
        let delta = words(&mut rng, delta_len);
        message.push_str(&delta);
        if message.len() > 1_000 {
            message = delta.clone();
        }
        let sources = if events % 10 == 0 {
            sources(&mut rng)
        } else {
            String::new()
        };
        body.push_str(&format!(
            "data: {{\"id\":\"3f0c9a4e-{events:08}\",\"model\":\"sonar\",\"created\":1764374400,\"object\":\"chat.completion.chunk\",{sources}\"usage\":{{\"prompt_tokens\":11,\"completion_tokens\":{events},\"total_tokens\":{},\"search_context_size\":\"low\"}},\"choices\":[{{\"index\":0,\"finish_reason\":null,\"delta\":{{\"role\":\"assistant\",\"content\":\"{delta}\"}},\"message\":{{\"role\":\"assistant\",\"content\":\"{message}\"}}}}]}}{line_end}{line_end}",
            events + 11
        ));
        events += 1;
        if rng.below(50) == 0 {
            body.push_str(": keep-alive");
            body.push_str(line_end);
        }
    }
    (body.into_bytes(), events)
}

/// One event whose single `data:` line is `bytes` long.
pub fn long_line(bytes: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(bytes + 16);
    body.extend_from_slice(b"data: ");
    body.resize(bytes + 6, b'x');
    body.extend_from_slice(b"\n\n");
    body
}

/// `input` cut into `Bytes` chunks of `size`, as a network read would deliver them.
pub fn chunked(input: &[u8], size: usize) -> Vec<Bytes> {
    let shared = Bytes::copy_from_slice(input);
    (0..input.len())
        .step_by(size)
        .map(|start| shared.slice(start..(start + size).min(input.len())))
        .collect()
}

/// A global allocator that counts allocations made by the current thread.
#[derive(Debug)]
pub struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

impl CountingAllocator {
    /// Allocations (and reallocations) made by this thread so far.
    pub fn count() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to the system allocator; this only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

/// Resident memory of this process in bytes, from /proc (Linux; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// The peak resident memory of this process in bytes, from /proc (Linux; 0 elsewhere).
pub fn peak_resident_bytes() -> u64 {
    status_bytes("VmHWM:")
}

/// A `kB` field of /proc/self/status, in bytes; 0 where there is none.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// async-openai 0.43, the Rust comparator, set up the same way in the provider bench and the
/// end-to-end client.
pub mod openai {
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequest,
        CreateChatCompletionRequestArgs, CreateChatCompletionStreamResponse,
    };

    /// The client with its default HTTP client.
    pub type Client = async_openai::Client<async_openai::config::OpenAIConfig>;

    /// A client of the server at `base_url`.
    pub fn client(base_url: &str, key: &str) -> Client {
        let config = async_openai::config::OpenAIConfig::new()
            .with_api_base(base_url)
            .with_api_key(key);
        async_openai::Client::with_config(config)
    }

    /// A `sonar` request with one user message, streamed or not.
    pub fn request(question: &str, stream: bool) -> CreateChatCompletionRequest {
        CreateChatCompletionRequestArgs::default()
            .model("sonar")
            .messages([ChatCompletionRequestUserMessageArgs::default()
                .content(question)
                .build()
                .unwrap()
                .into()])
            .stream(stream)
            .build()
            .unwrap()
    }

    /// The text a stream chunk adds, if any (the first choice's non-empty delta).
    pub fn delta(chunk: &CreateChatCompletionStreamResponse) -> Option<&str> {
        chunk
            .choices
            .first()
            .and_then(|choice| choice.delta.content.as_deref())
            .filter(|text| !text.is_empty())
    }
}

/// Whether `BENCH_QUICK` asks for the short version (`cargo xtask bench --quick`).
pub fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

/// Criterion with (warm-up, measurement) milliseconds for the quick and the full run.
pub fn criterion_config(quick_ms: (u64, u64), full_ms: (u64, u64)) -> Criterion {
    let (warm_up, measure) = if quick() { quick_ms } else { full_ms };
    Criterion::default()
        .warm_up_time(Duration::from_millis(warm_up))
        .measurement_time(Duration::from_millis(measure))
        .configure_from_args()
}

/// Writes figures criterion does not measure (event counts, allocations, CPU) beside its
/// estimates, as `target/criterion/<group>/meta.json`, for `cargo xtask bench` to report.
pub fn write_meta(group: &str, meta: &serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/criterion")
        .join(group);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
}
