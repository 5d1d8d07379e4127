//! What a send is waiting for, told on stderr when a step takes more than a couple of
//! seconds, and where it stood when it was interrupted. It watches the session transcript.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smtpkit::client::{Direction, Transcript};

/// How long a step may take before the first "waiting" line.
const FIRST_NOTICE: Duration = Duration::from_secs(2);
/// Then how often the line is repeated.
const REPEAT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct State {
    /// What the client is waiting for, in words.
    waiting_for: String,
    since: Instant,
    /// The final `.` was written and its reply not read yet.
    after_final_dot: bool,
}

/// Shared between the transcript hook and the ticker.
#[derive(Debug, Clone)]
pub struct Progress(Arc<Mutex<State>>);

impl Progress {
    /// Starts "connecting to `target`".
    pub fn new(target: &str) -> Progress {
        Progress(Arc::new(Mutex::new(State {
            waiting_for: format!("the connection to {target} and its greeting"),
            since: Instant::now(),
            after_final_dot: false,
        })))
    }

    /// A transcript that keeps the progress current (and prints each line when `echo`).
    pub fn transcript(&self, echo: bool) -> Transcript {
        let progress = self.clone();
        Transcript::new(move |direction: Direction, line: &str| {
            if echo {
                eprintln!("{} {line}", direction.prefix());
            }
            progress.saw(direction, line);
        })
    }

    fn saw(&self, direction: Direction, line: &str) {
        let Ok(mut state) = self.0.lock() else { return };
        state.since = Instant::now();
        match direction {
            Direction::Client => {
                let verb = line.split([' ', ':']).next().unwrap_or(line);
                state.waiting_for = format!("the reply to {verb}");
                state.after_final_dot = false;
            }
            Direction::Info if line.starts_with("message body") => {
                state.waiting_for = "the reply to the end of the message (final `.`)".into();
                state.after_final_dot = true;
            }
            Direction::Server => state.after_final_dot = false,
            Direction::Info => {}
        }
    }

    /// What the send was waiting for, and whether the message may have been taken already.
    pub fn position(&self) -> (String, bool) {
        self.0
            .lock()
            .map(|s| (s.waiting_for.clone(), s.after_final_dot))
            .unwrap_or_else(|_| ("an unknown step".into(), false))
    }

    /// Prints "waiting for … (N s)" on stderr while a step takes long; runs until dropped.
    pub async fn tick(self) {
        let mut last_notice: Option<Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(state) = self.0.lock() else { return };
            let waited = state.since.elapsed();
            let due = match last_notice {
                Some(t) if t > state.since => t.elapsed() >= REPEAT,
                _ => waited >= FIRST_NOTICE,
            };
            if due {
                eprintln!(
                    "  … waiting for {} ({} s)",
                    state.waiting_for,
                    waited.as_secs()
                );
                last_notice = Some(Instant::now());
            }
        }
    }
}

/// Says where an interrupted send stopped (stderr, and the one JSON object with `--json`) and
/// gives the exit code, 130. After the final `.`, the message may have been delivered.
pub fn interrupted(progress: &Progress, json: bool) -> u8 {
    let (waiting_for, outcome_unknown) = progress.position();
    eprintln!("✗ interrupted (Ctrl-C) while waiting for {waiting_for}");
    if outcome_unknown {
        eprintln!(
            "  ! the whole message had been sent: it may have been delivered (outcome unknown); \
             check before sending it again"
        );
    }
    if json {
        super::output::print_json(&serde_json::json!({
            "ok": false,
            "exit_code": super::exit::INTERRUPTED,
            "error": {
                "kind": "interrupted",
                "message": format!("interrupted while waiting for {waiting_for}"),
                "outcome_unknown": outcome_unknown,
            },
        }));
    }
    super::exit::INTERRUPTED
}
