//! SSE parsing throughput: `sse-parse` against `eventsource-stream` 0.2, `sse-stream` 0.3 and
//! a bare memchr scan for line ends (the floor), in the same criterion groups, so that every
//! figure is a ratio from one run. `BENCH_QUICK=1` shrinks the inputs (`cargo xtask bench parse
//! --quick`). Allocations per event are counted once per parser and written beside criterion's
//! estimates for `cargo xtask bench` to report.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::task::{Context, Poll, Waker};

use benches::{CountingAllocator, chunked, long_line, perplexity_stream};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{Stream, StreamExt, stream};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

type Body = stream::Iter<std::vec::IntoIter<Result<Bytes, std::io::Error>>>;

fn body(chunks: &[Bytes]) -> Body {
    stream::iter(chunks.iter().cloned().map(Ok).collect::<Vec<_>>())
}

/// Drains an always-ready stream, returning (items, data bytes seen).
fn drain<S, T>(mut stream: S, data_len: impl Fn(&T) -> usize) -> (usize, usize)
where
    S: Stream<Item = T> + Unpin,
{
    let mut context = Context::from_waker(Waker::noop());
    let (mut events, mut bytes) = (0, 0);
    while let Poll::Ready(Some(item)) = stream.poll_next_unpin(&mut context) {
        events += 1;
        bytes += data_len(&item);
    }
    (events, bytes)
}

fn sse_parse_stream(chunks: &[Bytes]) -> (usize, usize) {
    drain(
        sse_parse::EventStream::new(body(chunks)),
        |item| match item {
            Ok(sse_parse::Item::Event(event)) => black_box(event.data()).len(),
            _ => 0,
        },
    )
}

fn sse_parse_feed(chunks: &[Bytes]) -> (usize, usize) {
    let mut parser = sse_parse::EventParser::new();
    let (mut events, mut bytes) = (0, 0);
    for chunk in chunks {
        parser
            .feed(chunk, |item| {
                if let sse_parse::Item::Event(event) = item {
                    events += 1;
                    bytes += black_box(event.data()).len();
                }
            })
            .unwrap();
    }
    parser.finish();
    (events, bytes)
}

fn eventsource_stream(chunks: &[Bytes]) -> (usize, usize) {
    use eventsource_stream::Eventsource;
    drain(body(chunks).eventsource(), |item| match item {
        Ok(event) => black_box(&event.data).len(),
        Err(_) => 0,
    })
}

fn sse_stream(chunks: &[Bytes]) -> (usize, usize) {
    drain(
        sse_stream::SseByteStream::new(body(chunks)),
        |item| match item {
            Ok(sse) => black_box(&sse.data).as_ref().map_or(0, String::len),
            Err(_) => 0,
        },
    )
}

fn memchr_floor(chunks: &[Bytes]) -> (usize, usize) {
    let mut line_ends = 0;
    for chunk in chunks {
        line_ends += memchr::memchr_iter(b'\n', black_box(chunk)).count();
    }
    (line_ends, 0)
}

type Parser = (&'static str, fn(&[Bytes]) -> (usize, usize));

const PARSERS: &[Parser] = &[
    ("sse-parse", sse_parse_stream),
    ("sse-parse-feed", sse_parse_feed),
    ("sse-stream", sse_stream),
    ("eventsource-stream", eventsource_stream),
    ("memchr-floor", memchr_floor),
];

/// Counts allocations per event of one pass, and checks that every parser saw every event.
fn allocations_per_event(
    name: &str,
    parse: fn(&[Bytes]) -> (usize, usize),
    chunks: &[Bytes],
    events: usize,
) -> f64 {
    let before = CountingAllocator::count();
    let (seen, _) = parse(chunks);
    let allocations = CountingAllocator::count() - before;
    if name != "memchr-floor" {
        assert_eq!(seen, events, "{name} lost or invented events");
    }
    allocations as f64 / events as f64
}

fn bench_stream(criterion: &mut Criterion) {
    let size = if benches::quick() { 8 << 20 } else { 64 << 20 };
    for (line_end_name, line_end) in [("lf", "\n"), ("crlf", "\r\n")] {
        let (input, events) = perplexity_stream(size, line_end);
        for chunk_size in [1_400, 16 << 10] {
            let chunks = chunked(&input, chunk_size);
            let group_name = format!("sse_{line_end_name}_{chunk_size}");
            let mut allocations = serde_json::Map::new();
            for (name, parse) in PARSERS {
                let per_event = allocations_per_event(name, *parse, &chunks, events);
                allocations.insert((*name).to_owned(), per_event.into());
            }
            let meta = serde_json::json!({
                "bytes": input.len(),
                "events": events,
                "allocations_per_event": allocations,
            });
            benches::write_meta(&group_name, &meta);
            let mut group = criterion.benchmark_group(&group_name);
            group.throughput(Throughput::Bytes(input.len() as u64));
            group.sample_size(10);
            for (name, parse) in PARSERS {
                group.bench_function(*name, |bencher| bencher.iter(|| parse(&chunks)));
            }
            group.finish();
        }
    }
}

fn bench_long_line(criterion: &mut Criterion) {
    let size = 4 << 20;
    let input = long_line(size);
    let chunks = chunked(&input, 1_400);
    let mut group = criterion.benchmark_group("sse_long_line_4MiB");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(10);
    for (name, parse) in PARSERS {
        // eventsource-stream rescans the whole pending line on every chunk (quadratic): a
        // pass takes seconds, so the quick run leaves it out.
        if *name == "eventsource-stream" && benches::quick() {
            continue;
        }
        let (events, _) = parse(&chunks);
        assert!(
            events == 1 || *name == "memchr-floor",
            "{name}: {events} events"
        );
        group.bench_function(*name, |bencher| bencher.iter(|| parse(&chunks)));
    }
    group.finish();
}

fn config() -> Criterion {
    benches::criterion_config((300, 1000), (1000, 4000))
}

criterion_group! { name = parse; config = config(); targets = bench_stream, bench_long_line }
criterion_main!(parse);
