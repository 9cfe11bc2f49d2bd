//! The on-disk format of a log file: one frame per line, each ending in `\n`.
//!
//! Frames written since format 2 (compact: a line costs its text plus about 6 bytes):
//!
//! ```text
//! o1764995401123456\thello          a line of stdout; the number is its time in microseconds
//! e35\twarning: …                   since the previous line's (the epoch for the first line)
//! s0\tbuild\truns/4f…/0/1           a source of a view: number, label, key of the source log
//! 0                                 a view's line: the next line of source 0 not yet shown
//! 0:17                              a view's line: line 17 of source 0 (when not the next one)
//! c                                 closed (always last)
//! ```
//!
//! A line's text is escaped: `\` is written `\\` and a line feed `\n`. Frames of format 1,
//! JSON with the seq and an absolute time, are still read (and may precede format-2 frames in
//! the same file, when a log written by an older version was continued):
//!
//! ```text
//! {"seq":1,"time":"2026-11-22T04:30:01.123456789Z","stream":"out","text":"hello"}
//! {"closed":"2026-11-22T04:31:00Z"}
//! ```
//!
//! Invariants: a frame without its final `\n` is a torn write (a crash mid-append) and is cut
//! off when the file is next opened for writing; readers never read past the length the writer
//! has committed. The n-th line frame or view frame of a file is record n (seq n); a frame that
//! cannot be decoded is skipped and takes no seq, by readers and by the writer alike.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use crate::{LogKey, Stream};

/// A stream as written in a format-1 file.
#[derive(Debug, Clone, Copy, Deserialize)]
enum FileStream {
    #[serde(rename = "out")]
    Out,
    #[serde(rename = "err")]
    Err,
}

/// Any format-1 frame, as read; which fields are present says which kind it is.
#[derive(Deserialize)]
struct FrameIn {
    seq: Option<u64>,
    time: Option<DateTime<Utc>>,
    stream: Option<FileStream>,
    text: Option<String>,
    closed: Option<DateTime<Utc>>,
}

/// When a line was produced, as a frame says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// Absolute (format 1).
    At(DateTime<Utc>),
    /// Microseconds after the previous line of the file (format 2).
    After(i64),
}

impl When {
    /// The time, given the previous line's (`None` before the first line: the epoch).
    pub(crate) fn resolve(self, prev: Option<DateTime<Utc>>) -> DateTime<Utc> {
        match self {
            When::At(t) => t,
            When::After(us) => {
                let base = prev.unwrap_or(DateTime::UNIX_EPOCH);
                base.checked_add_signed(TimeDelta::microseconds(us)).unwrap_or(base)
            }
        }
    }
}

/// A decoded frame.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A stored line.
    Line { when: When, stream: Stream, text: String },
    /// A view's source: `n`, shown with `label`, is the log `key`.
    Source { n: usize, label: String, key: LogKey },
    /// A view's line: line `at` (or the next not yet shown) of source `n`.
    Ref { n: usize, at: Option<u64> },
    /// The log is closed.
    Closed,
}

/// Microseconds from `prev` (the epoch when `None`) to `time`, and the time a reader will
/// compute back from them (`time` to the microsecond).
pub(crate) fn delta(prev: Option<DateTime<Utc>>, time: DateTime<Utc>) -> (i64, DateTime<Utc>) {
    let base = prev.unwrap_or(DateTime::UNIX_EPOCH);
    let us = (time - base).num_microseconds().unwrap_or(0);
    (us, When::After(us).resolve(prev))
}

/// Encodes a line frame, with its `\n`; `us` from [`delta`].
pub(crate) fn encode_line(us: i64, stream: Stream, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 24);
    out.push(match stream {
        Stream::Stdout => b'o',
        Stream::Stderr => b'e',
    });
    out.extend_from_slice(us.to_string().as_bytes());
    out.push(b'\t');
    escape_into(&mut out, text);
    out.push(b'\n');
    out
}

/// Encodes a source frame, with its `\n`.
pub(crate) fn encode_source(n: usize, label: &str, key: &LogKey) -> Vec<u8> {
    let mut out = format!("s{n}\t").into_bytes();
    escape_into(&mut out, &label.replace('\t', " "));
    out.push(b'\t');
    out.extend_from_slice(key.as_str().as_bytes());
    out.push(b'\n');
    out
}

/// Encodes a view's line frame, with its `\n`: `at` only when it is not the next line.
pub(crate) fn encode_ref(n: usize, at: Option<u64>) -> Vec<u8> {
    match at {
        Some(at) => format!("{n}:{at}\n").into_bytes(),
        None => format!("{n}\n").into_bytes(),
    }
}

