//! The HTTP CONNECT exchange (RFC 9110 §9.3.6, RFC 9112): one request, the proxy's status
//! line and header fields read under a size limit, then the connection is the tunnel.
//!
//! Bytes the proxy sent after the end of its header (the SMTP server's greeting may come in
//! the same packet as `200`) are kept and read first from the tunnel.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use zeroize::Zeroize;

use super::{auth_refused, authority, checked_host, io_failed, malformed, tunnel_refused, Proxy};
use crate::client::stream::Stream;
use crate::error::Result;

/// The most bytes read for the proxy's reply header (status line and header fields, interim
/// `1xx` replies included): a proxy that sends more is broken or hostile.
pub(crate) const MAX_CONNECT_REPLY_HEADER: usize = 16 * 1024;

/// How much of the proxy's reason phrase an error quotes.
const MAX_REASON_SHOWN: usize = 120;

/// Asks the proxy on `tcp` for a tunnel to `host:port` and returns it once the proxy says 2xx.
pub(super) async fn tunnel(
    mut tcp: TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<Box<dyn Stream>> {
    let host = checked_host(proxy, host)?;
    let mut request = connect_request(proxy, host, port);
    let written = async {
        tcp.write_all(&request).await?;
        tcp.flush().await
    }
    .await;
    // The request holds the proxy password (base64 is no protection).
    request.zeroize();
    written.map_err(|e| io_failed(proxy, e))?;
    let reply = read_reply(&mut tcp, MAX_CONNECT_REPLY_HEADER)
        .await
        .map_err(|e| match e {
            ReplyError::Io(e) => io_failed(proxy, e),
            ReplyError::Malformed(what) => malformed(proxy, &what),
        })?;
    let what = reply.describe();
    match reply.status {
        200..=299 if reply.after.is_empty() => Ok(Box::new(tcp)),
        200..=299 => Ok(Box::new(Rewound::new(reply.after, tcp))),
        // 407 is the proxy's "who are you"; some proxies (tinyproxy) answer a wrong login 401.
        401 | 407 => Err(auth_refused(proxy, &what)),
        _ => Err(tunnel_refused(proxy, &authority(host, port), &what)),
    }
}

/// `CONNECT host:port HTTP/1.1` with its `Host` field, and `Proxy-Authorization: Basic`
/// (RFC 7617) when the proxy URL has a user name.
fn connect_request(proxy: &Proxy, host: &str, port: u16) -> Vec<u8> {
    let authority = authority(host, port);
    let mut request = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: smtpkit/{}\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes();
    if let Some(user) = proxy.username() {
        let mut credentials = format!("{user}:{}", proxy.password().map_or("", |p| p.expose()));
        let mut encoded = BASE64.encode(credentials.as_bytes());
        request.extend_from_slice(b"Proxy-Authorization: Basic ");
        request.extend_from_slice(encoded.as_bytes());
        request.extend_from_slice(b"\r\n");
        credentials.zeroize();
        encoded.zeroize();
    }
    request.extend_from_slice(b"\r\n");
    request
}

/// The proxy's final reply to CONNECT.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ConnectReply {
    /// The status code.
    pub(super) status: u16,
    /// The reason phrase, control characters escaped, at most [`MAX_REASON_SHOWN`] characters.
    pub(super) reason: String,
    /// What came after the header's empty line: the start of the tunnel's bytes.
    pub(super) after: Vec<u8>,
}

impl ConnectReply {
    /// `407 Proxy Authentication Required`.
    fn describe(&self) -> String {
        if self.reason.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            format!("{} {}", self.status, self.reason)
        }
    }
}

/// Why no reply could be read.
#[derive(Debug)]
pub(super) enum ReplyError {
    /// Reading failed or the proxy closed the connection.
    Io(io::Error),
    /// The bytes are not an HTTP reply (or too many of them).
    Malformed(String),
}

