//! The outbox's rules, the same for every backend: how an attempt's outcome changes the
//! recipients, and which state (and next attempt) the message gets.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::record::{Outcome, RecipientOutcome, RecipientRecord, RecipientState, State};
use crate::provider::OutboxSettings;

/// Applies `outcome` to the recipients that are still pending; returns the indices changed.
///
/// Each outcome goes to the first pending recipient with that address not yet given one
/// (exactly, else ignoring ASCII case); an address with no such recipient (already sent, or
/// never there) is ignored. A deferred recipient stays pending and keeps the new reply.
pub(crate) fn apply_outcome(recipients: &mut [RecipientRecord], outcome: &Outcome) -> Vec<usize> {
    let mut changed: Vec<usize> = Vec::new();
    for (address, result) in &outcome.recipients {
        let free =
            |i: &usize| recipients[*i].state == RecipientState::Pending && !changed.contains(i);
        let index = (0..recipients.len())
            .filter(free)
            .find(|&i| recipients[i].address == *address)
            .or_else(|| {
                (0..recipients.len())
                    .filter(free)
                    .find(|&i| recipients[i].address.eq_ignore_ascii_case(address))
            });
        let Some(i) = index else { continue };
        let r = &mut recipients[i];
        match result {
            RecipientOutcome::Sent { reply } => {
                r.state = RecipientState::Sent;
                r.reply = Some(reply.clone());
            }
            RecipientOutcome::Failed { reply } => {
                r.state = RecipientState::Failed;
                r.reply = Some(reply.clone());
            }
            RecipientOutcome::Deferred { reply } => {
                if reply.is_some() {
                    r.reply = reply.clone();
                }
            }
            RecipientOutcome::Unknown { reply } => {
                r.state = RecipientState::Unknown;
                if reply.is_some() {
                    r.reply = reply.clone();
                }
            }
        }
        changed.push(i);
    }
    changed
}

/// `outbox.max_connections_per_provider` at claim time: a claim takes a provider's message
/// only while fewer than `cap` of its messages are leased (being sent, or claimed ahead by a
/// worker), counted over every worker. Each delivery holds one session, so this bounds the
/// sessions busy with a provider across all workers. Providers are counted as queued (a
/// notify step's fallbacks joined with commas count as one).
#[derive(Debug)]
pub(crate) struct ProviderCap {
    cap: u64,
    busy: HashMap<String, u64>,
}

impl ProviderCap {
    /// The cap, and the messages per provider under a live lease now.
    pub(crate) fn new(cap: u32, busy: HashMap<String, u64>) -> ProviderCap {
        ProviderCap {
            cap: u64::from(cap),
            busy,
        }
    }

    /// Providers at the cap: the claim does not select their messages.
    pub(crate) fn full(&self) -> Vec<String> {
        self.busy
            .iter()
            .filter(|(_, n)| **n >= self.cap)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Counts one more message of `provider` if it is under the cap; false if it is not.
    pub(crate) fn take(&mut self, provider: &str) -> bool {
        let n = self.busy.entry(provider.to_owned()).or_insert(0);
        if *n >= self.cap {
            return false;
        }
        *n += 1;
        true
    }
}

/// True when a message queued at `created_at` is older than `max_age` at `now`.
pub(crate) fn past_max_age(created_at: SystemTime, now: SystemTime, max_age: Duration) -> bool {
    now.duration_since(created_at)
        .is_ok_and(|age| age >= max_age)
}

/// The message's state after an attempt, from its recipients, and when it is due again:
/// any recipient still pending → `deferred` for `backoff(attempts)`, or `expired` once
/// `max_age` has passed since `created_at`; else any unknown → `unknown`; else all failed →
/// `failed`; else `sent`.
pub(crate) fn settle(
    recipients: &[RecipientRecord],
    attempts: u32,
    created_at: SystemTime,
    now: SystemTime,
    settings: &OutboxSettings,
) -> (State, Option<SystemTime>) {
    let any = |s: RecipientState| recipients.iter().any(|r| r.state == s);
    if any(RecipientState::Pending) {
        if past_max_age(created_at, now, settings.max_age) {
            (State::Expired, None)
        } else {
            (State::Deferred, Some(now + settings.backoff(attempts)))
        }
    } else if any(RecipientState::Unknown) {
        (State::Unknown, None)
    } else if recipients.iter().all(|r| r.state == RecipientState::Failed) {
        (State::Failed, None)
    } else {
        (State::Sent, None)
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    #[test]
    fn a_provider_at_its_cap_takes_nothing_more() {
        let mut cap = ProviderCap::new(2, HashMap::from([("a".to_owned(), 1)]));
        assert!(cap.full().is_empty());
        assert!(cap.take("a"));
        assert_eq!(cap.full(), ["a"]);
        assert!(!cap.take("a"));
        assert!(cap.take("b") && cap.take("b") && !cap.take("b"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(a: &str) -> RecipientRecord {
        RecipientRecord {
            address: a.into(),
            state: RecipientState::Pending,
            reply: None,
        }
    }

    #[test]
    fn outcomes_apply_to_pending_recipients_once() {
        let mut rs = vec![rcpt("a@x"), rcpt("a@x"), rcpt("B@x")];
        rs[0].state = RecipientState::Sent;
        let outcome = Outcome {
            recipients: vec![
                (
                    "a@x".into(),
                    RecipientOutcome::Failed {
                        reply: "550".into(),
                    },
                ),
                (
                    "b@x".into(),
                    RecipientOutcome::Deferred {
                        reply: Some("451".into()),
                    },
                ),
                (
                    "zz@x".into(),
                    RecipientOutcome::Sent {
                        reply: "250".into(),
                    },
                ),
            ],
            last_reply: None,
        };
        assert_eq!(apply_outcome(&mut rs, &outcome), vec![1, 2]);
        assert_eq!(rs[0].state, RecipientState::Sent);
        assert_eq!(rs[1].state, RecipientState::Failed);
        assert_eq!(rs[2].state, RecipientState::Pending);
        assert_eq!(rs[2].reply.as_deref(), Some("451"));
    }

    #[test]
    fn states() {
        let s = OutboxSettings::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let with = |states: &[RecipientState]| -> Vec<RecipientRecord> {
            states
                .iter()
                .map(|st| RecipientRecord {
                    state: *st,
                    ..rcpt("a@x")
                })
                .collect()
        };
        use RecipientState::*;
        let now = t0 + Duration::from_secs(10);
        assert_eq!(
            settle(&with(&[Sent, Failed]), 1, t0, now, &s),
            (State::Sent, None)
        );
        assert_eq!(
            settle(&with(&[Failed]), 1, t0, now, &s),
            (State::Failed, None)
        );
        assert_eq!(
            settle(&with(&[Sent, Unknown]), 1, t0, now, &s),
            (State::Unknown, None)
        );
        assert_eq!(
            settle(&with(&[Unknown, Pending]), 2, t0, now, &s),
            (State::Deferred, Some(now + Duration::from_secs(120)))
        );
        let late = t0 + s.max_age;
        assert_eq!(
            settle(&with(&[Pending]), 9, t0, late, &s),
            (State::Expired, None)
        );
    }
}
