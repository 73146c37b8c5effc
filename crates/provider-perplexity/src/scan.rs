//! A targeted scanner for Sonar chunks: walks each chunk once, keeping what the decoder
//! needs (the first choice's delta and finish reason, whether `id`, `model` or `object` are
//! there, and the raw sources and usage, to compare or keep) and skipping the rest, above
//! all the text so far that every chunk repeats in `message`, with a SIMD search for the
//! closing quote instead of a byte-by-byte JSON scan. `benches/benches/decode.rs` compares
//! it with serde (2.1x faster per chunk on a long answer).
//!
//! The Agent API's events get the same treatment where it pays: [`agent_head`] reads an
//! event's `type`, `sequence_number` and text `delta` (the bulk of a stream is
//! `response.output_text.delta` events) without building the whole event.
//!
//! It is a fast path, not a parser: anything it does not expect (not an object, a cut
//! chunk, a stray byte between members) is `None`, and the decoder then uses serde_json,
//! which reports the error as before. What it skips it does not validate; what it keeps is
//! checked (UTF-8 of the delta, JSON of the sources and usage when they are decoded).
use std::borrow::Cow;

use chat_core::Error;

pub(crate) enum Delta<'a> {
    /// The content, when it has no escapes.
    Plain(&'a [u8]),
    /// The content as a JSON string literal, quotes included, to be unescaped.
    Escaped(&'a [u8]),
}

impl<'a> Delta<'a> {
    /// The text, or why it is refused (`what` names the frame: "chunk", "event"). `None`
    /// for a raw control character, which is not JSON: serde then reads the frame and says
    /// so as it always has.
    pub(crate) fn text(self, what: &str) -> Option<Result<Cow<'a, str>, Error>> {
        Some(match self {
            Delta::Plain(raw) if raw.iter().any(|byte| *byte < 0x20) => return None,
            Delta::Plain(raw) => std::str::from_utf8(raw).map(Cow::Borrowed).map_err(|_| {
                Error::protocol(format!("bad {what} in the stream: text is not UTF-8"))
            }),
            Delta::Escaped(raw) => serde_json::from_slice::<Cow<'_, str>>(raw)
                .map_err(|error| Error::protocol(format!("bad {what} in the stream: {error}"))),
        })
    }
}

/// What a chunk holds for the client.
#[derive(Default)]
pub(crate) struct Chunk<'a> {
    pub(crate) delta: Option<Delta<'a>>,
    /// Whether `id` or `model` are there (the decoder reads those with serde, once).
    pub(crate) has_identity: bool,
    /// `object`, as written (quotes included).
    pub(crate) object: Option<&'a [u8]>,
    pub(crate) finish_reason: Option<&'a [u8]>,
    pub(crate) citations: Option<&'a [u8]>,
    pub(crate) search_results: Option<&'a [u8]>,
    pub(crate) usage: Option<&'a [u8]>,
}

/// serde_json's recursion limit: a chunk nested deeper is left to serde, which refuses it.
const MAX_DEPTH: usize = 128;

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && matches!(bytes[at], b' ' | b'\n' | b'\r' | b'\t') {
        at += 1;
    }
    at
}

/// From an opening quote to just past the closing one; whether it had escapes.
fn string_end(bytes: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut at = start + 1;
    let mut escaped = false;
    loop {
        let found = at + memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        if bytes[found] == b'"' {
            return Some((found + 1, escaped));
        }
        escaped = true;
        at = found + 2;
    }
}

