//! Just enough HTTP/1.1 to talk to a Docker engine over a unix socket or TCP: `GET /_ping`,
//! inspect an image, import a tarball. No dependencies, one request per connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Where an engine listens, from a `DOCKER_HOST` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:///path/to/docker.sock`.
    Unix(String),
    /// `tcp://host:port`.
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix://…` or `tcp://…` (`http://` is taken as `tcp://`).
    pub fn parse(host: &str) -> Result<Endpoint> {
        if let Some(path) = host.strip_prefix("unix://") {
            Ok(Endpoint::Unix(path.to_owned()))
        } else if let Some(addr) = host.strip_prefix("tcp://").or(host.strip_prefix("http://")) {
            Ok(Endpoint::Tcp(addr.trim_end_matches('/').to_owned()))
        } else {
            bail!("unsupported DOCKER_HOST {host:?}: expected unix:///path or tcp://host:port")
        }
    }
}

/// An engine's answer.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body, de-chunked.
    pub body: Vec<u8>,
}

/// Connections this module can speak over.
trait Conn: Read + Write {}
impl Conn for UnixStream {}
impl Conn for TcpStream {}

/// Sends one request and reads the whole answer; each read or write may take `timeout`.
pub fn request(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<Response> {
    let mut conn: Box<dyn Conn> = match endpoint {
        Endpoint::Unix(path) => {
            let s = UnixStream::connect(path).with_context(|| format!("connect to {path}"))?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Box::new(s)
        }
        Endpoint::Tcp(addr) => {
            let s = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Box::new(s)
        }
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
    match body {
        Some((content_type, bytes)) => {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            ));
        }
        None => head.push_str("Content-Length: 0\r\n"),
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    if let Some((_, bytes)) = body {
        conn.write_all(bytes)?;
    }
    conn.flush()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).context("read the answer")?;
    parse(&raw)
}

/// Splits a raw HTTP/1.1 answer into status and (de-chunked) body.
fn parse(raw: &[u8]) -> Result<Response> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("malformed HTTP answer ({} bytes, no header end)", raw.len());
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("malformed HTTP status line in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let rest = &raw[end + 4..];
    let body = if chunked { dechunk(rest)? } else { rest.to_vec() };
    Ok(Response { status, body })
}

/// Decodes a chunked body.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            bail!("truncated chunked body");
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// Whether an engine answers `GET /_ping` with 200 within a couple of seconds.
pub fn ping(endpoint: &Endpoint) -> bool {
    matches!(
        request(endpoint, "GET", "/_ping", None, Duration::from_secs(2)),
        Ok(Response { status: 200, .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let plain = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (200, &b"OK"[..]));
        let chunked =
            parse(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!((chunked.status, chunked.body.as_slice()), (404, &b"abcde"[..]));
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("unix:///a/b.sock").unwrap(),
            Endpoint::Unix("/a/b.sock".into())
        );
        assert_eq!(Endpoint::parse("tcp://h:2375").unwrap(), Endpoint::Tcp("h:2375".into()));
        assert!(Endpoint::parse("ssh://x").is_err());
    }
}
