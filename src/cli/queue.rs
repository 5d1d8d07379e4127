//! `smtpkit queue`: look at and manage the outbox (`mailq` and `postqueue` for smtpkit).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use smtpkit::outbox::{ListFilter, Outbox, OutboxId, QueuedMessage, State};
use smtpkit::provider::Config;

use super::output::{self, Failure};
use super::{exit, outbox_access};

/// Look at and manage the outbox.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  smtpkit queue list --config smtpkit.yaml --state deferred
  smtpkit queue show 42 --config smtpkit.yaml --json
  smtpkit queue retry --all --config smtpkit.yaml")]
pub struct QueueArgs {
    #[command(subcommand)]
    pub action: QueueAction,
    /// Configuration file(s) (for `outbox:`; default outbox next to the first file).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Vec<PathBuf>,
    /// The outbox database, overriding `outbox.url`.
    #[arg(long, value_name = "URL", global = true)]
    pub outbox: Option<String>,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum QueueAction {
    /// The messages, oldest first.
    List {
        /// Only this state: queued, sending, deferred, sent, failed, expired, unknown.
        #[arg(long, value_name = "STATE")]
        state: Option<State>,
        /// At most this many.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// One message: every recipient with its state and last reply.
    Show {
        /// The message's id (as `list` shows it).
        id: OutboxId,
    },
    /// Make a message (or, with --all, every deferred one) due now.
    Retry {
        /// The message's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<OutboxId>,
        /// Every deferred message.
        #[arg(long)]
        all: bool,
    },
    /// Remove a message from the outbox.
    Delete {
        /// The message's id.
        id: OutboxId,
    },
    /// How many messages are in each state (in all and per provider), and the age of the
    /// oldest waiting one.
    Stats,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn message_json(m: &QueuedMessage) -> Value {
    json!({
        "id": m.id.0,
        "state": m.state.as_str(),
        "provider": m.provider,
        "message_id": m.message_id,
        "from": m.mail_from,
        "recipients": m.recipients.iter().map(|r| json!({
            "address": r.address,
            "state": r.state.as_str(),
            "reply": r.reply,
        })).collect::<Vec<_>>(),
        "attempts": m.attempts,
        "created_at": unix(m.created_at),
        "next_attempt_at": m.next_attempt_at.map(unix),
        "last_reply": m.last_reply,
        "size": m.size,
    })
}

fn message_line(m: &QueuedMessage) -> String {
    let to: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
    let when = match (m.state, m.next_attempt_at) {
        (State::Deferred, Some(t)) => {
            let secs = t
                .duration_since(SystemTime::now())
                .map_or(0, |d| d.as_secs());
            format!(" next try in {secs} s")
        }
        _ => String::new(),
    };
    format!(
        "{:>6}  {:<9} {} -> {}  ({} bytes, {} attempts{when}){}",
        m.id.to_string(),
        m.state.as_str(),
        if m.mail_from.is_empty() {
            "<>"
        } else {
            &m.mail_from
        },
        to.join(", "),
        m.size,
        m.attempts,
        m.last_reply
            .as_deref()
            .map(|r| format!("\n        {r}"))
            .unwrap_or_default()
    )
}

async fn act(outbox: &Outbox, action: &QueueAction, json: bool) -> Result<Value, Failure> {
    let fail = |e: smtpkit::outbox::OutboxError| outbox_access::failure(&e);
    Ok(match action {
        QueueAction::List { state, limit } => {
            let list = outbox
                .list(ListFilter {
                    state: *state,
                    limit: *limit,
                })
                .await
                .map_err(fail)?;
            if !json {
                for m in &list {
                    out!("{}", message_line(m));
                }
                eprintln!("{} message(s)", list.len());
            }
            json!({"messages": list.iter().map(message_json).collect::<Vec<_>>()})
        }
        QueueAction::Show { id } => {
            let m = outbox
                .get(*id)
                .await
                .map_err(fail)?
                .ok_or_else(|| fail(smtpkit::outbox::OutboxError::NotFound(*id)))?;
            if !json {
                out!("{}", message_line(&m));
                out!("  message-id: <{}>", m.message_id);
                for r in &m.recipients {
                    out!(
                        "  {:<8} {}{}",
                        r.state.as_str(),
                        r.address,
                        r.reply
                            .as_deref()
                            .map(|x| format!(": {x}"))
                            .unwrap_or_default()
                    );
                }
            }
            json!({"message": message_json(&m)})
        }
        QueueAction::Retry { id: Some(id), .. } => {
            outbox.retry(*id).await.map_err(fail)?;
            if !json {
                out!("{id}: due now");
            }
            json!({"retried": [id.0]})
        }
        QueueAction::Retry { id: None, .. } => {
            let n = outbox.retry_all().await.map_err(fail)?;
            if !json {
                out!("{n} deferred message(s) due now");
            }
            json!({"retried_count": n})
        }
        QueueAction::Delete { id } => {
            outbox.delete(*id).await.map_err(fail)?;
            if !json {
                out!("{id}: deleted");
            }
            json!({"deleted": [id.0]})
        }
        QueueAction::Stats => {
            let stats = outbox.stats().await.map_err(fail)?;
            let by_state: serde_json::Map<String, Value> = stats
                .by_state
                .iter()
                .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
                .collect();
            let by_provider: serde_json::Map<String, Value> = stats
                .by_provider
                .iter()
                .map(|(provider, states)| {
                    let states: serde_json::Map<String, Value> = states
                        .iter()
                        .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
                        .collect();
                    (provider.clone(), Value::Object(states))
                })
                .collect();
            if !json {
                for (s, n) in &stats.by_state {
                    out!("{:<9} {n}", s.as_str());
                }
                for (provider, states) in &stats.by_provider {
                    let counts: Vec<String> = states
                        .iter()
                        .map(|(s, n)| format!("{} {n}", s.as_str()))
                        .collect();
                    out!("provider {provider}: {}", counts.join(", "));
                }
                if let Some(age) = stats.oldest_queued_age {
                    out!("oldest waiting: {} s", age.as_secs());
                }
            }
            json!({
                "by_state": by_state,
                "by_provider": by_provider,
                "total": stats.total,
                "oldest_queued_age_s": stats.oldest_queued_age.map(|a| a.as_secs()),
                "oldest_queued_age_ms": stats.oldest_queued_age.map(|a| a.as_millis()),
            })
        }
    })
}

pub async fn run(args: QueueArgs) -> u8 {
    // `--config` is global (before or after the action), and clap cannot require a global.
    if args.config.is_empty() {
        let failure = Failure::new(
            "usage",
            "arguments",
            "the following required arguments were not provided: --config <FILE>",
            exit::USAGE,
        );
        return failure.report(args.json);
    }
    let config = match Config::from_files(&args.config) {
        Ok(c) => c,
        Err(e) => return Failure::config_error(&e).report(args.json),
    };
    let outbox = match outbox_access::open(&config, args.outbox.as_deref()).await {
        Ok(o) => o,
        Err(f) => return f.report(args.json),
    };
    match act(&outbox, &args.action, args.json).await {
        Ok(mut value) => {
            if args.json {
                if let Value::Object(map) = &mut value {
                    map.insert("ok".into(), json!(true));
                    map.insert("exit_code".into(), json!(exit::OK));
                }
                output::print_json(&value);
            }
            exit::OK
        }
        Err(f) => f.report(args.json),
    }
}
