//! A bounded pool of ready sessions to one server, shared by every task that sends through it.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::{ClientOptions, Connection, Envelope, TransactionReport};
use crate::error::{Error, ErrorKind, Result, Stage};

/// Pool limits (the `pool:` extension of a provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most sessions open at once; also most messages in flight. Default 4.
    pub max_connections: usize,
    /// A session is closed after this many messages. Default 100.
    pub max_messages_per_connection: usize,
    /// An idle session older than this is closed rather than reused. Default 30 s.
    pub idle_timeout: Duration,
    /// A session is closed once this old, idle or not. Default 5 min.
    pub max_lifetime: Duration,
    /// A session idle longer than this is checked with NOOP before reuse. Default 5 s.
    pub health_check_after: Duration,
    /// How long that NOOP may take before the session is given up for a new one. Default 5 s.
    pub health_check_timeout: Duration,
    /// How long a task waits for a free session before giving up. Default 60 s.
    pub checkout_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> PoolSettings {
        PoolSettings {
            max_connections: 4,
            max_messages_per_connection: 100,
            idle_timeout: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(5 * 60),
            health_check_after: Duration::from_secs(5),
            health_check_timeout: Duration::from_secs(5),
            checkout_timeout: Duration::from_secs(60),
        }
    }
}

struct Idle {
    conn: Connection,
    created: Instant,
    idle_since: Instant,
    sent: usize,
}

struct Shared {
    host: String,
    port: u16,
    options: ClientOptions,
    settings: PoolSettings,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
    opened: AtomicUsize,
    reused: AtomicUsize,
    /// Messages of tasks sending at once, waiting to share a session.
    sessions: super::shared_sessions::SharedSessions,
}

