//! The parser checked against a small, obviously-correct reference parser, and against itself
//! at every way of splitting the input into chunks.
#![allow(clippy::unwrap_used)]

#[cfg(feature = "bytes")]
use bytes::Bytes;
use proptest::prelude::*;
use sse_parse::{EventParser, Item, Limits};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Event {
        event_type: Vec<u8>,
        data: Vec<u8>,
        id: Vec<u8>,
    },
    Retry(u64),
}

fn own<B: AsRef<[u8]>>(item: Item<B>) -> Out {
    match item {
        Item::Event(event) => Out::Event {
            event_type: event.event_type().to_vec(),
            data: event.data().to_vec(),
            id: event.id().to_vec(),
        },
        Item::Retry(millis) => Out::Retry(millis),
        _ => unreachable!("no other items exist"),
    }
}

/// The spec's algorithm written as literally as possible: split the whole input into lines,
/// then interpret each line with the spec's buffers.
fn reference(input: &[u8]) -> Vec<Out> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut lines = Vec::new();
    let mut current = Vec::new();
    let mut index = 0;
    while index < input.len() {
        match input[index] {
            b'\r' => {
                lines.push(std::mem::take(&mut current));
                if input.get(index + 1) == Some(&b'\n') {
                    index += 1;
                }
            }
            b'\n' => lines.push(std::mem::take(&mut current)),
            byte => current.push(byte),
        }
        index += 1;
    }
    // `current` is an unfinished line: discarded at end of input.
    let (mut data, mut event_type, mut id) = (Vec::new(), Vec::new(), Vec::new());
    let mut out = Vec::new();
    for line in lines {
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                out.push(Out::Event {
                    event_type: if event_type.is_empty() {
                        b"message".to_vec()
                    } else {
                        event_type.clone()
                    },
                    data: data.clone(),
                    id: id.clone(),
                });
            }
            data.clear();
            event_type.clear();
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value): (&[u8], &[u8]) = match line.iter().position(|&byte| byte == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line, b""),
        };
        match field {
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            b"event" => event_type = value.to_vec(),
            b"id" if !value.contains(&0) => id = value.to_vec(),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let mut millis: u64 = 0;
                for digit in value {
                    millis = millis
                        .saturating_mul(10)
                        .saturating_add(u64::from(digit - b'0'));
                }
                out.push(Out::Retry(millis));
            }
            _ => {}
        }
    }
    out
}

fn parse_chunks(chunks: &[&[u8]]) -> Vec<Out> {
    let mut parser = EventParser::with_limits(Limits::new(usize::MAX, usize::MAX));
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |item| out.push(own(item))).unwrap();
    }
    parser.finish();
    out
}

#[cfg(feature = "bytes")]
/// Keeps every `Bytes` item until the end, so that a buffer reused while the caller still holds
/// data split off it would show as changed data.
fn parse_bytes_chunks(chunks: &[&[u8]]) -> Vec<Out> {
    let mut parser = EventParser::new();
    let mut kept = Vec::new();
    for chunk in chunks {
        let chunk = Bytes::copy_from_slice(chunk);
        parser.feed_bytes(&chunk, |item| kept.push(item)).unwrap();
    }
    parser.finish();
    kept.into_iter().map(own).collect()
}

fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = points
        .iter()
        .map(|point| point % (input.len() + 1))
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points {
        chunks.push(&input[start..point]);
        start = point;
    }
    chunks.push(&input[start..]);
    chunks
}

/// Inputs built from the pieces that matter to the grammar, so that random inputs hit the edge
/// cases (split CRLF, BOM, NUL in ids, odd retries) often.
fn stream_input() -> impl Strategy<Value = Vec<u8>> {
    let pieces: &[&[u8]] = &[
        b"data",
        b"data:",
        b"data: ",
        b"event:",
        b"event: ",
        b"id:",
        b"id: ",
        b"retry:",
        b"retry: ",
        b"dat",
        b":",
        b" ",
        b"\r",
        b"\n",
        b"\r\n",
        b"\n\n",
        b"\r\r",
        b"x",
        b"hello",
        b"\0",
        b"7",
        b"42",
        b"+5",
        b"99999999999999999999999",
        b"\xEF\xBB\xBF",
        b"\xEF\xBB",
        b"\xC3\xA9",
        b"\xE2\x80\xA8",
        b"\xC2\x85",
        b"\x0B",
        b"\x0C",
        b"\xFF",
        b"{\"a\":1}",
    ];
    prop::collection::vec(prop::sample::select(pieces), 0..60).prop_map(|chosen| chosen.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn agrees_with_the_reference(input in stream_input()) {
        prop_assert_eq!(parse_chunks(&[&input]), reference(&input));
    }

    #[test]
    fn any_split_gives_the_same_items(
        input in stream_input(),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = parse_chunks(&[&input]);
        let chunks = split_at_points(&input, &points);
        prop_assert_eq!(&parse_chunks(&chunks), &whole);
        #[cfg(feature = "bytes")]
        prop_assert_eq!(&parse_bytes_chunks(&chunks), &whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_agree(
        input in prop::collection::vec(any::<u8>(), 0..300),
        points in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let chunks = split_at_points(&input, &points);
        prop_assert_eq!(parse_chunks(&chunks), reference(&input));
    }
}

#[test]
fn every_single_split_of_a_tricky_stream_agrees() {
    let input: &[u8] = b"\xEF\xBB\xBFdata: a\r\n\r\nid: 1\rid\r\nevent: e\r\ndata\r\rdata: b\ndata: c\n\n: c\nretry: 12\r\n";
    let expected = reference(input);
    assert_eq!(
        expected.len(),
        4,
        "the case must exercise dispatch: {expected:?}"
    );
    for first in 0..=input.len() {
        for second in first..=input.len() {
            let chunks = [&input[..first], &input[first..second], &input[second..]];
            assert_eq!(
                parse_chunks(&chunks),
                expected,
                "split at {first} and {second}"
            );
            #[cfg(feature = "bytes")]
            assert_eq!(
                parse_bytes_chunks(&chunks),
                expected,
                "Bytes, split at {first} and {second}"
            );
        }
    }
}

/// Events from a few bytes to several buffer blocks long, most of them straddling chunks, all
/// kept by the caller while the parser goes on: the buffers they were split off keep serving
/// later events without disturbing them.
#[cfg(feature = "bytes")]
#[test]
fn kept_bytes_events_survive_buffer_reuse() {
    let mut input = Vec::new();
    for index in 0..400_usize {
        let size = [1, 300, 1_500, 20_000, 70_000][index % 5] + index;
        let fill = char::from(b'a' + (index % 26) as u8)
            .to_string()
            .repeat(size);
        input.extend_from_slice(format!("event: e{index}\nid: {index}\ndata: {fill}\n").as_bytes());
        if index % 3 == 0 {
            input.extend_from_slice(format!("data: second {index}\n").as_bytes());
        }
        input.extend_from_slice(b"\n");
    }
    let expected = reference(&input);
    assert_eq!(expected.len(), 400);
    for chunk_size in [7, 1_400, 16 << 10] {
        let chunks: Vec<&[u8]> = input.chunks(chunk_size).collect();
        assert_eq!(
            parse_bytes_chunks(&chunks),
            expected,
            "chunks of {chunk_size}"
        );
    }
}
