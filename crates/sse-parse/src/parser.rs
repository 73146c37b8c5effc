use memchr::{memchr, memchr2};

use crate::{Error, Event, Item};

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
/// A `static` (not a `const`) so that its address identifies it: see `view`.
static MESSAGE: &[u8] = b"message";

/// Size limits that keep a hostile or broken stream from growing memory without bound.
///
/// The parser holds at most one partial line (`max_line`) plus one event's data
/// (`max_event_data`), whatever the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest line in bytes, not counting its line end. Checked as bytes arrive.
    pub max_line: usize,
    /// Largest data buffer of one event in bytes, counting the LF that every `data` line adds.
    pub max_event_data: usize,
}

impl Limits {
    /// Limits of `max_line` bytes per line and `max_event_data` bytes of data per event.
    pub fn new(max_line: usize, max_event_data: usize) -> Self {
        Limits {
            max_line,
            max_event_data,
        }
    }
}

impl Default for Limits {
    /// 8 MiB per line and 16 MiB per event: far above any real LLM stream, far below harm.
    fn default() -> Self {
        Limits::new(8 << 20, 16 << 20)
    }
}

/// The parser's buffers for a carried line and for data it had to copy: `BytesMut` with the
/// `bytes` feature, so that [`EventParser::feed_bytes`] hands such data out by splitting it off
/// (the bytes are copied once, from the chunks into the buffer), a `Vec` otherwise.
#[cfg(feature = "bytes")]
type Buffer = bytes::BytesMut;
#[cfg(not(feature = "bytes"))]
type Buffer = Vec<u8>;

/// The least a buffer grows by. With the `bytes` feature, the events split off a buffer share
/// its block: one allocation serves many events, and once the caller has dropped them the
/// block is reused in place.
const BLOCK: usize = 16 << 10;

/// Appends `bytes` to `buffer`, growing it by at least a block and at least doubling it, so
/// that a long line costs linear time whoever still holds the buffer's earlier events.
fn append(buffer: &mut Buffer, bytes: &[u8]) {
    if buffer.capacity() - buffer.len() < bytes.len() {
        buffer.reserve(bytes.len().max(BLOCK).max(buffer.len()));
    }
    buffer.extend_from_slice(bytes);
}

/// Drops the first `count` bytes of `buffer`.
#[cfg(feature = "bytes")]
fn drop_front(buffer: &mut Buffer, count: usize) {
    bytes::Buf::advance(buffer, count);
}

#[cfg(not(feature = "bytes"))]
fn drop_front(buffer: &mut Buffer, count: usize) {
    buffer.drain(..count);
}

/// An incremental parser for one event stream.
///
/// Feed it the body's chunks in order with [`feed`](EventParser::feed) (or
/// [`feed_bytes`](EventParser::feed_bytes)); it hands out each event as soon as the blank line
/// that ends it is complete. Call [`finish`](EventParser::finish) at end of input.
///
/// Fields that lie within the chunk being fed are handed out as views into it. Bytes are copied
/// into the parser only for a line that spans chunks, an event whose lines span chunks, and
/// an event with several `data` lines (which must be joined). The buffers are reused, so a
/// stream of single-line events makes no heap allocation per event.
#[derive(Debug, Default)]
pub struct EventParser {
    limits: Limits,
    /// The start of a line whose end has not arrived yet (also a partial BOM at the start).
    line: Buffer,
    /// The data buffer, when the pending event's data is not a view into the current chunk.
    data: Buffer,
    /// Whether the pending event has at least one `data` line.
    has_data: bool,
    /// Where the event's data starts in `data` (non-zero when a carried data line became the
    /// data buffer as is, its `data:` prefix still in front).
    data_start: usize,
    /// The spec's data buffer length: values plus one LF per line.
    data_len: usize,
    event_type: Vec<u8>,
    /// The last event ID buffer; it persists across events and across `finish`.
    id: Vec<u8>,
    /// Whether the stream start (and so a BOM) has not been decided yet.
    bom_decided: bool,
    /// The last chunk ended with CR: an LF at the start of the next is the same line end.
    pending_cr: bool,
    failed: Option<Error>,
    #[cfg(feature = "bytes")]
    id_bytes: bytes::Bytes,
    /// Where `feed_bytes` copies an event type or id that is not within the chunk, carved into
    /// `Bytes` so that copies allocate once per block rather than once per event.
    #[cfg(feature = "bytes")]
    arena: bytes::BytesMut,
}

