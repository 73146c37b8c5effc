//! Deterministic answers: text, reasoning and sources derive from a hash of the model (or
//! preset) and the conversation, so tests know exactly what a complete answer is.

use crate::text::clip;
use resilience::backoff::SmallRng;
use serde_json::{Value, json};

/// A complete simulated answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Answer {
    /// The answer text, with `[n]` citation marks (no reasoning in it).
    pub text: String,
    /// The reasoning, for reasoning models and presets (empty otherwise).
    pub reasoning: String,
    /// Cited URLs, in citation order.
    pub citations: Vec<String>,
    /// The search results behind the citations.
    pub search_results: Vec<SearchResult>,
    /// Follow-up questions (sent only when asked for).
    pub related_questions: Vec<String>,
    /// Image URLs (sent only when asked for).
    pub images: Vec<String>,
    /// The function this answer calls instead of answering (then `text` is empty): when
    /// the question names an offered function.
    pub tool_call: Option<crate::tools::ToolCall>,
}

/// One simulated search result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SearchResult {
    /// Page title.
    pub title: String,
    /// Page address.
    pub url: String,
    /// Publication date (`None` for some, as the real service sends `null`).
    pub date: Option<String>,
    /// An excerpt.
    pub snippet: String,
}

impl SearchResult {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "title": self.title,
            "url": self.url,
            "date": self.date,
            "last_updated": "2026-03-14",
            "snippet": self.snippet,
            "source": "web",
        })
    }
}

const DOMAINS: &[&str] = &[
    "example.org",
    "example.edu",
    "science.example",
    "news.example",
    "wiki.example",
];

/// FNV-1a: stable across Rust versions and platforms, unlike the standard hashers.
pub(crate) fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xFF]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Whether a model or preset reasons before answering.
pub(crate) fn reasons(model: &str) -> bool {
    let model = crate::config::effort_level(model).unwrap_or(model);
    matches!(
        model,
        "sonar-reasoning-pro"
            | "sonar-deep-research"
            | "pro-search"
            | "deep-research"
            | "medium"
            | "high"
            | "xhigh"
    ) || model.contains("reasoning")
}

/// What a request's filters add to the results, so tests can see that they arrived.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filters {
    pub(crate) domains: Vec<String>,
    pub(crate) echo: Vec<String>,
}

impl Filters {
    /// The filters of a request: top-level fields for Sonar and the Search API; for the Agent
    /// API (a body with `input`), the `filters` of its `web_search` tool, where the real
    /// service reads them (top-level filter fields are not Agent API fields, and are ignored).
    pub(crate) fn from_request(request: &Value) -> Self {
        let body = if request.get("input").is_some() {
            request["tools"]
                .as_array()
                .and_then(|tools| tools.iter().find(|tool| tool["type"] == "web_search"))
                .map_or(&Value::Null, |tool| &tool["filters"])
        } else {
            request
        };
        let mut filters = Filters::default();
        if let Some(domains) = body["search_domain_filter"].as_array() {
            filters.domains = domains
                .iter()
                .filter_map(Value::as_str)
                .filter(|domain| !domain.starts_with('-'))
                .take(FILTER_DOMAINS)
                .map(|domain| clip(domain, ECHO_CHARS).to_owned())
                .collect();
        }
        for name in [
            "search_mode",
            "search_recency_filter",
            "search_after_date_filter",
            "search_before_date_filter",
            "last_updated_after_filter",
            "last_updated_before_filter",
            "search_domain_filter",
        ] {
            let value = &body[name];
            if !value.is_null() {
                let value = value.to_string();
                filters
                    .echo
                    .push(format!("{name}={}", clip(&value, ECHO_CHARS)));
            }
        }
        if let Some(size) = body["web_search_options"]["search_context_size"].as_str() {
            filters
                .echo
                .push(format!("search_context_size={}", clip(size, ECHO_CHARS)));
        }
        filters
    }
}