/// Encodes the close frame, with its `\n`.
pub(crate) fn encode_closed() -> Vec<u8> {
    b"c\n".to_vec()
}

fn escape_into(out: &mut Vec<u8>, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

fn unescape(raw: &[u8]) -> Option<String> {
    if !raw.contains(&b'\\') {
        return String::from_utf8(raw.to_vec()).ok();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b == b'\\' {
            match bytes.next()? {
                b'\\' => out.push(b'\\'),
                b'n' => out.push(b'\n'),
                _ => return None,
            }
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn number<T: std::str::FromStr>(raw: &[u8]) -> Option<T> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// Decodes one frame (without its `\n`); `None` when it is not a valid frame.
pub(crate) fn decode(line: &[u8]) -> Option<Frame> {
    match *line.first()? {
        b'{' => decode_v1(line),
        kind @ (b'o' | b'e') => {
            let tab = line.iter().position(|&b| b == b'\t')?;
            let us = number(&line[1..tab])?;
            let stream = if kind == b'o' { Stream::Stdout } else { Stream::Stderr };
            Some(Frame::Line { when: When::After(us), stream, text: unescape(&line[tab + 1..])? })
        }
        b'c' if line.len() == 1 => Some(Frame::Closed),
        b's' => {
            let mut parts = line[1..].splitn(3, |&b| b == b'\t');
            let n = number(parts.next()?)?;
            let label = unescape(parts.next()?)?;
            let key = LogKey::new(std::str::from_utf8(parts.next()?).ok()?).ok()?;
            Some(Frame::Source { n, label, key })
        }
        b'0'..=b'9' => match line.iter().position(|&b| b == b':') {
            Some(colon) => Some(Frame::Ref {
                n: number(&line[..colon])?,
                at: Some(number(&line[colon + 1..])?),
            }),
            None => Some(Frame::Ref { n: number(line)?, at: None }),
        },
        _ => None,
    }
}

fn decode_v1(line: &[u8]) -> Option<Frame> {
    let frame: FrameIn = serde_json::from_slice(line).ok()?;
    if frame.closed.is_some() {
        return Some(Frame::Closed);
    }
    let stream = match frame.stream? {
        FileStream::Out => Stream::Stdout,
        FileStream::Err => Stream::Stderr,
    };
    frame.seq?;
    Some(Frame::Line { when: When::At(frame.time?), stream, text: frame.text? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let prev = DateTime::parse_from_rfc3339("2026-11-22T04:30:01.5Z").unwrap().to_utc();
        let time = DateTime::parse_from_rfc3339("2026-11-22T04:30:01.500035Z").unwrap().to_utc();
        let (us, back) = delta(Some(prev), time);
        assert_eq!((us, back), (35, time));
        let bytes = encode_line(us, Stream::Stderr, "a \"quoted\"\ttext \\n\nnext");
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "e35\ta \"quoted\"\ttext \\\\n\\nnext\n"
        );
        let Some(Frame::Line { when, stream, text }) = decode(&bytes[..bytes.len() - 1]) else {
            panic!("not a line frame");
        };
        assert_eq!(when.resolve(Some(prev)), time);
        assert_eq!(stream, Stream::Stderr);
        assert_eq!(text, "a \"quoted\"\ttext \\n\nnext");
        let key = LogKey::new("runs/r/0/1").unwrap();
        let source = encode_source(3, "build\tx", &key);
        assert!(matches!(decode(&source[..source.len() - 1]),
            Some(Frame::Source { n: 3, label, key: k }) if label == "build x" && k == key));
        assert!(matches!(decode(b"3"), Some(Frame::Ref { n: 3, at: None })));
        assert!(matches!(decode(b"3:17"), Some(Frame::Ref { n: 3, at: Some(17) })));
        assert!(matches!(decode(b"c"), Some(Frame::Closed)));
        assert!(decode(b"oxx\ttext").is_none());
        assert!(decode(b"o1\tbad \\escape").is_none());
    }

    #[test]
    fn format_1_frames_are_read() {
        let v1 = br#"{"seq":7,"time":"2026-11-22T04:30:01.123456789Z","stream":"err","text":"hi"}"#;
        let Some(Frame::Line { when, stream, text }) = decode(v1) else { panic!("not a line") };
        assert_eq!(when.resolve(None).to_rfc3339(), "2026-11-22T04:30:01.123456789+00:00");
        assert_eq!((stream, text.as_str()), (Stream::Stderr, "hi"));
        assert!(matches!(decode(br#"{"closed":"2026-11-22T04:31:00Z"}"#), Some(Frame::Closed)));
        assert!(decode(b"{\"seq\":1,\"time\":").is_none());
        assert!(decode(b"{}").is_none());
    }
}
