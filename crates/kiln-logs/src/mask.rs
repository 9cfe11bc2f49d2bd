//! Secret masking: one Aho-Corasick automaton over every secret value of a run, applied to each
//! line before it is stored or streamed.
//!
//! Invariant: every byte of `text` covered by an occurrence of any accepted secret is replaced,
//! even where occurrences of different secrets overlap (their spans are merged into one `***`).

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// What replaces each masked span.
pub const MASK: &str = "***";

/// Values with fewer characters than this (after splitting into lines) are not masked.
///
/// Masking `a` or `1` would shred every line of output and, by the pattern of `***`, reveal the
/// secret anyway; such values are not secrets worth the name. Three characters is the shortest
/// value masked.
pub const MIN_SECRET_CHARS: usize = 3;

/// Replaces occurrences of secret values in log lines with [`MASK`].
///
/// Rule for which values are masked: each value is split into lines (on `\n`, with a trailing
/// `\r` removed) because log lines never contain a line break, so a multi-line secret (a PEM
/// key) can only ever appear line by line. Every piece with at least [`MIN_SECRET_CHARS`]
/// characters is a pattern; shorter pieces and empty values are ignored. Duplicates are fine.
///
/// Matching uses one automaton and finds overlapping occurrences, then merges overlapping or
/// touching spans, so with secrets `abcdef` and `defgh` the line `xabcdefghx` becomes `x***x`
/// (a leftmost-longest, non-overlapping search would leave `gh` visible).
///
/// The automaton is built on the first line masked, not by [`Masker::new`]: a task that
/// prints nothing (most indexes of a job array) never pays for it.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// The patterns, sorted and distinct; empty when there is nothing to mask.
    patterns: Vec<String>,
    /// Built from `patterns` when first needed.
    matcher: std::sync::OnceLock<Matcher>,
}

/// How the patterns are searched.
#[derive(Debug, Clone)]
enum Matcher {
    /// The normal case: one automaton, overlapping search.
    Automaton(AhoCorasick),
    /// Fallback when the automaton cannot be built.
    Plain(Vec<String>),
}

impl Masker {
    /// A masker that masks nothing.
    pub fn none() -> Masker {
        Masker::default()
    }

    /// Builds a masker from secret values, applying the rule documented on [`Masker`].
    ///
    /// Never fails: should the automaton be impossible to build (pattern sets far beyond any
    /// real run), it falls back to masking each pattern with a plain substring search.
    pub fn new<I, S>(secrets: I) -> Masker
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns: Vec<String> = Vec::new();
        for secret in secrets {
            for piece in secret.as_ref().split('\n') {
                let piece = piece.strip_suffix('\r').unwrap_or(piece);
                if piece.chars().count() >= MIN_SECRET_CHARS {
                    patterns.push(piece.to_owned());
                }
            }
        }
        patterns.sort_unstable();
        patterns.dedup();
        Masker { patterns, matcher: std::sync::OnceLock::new() }
    }

    /// The automaton over the patterns, built on first use.
    fn matcher(&self) -> &Matcher {
        self.matcher.get_or_init(|| {
            match AhoCorasickBuilder::new().match_kind(MatchKind::Standard).build(&self.patterns) {
                Ok(automaton) => Matcher::Automaton(automaton),
                // Only past the automaton's size limits (far beyond any real run): mask more
                // slowly rather than not at all.
                Err(_) => Matcher::Plain(self.patterns.clone()),
            }
        })
    }

    /// How many distinct patterns are masked.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// True when this masker masks nothing.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Returns `text` with every occurrence of a secret replaced by [`MASK`]; borrows `text`
    /// unchanged when it contains none (the common case costs one scan and no allocation).
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.patterns.is_empty() {
            return Cow::Borrowed(text);
        }
        let matcher = self.matcher();
        // Merge spans as they come: overlapping matches arrive ordered by end, so keep a
        // stack of disjoint spans and fold each new span into those it overlaps.
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut push = |start: usize, end: usize| {
            let mut start = start;
            let mut end = end;
            while let Some(&(s, e)) = spans.last() {
                if e >= start && s <= end {
                    start = start.min(s);
                    end = end.max(e);
                    spans.pop();
                } else {
                    break;
                }
            }
            spans.push((start, end));
        };
        match matcher {
            Matcher::Automaton(automaton) => {
                for m in automaton.find_overlapping_iter(text) {
                    push(m.start(), m.end());
                }
            }
            Matcher::Plain(patterns) => {
                let mut found: Vec<(usize, usize)> = patterns
                    .iter()
                    .flat_map(|p| text.match_indices(p.as_str()))
                    .map(|(start, p)| (start, start + p.len()))
                    .collect();
                found.sort_unstable_by_key(|&(start, end)| (end, start));
                for (start, end) in found {
                    push(start, end);
                }
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            // Spans come from whole UTF-8 patterns matched in UTF-8 text: always on char
            // boundaries, so slicing cannot panic; `get` keeps it that way regardless.
            out.push_str(text.get(at..start).unwrap_or_default());
            out.push_str(MASK);
            at = end;
        }
        out.push_str(text.get(at..).unwrap_or_default());
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(secrets: &[&str], line: &str, expect: &str) {
        let masker = Masker::new(secrets);
        assert_eq!(masker.mask(line), expect, "secrets {secrets:?}, line {line:?}");
    }

    #[test]
    fn masks_every_occurrence() {
        check(&["hunter2"], "pw=hunter2 again hunter2", "pw=*** again ***");
    }

    #[test]
    fn secrets_at_line_ends() {
        check(&["s3cret"], "s3cret", "***");
        check(&["s3cret"], "s3cret tail", "*** tail");
        check(&["s3cret"], "head s3cret", "head ***");
        check(&["s3cret"], "s3crets3cret", "***");
    }

    #[test]
    fn overlapping_secrets_are_merged() {
        check(&["abcdef", "defgh"], "xabcdefghx", "x***x");
        check(&["defgh", "abcdef"], "xabcdefghx", "x***x");
        // One secret inside another.
        check(&["token", "mytokenvalue"], "a mytokenvalue b token", "a *** b ***");
        // Touching occurrences become one span.
        check(&["abc", "def"], "abcdef", "***");
        // Self-overlap.
        check(&["aaa"], "aaaa", "***");
    }

    #[test]
    fn short_and_empty_values_are_ignored() {
        let masker = Masker::new(["", "a", "ab"]);
        assert!(masker.is_empty());
        assert_eq!(masker.mask("a b ab"), "a b ab");
        check(&["abc"], "abc", "***");
        // Characters, not bytes: two chars of four bytes each are still too short.
        check(&["éé"], "éé", "éé");
        check(&["ééé"], "xéééx", "x***x");
    }

    #[test]
    fn multi_line_secrets_mask_line_by_line() {
        let key = "-----BEGIN KEY-----\r\nAAAABBBBCCCC\nx\n-----END KEY-----";
        let masker = Masker::new([key]);
        assert_eq!(masker.len(), 3);
        assert_eq!(masker.mask("AAAABBBBCCCC"), "***");
        assert_eq!(masker.mask("x marks"), "x marks");
    }

    #[test]
    fn unchanged_lines_are_borrowed() {
        let masker = Masker::new(["secret"]);
        assert!(matches!(masker.mask("nothing here"), Cow::Borrowed(_)));
        assert!(matches!(Masker::none().mask("secret"), Cow::Borrowed(_)));
    }
}