/// Where a pending field's value lives during one `feed` call.
#[derive(Clone, Copy)]
enum Slot<'buf> {
    /// In the parser's own buffer (possibly empty).
    Parked,
    /// A view into the chunk being fed.
    Chunk(&'buf [u8]),
}

struct Pending<'buf> {
    data: Slot<'buf>,
    event_type: Slot<'buf>,
    id: Slot<'buf>,
}

/// Where the parser hands its items: views lent to a closure (`feed`), or `Bytes`
/// (`feed_bytes`).
trait Sink {
    fn retry(&mut self, millis: u64);
    fn event(&mut self, event_type: &[u8], id: &[u8], data: Data<'_>);
}

/// An event's data at dispatch.
enum Data<'a> {
    /// A view into the chunk.
    View(&'a [u8]),
    /// The parser's own buffer from `start` on; a sink may take it, leaving it empty.
    Parked {
        buffer: &'a mut Buffer,
        start: usize,
    },
}

/// The sink of [`EventParser::feed`].
struct Lend<F>(F);

impl<F: FnMut(Item<&[u8]>)> Sink for Lend<F> {
    fn retry(&mut self, millis: u64) {
        (self.0)(Item::Retry(millis));
    }

    fn event(&mut self, event_type: &[u8], id: &[u8], data: Data<'_>) {
        let data = match data {
            Data::View(view) => view,
            Data::Parked { buffer, start } => &buffer[start..],
        };
        (self.0)(Item::Event(Event {
            event_type,
            data,
            id,
        }));
    }
}

/// The sink of [`EventParser::feed_bytes`].
#[cfg(feature = "bytes")]
struct Share<'chunk, F> {
    chunk: &'chunk bytes::Bytes,
    /// The last id handed out: usually set once and repeated on every event, so shared.
    id: bytes::Bytes,
    arena: bytes::BytesMut,
    on_item: F,
}

#[cfg(feature = "bytes")]
impl<F: FnMut(Item<bytes::Bytes>)> Sink for Share<'_, F> {
    fn retry(&mut self, millis: u64) {
        (self.on_item)(Item::Retry(millis));
    }

    fn event(&mut self, event_type: &[u8], id: &[u8], data: Data<'_>) {
        // Compare only non-empty ids: glibc's AVX-512 memcmp of an empty slice at a dangling
        // address takes a masked-load assist costing ~100 ns (measured).
        if self.id.len() != id.len() || (!id.is_empty() && self.id.as_ref() != id) {
            self.id = view(self.chunk, id, &mut self.arena);
        }
        let data = match data {
            Data::View(data) => view(self.chunk, data, &mut self.arena),
            Data::Parked { buffer, start } => take(buffer, start),
        };
        (self.on_item)(Item::Event(Event {
            event_type: view(self.chunk, event_type, &mut self.arena),
            data,
            id: self.id.clone(),
        }));
    }
}

impl EventParser {
    /// A parser with the default [`Limits`].
    pub fn new() -> Self {
        EventParser::default()
    }

