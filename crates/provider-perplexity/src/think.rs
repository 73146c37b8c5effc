//! Splits an inline `<think>…</think>` block off the start of streamed content, whatever the
//! chunk boundaries (tags may be cut anywhere, `</thi` | `nk>`).

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

#[derive(Debug, Default)]
enum State {
    /// Not yet known whether the content opens with `<think>`.
    #[default]
    Start,
    Thinking,
    /// After `</think>`: the blank lines before the answer are dropped.
    AnswerStart,
    Answer,
}

/// Text split from one delta.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Split {
    pub(crate) reasoning: String,
    pub(crate) text: String,
}

#[derive(Debug, Default)]
pub(crate) struct ThinkSplitter {
    state: State,
    /// Bytes held back because they may be the start of a tag.
    held: String,
    /// The block's text so far, in case `</think>` never comes.
    thought: String,
}

impl ThinkSplitter {
    pub(crate) fn push(&mut self, delta: &str) -> Split {
        let mut split = Split::default();
        if matches!(self.state, State::Answer) {
            // The common case, once past any think block: the delta is answer text as is.
            split.text.push_str(delta);
            return split;
        }
        self.held.push_str(delta);
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.held.trim_start();
                    if trimmed.starts_with(OPEN) {
                        let start = self.held.len() - trimmed.len() + OPEN.len();
                        self.held.drain(..start);
                        self.state = State::Thinking;
                    } else if OPEN.starts_with(trimmed) {
                        return split; // Could still become `<think>`.
                    } else {
                        self.state = State::Answer;
                    }
                }
                State::Thinking => {
                    if let Some(end) = self.held.find(CLOSE) {
                        split.reasoning.push_str(&self.held[..end]);
                        self.held.drain(..end + CLOSE.len());
                        self.thought = String::new();
                        self.state = State::AnswerStart;
                    } else {
                        let keep = partial_suffix(&self.held, CLOSE);
                        let emit = self.held.len() - keep;
                        split.reasoning.push_str(&self.held[..emit]);
                        self.thought.push_str(&self.held[..emit]);
                        self.held.drain(..emit);
                        return split;
                    }
                }
                State::AnswerStart => {
                    let trimmed = self.held.trim_start();
                    if trimmed.is_empty() {
                        self.held.clear();
                        return split;
                    }
                    let start = self.held.len() - trimmed.len();
                    self.held.drain(..start);
                    self.state = State::Answer;
                }
                State::Answer => {
                    split.text.push_str(&self.held);
                    self.held.clear();
                    return split;
                }
            }
        }
    }

    /// Bytes held for a possible tag or an unclosed block (counted against the answer's
    /// bound).
    pub(crate) fn held_bytes(&self) -> usize {
        self.held.len().saturating_add(self.thought.len())
    }

    /// The end of the content: whatever was held back is what it was. A block that was
    /// never closed was the answer after all (a model that forgot `</think>`, or a stream
    /// cut by `max_tokens`): its whole text comes out as answer text, so the answer is never
    /// lost in the reasoning. (What was already handed out as reasoning stays so.)
    pub(crate) fn finish(&mut self) -> Split {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Thinking => {
                let mut text = std::mem::take(&mut self.thought);
                text.push_str(&held);
                Split {
                    reasoning: String::new(),
                    text: text.trim_start().to_owned(),
                }
            }
            State::AnswerStart => Split::default(),
            State::Start | State::Answer => Split {
                reasoning: String::new(),
                text: held,
            },
        }
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `tag`.
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&length| {
            text.len() >= length
                && text.is_char_boundary(text.len() - length)
                && tag.starts_with(&text[text.len() - length..])
        })
        .unwrap_or(0)
}

/// Splits a whole content string: (reasoning, answer).
pub(crate) fn split_whole(content: &str) -> (String, String) {
    let mut splitter = ThinkSplitter::default();
    let mut split = splitter.push(content);
    let rest = splitter.finish();
    if splitter_was_unclosed(&split, &rest) {
        return (String::new(), rest.text);
    }
    split.reasoning.push_str(&rest.reasoning);
    split.text.push_str(&rest.text);
    (split.reasoning, split.text)
}

/// Whether a whole content's block was never closed: reasoning came out, no answer text did
/// until the end, where the block came back as the answer.
fn splitter_was_unclosed(split: &Split, rest: &Split) -> bool {
    split.text.is_empty()
        && !rest.text.is_empty()
        && rest.reasoning.is_empty()
        && !split.reasoning.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&str]) -> (String, String) {
        let mut splitter = ThinkSplitter::default();
        let (mut reasoning, mut text) = (String::new(), String::new());
        for piece in pieces {
            let split = splitter.push(piece);
            reasoning.push_str(&split.reasoning);
            text.push_str(&split.text);
        }
        let split = splitter.finish();
        reasoning.push_str(&split.reasoning);
        text.push_str(&split.text);
        (reasoning, text)
    }

    #[test]
    fn every_split_of_a_think_block_gives_the_same_parts() {
        let content = "<think>Let me search. a<b</think>\n\nOlympus Mons[1] é.";
        let expected = (
            "Let me search. a<b".to_owned(),
            "Olympus Mons[1] é.".to_owned(),
        );
        let boundaries: Vec<usize> = content
            .char_indices()
            .map(|(index, _)| index)
            .chain([content.len()])
            .collect();
        for &first in &boundaries {
            for &second in boundaries.iter().filter(|&&second| second >= first) {
                let pieces = [
                    &content[..first],
                    &content[first..second],
                    &content[second..],
                ];
                assert_eq!(run(&pieces), expected, "cut at {first} and {second}");
            }
        }
    }

    #[test]
    fn an_unclosed_think_block_comes_back_as_the_answer() {
        let mut splitter = ThinkSplitter::default();
        let first = splitter.push("<think>Olympus Mons");
        let second = splitter.push(" is the tallest.</thi");
        assert_eq!(
            first.reasoning + &second.reasoning,
            "Olympus Mons is the tallest."
        );
        let end = splitter.finish();
        assert_eq!(end.text, "Olympus Mons is the tallest.</thi");
        assert_eq!(
            split_whole("<think>The answer, never closed"),
            (String::new(), "The answer, never closed".to_owned())
        );
    }

    #[test]
    fn content_without_a_think_block_is_all_answer() {
        assert_eq!(
            run(&["<th", "is is text"]),
            (String::new(), "<this is text".to_owned())
        );
        assert_eq!(
            run(&["Hello", " world"]),
            (String::new(), "Hello world".to_owned())
        );
        assert_eq!(
            run(&["<"]),
            (String::new(), "<".to_owned()),
            "held bytes come out at the end"
        );
        assert_eq!(
            split_whole("<think>x</think>y"),
            ("x".to_owned(), "y".to_owned())
        );
    }
}
