//! sse-parse in steady state makes no heap allocation per event: counted with the benches'
//! global allocator (here so that the workspace has one counting allocator).
#![allow(clippy::unwrap_used)]

use benches::CountingAllocator;
use sse_parse::{EventParser, Item};

// The benches' counting allocator (per thread, so tests running in parallel do not count
// each other's allocations).
#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    CountingAllocator::count()
}

fn stream(events: usize, line_end: &str) -> Vec<u8> {
    let mut body = String::new();
    for index in 0..events {
        body.push_str(&format!(
            "data: {{\"id\":\"x\",\"choices\":[{{\"delta\":{{\"content\":\"token {index}\"}}}}]}}{line_end}{line_end}"
        ));
        if index % 10 == 0 {
            body.push_str(": keep-alive");
            body.push_str(line_end);
        }
    }
    body.into_bytes()
}

fn count_allocations(input: &[u8], chunk_size: usize) -> (u64, usize) {
    let mut parser = EventParser::new();
    let mut events = 0;
    let mut data_bytes = 0;
    // Warm up: the buffers for events split across chunks grow once.
    for chunk in input.chunks(chunk_size) {
        parser.feed(chunk, |_| {}).unwrap();
    }
    parser.finish();
    let before = allocations();
    for chunk in input.chunks(chunk_size) {
        parser
            .feed(chunk, |item| {
                if let Item::Event(event) = item {
                    events += 1;
                    data_bytes += event.data().len();
                }
            })
            .unwrap();
    }
    parser.finish();
    let allocations = allocations() - before;
    assert!(data_bytes > 0);
    (allocations, events)
}

#[test]
fn no_allocation_per_event_in_steady_state() {
    for line_end in ["\n", "\r\n", "\r"] {
        let input = stream(5_000, line_end);
        // Within one chunk: no copy and no allocation at all.
        let (allocations, events) = count_allocations(&input, input.len());
        assert_eq!(events, 5_000);
        assert_eq!(allocations, 0, "{line_end:?}, whole input");
        // Chunks of 1,400 bytes cut events in two: those are copied into reused buffers.
        let (allocations, events) = count_allocations(&input, 1_400);
        assert_eq!(events, 5_000);
        assert_eq!(allocations, 0, "{line_end:?}, 1400-byte chunks");
    }
}

#[test]
fn bytes_feeding_makes_no_allocation_per_event() {
    let input = bytes::Bytes::from(stream(2_000, "\n"));
    let chunks: Vec<bytes::Bytes> = (0..input.len())
        .step_by(1_400)
        .map(|start| input.slice(start..(start + 1_400).min(input.len())))
        .collect();
    let mut parser = EventParser::new();
    for chunk in &chunks {
        parser.feed_bytes(chunk, |_| {}).unwrap();
    }
    // Events consumed as they come: the copies of split events reuse one block.
    let before = allocations();
    let mut events = 0;
    for chunk in &chunks {
        parser
            .feed_bytes(chunk, |item| {
                if let Item::Event(event) = item {
                    assert!(!event.data().is_empty());
                    events += 1;
                }
            })
            .unwrap();
    }
    assert_eq!(events, 2_000);
    assert_eq!(allocations() - before, 0);

    // Events kept: fields within a chunk are slices of it; copies share 64 KiB blocks.
    let mut kept = Vec::with_capacity(4_000);
    let before = allocations();
    for chunk in &chunks {
        parser
            .feed_bytes(chunk, |item| {
                if let Item::Event(event) = item {
                    kept.push(event.into_data());
                }
            })
            .unwrap();
    }
    let allocations = allocations() - before;
    assert_eq!(kept.len(), 2_000);
    let split_events = chunks.len() - 1;
    assert!(
        allocations * 10 <= split_events as u64,
        "{allocations} allocations for {split_events} split events"
    );
}
