//! Enqueue rate of the SQLite outbox: one message per call (one transaction and sync each)
//! against `enqueue_many` (one transaction for a batch), ~2 KB messages with two recipients,
//! measured in the same run so the ratio holds whatever the disk.
//!
//! `cargo bench --bench outbox_enqueue` prints msgs/s for each and the ratio. Under
//! `cargo test` (no `--bench` argument) it runs a few messages only, as a smoke test.
//! Knobs (environment): ONE_BY_ONE (2000), MANY (20000), BATCH (1000), DIR (a temporary
//! directory on the same disk as the system's temp dir).

use std::time::Instant;

use smtpkit::outbox::{NewMessage, Outbox, OutboxSettings};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn message(n: usize) -> NewMessage {
    let mut bytes = format!(
        "From: noreply@example.com\r\nTo: a{n}@example.com, b{n}@example.com\r\n\
         Subject: Access request {n} needs your approval\r\nMessage-ID: <{n}@bench.example>\r\n\r\n"
    )
    .into_bytes();
    while bytes.len() < 2048 {
        bytes.extend_from_slice(b"A new access request requires your approval. Review it.\r\n");
    }
    NewMessage {
        provider: "email".into(),
        mail_from: "noreply@example.com".into(),
        recipients: vec![format!("a{n}@example.com"), format!("b{n}@example.com")],
        message_id: format!("<{n}@bench.example>"),
        bytes,
        idempotency_key: Some(format!("bench-{n}")),
    }
}

async fn open(dir: &std::path::Path, name: &str) -> Outbox {
    Outbox::open(&OutboxSettings {
        url: format!("sqlite://{}", dir.join(name).display()),
        ..OutboxSettings::default()
    })
    .await
    .expect("open the outbox")
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (one_by_one, many, batch) = if bench {
        (
            env_or("ONE_BY_ONE", 2000),
            env_or("MANY", 20000),
            env_or("BATCH", 1000).max(1),
        )
    } else {
        (20, 200, 50)
    };
    let dir = match std::env::var("DIR") {
        Ok(d) => tempfile::tempdir_in(d),
        Err(_) => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let outbox = open(dir.path(), "one.db").await;
        let started = Instant::now();
        for n in 0..one_by_one {
            outbox.enqueue(message(n)).await.expect("enqueue");
        }
        let one_rate = one_by_one as f64 / started.elapsed().as_secs_f64();

        let outbox = open(dir.path(), "many.db").await;
        let messages: Vec<NewMessage> = (0..many).map(message).collect();
        let started = Instant::now();
        for chunk in messages.chunks(batch) {
            outbox
                .enqueue_many(chunk.to_vec())
                .await
                .expect("enqueue_many");
        }
        let many_rate = many as f64 / started.elapsed().as_secs_f64();
        assert_eq!(outbox.stats().await.expect("stats").total, many as u64);

        println!("outbox enqueue, SQLite (WAL, synchronous=FULL), 2 KB messages, 2 recipients");
        println!("  enqueue one by one      {one_by_one:>6} msgs  {one_rate:>10.0} msgs/s");
        println!("  enqueue_many ({batch:>4}/tx)  {many:>6} msgs  {many_rate:>10.0} msgs/s");
        println!("  ratio many / one by one  {:.1}x", many_rate / one_rate);
    });
}