    /// A parser with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        EventParser {
            limits,
            ..EventParser::default()
        }
    }

    /// The last event ID buffer: what a reconnecting client sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &[u8] {
        &self.id
    }

    /// Parses the next chunk of the stream, calling `on_item` for every event and valid `retry`
    /// field it completes, in order.
    ///
    /// # Errors
    /// A line or an event past the [`Limits`]: the items before it were handed out, the rest of
    /// the stream is refused with the same error until [`finish`](EventParser::finish).
    pub fn feed<F>(&mut self, chunk: &[u8], on_item: F) -> Result<(), Error>
    where
        F: FnMut(Item<&[u8]>),
    {
        self.feed_into(chunk, &mut Lend(on_item))
    }

    fn feed_into<S: Sink>(&mut self, chunk: &[u8], sink: &mut S) -> Result<(), Error> {
        if let Some(error) = self.failed.as_ref().and_then(Error::clone_limit) {
            return Err(error);
        }
        let mut rest = chunk;
        if !self.bom_decided && !self.strip_bom(&mut rest) {
            return Ok(());
        }
        if self.pending_cr
            && let Some((&first, tail)) = rest.split_first()
        {
            self.pending_cr = false;
            if first == b'\n' {
                rest = tail;
            }
        }
        let mut pending = Pending {
            data: Slot::Parked,
            event_type: Slot::Parked,
            id: Slot::Parked,
        };
        let result = self.run(rest, &mut pending, sink);
        self.park(&pending);
        if let Err(error) = &result {
            self.fail(error);
        }
        result
    }

    /// Ends the stream: a partial line and an undispatched event are discarded, as the spec
    /// says. Returns whether anything was discarded (the stream was cut off mid-event).
    ///
    /// The parser is then ready for a new stream; the last event ID is kept, as a reconnecting
    /// client needs it.
    pub fn finish(&mut self) -> bool {
        let discarded = !self.line.is_empty() || self.has_data || self.failed.is_some();
        self.line.clear();
        self.clear_event();
        self.bom_decided = false;
        self.pending_cr = false;
        self.failed = None;
        discarded
    }

    /// Like [`feed`](EventParser::feed), but for a `Bytes` chunk: the fields come back as
    /// `Bytes` slices of it (no copy) when they lie within it. Data the parser had to gather
    /// (a line across chunks, several `data` lines) is split off its buffer as `Bytes`, so
    /// those bytes are copied once, as they arrive; an event type or id from an earlier chunk
    /// is a small copy.
    ///
    /// # Errors
    /// As for [`feed`](EventParser::feed).
    #[cfg(feature = "bytes")]
    pub fn feed_bytes<F>(&mut self, chunk: &bytes::Bytes, on_item: F) -> Result<(), Error>
    where
        F: FnMut(Item<bytes::Bytes>),
    {
        let mut sink = Share {
            chunk,
            id: std::mem::take(&mut self.id_bytes),
            arena: std::mem::take(&mut self.arena),
            on_item,
        };
        let result = self.feed_into(chunk, &mut sink);
        self.id_bytes = sink.id;
        self.arena = sink.arena;
        result
    }

    /// Decides whether the stream starts with a BOM, stripping it. Returns false when the
    /// chunk ended before that was known (the bytes seen so far wait in `self.line`).
    fn strip_bom(&mut self, rest: &mut &[u8]) -> bool {
        while self.line.len() < BOM.len() {
            let Some((&byte, tail)) = rest.split_first() else {
                return false;
            };
            if byte != BOM[self.line.len()] {
                // Not a BOM: the bytes held so far are the start of the first line.
                self.bom_decided = true;
                return true;
            }
            self.line.extend_from_slice(&[byte]);
            *rest = tail;
        }
        self.line.clear();
        self.bom_decided = true;
        true
    }

    fn run<'buf, S: Sink>(
        &mut self,
        mut rest: &'buf [u8],
        pending: &mut Pending<'buf>,
        sink: &mut S,
    ) -> Result<(), Error> {
        loop {
            let Some(end) = memchr2(b'\n', b'\r', rest) else {
                return self.carry(rest);
            };
            let body = &rest[..end];
            let mut next = end + 1;
            if rest[end] == b'\r' {
                match rest.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            if self.line.is_empty() {
                if body.len() > self.limits.max_line {
                    return Err(Error::LineTooLong {
                        limit: self.limits.max_line,
                    });
                }
                self.process_line(body, Some(body), pending, sink)?;
            } else {
                if self.line.len() + body.len() > self.limits.max_line {
                    return Err(Error::LineTooLong {
                        limit: self.limits.max_line,
                    });
                }
                let mut line = std::mem::take(&mut self.line);
                append(&mut line, body);
                let (result, mut spare) = self.process_carried(line, pending, sink);
                spare.clear();
                self.line = spare;
                result?;
            }
            rest = &rest[next..];
        }
    }

    /// Keeps the start of a line whose end is in a later chunk, within the limits.
    fn carry(&mut self, partial: &[u8]) -> Result<(), Error> {
        let line_len = self.line.len() + partial.len();
        if line_len > self.limits.max_line {
            return Err(Error::LineTooLong {
                limit: self.limits.max_line,
            });
        }
        append(&mut self.line, partial);
        // A data line is held back against the event limit too, before its end arrives.
        if let Some(value) = self.line.strip_prefix(b"data:") {
            let value_len = value.len() - usize::from(value.first() == Some(&b' '));
            if self.data_len + value_len + 1 > self.limits.max_event_data {
                return Err(Error::EventTooLarge {
                    limit: self.limits.max_event_data,
                });
            }
        }
        Ok(())
    }

    /// Interprets a complete line that was carried over from earlier chunks. When it is the
    /// event's first data line, the buffer itself becomes the data buffer (the value is not
    /// copied again); returns a buffer for the next carried line.
    fn process_carried<S: Sink>(
        &mut self,
        line: Buffer,
        pending: &mut Pending<'_>,
        sink: &mut S,
    ) -> (Result<(), Error>, Buffer) {
        match split_field(&line) {
            Some((b"data", value_start)) if !self.has_data => {
                let data_len = line.len() - value_start + 1;
                if data_len > self.limits.max_event_data {
                    let error = Error::EventTooLarge {
                        limit: self.limits.max_event_data,
                    };
                    return (Err(error), line);
                }
                self.has_data = true;
                self.data_len = data_len;
                self.data_start = value_start;
                pending.data = Slot::Parked;
                (Ok(()), std::mem::replace(&mut self.data, line))
            }
            _ => {
                let result = self.process_line(&line, None, pending, sink);
                (result, line)
            }
        }
    }

    /// Interprets one complete line. `in_chunk` is the same line when it is a view into the
    /// chunk, so that values can be kept as views rather than copied.
    fn process_line<'buf, S: Sink>(
        &mut self,
        line: &[u8],
        in_chunk: Option<&'buf [u8]>,
        pending: &mut Pending<'buf>,
        sink: &mut S,
    ) -> Result<(), Error> {
        if line.is_empty() {
            self.dispatch(pending, sink);
            return Ok(());
        }
        let Some((field, value_start)) = split_field(line) else {
            return Ok(()); // A comment.
        };
        let value = &line[value_start..];
        let chunk_value = in_chunk.map(|chunk_line| &chunk_line[value_start..]);
        match field {
            b"data" => self.push_data(value, chunk_value, pending)?,
            b"event" => {
                pending.event_type = self.set_slot(Field::EventType, value, chunk_value);
            }
            // An id holding NUL is ignored.
            b"id" if memchr(0, value).is_none() => {
                pending.id = self.set_slot(Field::Id, value, chunk_value);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let millis = value.iter().fold(0_u64, |total, digit| {
                    total
                        .saturating_mul(10)
                        .saturating_add(u64::from(digit - b'0'))
                });
                sink.retry(millis);
            }
            _ => {} // Unknown fields, and invalid ids and retries, are ignored.
        }
        Ok(())
    }

    fn set_slot<'buf>(
        &mut self,
        field: Field,
        value: &[u8],
        chunk_value: Option<&'buf [u8]>,
    ) -> Slot<'buf> {
        match chunk_value {
            Some(view) => Slot::Chunk(view),
            None => {
                let buffer = match field {
                    Field::EventType => &mut self.event_type,
                    Field::Id => &mut self.id,
                };
                buffer.clear();
                buffer.extend_from_slice(value);
                Slot::Parked
            }
        }
    }

    fn push_data<'buf>(
        &mut self,
        value: &[u8],
        chunk_value: Option<&'buf [u8]>,
        pending: &mut Pending<'buf>,
    ) -> Result<(), Error> {
        let data_len = self.data_len + value.len() + 1;
        if data_len > self.limits.max_event_data {
            return Err(Error::EventTooLarge {
                limit: self.limits.max_event_data,
            });
        }
        if !self.has_data {
            self.has_data = true;
            pending.data = match chunk_value {
                Some(view) => Slot::Chunk(view),
                // `process_carried` moves a carried first data line in without this copy;
                // this keeps `process_line` correct for any line on its own.
                None => {
                    self.data.clear();
                    append(&mut self.data, value);
                    Slot::Parked
                }
            };
        } else {
            // A second data line: the values must be joined, so they are copied.
            if let Slot::Chunk(view) = pending.data {
                self.data.clear();
                append(&mut self.data, view);
                pending.data = Slot::Parked;
            } else if self.data_start > 0 {
                drop_front(&mut self.data, self.data_start);
                self.data_start = 0;
            }
            append(&mut self.data, b"\n");
            append(&mut self.data, value);
        }
        self.data_len = data_len;
        Ok(())
    }

    fn dispatch<S: Sink>(&mut self, pending: &mut Pending<'_>, sink: &mut S) {
        if self.has_data {
            let event_type = match pending.event_type {
                Slot::Chunk(view) => view,
                Slot::Parked => &self.event_type,
            };
            let id = match pending.id {
                Slot::Chunk(view) => view,
                Slot::Parked => &self.id,
            };
            let data = match pending.data {
                Slot::Chunk(view) => Data::View(view),
                Slot::Parked => Data::Parked {
                    buffer: &mut self.data,
                    start: self.data_start,
                },
            };
            let event_type = if event_type.is_empty() {
                MESSAGE
            } else {
                event_type
            };
            sink.event(event_type, id, data);
        }
        // The event type and data are reset at every blank line, dispatched or not.
        pending.data = Slot::Parked;
        pending.event_type = Slot::Parked;
        self.clear_event();
    }

    fn clear_event(&mut self) {
        self.data.clear();
        self.data_start = 0;
        self.has_data = false;
        self.data_len = 0;
        self.event_type.clear();
    }

    /// Copies the views still pending at the end of a chunk into the parser's buffers.
    fn park(&mut self, pending: &Pending<'_>) {
        if let Slot::Chunk(view) = pending.id {
            self.id.clear();
            self.id.extend_from_slice(view);
        }
        if let Slot::Chunk(view) = pending.event_type {
            self.event_type.clear();
            self.event_type.extend_from_slice(view);
        }
        if let Slot::Chunk(view) = pending.data {
            self.data.clear();
            append(&mut self.data, view);
            self.data_start = 0;
        }
    }

    fn fail(&mut self, error: &Error) {
        self.failed = error.clone_limit();
        self.line.clear();
        self.clear_event();
    }
}

