//! `sse-parse` against the data-driven cases in `tests/data/sse-cases.json`, whole, at every
//! single split, byte by byte, and through the `Stream` adapter.

use bytes::Bytes;
use serde_json::{Value, json};
use sse_parse::{EventParser, Item};

fn cases() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sse-cases.json");
    let text = std::fs::read_to_string(path).expect("the cases file is in the repository");
    serde_json::from_str(&text).expect("the cases file is JSON")
}

fn to_json<B: AsRef<[u8]>>(item: Item<B>) -> Value {
    match item {
        Item::Event(event) => json!({
            "type": String::from_utf8_lossy(event.event_type()),
            "data": event.data_lossy(),
            "id": String::from_utf8_lossy(event.id()),
        }),
        Item::Retry(millis) => json!({ "retry": millis }),
        _ => unreachable!("no other items exist"),
    }
}

fn parse(chunks: &[&[u8]]) -> Vec<Value> {
    let mut parser = EventParser::new();
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |item| out.push(to_json(item))).unwrap();
    }
    parser.finish();
    out
}

#[test]
fn every_case_whole_and_at_every_split() {
    let cases = cases();
    assert!(cases.len() >= 25);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let input = case["input"].as_str().unwrap().as_bytes();
        let expected = case["items"].as_array().unwrap();
        assert_eq!(&parse(&[input]), expected, "case {name:?}");
        for split in 0..=input.len() {
            let (head, tail) = input.split_at(split);
            assert_eq!(
                &parse(&[head, tail]),
                expected,
                "case {name:?} split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(&parse(&bytes), expected, "case {name:?} byte by byte");
    }
}

#[test]
fn every_case_through_the_stream_adapter() {
    use futures_util::StreamExt;
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let input = Bytes::from(case["input"].as_str().unwrap().to_owned());
        let body = futures_util::stream::iter(
            (0..input.len())
                .step_by(3)
                .map(|start| {
                    Ok::<_, std::io::Error>(input.slice(start..(start + 3).min(input.len())))
                })
                .collect::<Vec<_>>(),
        );
        let mut stream = sse_parse::EventStream::new(body);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        // The body is always ready, so the stream never returns Pending.
        while let std::task::Poll::Ready(Some(item)) = stream.poll_next_unpin(&mut context) {
            out.push(to_json(item.unwrap()));
        }
        assert_eq!(&out, case["items"].as_array().unwrap(), "case {name:?}");
    }
}