/// The answer the simulator gives to `model` (or preset) for `conversation` (the messages'
/// contents, in order), `words` words long, with `filters` echoed into the results.
pub(crate) fn answer(
    model: &str,
    conversation: &[&str],
    words: usize,
    filters: &Filters,
) -> Answer {
    let mut parts = vec![model];
    parts.extend_from_slice(conversation);
    let mut rng = SmallRng::seeded(stable_hash(&parts) | 1);
    let sources = 3 + rng.below(3);
    let domains: Vec<&str> = if filters.domains.is_empty() {
        DOMAINS.to_vec()
    } else {
        filters.domains.iter().map(String::as_str).collect()
    };
    let echo = if filters.echo.is_empty() {
        String::new()
    } else {
        format!(" [filters: {}]", filters.echo.join(", "))
    };
    let topic = topic(conversation.last().copied().unwrap_or_default());
    let (citations, search_results) = sources_found(&mut rng, sources, &domains, &topic, &echo);
    let text = answer_text(&mut rng, words, &topic, sources);
    let reasoning = if reasons(model) {
        format!(
            "Let me search for {topic}. I will compare what {} sources say, then summarise the points they agree on.",
            sources
        )
    } else {
        String::new()
    };
    let related_questions = [
        "What are the basics of {topic}?",
        "Who works on {topic} today?",
        "How has {topic} changed recently?",
    ]
    .iter()
    .map(|question| fill(question, &topic))
    .collect();
    let images = (0..2)
        .map(|index| {
            format!(
                "https://images.example/{}-{index}.jpg",
                rng.next_u64() % 10_000
            )
        })
        .collect();
    Answer {
        text,
        reasoning,
        citations,
        search_results,
        related_questions,
        images,
        tool_call: None,
    }
}