/// Sessions to one server, reused across messages and tasks.
///
/// At most `max_connections` sessions exist at once, and each is lent to one task at a time;
/// waiting tasks are served in arrival order. A session that saw a timeout, a protocol error,
/// a lost connection or a `421` is never lent again. `Clone` shares the same pool.
///
/// ```no_run
/// use smtpkit::client::ClientOptions;
/// use smtpkit::delivery::{Pool, PoolSettings};
/// # async fn run(envelope: smtpkit::client::Envelope) -> smtpkit::Result<()> {
/// let pool = Pool::new("smtp.example.com", 587, ClientOptions::default(), PoolSettings::default());
/// let mut session = pool.get().await?;
/// session.send_mail(&envelope, b"Subject: hi\r\n\r\nhello\r\n").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field(
                "server",
                &format!("{}:{}", self.shared.host, self.shared.port),
            )
            .field("settings", &self.shared.settings)
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl Pool {
    /// A pool of sessions opened with [`Connection::connect`]`(host, port, options)`. Nothing is
    /// opened until needed. Inside a tokio runtime, a background task closes idle sessions
    /// as they expire; it stops when the last clone of the pool is dropped.
    pub fn new(host: &str, port: u16, options: ClientOptions, settings: PoolSettings) -> Pool {
        let settings = PoolSettings {
            max_connections: settings.max_connections.max(1),
            ..settings
        };
        let shared = Arc::new(Shared {
            host: host.to_owned(),
            port,
            options,
            settings,
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            idle: Mutex::new(Vec::new()),
            opened: AtomicUsize::new(0),
            reused: AtomicUsize::new(0),
            sessions: Default::default(),
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(reap_idle(Arc::downgrade(&shared)));
        }
        Pool { shared }
    }

    /// Lends a session: a reused idle one (checked with NOOP if it sat idle a while) or a new one.
    ///
    /// Cancel safety: a dropped future gives back its place in the queue; a session it was
    /// checking or opening is closed, never lent.
    pub async fn get(&self) -> Result<PooledConnection> {
        let s = &self.shared;
        let permit = match tokio::time::timeout(
            s.settings.checkout_timeout,
            s.permits.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                return Err(Error::new(
                    ErrorKind::Poisoned,
                    Stage::Connect,
                    "the pool is closed",
                ))
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    Stage::Connect,
                    format!(
                        "no free connection within {:?} ({} in use)",
                        s.settings.checkout_timeout, s.settings.max_connections
                    ),
                ))
            }
        };
        self.lend(permit).await
    }

    /// Like [`Pool::get`] when a session can be lent at once (an idle one, or room for a new
    /// one); `None` when all `max_connections` are lent.
    ///
    /// Cancel safety: as [`Pool::get`].
    pub async fn try_get(&self) -> Option<Result<PooledConnection>> {
        let permit = self.shared.permits.clone().try_acquire_owned().ok()?;
        Some(self.lend(permit).await)
    }

    /// A session for the holder of `permit`: a reused idle one or a new one.
    async fn lend(&self, permit: OwnedSemaphorePermit) -> Result<PooledConnection> {
        let s = &self.shared;
        while let Some(idle) = self.take_idle() {
            if self.expired(&idle, Instant::now()) {
                retire(s, idle.conn, None);
                continue;
            }
            let mut conn = idle.conn;
            // Every reused session is checked for a close or a `421` the server sent while
            // it was idle; one idle a while also answers NOOP, within a short time.
            let noop = (idle.idle_since.elapsed() >= s.settings.health_check_after)
                .then_some(s.settings.health_check_timeout);
            if !conn.healthy(noop).await {
                continue; // Dropped, so closed; open another.
            }
            s.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(PooledConnection {
                conn: Some(conn),
                created: idle.created,
                sent: idle.sent,
                pool: self.shared.clone(),
                permit: Some(permit),
            });
        }
        let conn = Connection::connect(&s.host, s.port, s.options.clone()).await?;
        s.opened.fetch_add(1, Ordering::Relaxed);
        Ok(PooledConnection {
            conn: Some(conn),
            created: Instant::now(),
            sent: 0,
            pool: self.shared.clone(),
            permit: Some(permit),
        })
    }

    fn take_idle(&self) -> Option<Idle> {
        // Most recently used first: it is the least likely to have been dropped by the server.
        self.shared.idle.lock().ok()?.pop()
    }

    fn expired(&self, idle: &Idle, now: Instant) -> bool {
        expired(&self.shared.settings, idle, now)
    }

    /// The queue through which tasks sending at once share sessions.
    pub(super) fn sessions(&self) -> &super::shared_sessions::SharedSessions {
        &self.shared.sessions
    }

    /// Messages of `Mailer` sends waiting for one of the pool's sessions to take them in a
    /// batch (all sessions were busy when they came).
    pub fn waiting(&self) -> usize {
        self.shared.sessions.waiting()
    }

    /// Sessions waiting idle in the pool.
    pub fn idle_count(&self) -> usize {
        self.shared.idle.lock().map(|i| i.len()).unwrap_or(0)
    }

    /// How many sessions the pool has opened so far.
    pub fn opened(&self) -> usize {
        self.shared.opened.load(Ordering::Relaxed)
    }

    /// How many times an idle session was lent again.
    pub fn reused(&self) -> usize {
        self.shared.reused.load(Ordering::Relaxed)
    }

    /// The limits.
    pub fn settings(&self) -> &PoolSettings {
        &self.shared.settings
    }

    /// QUITs every idle session.
    ///
    /// Cancel safety: sessions not yet closed when the future is dropped are closed without
    /// QUIT.
    pub async fn close_idle(&self) {
        let idle: Vec<Idle> = self
            .shared
            .idle
            .lock()
            .map(|mut i| std::mem::take(&mut *i))
            .unwrap_or_default();
        for i in idle {
            // Holding a slot while saying QUIT keeps the session counted against
            // max_connections until it is really gone.
            match self.shared.permits.clone().try_acquire_owned() {
                Ok(_slot) => {
                    let _ = i.conn.quit().await;
                }
                Err(_) => drop(i.conn),
            }
        }
    }
}

fn expired(settings: &PoolSettings, idle: &Idle, now: Instant) -> bool {
    now.duration_since(idle.idle_since) >= settings.idle_timeout
        || now.duration_since(idle.created) >= settings.max_lifetime
        || idle.sent >= settings.max_messages_per_connection
}

