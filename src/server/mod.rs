//! A small SMTP server for local use: it captures what would have been sent, one `.eml` file
//! per message, for tests, demos and developers checking their workflows (what MailHog and
//! Mailpit are used for). Not a mail transfer agent: it relays nothing.
//!
//! ```no_run
//! use smtpkit::server::{Server, ServerConfig};
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::bind(ServerConfig::new("127.0.0.1:2525".parse().unwrap(), "mail".into())).await?;
//! println!("listening on {}", server.local_addr());
//! server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod session;
mod store;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use crate::message::MessageStore;
use crate::proto::Secret;
use session::Session;
pub use store::StoredMessage;
pub use tls::{load_cert_key, LocalCa};

/// Limits that protect the server (and the disk) from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Largest message accepted, announced with SIZE. Default 25 MiB.
    pub max_message_size: usize,
    /// Most recipients per message. Default 100.
    pub max_recipients: usize,
    /// Longest command line, CRLF included. Default 4096 (RFC 5321 asks for at least 512).
    pub max_line_len: usize,
    /// A session idle this long is closed with 421. Default 5 min.
    pub idle_timeout: Duration,
    /// Most sessions at once. Default 64.
    pub max_sessions: usize,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_line_len: 4096,
            idle_timeout: Duration::from_secs(300),
            max_sessions: 64,
        }
    }
}

/// What the server does.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where to store messages.
    pub dir: PathBuf,
    /// The name in the greeting and in `Received:`.
    pub hostname: String,
    /// TLS: offered with STARTTLS, or from the first byte with `implicit_tls`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS from the first byte instead of STARTTLS.
    pub implicit_tls: bool,
    /// When set, AUTH PLAIN and LOGIN with this user and password are required before MAIL.
    pub auth: Option<(String, Secret)>,
    /// When set, AUTH XOAUTH2 with this user and OAuth 2.0 bearer token is offered and
    /// required before MAIL (beside PLAIN and LOGIN when [`auth`](Self::auth) is set too).
    /// A wrong user or token is answered as Gmail does: a `334` challenge holding a JSON
    /// error, then `535 5.7.8` after the client's (empty) reply. `Debug` shows only the user.
    pub xoauth2: Option<(String, Secret)>,
    /// Offer AUTH over an unencrypted session (default: only after TLS).
    pub allow_insecure_auth: bool,
    /// Limits.
    pub limits: ServerLimits,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("dir", &self.dir)
            .field("hostname", &self.hostname)
            .field("tls", &self.tls.is_some())
            .field("implicit_tls", &self.implicit_tls)
            .field("auth_user", &self.auth.as_ref().map(|(u, _)| u))
            .field("xoauth2_user", &self.xoauth2.as_ref().map(|(u, _)| u))
            .field("allow_insecure_auth", &self.allow_insecure_auth)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ServerConfig {
    /// Plain text, no AUTH, default limits, host name `localhost`.
    pub fn new(listen: SocketAddr, dir: PathBuf) -> ServerConfig {
        ServerConfig {
            listen,
            dir,
            hostname: "localhost".into(),
            tls: None,
            implicit_tls: false,
            auth: None,
            xoauth2: None,
            allow_insecure_auth: false,
            limits: ServerLimits::default(),
        }
    }
}

/// How long a stopping server waits for sessions in the middle of a message body.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Called for every stored message (e.g. to print a line or notify a test).
pub type MessageHook = Arc<dyn Fn(&StoredMessage) + Send + Sync>;

pub(crate) struct Shared {
    config: ServerConfig,
    store: MessageStore,
    on_message: Option<MessageHook>,
    /// Set once the server is stopping: sessions waiting for a command say `421` and close.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the listening socket and prepares the store directory.
    ///
    /// Cancel safety: a dropped future binds nothing.
    pub async fn bind(config: ServerConfig) -> std::io::Result<Server> {
        Server::bind_with(config, None).await
    }

    /// Like [`Server::bind`], calling `on_message` for every stored message.
    ///
    /// Cancel safety: a dropped future binds nothing.
    pub async fn bind_with(
        config: ServerConfig,
        on_message: Option<MessageHook>,
    ) -> std::io::Result<Server> {
        if config.implicit_tls && config.tls.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "implicit TLS needs a certificate",
            ));
        }
        let store = MessageStore::new(&config.dir)?;
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                config,
                store,
                on_message,
                stopping: tokio::sync::watch::Sender::new(false),
            }),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.config.listen)
    }

    /// Serves until `shutdown` completes, then stops accepting and ends the open sessions:
    /// one waiting for a command (an idle client, one between messages) is answered
    /// `421 4.3.2 shutting down` and closed at once (RFC 5321 §3.8); one in the middle of a
    /// message body gets up to 5 seconds to finish it (the message is stored and answered,
    /// then the `421` follows); what is left after that is ended where it stands.
    ///
    /// Cancel safety: dropping the future stops the server at once: every session is ended
    /// where it stands. A message is stored whole (written to a hidden file and renamed in one
    /// step that no cancellation can split) or not at all; a client cut off before its `250`
    /// sees a closed connection, which it must treat as "outcome unknown".
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let mut sessions = JoinSet::new();
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.shared.config.limits.max_sessions,
        ));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        // Too many sessions: say so and close (RFC 5321 §3.8).
                        sessions.spawn(async move {
                            use tokio::io::AsyncWriteExt;
                            let mut stream = stream;
                            let _ = stream.write_all(b"421 4.3.2 too many sessions, try later\r\n").await;
                        });
                        continue;
                    };
                    let shared = self.shared.clone();
                    sessions.spawn(async move {
                        let _permit = permit;
                        let config = &shared.config;
                        let stream: Box<dyn crate::client::Stream> = if config.implicit_tls {
                            let Some(tls) = config.tls.clone() else { return };
                            let mut stopping = shared.stopping.subscribe();
                            let accept = tokio::time::timeout(
                                config.limits.idle_timeout,
                                TlsAcceptor::from(tls).accept(stream),
                            );
                            tokio::select! {
                                accepted = accept => match accepted {
                                    Ok(Ok(s)) => Box::new(s),
                                    Ok(Err(e)) => {
                                        tracing::warn!("session {peer}: TLS handshake (implicit TLS) failed: {e}");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::warn!("session {peer}: no TLS handshake (implicit TLS) within {:?}", config.limits.idle_timeout);
                                        return;
                                    }
                                },
                                _ = stopping.wait_for(|&stop| stop) => return,
                            }
                        } else {
                            Box::new(stream)
                        };
                        let tls = config.implicit_tls;
                        Session::new(shared.clone(), stream, peer, tls).run().await;
                    });
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        drop(self.listener);
        self.shared.stopping.send_replace(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        sessions.abort_all();
        Ok(())
    }
}
