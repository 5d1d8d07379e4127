//! A hook run just before a message's final `.` leaves: the last moment at which a failure
//! still means "not sent". After the `.` the server may have the message whatever happens
//! (RFC 1047), so a durable queue records that moment before it passes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;

/// What [`FinalDotGate::before_final_dot`] returns.
pub type GateFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Called after a message's body was written and before its terminating `.` is: see
/// [`with_final_dot_gate`].
pub trait FinalDotGate: Send + Sync + 'static {
    /// Runs before the final `.` of each transaction. `Ok` lets the `.` go; an error ends the
    /// send with that error before the `.` (the server cannot have the message) and the
    /// session is closed, never reused.
    ///
    /// Cancel safety: the future is dropped if the send is; the `.` is then never written.
    fn before_final_dot(&self) -> GateFuture<'_>;
}

tokio::task_local! {
    static GATE: Arc<dyn FinalDotGate>;
}

/// Runs `future` so that every transaction it sends in this task calls `gate` just before its
/// final `.` (the body goes out first, then the gate, then the `.` in a write of its own).
/// Works through [`crate::client::Connection`], pools and mailers alike, as long as they run
/// in the calling task.
///
/// ```no_run
/// use std::sync::Arc;
/// use smtpkit::client::{with_final_dot_gate, Connection, Envelope, FinalDotGate, GateFuture};
///
/// struct Journal;
/// impl FinalDotGate for Journal {
///     fn before_final_dot(&self) -> GateFuture<'_> {
///         Box::pin(async { /* write "may be delivered from now on" durably */ Ok(()) })
///     }
/// }
///
/// # async fn run(conn: &mut Connection, envelope: &Envelope) -> smtpkit::Result<()> {
/// with_final_dot_gate(Arc::new(Journal), conn.send_mail(envelope, b"Subject: x\r\n\r\nhi\r\n"))
///     .await?;
/// # Ok(()) }
/// ```
///
/// Cancel safety: dropping the returned future drops `future`.
pub async fn with_final_dot_gate<F: Future>(gate: Arc<dyn FinalDotGate>, future: F) -> F::Output {
    GATE.scope(gate, future).await
}

/// The gate of the running task, if any.
pub(crate) fn current_gate() -> Option<Arc<dyn FinalDotGate>> {
    GATE.try_with(Arc::clone).ok()
}
