//! A session with a server: greeting, EHLO, then commands and transactions.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::timeout;

use super::happy_eyeballs::ConnectAttempt;
use super::options::{host_client_name, ClientOptions};
use super::stream::Stream;
use super::tcp::{bare_host, connect_tcp};
use super::tls::{Security, TlsInfo};
use super::tls_probe::{speaks_tls, PROBE_AFTER};
use super::transcript::{record, Direction, Transcript};
use super::wire::Wire;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::{Capabilities, ClientName, Command, Reply, ReplyCode};

/// A message body is dot-stuffed this much at a time.
const BODY_PIECE: usize = 64 * 1024;

/// A body is written whenever this much of it waits encoded: big enough for few writes,
/// small enough that a big message is never held twice.
const BODY_FLUSH_AT: usize = 256 * 1024;

/// How long QUIT may take when closing a session that is being dropped anyway.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// A stream opened under a session.
pub(crate) struct Opened {
    pub(crate) stream: Box<dyn Stream>,
    /// The local address, when known (for the EHLO name).
    pub(crate) local: Option<SocketAddr>,
    /// The addresses tried, for a direct TCP connection.
    pub(crate) attempts: Vec<ConnectAttempt>,
}

/// Opens the stream under a session: the options' connector, else a tunnel through the
/// options' proxy, else TCP with TCP_NODELAY.
pub(crate) async fn open_stream(host: &str, port: u16, options: &ClientOptions) -> Result<Opened> {
    let limit = options.timeouts().connect;
    let Some(connector) = &options.connector else {
        // Through a proxy: its tunnel stands where the TCP connection would.
        if let Some(proxy) = &options.proxy {
            let (stream, local) =
                super::proxy::open_tunnel(proxy, host, port, limit, options).await?;
            return Ok(Opened {
                stream,
                local,
                attempts: Vec::new(),
            });
        }
        let (stream, attempts) = connect_tcp(host, port, options).await?;
        let local = stream.local_addr().ok();
        return Ok(Opened {
            stream: Box::new(stream),
            local,
            attempts,
        });
    };
    match timeout(limit, connector.connect(host, port)).await {
        Ok(Ok(stream)) => Ok(Opened {
            stream,
            local: None,
            attempts: Vec::new(),
        }),
        Ok(Err(e)) => Err(Error::new(
            ErrorKind::Connect,
            Stage::Connect,
            format!("cannot connect to {host}:{port} through {connector:?}: {e}"),
        )
        .with_source(e)),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            Stage::Connect,
            format!(
                "cannot connect to {host}:{port} through {connector:?}: no answer within {limit:?}"
            ),
        )),
    }
}

/// What a session knows whatever its state: the framed stream and how it was opened.
struct Session {
    wire: Wire,
    greeting: Reply,
    options: ClientOptions,
    client_name: ClientName,
    /// The name used for SNI and certificate checks.
    server_name: String,
    tls: Option<TlsInfo>,
    /// The caller declared the stream secure (its own TLS, a tunnel): AUTH may go over it.
    secured_by_caller: bool,
}

/// A session whose server has greeted with `220` but that has not said EHLO yet.
///
/// Only [`Greeted::ehlo`] moves on, to a [`Connection`]: a session that has not said EHLO
/// cannot send mail.
pub struct Greeted {
    session: Session,
    attempts: Vec<ConnectAttempt>,
}

