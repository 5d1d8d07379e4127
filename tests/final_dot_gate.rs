//! The final-dot gate: a hook between a message's body and its terminating `.`, where a
//! durable queue records "from now on the server may have it". Checked against the truth
//! server, which stores a message only once its `.` arrived.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use smtpkit::client::{
    with_final_dot_gate, ClientOptions, Connection, Envelope, FinalDotGate, GateFuture,
};
use smtpkit::message::Notification;
use smtpkit::proto::Address;
use smtpkit::provider::{Config, Mailer};
use smtpkit::{Error, ErrorKind, Stage};
use support::truth_server::{Behaviour, TruthServer};

/// Counts its calls and records how many messages the server had stored at each one; fails
/// when told to.
struct Probe {
    calls: AtomicUsize,
    stored_at_call: std::sync::Mutex<Vec<usize>>,
    server: Arc<TruthServer>,
    refuse: bool,
}

impl FinalDotGate for Probe {
    fn before_final_dot(&self) -> GateFuture<'_> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            // Give the server every chance to store a message it should not have yet.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            self.stored_at_call
                .lock()
                .expect("lock")
                .push(self.server.truth().stored.len());
            if self.refuse {
                return Err(Error::new(
                    ErrorKind::Io,
                    Stage::Body,
                    "the journal is full",
                ));
            }
            Ok(())
        })
    }
}

fn probe(server: &Arc<TruthServer>, refuse: bool) -> Arc<Probe> {
    Arc::new(Probe {
        calls: AtomicUsize::new(0),
        stored_at_call: std::sync::Mutex::new(Vec::new()),
        server: server.clone(),
        refuse,
    })
}

fn envelope() -> Envelope {
    Envelope::new(
        Address::new("sender@example.com").expect("valid"),
        vec![Address::new("a@example.com").expect("valid")],
    )
    .expect("envelope")
}

