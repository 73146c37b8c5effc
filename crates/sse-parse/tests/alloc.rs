//! Steady state makes no heap allocation per event: counted with a global allocator.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sse_parse::{EventParser, Item};

struct Counting;

thread_local! {
    // Per thread, so that tests running in parallel do not count each other's allocations.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[allow(unsafe_code)]
// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(pointer, layout) }
    }
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

fn count_allocations(input: &[u8], chunk_size: usize) -> (usize, usize) {
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
        allocations * 10 <= split_events,
        "{allocations} allocations for {split_events} split events"
    );
}