impl Greeted {
    /// Connects over TCP to `host:port` and waits for the greeting, in plain text.
    ///
    /// Cancel safety: nothing outlives a dropped future; the half-open connection is closed.
    ///
    /// When no greeting has come after a few seconds, the port is probed over a second
    /// connection: a port that answers a TLS ClientHello expects implicit TLS, which explains
    /// the silence, and the error says so at once instead of waiting out the greeting timeout.
    pub async fn open(host: &str, port: u16, options: ClientOptions) -> Result<Greeted> {
        let Opened {
            stream,
            local,
            attempts,
        } = open_stream(host, port, &options).await?;
        let server_name = options
            .tls_server_name
            .clone()
            .unwrap_or_else(|| bare_host(host).to_owned());
        let probe_options = options.clone();
        let greeting_limit = options.timeouts().greeting;
        let greeted = Greeted::over(stream, local, server_name, None, options);
        tokio::pin!(greeted);
        if greeting_limit <= PROBE_AFTER {
            return greeted.await.map(|g| g.with_attempts(attempts));
        }
        tokio::select! {
            result = &mut greeted => return result.map(|g| g.with_attempts(attempts)),
            () = tokio::time::sleep(PROBE_AFTER) => {}
        }
        tokio::select! {
            result = &mut greeted => result.map(|g| g.with_attempts(attempts)),
            tls = speaks_tls(host, port, &probe_options) => {
                if !tls {
                    return greeted.await.map(|g| g.with_attempts(attempts));
                }
                Err(Error::new(
                    ErrorKind::Protocol,
                    Stage::Greeting,
                    format!(
                        "no greeting after {PROBE_AFTER:?}, and {host}:{port} answers TLS: the port expects \
                         implicit TLS (like 465); set `security: tls`, or use the STARTTLS port (587)"
                    ),
                ))
            }
        }
    }

    /// Connects to `host:port`, runs the TLS handshake at once (implicit TLS, RFC 8314) and
    /// waits for the greeting over TLS.
    ///
    /// Cancel safety: nothing outlives a dropped future; the half-open connection is closed.
    pub async fn open_tls(host: &str, port: u16, options: ClientOptions) -> Result<Greeted> {
        let connector = options.tls_connector(Stage::Connect)?;
        let limit = options.timeouts().connect;
        let Opened {
            stream,
            local,
            attempts,
        } = open_stream(host, port, &options).await?;
        let server_name = options
            .tls_server_name
            .clone()
            .unwrap_or_else(|| bare_host(host).to_owned());
        let (stream, info) = connector
            .handshake(stream, &server_name, Stage::Connect, limit)
            .await?;
        note_tls(options.transcript.as_ref(), &info);
        Greeted::over(stream, local, server_name, Some(info), options)
            .await
            .map(|g| g.with_attempts(attempts))
    }

    /// Runs a session over any stream (an in-memory duplex, a stream you secured yourself)
    /// and waits for the greeting. The stream counts as plain text: AUTH needs
    /// [`Security::None`] with `allow_insecure_auth`, or STARTTLS; see
    /// [`Greeted::from_secured_stream`] for a stream that is already protected.
    ///
    /// Cancel safety: the stream is dropped with the future.
    pub async fn from_stream(stream: impl Stream, options: ClientOptions) -> Result<Greeted> {
        let server_name = options
            .tls_server_name
            .clone()
            .unwrap_or_else(|| "localhost".to_owned());
        Greeted::over(Box::new(stream), None, server_name, None, options).await
    }

    /// Like [`Greeted::from_stream`], over a stream the caller has already protected (TLS it
    /// set up itself, an SSH or WireGuard tunnel, a Unix socket to a local relay): AUTH may go
    /// over it without STARTTLS, and STARTTLS is refused.
    ///
    /// Cancel safety: the stream is dropped with the future.
    pub async fn from_secured_stream(
        stream: impl Stream,
        options: ClientOptions,
    ) -> Result<Greeted> {
        let mut greeted = Greeted::from_stream(stream, options).await?;
        greeted.session.secured_by_caller = true;
        Ok(greeted)
    }

