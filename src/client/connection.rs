//! A session with a server: greeting, EHLO, then commands and transactions.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;

use super::options::{host_client_name, ClientOptions};
use super::transport::Transport;
use super::wire::Wire;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::{Capabilities, ClientName, Command, Reply, ReplyCode};

/// How long QUIT may take when closing a session that is being dropped anyway.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// Opens a TCP connection with TCP_NODELAY set. Without it, Nagle's algorithm and delayed ACKs
/// add ~40 ms to every pipelined command group.
pub(crate) async fn connect_tcp(host: &str, port: u16, limit: Duration) -> Result<TcpStream> {
    let stream = match timeout(limit, TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(Error::new(
                ErrorKind::Connect,
                Stage::Connect,
                format!("cannot connect to {host}:{port}: {e}"),
            )
            .with_source(e))
        }
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Timeout,
                Stage::Connect,
                format!("cannot connect to {host}:{port}: no answer within {limit:?}"),
            ))
        }
    };
    stream
        .set_nodelay(true)
        .map_err(|e| Error::io(Stage::Connect, e))?;
    Ok(stream)
}

/// A session whose server has greeted with `220` but that has not said EHLO yet.
///
/// Only [`Greeted::ehlo`] moves on, to a [`Connection`]: a session that has not said EHLO
/// cannot send mail.
pub struct Greeted {
    wire: Wire,
    greeting: Reply,
    options: ClientOptions,
    client_name: ClientName,
}

impl Greeted {
    /// Connects over TCP to `host:port` and waits for the greeting.
    pub async fn open(host: &str, port: u16, options: ClientOptions) -> Result<Greeted> {
        let stream = connect_tcp(host, port, options.timeouts().connect).await?;
        let local = stream.local_addr().ok();
        Greeted::over(Box::new(stream), local, options).await
    }

    /// Runs a session over any stream (a TLS stream, an in-memory duplex) and waits for the greeting.
    pub async fn from_stream(stream: impl Transport, options: ClientOptions) -> Result<Greeted> {
        Greeted::over(Box::new(stream), None, options).await
    }

    pub(crate) async fn over(
        stream: Box<dyn Transport>,
        local: Option<SocketAddr>,
        options: ClientOptions,
    ) -> Result<Greeted> {
        let client_name = options
            .client_name
            .clone()
            .or_else(host_client_name)
            .unwrap_or_else(|| {
                ClientName::from_ip(local.map_or([127, 0, 0, 1].into(), |a| a.ip()))
            });
        let mut wire = Wire::new(stream, options.transcript.clone());
        let greeting = wire
            .read_reply(Stage::Greeting, options.timeouts().greeting)
            .await?;
        // RFC 5321 §3.1: 220 is a welcome, 554 a refusal (after which the client should QUIT).
        if greeting.code() != ReplyCode::SERVICE_READY {
            let err = if greeting.is_transient() || greeting.is_permanent() {
                Error::rejected(Stage::Greeting, greeting.clone())
            } else {
                Error::new(ErrorKind::Protocol, Stage::Greeting, "unexpected greeting")
                    .with_reply(greeting.clone())
            };
            if greeting.code().value() == 554
                && wire.queue(&[&Command::Quit], Stage::Quit).is_ok()
                && wire.flush(Stage::Quit, QUIT_GRACE).await.is_ok()
            {
                let _ = wire.read_reply(Stage::Quit, QUIT_GRACE).await;
            }
            wire.shutdown(QUIT_GRACE).await;
            return Err(err);
        }
        Ok(Greeted {
            wire,
            greeting,
            options,
            client_name,
        })
    }

    /// The server's `220` greeting.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// Says EHLO (falling back to HELO when EHLO is answered with 500 or 502) and learns the
    /// server's capabilities.
    pub async fn ehlo(mut self) -> Result<Connection> {
        let capabilities = say_hello(
            &mut self.wire,
            &self.client_name,
            self.options.timeouts().command,
        )
        .await?;
        Ok(Connection {
            wire: self.wire,
            greeting: self.greeting,
            capabilities,
            options: self.options,
            client_name: self.client_name,
        })
    }
}

/// EHLO, or HELO when the server does not know EHLO (RFC 5321 §3.2: only 500/502 mean that).
async fn say_hello(wire: &mut Wire, name: &ClientName, limit: Duration) -> Result<Capabilities> {
    let ehlo = Command::Ehlo(name.clone());
    wire.queue(&[&ehlo], Stage::Ehlo)?;
    wire.flush(Stage::Ehlo, limit).await?;
    let reply = wire.read_reply(Stage::Ehlo, limit).await?;
    if reply.is_positive() {
        return Ok(Capabilities::from_ehlo(&reply));
    }
    if !matches!(reply.code().value(), 500 | 502) {
        return Err(Error::rejected(Stage::Ehlo, reply));
    }
    wire.queue(&[&Command::Helo(name.clone())], Stage::Ehlo)?;
    wire.flush(Stage::Ehlo, limit).await?;
    let reply = wire.read_reply(Stage::Ehlo, limit).await?;
    if !reply.is_positive() {
        return Err(Error::rejected(Stage::Ehlo, reply));
    }
    Ok(Capabilities::helo_only(&reply))
}

