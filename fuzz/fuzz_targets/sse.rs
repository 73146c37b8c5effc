//! Any input, cut anywhere, with small limits: the parser never panics, the items do not depend
//! on the cuts, and the `Bytes` path agrees with the borrowed one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_parse::{EventParser, Item, Limits};

type Owned = (Vec<u8>, Vec<u8>, Vec<u8>, Option<u64>);

fn own<B: AsRef<[u8]>>(item: Item<B>) -> Owned {
    match item {
        Item::Event(event) => (
            event.event_type().to_vec(),
            event.data().to_vec(),
            event.id().to_vec(),
            None,
        ),
        Item::Retry(millis) => (Vec::new(), Vec::new(), Vec::new(), Some(millis)),
        _ => unreachable!(),
    }
}

fn parse(chunks: &[&[u8]], limits: Limits) -> (Vec<Owned>, bool) {
    let mut parser = EventParser::with_limits(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        if parser.feed(chunk, |item| out.push(own(item))).is_err() {
            return (out, true);
        }
    }
    parser.finish();
    (out, false)
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, input)) = input.split_first() else { return };
    let chunk_size = usize::from(cut % 64) + 1;
    let limits = Limits::new(usize::from(cut) + 16, usize::from(cut) * 2 + 16);
    let chunks: Vec<&[u8]> = input.chunks(chunk_size).collect();
    let whole = parse(&[input], limits);
    let split = parse(&chunks, limits);
    if !whole.1 && !split.1 {
        assert_eq!(whole, split);
    }
    let mut parser = EventParser::with_limits(limits);
    let mut out = Vec::new();
    let mut failed = false;
    for chunk in &chunks {
        let chunk = bytes::Bytes::copy_from_slice(chunk);
        if parser.feed_bytes(&chunk, |item| out.push(own(item))).is_err() {
            failed = true;
            break;
        }
    }
    if !failed && !split.1 {
        assert_eq!(out, split.0);
    }
});
