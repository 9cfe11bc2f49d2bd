//! Turns byte chunks (pipe reads, Docker log frames) into [`LogLine`]s.
//!
//! Invariants: a line never holds its line ending (`\n` or `\r\n`), never exceeds
//! [`MAX_LINE_BYTES`] bytes of input (longer ones are split, at a UTF-8 character boundary when
//! there is one nearby), and a partial last line is kept until more bytes or
//! [`finish`](LineSplitter::finish). [`OutputSplitter`] also keeps timestamps from going
//! backwards when the wall clock steps back.

use chrono::{DateTime, Utc};

use crate::{LogLine, Stream};

/// Longest line, in bytes of input, before it is split into several lines.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Smallest accepted line cap, so that a UTF-8 character always fits in one piece.
const MIN_LINE_BYTES: usize = 8;

/// Splits the bytes of one output stream into lines.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    stream: Stream,
    max: usize,
    partial: Vec<u8>,
}

impl LineSplitter {
    /// A splitter for `stream` that caps lines at [`MAX_LINE_BYTES`].
    pub fn new(stream: Stream) -> LineSplitter {
        LineSplitter::with_max_line(stream, MAX_LINE_BYTES)
    }

    /// A splitter for `stream` that caps lines at `max` bytes (at least 8).
    pub fn with_max_line(stream: Stream, max: usize) -> LineSplitter {
        LineSplitter { stream, max: max.max(MIN_LINE_BYTES), partial: Vec::new() }
    }

    /// The stream this splitter reads.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// Bytes of the partial last line held back so far.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Feeds `chunk` and returns the lines it completes, all stamped with `time`.
    pub fn push(&mut self, chunk: &[u8], time: DateTime<Utc>) -> Vec<LogLine> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.append(&rest[..i], time, &mut out);
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            out.push(self.line(line, time));
            rest = &rest[i + 1..];
        }
        self.append(rest, time, &mut out);
        out
    }

    /// Ends the stream: returns the partial last line, if any, stamped with `time`.
    pub fn finish(&mut self, time: DateTime<Utc>) -> Option<LogLine> {
        if self.partial.is_empty() {
            return None;
        }
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(self.line(line, time))
    }

    /// Appends bytes without a newline, emitting capped pieces as the line grows too long.
    ///
    /// `partial` holds at most `max` bytes, plus a trailing `\r` that may still turn out to
    /// be the start of a `\r\n` line ending.
    fn append(&mut self, mut bytes: &[u8], time: DateTime<Utc>, out: &mut Vec<LogLine>) {
        loop {
            let total = self.partial.len() + bytes.len();
            let last = bytes.last().or(self.partial.last()).copied();
            if total <= self.max || (total == self.max + 1 && last == Some(b'\r')) {
                self.partial.extend_from_slice(bytes);
                return;
            }
            // More than `max` bytes of content: cut `partial` once it is full.
            let next = if self.partial.len() > self.max {
                // The held-back `\r` is content after all.
                self.partial.pop();
                b'\r'
            } else {
                let room = self.max - self.partial.len();
                self.partial.extend_from_slice(&bytes[..room]);
                let next = bytes[room];
                bytes = &bytes[room + 1..];
                next
            };
            let cut = self.cut_point(next);
            let mut rest = self.partial.split_off(cut);
            rest.push(next);
            let piece = std::mem::replace(&mut self.partial, rest);
            out.push(self.line(piece, time));
        }
    }

    /// Where to cut a full `partial` followed by `next`: before a UTF-8 character that would
    /// otherwise be split (invalid input is cut at the cap).
    fn cut_point(&self, next: u8) -> usize {
        let len = self.partial.len();
        let is_continuation = |b: u8| b & 0b1100_0000 == 0b1000_0000;
        if !is_continuation(next) {
            return len;
        }
        (1..4).map(|back| len - back).find(|&p| !is_continuation(self.partial[p])).unwrap_or(len)
    }

    fn line(&self, bytes: Vec<u8>, time: DateTime<Utc>) -> LogLine {
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        LogLine { stream: self.stream, time, text }
    }
}