/// A session that has said EHLO (or HELO) and can send mail.
///
/// ```no_run
/// use smtpkit::client::{ClientOptions, Connection, Envelope};
/// use smtpkit::proto::Address;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = Connection::connect("127.0.0.1", 2525, ClientOptions::default()).await?;
/// let envelope = Envelope::new(Address::new("me@example.com")?, vec![Address::new("you@example.com")?])?;
/// let report = conn.send_mail(&envelope, b"Subject: hi\r\n\r\nHello\r\n").await?;
/// println!("queued: {}", report.data_reply());
/// conn.quit().await?;
/// # Ok(()) }
/// ```
pub struct Connection {
    pub(crate) wire: Wire,
    greeting: Reply,
    pub(crate) capabilities: Capabilities,
    pub(crate) options: ClientOptions,
    client_name: ClientName,
}

impl Connection {
    /// Connects over TCP, waits for the greeting and says EHLO.
    pub async fn connect(host: &str, port: u16, options: ClientOptions) -> Result<Connection> {
        Greeted::open(host, port, options).await?.ehlo().await
    }

    /// Runs a session over any stream: greeting, then EHLO.
    pub async fn from_stream(stream: impl Transport, options: ClientOptions) -> Result<Connection> {
        Greeted::from_stream(stream, options).await?.ehlo().await
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// What the server announced in its last EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The name this client gives in EHLO.
    pub fn client_name(&self) -> &ClientName {
        &self.client_name
    }

    /// False once a timeout, protocol error, lost connection or 421 made the session unusable.
    pub fn is_usable(&self) -> bool {
        !self.wire.is_poisoned()
    }

    /// Says EHLO again (the capabilities are replaced by the new reply).
    pub async fn ehlo(&mut self) -> Result<&Capabilities> {
        self.capabilities = say_hello(
            &mut self.wire,
            &self.client_name,
            self.options.timeouts().command,
        )
        .await?;
        Ok(&self.capabilities)
    }

    /// Sends any command and returns the server's reply, whatever its code. For DATA, a `354`
    /// must be followed by [`Connection::send_body`].
    pub async fn command(&mut self, command: &Command) -> Result<Reply> {
        let limit = match command {
            Command::Data => self.options.timeouts().data_start,
            _ => self.options.timeouts().command,
        };
        self.wire.queue(&[command], Stage::Command)?;
        self.wire.flush(Stage::Command, limit).await?;
        self.wire.read_reply(Stage::Command, limit).await
    }

    /// After a `354`, sends `body` dot-stuffed with its terminator and returns the final reply.
    pub async fn send_body(&mut self, body: &[u8]) -> Result<Reply> {
        let wire_body = crate::proto::DotStuffer::encode_all(body);
        self.wire
            .note(&format!("message body: {} bytes", body.len()));
        let block = self.options.timeouts().data_block;
        self.wire
            .write_blocks(&wire_body, Stage::Body, block)
            .await?;
        self.wire
            .read_reply(Stage::DataEnd, self.options.timeouts().data_end)
            .await
    }

    /// RSET: aborts the current transaction. Errors on anything but `250`.
    pub async fn rset(&mut self) -> Result<Reply> {
        self.simple(Command::Rset, Stage::Rset).await
    }

    /// NOOP: checks that the server still answers. Errors on anything but `250`.
    pub async fn noop(&mut self) -> Result<Reply> {
        self.simple(Command::Noop, Stage::Noop).await
    }

    async fn simple(&mut self, command: Command, stage: Stage) -> Result<Reply> {
        let limit = self.options.timeouts().command;
        self.wire.queue(&[&command], stage)?;
        self.wire.flush(stage, limit).await?;
        let reply = self.wire.read_reply(stage, limit).await?;
        if !reply.is_positive() {
            let err = Error::rejected(stage, reply);
            // A session that cannot even RSET is not one to send more mail over.
            return Err(self.wire.poison(err));
        }
        Ok(reply)
    }

    /// QUIT and close. A server that does not answer within the command deadline is dropped.
    pub async fn quit(mut self) -> Result<Reply> {
        let limit = self.options.timeouts().command;
        let result = async {
            self.wire.queue(&[&Command::Quit], Stage::Quit)?;
            self.wire.flush(Stage::Quit, limit).await?;
            self.wire.read_reply(Stage::Quit, limit).await
        }
        .await;
        self.wire.shutdown(QUIT_GRACE).await;
        result
    }
}

impl std::fmt::Debug for Greeted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Greeted")
            .field("greeting", &self.greeting.to_string())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("greeting", &self.greeting.to_string())
            .field("capabilities", &self.capabilities)
            .field("usable", &self.is_usable())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_connections_have_nodelay_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stream = connect_tcp("127.0.0.1", port, Duration::from_secs(5))
            .await
            .expect("connects");
        assert!(
            stream.nodelay().expect("readable option"),
            "TCP_NODELAY must be set"
        );
    }
}
