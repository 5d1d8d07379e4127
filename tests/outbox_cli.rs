//! `send --queue`, `notify --queue`, `queue …` and `worker --until-empty` through the binary:
//! idempotency keys, run ids, the queue commands' JSON, bad input refused at enqueue, an
//! outbox URL that cannot be opened, and several processes queueing into one file at once.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::truth_server::{Behaviour, TruthServer};

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let yaml = format!(
        "providers:
  email:
    provider: email.smtp
    config:
      host: 127.0.0.1
      port: {port}
      from: sender@example.com
      security: none
      auth: none
workflows:
  - name: access-approval
    steps:
      - task: notify
        type: email
        config:
          provider: email
          to: [approver@example.com, audit@example.com]
          subject: Access Request Approval Required
          body:
            text: A new access request requires your approval.
      - task: approve
        type: manual
      - task: notify
        type: email
        config:
          provider: email
          to: [requester@example.com]
          subject: Your request was received
          body:
            text: We will let you know.
outbox:
  backoff: {{initial: 100ms, max: 200ms}}
"
    );
    let path = dir.join("smtpkit.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

async fn smtpkit(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("in time")
        .expect("run smtpkit")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn send_queue(cfg: &str, key: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "send",
        "--config",
        cfg,
        "--to",
        "a@example.com",
        "--subject",
        "queued",
        "--text",
        "t",
        "--queue",
        "--json",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(k) = key {
        args.extend(["--idempotency-key".to_owned(), k.to_owned()]);
    }
    args
}

#[tokio::test]
async fn queued_messages_are_stored_once_per_key_and_delivered_by_the_worker() {
    let server = TruthServer::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), server.port);
    let cfg = cfg.to_str().expect("utf-8");

    let args = send_queue(cfg, Some("order-42"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = smtpkit(&args).await;
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let first = json(&first);
    let again = json(&smtpkit(&args).await);
    assert_eq!(first["queued"][0]["id"], again["queued"][0]["id"]);
    assert_eq!(again["queued"][0]["existing"], true, "{again}");
    assert_eq!(first["queued"][0]["provider"], "email");
    assert!(
        dir.path().join("smtpkit-outbox.db").is_file(),
        "the default outbox sits next to the config"
    );

    // notify --queue: the two email steps, once per run id.
    let notify = [
        "notify", "--config", cfg, "--queue", "--run-id", "run-1", "--json",
    ];
    let queued = json(&smtpkit(&notify).await);
    assert_eq!(
        queued["queued"].as_array().map(Vec::len),
        Some(2),
        "{queued}"
    );
    let again = json(&smtpkit(&notify).await);
    assert_eq!(queued["queued"], {
        let mut v = again["queued"].clone();
        for q in v.as_array_mut().expect("list") {
            q["existing"] = Value::Bool(false);
        }
        v
    });

    let stats = json(&smtpkit(&["queue", "stats", "--config", cfg, "--json"]).await);
    assert_eq!(stats["by_state"]["queued"], 3, "{stats}");
    assert_eq!(stats["by_provider"]["email"]["queued"], 3, "{stats}");
    assert!(stats["oldest_queued_age_ms"].is_u64(), "{stats}");

    let out = smtpkit(&["worker", "--config", cfg, "--until-empty", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary = json(&out);
    assert_eq!(summary["sent"], 3, "{summary}");
    assert_eq!(server.truth().stored.len(), 3);

    let list = json(
        &smtpkit(&[
            "queue", "list", "--config", cfg, "--state", "sent", "--json",
        ])
        .await,
    );
    let messages = list["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3);
    let id = messages[0]["id"].as_i64().expect("id").to_string();
    let shown = json(&smtpkit(&["queue", "show", &id, "--config", cfg, "--json"]).await);
    assert_eq!(shown["message"]["state"], "sent", "{shown}");
    assert_eq!(
        shown["message"]["recipients"][0]["state"], "sent",
        "{shown}"
    );

    let deleted = smtpkit(&["queue", "delete", &id, "--config", cfg]).await;
    assert_eq!(deleted.status.code(), Some(0), "{deleted:?}");
    let missing = smtpkit(&["queue", "show", &id, "--config", cfg, "--json"]).await;
    assert_eq!(missing.status.code(), Some(66), "{missing:?}");
    assert_eq!(json(&missing)["error"]["kind"], "not_found");
}

#[tokio::test]
async fn bad_input_is_refused_at_enqueue_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), 25);
    let cfg = cfg.to_str().expect("utf-8");
    let out = smtpkit(&[
        "send",
        "--config",
        cfg,
        "--to",
        "not an address",
        "--subject",
        "s",
        "--text",
        "t",
        "--queue",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    let out = smtpkit(&[
        "send",
        "--config",
        cfg,
        "--to",
        "a@example.com",
        "--subject",
        "a\r\nBcc: x@example.com",
        "--text",
        "t",
        "--queue",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    let stats = json(&smtpkit(&["queue", "stats", "--config", cfg, "--json"]).await);
    assert_eq!(stats["total"], 0, "{stats}");

    // An outbox that cannot be opened is a configuration error naming it.
    let out = smtpkit(&[
        "send",
        "--config",
        cfg,
        "--to",
        "a@example.com",
        "--subject",
        "s",
        "--text",
        "t",
        "--queue",
        "--outbox",
        "sqlite:///nonexistent-dir/x/outbox.db",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(
        json(&out)["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nonexistent-dir")),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_queue_into_one_outbox_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), 25);
    let cfg = cfg.to_str().expect("utf-8").to_owned();
    let mut runs = tokio::task::JoinSet::new();
    for p in 0..4 {
        let cfg = cfg.clone();
        runs.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..10 {
                let key = format!("p{p}-m{i}");
                let args = send_queue(&cfg, Some(&key));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = smtpkit(&args).await;
                assert_eq!(out.status.code(), Some(0), "{out:?}");
                ids.push(json(&out)["queued"][0]["id"].as_i64().expect("id"));
            }
            ids
        });
    }
    let mut all = Vec::new();
    while let Some(ids) = runs.join_next().await {
        all.extend(ids.expect("task"));
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 40, "forty distinct messages");
    let stats = json(&smtpkit(&["queue", "stats", "--config", &cfg, "--json"]).await);
    assert_eq!(stats["total"], 40, "{stats}");
}

/// `smtpkit outbox migrate`: creates and migrates a new outbox and says which versions it
/// applied; run again it applies nothing and prints the same version.
#[tokio::test]
async fn outbox_migrate_applies_once_then_reports_the_current_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), 25);
    let cfg = cfg.to_str().expect("utf-8");
    let first = smtpkit(&["outbox", "migrate", "--config", cfg, "--json"]).await;
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let first = json(&first);
    assert_eq!(first["applied"], serde_json::json!([1, 2]), "{first}");
    assert_eq!(first["version"], 2);
    assert_eq!(first["latest"], 2);
    assert!(dir.path().join("smtpkit-outbox.db").is_file());

    let again = json(&smtpkit(&["outbox", "migrate", "--config", cfg, "--json"]).await);
    assert_eq!(again["applied"], serde_json::json!([]), "{again}");
    assert_eq!(again["version"], 2);

    let text = smtpkit(&["outbox", "migrate", "--config", cfg]).await;
    assert_eq!(text.status.code(), Some(0), "{text:?}");
    assert_eq!(String::from_utf8_lossy(&text.stdout), "schema version 2\n");
    assert!(String::from_utf8_lossy(&text.stderr).contains("up to date"));

    // --outbox names another database.
    let other = format!("sqlite://{}", dir.path().join("other.db").display());
    let other = json(
        &smtpkit(&[
            "outbox", "migrate", "--config", cfg, "--outbox", &other, "--json",
        ])
        .await,
    );
    assert_eq!(other["applied"], serde_json::json!([1, 2]), "{other}");
}

/// A free loopback port: bound, read, let go.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `GET /metrics` over a plain TCP connection: the status line and the body.
async fn scrape(port: u16) -> Option<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .ok()?
    .ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// The value of the sample `name{labels}` in a text exposition (labels written in the order
/// the exposition has them), read line by line.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// `smtpkit worker --metrics`: after four deliveries to the truth server (three accepted,
/// one refused with 550), the counters show them by result, the latency histogram counted
/// four, and the queue gauges read from the database show three sent and one failed.
#[tokio::test]
async fn worker_metrics_show_the_deliveries_and_the_queue() {
    let server = TruthServer::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), server.port);
    let cfg = cfg.to_str().expect("utf-8");
    for to in [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "bad@example.com",
    ] {
        let out = smtpkit(&[
            "send",
            "--config",
            cfg,
            "--to",
            to,
            "--subject",
            "m",
            "--text",
            "t",
            "--queue",
        ])
        .await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(["worker", "--config", cfg, "--metrics", &addr])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker");

    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    let text = loop {
        if let Some((status, body)) = scrape(port).await {
            assert!(status.contains(" 200 "), "{status}\n{body}");
            let delivered = sample(
                &body,
                r#"smtpkit_deliveries_total{provider="email",result="sent"}"#,
            )
            .unwrap_or(0.0)
                + sample(
                    &body,
                    r#"smtpkit_deliveries_total{provider="email",result="failed"}"#,
                )
                .unwrap_or(0.0);
            let sent_gauge = sample(
                &body,
                r#"smtpkit_outbox_messages{provider="email",state="sent"}"#,
            );
            if delivered == 4.0 && sent_gauge == Some(3.0) {
                break body;
            }
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the metrics never showed the four deliveries"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let get =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    assert_eq!(
        get(r#"smtpkit_deliveries_total{provider="email",result="sent"}"#),
        3.0
    );
    assert_eq!(
        get(r#"smtpkit_deliveries_total{provider="email",result="failed"}"#),
        1.0
    );
    assert_eq!(
        get(r#"smtpkit_outbox_messages{provider="email",state="failed"}"#),
        1.0
    );
    assert_eq!(
        get(r#"smtpkit_delivery_duration_seconds_count{provider="email"}"#),
        4.0
    );
    // No OAuth 2.0 here: the token fetch counters are there, at zero.
    assert_eq!(
        get(r#"smtpkit_oauth_token_fetches_total{result="ok"}"#),
        0.0
    );
    // Nothing waits: the oldest waiting message's age is 0.
    assert_eq!(get("smtpkit_outbox_oldest_queued_age_seconds"), 0.0);
    assert_eq!(server.truth().stored.len(), 3);

    // Anything but /metrics is 404.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut r = String::new();
        s.read_to_string(&mut r).await.expect("read");
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    }

    // SIGTERM: the worker stops and exits 0.
    let pid = worker.id().expect("pid").to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(kill.success());
    let out = tokio::time::timeout(Duration::from_secs(30), worker.wait_with_output())
        .await
        .expect("the worker stops")
        .expect("worker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("metrics on http://{addr}/metrics")),
        "{stderr}"
    );
}

/// A metrics address that cannot be bound is a configuration error before any delivery.
#[tokio::test]
async fn worker_metrics_on_an_address_in_use_is_refused() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), 25);
    let cfg = cfg.to_str().expect("utf-8");
    let out = smtpkit(&[
        "worker",
        "--config",
        cfg,
        "--metrics",
        &addr,
        "--until-empty",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("metrics"),
        "{v}"
    );
}
