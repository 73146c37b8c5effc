//! One streaming attempt of an answer, up to its commit point: the stream opened (a new
//! request, or an existing run read from its first event) and read until the first answer
//! text, holding what came before; and whether a failed attempt falls back to one
//! non-streaming request.

use bytes::Bytes;
use chat_core::{ChatEvent, Error, ErrorKind, TimeoutPhase};
use resilience::{Classify, FailureClass};

use crate::api::LongRunning;
use crate::client::Live;
use crate::endpoint::{Endpoint, Method, Route};
use crate::runs::CancelOnDrop;

/// What one attempt opens: a new request with its body, or the existing run `id` of `work`,
/// read from its first event.
pub(super) enum Opening<'a> {
    Request(Bytes),
    Run(&'static dyn LongRunning, &'a str),
}

/// Connects and reads until the commit point: the events held until then, ending with the
/// first text delta (or `Done`, for an empty answer). A run the stream names is recorded in
/// `cancel`.
pub(super) async fn open(
    endpoint: &Endpoint,
    route: &Route,
    opening: Opening<'_>,
    key: &resilience::ApiKey,
    cancel: &CancelOnDrop,
) -> Result<(Live, Vec<ChatEvent>), Error> {
    let (method, path) = match opening {
        Opening::Request(body) => (Method::Post(body), route.api.protocol().path().to_owned()),
        Opening::Run(work, id) => {
            let path = work.resume_path(id, 0).ok_or_else(|| {
                Error::config("this API's long-running work cannot be read as a stream")
            })?;
            (Method::Get, path)
        }
    };
    let response = endpoint
        .send(method, &path, key, true, &route.timeouts)
        .await?;
    let run = cancel.slot().map(|slot| (slot, key.clone()));
    let mut live = endpoint.live(route, response, run)?;
    let held = hold_until_commit(&mut live, cancel).await?;
    Ok((live, held))
}

/// Reads `live` to the commit point: the events before it, ending with the first text delta
/// (or a tool call, or `Done` for an empty answer). A stream that ends or breaks before it
/// abandons its run (another attempt, or the fallback, answers).
async fn hold_until_commit(
    live: &mut Live,
    cancel: &CancelOnDrop,
) -> Result<Vec<ChatEvent>, Error> {
    let mut held = Vec::new();
    loop {
        match live.next().await {
            Ok(Some(
                event @ (ChatEvent::TextDelta(_) | ChatEvent::ToolCall(_) | ChatEvent::Done(_)),
            )) => {
                held.push(event);
                return Ok(held);
            }
            Ok(Some(event)) => held.push(event),
            Ok(None) => {
                cancel.fire();
                return Err(Error::incomplete("the stream ended before its final event"));
            }
            Err(error) => {
                cancel.fire();
                return Err(error);
            }
        }
    }
}

/// Whether a streaming failure should fall back to one non-streaming request: the attempts
/// were spent on transient failures, or the server will not stream.
pub(super) fn falls_back(error: &Error) -> bool {
    // By its kind: the server answered without a stream, or its error named the `stream`
    // parameter (see `client::refusal`).
    // Not a server that could not be reached: a request without a stream goes to the same
    // place (and would only double the attempts `--stats` counts).
    let refuses_stream = error.kind() == ErrorKind::NotStreaming;
    let transient = error.failure_class() == FailureClass::Transient
        && error.kind() != ErrorKind::Connect
        && !(error.kind() == ErrorKind::Timeout
            && error.timeout_phase() == Some(TimeoutPhase::Total));
    refuses_stream || transient
}
