//! BDAT (CHUNKING, RFC 3030) over PIPELINING: several messages in flight on one session, every
//! reply matched in order, each message's outcome told exactly.
//!
//! Each message is `[RSET] MAIL RCPT… BDAT <n> [LAST] <octets>…`, written without waiting for
//! any reply. The RSET (before every message but the batch's first) makes each transaction
//! independent of how the one before ended: a refused MAIL, RCPT or BDAT leaves servers in
//! different states. Replies are read oldest message first; a message is judged when all of
//! its replies are in.

use std::collections::VecDeque;
use std::sync::Arc;

use super::connection::Connection;
use super::final_dot_gate::{current_gate, FinalDotGate};
use super::transaction::{not_sent, Prepared, RecipientResult, TransactionReport};
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::{bdat_chunks, Command, Reply, ReplyCode};

/// Octets gathered before a write while a body is queued: bounds the copy of a large message.
const WRITE_BATCH: usize = 64 * 1024;

/// Most replies due at once. The server's replies to a whole window must fit in the socket
/// buffers while the client is still writing, or each side would wait for the other to read.
const MAX_REPLIES_IN_FLIGHT: usize = 512;

/// Most chunks of one message: a smaller `max_chunk_size` is raised for a long message, so
/// that the replies to its chunks, written before any is read, stay within
/// [`MAX_REPLIES_IN_FLIGHT`].
const MAX_CHUNKS_PER_MESSAGE: usize = 256;

/// The chunk size for a body of `len` octets: the configured one, raised when the body would
/// need more than [`MAX_CHUNKS_PER_MESSAGE`] chunks.
fn chunk_size(len: usize, configured: usize) -> usize {
    configured.max(1).max(len.div_ceil(MAX_CHUNKS_PER_MESSAGE))
}

/// A message whose commands were written (at least in part) and whose replies are not all read.
struct InFlight {
    /// Its place in the batch.
    index: usize,
    /// An RSET went before its MAIL.
    rset: bool,
    /// Its recipients (RCPT commands).
    rcpts: usize,
    /// BDAT commands written.
    chunks: usize,
    /// Where its last chunk's octets end in the batch's output, once queued: the message may
    /// be delivered once the network took that many octets.
    last_end: Option<u64>,
    /// Its size on the wire.
    size: usize,
    /// The final-dot gate refused before its last chunk ended: it never will.
    gate_refused: Option<Error>,
}

impl InFlight {
    fn replies(&self) -> usize {
        usize::from(self.rset) + 1 + self.rcpts + self.chunks
    }
}

/// The replies of one message read so far.
#[derive(Default)]
struct Got {
    mail: Option<Reply>,
    recipients: Vec<RecipientResult>,
    chunks: Vec<Reply>,
}

impl Got {
    /// The verdict of replies that already settle the message, whatever comes after: MAIL
    /// refused, every recipient refused, or a chunk refused.
    fn settled(&self, p: &Prepared<'_>, chunks: usize) -> Option<Result<TransactionReport>> {
        let mail = self.mail.as_ref()?;
        if !mail.is_positive() {
            // RFC 2920 §3.1: the RCPTs and BDATs behind a refused MAIL get `503 bad
            // sequence`, which says nothing more: MAIL's reply is the answer.
            return Some(Err(Error::rejected(Stage::MailFrom, mail.clone())));
        }
        let all_rcpts = self.recipients.len() == p.addresses.len();
        if all_rcpts && !self.recipients.iter().any(RecipientResult::accepted) {
            // RFC 3030 §3: with no recipient the server refuses the BDAT too (its octets are
            // still sent and consumed); the recipients' refusals are the answer.
            let err = Error::new(
                ErrorKind::Rejected,
                Stage::RcptTo,
                format!("all {} recipient(s) rejected", p.addresses.len()),
            );
            let err = match self.recipients.iter().find(|r| !r.accepted()) {
                Some(r) => err.with_reply(r.reply.clone()),
                None => err,
            };
            return Some(Err(err.with_recipients(self.recipients.clone())));
        }
        let (k, refused) = self
            .chunks
            .iter()
            .enumerate()
            .find(|(_, r)| !r.is_positive())?;
        let stage = if k + 1 == chunks {
            Stage::DataEnd
        } else {
            Stage::Data
        };
        let err = Error::rejected(stage, refused.clone());
        Some(Err(if all_rcpts {
            err.with_recipients(self.recipients.clone())
        } else {
            err
        }))
    }
}

