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

/// The floor of `cargo xtask bench e2e`: the same HTTP client (hyper-rustls, connection
/// reuse), SSE parser and Agent API event decoder as the provider, and nothing else: no key
/// pool, breaker, retry budget, ledger, resume, deadline timers, redaction, cache or
/// tracing. Our layers' cost is what the provider takes beyond it.
pub struct Floor {
    client: crate::client::HttpClient,
    base_url: String,
    key: resilience::ApiKey,
}

impl Floor {
    /// A floor client of the Agent API at `base_url`, trusting `roots` (DER) besides the
    /// webpki roots.
    ///
    /// # Errors
    /// A bad base URL or certificate.
    pub fn new(base_url: &str, key: &str, roots: &[Vec<u8>]) -> Result<Floor, chat_core::Error> {
        let client = crate::client::http_client(
            std::time::Duration::from_secs(10),
            &crate::Proxy::default(),
            roots,
        )?;
        Ok(Floor {
            client,
            base_url: crate::client::check_base_url(base_url, true)?,
            key: resilience::ApiKey::new(key),
        })
    }

    /// One streamed answer of `model` to `question`: its text deltas, and the time from the
    /// call to the first.
    ///
    /// # Errors
    /// A refused request, a broken stream or an event the decoder refuses.
    pub async fn stream(
        &self,
        model: &str,
        question: &str,
    ) -> Result<(usize, std::time::Duration), chat_core::Error> {
        use http_body_util::BodyExt;
        let started = std::time::Instant::now();
        // The provider's default request (a background run, so a cut stream could be read
        // again), so the server does the same work for both.
        let request = chat_core::ChatRequest::new(model, question).with_option("background", true);
        let body = crate::api::request_body(crate::Api::Agent, &request, model, true);
        let request = crate::client::request(
            hyper::Method::POST,
            &self.base_url,
            "/v1/agent",
            body.into(),
            &self.key,
            true,
        )?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(chat_core::Error::connect)?;
        if !response.status().is_success() {
            return Err(chat_core::Error::status(
                response.status().as_u16(),
                "the floor's request was refused",
            ));
        }
        let mut parser = sse_parse::EventParser::new();
        let mut decoder =
            crate::decode::Decoder::bounded(crate::Api::Agent.protocol().decoder(), usize::MAX);
        let mut out = VecDeque::new();
        let (mut deltas, mut first) = (0, None);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| chat_core::Error::incomplete(error.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let mut refused = None;
            parser
                .feed(&data, |item| {
                    if let sse_parse::Item::Event(event) = item
                        && let Err(error) =
                            decoder.feed_bytes(event.event_type(), event.data(), &mut out)
                    {
                        refused.get_or_insert(error);
                    }
                })
                .map_err(|error| chat_core::Error::protocol(error.to_string()))?;
            if let Some(error) = refused {
                return Err(error);
            }
            for event in out.drain(..) {
                if let ChatEvent::TextDelta(text) = event {
                    first.get_or_insert_with(|| started.elapsed());
                    std::hint::black_box(text);
                    deltas += 1;
                }
            }
        }
        Ok((deltas, first.unwrap_or_default()))
    }
}
