//! Markdown rendered as it streams, for a terminal: each finished line is rendered (headings,
//! lists, bold, inline code, citation marks, code fences), the line still arriving is shown
//! plainly and redrawn rendered once its end comes. An unclosed code fence is closed for
//! display at the end. Piped output gets the plain text instead.

use std::io::{self, Write};

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const CYAN: &str = "\x1b[36m";
const BLUE: &str = "\x1b[34m";

pub(crate) struct Renderer<W: Write> {
    out: W,
    styled: bool,
    width: usize,
    in_code: bool,
    /// The line still arriving; its words are on screen, word-wrapped, all but the last one
    /// (`pending`, shown once it ends). `column` and `rows` say where the shown part ends.
    line: String,
    pending: String,
    column: usize,
    rows: usize,
    /// Reasoning was shown and the answer has not started: the answer starts on a line of
    /// its own, after a blank one (whether the reasoning ended its last line).
    after_reasoning: Option<bool>,
}

impl<W: Write> Renderer<W> {
    pub(crate) fn new(out: W, styled: bool, width: usize) -> Self {
        Renderer {
            out,
            styled,
            width: width.max(20),
            in_code: false,
            line: String::new(),
            pending: String::new(),
            column: 0,
            rows: 0,
            after_reasoning: None,
        }
    }

    /// Adds answer text.
    pub(crate) fn push(&mut self, text: &str) -> io::Result<()> {
        if let Some(ended_line) = self.after_reasoning.take() {
            self.out
                .write_all(if ended_line { b"\n" } else { b"\n\n" })?;
        }
        if !self.styled {
            self.out.write_all(text.as_bytes())?;
            return self.out.flush();
        }
        let mut rest = text;
        while let Some(end) = rest.find('\n') {
            self.line.push_str(&rest[..end]);
            self.pending.push_str(&rest[..end]);
            self.finish_line()?;
            rest = &rest[end + 1..];
        }
        self.line.push_str(rest);
        self.pending.push_str(rest);
        // The open line, plainly and word-wrapped, as its words end.
        if let Some(end) = self.pending.rfind(' ') {
            let ended: String = self.pending.drain(..=end).collect();
            let wrapped = wrap(&ended, self.width, &mut self.column, &mut self.rows);
            self.out.write_all(wrapped.as_bytes())?;
        }
        self.out.flush()
    }

    /// Text shown dimmed (reasoning), kept apart from the answer.
    pub(crate) fn dim(&mut self, text: &str) -> io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        self.after_reasoning = Some(text.ends_with('\n'));
        if self.styled {
            write!(self.out, "{DIM}{text}{RESET}")?;
        } else {
            self.out.write_all(text.as_bytes())?;
        }
        self.out.flush()
    }

    fn finish_line(&mut self) -> io::Result<()> {
        let line = std::mem::take(&mut self.line);
        self.pending.clear();
        let (column, rows) = (
            std::mem::take(&mut self.column),
            std::mem::take(&mut self.rows),
        );
        // Erase the plain start of the line, over as many screen rows as it took, then redraw
        // it rendered and word-wrapped. (Characters are counted as columns: wide characters
        // may misjudge it.)
        if column > 0 || rows > 0 {
            if rows > 0 {
                write!(self.out, "\x1b[{rows}A")?;
            }
            write!(self.out, "\r\x1b[J")?;
        }
        let rendered = self.render_line(&line);
        let (mut column, mut rows) = (0, 0);
        let wrapped = wrap(&rendered, self.width, &mut column, &mut rows);
        writeln!(self.out, "{wrapped}")
    }

    fn render_line(&mut self, line: &str) -> String {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            self.in_code = !self.in_code;
            return format!("{DIM}{line}{RESET}");
        }
        if self.in_code {
            return format!("{CYAN}{line}{RESET}");
        }
        if let Some(heading) = ["### ", "## ", "# "]
            .iter()
            .find_map(|mark| trimmed.strip_prefix(mark))
        {
            return format!("{BOLD}{}{RESET}", inline(heading));
        }
        for bullet in ["- ", "* ", "+ "] {
            if let Some(item) = trimmed.strip_prefix(bullet) {
                let indent = &line[..line.len() - trimmed.len()];
                return format!("{indent}• {}", inline(item));
            }
        }
        inline(line)
    }

    /// The end of the answer: the open line rendered, an unclosed fence closed for display.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if self.styled {
            if !self.line.is_empty() {
                self.finish_line()?;
            }
            if self.in_code {
                writeln!(self.out, "{DIM}```{RESET}")?;
                self.in_code = false;
            }
            write!(self.out, "{RESET}")?;
        } else {
            writeln!(self.out)?;
        }
        self.out.flush()
    }

    #[cfg(test)]
    pub(crate) fn into_inner(self) -> W {
        self.out
    }
}

/// `text` broken into rows of at most `width` visible characters at its spaces, going on from
/// `column` (a word that does not fit goes to the next row; one longer than a row is cut).
/// SGR sequences (`ESC [ ... m`) take no columns. `column` and `rows` are moved on.
fn wrap(text: &str, width: usize, column: &mut usize, rows: &mut usize) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut new_row = |out: &mut String, column: &mut usize| {
        out.push('\n');
        *column = 0;
        *rows += 1;
    };
    for (index, word) in text.split(' ').enumerate() {
        if index > 0 {
            // The space before this word, unless it falls at a row's end.
            if *column >= width {
                new_row(&mut out, column);
            } else {
                out.push(' ');
                *column += 1;
            }
        }
        let visible = visible_width(word);
        if *column > 0 && *column + visible > width {
            if out.ends_with(' ') {
                out.pop();
            }
            new_row(&mut out, column);
        }
        let mut chars = word.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // An escape sequence, whole and of no width.
                out.push(c);
                for next in chars.by_ref() {
                    out.push(next);
                    if next.is_ascii_alphabetic() {
                        break;
                    }
                }
                continue;
            }
            if *column >= width {
                new_row(&mut out, column);
            }
            out.push(c);
            *column += 1;
        }
    }
    out
}