fn options() -> ClientOptions {
    ClientOptions {
        security: smtpkit::client::Security::None,
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn the_gate_runs_after_the_body_and_before_the_final_dot() {
    let server = Arc::new(TruthServer::start(Behaviour::default()).await);
    let gate = probe(&server, false);
    let mut conn = Connection::connect("127.0.0.1", server.port, options())
        .await
        .expect("connect");
    for n in 0..3 {
        let body = format!("Subject: {n}\r\n\r\nmessage {n}\r\n");
        with_final_dot_gate(gate.clone(), conn.send_mail(&envelope(), body.as_bytes()))
            .await
            .expect("sent");
    }
    // Outside the gate's scope: not called.
    conn.send_mail(&envelope(), b"Subject: free\r\n\r\nx\r\n")
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    assert_eq!(gate.calls.load(Ordering::SeqCst), 3);
    // At each call the server had only the messages before it: not this one.
    assert_eq!(*gate.stored_at_call.lock().expect("lock"), [0, 1, 2]);
    assert_eq!(server.truth().stored.len(), 4);
}

#[tokio::test]
async fn a_gate_that_fails_stops_the_send_before_the_dot() {
    let server = Arc::new(TruthServer::start(Behaviour::default()).await);
    let gate = probe(&server, true);
    let mut conn = Connection::connect("127.0.0.1", server.port, options())
        .await
        .expect("connect");
    let err = with_final_dot_gate(
        gate.clone(),
        conn.send_mail(&envelope(), b"Subject: no\r\n\r\nnever stored\r\n"),
    )
    .await
    .expect_err("the gate refused");
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(!err.is_outcome_unknown(), "{err}");
    assert!(err.to_string().contains("the journal is full"), "{err}");
    // The session is in the middle of DATA: never used again.
    let again = conn
        .send_mail(&envelope(), b"Subject: again\r\n\r\nx\r\n")
        .await
        .expect_err("poisoned");
    assert_eq!(again.kind(), ErrorKind::Poisoned, "{again}");
    drop(conn);
    assert!(server.truth().stored.is_empty());
}

#[tokio::test]
async fn the_gate_works_through_a_mailer_and_its_pool() {
    let server = Arc::new(TruthServer::start(Behaviour::default()).await);
    let gate = probe(&server, false);
    let yaml = format!(
        "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {}\n      from: sender@example.com\n      security: none\n      auth: none\n      retry: {{attempts: 1}}\n",
        server.port
    );
    let config = Config::from_yaml_str(&yaml).expect("config");
    let mailer = Mailer::new(&config, None).expect("mailer");
    let note = Notification::new("gated")
        .to("a@example.com".parse().expect("address"))
        .text("through the pool");
    let report = with_final_dot_gate(gate.clone(), mailer.send(&note))
        .await
        .expect("sent");
    mailer.close().await;
    assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
    assert_eq!(*gate.stored_at_call.lock().expect("lock"), [0]);
    assert_eq!(server.truth().stored.len(), 1, "{report:?}");
}

/// With BDAT the gate runs before the last chunk's final octet leaves: the capture server
/// (CHUNKING and PIPELINING) has stored none of the batch's messages the gate is asked about,
/// and a refusal leaves the message unsent and the session closed.
#[cfg(feature = "server")]
mod bdat {
    use super::*;
    use smtpkit::client::Chunking;
    use smtpkit::server::{Server, ServerConfig};
    use std::sync::Mutex;

    struct CaptureProbe {
        calls: AtomicUsize,
        stored_at_call: Mutex<Vec<usize>>,
        stored: Arc<AtomicUsize>,
        refuse_at: Option<usize>,
    }

    impl FinalDotGate for CaptureProbe {
        fn before_final_dot(&self) -> GateFuture<'_> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                self.stored_at_call
                    .lock()
                    .expect("lock")
                    .push(self.stored.load(Ordering::SeqCst));
                if self.refuse_at == Some(n) {
                    return Err(Error::new(
                        ErrorKind::Io,
                        Stage::Body,
                        "the journal is full",
                    ));
                }
                Ok(())
            })
        }
    }

    async fn capture_server() -> (
        u16,
        Arc<AtomicUsize>,
        tempfile::TempDir,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = ServerConfig::new(
            "127.0.0.1:0".parse().expect("addr"),
            dir.path().join("mail"),
        );
        let stored = Arc::new(AtomicUsize::new(0));
        let counter = stored.clone();
        let hook = Arc::new(move |_: &smtpkit::server::StoredMessage| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let server = Server::bind_with(config, Some(hook)).await.expect("bind");
        let port = server.local_addr().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        (port, stored, dir, stop)
    }

    fn probe(stored: &Arc<AtomicUsize>, refuse_at: Option<usize>) -> Arc<CaptureProbe> {
        Arc::new(CaptureProbe {
            calls: AtomicUsize::new(0),
            stored_at_call: Mutex::new(Vec::new()),
            stored: stored.clone(),
            refuse_at,
        })
    }

    fn chunked() -> ClientOptions {
        ClientOptions {
            chunking: Chunking {
                max_chunk_size: 8,
                ..Chunking::default()
            },
            ..options()
        }
    }

    #[tokio::test]
    async fn the_gate_runs_before_the_last_octet_of_each_message() {
        let (port, stored, _dir, stop) = capture_server().await;
        let gate = probe(&stored, None);
        let mut conn = Connection::connect("127.0.0.1", port, chunked())
            .await
            .expect("connect");
        assert!(conn.capabilities().chunking());
        let env = envelope();
        let bodies: Vec<String> = (0..3)
            .map(|n| format!("Subject: {n}\r\n\r\n.message {n}\r\n"))
            .collect();
        let batch: Vec<(&Envelope, &[u8])> = bodies.iter().map(|b| (&env, b.as_bytes())).collect();
        for r in with_final_dot_gate(gate.clone(), conn.send_many(&batch)).await {
            r.expect("sent");
        }
        conn.quit().await.expect("quit");
        assert_eq!(gate.calls.load(Ordering::SeqCst), 3);
        // At each call the server had at most the messages before this one, never this one.
        let at_call = gate.stored_at_call.lock().expect("lock").clone();
        assert!(
            at_call.iter().enumerate().all(|(i, &n)| n <= i),
            "{at_call:?}"
        );
        assert_eq!(stored.load(Ordering::SeqCst), 3);
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn a_gate_that_fails_stops_the_message_before_its_last_octet() {
        let (port, stored, _dir, stop) = capture_server().await;
        let gate = probe(&stored, Some(1));
        let mut conn = Connection::connect("127.0.0.1", port, chunked())
            .await
            .expect("connect");
        let env = envelope();
        let body: &[u8] = b"Subject: x\r\n\r\nlonger than one chunk\r\n";
        let results = with_final_dot_gate(
            gate.clone(),
            conn.send_many(&[(&env, body), (&env, body), (&env, body)]),
        )
        .await;
        results[0].as_ref().expect("the first was sent");
        let err = results[1].as_ref().expect_err("the gate refused");
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(!err.is_outcome_unknown(), "{err}");
        let third = results[2].as_ref().expect_err("not sent");
        assert!(
            third.is_transient() && !third.is_outcome_unknown(),
            "{third}"
        );
        assert!(!conn.is_usable());
        drop(conn);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            stored.load(Ordering::SeqCst),
            1,
            "only the first was stored"
        );
        let _ = stop.send(());
    }
}
