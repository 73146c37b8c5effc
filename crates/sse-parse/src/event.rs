use std::borrow::Cow;
use std::str::Utf8Error;

/// One dispatched event, generic over how its bytes are held.
///
/// [`EventParser::feed`](crate::EventParser::feed) hands out `Event<&[u8]>`, views into the
/// chunk or into the parser's buffers; with the `bytes` feature,
/// [`EventParser::feed_bytes`](crate::EventParser::feed_bytes) hands out `Event<Bytes>`,
/// reference-counted slices of the chunk that the caller may keep.
///
/// All accessors are byte-level; the `*_str` ones validate UTF-8 and
/// [`data_lossy`](Event::data_lossy) replaces invalid bytes with U+FFFD, as the spec does.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Event<B> {
    pub(crate) event_type: B,
    pub(crate) data: B,
    pub(crate) id: B,
}

impl<B: AsRef<[u8]>> Event<B> {
    /// The event type: the last `event:` value, or `message` when there was none (or it was empty).
    pub fn event_type(&self) -> &[u8] {
        self.event_type.as_ref()
    }

    /// The data: every `data:` value of the event joined with LF.
    pub fn data(&self) -> &[u8] {
        self.data.as_ref()
    }

    /// The last event ID at dispatch time; empty when none was set (or it was reset).
    pub fn id(&self) -> &[u8] {
        self.id.as_ref()
    }

    /// The event type as UTF-8.
    pub fn event_type_str(&self) -> Result<&str, Utf8Error> {
        std::str::from_utf8(self.event_type())
    }

    /// The data as UTF-8, borrowed, with no copy.
    pub fn data_str(&self) -> Result<&str, Utf8Error> {
        std::str::from_utf8(self.data())
    }

    /// The data as text, with U+FFFD for invalid UTF-8 (borrowed when it is valid).
    pub fn data_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.data())
    }

    /// The last event ID as UTF-8.
    pub fn id_str(&self) -> Result<&str, Utf8Error> {
        std::str::from_utf8(self.id())
    }

    /// The data buffer itself, for example to keep a `Bytes` without copying it.
    pub fn into_data(self) -> B {
        self.data
    }
}

impl<B: AsRef<[u8]>> std::fmt::Debug for Event<B> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Event")
            .field("event_type", &String::from_utf8_lossy(self.event_type()))
            .field("data", &String::from_utf8_lossy(self.data()))
            .field("id", &String::from_utf8_lossy(self.id()))
            .finish()
    }
}

/// What the parser hands out, in stream order.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Item<B> {
    /// An event, dispatched by the blank line that ended it.
    Event(Event<B>),
    /// A valid `retry:` field: the reconnection time in milliseconds (saturating at
    /// `u64::MAX`).
    Retry(u64),
}

impl<B: AsRef<[u8]>> std::fmt::Debug for Item<B> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Event(event) => formatter.debug_tuple("Event").field(event).finish(),
            Item::Retry(millis) => formatter.debug_tuple("Retry").field(millis).finish(),
        }
    }
}