/// Splits both output streams of one task, stamping lines with times that never go backwards.
#[derive(Debug, Clone)]
pub struct OutputSplitter {
    stdout: LineSplitter,
    stderr: LineSplitter,
    last: Option<DateTime<Utc>>,
}

impl Default for OutputSplitter {
    fn default() -> Self {
        OutputSplitter::new()
    }
}

impl OutputSplitter {
    /// A splitter for stdout and stderr, capping lines at [`MAX_LINE_BYTES`].
    pub fn new() -> OutputSplitter {
        OutputSplitter {
            stdout: LineSplitter::new(Stream::Stdout),
            stderr: LineSplitter::new(Stream::Stderr),
            last: None,
        }
    }

    /// Feeds a chunk of `stream`, stamped with the current time.
    pub fn push(&mut self, stream: Stream, chunk: &[u8]) -> Vec<LogLine> {
        self.push_at(stream, chunk, Utc::now())
    }

    /// Feeds a chunk of `stream` seen at `time` (raised to the last time used, if earlier).
    pub fn push_at(&mut self, stream: Stream, chunk: &[u8], time: DateTime<Utc>) -> Vec<LogLine> {
        let time = self.stamp(time);
        match stream {
            Stream::Stdout => self.stdout.push(chunk, time),
            Stream::Stderr => self.stderr.push(chunk, time),
        }
    }

    /// Ends one stream (its pipe closed): returns its partial last line, if any.
    pub fn finish_stream(&mut self, stream: Stream) -> Option<LogLine> {
        let time = self.stamp(Utc::now());
        match stream {
            Stream::Stdout => self.stdout.finish(time),
            Stream::Stderr => self.stderr.finish(time),
        }
    }

    /// Ends both streams: returns their partial last lines, stdout first.
    pub fn finish(&mut self) -> Vec<LogLine> {
        let time = self.stamp(Utc::now());
        self.stdout.finish(time).into_iter().chain(self.stderr.finish(time)).collect()
    }