/// Closes a session nobody will use again, without making anyone wait for it.
///
/// A session out of step (failed, or its exchange cancelled half-way) is closed at once
/// without QUIT, which a confused stream could take for part of something else. A healthy one
/// says QUIT in the background, keeping a slot of the pool until it is closed (the slot it was
/// lent with, or a free one), so that `max_connections` bounds the sessions that exist, not
/// only those lent; with no slot free it is closed at once instead.
fn retire(shared: &Shared, conn: Connection, permit: Option<OwnedSemaphorePermit>) {
    if !conn.is_usable() {
        drop(conn); // Closes the socket now.
        return;
    }
    let permit = permit.or_else(|| shared.permits.clone().try_acquire_owned().ok());
    let (Some(permit), Ok(handle)) = (permit, tokio::runtime::Handle::try_current()) else {
        return;
    };
    handle.spawn(async move {
        let _ = conn.quit().await;
        drop(permit);
    });
}

async fn reap_idle(shared: Weak<Shared>) {
    loop {
        let period = match shared.upgrade() {
            Some(s) => (s.settings.idle_timeout / 2).max(Duration::from_millis(50)),
            None => return,
        };
        tokio::time::sleep(period).await;
        let Some(s) = shared.upgrade() else { return };
        let now = Instant::now();
        let expired_now: Vec<Idle> = match s.idle.lock() {
            Ok(mut idle) => {
                let (gone, keep): (Vec<Idle>, Vec<Idle>) =
                    idle.drain(..).partition(|i| expired(&s.settings, i, now));
                *idle = keep;
                gone
            }
            Err(_) => return,
        };
        for i in expired_now {
            retire(&s, i.conn, None);
        }
        drop(s);
    }
}

impl crate::client::Sender for Pool {
    /// A session from the pool (see [`Pool::get`]), then [`Connection::send_mail`].
    async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Result<crate::client::Sent> {
        let mut session = self.get().await?;
        let report = session.send_mail(envelope, message).await?;
        Ok(crate::client::Sent::from(&report))
    }
}

/// A session lent by a [`Pool`]; it goes back when dropped (if still usable and within limits).
pub struct PooledConnection {
    conn: Option<Connection>,
    created: Instant,
    sent: usize,
    pool: Arc<Shared>,
    /// The slot this session holds; it goes back when the session is idle or closed.
    permit: Option<OwnedSemaphorePermit>,
}

impl PooledConnection {
    /// Sends one message (see [`Connection::send_mail`]) and counts it against
    /// `max_messages_per_connection`.
    ///
    /// Cancel safety: if the future is dropped after the first command was written and before
    /// the last reply was read, the session is closed when this `PooledConnection` is dropped,
    /// never lent again.
    pub async fn send_mail(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<TransactionReport> {
        self.sent += 1;
        self.deref_mut().send_mail(envelope, message).await
    }

    /// Sends several messages in a row (see [`Connection::send_many`]), each counted against
    /// `max_messages_per_connection`.
    ///
    /// Cancel safety: as [`PooledConnection::send_mail`].
    pub async fn send_many(
        &mut self,
        batch: &[(&Envelope, &[u8])],
    ) -> Vec<Result<TransactionReport>> {
        self.sent += batch.len();
        self.deref_mut().send_many(batch).await
    }

    /// Messages sent over this session so far.
    pub fn messages_sent(&self) -> usize {
        self.sent
    }

    /// Messages this session may still send before `max_messages_per_connection`, or 0 once
    /// it has lived `max_lifetime`.
    pub fn messages_left(&self) -> usize {
        let settings = &self.pool.settings;
        if self.created.elapsed() >= settings.max_lifetime {
            return 0;
        }
        settings
            .max_messages_per_connection
            .saturating_sub(self.sent)
    }
}

impl Deref for PooledConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Present until drop.
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("connection taken before drop"))
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("connection taken before drop"))
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !conn.is_usable() {
            // A failed session, or one whose exchange was cancelled half-way (its replies
            // would be read by the next borrower as its own), is never lent again.
            retire(&self.pool, conn, self.permit.take());
            return;
        }
        let idle = Idle {
            conn,
            created: self.created,
            idle_since: Instant::now(),
            sent: self.sent,
        };
        if expired(&self.pool.settings, &idle, Instant::now()) {
            retire(&self.pool, idle.conn, self.permit.take());
            return;
        }
        if let Ok(mut list) = self.pool.idle.lock() {
            list.push(idle);
        }
    }
}
