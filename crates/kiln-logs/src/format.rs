//! The on-disk format of a log file: JSON lines, one frame per line, each ending in `\n`.
//!
//! ```text
//! {"seq":1,"time":"2026-11-22T04:30:01.123456789Z","stream":"out","text":"hello"}
//! {"seq":2,"time":"2026-11-22T04:30:01.2Z","stream":"err","text":"warning: …"}
//! {"closed":"2026-11-22T04:31:00Z"}
//! ```
//!
//! A line frame has `seq`, `time` (RFC 3339, UTC), `stream` (`out` | `err`) and `text`; the
//! optional close frame is always last. Invariant: a frame without its final `\n` is a torn
//! write (a crash mid-append) and is cut off when the file is next opened for writing; readers
//! never read past the length the writer has committed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Record, Stream};

/// A stream as written in the file; kept apart from [`Stream`] so renaming that enum
/// cannot change the file format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum FileStream {
    #[serde(rename = "out")]
    Out,
    #[serde(rename = "err")]
    Err,
}

#[derive(Serialize)]
struct LineOut<'a> {
    seq: u64,
    time: DateTime<Utc>,
    stream: FileStream,
    text: &'a str,
}

#[derive(Serialize)]
struct ClosedOut {
    closed: DateTime<Utc>,
}

/// Any frame, as read; which fields are present says which kind it is.
#[derive(Deserialize)]
struct FrameIn {
    seq: Option<u64>,
    time: Option<DateTime<Utc>>,
    stream: Option<FileStream>,
    text: Option<String>,
    closed: Option<DateTime<Utc>>,
}

/// A decoded frame.
#[derive(Debug)]
pub(crate) enum Frame {
    Line(Record),
    Closed,
}

/// Encodes a line frame, with its `\n`.
pub(crate) fn encode_line(seq: u64, time: DateTime<Utc>, stream: Stream, text: &str) -> Vec<u8> {
    let stream = match stream {
        Stream::Stdout => FileStream::Out,
        Stream::Stderr => FileStream::Err,
    };
    let frame = LineOut { seq, time, stream, text };
    // Serialising plain strings, integers and dates into a Vec cannot fail.
    let mut out = serde_json::to_vec(&frame).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Encodes the close frame, with its `\n`.
pub(crate) fn encode_closed(time: DateTime<Utc>) -> Vec<u8> {
    let mut out = serde_json::to_vec(&ClosedOut { closed: time }).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Decodes one frame (without its `\n`); `None` when it is not a valid frame.
pub(crate) fn decode(line: &[u8]) -> Option<Frame> {
    let frame: FrameIn = serde_json::from_slice(line).ok()?;
    if frame.closed.is_some() {
        return Some(Frame::Closed);
    }
    let stream = match frame.stream? {
        FileStream::Out => Stream::Stdout,
        FileStream::Err => Stream::Stderr,
    };
    Some(Frame::Line(Record { seq: frame.seq?, time: frame.time?, stream, text: frame.text? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let time = DateTime::parse_from_rfc3339("2026-11-22T04:30:01.5Z").unwrap().to_utc();
        let bytes = encode_line(7, time, Stream::Stderr, "a \"quoted\"\ttext");
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "{\"seq\":7,\"time\":\"2026-11-22T04:30:01.500Z\",\"stream\":\"err\",\"text\":\"a \\\"quoted\\\"\\ttext\"}\n"
        );
        let Some(Frame::Line(record)) = decode(&bytes[..bytes.len() - 1]) else {
            panic!("not a line frame");
        };
        assert_eq!(record.seq, 7);
        assert_eq!(record.time, time);
        assert_eq!(record.stream, Stream::Stderr);
        assert_eq!(record.text, "a \"quoted\"\ttext");
        let closed = encode_closed(time);
        assert!(matches!(decode(&closed[..closed.len() - 1]), Some(Frame::Closed)));
        assert!(decode(b"{\"seq\":1,\"time\":").is_none());
        assert!(decode(b"{}").is_none());
    }
}