/// The columns `text` takes: its characters, escape sequences left out.
fn visible_width(text: &str) -> usize {
    visible_chars(text).count()
}

/// The characters of `text` a terminal shows: escape sequences (`ESC`, then up to the first
/// letter) left out.
fn visible_chars(text: &str) -> impl Iterator<Item = char> + '_ {
    let mut escaped = false;
    text.chars().filter(move |&c| {
        if escaped {
            escaped = !c.is_ascii_alphabetic();
            false
        } else if c == '\x1b' {
            escaped = true;
            false
        } else {
            true
        }
    })
}

/// Bold, inline code and citation marks within a line.
fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
        {
            out.push_str(&format!("{BOLD}{}{RESET}", &after[..end]));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('`')
            && let Some(end) = after.find('`')
        {
            out.push_str(&format!("{CYAN}{}{RESET}", &after[..end]));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('[')
            && let Some(end) = after.find(']')
            && end > 0
            && after[..end].bytes().all(|byte| byte.is_ascii_digit())
        {
            out.push_str(&format!("{BLUE}[{}]{RESET}", &after[..end]));
            rest = &after[end + 1..];
        } else {
            let next = rest.chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(pieces: &[&str], styled: bool) -> String {
        let mut renderer = Renderer::new(Vec::new(), styled, 80);
        for piece in pieces {
            renderer.push(piece).unwrap();
        }
        renderer.finish().unwrap();
        String::from_utf8(renderer.into_inner()).unwrap()
    }

    #[test]
    fn piped_output_is_the_plain_text() {
        assert_eq!(
            render(&["# Ti", "tle\n**bo", "ld** [1]"], false),
            "# Title\n**bold** [1]\n"
        );
    }

    #[test]
    fn finished_lines_are_rendered_and_the_open_line_is_shown_plainly_first() {
        let out = render(&["# Ti", "tle\n- item **b**\n", "```\ncode"], true);
        assert!(
            out.starts_with("# "),
            "the open line appears as its words end: {out:?}"
        );
        assert!(
            out.contains(&format!("\r\x1b[J{BOLD}Title{RESET}\n")),
            "{out:?}"
        );
        assert!(out.contains(&format!("• item {BOLD}b{RESET}")), "{out:?}");
        assert!(out.contains(&format!("{CYAN}code{RESET}")), "{out:?}");
        assert!(
            out.ends_with(&format!("{DIM}```{RESET}\n{RESET}")),
            "the fence is closed for display: {out:?}"
        );
    }

    #[test]
    fn a_line_longer_than_the_terminal_is_word_wrapped_and_erased_over_all_its_rows() {
        let words = "Olympus Mons is the tallest volcano in the solar system [1] and **very** wide";
        let mut renderer = Renderer::new(Vec::new(), true, 20);
        for piece in words.split_inclusive(' ') {
            renderer.push(piece).unwrap();
        }
        let streamed = String::from_utf8(renderer.out.clone()).unwrap();
        renderer.push("\n").unwrap();
        let out = String::from_utf8(renderer.into_inner()).unwrap();
        // While it streams: rows of whole words, none over 20 columns.
        for row in streamed.split('\n') {
            assert!(visible_width(row) <= 20, "{row:?} in {streamed:?}");
        }
        let rows_up = streamed.matches('\n').count();
        assert!(rows_up >= 3, "{streamed:?}");
        // Then erased over all its rows and drawn again rendered, still wrapped at words.
        let erase = format!("\x1b[{rows_up}A\r\x1b[J");
        let redrawn = &out[out.find(&erase).expect("erased over its rows") + erase.len()..];
        let mut plain = String::new();
        for row in redrawn.trim_end_matches('\n').split('\n') {
            assert!(visible_width(row) <= 20, "{row:?} in {redrawn:?}");
            plain.extend(visible_chars(row));
            plain.push(' ');
        }
        assert_eq!(
            plain.trim_end(),
            words.replace("**", ""),
            "every word whole, in order"
        );
    }

    #[test]
    fn a_word_longer_than_a_row_is_cut_at_the_row() {
        let (mut column, mut rows) = (0, 0);
        assert_eq!(
            wrap(&"x".repeat(45), 20, &mut column, &mut rows),
            format!("{}\n{}\n{}", "x".repeat(20), "x".repeat(20), "x".repeat(5))
        );
        assert_eq!((column, rows), (5, 2));
    }

    #[test]
    fn reasoning_is_kept_apart_from_the_answer_when_piped() {
        let mut renderer = Renderer::new(Vec::new(), false, 80);
        renderer.dim("Let me search.").unwrap();
        renderer.dim(" Two sources agree.").unwrap();
        renderer.push("Olympus Mons").unwrap();
        renderer.push(" is tallest.").unwrap();
        renderer.finish().unwrap();
        assert_eq!(
            String::from_utf8(renderer.out).unwrap(),
            "Let me search. Two sources agree.\n\nOlympus Mons is tallest.\n"
        );
    }

    #[test]
    fn citation_marks_and_inline_code_are_styled() {
        assert_eq!(
            inline("a [12] `x` [b]"),
            format!("a {BLUE}[12]{RESET} {CYAN}x{RESET} [b]")
        );
    }
}