/// Reads the proxy's reply: the status line and header fields up to the empty line, at most
/// `limit` bytes in all. Interim `1xx` replies are skipped. Reads in chunks, so what follows
/// the header may already be read: it is returned in [`ConnectReply::after`].
pub(super) async fn read_reply(
    reader: &mut (impl AsyncRead + Unpin),
    limit: usize,
) -> std::result::Result<ConnectReply, ReplyError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    // Where the current reply's header starts in `buf` (after skipped 1xx replies).
    let mut start = 0;
    loop {
        if let Some(end) = header_end(&buf[start..]) {
            let (status, reason) = status_line(&buf[start..start + end])?;
            if (100..200).contains(&status) {
                start += end;
                continue;
            }
            return Ok(ConnectReply {
                status,
                reason,
                after: buf[start + end..].to_vec(),
            });
        }
        // Everything read so far is header: never read past the limit.
        if buf.len() >= limit {
            return Err(ReplyError::Malformed(format!(
                "its reply header is longer than {limit} bytes"
            )));
        }
        let old = buf.len();
        buf.resize(old + (limit - old).min(4096), 0);
        let n = match reader.read(&mut buf[old..]).await {
            Ok(n) => n,
            Err(e) => return Err(ReplyError::Io(e)),
        };
        buf.truncate(old + n);
        if n == 0 {
            return Err(if buf.len() == start {
                ReplyError::Io(io::Error::from(io::ErrorKind::UnexpectedEof))
            } else {
                ReplyError::Malformed(
                    "the connection closed in the middle of its reply header".into(),
                )
            });
        }
    }
}

/// The length of the header at the start of `buf` up to and with its empty line, once the
/// empty line is there. Lines end with CRLF, or LF alone (RFC 9112 §2.2 lets a recipient
/// accept that).
fn header_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = &buf[line_start..i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() && line_start > 0 {
            return Some(i + 1);
        }
        line_start = i + 1;
    }
    None
}

