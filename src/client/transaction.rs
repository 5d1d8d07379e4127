//! One mail transaction: MAIL, RCPT…, DATA, body — pipelined when the server allows it.

use super::connection::Connection;
use super::envelope::Envelope;
use crate::error::{Error, ErrorKind, Result, Stage};
use std::borrow::Cow;

use crate::proto::{bdat_body, Address, Command, DotStuffer, Offered, Parameter, Reply, ReplyCode};

/// What the server said to one RCPT TO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    /// The recipient.
    pub address: Address,
    /// The server's reply to its RCPT TO.
    pub reply: Reply,
}

impl RecipientResult {
    /// True when the server accepted the recipient.
    pub fn accepted(&self) -> bool {
        self.reply.is_positive()
    }
}

/// The result of a transaction the server accepted (at least one recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionReport {
    mail_reply: Reply,
    recipients: Vec<RecipientResult>,
    data_reply: Reply,
}

impl TransactionReport {
    pub(super) fn new(
        mail_reply: Reply,
        recipients: Vec<RecipientResult>,
        data_reply: Reply,
    ) -> TransactionReport {
        TransactionReport {
            mail_reply,
            recipients,
            data_reply,
        }
    }

    /// The reply to MAIL FROM.
    pub fn mail_reply(&self) -> &Reply {
        &self.mail_reply
    }

    /// The reply to each RCPT TO, in envelope order; some may be rejections.
    pub fn recipients(&self) -> &[RecipientResult] {
        &self.recipients
    }

    /// Recipients the server refused while it accepted the message for the others.
    pub fn rejected(&self) -> impl Iterator<Item = &RecipientResult> {
        self.recipients.iter().filter(|r| !r.accepted())
    }

    /// The reply to the final `.` (or to `BDAT … LAST`), usually naming the queue id.
    pub fn data_reply(&self) -> &Reply {
        &self.data_reply
    }

    /// The queue id from the final reply when it has a common form: `queued as ID` (Postfix,
    /// SendGrid), `id=ID` (Exim), `OK <unix time> ID - gsmtp` (Gmail) or `Ok ID` (Amazon
    /// SES). `None` when the reply names none, as Microsoft's `Queued mail for delivery`.
    pub fn queue_id(&self) -> Option<String> {
        queue_id(&self.data_reply)
    }
}

fn queue_id(reply: &Reply) -> Option<String> {
    let message = reply.message();
    let words: Vec<&str> = message.split_whitespace().collect();
    let clean = |w: &str| {
        Some(
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.')
                .to_owned(),
        )
        .filter(|w| !w.is_empty())
    };
    for (i, w) in words.iter().enumerate() {
        // Postfix and SendGrid: `Ok: queued as ID`.
        if w.eq_ignore_ascii_case("as") && i > 0 && words[i - 1].eq_ignore_ascii_case("queued") {
            return words.get(i + 1).and_then(|w| clean(w));
        }
        // Exim: `OK id=ID`.
        if let Some(id) = w.strip_prefix("id=") {
            return clean(id);
        }
    }
    // Microsoft: `OK <message-id> [Hostname=…] Queued mail for delivery` names no queue id.
    if message
        .to_ascii_lowercase()
        .contains("queued mail for delivery")
    {
        return None;
    }
    let is_time = |w: &str| w.len() >= 9 && w.bytes().all(|b| b.is_ascii_digit());
    match words.as_slice() {
        [ok, rest @ ..] if ok.eq_ignore_ascii_case("ok") => match rest {
            // Gmail: `OK <unix time> <id> - gsmtp`.
            [time, id, ..] if is_time(time) => Some(*id).filter(|id| *id != "-").and_then(clean),
            // Amazon SES and others: `Ok <id>`.
            [id, ..] if id.len() >= 6 && !id.starts_with(['<', '[']) => clean(id),
            _ => None,
        },
        _ => None,
    }
}

/// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF.
const MAX_LINE_OCTETS: usize = 998;

/// The lines of `message` as the wire will carry them: CRLF, bare CR and bare LF all end a
/// line (see [`DotStuffer`]). Yields each line without its ending.
fn lines(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = (!message.is_empty()).then_some(message);
    std::iter::from_fn(move || {
        let chunk = rest?;
        match memchr::memchr2(b'\r', b'\n', chunk) {
            Some(end) => {
                let skip = if chunk[end] == b'\r' && chunk.get(end + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                let next = &chunk[end + skip..];
                rest = (!next.is_empty()).then_some(next);
                Some(&chunk[..end])
            }
            None => {
                rest = None;
                Some(chunk)
            }
        }
    })
}

/// The first line longer than SMTP allows, refused before anything is sent. The limit does not
/// count a leading dot doubled for transparency.
fn check_line_lengths(message: &[u8]) -> Result<()> {
    match lines(message)
        .enumerate()
        .find(|(_, line)| line.len() > MAX_LINE_OCTETS)
    {
        Some((index, line)) => Err(Error::new(
            ErrorKind::InvalidInput,
            Stage::MailFrom,
            format!(
                "line {} of the message is {} octets long; SMTP allows at most {MAX_LINE_OCTETS} \
                 octets per line (RFC 5321 §4.5.3.1.6): wrap it, or encode the part as \
                 quoted-printable or base64",
                index + 1,
                line.len()
            ),
        )),
        None => Ok(()),
    }
}

/// True when the header section (up to the first empty line) has non-ASCII bytes: raw UTF-8
/// headers (RFC 6532).
fn headers_have_8bit(message: &[u8]) -> bool {
    lines(message)
        .take_while(|line| !line.is_empty())
        .any(|line| line.iter().any(|&b| b >= 0x80))
}

/// Replies of a pipelined or lock-step command group, in order.
struct Replies {
    mail: Reply,
    recipients: Vec<RecipientResult>,
    data: Option<Reply>,
}

/// A message made ready for the wire before anything is sent: its commands, already encoded
/// (so a bad one fails before any byte leaves), and its body as it goes on the wire.
pub(super) struct Prepared<'a> {
    pub(super) mail: Command,
    pub(super) rcpts: Vec<Command>,
    pub(super) addresses: Vec<Address>,
    /// MAIL, every RCPT (and DATA, for the DATA path), encoded: the pipelined group.
    pub(super) group: Vec<u8>,
    /// The group's lines as the transcript shows them.
    pub(super) group_lines: Vec<String>,
    /// For DATA: the message as given, dot-stuffed as it is written. For BDAT: the message
    /// with CRLF line ends, not stuffed ([`crate::proto::bdat_body`]).
    pub(super) wire_body: Cow<'a, [u8]>,
    /// The message's length as given.
    pub(super) body_len: usize,
}

pub(super) fn not_sent() -> Error {
    Error::new(
        ErrorKind::Closed,
        Stage::MailFrom,
        "not sent: the session ended during an earlier message of the batch, before this message's body left",
    )
}

