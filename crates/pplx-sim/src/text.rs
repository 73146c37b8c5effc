//! Text helpers every module may use (a leaf: it imports nothing of the crate).

/// The first `chars` characters of `text`.
pub(crate) fn clip(text: &str, chars: usize) -> &str {
    text.char_indices()
        .nth(chars)
        .map_or(text, |(index, _)| &text[..index])
}
