//! Entry points for the benches (feature `bench-internals`). Not a public API.

use std::collections::VecDeque;

use chat_core::ChatEvent;

/// Decodes the data of a Sonar stream's events as a stream does (with `scan`, through
/// the targeted scanner first, as the client does; without, serde only); the text's
/// length.
///
/// # Panics
/// On a chunk the decoder refuses (the bench's input is the simulator's).
pub fn decode_sonar(events: &[&[u8]], scan: bool) -> usize {
    let mut decoder =
        crate::decode::Decoder::bounded(crate::Api::Sonar.protocol().decoder(), usize::MAX);
    decoder.set_scan(scan);
    let mut out = VecDeque::new();
    let mut text = 0;
    for data in events {
        if let Err(error) = decoder.feed_bytes(b"", data, &mut out) {
            panic!("the decoder refused a chunk: {error}");
        }
        for event in out.drain(..) {
            if let ChatEvent::TextDelta(delta) = event {
                text += delta.len();
            }
        }
    }
    text
}