impl Connection {
    /// Sends the prepared messages with BDAT, in a window bounded by the options' [`Chunking`]
    /// limits, and fills in each one's result (those never written stay `None`: not sent).
    ///
    /// [`Chunking`]: super::Chunking
    pub(super) async fn send_batch_bdat(
        &mut self,
        prepared: &[Option<Prepared<'_>>],
        results: &mut [Option<Result<TransactionReport>>],
    ) {
        let settings = self.options().chunking;
        let max_messages = settings.max_messages_in_flight.max(1);
        let gate = current_gate();
        let ready: Vec<usize> = (0..prepared.len())
            .filter(|&i| prepared[i].is_some())
            .collect();
        let mut next = 0;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        // Octets of this batch the network took.
        let mut written: u64 = 0;
        let mut failure: Option<Error> = None;
        // What the oldest message's replies said before the failure, if it came while reading.
        let mut front_got: Option<Got> = None;
        let mut stop = false;
        let mut last_failed = false;
        loop {
            // Fill the window.
            while failure.is_none() && !stop {
                let Some(p) = ready.get(next).and_then(|&i| prepared[i].as_ref()) else {
                    break;
                };
                let rcpts = p.addresses.len();
                let size = chunk_size(p.wire_body.len(), settings.max_chunk_size);
                let chunks = bdat_chunks(p.wire_body.len(), size).count();
                let bytes: usize = in_flight.iter().map(|m| m.size).sum();
                let replies: usize = in_flight.iter().map(InFlight::replies).sum();
                let fits = in_flight.is_empty()
                    || (in_flight.len() < max_messages
                        && bytes + p.wire_body.len() <= settings.max_bytes_in_flight
                        && replies + 2 + rcpts + chunks <= MAX_REPLIES_IN_FLIGHT);
                if !fits {
                    break;
                }
                let mut m = InFlight {
                    index: ready[next],
                    rset: next > 0,
                    rcpts,
                    chunks: 0,
                    last_end: None,
                    size: p.wire_body.len(),
                    gate_refused: None,
                };
                next += 1;
                let outcome = self
                    .write_message(p, &mut m, &mut written, gate.as_ref())
                    .await;
                stop = m.gate_refused.is_some();
                in_flight.push_back(m);
                if let Err(e) = outcome {
                    failure = Some(e);
                }
            }
            if failure.is_none() {
                if let Err(e) = self.flush_counting(&mut written).await {
                    failure = Some(e);
                }
            }
            if failure.is_some() {
                break;
            }
            let Some(m) = in_flight.front_mut() else {
                break;
            };
            let index = m.index;
            let Some(p) = prepared[index].as_ref() else {
                break;
            };
            if let Some(err) = m.gate_refused.take() {
                // Its last chunk is one octet short: the server cannot have the message, and
                // the session is in the middle of it.
                in_flight.pop_front();
                let wire = self.wire();
                wire.note("stopped before the last BDAT chunk ended: the server does not have the message");
                results[index] = Some(Err(wire.poison(err)));
                break;
            }
            let (rset, chunks) = (m.rset, m.chunks);
            let mut got = Got::default();
            match self.read_replies(rset, chunks, p, &mut got).await {
                Ok(()) => {
                    in_flight.pop_front();
                    let result = got.settled(p, chunks).unwrap_or_else(|| {
                        match (got.mail, got.chunks.pop()) {
                            (Some(mail), Some(last)) => {
                                Ok(TransactionReport::new(mail, got.recipients, last))
                            }
                            _ => Err(Error::new(
                                ErrorKind::Protocol,
                                Stage::DataEnd,
                                "no reply to the last BDAT chunk",
                            )),
                        }
                    });
                    last_failed = result.is_err();
                    results[index] = Some(result);
                }
                Err(e) => {
                    front_got = Some(got);
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            let closing = e
                .reply()
                .is_some_and(|r| r.code() == ReplyCode::SERVICE_NOT_AVAILABLE);
            for (pos, m) in in_flight.into_iter().enumerate() {
                let got = if pos == 0 { front_got.take() } else { None };
                let Some(p) = prepared[m.index].as_ref() else {
                    continue;
                };
                let index = m.index;
                results[index] = Some(lost(&e, m, p, written, closing, pos == 0, got));
            }
            return;
        }
        // RFC 5321 §4.1.1.5: reset after a failed transaction so the next one starts clean.
        if last_failed && !self.wire().is_poisoned() {
            if let Err(rset) = self.simple(Command::Rset, Stage::Rset).await {
                self.note(&format!("RSET after failed transaction failed: {rset}"));
            }
        }
    }

    /// Queues (and writes, a batch at a time) one message: `[RSET] MAIL RCPT…` and its chunks.
    /// With a final-dot gate, the last octet of the last chunk (or the whole `BDAT 0 LAST`
    /// line) waits for the gate: until then the server cannot have the message.
    async fn write_message(
        &mut self,
        p: &Prepared<'_>,
        m: &mut InFlight,
        written: &mut u64,
        gate: Option<&Arc<dyn FinalDotGate>>,
    ) -> Result<()> {
        let max_chunk = chunk_size(p.wire_body.len(), self.options().chunking.max_chunk_size);
        let wire = self.wire();
        if m.rset {
            wire.queue(&[&Command::Rset], Stage::Rset)?;
        }
        wire.queue_encoded(&p.group, &p.group_lines);
        wire.note(&format!("message body: {} bytes", p.body_len));
        let body: &[u8] = &p.wire_body;
        for (range, last) in bdat_chunks(body.len(), max_chunk) {
            let chunk = &body[range];
            let command = Command::Bdat {
                size: chunk.len() as u64,
                last,
            };
            let gate = gate.filter(|_| last);
            let (now, held) = match gate {
                Some(_) => chunk.split_at(chunk.len().saturating_sub(1)),
                None => (chunk, &[][..]),
            };
            if let (Some(gate), true) = (gate, chunk.is_empty()) {
                self.flush_counting(written).await?;
                if let Err(e) = gate.before_final_dot().await {
                    m.gate_refused = Some(e);
                    return Ok(());
                }
            }
            self.wire().queue(&[&command], Stage::Data)?;
            m.chunks += 1;
            for piece in now.chunks(WRITE_BATCH) {
                self.wire().queue_raw(piece);
                if self.wire().queued_len() >= WRITE_BATCH {
                    self.flush_counting(written).await?;
                }
            }
            if let (Some(gate), false) = (gate, held.is_empty()) {
                self.flush_counting(written).await?;
                if let Err(e) = gate.before_final_dot().await {
                    m.gate_refused = Some(e);
                    return Ok(());
                }
                self.wire().queue_raw(held);
            }
            if last {
                m.last_end = Some(*written + self.wire().queued_len() as u64);
            }
        }
        Ok(())
    }

    /// Writes what is queued and counts the octets the network took, also on failure.
    async fn flush_counting(&mut self, written: &mut u64) -> Result<()> {
        if self.wire().queued_len() == 0 {
            return Ok(());
        }
        let block = self.options().timeouts().data_block;
        let (n, result) = self.wire().flush_counted(block, |_| Stage::Body).await;
        *written += n as u64;
        result
    }

    /// Reads one message's replies in order into `got`; a 421 or a failed read is an error.
    async fn read_replies(
        &mut self,
        rset: bool,
        chunks: usize,
        p: &Prepared<'_>,
        got: &mut Got,
    ) -> Result<()> {
        let t = *self.options().timeouts();
        if rset {
            let reply = self.read_checked(Stage::Rset, t.command).await?;
            if reply.code() != ReplyCode::OK {
                self.note(&format!(
                    "RSET before the next message answered {reply}; its MAIL reply decides"
                ));
            }
        }
        got.mail = Some(self.read_checked(Stage::MailFrom, t.command).await?);
        for address in &p.addresses {
            let reply = self.read_checked(Stage::RcptTo, t.command).await?;
            got.recipients.push(RecipientResult {
                address: address.clone(),
                reply,
            });
        }
        for k in 0..chunks {
            let (stage, limit) = if k + 1 == chunks {
                (Stage::DataEnd, t.data_end)
            } else {
                (Stage::Data, t.data_block)
            };
            got.chunks.push(self.read_checked(stage, limit).await?);
        }
        Ok(())
    }
}

/// The result of a message in flight when the session failed with `e`, after `written`
/// octets of the batch had left. `front`: it is the oldest, whose replies were being read
/// (`got` holds those that came).
fn lost(
    e: &Error,
    m: InFlight,
    p: &Prepared<'_>,
    written: u64,
    closing: bool,
    front: bool,
    got: Option<Got>,
) -> Result<TransactionReport> {
    if let Some(refused) = m.gate_refused {
        return Err(refused);
    }
    // Replies that came already settle it whatever else happened.
    if let Some(settled) = got.as_ref().and_then(|g| g.settled(p, m.chunks)) {
        return settled;
    }
    let recipients = got
        .map(|g| g.recipients)
        .filter(|r| r.len() == p.addresses.len())
        .unwrap_or_default();
    if closing {
        // A 421 ends the session (RFC 5321 §3.8): it answered a command of the oldest
        // message, and the server took nothing after it.
        return Err(if front {
            e.duplicate().with_recipients(recipients)
        } else {
            not_sent()
        });
    }
    if m.last_end.is_some_and(|end| end <= written) {
        // RFC 1047, as after a final `.`: the whole message left, so the server may have it.
        // Only complete RCPT results are kept: a recipient not listed would be taken for one
        // still to try.
        let kind = match e.kind() {
            k @ (ErrorKind::Io | ErrorKind::Closed | ErrorKind::Timeout | ErrorKind::Protocol) => k,
            _ => ErrorKind::Closed,
        };
        return Err(Error::new(
            kind,
            Stage::DataEnd,
            format!(
                "{} (after the last BDAT chunk was written: the server may have the message)",
                e.message()
            ),
        )
        .with_recipients(recipients));
    }
    Err(if front { e.duplicate() } else { not_sent() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_body_never_needs_more_than_the_chunk_bound() {
        assert_eq!(chunk_size(100, 10), 10);
        assert_eq!(chunk_size(100, 0), 1);
        for (len, configured) in [(10_000, 1), (1 << 20, 7), (512, 1), (513, 1)] {
            let size = chunk_size(len, configured);
            assert!(bdat_chunks(len, size).count() <= MAX_CHUNKS_PER_MESSAGE);
            assert!(size >= configured);
        }
    }
}