    async fn over(
        stream: Box<dyn Stream>,
        local: Option<SocketAddr>,
        server_name: String,
        tls: Option<TlsInfo>,
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
            let grace = QUIT_GRACE.min(options.timeouts().command);
            if greeting.code().value() == 554 {
                quit_quietly(&mut wire, grace).await;
            }
            wire.shutdown(grace).await;
            return Err(err);
        }
        Ok(Greeted {
            session: Session {
                wire,
                greeting,
                options,
                client_name,
                server_name,
                tls,
                secured_by_caller: false,
            },
            attempts: Vec::new(),
        })
    }

    /// The server's `220` greeting.
    pub fn greeting(&self) -> &Reply {
        &self.session.greeting
    }

    /// The addresses tried to open this session's TCP connection and how each ended (the
    /// last one connected); empty when a [`Connector`](super::Connector) opened the stream or
    /// the session was made [from a stream](Greeted::from_stream).
    pub fn connect_attempts(&self) -> &[ConnectAttempt] {
        &self.attempts
    }

    fn with_attempts(mut self, attempts: Vec<ConnectAttempt>) -> Greeted {
        self.attempts = attempts;
        self
    }

    /// What the TLS handshake settled, for implicit TLS.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.session.tls.as_ref()
    }

    /// Says EHLO (falling back to HELO when EHLO is answered with 500 or 502) and learns the
    /// server's capabilities.
    ///
    /// Cancel safety: the session is consumed; if the future is dropped, the connection is
    /// closed.
    pub async fn ehlo(mut self) -> Result<Connection> {
        let s = &mut self.session;
        let capabilities =
            say_hello(&mut s.wire, &s.client_name, s.options.timeouts().command).await?;
        Ok(Connection {
            session: self.session,
            capabilities,
        })
    }
}

/// Best effort QUIT on a session being abandoned: bounded, errors ignored.
async fn quit_quietly(wire: &mut Wire, grace: Duration) {
    if wire.queue(&[&Command::Quit], Stage::Quit).is_ok()
        && wire.flush(Stage::Quit, grace).await.is_ok()
    {
        let _ = wire.read_reply(Stage::Quit, grace).await;
    }
}

