//! How a session reaches its server: the byte stream under SMTP (and under TLS), opened by
//! plain TCP unless the options name another [`Connector`] (a tunnel, a proxy, a socket the
//! program already has).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::stream::Stream;

/// What [`Connector::connect`] returns: the stream, or why it could not be opened.
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Stream>>> + Send + 'a>>;

/// Opens the byte stream to a server. smtpkit runs TLS (implicit or STARTTLS, as the options
/// say) and SMTP over whatever it returns, under the `connect` timeout.
///
/// ```
/// use std::sync::Arc;
/// use smtpkit::client::{ClientOptions, ConnectFuture, Connector};
///
/// /// Always dials one relay, whatever host the configuration names.
/// #[derive(Debug)]
/// struct FixedRelay(std::net::SocketAddr);
///
/// impl Connector for FixedRelay {
///     fn connect<'a>(&'a self, _host: &'a str, _port: u16) -> ConnectFuture<'a> {
///         Box::pin(async move {
///             let stream = tokio::net::TcpStream::connect(self.0).await?;
///             stream.set_nodelay(true)?;
///             Ok(Box::new(stream) as Box<dyn smtpkit::client::Stream>)
///         })
///     }
/// }
///
/// let options = ClientOptions {
///     connector: Some(Arc::new(FixedRelay("127.0.0.1:2525".parse().unwrap()))),
///     ..ClientOptions::default()
/// };
/// # let _ = options;
/// ```
pub trait Connector: std::fmt::Debug + Send + Sync + 'static {
    /// Opens a stream to `host:port`. Set TCP_NODELAY on TCP streams: without it, pipelined
    /// command groups wait for Nagle's algorithm.
    ///
    /// Cancel safety: the future may be dropped when the `connect` timeout passes; a
    /// half-opened stream must then be closed by dropping it.
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> ConnectFuture<'a>;
}

/// A shared connector, as [`super::ClientOptions`] holds it.
pub type SharedConnector = Arc<dyn Connector>;
