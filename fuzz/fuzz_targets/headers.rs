//! Any error response: the hint, message and parameter parsers never panic, and hints stay
//! within their clamp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provider_perplexity::fuzzing;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let mut parts = text.splitn(4, '\n');
    let millis = parts.next().unwrap_or_default();
    let seconds = parts.next().unwrap_or_default();
    let content_type = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let status = 400 + (input.first().copied().unwrap_or_default() as u16 % 200);
    fuzzing::error_response(status, [millis, seconds], content_type, body.as_bytes());
    let hint = resilience::parse_retry_after(Some(millis), Some(seconds), std::time::SystemTime::now());
    assert!(hint.is_none_or(|hint| hint <= resilience::MAX_RETRY_AFTER));
});
