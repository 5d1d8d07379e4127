//! Connecting to a server with several addresses: Happy Eyeballs version 2 (RFC 8305).
//!
//! The addresses are put in the order of §4: the resolver's order (which follows RFC 6724's
//! preferences), address families interleaved starting with the first one's, and addresses
//! that failed recently moved last. Attempts start one after another, each
//! [`DEFAULT_ATTEMPT_DELAY`] after the previous one unless that one has ended already (§5);
//! the first to connect wins and the others are dropped, which closes their sockets. One
//! deadline covers the whole race.
//!
//! The system resolver (`getaddrinfo`) answers for both families at once, run off the async
//! threads, so the separate AAAA and A queries of §3 and their resolution delay do not apply.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

/// RFC 8305 §5: the recommended Connection Attempt Delay.
pub const DEFAULT_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// How long an address that failed is tried after the others.
const REMEMBER_FAILURE: Duration = Duration::from_secs(5 * 60);

/// How one connection attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// It connected (and won the race).
    Connected,
    /// The connection failed: refused, unreachable, …
    Failed(String),
    /// Still connecting when the deadline passed.
    TimedOut,
    /// Dropped because another address connected first.
    Abandoned,
    /// Not tried: its address family differs from the `source_address`'s.
    Skipped(String),
}

/// One address tried (or not) while connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectAttempt {
    /// The server's address.
    pub address: SocketAddr,
    /// From the start of the race to this attempt's start.
    pub started_after: Duration,
    /// From its start to its end (zero when skipped).
    pub took: Duration,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

impl fmt::Display for ConnectAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.took.as_millis();
        match &self.outcome {
            AttemptOutcome::Connected => write!(f, "{} connected in {ms} ms", self.address),
            AttemptOutcome::Failed(why) => {
                write!(f, "{} failed after {ms} ms: {why}", self.address)
            }
            AttemptOutcome::TimedOut => write!(f, "{} no answer in {ms} ms", self.address),
            AttemptOutcome::Abandoned => {
                write!(
                    f,
                    "{} abandoned after {ms} ms (another connected)",
                    self.address
                )
            }
            AttemptOutcome::Skipped(why) => write!(f, "{} not tried: {why}", self.address),
        }
    }
}

/// Addresses that failed lately, shared by the clones of a [`ClientOptions`]
/// (a provider's pool), so that a reconnect tries them after the others for a while
/// (five minutes).
///
/// [`ClientOptions`]: super::ClientOptions
#[derive(Clone, Default)]
pub struct RecentFailures {
    failed: Arc<Mutex<HashMap<SocketAddr, Instant>>>,
}

impl fmt::Debug for RecentFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.lock().len();
        write!(f, "RecentFailures({n} addresses)")
    }
}

impl RecentFailures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Instant>> {
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `address` failed within the last five minutes.
    pub fn contains(&self, address: &SocketAddr) -> bool {
        self.lock()
            .get(address)
            .is_some_and(|at| at.elapsed() < REMEMBER_FAILURE)
    }

    fn remember(&self, attempts: &[ConnectAttempt]) {
        let mut failed = self.lock();
        failed.retain(|_, at| at.elapsed() < REMEMBER_FAILURE);
        for a in attempts {
            match a.outcome {
                AttemptOutcome::Failed(_) | AttemptOutcome::TimedOut => {
                    failed.insert(a.address, Instant::now());
                }
                AttemptOutcome::Connected => {
                    failed.remove(&a.address);
                }
                AttemptOutcome::Abandoned | AttemptOutcome::Skipped(_) => {}
            }
        }
    }
}

/// RFC 8305 §4: families interleaved, starting with the family of the first address, each
/// family in the resolver's order; addresses in `recent` after all the others (in the same
/// interleaved order).
pub(crate) fn order(addresses: &[SocketAddr], recent: &RecentFailures) -> Vec<SocketAddr> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addresses.len());
    for a in addresses {
        if !unique.contains(a) {
            unique.push(*a);
        }
    }
    let (fresh, failed): (Vec<SocketAddr>, Vec<SocketAddr>) =
        unique.into_iter().partition(|a| !recent.contains(a));
    let mut ordered = interleave(&fresh);
    ordered.extend(interleave(&failed));
    ordered
}

