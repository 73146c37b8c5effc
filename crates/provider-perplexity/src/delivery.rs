//! The promise of every stream, kept by construction: it ends with `Done` or with one `Err`,
//! never both and never neither; after answer text was handed out, an `Err` is an
//! interruption carrying exactly the text the caller holds (the text since the last
//! `Restart`, as `chat_core::Accumulator` keeps it). The provider's generator produces the
//! events; [`Delivered`] wraps it and holds it to these rules, whatever path it takes.

use std::pin::Pin;
use std::task::{Context, Poll};

use chat_core::{ChatEvent, Error};
use futures_core::Stream;

/// A stream of answer events held to the rules above.
pub(crate) struct Delivered<S> {
    inner: S,
    /// The answer text the caller holds: since the last `Restart`.
    text: String,
    /// Whether any answer text was handed out, in any attempt.
    committed: bool,
    /// `Done` or `Err` went out: nothing more will.
    finished: bool,
}

impl<S> Delivered<S> {
    pub(crate) fn new(inner: S) -> Self {
        Delivered {
            inner,
            text: String::new(),
            committed: false,
            finished: false,
        }
    }

    /// The event as the caller gets it, with the bookkeeping done.
    fn pass(&mut self, item: Result<ChatEvent, Error>) -> Result<ChatEvent, Error> {
        match item {
            Ok(event) => {
                match &event {
                    ChatEvent::TextDelta(text) => {
                        self.text.push_str(text);
                        self.committed = true;
                    }
                    ChatEvent::Restart => self.text.clear(),
                    ChatEvent::Done(_) => self.finished = true,
                    _ => {}
                }
                Ok(event)
            }
            Err(error) => {
                self.finished = true;
                Err(self.settle(error))
            }
        }
    }

    /// An error as the caller must get it: after the commit point, an interruption with the
    /// exact text the caller holds.
    fn settle(&mut self, error: Error) -> Error {
        if !self.committed {
            return error;
        }
        if error.is_interrupted() && error.partial_text() == Some(self.text.as_str()) {
            return error;
        }
        // The generator reports an interruption with its usage and cause; the text is this
        // bookkeeping's, which alone saw every delta and restart.
        let usage = error.partial_usage().cloned();
        let cause = if error.is_interrupted() {
            std::error::Error::source(&error)
                .and_then(|cause| cause.downcast_ref::<Error>())
                .cloned()
                .unwrap_or(error)
        } else {
            error
        };
        tracing::warn!(%cause, delivered_chars = self.text.chars().count(), "stream interrupted");
        Error::interrupted(std::mem::take(&mut self.text), usage, cause)
    }
}

impl<S> Stream for Delivered<S>
where
    S: Stream<Item = Result<ChatEvent, Error>> + Unpin,
{
    type Item = Result<ChatEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(context) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(item)) => Poll::Ready(Some(this.pass(item))),
            Poll::Ready(None) => {
                // The generator ended without its final event: say so, exactly once.
                let ended = Error::incomplete("the stream ended before its final event");
                Poll::Ready(Some(this.pass(Err(ended))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_core::{ChatResponse, ErrorKind};

    use super::*;

    /// Drives `Delivered` over `items` (a generator's output) and returns what the caller got.
    fn deliver(items: Vec<Result<ChatEvent, Error>>) -> Vec<Result<ChatEvent, Error>> {
        let mut stream = Delivered::new(Box::pin(Iter(items.into_iter())));
        let waker = std::task::Waker::noop();
        let mut context = Context::from_waker(waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(item)) = Pin::new(&mut stream).poll_next(&mut context) {
            out.push(item);
        }
        out
    }

    struct Iter<I>(I);

    impl<I: Iterator<Item = Result<ChatEvent, Error>> + Unpin> Stream for Iter<I> {
        type Item = I::Item;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<I::Item>> {
            Poll::Ready(self.get_mut().0.next())
        }
    }

    fn text(text: &str) -> Result<ChatEvent, Error> {
        Ok(ChatEvent::TextDelta(text.into()))
    }

    fn done() -> Result<ChatEvent, Error> {
        Ok(ChatEvent::Done(Box::default()))
    }

    fn broken() -> Error {
        Error::connect(std::io::Error::other("reset"))
    }

    #[test]
    fn a_failure_after_a_restart_is_an_interruption_with_the_text_since_it() {
        let out = deliver(vec![
            text("Olympus "),
            Ok(ChatEvent::Restart),
            text("Olym"),
            Err(broken()),
        ]);
        let error = out.last().unwrap().as_ref().unwrap_err();
        assert!(error.is_interrupted(), "{error}");
        assert_eq!(error.partial_text(), Some("Olym"));
        // A restart and then a failure before any new text: still an interruption (the
        // caller was handed text), with the empty text it now holds.
        let out = deliver(vec![
            text("Olympus "),
            Ok(ChatEvent::Restart),
            Err(broken()),
        ]);
        let error = out.last().unwrap().as_ref().unwrap_err();
        assert!(error.is_interrupted(), "{error}");
        assert_eq!(error.partial_text(), Some(""));
    }

    #[test]
    fn a_stream_ends_with_done_or_one_error_never_neither_nor_both() {
        // Neither: a generator that just stops.
        let out = deliver(vec![text("Olympus")]);
        let error = out.last().unwrap().as_ref().unwrap_err();
        assert_eq!(error.partial_text(), Some("Olympus"));
        let out = deliver(vec![]);
        assert_eq!(
            out.last().unwrap().as_ref().unwrap_err().kind(),
            ErrorKind::Incomplete
        );
        // Both, or more after the end: cut at the first terminal item.
        let out = deliver(vec![text("a"), done(), Err(broken()), text("b")]);
        assert_eq!(out.len(), 2);
        assert!(matches!(out[1], Ok(ChatEvent::Done(_))));
        let out = deliver(vec![Err(broken()), text("b"), done()]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().unwrap_err().kind(), ErrorKind::Connect);
    }

    #[test]
    fn an_interruption_gets_the_callers_text_and_keeps_its_usage_and_cause() {
        let usage = chat_core::Usage {
            total_tokens: 7,
            ..chat_core::Usage::default()
        };
        let out = deliver(vec![
            text("Olympus "),
            text("Mons"),
            Err(Error::interrupted(
                String::new(),
                Some(usage.clone()),
                broken(),
            )),
        ]);
        let error = out.last().unwrap().as_ref().unwrap_err();
        assert_eq!(error.partial_text(), Some("Olympus Mons"));
        assert_eq!(error.partial_usage(), Some(&usage));
        let cause = std::error::Error::source(error)
            .and_then(|cause| cause.downcast_ref::<Error>())
            .unwrap();
        assert_eq!(cause.kind(), ErrorKind::Connect);
    }

    #[test]
    fn errors_before_any_text_pass_as_they_are() {
        let out = deliver(vec![
            Ok(ChatEvent::ReasoningDelta("thinking".into())),
            Err(Error::status(429, "slow down")),
        ]);
        assert!(out[1].as_ref().unwrap_err().is_rate_limited());
        let out = deliver(vec![text("a"), text("b"), done()]);
        match &out[2] {
            Ok(ChatEvent::Done(response)) => assert_eq!(**response, ChatResponse::default()),
            other => panic!("{other:?}"),
        }
    }
}