/// Past one value (string, object, array, number, literal).
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match *bytes.get(start)? {
        b'"' => Some(string_end(bytes, start)?.0),
        b'{' | b'[' => {
            let mut depth = 0_usize;
            let mut at = start;
            loop {
                match *bytes.get(at)? {
                    b'"' => {
                        at = string_end(bytes, at)?.0;
                        continue;
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        // Deeper than serde_json goes: let serde say so.
                        if depth > MAX_DEPTH {
                            return None;
                        }
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => {
            let mut at = start;
            while at < bytes.len() && !matches!(bytes[at], b',' | b'}' | b']') {
                at += 1;
            }
            Some(at)
        }
    }
}

/// Calls `field(key, value_start)` for each member of the object at `start` (the
/// callback returns where the value ends); returns the position past the object.
fn members(
    bytes: &[u8],
    start: usize,
    mut field: impl FnMut(&[u8], usize) -> Option<usize>,
) -> Option<usize> {
    if bytes.get(start) != Some(&b'{') {
        return None;
    }
    let mut at = skip_whitespace(bytes, start + 1);
    loop {
        match *bytes.get(at)? {
            b'}' => return Some(at + 1),
            b',' => at = skip_whitespace(bytes, at + 1),
            b'"' => {
                // A key written with escapes is read by serde, which undoes them.
                let (key_end, escaped) = string_end(bytes, at)?;
                if escaped {
                    return None;
                }
                let key = &bytes[at + 1..key_end - 1];
                at = skip_whitespace(bytes, key_end);
                if bytes.get(at) != Some(&b':') {
                    return None;
                }
                let value = skip_whitespace(bytes, at + 1);
                at = skip_whitespace(bytes, field(key, value)?);
            }
            _ => return None,
        }
    }
}

/// `None` when the chunk is not a JSON object this scanner understands (the decoder then
/// uses serde).
pub(crate) fn chunk(bytes: &[u8]) -> Option<Chunk<'_>> {
    let mut chunk = Chunk::default();
    let start = skip_whitespace(bytes, 0);
    members(bytes, start, |key, value| match key {
        b"choices" => choices(bytes, value, &mut chunk),
        b"id" | b"model" => {
            chunk.has_identity = true;
            value_end(bytes, value)
        }
        b"object" => {
            let end = value_end(bytes, value)?;
            chunk.object = Some(&bytes[value..end]);
            Some(end)
        }
        b"citations" | b"search_results" | b"usage" => {
            let end = value_end(bytes, value)?;
            let raw = Some(&bytes[value..end]);
            match key {
                b"citations" => chunk.citations = raw,
                b"search_results" => chunk.search_results = raw,
                _ => chunk.usage = raw,
            }
            Some(end)
        }
        _ => value_end(bytes, value),
    })?;
    Some(chunk)
}

/// `choices` at `value`: the first choice's `delta.content` and `finish_reason` into
/// `chunk`; the end of the array.
fn choices<'a>(bytes: &'a [u8], value: usize, chunk: &mut Chunk<'a>) -> Option<usize> {
    if bytes.get(value) != Some(&b'[') {
        return value_end(bytes, value);
    }
    let first = skip_whitespace(bytes, value + 1);
    if bytes.get(first) != Some(&b'{') {
        return value_end(bytes, value);
    }
    let mut at = members(bytes, first, |key, value| match key {
        b"delta" => members(bytes, value, |key, value| {
            if key == b"tool_calls" || key == b"reasoning_steps" {
                // Tool-call fragments are merged, and concise mode's reasoning steps read,
                // by serde's path.
                return None;
            }
            if key == b"content" && bytes.get(value) == Some(&b'"') {
                let (end, escaped) = string_end(bytes, value)?;
                chunk.delta = Some(if escaped {
                    Delta::Escaped(&bytes[value..end])
                } else {
                    Delta::Plain(&bytes[value + 1..end - 1])
                });
                return Some(end);
            }
            value_end(bytes, value)
        }),
        b"finish_reason" => {
            let end = value_end(bytes, value)?;
            chunk.finish_reason = Some(&bytes[value..end]);
            Some(end)
        }
        _ => value_end(bytes, value),
    })?;
    // Other choices (there are none in practice) are skipped.
    loop {
        at = skip_whitespace(bytes, at);
        match *bytes.get(at)? {
            b']' => break Some(at + 1),
            b',' => at = value_end(bytes, skip_whitespace(bytes, at + 1))?,
            _ => return None,
        }
    }
}

/// What the Agent API decoder reads first from an event: its type (as written, without
/// quotes), its place in the run, and a text delta.
pub(crate) struct AgentHead<'a> {
    pub(crate) kind: &'a [u8],
    pub(crate) sequence_number: Option<u64>,
    pub(crate) delta: Option<Delta<'a>>,
}

/// An Agent API event's head, or `None` (serde then reads the event) for anything this
/// scanner does not expect: not one whole object, a key written with escapes, one of the
/// three members twice (serde refuses that), a `type` that is not a plain string, a
/// `sequence_number` that is not a plain integer, a `delta` that is not a string.
pub(crate) fn agent_head(bytes: &[u8]) -> Option<AgentHead<'_>> {
    let (mut kind, mut sequence_number, mut delta) = (None, None, None);
    let start = skip_whitespace(bytes, 0);
    let end = members(bytes, start, |key, value| match key {
        b"type" => {
            let (end, escaped) = string_at(bytes, value)?;
            if escaped || kind.is_some() {
                return None;
            }
            kind = Some(&bytes[value + 1..end - 1]);
            Some(end)
        }
        b"sequence_number" => {
            let end = value_end(bytes, value)?;
            if sequence_number.is_some() {
                return None;
            }
            sequence_number = Some(plain_integer(&bytes[value..end])?);
            Some(end)
        }
        b"delta" => {
            let (end, escaped) = string_at(bytes, value)?;
            if delta.is_some() {
                return None;
            }
            delta = Some(if escaped {
                Delta::Escaped(&bytes[value..end])
            } else {
                Delta::Plain(&bytes[value + 1..end - 1])
            });
            Some(end)
        }
        _ => value_end(bytes, value),
    })?;
    if skip_whitespace(bytes, end) != bytes.len() {
        return None;
    }
    Some(AgentHead {
        kind: kind?,
        sequence_number,
        delta,
    })
}