/// The field name and where the value starts (after one optional space); `None` for a
/// comment.
///
/// Most lines of a stream are `data:` lines: their colon is known without a scan, so the bytes
/// of such a line are looked at once, by the search for its end.
fn split_field(line: &[u8]) -> Option<(&[u8], usize)> {
    let colon = if line.starts_with(b"data:") {
        4
    } else {
        match memchr(b':', line) {
            Some(0) => return None,
            Some(colon) => colon,
            None => return Some((line, line.len())),
        }
    };
    let skip_space = line.get(colon + 1) == Some(&b' ');
    Some((&line[..colon], colon + 1 + usize::from(skip_space)))
}

#[derive(Clone, Copy)]
enum Field {
    EventType,
    Id,
}

/// The block size of `EventParser::arena`, which holds only copied event types and ids: one
/// allocation serves many events, and once the caller has dropped them the block is reused in
/// place.
#[cfg(feature = "bytes")]
const ARENA_BLOCK: usize = 4 << 10;

/// The data parked in `buffer` from `start` on, split off as `Bytes` (no copy); the buffer keeps
/// the rest of its block for the next data.
#[cfg(feature = "bytes")]
fn take(buffer: &mut bytes::BytesMut, start: usize) -> bytes::Bytes {
    if buffer.len() <= start {
        buffer.clear();
        return bytes::Bytes::new();
    }
    let mut taken = buffer.split();
    bytes::Buf::advance(&mut taken, start);
    taken.freeze()
}