impl Connection {
    /// Sends one message: MAIL FROM, RCPT TO for each recipient, DATA and the body.
    ///
    /// With PIPELINING (RFC 2920) MAIL, every RCPT and DATA leave in one write and their
    /// replies are matched in order; otherwise each command waits for its reply. Recipients
    /// the server refuses are reported one by one in the [`TransactionReport`]; the message
    /// goes to the others. When every recipient is refused the transaction is reset and the
    /// error lists each refusal. SIZE, BODY=8BITMIME and SMTPUTF8 are added only when needed
    /// and offered (SMTPUTF8 also for raw UTF-8 headers, RFC 6532); a message over the SIZE
    /// limit, or with a line over 998 octets (RFC 5321 §4.5.3.1.6), fails before anything is
    /// sent.
    ///
    /// When the server offers CHUNKING as well, MAIL, every RCPT and `BDAT <size> LAST` with
    /// the message leave in one write instead (RFC 3030; see [`Connection::send_many`] and
    /// [`super::Chunking`]).
    ///
    /// `message` is the RFC 5322 message (headers and body); line ends are normalised to CRLF.
    ///
    /// Cancel safety: if the future is dropped after the first command was written and before
    /// the last reply was read, the session is never used again (every later call fails, a
    /// pool discards it); whether the server took the message is then unknown.
    pub async fn send_mail(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<TransactionReport> {
        self.send_many(&[(envelope, message)])
            .await
            .pop()
            .unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::InvalidInput,
                    Stage::MailFrom,
                    "nothing to send",
                ))
            })
    }

    /// Sends several messages in a row over this session, one result each, in order.
    ///
    /// With PIPELINING, each message's body and final `.` leave in the same write as the next
    /// message's MAIL, RCPT and DATA (RFC 2920 §3.1 lets message content open a group), so in a
    /// steady stream a message costs one round trip instead of two. Each transaction is still
    /// judged on its own replies; a message whose own preparation fails (bad address, too
    /// large) is reported without affecting the others.
    ///
    /// With CHUNKING as well (RFC 3030; see [`super::Chunking`]), each message is MAIL, RCPT…
    /// and `BDAT <size> LAST` with its octets, not dot-stuffed, in one write with no wait for
    /// a `354`, and several messages are in flight at once (an `RSET` before each one after
    /// the first keeps a failed transaction from touching the next). When the session fails
    /// half-way, a message whose last chunk was written and whose reply did not come is
    /// reported as outcome unknown ([`Error::is_outcome_unknown`]); one not yet fully written
    /// as not sent (transient).
    ///
    /// Cancel safety: if the future is dropped after the first command was written and before
    /// the last reply was read, the session is never used again (every later call fails, a
    /// pool discards it); which of the messages the server took is then unknown.
    pub async fn send_many(
        &mut self,
        batch: &[(&Envelope, &[u8])],
    ) -> Vec<Result<TransactionReport>> {
        let started = self
            .refuse_while_awaiting_body(Stage::MailFrom)
            .and_then(|()| self.wire().begin(Stage::MailFrom));
        if let Err(e) = started {
            return batch.iter().map(|_| Err(e.duplicate())).collect();
        }
        let results = self.send_batch(batch).await;
        self.wire().end();
        results
    }

    async fn send_batch(&mut self, batch: &[(&Envelope, &[u8])]) -> Vec<Result<TransactionReport>> {
        let pipelining = self.capabilities.pipelining() && !self.options().disable_pipelining;
        let bdat = pipelining && self.capabilities.chunking() && self.options().chunking.enabled;
        let mut results: Vec<Option<Result<TransactionReport>>> = Vec::with_capacity(batch.len());
        let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(batch.len());
        for (envelope, message) in batch {
            match self.prepare(envelope, message, bdat) {
                Ok(p) => {
                    prepared.push(Some(p));
                    results.push(None);
                }
                Err(e) => {
                    prepared.push(None);
                    results.push(Some(Err(e)));
                }
            }
        }
        if bdat {
            self.send_batch_bdat(&prepared, &mut results).await;
            return results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Err(not_sent())))
                .collect();
        }
        let ready: Vec<usize> = (0..prepared.len())
            .filter(|&i| prepared[i].is_some())
            .collect();
        let mut group_sent = false;
        for (k, &i) in ready.iter().enumerate() {
            let Some(p) = prepared[i].as_ref() else {
                continue;
            };
            if let Err(e) = self.wire().check_usable(Stage::MailFrom) {
                // Once the session failed during this batch, the rest were never sent.
                results[i] = Some(Err(if k > 0 { not_sent() } else { e }));
                continue;
            }
            let (result, next_sent) = if pipelining {
                let next = ready.get(k + 1).and_then(|&j| prepared[j].as_ref());
                self.pipelined_transaction(p, next, group_sent).await
            } else {
                (self.lockstep_transaction(p).await, false)
            };
            results[i] = Some(result);
            group_sent = next_sent;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(not_sent())))
            .collect()
    }

    fn prepare<'a>(
        &self,
        envelope: &Envelope,
        message: &'a [u8],
        bdat: bool,
    ) -> Result<Prepared<'a>> {
        check_line_lengths(message)?;
        let params = self.mail_parameters(envelope, message)?;
        let (wire_body, message_size) = if bdat {
            let body = bdat_body(message);
            let size = body.len();
            (body, size)
        } else {
            // Dot-stuffed while it is written (`Connection::write_body`), never copied whole.
            (Cow::Borrowed(message), DotStuffer::message_size(message))
        };
        if let Some(limit) = self.capabilities.size_limit() {
            let size = message_size as u64;
            if size > limit {
                return Err(Error::new(
                    ErrorKind::MessageTooLarge,
                    Stage::MailFrom,
                    format!(
                        "message of {size} bytes is over the server's SIZE limit of {limit} bytes"
                    ),
                ));
            }
        }
        let mut params = if self.capabilities.size() {
            let mut p = vec![Parameter::size(message_size)];
            p.extend(params);
            p
        } else {
            params
        };
        let drop_unsupported = envelope.mail_params().drop_unsupported;
        let offered = envelope
            .mail_params()
            .parameters()
            .map_err(|e| Error::invalid(Stage::MailFrom, e))?;
        params.extend(self.extension_parameters(offered, drop_unsupported, Stage::MailFrom)?);
        let mail = Command::MailFrom {
            from: envelope.from().clone(),
            params,
        };
        let mut rcpts: Vec<Command> = Vec::with_capacity(envelope.to().len());
        for (to, rcpt_params) in envelope.to().iter().zip(envelope.rcpt_params()) {
            let offered = rcpt_params
                .parameters()
                .map_err(|e| Error::invalid(Stage::RcptTo, e))?;
            rcpts.push(Command::RcptTo {
                to: to.clone(),
                params: self.extension_parameters(offered, drop_unsupported, Stage::RcptTo)?,
            });
        }
        let mut group = Vec::with_capacity(64 * (rcpts.len() + 2));
        let mut group_lines = Vec::with_capacity(rcpts.len() + 2);
        let data = (!bdat).then_some((&Command::Data, Stage::Data));
        for (command, stage) in std::iter::once((&mail, Stage::MailFrom))
            .chain(rcpts.iter().map(|r| (r, Stage::RcptTo)))
            .chain(data)
        {
            command
                .encode(&mut group)
                .map_err(|e| Error::invalid(stage, e))?;
            group_lines.push(command.redacted());
        }
        Ok(Prepared {
            mail,
            rcpts,
            addresses: envelope.to().to_vec(),
            group,
            group_lines,
            wire_body,
            body_len: message.len(),
        })
    }

    /// The envelope's extension parameters this server may receive, each only when it offers
    /// the extension (RFC 3461 §4, RFC 6710 §2); the others are an error, or dropped with a
    /// note when the envelope says so. REQUIRETLS is never dropped, and needs a session under
    /// TLS as well (RFC 8689 §4.2).
    fn extension_parameters(
        &self,
        offered: Vec<Offered>,
        drop_unsupported: bool,
        stage: Stage,
    ) -> Result<Vec<Parameter>> {
        let mut params = Vec::with_capacity(offered.len());
        for o in offered {
            let keyword = o.parameter.keyword().to_owned();
            if keyword == "REQUIRETLS" && !self.is_secure() {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    stage,
                    "REQUIRETLS needs a session under TLS (RFC 8689 §4.2)",
                ));
            }
            if self.capabilities.has(o.extension) {
                params.push(o.parameter);
            } else if drop_unsupported && keyword != "REQUIRETLS" {
                let note = format!(
                    "dropped {keyword}: the server does not offer {}",
                    o.extension
                );
                tracing::warn!("{note}");
                self.note(&note);
            } else {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    stage,
                    format!(
                        "{keyword} needs the {} extension, which the server does not offer",
                        o.extension
                    ),
                ));
            }
        }
        Ok(params)
    }

    /// BODY and SMTPUTF8 parameters, only when the message needs them; an error when it needs
    /// an extension the server lacks (RFC 6152 §3, RFC 6531 §3.4).
    ///
    /// Any 8-bit byte needs 8BITMIME. A non-ASCII address needs SMTPUTF8. Raw UTF-8 in the
    /// headers (RFC 6532) asks for SMTPUTF8 too when the server offers it; a server that does
    /// not still gets the message under BODY=8BITMIME, as many accept it.
    fn mail_parameters(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Parameter>> {
        let mut params = Vec::new();
        // `is_ascii` reads a word at a time: the whole body is checked, so it must be quick.
        let eight_bit = !message.is_ascii();
        if eight_bit {
            if !self.capabilities.eight_bit_mime() {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    Stage::MailFrom,
                    "message has 8-bit bytes but the server does not offer 8BITMIME",
                ));
            }
            params.push(Parameter::body_8bitmime());
        }
        // RFC 6531 §3.4 and RFC 6532 §3: a non-ASCII address, or raw UTF-8 in the header
        // section, needs SMTPUTF8; a server without it cannot take the message as it is.
        let utf8_headers = eight_bit && headers_have_8bit(message);
        if envelope.needs_smtputf8() || utf8_headers {
            if !self.capabilities.smtputf8() {
                let what = if envelope.needs_smtputf8() {
                    "an address has non-ASCII characters"
                } else {
                    "the header section has raw UTF-8 (RFC 6532; encode it with RFC 2047 instead)"
                };
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    Stage::MailFrom,
                    format!("{what} but the server does not offer SMTPUTF8"),
                ));
            }
            params.push(Parameter::smtputf8());
        }
        Ok(params)
    }

    /// RFC 2920 §3.1: MAIL, every RCPT and DATA in one write (unless it already left with the
    /// previous message's body); then every reply in order. Returns whether `next`'s group
    /// left with this message's body.
    async fn pipelined_transaction(
        &mut self,
        p: &Prepared<'_>,
        next: Option<&Prepared<'_>>,
        group_sent: bool,
    ) -> (Result<TransactionReport>, bool) {
        let timeouts = *self.options().timeouts();
        if !group_sent {
            self.wire().queue_encoded(&p.group, &p.group_lines);
            if let Err(e) = self.wire().flush(Stage::MailFrom, timeouts.command).await {
                return (Err(e), false);
            }
        }
        let replies = async {
            let mail = self.read_checked(Stage::MailFrom, timeouts.command).await?;
            let mut recipients = Vec::with_capacity(p.rcpts.len());
            for address in &p.addresses {
                let reply = self.read_checked(Stage::RcptTo, timeouts.command).await?;
                recipients.push(RecipientResult {
                    address: address.clone(),
                    reply,
                });
            }
            let data = self.read_checked(Stage::Data, timeouts.data_start).await?;
            Ok(Replies {
                mail,
                recipients,
                data: Some(data),
            })
        }
        .await;
        match replies {
            Ok(replies) => self.conclude(replies, p, next).await,
            Err(e) => (Err(e), false),
        }
    }

    /// Without PIPELINING: each command waits for its reply; DATA only when a recipient was accepted.
    async fn lockstep_transaction(&mut self, p: &Prepared<'_>) -> Result<TransactionReport> {
        let timeouts = *self.options().timeouts();
        let mail = self
            .round_trip(&p.mail, Stage::MailFrom, timeouts.command)
            .await?;
        if !mail.is_positive() {
            return Err(Error::rejected(Stage::MailFrom, mail));
        }
        let mut recipients = Vec::with_capacity(p.rcpts.len());
        for (rcpt, address) in p.rcpts.iter().zip(&p.addresses) {
            let reply = self
                .round_trip(rcpt, Stage::RcptTo, timeouts.command)
                .await?;
            recipients.push(RecipientResult {
                address: address.clone(),
                reply,
            });
        }
        let data = if recipients.iter().any(RecipientResult::accepted) {
            Some(
                self.round_trip(&Command::Data, Stage::Data, timeouts.data_start)
                    .await?,
            )
        } else {
            None
        };
        self.conclude(
            Replies {
                mail,
                recipients,
                data,
            },
            p,
            None,
        )
        .await
        .0
    }

    async fn round_trip(
        &mut self,
        command: &Command,
        stage: Stage,
        limit: std::time::Duration,
    ) -> Result<Reply> {
        self.wire().queue(&[command], stage)?;
        self.wire().flush(stage, limit).await?;
        self.read_checked(stage, limit).await
    }

    /// Reads a reply; a 421 ends the session at once (RFC 5321 §3.8), so it is an error here.
    pub(super) async fn read_checked(
        &mut self,
        stage: Stage,
        limit: std::time::Duration,
    ) -> Result<Reply> {
        let reply = self.wire().read_reply(stage, limit).await?;
        if reply.code() == ReplyCode::SERVICE_NOT_AVAILABLE {
            return Err(Error::rejected(stage, reply));
        }
        Ok(reply)
    }

    /// After the replies to MAIL, RCPT and DATA: send the body (with `next`'s group behind
    /// it when pipelining) and read the verdict, or end the failed transaction cleanly.
    async fn conclude(
        &mut self,
        replies: Replies,
        p: &Prepared<'_>,
        next: Option<&Prepared<'_>>,
    ) -> (Result<TransactionReport>, bool) {
        let timeouts = *self.options().timeouts();
        let Replies {
            mail,
            recipients,
            data,
        } = replies;
        let any_accepted = mail.is_positive() && recipients.iter().any(RecipientResult::accepted);
        let go_ahead = data
            .as_ref()
            .is_some_and(|d| d.code() == ReplyCode::START_MAIL_INPUT);

        if any_accepted && go_ahead {
            // The next message's commands ride behind this body (RFC 2920 §3.1).
            let then = next.map(|n| (n.group.as_slice(), n.group_lines.as_slice()));
            let result = match self.write_body(&p.wire_body, p.body_len, then).await {
                Ok(reply) if reply.is_positive() => Ok(TransactionReport {
                    mail_reply: mail,
                    recipients,
                    data_reply: reply,
                }),
                Ok(reply) => {
                    Err(Error::rejected(Stage::DataEnd, reply).with_recipients(recipients))
                }
                // What RCPT said still holds: only the accepted recipients may have the
                // message when the body or its final reply failed.
                Err(e) => Err(e.with_recipients(recipients)),
            };
            // After an error the session is poisoned, so whether the group left no longer matters.
            return (result, next.is_some());
        }

        // The transaction failed before the body. RFC 2920 §3.1: a 354 we did not want is
        // answered with a lone "." so the server leaves data mode.
        if go_ahead {
            let wire = self.wire();
            wire.note("no recipient accepted: ending DATA with an empty message");
            wire.queue_raw(b".\r\n");
            let ended = match wire.flush_body(timeouts.data_block, usize::MAX).await {
                Ok(()) => wire
                    .read_reply(Stage::DataEnd, timeouts.data_end)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = ended {
                return (Err(e), false);
            }
        }
        let error = if !mail.is_positive() {
            // RFC 2920 §3.1: pipelined RCPTs after a refused MAIL get `503 bad sequence`,
            // which says nothing about the recipients: MAIL's reply is the answer for all.
            Error::rejected(Stage::MailFrom, mail)
        } else if !any_accepted {
            let first = recipients
                .iter()
                .find(|r| !r.accepted())
                .map(|r| r.reply.clone());
            let n = p.addresses.len();
            let err = Error::new(
                ErrorKind::Rejected,
                Stage::RcptTo,
                format!("all {n} recipient(s) rejected"),
            );
            match first {
                Some(reply) => err.with_reply(reply),
                None => err,
            }
        } else {
            match data {
                Some(reply) => Error::rejected(Stage::Data, reply),
                None => Error::new(ErrorKind::Protocol, Stage::Data, "no reply to DATA"),
            }
        };
        let error = if error.stage() == Stage::MailFrom {
            error
        } else {
            error.with_recipients(recipients)
        };
        // RFC 5321 §4.1.1.5: reset so the next transaction starts clean.
        if !self.wire().is_poisoned() {
            if let Err(rset) = self.simple(Command::Rset, Stage::Rset).await {
                self.wire()
                    .note(&format!("RSET after failed transaction failed: {rset}"));
            }
        }
        (Err(error), false)
    }
}