fn note_tls(transcript: Option<&Transcript>, info: &TlsInfo) {
    let mut line = format!("TLS established: {} {}", info.protocol, info.cipher_suite);
    if info.resumed {
        line.push_str(" (session resumed)");
    }
    if !info.verified {
        line.push_str(" (certificate NOT verified: tls_skip_verify)");
    }
    record(transcript, Direction::Info, &line);
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
/// let mut conn = Connection::connect("smtp.example.com", 587, ClientOptions::default()).await?;
/// let envelope = Envelope::new(Address::new("me@example.com")?, vec![Address::new("you@example.com")?])?;
/// let report = conn.send_mail(&envelope, b"Subject: hi\r\n\r\nHello\r\n").await?;
/// println!("queued: {}", report.data_reply());
/// conn.quit().await?;
/// # Ok(()) }
/// ```
pub struct Connection {
    session: Session,
    pub(crate) capabilities: Capabilities,
}

impl Connection {
    /// Opens a ready session as the options say: TCP (or implicit TLS), greeting, EHLO,
    /// STARTTLS when required (then EHLO again), and AUTH when credentials are given.
    ///
    /// With [`Security::StartTls`] (the default on every port but 465) a server that does not
    /// offer STARTTLS or refuses it ends the session with an error before any AUTH or MAIL.
    ///
    /// Cancel safety: nothing outlives a dropped future; the half-open connection is closed.
    pub async fn connect(host: &str, port: u16, options: ClientOptions) -> Result<Connection> {
        match Connection::connect_once(host, port, options.clone()).await {
            // The credentials' source has a new secret for a refused one (an OAuth 2.0 token
            // the server found revoked or expired): one more session, not more.
            Err(err) if err.new_secret_may_help => {
                if let Some(t) = &options.transcript {
                    super::record_note(
                        t,
                        &format!("AUTH refused ({err}); one more session with a new secret"),
                    );
                }
                let mut result = Connection::connect_once(host, port, options).await;
                if let Err(err) = &mut result {
                    err.new_secret_may_help = false;
                }
                result
            }
            result => result,
        }
    }

    async fn connect_once(host: &str, port: u16, options: ClientOptions) -> Result<Connection> {
        let security = options.security.resolve(port);
        let credentials = options.credentials.clone();
        let mechanism = options.auth_mechanism;
        let greeted = match security {
            Security::Tls => Greeted::open_tls(host, port, options).await?,
            _ => Greeted::open(host, port, options).await?,
        };
        let mut conn = greeted.ehlo().await?;
        if security == Security::StartTls {
            conn = conn.starttls().await?;
        }
        if let Some(credentials) = credentials {
            if let Err(err) = conn.authenticate(&credentials, mechanism).await {
                conn.abandon().await;
                return Err(err);
            }
        }
        Ok(conn)
    }

    /// Runs a session over any stream: greeting, then EHLO (no TLS, no AUTH). The stream
    /// counts as plain text; see [`Connection::from_secured_stream`].
    ///
    /// Cancel safety: the stream is dropped with the future.
    pub async fn from_stream(stream: impl Stream, options: ClientOptions) -> Result<Connection> {
        Greeted::from_stream(stream, options).await?.ehlo().await
    }

    /// Runs a session over a stream the caller has already protected (its own TLS, a
    /// tunnel): greeting, EHLO, then AUTH when the options carry credentials — allowed here
    /// as over smtpkit's own TLS. STARTTLS is refused on such a session.
    ///
    /// ```no_run
    /// use smtpkit::client::{ClientOptions, Connection, Credentials};
    /// use smtpkit::proto::Secret;
    /// # async fn run(tunnel: tokio::net::UnixStream) -> smtpkit::Result<()> {
    /// let mut conn = Connection::from_secured_stream(tunnel, ClientOptions::default()).await?;
    /// let credentials = Credentials::new("relay-user", Secret::new("relay-pass"))?;
    /// conn.authenticate(&credentials, None).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Cancel safety: the stream is dropped with the future.
    pub async fn from_secured_stream(
        stream: impl Stream,
        options: ClientOptions,
    ) -> Result<Connection> {
        Greeted::from_secured_stream(stream, options)
            .await?
            .ehlo()
            .await
    }

    /// Upgrades to TLS with STARTTLS (RFC 3207), then says EHLO again.
    ///
    /// Fails with [`ErrorKind::TlsRequired`] (after QUIT) when the server does not offer
    /// STARTTLS or answers anything but 220, and with a protocol error when the server sent
    /// bytes after its 220 (response injection). What was learned before TLS is forgotten.
    ///
    /// Cancel safety: the session is consumed; if the future is dropped, the connection is
    /// closed.
    pub async fn starttls(mut self) -> Result<Connection> {
        let stage = Stage::StartTls;
        self.session.wire.begin(stage)?;
        if self.session.tls.is_some() || self.session.secured_by_caller {
            // RFC 3207 §4.2: a STARTTLS offer after TLS is ignored, never acted on.
            return Err(Error::new(
                ErrorKind::InvalidInput,
                stage,
                "the session is already encrypted",
            ));
        }
        let connector = self.session.options.tls_connector(stage)?;
        if !self.capabilities.starttls() {
            self.abandon().await;
            return Err(Error::new(
                ErrorKind::TlsRequired,
                stage,
                "TLS is required but the server does not offer STARTTLS; set `security: tls` for an implicit-TLS \
                 port (465), or `security: none` to send in plain text on a trusted network",
            ));
        }
        let limit = self.session.options.timeouts().command;
        self.session.wire.queue(&[&Command::StartTls], stage)?;
        self.session.wire.flush(stage, limit).await?;
        let reply = self.session.wire.read_reply(stage, limit).await?;
        if reply.code() != ReplyCode::SERVICE_READY {
            self.abandon().await;
            return Err(Error::new(
                ErrorKind::TlsRequired,
                stage,
                "TLS is required but the server refused STARTTLS; nothing else was sent",
            )
            .with_reply(reply));
        }
        let Session {
            wire,
            greeting,
            options,
            client_name,
            server_name,
            ..
        } = self.session;
        let (stream, transcript) = wire.into_stream(stage)?;
        let connector_limit = options.timeouts().connect;
        let (stream, info) = connector
            .handshake(stream, &server_name, stage, connector_limit)
            .await?;
        note_tls(transcript.as_ref(), &info);
        let mut wire = Wire::new(stream, transcript);
        // RFC 3207 §4.2: forget everything learned before TLS; ask again.
        let capabilities = say_hello(&mut wire, &client_name, options.timeouts().command).await?;
        Ok(Connection {
            session: Session {
                wire,
                greeting,
                options,
                client_name,
                server_name,
                tls: Some(info),
                secured_by_caller: false,
            },
            capabilities,
        })
    }

    /// Closes the connection without a word: for a session whose stream may be out of step
    /// (a cancelled exchange), where even QUIT could be read as part of something else.
    pub(crate) async fn close_silently(mut self) {
        let grace = QUIT_GRACE.min(self.session.options.timeouts().command);
        self.session.wire.shutdown(grace).await;
    }

    /// QUIT without waiting long, then close: for sessions ended by a policy (TLS required,
    /// AUTH failed) rather than by the server.
    async fn abandon(&mut self) {
        let grace = QUIT_GRACE.min(self.session.options.timeouts().command);
        if self.session.wire.check_usable(Stage::Quit).is_ok() {
            quit_quietly(&mut self.session.wire, grace).await;
        }
        self.session.wire.shutdown(grace).await;
    }

    /// Adds an informational line to the transcript.
    pub(crate) fn note(&self, line: &str) {
        self.session.wire.note(line);
    }

    pub(crate) fn wire(&mut self) -> &mut Wire {
        &mut self.session.wire
    }

    pub(crate) fn options(&self) -> &ClientOptions {
        &self.session.options
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Reply {
        &self.session.greeting
    }

    /// What the server announced in its last EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// What the TLS handshake settled; `None` for a plain-text session.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.session.tls.as_ref()
    }

    /// True when the session is protected: by smtpkit's TLS, or by the caller
    /// ([`Connection::from_secured_stream`]).
    pub fn is_secure(&self) -> bool {
        self.session.tls.is_some() || self.session.secured_by_caller
    }

    /// The name this client gives in EHLO.
    pub fn client_name(&self) -> &ClientName {
        &self.session.client_name
    }

    /// False once a timeout, protocol error, lost connection or 421 made the session unusable,
    /// once an exchange was cancelled half-way (its future dropped between the first byte
    /// written and the last reply read), and while the server waits for a message body after
    /// a raw DATA.
    pub fn is_usable(&self) -> bool {
        self.session.wire.is_ready()
    }

    /// Says EHLO again (the capabilities are replaced by the new reply).
    ///
    /// Cancel safety: if the future is dropped after EHLO was written and before its reply was
    /// read, the session is never used again (every later call fails, a pool discards it).
    pub async fn ehlo(&mut self) -> Result<&Capabilities> {
        self.refuse_while_awaiting_body(Stage::Ehlo)?;
        let s = &mut self.session;
        s.wire.begin(Stage::Ehlo)?;
        let result = say_hello(&mut s.wire, &s.client_name, s.options.timeouts().command).await;
        s.wire.end();
        self.capabilities = result?;
        Ok(&self.capabilities)
    }

    /// Sends any command and returns the server's reply, whatever its code. A `354` to DATA
    /// must be followed by [`Connection::send_body`]; until then every other call is refused.
    /// STARTTLS has its own call, [`Connection::starttls`]; BDAT, which carries the message,
    /// is refused (the transaction calls send it).
    ///
    /// Cancel safety: if the future is dropped after the command was written and before its
    /// reply was read, the session is never used again (every later call fails, a pool
    /// discards it).
    pub async fn command(&mut self, command: &Command) -> Result<Reply> {
        self.refuse_while_awaiting_body(Stage::Command)?;
        if matches!(command, Command::StartTls) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Stage::Command,
                "STARTTLS changes the stream: use Connection::starttls",
            ));
        }
        if matches!(command, Command::Bdat { .. }) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Stage::Command,
                "BDAT carries message octets: use Connection::send_mail or send_many",
            ));
        }
        let limit = match command {
            Command::Data => self.options().timeouts().data_start,
            _ => self.options().timeouts().command,
        };
        let wire = self.wire();
        wire.begin(Stage::Command)?;
        let result = async {
            wire.queue(&[command], Stage::Command)?;
            wire.flush(Stage::Command, limit).await?;
            wire.read_reply(Stage::Command, limit).await
        }
        .await;
        if let (Command::Data, Ok(reply)) = (command, &result) {
            wire.set_awaiting_body(reply.code() == ReplyCode::START_MAIL_INPUT);
        }
        wire.end();
        result
    }

    /// After a `354` to [`Connection::command`]`(&Command::Data)`, sends `body` dot-stuffed with
    /// its terminator and returns the final reply.
    ///
    /// Cancel safety: if the future is dropped before the final reply was read, the session
    /// is never used again (the server may be in the middle of the body, or may have taken it).
    pub async fn send_body(&mut self, body: &[u8]) -> Result<Reply> {
        if !self.wire().awaiting_body() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Stage::Body,
                "no message body expected: send DATA with Connection::command and get 354 first",
            ));
        }
        self.wire().begin(Stage::Body)?;
        let result = self.write_body(body, body.len(), None).await;
        let wire = self.wire();
        wire.set_awaiting_body(false);
        wire.end();
        result
    }

    /// Sets an end that no later exchange may pass, whatever the per-stage timeouts say (a
    /// send's total deadline); `None` clears it. A step cut short by it fails with
    /// [`ErrorKind::Timeout`] at its stage, like any other timeout.
    pub fn set_deadline(&mut self, deadline: Option<tokio::time::Instant>) {
        self.session.wire.set_deadline(deadline);
    }

    /// The error for any exchange but the body while the server waits for one.
    pub(crate) fn refuse_while_awaiting_body(&self, stage: Stage) -> Result<()> {
        if self.session.wire.awaiting_body() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                stage,
                "the server waits for a message body after 354: call Connection::send_body first",
            ));
        }
        Ok(())
    }

    /// Writes a message body, dot-stuffed as it goes, and its final `.` (with an already
    /// encoded command group behind them in the same write, when given) and reads the reply to
    /// the `.`.
    ///
    /// The body is encoded into the write buffer a piece at a time and written whenever
    /// `BODY_FLUSH_AT` bytes are waiting, so a big message is never copied whole: memory
    /// stays the caller's message plus a bounded buffer. A small body leaves in one write with
    /// its terminator and `then` (no Nagle stall).
    pub(crate) async fn write_body(
        &mut self,
        message: &[u8],
        body_len: usize,
        then: Option<(&[u8], &[String])>,
    ) -> Result<Reply> {
        let timeouts = *self.options().timeouts();
        let gate = super::final_dot_gate::current_gate();
        let wire = self.wire();
        wire.note(&format!("message body: {body_len} bytes"));
        let mut stuffer = crate::proto::DotStuffer::new();
        for piece in message.chunks(BODY_PIECE) {
            wire.queue_stuffed(&mut stuffer, piece);
            if wire.queued_len() >= BODY_FLUSH_AT {
                // Before the final `.`: a failure here means the server cannot have it.
                wire.flush_body(timeouts.data_block, usize::MAX).await?;
            }
        }
        wire.queue_last_line_end(&mut stuffer);
        if let Some(gate) = gate {
            // The body, then the gate, then the final `.` in a write of its own.
            wire.flush_body(timeouts.data_block, usize::MAX).await?;
            if let Err(err) = gate.before_final_dot().await {
                // The body is out without its `.`: the session is in the middle of DATA.
                wire.note("stopped before the final \".\": the server does not have the message");
                return Err(wire.poison(err));
            }
        }
        wire.queue_raw(b".\r\n");
        let body_end = wire.queued_len();
        if let Some((group, lines)) = then {
            wire.queue_encoded(group, lines);
        }
        wire.flush_body(timeouts.data_block, body_end).await?;
        wire.read_reply(Stage::DataEnd, timeouts.data_end).await
    }

    /// RSET: aborts the current transaction. Errors on anything but `250`.
    ///
    /// Cancel safety: if the future is dropped after RSET was written and before its reply was
    /// read, the session is never used again.
    pub async fn rset(&mut self) -> Result<Reply> {
        self.exchange_simple(Command::Rset, Stage::Rset).await
    }

    /// NOOP: checks that the server still answers. Errors on anything but `250`.
    ///
    /// Cancel safety: if the future is dropped after NOOP was written and before its reply was
    /// read, the session is never used again.
    pub async fn noop(&mut self) -> Result<Reply> {
        self.exchange_simple(Command::Noop, Stage::Noop).await
    }

    async fn exchange_simple(&mut self, command: Command, stage: Stage) -> Result<Reply> {
        self.refuse_while_awaiting_body(stage)?;
        self.wire().begin(stage)?;
        let result = self.simple(command, stage).await;
        self.wire().end();
        result
    }

    /// Checks a session taken from a pool: quiet and open (see `Wire::still_quiet`), and,
    /// with `noop_within`, answering NOOP within that time.
    pub(crate) async fn healthy(&mut self, noop_within: Option<Duration>) -> bool {
        if !self.session.wire.still_quiet().await {
            return false;
        }
        let Some(limit) = noop_within else {
            return true;
        };
        let wire = &mut self.session.wire;
        if wire.begin(Stage::Noop).is_err() {
            return false;
        }
        let result = async {
            wire.queue(&[&Command::Noop], Stage::Noop)?;
            wire.flush(Stage::Noop, limit).await?;
            wire.read_reply(Stage::Noop, limit).await
        }
        .await;
        wire.end();
        matches!(result, Ok(reply) if reply.code() == ReplyCode::OK)
    }

    /// One command whose only good answer is `250`, inside an exchange already begun.
    pub(crate) async fn simple(&mut self, command: Command, stage: Stage) -> Result<Reply> {
        let limit = self.options().timeouts().command;
        let wire = self.wire();
        wire.queue(&[&command], stage)?;
        wire.flush(stage, limit).await?;
        let reply = wire.read_reply(stage, limit).await?;
        // RFC 5321 §4.3.2: RSET and NOOP answer 250. Anything else (a 221 "closing", an
        // error) means this session is not one to send more mail over.
        if reply.code() != ReplyCode::OK {
            return Err(wire.poison(Error::rejected(stage, reply)));
        }
        Ok(reply)
    }

    /// QUIT and close. A server that does not answer within the command deadline is dropped.
    ///
    /// Cancel safety: the session is consumed; if the future is dropped, the connection is
    /// closed.
    pub async fn quit(mut self) -> Result<Reply> {
        let limit = self.options().timeouts().command;
        if !self.session.wire.is_ready() {
            // A confused stream could take QUIT as part of a message body.
            let err = self.session.wire.check_usable(Stage::Quit).err();
            self.close_silently().await;
            return Err(err.unwrap_or_else(|| {
                Error::new(
                    ErrorKind::Poisoned,
                    Stage::Quit,
                    "closed without QUIT: the session was in the middle of an exchange",
                )
            }));
        }
        let wire = self.wire();
        let result = async {
            wire.queue(&[&Command::Quit], Stage::Quit)?;
            wire.flush(Stage::Quit, limit).await?;
            wire.read_reply(Stage::Quit, limit).await
        }
        .await;
        wire.shutdown(QUIT_GRACE).await;
        result
    }
}

impl std::fmt::Debug for Greeted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Greeted")
            .field("greeting", &self.greeting().to_string())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("greeting", &self.session.greeting.to_string())
            .field("capabilities", &self.capabilities)
            .field(
                "tls",
                &self.session.tls.as_ref().map(|t| t.protocol.as_str()),
            )
            .field("usable", &self.is_usable())
            .finish_non_exhaustive()
    }
}
