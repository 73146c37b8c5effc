//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): everything a server's
//! bytes reach without a socket. Not a public API.

use std::collections::VecDeque;

use crate::Api;

/// Feeds `events` (event type, data) to a decoder of `api` with a small answer bound,
/// as a stream does, until the end or the first error; then decodes `body` as a whole
/// response.
pub fn decode(api: Api, events: &[(&[u8], &str)], body: &[u8]) {
    let mut decoder = crate::decode::Decoder::bounded(api.protocol().decoder(), 64 << 10);
    let mut out = VecDeque::new();
    for (event_type, data) in events {
        if decoder.feed(event_type, data, &mut out).is_err() {
            break;
        }
        out.clear();
    }
    let _ = decoder.usage();
    let _ = crate::api::full_response(api, body);
}

/// The parsers of an error response: hints, message, parameter.
pub fn error_response(status: u16, headers: [&str; 2], content_type: &str, body: &[u8]) {
    let _ = resilience::parse_retry_after(
        Some(headers[0]),
        Some(headers[1]),
        std::time::SystemTime::now(),
    );
    let _ = crate::wire::error_message(status, content_type, body);
    let _ = crate::wire::error_param(body);
}