impl super::sender::Sender for Connection {
    async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Result<super::sender::Sent> {
        self.send_mail(envelope, message)
            .await
            .map(|report| super::sender::Sent::from(&report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Reply {
        Reply::new(ReplyCode::new(code).expect("valid"), vec![text.to_owned()])
    }

    #[test]
    fn lines_end_at_crlf_cr_or_lf() {
        let split: Vec<&[u8]> = lines(b"a\r\nbb\nccc\rd\r\n\r\ne").collect();
        assert_eq!(split, [&b"a"[..], b"bb", b"ccc", b"d", b"", b"e"]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"x\r\n").count(), 1);
        assert!(headers_have_8bit("Subject: é\r\n\r\nbody".as_bytes()));
        assert!(!headers_have_8bit("Subject: e\n\nbödy".as_bytes()));
    }

    #[test]
    fn queue_ids_of_common_servers() {
        let cases: &[(&str, Option<&str>)] = &[
            // Postfix.
            ("2.0.0 Ok: queued as 4Xk2Lz0bJHz", Some("4Xk2Lz0bJHz")),
            // Exim.
            ("OK id=1tGx9a-0001Xy-2B", Some("1tGx9a-0001Xy-2B")),
            // Gmail: `OK <unix time> <id> - gsmtp`; the id follows the time stamp.
            (
                "2.0.0 OK  1700000000 x1-20020a170906.1 - gsmtp",
                Some("x1-20020a170906.1"),
            ),
            // SendGrid.
            ("Ok: queued as YmZ-3dNvQ0KX1pWuLoTq2w", Some("YmZ-3dNvQ0KX1pWuLoTq2w")),
            // Microsoft 365 / Exchange: a Message-ID and host names, no queue id.
            (
                "2.0.0 OK <0100018b5f7a@example.com> [Hostname=BY5PR11MB1234.namprd11.prod.outlook.com] Queued mail for delivery",
                None,
            ),
            (
                "2.6.0 <abc@example.com> [InternalId=1234, Hostname=EX01] Queued mail for delivery",
                None,
            ),
            // Amazon SES.
            (
                "Ok 0100018b5f7a1234-abcdef12-3456-7890-abcd-ef1234567890-000000",
                Some("0100018b5f7a1234-abcdef12-3456-7890-abcd-ef1234567890-000000"),
            ),
            ("Ok", None),
            ("2.0.0 Ok", None),
            // A time stamp alone is not an id.
            ("OK 1700000000 - gsmtp", None),
            ("Ok 123456789012", Some("123456789012")),
        ];
        for (text, want) in cases {
            assert_eq!(queue_id(&reply(250, text)).as_deref(), *want, "{text}");
        }
    }
}
