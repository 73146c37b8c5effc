//! Any bytes as a stream's events and as a whole response, for both APIs: the decoders never
//! panic, and a small answer bound holds whatever the events say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provider_perplexity::{Api, fuzzing};

fuzz_target!(|input: &[u8]| {
    // Events are separated by 0x00; an event's first byte picks its type.
    let text = String::from_utf8_lossy(input);
    let events: Vec<(&[u8], &str)> = text
        .split('\0')
        .map(|event| {
            let kind: &[u8] = match event.bytes().next() {
                Some(b'!') => b"error",
                Some(b'#') => b"response.failed",
                _ => b"",
            };
            (kind, event)
        })
        .collect();
    for api in [Api::Sonar, Api::Agent] {
        fuzzing::decode(api, &events, input);
    }
});
