//! The operator's word list (`--blocked-words`): one word or phrase per
//! line, matched case-insensitively on word boundaries, all at once.
//!
//! One Aho-Corasick automaton over every entry finds every occurrence of
//! any of them in a single pass over the text, whatever the number of
//! entries; a match counts only when it is not inside a longer word (the
//! characters before and after it are not letters, digits or `_`).
//! Case-insensitivity is ASCII case folding in the automaton plus
//! lower-casing both the list and the text for other scripts: the text is
//! lower-cased into a reused buffer only when it has non-ASCII letters.
//! Lines are trimmed; empty lines and lines starting with `#` are skipped.
//! The automaton is immutable after start, so every loop reads it without
//! a lock.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// Up to this many entries the automaton is a DFA: about twice as fast
/// per message as the crate's default NFA here, for about 2 MiB per 1,000
/// entries (BENCHMARKS.md "Word list"); longer lists let the crate choose,
/// to keep memory and start-up time in bounds.
const MAX_DFA_ENTRIES: usize = 10_000;

/// The compiled list.
#[derive(Debug)]
pub struct WordList {
    matcher: AhoCorasick,
    words: usize,
}

impl WordList {
    /// Builds the matcher from the file's text; None when it holds no word.
    pub fn new(text: &str) -> Result<Option<WordList>, String> {
        let words: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_lowercase)
            .collect();
        if words.is_empty() {
            return Ok(None);
        }
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind((words.len() <= MAX_DFA_ENTRIES).then_some(AhoCorasickKind::DFA))
            .build(&words)
            .map_err(|e| e.to_string())?;
        Ok(Some(WordList {
            matcher,
            words: words.len(),
        }))
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.words
    }

    /// Never true: an empty list is not built (`WordList::new` gives None).
    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// Whether `text` contains a listed word or phrase as a whole word.
    pub fn matches(&self, text: &str) -> bool {
        if text.is_ascii() {
            return self.scan(text);
        }
        self.scan(&text.to_lowercase())
    }

    fn scan(&self, text: &str) -> bool {
        // Overlapping matches: a match inside a word must not hide one
        // that starts at the same place and ends on a boundary.
        self.matcher
            .find_overlapping_iter(text)
            .any(|m| boundary_before(text, m.start()) && boundary_after(text, m.end()))
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn boundary_before(text: &str, at: usize) -> bool {
    text.get(..at)
        .and_then(|s| s.chars().next_back())
        .map_or(true, |c| !is_word_char(c))
}

fn boundary_after(text: &str, at: usize) -> bool {
    text.get(at..)
        .and_then(|s| s.chars().next())
        .map_or(true, |c| !is_word_char(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> WordList {
        WordList::new(text).unwrap().unwrap()
    }

    #[test]
    fn whole_words_any_case() {
        let w = list("spam\n  buy now \n# a comment\n\nass\n");
        assert_eq!(w.len(), 3);
        assert!(w.matches("SPAM"));
        assert!(w.matches("this is spam!"));
        assert!(w.matches("Buy Now, friend"));
        assert!(!w.matches("spammer"));
        assert!(!w.matches("class assignment"), "inside longer words");
        assert!(w.matches("you ass."));
        assert!(!w.matches("buy  now"));
        assert!(!w.matches("hello"));
    }

    #[test]
    fn overlapping_entries_and_other_scripts() {
        let w = list("ab\nabc\nстоп\n");
        assert!(w.matches("abc"), "the longer entry ends on a boundary");
        assert!(w.matches("x ab"));
        assert!(!w.matches("abcd"));
        assert!(w.matches("СТОП сейчас"));
        assert!(!w.matches("стопка"));
        assert!(w.matches("_ ab _"));
        assert!(!w.matches("_ab"));
    }

    #[test]
    fn an_empty_list_is_none() {
        assert!(WordList::new("\n# only comments\n").unwrap().is_none());
    }
}

#[cfg(test)]
mod size {
    /// The DFA's size for 1,000 entries like the bench's (printed; the
    /// bound is asserted loosely so a crate update cannot blow it up).
    #[test]
    fn a_thousand_entries_take_under_4_mib() {
        let text: String = (0..1000)
            .map(|i| format!("entry{i}word{}\n", i * 7919 % 1000))
            .collect();
        let list = super::WordList::new(&text).unwrap().unwrap();
        let bytes = list.matcher.memory_usage();
        println!("1000 entries: {bytes} bytes");
        assert!(bytes < 4 << 20, "{bytes}");
    }
}
