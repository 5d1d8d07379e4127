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