/// The status code and reason phrase of `HTTP/1.x NNN reason`.
fn status_line(header: &[u8]) -> std::result::Result<(u16, String), ReplyError> {
    let line_end = header
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(header.len());
    let line = &header[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let shown = || {
        let text = String::from_utf8_lossy(&line[..line.len().min(40)]);
        crate::client::transcript::escape(&text)
    };
    let Some(rest) = line.strip_prefix(b"HTTP/1.") else {
        return Err(ReplyError::Malformed(format!(
            "not an HTTP reply: {:?}",
            shown()
        )));
    };
    let status = match rest {
        [minor, b' ', d1, d2, d3, tail @ ..]
            if minor.is_ascii_digit()
                && [d1, d2, d3].iter().all(|d| d.is_ascii_digit())
                && (tail.is_empty() || tail[0] == b' ') =>
        {
            u16::from(d1 - b'0') * 100 + u16::from(d2 - b'0') * 10 + u16::from(d3 - b'0')
        }
        _ => {
            return Err(ReplyError::Malformed(format!(
                "not an HTTP status line: {:?}",
                shown()
            )))
        }
    };
    if status < 100 {
        return Err(ReplyError::Malformed(format!(
            "status {status} is not an HTTP status"
        )));
    }
    let reason = &rest[5..];
    let reason = reason.strip_prefix(b" ").unwrap_or(reason);
    let reason = String::from_utf8_lossy(reason);
    let reason: String = crate::client::transcript::escape(reason.trim())
        .chars()
        .take(MAX_REASON_SHOWN)
        .collect();
    Ok((status, reason))
}

/// A stream whose first bytes were already read: they are given back first.
struct Rewound<S> {
    head: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewound<S> {
    fn new(head: Vec<u8>, inner: S) -> Rewound<S> {
        Rewound {
            head,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = (this.head.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `parts` one read at a time (split reads).
    struct Parts(std::collections::VecDeque<Vec<u8>>);

    impl Parts {
        fn new(parts: &[&[u8]]) -> Parts {
            Parts(parts.iter().map(|p| p.to_vec()).collect())
        }
    }

    impl AsyncRead for Parts {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if let Some(mut part) = this.0.pop_front() {
                let n = part.len().min(buf.remaining());
                buf.put_slice(&part[..n]);
                if n < part.len() {
                    this.0.push_front(part.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    async fn read(parts: &[&[u8]]) -> std::result::Result<ConnectReply, ReplyError> {
        read_reply(&mut Parts::new(parts), MAX_CONNECT_REPLY_HEADER).await
    }

    #[tokio::test]
    async fn a_200_in_one_read_with_the_greeting_behind_it() {
        let reply = read(&[
            b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n220 smtp ready\r\n",
        ])
        .await
        .expect("reply");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.reason, "Connection established");
        assert_eq!(reply.after, b"220 smtp ready\r\n");
    }

    /// Reads the reply from `parts`, then the tunnel (what was read after the header, then
    /// the rest of `parts`) to its end.
    async fn reply_and_tunnel(parts: &[&[u8]]) -> (u16, Vec<u8>) {
        let mut reader = Parts::new(parts);
        let reply = read_reply(&mut reader, MAX_CONNECT_REPLY_HEADER)
            .await
            .expect("reply");
        let mut tunnel = Rewound::new(reply.after, reader);
        let mut rest = Vec::new();
        tunnel.read_to_end(&mut rest).await.expect("rest");
        (reply.status, rest)
    }

    #[tokio::test]
    async fn a_reply_split_anywhere_loses_no_byte_of_the_tunnel() {
        let text: &[u8] = b"HTTP/1.0 200 OK\r\n\r\n220 hi\r\n";
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(
            reply_and_tunnel(&bytes).await,
            (200, b"220 hi\r\n".to_vec())
        );
        // The CR LF CR LF split across reads in every way.
        for cut in 1..text.len() {
            assert_eq!(
                reply_and_tunnel(&[&text[..cut], &text[cut..]]).await,
                (200, b"220 hi\r\n".to_vec()),
                "cut at {cut}"
            );
        }
    }

    #[tokio::test]
    async fn bare_lf_interim_replies_and_no_reason() {
        let reply = read(&[b"HTTP/1.1 100 Continue\n\nHTTP/1.1 200\nVia: p\n\nabc"])
            .await
            .expect("reply");
        assert_eq!((reply.status, reply.reason.as_str()), (200, ""));
        assert_eq!(reply.after, b"abc");
        let reply = read(&[b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n<html>"])
            .await
            .expect("reply");
        assert_eq!(reply.status, 407);
        assert_eq!(reply.describe(), "407 Proxy Authentication Required");
    }

    #[tokio::test]
    async fn an_oversize_header_is_refused_without_reading_on() {
        let mut endless = vec![b"HTTP/1.1 200 OK\r\n".to_vec()];
        endless.extend(std::iter::repeat_n(b"X-Filler: yes\r\n".to_vec(), 5000));
        let parts: Vec<&[u8]> = endless.iter().map(Vec::as_slice).collect();
        match read(&parts).await {
            Err(ReplyError::Malformed(what)) => {
                assert!(what.contains("longer than 16384"), "{what}")
            }
            other => panic!("{other:?}"),
        }
        // Exactly at the limit is still read.
        let mut exact = b"HTTP/1.1 200 OK\r\n".to_vec();
        let filler = MAX_CONNECT_REPLY_HEADER - exact.len() - 2 - 2 - b"X: ".len();
        exact.extend(b"X: ");
        exact.extend(std::iter::repeat_n(b'a', filler));
        exact.extend(b"\r\n\r\n");
        assert_eq!(exact.len(), MAX_CONNECT_REPLY_HEADER);
        let reply = read(&[&exact]).await.expect("at the limit");
        assert_eq!(reply.status, 200);
    }

    #[tokio::test]
    async fn what_is_not_an_http_reply() {
        for text in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 099 x\r\n\r\n",
            b"\x05\x00",
        ] {
            match read(&[text, b"\r\n\r\n"]).await {
                Err(ReplyError::Malformed(_)) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
            }
        }
        match read(&[b"HTTP/1.1 200 OK\r\n"]).await {
            Err(ReplyError::Malformed(what)) => assert!(what.contains("closed"), "{what}"),
            other => panic!("{other:?}"),
        }
        match read(&[]).await {
            Err(ReplyError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_hostile_reason_phrase_is_escaped_and_cut() {
        let mut text = b"HTTP/1.1 403 \x1b[31mred".to_vec();
        text.extend(std::iter::repeat_n(b'x', 1000));
        text.extend(b"\r\n\r\n");
        let reply = read(&[&text]).await.expect("reply");
        assert!(reply.reason.starts_with("\\x1b[31mred"), "{}", reply.reason);
        assert_eq!(reply.reason.chars().count(), MAX_REASON_SHOWN);
    }

    #[test]
    fn the_request_carries_basic_credentials_only_when_given() {
        let proxy = Proxy::parse("http://proxy:3128").expect("valid");
        let request =
            String::from_utf8(connect_request(&proxy, "smtp.example.com", 587)).expect("text");
        assert!(request.starts_with(
            "CONNECT smtp.example.com:587 HTTP/1.1\r\nHost: smtp.example.com:587\r\n"
        ));
        assert!(request.ends_with("\r\n\r\n"));
        assert!(!request.contains("Proxy-Authorization"));

        let proxy = Proxy::parse("http://Aladdin:open%20sesame@proxy:3128").expect("valid");
        let request = String::from_utf8(connect_request(&proxy, "2001:db8::1", 465)).expect("text");
        assert!(request.starts_with("CONNECT [2001:db8::1]:465 HTTP/1.1\r\n"));
        // RFC 7617 §2's example.
        assert!(request.contains("\r\nProxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"));
    }
}
