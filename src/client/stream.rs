//! The byte stream under a session: TCP now, TLS later, or anything async for tests.

use tokio::io::{AsyncRead, AsyncWrite};

/// Any async byte stream a session can run over: a `TcpStream`, a TLS stream, or an
/// in-memory `tokio::io::DuplexStream` for tests and fuzzing.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}