/// A `Bytes` for `part`: a slice of `chunk` when it lies within it, otherwise a copy carved
/// from `arena`.
#[cfg(feature = "bytes")]
fn view(chunk: &bytes::Bytes, part: &[u8], arena: &mut bytes::BytesMut) -> bytes::Bytes {
    let chunk_range = chunk.as_ptr_range();
    let part_range = part.as_ptr_range();
    if part.is_empty() {
        bytes::Bytes::new()
    } else if part.as_ptr() == MESSAGE.as_ptr() {
        bytes::Bytes::from_static(MESSAGE)
    } else if chunk_range.start <= part_range.start && part_range.end <= chunk_range.end {
        chunk.slice_ref(part)
    } else {
        if arena.capacity() < part.len() {
            arena.reserve(part.len().max(ARENA_BLOCK));
        }
        arena.extend_from_slice(part);
        arena.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parser: &mut EventParser, chunk: &[u8]) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        parser.feed(chunk, |item| match item {
            Item::Event(event) => out.push(event.data_lossy().into_owned()),
            Item::Retry(millis) => out.push(format!("retry {millis}")),
        })?;
        Ok(out)
    }

    #[test]
    fn an_event_ending_in_cr_cr_is_dispatched_without_waiting() {
        let mut parser = EventParser::new();
        assert_eq!(events(&mut parser, b"data: x\r\r").unwrap(), ["x"]);
        // The LF that may follow belongs to the last line end, not a new blank line.
        assert_eq!(
            events(&mut parser, b"\ndata: y\r").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(events(&mut parser, b"\n\n").unwrap(), ["y"]);
    }

    #[test]
    fn a_bom_is_stripped_only_at_the_very_start() {
        let mut parser = EventParser::new();
        assert!(events(&mut parser, b"\xEF").unwrap().is_empty());
        assert!(events(&mut parser, b"\xBB").unwrap().is_empty());
        assert_eq!(
            events(&mut parser, b"\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n").unwrap(),
            ["a"],
            "a second BOM is part of a field name, so the line is ignored"
        );
        let mut parser = EventParser::new();
        assert!(events(&mut parser, b"\xEF\xBB").unwrap().is_empty());
        assert!(events(&mut parser, b"data: c\n\n").unwrap().is_empty());
        assert!(!parser.finish());
    }

    #[test]
    fn a_long_line_is_refused_as_it_arrives_and_the_stream_stays_refused() {
        let mut parser = EventParser::with_limits(Limits::new(16, 1024));
        assert_eq!(events(&mut parser, b"data: ok\n\n").unwrap(), ["ok"]);
        assert!(events(&mut parser, b"data: 0123456").unwrap().is_empty());
        // No line end yet, but the line already passed the limit.
        let error = events(&mut parser, b"789abcdef").unwrap_err();
        assert!(matches!(error, Error::LineTooLong { limit: 16 }), "{error}");
        assert!(error.is_limit());
        assert!(events(&mut parser, b"\n\ndata: later\n\n").is_err());
        assert!(parser.finish(), "the broken event was discarded");
        assert_eq!(events(&mut parser, b"data: again\n\n").unwrap(), ["again"]);
    }

    #[test]
    fn event_data_is_bounded_counting_the_lfs_of_empty_data_lines() {
        let mut parser = EventParser::with_limits(Limits::new(1024, 4));
        // Four empty data lines make the buffer "\n\n\n\n": at the limit, three LFs of data.
        assert_eq!(
            events(&mut parser, b"data\ndata\ndata\ndata\n\n").unwrap(),
            ["\n\n\n"]
        );
        let error = events(&mut parser, b"data\ndata\ndata\ndata\ndata\n\n").unwrap_err();
        assert!(
            matches!(error, Error::EventTooLarge { limit: 4 }),
            "{error}"
        );
        // A data line still arriving counts against the event limit too.
        let mut parser = EventParser::with_limits(Limits::new(1024, 8));
        let error = events(&mut parser, b"data: 0123456789").unwrap_err();
        assert!(
            matches!(error, Error::EventTooLarge { limit: 8 }),
            "{error}"
        );
    }

    #[test]
    fn finish_reports_a_cut_off_event_and_keeps_the_last_id() {
        let mut parser = EventParser::new();
        assert!(events(&mut parser, b"id: 9\ndata: x\n").unwrap().is_empty());
        assert!(parser.finish());
        assert_eq!(parser.last_event_id(), b"9");
        assert!(events(&mut parser, b"data: y\n\n").unwrap() == ["y"]);
        assert!(!parser.finish());
    }

    #[test]
    fn retry_needs_all_digits_and_saturates() {
        let mut parser = EventParser::new();
        let out = events(
            &mut parser,
            b"retry: 5\nretry: +5\nretry:  5\nretry:\nretry: 5x\nretry: 99999999999999999999999\n",
        )
        .unwrap();
        assert_eq!(out, ["retry 5", format!("retry {}", u64::MAX).as_str()]);
    }

    #[test]
    fn fields_within_the_chunk_are_views_into_it() {
        let chunk = b"event: e\nid: 1\ndata: abc\n\n";
        let mut parser = EventParser::new();
        let range = chunk.as_ptr_range();
        let mut seen = 0;
        parser
            .feed(chunk, |item| {
                if let Item::Event(event) = item {
                    for field in [event.event_type(), event.data(), event.id()] {
                        assert!(range.contains(&field.as_ptr()), "{field:?} was copied");
                    }
                    seen += 1;
                }
            })
            .unwrap();
        assert_eq!(seen, 1);
    }

    #[cfg(feature = "bytes")]
    #[test]
    fn bytes_fields_are_slices_of_the_chunk() {
        let chunk = bytes::Bytes::from_static(b"id: 1\ndata: abc\n\ndata: d\n\n");
        let mut parser = EventParser::new();
        let mut kept = Vec::new();
        parser
            .feed_bytes(&chunk, |item| {
                if let Item::Event(event) = item {
                    kept.push(event);
                }
            })
            .unwrap();
        let range = chunk.as_ptr_range();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1].id(), b"1", "the id persists across events");
        for event in &kept {
            assert!(range.contains(&event.data().as_ptr()));
            assert!(range.contains(&event.id().as_ptr()));
        }
    }
}