/// `count` sources on `domains` in turn (their URLs and dates drawn from `rng`), each
/// snippet about `topic` and echoing the filters.
fn sources_found(
    rng: &mut SmallRng,
    count: usize,
    domains: &[&str],
    topic: &str,
    echo: &str,
) -> (Vec<String>, Vec<SearchResult>) {
    let mut citations = Vec::new();
    let mut search_results = Vec::new();
    for index in 0..count {
        let domain = domains[index % domains.len()];
        let url = format!("https://{domain}/article-{}", rng.next_u64() % 100_000);
        citations.push(url.clone());
        search_results.push(SearchResult {
            title: format!("Source {} on {domain}", index + 1),
            url,
            date: (index % 3 != 2)
                .then(|| format!("2025-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28))),
            snippet: format!("A simulated page about {topic} on {domain}, for offline use.{echo}"),
        });
    }
    (citations, search_results)
}

/// `words` words about `topic`: the opening, then sentences drawn from `rng` (never the same
/// twice in a row), in paragraphs of three, each citing one of `sources`; the last cut to the
/// exact length.
fn answer_text(rng: &mut SmallRng, words: usize, topic: &str, sources: usize) -> String {
    let mut text = String::new();
    let mut written = 0;
    let mut sentences = 0;
    let mut previous = usize::MAX;
    while written < words {
        let template = if sentences == 0 {
            OPENING
        } else {
            let mut pick = rng.below(TEMPLATES.len());
            if pick == previous {
                pick = (pick + 1) % TEMPLATES.len();
            }
            previous = pick;
            TEMPLATES[pick]
        };
        let mut sentence = fill(template, topic);
        let mut length = sentence.split_whitespace().count();
        if written + length > words {
            length = words - written;
            sentence = sentence
                .split_whitespace()
                .take(length)
                .collect::<Vec<_>>()
                .join(" ");
            sentence = sentence.trim_end_matches([',', '—']).to_owned();
        }
        if sentences > 0 && sentences % 3 == 0 {
            text.push_str("\n\n");
        } else if !text.is_empty() {
            text.push(' ');
        }
        sentences += 1;
        text.push_str(&sentence);
        written += length;
        text.push_str(&format!(".[{}]", 1 + rng.below(sources)));
    }
    text
}

/// The first sentence of every answer: it says plainly what it is.
const OPENING: &str =
    "This answer about {topic} is simulated offline by pplx, not written by Perplexity";

/// Sentences of an answer, each about the question's topic (a few with non-ASCII characters,
/// so clients are tested on multi-byte text too).
const TEMPLATES: &[&str] = &[
    "{Topic} is a subject that many sources describe in some detail",
    "Most overviews of {topic} begin with a few basic ideas",
    "Researchers who study {topic} report steady progress year after year",
    "A naïve picture of {topic} misses several important details",
    "The key challenge with {topic} — as several sources note — is scale",
    "Experts often compare {topic} with older approaches to show what changed",
    "Recent work on {topic} focuses on reliability and cost",
    "Sources disagree about how quickly {topic} will become routine",
    "Put simply, {topic} rests on a small number of clear principles",
    "A good résumé of {topic} lists its open questions as well as its results",
    "Introductions to {topic} are easy to find, from textbooks to a café-table chat",
    "Much of what is written about {topic} repeats the same few findings",
];

/// Words that say nothing about a question's topic.
const STOPWORDS: &[&str] = &[
    "explain",
    "what",
    "how",
    "why",
    "when",
    "where",
    "which",
    "who",
    "tell",
    "about",
    "does",
    "describe",
    "please",
    "the",
    "and",
    "for",
    "with",
    "that",
    "this",
    "are",
    "is",
    "was",
    "can",
    "you",
    "your",
    "me",
    "of",
    "in",
    "on",
    "a",
    "an",
    "to",
    "do",
    "give",
    "summarise",
    "summarize",
    "latest",
    "research",
];

/// The most characters of one word the topic keeps: every sentence of an answer repeats the
/// topic and every Sonar chunk repeats the answer so far, so an unbounded word would make a
/// request's work quadratic in its length.
pub(crate) const TOPIC_WORD_CHARS: usize = 24;

/// The most characters of one echoed filter value: it is repeated in every search result of
/// every chunk.
const ECHO_CHARS: usize = 80;

/// The most domains taken from a domain filter (the real service takes 20).
const FILTER_DOMAINS: usize = 20;

/// The longest model name the Agent API takes (`provider/model` names are far shorter); a
/// longer one is refused, as it would be repeated in every response object.
pub(crate) const MODEL_CHARS: usize = 128;

/// The most characters of a question an Agent search query repeats.
pub(crate) const QUERY_CHARS: usize = 200;

/// The topic of a question: up to four of its meaningful words, in order, each cut to
/// [`TOPIC_WORD_CHARS`] characters, so a topic is short whatever the question.
fn topic(question: &str) -> String {
    let words: Vec<String> = question
        .split(|character: char| !character.is_alphanumeric() && character != '-')
        .filter(|word| word.chars().nth(2).is_some())
        .map(|word| clip(word, TOPIC_WORD_CHARS).to_lowercase())
        .filter(|word| !STOPWORDS.contains(&word.as_str()))
        .take(4)
        .collect();
    if words.is_empty() {
        "your question".to_owned()
    } else {
        words.join(" ")
    }
}

fn fill(template: &str, topic: &str) -> String {
    let mut capitalised = String::new();
    let mut chars = topic.chars();
    if let Some(first) = chars.next() {
        capitalised.extend(first.to_uppercase());
        capitalised.push_str(chars.as_str());
    }
    template
        .replace("{Topic}", &capitalised)
        .replace("{topic}", topic)
}

/// Cuts `text` into pieces of `chars` characters (never inside a UTF-8 sequence).
pub(crate) fn pieces(text: &str, chars: usize) -> Vec<&str> {
    let chars = chars.max(1);
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (index, _) in text.char_indices() {
        if count == chars {
            pieces.push(&text[start..index]);
            start = index;
            count = 0;
        }
        count += 1;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Words, as the simulator counts tokens.
pub(crate) fn token_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The first `words` words of `text` (its whitespace kept), and whether it was cut.
pub(crate) fn truncate_words(text: &str, words: usize) -> (&str, bool) {
    let mut seen = 0;
    let mut in_word = false;
    for (index, character) in text.char_indices() {
        if character.is_whitespace() {
            in_word = false;
        } else if !in_word {
            in_word = true;
            if seen == words {
                return (text[..index].trim_end(), true);
            }
            seen += 1;
        }
    }
    (text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_deterministic_and_differ_by_request() {
        let filters = Filters::default();
        let first = answer("sonar", &["Explain quantum computing"], 40, &filters);
        assert_eq!(
            first,
            answer("sonar", &["Explain quantum computing"], 40, &filters)
        );
        assert_ne!(
            first.text,
            answer("sonar-pro", &["Explain quantum computing"], 40, &filters).text
        );
        assert_eq!(token_count(&first.text), 40);
        assert!(first.reasoning.is_empty());
        assert!(
            !answer("sonar-reasoning-pro", &["x"], 10, &filters)
                .reasoning
                .is_empty()
        );
    }

    #[test]
    fn offline_answers_read_as_prose_about_the_question_and_say_they_are_simulated() {
        let filters = Filters::default();
        let answer = answer("sonar", &["Explain quantum computing"], 60, &filters);
        assert!(
            answer
                .text
                .starts_with("This answer about quantum computing is simulated offline by pplx"),
            "{}",
            answer.text
        );
        assert!(
            answer.text.matches("quantum computing").count() >= 3,
            "{}",
            answer.text
        );
        assert_eq!(token_count(&answer.text), 60);
        for sentence in answer.text.split(". ") {
            assert!(sentence.split_whitespace().count() >= 3, "{sentence:?}");
        }
        assert_eq!(topic("What is the tallest volcano?"), "tallest volcano");
        assert_eq!(topic("??"), "your question");
    }

    #[test]
    fn pieces_split_on_characters() {
        assert_eq!(pieces("naïve café", 3), ["naï", "ve ", "caf", "é"]);
        assert_eq!(pieces("", 3), Vec::<&str>::new());
        assert_eq!(truncate_words("a b  c d", 2), ("a b", true));
        assert_eq!(truncate_words("a b", 5), ("a b", false));
    }
}