/// The string at `at`: its end and whether it has escapes; `None` for any other value.
fn string_at(bytes: &[u8], at: usize) -> Option<(usize, bool)> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    string_end(bytes, at)
}

/// A JSON integer as serde reads it into a `u64` (digits, no leading zero, in range), or
/// `None` for anything else (`null` among them: serde decides).
fn plain_integer(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || (raw.len() > 1 && raw[0] == b'0') {
        return None;
    }
    raw.iter().try_fold(0_u64, |number, digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        number.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// The first choice's delta content, as serde reads it.
    fn serde_delta(text: &str) -> Option<String> {
        let value: Value = serde_json::from_str(text).ok()?;
        value["choices"][0]["delta"]["content"]
            .as_str()
            .map(str::to_owned)
    }

    fn scanned_delta(text: &str) -> Option<String> {
        match scan_delta(text)? {
            Delta::Plain(raw) => Some(String::from_utf8(raw.to_vec()).unwrap()),
            Delta::Escaped(raw) => serde_json::from_slice(raw).ok(),
        }
    }

    fn scan_delta(text: &str) -> Option<Delta<'_>> {
        chunk(text.as_bytes())?.delta
    }

    #[test]
    fn it_finds_what_serde_finds_in_any_member_order() {
        let cases = [
            r#"{"id":"a","choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"message":{"role":"assistant","content":"Hello \"world\" {[,]}"},"finish_reason":null}],"citations":["https://a"],"usage":{"total_tokens":3}}"#,
            r#" { "choices" : [ { "message" : { "content" : "x\\\"y" } , "delta" : { "content" : "with \"quotes\" and \u00e9" } } , { "delta" : { "content" : "second" } } ] } "#,
            r#"{"citations":[],"search_results":[{"title":"}]{[","url":"u"}],"choices":[{"delta":{}}]}"#,
            r#"{"choices":[]}"#,
            r#"{"object":"chat.completion.done","choices":[{"finish_reason":"stop","delta":{"content":""}}]}"#,
        ];
        for case in cases {
            assert_eq!(scanned_delta(case), serde_delta(case), "{case}");
        }
        let scanned = chunk(cases[0].as_bytes()).unwrap();
        assert_eq!(scanned.citations, Some(br#"["https://a"]"#.as_slice()));
        assert_eq!(scanned.usage, Some(br#"{"total_tokens":3}"#.as_slice()));
        assert_eq!(scanned.finish_reason, Some(b"null".as_slice()));
        assert!(scanned.has_identity);
        let done = chunk(cases[4].as_bytes()).unwrap();
        assert_eq!(done.object, Some(br#""chat.completion.done""#.as_slice()));
        assert_eq!(done.finish_reason, Some(br#""stop""#.as_slice()));
    }

    #[test]
    fn what_it_does_not_expect_is_left_to_serde() {
        let whole = r#"{"choices":[{"delta":{"content":"abc"}}],"usage":{"a":1}}"#;
        for cut in 0..whole.len() - 1 {
            assert!(chunk(&whole.as_bytes()[..cut]).is_none(), "cut at {cut}");
        }
        for bad in [
            "[]",
            "\"text\"",
            r#"{"choices":[{"delta":{"content":"x"}}] junk}"#,
            r#"{"a" 1}"#,
            // A key with escapes: serde reads it as `choices`.
            r#"{"ch\u006fices":[{"delta":{"content":"x"}}]}"#,
            &format!(r#"{{"choices":{}{}}}"#, "[".repeat(200), "]".repeat(200)),
            "",
        ] {
            assert!(chunk(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    fn text() -> impl Strategy<Value = String> {
        // Quotes, backslashes, braces and non-ASCII: what string skipping must get right.
        proptest::string::string_regex("[a-z \"\\\\{}\\[\\],:é\u{1F600}\n]{0,40}").unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn on_any_chunk_serde_writes_it_agrees_with_serde(
            delta in text(),
            message in text(),
            snippet in text(),
            order in 0_usize..6,
            with_delta in any::<bool>(),
        ) {
            let choice = if with_delta {
                json!({"index": 0, "delta": {"role": "assistant", "content": delta}, "message": {"content": message}})
            } else {
                json!({"index": 0, "message": {"content": message}, "finish_reason": null})
            };
            let members = [
                ("choices", json!([choice])),
                ("search_results", json!([{"title": snippet, "url": "https://x"}])),
                ("usage", json!({"completion_tokens": 3, "cost": {"total_cost": 0.5}})),
            ];
            let mut object = serde_json::Map::new();
            for index in 0..3 {
                let (key, value) = &members[(index + order) % 3];
                object.insert((*key).to_owned(), value.clone());
            }
            let text = Value::Object(object).to_string();
            prop_assert_eq!(scanned_delta(&text), serde_delta(&text));
            let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
            prop_assert_eq!(scanned_delta(&pretty), serde_delta(&pretty));
        }
    }

    /// An Agent event's type, sequence number and delta, as serde reads them (`None` when
    /// serde refuses the event or finds no type).
    fn serde_head(text: &str) -> Option<(String, Option<u64>, Option<String>)> {
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            sequence_number: Option<u64>,
            #[serde(default)]
            delta: Option<String>,
        }
        let head: Head = serde_json::from_str(text).ok()?;
        Some((head.kind, head.sequence_number, head.delta))
    }

    fn scanned_head(text: &str) -> Option<(String, Option<u64>, Option<String>)> {
        let head = agent_head(text.as_bytes())?;
        let delta = match head.delta {
            None => None,
            Some(Delta::Plain(raw)) => Some(String::from_utf8(raw.to_vec()).unwrap()),
            Some(Delta::Escaped(raw)) => Some(serde_json::from_slice(raw).unwrap()),
        };
        Some((
            String::from_utf8(head.kind.to_vec()).unwrap(),
            head.sequence_number,
            delta,
        ))
    }

    #[test]
    fn an_agent_event_it_reads_is_what_serde_reads_and_the_rest_is_left_to_serde() {
        let whole = r#"{"content_index":0,"delta":"This answer ","item_id":"msg_1","output_index":1,"sequence_number":8,"type":"response.output_text.delta"}"#;
        assert_eq!(scanned_head(whole), serde_head(whole));
        assert_eq!(scanned_head(whole).unwrap().1, Some(8));
        for cut in 0..whole.len() {
            assert!(
                agent_head(&whole.as_bytes()[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        for left in [
            // Keys with escapes, members twice, values serde reads otherwise or refuses.
            r#"{"typ\u0065":"response.output_text.delta","delta":"x"}"#,
            r#"{"type":"response.output_text.delta","delt\u0061":"x"}"#,
            r#"{"type":"a","type":"b"}"#,
            r#"{"type":"response.output_text.delta","delta":"x","delta":"y"}"#,
            r#"{"type":"x","sequence_number":1,"sequence_number":2}"#,
            r#"{"type":"response.output_text.delt\u0061","delta":"x"}"#,
            r#"{"type":"x","sequence_number":01}"#,
            r#"{"type":"x","sequence_number":1.0}"#,
            r#"{"type":"x","sequence_number":-1}"#,
            r#"{"type":"x","sequence_number":null}"#,
            r#"{"type":"x","sequence_number":18446744073709551616}"#,
            r#"{"type":"response.output_text.delta","delta":null}"#,
            r#"{"type":null}"#,
            r#"{"delta":"no type"}"#,
            r#"{"type":"x"} trailing"#,
            r#"[{"type":"x"}]"#,
        ] {
            assert!(agent_head(left.as_bytes()).is_none(), "{left}");
        }
        // The largest number a u64 holds is read; every event without a number has none.
        let largest = r#"{"type":"x","sequence_number":18446744073709551615}"#;
        assert_eq!(scanned_head(largest), serde_head(largest));
        let bare = r#" { "type" : "response.created" } "#;
        assert_eq!(scanned_head(bare), serde_head(bare));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn on_any_agent_event_serde_writes_it_agrees_with_serde(
            delta in text(),
            item in text(),
            sequence in any::<u64>(),
            order in 0_usize..5,
            with_delta in any::<bool>(),
        ) {
            let mut members = vec![
                ("type", json!("response.output_text.delta")),
                ("sequence_number", json!(sequence)),
                ("item_id", json!(item)),
                ("output_index", json!({"nested": [item, {"deep": item}]})),
            ];
            if with_delta {
                members.push(("delta", json!(delta)));
            }
            let count = members.len();
            members.rotate_left(order % count);
            let object: serde_json::Map<String, Value> = members
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect();
            let text = Value::Object(object).to_string();
            prop_assert_eq!(scanned_head(&text), serde_head(&text));
            let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
            prop_assert_eq!(scanned_head(&pretty), serde_head(&pretty));
        }
    }
}
