use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use crate::{Error, EventParser, Item, Limits};

/// A [`Stream`] of parsed items over a body stream of `Result<Bytes, E>` (for example
/// `http_body_util::BodyDataStream` over a hyper body).
///
/// Fields are `Bytes` slices of the body's chunks. Back-pressure is the consumer's: the
/// adapter reads the next chunk only when the items of the last one have been taken, so it holds
/// at most one chunk's items. A body error ends the stream with [`Error::Body`]; a limit
/// error ends it with that error. At the end of the body an unfinished event is discarded and
/// [`was_truncated`](EventStream::was_truncated) says so.
#[derive(Debug)]
pub struct EventStream<S> {
    body: S,
    parser: EventParser,
    queue: VecDeque<Item<Bytes>>,
    error: Option<Error>,
    ended: bool,
    truncated: bool,
}

impl<S> EventStream<S> {
    /// Parses `body` with the default [`Limits`].
    pub fn new(body: S) -> Self {
        EventStream::with_limits(body, Limits::default())
    }

    /// Parses `body` with the given limits.
    pub fn with_limits(body: S, limits: Limits) -> Self {
        EventStream {
            body,
            parser: EventParser::with_limits(limits),
            queue: VecDeque::new(),
            error: None,
            ended: false,
            truncated: false,
        }
    }

    /// Whether the body ended in the middle of a line or an event (known once the stream
    /// has returned `None`).
    pub fn was_truncated(&self) -> bool {
        self.truncated
    }

    /// The last event ID seen, for a reconnect's `Last-Event-ID`.
    pub fn last_event_id(&self) -> &[u8] {
        self.parser.last_event_id()
    }
}

impl<S, E> Stream for EventStream<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    type Item = Result<Item<Bytes>, Error>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            if let Some(error) = this.error.take() {
                this.ended = true;
                return Poll::Ready(Some(Err(error)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.body).poll_next(context) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let queue = &mut this.queue;
                    if let Err(error) = this.parser.feed_bytes(&chunk, |item| queue.push_back(item))
                    {
                        this.error = Some(error);
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    this.error = Some(Error::Body(error.into()));
                    this.truncated = this.parser.finish();
                }
                Poll::Ready(None) => {
                    this.truncated = this.parser.finish();
                    this.ended = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    struct Chunks(VecDeque<Result<Bytes, std::io::Error>>);

    impl Stream for Chunks {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.get_mut().0.pop_front())
        }
    }

    fn collect(stream: &mut EventStream<Chunks>) -> Vec<Result<Item<Bytes>, Error>> {
        let mut context = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(Some(item)) = Pin::new(&mut *stream).poll_next(&mut context) {
            out.push(item);
        }
        out
    }

    #[test]
    fn yields_events_across_chunks_then_ends_and_reports_truncation() {
        let chunks = ["data: a\r", "\n\r\nretry: 3\ndata: b\n", "\ndata: cut"];
        let body = Chunks(chunks.iter().map(|chunk| Ok(Bytes::from(*chunk))).collect());
        let mut stream = EventStream::new(body);
        let out = collect(&mut stream);
        let out: Vec<String> = out
            .into_iter()
            .map(|item| match item.unwrap() {
                Item::Event(event) => event.data_lossy().into_owned(),
                Item::Retry(millis) => format!("retry {millis}"),
            })
            .collect();
        assert_eq!(out, ["a", "retry 3", "b"]);
        assert!(stream.was_truncated());
    }

    #[test]
    fn a_body_error_comes_after_the_events_before_it() {
        let body = Chunks(VecDeque::from([
            Ok(Bytes::from("data: a\n\n")),
            Err(std::io::Error::other("reset")),
            Ok(Bytes::from("data: never\n\n")),
        ]));
        let mut stream = EventStream::new(body);
        let out = collect(&mut stream);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_ok());
        let error = out[1].as_ref().unwrap_err();
        assert!(error.is_body());
        assert_eq!(
            std::error::Error::source(error).map(ToString::to_string),
            Some("reset".to_owned())
        );
    }

    #[test]
    fn a_limit_error_ends_the_stream() {
        let body = Chunks(VecDeque::from([Ok(Bytes::from("data: 0123456789\n\n"))]));
        let mut stream = EventStream::with_limits(body, Limits::new(8, 8));
        let out = collect(&mut stream);
        assert_eq!(out.len(), 1);
        assert!(out[0].as_ref().unwrap_err().is_limit());
    }
}