    fn stamp(&mut self, time: DateTime<Utc>) -> DateTime<Utc> {
        let time = match self.last {
            Some(last) if last > time => last,
            _ => time,
        };
        self.last = Some(time);
        time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    fn split_all(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut s = LineSplitter::with_max_line(Stream::Stdout, max);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.push(c, t0()));
        }
        out.extend(s.finish(t0()));
        out.into_iter().map(|l| l.text).collect()
    }

    #[test]
    fn splits_on_newline_and_strips_crlf() {
        let mut s = LineSplitter::new(Stream::Stderr);
        let lines = s.push(b"one\ntwo\r\n\nthree", t0());
        assert_eq!(texts(&lines), ["one", "two", ""]);
        assert!(lines.iter().all(|l| l.stream == Stream::Stderr));
        assert_eq!(s.pending(), 5);
        let last = s.finish(t0());
        assert_eq!(last.map(|l| l.text), Some("three".to_string()));
        assert_eq!(s.finish(t0()), None);
    }

    #[test]
    fn keeps_partial_line_across_chunks() {
        assert_eq!(
            split_all(&[b"hel", b"lo\nwor", b"ld", b"\n"], MAX_LINE_BYTES),
            ["hello", "world"]
        );
        // `\r` and `\n` in different chunks.
        assert_eq!(split_all(&[b"a\r", b"\nb"], MAX_LINE_BYTES), ["a", "b"]);
    }

    #[test]
    fn lone_carriage_return_is_kept_inside_a_line() {
        assert_eq!(split_all(&[b"10%\r20%\n"], MAX_LINE_BYTES), ["10%\r20%"]);
    }

    #[test]
    fn finish_without_partial_line_is_none() {
        let mut s = LineSplitter::new(Stream::Stdout);
        assert_eq!(s.push(b"x\n", t0()).len(), 1);
        assert_eq!(s.finish(t0()), None);
        assert!(s.push(b"", t0()).is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(split_all(&[b"a\xffb\n"], MAX_LINE_BYTES), ["a\u{fffd}b"]);
        // A character split across chunks is reassembled.
        let e = "é".as_bytes();
        assert_eq!(split_all(&[&e[..1], &e[1..], b"\n"], MAX_LINE_BYTES), ["é"]);
    }

    #[test]
    fn long_lines_are_capped() {
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        let mut s = LineSplitter::new(Stream::Stdout);
        let mut lines = s.push(&long, t0());
        assert_eq!(lines.len(), 2);
        lines.extend(s.push(b"\nnext\n", t0()));
        let lens: Vec<usize> = lines.iter().map(|l| l.text.len()).collect();
        assert_eq!(lens, [MAX_LINE_BYTES, MAX_LINE_BYTES, 10, 4]);
    }

    #[test]
    fn a_line_of_exactly_the_cap_is_one_line() {
        assert_eq!(split_all(&[b"12345678\n"], 8), ["12345678"]);
        assert_eq!(split_all(&[b"123456789\n"], 8), ["12345678", "9"]);
        assert_eq!(split_all(&[b"1234", b"5678", b"9"], 8), ["12345678", "9"]);
    }

    #[test]
    fn cap_does_not_split_a_character() {
        // 7 ASCII bytes then a 2-byte character straddling the cap of 8.
        assert_eq!(split_all(&["abcdefgé\n".as_bytes()], 8), ["abcdefg", "é"]);
        // 4-byte characters only.
        let crabs = "🦀🦀🦀";
        assert_eq!(split_all(&[crabs.as_bytes()], 8), ["🦀🦀", "🦀"]);
        // Byte by byte gives the same result.
        let bytes = "abcdefgé\n".as_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(split_all(&chunks, 8), ["abcdefg", "é"]);
    }

    #[test]
    fn cap_does_not_separate_cr_from_lf() {
        assert_eq!(split_all(&[b"1234567\r\nx\n"], 8), ["1234567", "x"]);
        assert_eq!(split_all(&[b"12345678\r\n"], 8), ["12345678"]);
        assert_eq!(split_all(&[b"12345678\r", b"\n"], 8), ["12345678"]);
        assert_eq!(split_all(&[b"12345678\r"], 8), ["12345678"]);
        assert_eq!(split_all(&[b"12345678\r", b"x\n"], 8), ["12345678", "\rx"]);
    }

    #[test]
    fn garbage_never_panics_and_loses_no_bytes() {
        let mut data = Vec::new();
        for i in 0..5000u32 {
            data.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
        }
        for max in [8, 9, 13, 64] {
            for size in [1, 3, 7, 100, 5000] {
                let chunks: Vec<&[u8]> = data.chunks(size).collect();
                let lines = split_all(&chunks, max);
                let newlines = data.iter().filter(|&&b| b == b'\n').count();
                assert!(lines.len() >= newlines);
            }
        }
        // Valid ASCII round-trips exactly.
        let ascii: Vec<u8> = (0..3000u32).map(|i| b"ab\ncd e\n"[i as usize % 8]).collect();
        for size in [1, 2, 5, 3000] {
            let chunks: Vec<&[u8]> = ascii.chunks(size).collect();
            let joined = split_all(&chunks, 8).join("\n") + "\n";
            assert_eq!(joined.as_bytes(), &ascii[..]);
        }
    }

    #[test]
    fn output_splitter_keeps_streams_apart_and_time_monotonic() {
        let mut o = OutputSplitter::new();
        let later = t0() + chrono::Duration::seconds(10);
        let a = o.push_at(Stream::Stdout, b"out-a\nout-", later);
        let b = o.push_at(Stream::Stderr, b"err\n", t0());
        let c = o.push_at(Stream::Stdout, b"b\n", t0());
        assert_eq!(texts(&a), ["out-a"]);
        assert_eq!(texts(&b), ["err"]);
        assert_eq!(b[0].stream, Stream::Stderr);
        assert_eq!(texts(&c), ["out-b"]);
        assert_eq!(b[0].time, later);
        assert_eq!(c[0].time, later);
        o.push_at(Stream::Stderr, b"tail", t0());
        assert_eq!(o.finish_stream(Stream::Stdout), None);
        let rest = o.finish();
        assert_eq!(texts(&rest), ["tail"]);
        assert!(rest[0].time >= later);
    }
}