fn interleave(addresses: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addresses.first() else {
        return Vec::new();
    };
    let first_v6 = first.is_ipv6();
    let (mut same, mut other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addresses.iter().partition(|a| a.is_ipv6() == first_v6);
    same.reverse();
    other.reverse();
    let mut out = Vec::with_capacity(addresses.len());
    while !same.is_empty() || !other.is_empty() {
        out.extend(same.pop());
        out.extend(other.pop());
    }
    out
}

/// What a race ended with: the stream when one connected, and every attempt.
pub(crate) struct Raced {
    pub(crate) stream: Option<TcpStream>,
    pub(crate) attempts: Vec<ConnectAttempt>,
    /// The deadline passed with attempts still connecting.
    pub(crate) timed_out: bool,
    /// The last attempt's error, when one failed.
    pub(crate) last_error: Option<std::io::Error>,
}

/// Races connections to `addresses` (already ordered) until one connects, all fail, or
/// `deadline` passes. Each attempt binds `source` first when given. Remembers the failures in
/// `recent`.
///
/// Cancel safety: dropping the future drops every attempt, closing their sockets.
pub(crate) async fn race(
    addresses: &[SocketAddr],
    source: Option<IpAddr>,
    attempt_delay: Duration,
    deadline: Instant,
    recent: &RecentFailures,
) -> Raced {
    let started = Instant::now();
    let mut attempts: Vec<ConnectAttempt> = Vec::with_capacity(addresses.len());
    let mut queue: Vec<SocketAddr> = Vec::with_capacity(addresses.len());
    for &address in addresses {
        match source {
            Some(s) if s.is_ipv6() != address.is_ipv6() => attempts.push(ConnectAttempt {
                address,
                started_after: Duration::ZERO,
                took: Duration::ZERO,
                outcome: AttemptOutcome::Skipped(format!(
                    "the source address {s} is of the other address family"
                )),
            }),
            _ => queue.push(address),
        }
    }
    queue.reverse();
    // Index into `attempts` of each running attempt's record.
    let mut running: JoinSet<(usize, std::io::Result<TcpStream>)> = JoinSet::new();
    let mut next_start = started;
    let mut winner = None;
    let mut timed_out = false;
    let mut last_error = None;
    loop {
        // Start the next attempt when its time has come (or nothing is running).
        if !queue.is_empty() && (running.is_empty() || Instant::now() >= next_start) {
            if let Some(address) = queue.pop() {
                let index = attempts.len();
                attempts.push(ConnectAttempt {
                    address,
                    started_after: started.elapsed(),
                    took: Duration::ZERO,
                    outcome: AttemptOutcome::TimedOut,
                });
                running.spawn(async move { (index, connect_one(address, source).await) });
                next_start = Instant::now() + attempt_delay;
            }
            continue;
        }
        if running.is_empty() {
            break;
        }
        let wait_for_next = async {
            if queue.is_empty() {
                std::future::pending::<()>().await;
            }
            sleep_until(next_start).await;
        };
        tokio::select! {
            done = running.join_next() => {
                let Some(Ok((index, result))) = done else {
                    continue;
                };
                let attempt = &mut attempts[index];
                attempt.took = started.elapsed().saturating_sub(attempt.started_after);
                match result {
                    Ok(stream) => {
                        attempt.outcome = AttemptOutcome::Connected;
                        winner = Some(stream);
                        break;
                    }
                    // §5: a failed attempt starts the next one at once.
                    Err(e) => {
                        attempt.outcome = AttemptOutcome::Failed(e.to_string());
                        last_error = Some(e);
                        next_start = Instant::now();
                    }
                }
            }
            () = wait_for_next => {}
            () = sleep_until(deadline) => {
                timed_out = true;
                break;
            }
        }
    }
    // The losers still connecting: abandoned to the winner, or out of time.
    running.abort_all();
    let end = started.elapsed();
    for a in attempts.iter_mut() {
        if a.outcome == AttemptOutcome::TimedOut && a.took.is_zero() {
            a.took = end.saturating_sub(a.started_after);
            if winner.is_some() {
                a.outcome = AttemptOutcome::Abandoned;
            }
        }
    }
    recent.remember(&attempts);
    Raced {
        stream: winner,
        attempts,
        timed_out,
        last_error,
    }
}

/// One TCP connection to `address`, from `source` when given, with TCP_NODELAY.
async fn connect_one(address: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if address.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(address).await?;
    // Without it, pipelined command groups wait for Nagle's algorithm and delayed ACKs.
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn families_are_interleaved_from_the_first_one() {
        let got = order(
            &addrs(&[
                "[::1]:25",
                "[::2]:25",
                "[::3]:25",
                "10.0.0.1:25",
                "10.0.0.2:25",
            ]),
            &RecentFailures::default(),
        );
        assert_eq!(
            got,
            addrs(&[
                "[::1]:25",
                "10.0.0.1:25",
                "[::2]:25",
                "10.0.0.2:25",
                "[::3]:25"
            ])
        );
        let got = order(
            &addrs(&["10.0.0.1:25", "[::1]:25", "10.0.0.1:25"]),
            &RecentFailures::default(),
        );
        assert_eq!(got, addrs(&["10.0.0.1:25", "[::1]:25"]), "duplicates once");
    }

    #[test]
    fn recent_failures_go_last() {
        let recent = RecentFailures::default();
        let failed = addrs(&["[::1]:25"])[0];
        recent.remember(&[ConnectAttempt {
            address: failed,
            started_after: Duration::ZERO,
            took: Duration::ZERO,
            outcome: AttemptOutcome::TimedOut,
        }]);
        let got = order(&addrs(&["[::1]:25", "10.0.0.1:25", "[::2]:25"]), &recent);
        assert_eq!(got, addrs(&["10.0.0.1:25", "[::2]:25", "[::1]:25"]));
        // A success clears it.
        recent.remember(&[ConnectAttempt {
            address: failed,
            started_after: Duration::ZERO,
            took: Duration::ZERO,
            outcome: AttemptOutcome::Connected,
        }]);
        assert!(!recent.contains(&failed));
    }
}
