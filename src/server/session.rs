//! One client session of the local server: commands in, replies out, pipelining-aware
//! (replies are flushed only when no further command is already waiting, RFC 2920 §3.2).

use std::net::SocketAddr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use super::store::StoredMessage;
use super::Shared;
use crate::client::Stream;
use crate::proto::{DotUnstuffer, Secret};

/// Why a session ended early.
enum End {
    /// The client went away, or I/O failed.
    Gone,
    /// The session ended cleanly (QUIT, idle timeout).
    Done,
}

type Step<T = ()> = Result<T, End>;

pub(super) struct Session {
    shared: Arc<Shared>,
    /// Becomes true when the server stops.
    stopping: tokio::sync::watch::Receiver<bool>,
    stream: Option<Box<dyn Stream>>,
    peer: SocketAddr,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    tls: bool,
    helo: Option<String>,
    esmtp: bool,
    authenticated: Option<String>,
    mail_from: Option<String>,
    rcpts: Vec<String>,
    /// The message of the BDAT transaction under way (RFC 3030), once a first chunk came.
    bdat: Option<BdatMessage>,
}

/// A message arriving in BDAT chunks.
#[derive(Default)]
struct BdatMessage {
    octets: Vec<u8>,
    /// A chunk was refused (too large, no recipient): the rest is read and dropped, and the
    /// message refused at LAST (RFC 3030 §2).
    failed: Option<&'static str>,
}

fn parse_path(arg: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = arg
        .get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &arg[prefix.len()..])?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('<')?;
    let close = rest.find('>')?;
    let address = rest[..close].to_owned();
    let params = rest[close + 1..]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    Some((address, params))
}

impl Session {
    pub(super) fn new(
        shared: Arc<Shared>,
        stream: Box<dyn Stream>,
        peer: SocketAddr,
        tls: bool,
    ) -> Session {
        Session {
            stopping: shared.stopping.subscribe(),
            shared,
            stream: Some(stream),
            peer,
            inbuf: Vec::new(),
            out: Vec::new(),
            tls,
            helo: None,
            esmtp: false,
            authenticated: None,
            mail_from: None,
            rcpts: Vec::new(),
            bdat: None,
        }
    }

    pub(super) async fn run(mut self) {
        let greeting = format!("220 {} ESMTP smtpkit", self.shared.config.hostname);
        self.reply(&greeting);
        let _ = self.serve().await;
        let _ = self.flush().await;
        if let Some(mut s) = self.stream.take() {
            let _ = s.shutdown().await;
        }
    }

    async fn serve(&mut self) -> Step {
        loop {
            let line = self.read_line().await?;
            self.command(&line).await?;
        }
    }

    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self) -> Step {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let stream = self.stream.as_mut().ok_or(End::Gone)?;
        let write = async {
            stream.write_all(&out).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.shared.config.limits.idle_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    /// Reads more input; flushes pending replies first only when no complete line is waiting.
    ///
    /// Waiting for a command (`between_commands`), a server that is stopping answers
    /// `421 4.3.2 shutting down` and ends the session; in the middle of a message body it
    /// goes on reading, so that the message is stored whole (or, past the server's grace
    /// period, not at all).
    async fn fill(&mut self, between_commands: bool) -> Step {
        self.flush().await?;
        let idle = self.shared.config.limits.idle_timeout;
        let stream = self.stream.as_mut().ok_or(End::Gone)?;
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::time::timeout(idle, stream.read(&mut chunk));
        let read = if between_commands {
            // Dropping the read is safe: nothing read is lost, the session ends.
            let stopped = tokio::select! {
                read = read => Ok(read),
                _ = self.stopping.wait_for(|&stop| stop) => Err(End::Done),
            };
            match stopped {
                Ok(read) => read,
                Err(end) => {
                    tracing::info!(
                        "session {}: closed with 421, the server is stopping",
                        self.peer
                    );
                    self.reply("421 4.3.2 shutting down");
                    return Err(end);
                }
            }
        } else {
            read.await
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => Err(End::Gone),
            Ok(Ok(n)) => {
                self.inbuf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(_) => {
                tracing::info!("session {}: idle for {idle:?}, closed with 421", self.peer);
                self.reply("421 4.4.2 idle too long, closing");
                Err(End::Done)
            }
        }
    }

    /// The next command line (without CRLF). Over-long lines are answered with 500 and skipped.
    async fn read_line(&mut self) -> Step<String> {
        let max = self.shared.config.limits.max_line_len;
        let mut discarding = false;
        loop {
            if let Some(pos) = self.inbuf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.inbuf.drain(..=pos).collect();
                if discarding || raw.len() > max {
                    self.reply("500 5.5.2 line too long");
                    discarding = false;
                    continue;
                }
                let line = String::from_utf8_lossy(&raw);
                return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
            }
            if self.inbuf.len() > max {
                self.inbuf.clear();
                discarding = true;
            }
            self.fill(true).await?;
        }
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
        self.bdat = None;
    }

    /// Whether an account is configured (PLAIN/LOGIN or XOAUTH2): AUTH is then required for MAIL.
    fn auth_required(&self) -> bool {
        let config = &self.shared.config;
        config.auth.is_some() || config.xoauth2.is_some()
    }

    fn auth_offered(&self) -> bool {
        self.auth_required() && (self.tls || self.shared.config.allow_insecure_auth)
    }

    async fn command(&mut self, line: &str) -> Step {
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" | "HELO" if arg.is_empty() => self.reply("501 5.5.4 a name is required"),
            "EHLO" => {
                self.reset_transaction();
                self.helo = Some(arg.to_owned());
                self.esmtp = true;
                let config = &self.shared.config;
                let mut lines = vec![
                    format!("{} greets {arg}", config.hostname),
                    "PIPELINING".to_owned(),
                    format!("SIZE {}", config.limits.max_message_size),
                    "8BITMIME".to_owned(),
                    "SMTPUTF8".to_owned(),
                    "ENHANCEDSTATUSCODES".to_owned(),
                    "CHUNKING".to_owned(),
                ];
                if config.tls.is_some() && !self.tls {
                    lines.push("STARTTLS".to_owned());
                }
                if self.auth_offered() {
                    let mut auth = "AUTH".to_owned();
                    if config.auth.is_some() {
                        auth.push_str(" PLAIN LOGIN");
                    }
                    if config.xoauth2.is_some() {
                        auth.push_str(" XOAUTH2");
                    }
                    lines.push(auth);
                }
                let last = lines.len() - 1;
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    self.reply(&format!("250{sep}{l}"));
                }
            }
            "HELO" => {
                self.reset_transaction();
                self.helo = Some(arg.to_owned());
                self.esmtp = false;
                let reply = format!("250 {}", self.shared.config.hostname);
                self.reply(&reply);
            }
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => self.data().await?,
            "BDAT" => self.bdat(arg).await?,
            "RSET" => {
                self.reset_transaction();
                self.reply("250 2.0.0 ok");
            }
            "NOOP" => self.reply("250 2.0.0 ok"),
            "QUIT" => {
                self.reply("221 2.0.0 bye");
                return Err(End::Done);
            }
            "STARTTLS" => self.starttls().await?,
            "AUTH" => self.auth(arg).await?,
            "VRFY" => self.reply("252 2.5.2 cannot verify, but will accept"),
            "HELP" => self.reply(
                "214 2.0.0 smtpkit local server: EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT STARTTLS AUTH",
            ),
            _ => self.reply("500 5.5.2 command not recognized"),
        }
        Ok(())
    }

    fn mail(&mut self, arg: &str) {
        let config = &self.shared.config;
        if self.helo.is_none() {
            return self.reply("503 5.5.1 say EHLO first");
        }
        if self.auth_required() && self.authenticated.is_none() {
            tracing::warn!(
                "session {}: MAIL refused with 530: AUTH is required and the client has not authenticated",
                self.peer
            );
            return self.reply("530 5.7.0 authentication required");
        }
        if self.mail_from.is_some() {
            return self.reply("503 5.5.1 nested MAIL command");
        }
        let Some((from, params)) = parse_path(arg, "FROM:") else {
            return self.reply("501 5.5.4 syntax: MAIL FROM:<address>");
        };
        for p in &params {
            let (key, value) = p
                .split_once('=')
                .map_or((p.as_str(), None), |(k, v)| (k, Some(v)));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" => match value.and_then(|v| v.parse::<usize>().ok()) {
                    Some(n) if n > config.limits.max_message_size => {
                        return self
                            .reply("552 5.3.4 message size exceeds fixed maximum message size");
                    }
                    Some(_) => {}
                    None => return self.reply("501 5.5.4 bad SIZE value"),
                },
                "BODY" | "SMTPUTF8" => {}
                _ => return self.reply("555 5.5.4 unsupported MAIL parameter"),
            }
        }
        self.mail_from = Some(from);
        self.reply("250 2.1.0 sender ok");
    }

    fn rcpt(&mut self, arg: &str) {
        if self.mail_from.is_none() {
            return self.reply("503 5.5.1 need MAIL before RCPT");
        }
        let Some((to, _params)) = parse_path(arg, "TO:") else {
            return self.reply("501 5.5.4 syntax: RCPT TO:<address>");
        };
        if to.is_empty() || !to.contains('@') {
            return self.reply("501 5.1.3 bad recipient address syntax");
        }
        if self.rcpts.len() >= self.shared.config.limits.max_recipients {
            return self.reply("452 4.5.3 too many recipients");
        }
        self.rcpts.push(to);
        self.reply("250 2.1.5 recipient ok");
    }

    async fn data(&mut self) -> Step {
        if self.bdat.is_some() {
            // RFC 3030 §3: DATA and BDAT do not mix in one transaction.
            self.reply("503 5.5.1 DATA during a BDAT transaction");
            return Ok(());
        }
        if self.mail_from.is_none() {
            self.reply("503 5.5.1 need MAIL first");
            return Ok(());
        }
        if self.rcpts.is_empty() {
            self.reply("554 5.5.1 no valid recipients");
            return Ok(());
        }
        self.reply("354 end data with <CR><LF>.<CR><LF>");
        let max = self.shared.config.limits.max_message_size;
        let mut decoder = DotUnstuffer::new();
        let mut message = Vec::new();
        let mut scratch = Vec::new();
        let mut too_big = false;
        loop {
            let input = std::mem::take(&mut self.inbuf);
            scratch.clear();
            let end = decoder.decode(&input, &mut scratch);
            if !too_big {
                if message.len() + scratch.len() > max {
                    too_big = true;
                    message = Vec::new();
                } else {
                    message.extend_from_slice(&scratch);
                }
            }
            if let Some(end) = end {
                self.inbuf = input[end..].to_vec();
                break;
            }
            if let Err(end) = self.fill(false).await {
                tracing::warn!(
                    "session {}: the connection ended in the middle of a message body; nothing stored",
                    self.peer
                );
                return Err(end);
            }
        }
        let from = self.mail_from.take().unwrap_or_default();
        let rcpts = std::mem::take(&mut self.rcpts);
        if too_big {
            self.reply("552 5.3.4 message size exceeds fixed maximum message size");
            return Ok(());
        }
        self.store(from, rcpts, &message);
        Ok(())
    }

    /// `BDAT size [LAST]` (RFC 3030 §2): reads the chunk's octets, whatever the reply, and
    /// stores the message at LAST. RFC 3030 §3: without MAIL and RCPT the octets are read and
    /// dropped with 503 (no MAIL) or 554 (no recipient); after a refused chunk the others are
    /// refused too, until LAST ends the transaction.
    async fn bdat(&mut self, arg: &str) -> Step {
        let mut words = arg.split_ascii_whitespace();
        let size = words.next().and_then(|w| {
            w.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| w.parse::<u64>().ok())
                .flatten()
        });
        let last = match words.next() {
            None => Some(false),
            Some(w) if w.eq_ignore_ascii_case("LAST") => Some(true),
            Some(_) => None,
        };
        let (Some(size), Some(last), None) = (size, last, words.next()) else {
            // Without a size the octets cannot be told from commands: the line alone is refused.
            self.reply("501 5.5.4 syntax: BDAT <size> [LAST]");
            return Ok(());
        };
        if size == 0 && !last {
            self.reply("501 5.5.4 an empty chunk must be the last (BDAT 0 LAST)");
            return Ok(());
        }
        let refusal = if self.mail_from.is_none() {
            Some("503 5.5.1 need MAIL first")
        } else if self.rcpts.is_empty() {
            Some("554 5.5.1 no valid recipients")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.read_octets(size, None).await?;
            self.reply(refusal);
            return Ok(());
        }
        let max = self.shared.config.limits.max_message_size as u64;
        let mut message = self.bdat.take().unwrap_or_default();
        let fits = (message.octets.len() as u64).saturating_add(size) <= max;
        if message.failed.is_none() && !fits {
            message.octets = Vec::new();
            message.failed = Some("552 5.3.4 message size exceeds fixed maximum message size");
        }
        let sink = message.failed.is_none().then_some(&mut message.octets);
        if let Err(end) = self.read_octets(size, sink).await {
            tracing::warn!(
                "session {}: the connection ended in the middle of a BDAT chunk; nothing stored",
                self.peer
            );
            return Err(end);
        }
        match (message.failed, last) {
            (Some(refusal), true) => {
                self.reset_transaction();
                self.reply(refusal);
            }
            (Some(refusal), false) => {
                self.bdat = Some(message);
                self.reply(refusal);
            }
            (None, false) => {
                self.bdat = Some(message);
                self.reply(&format!("250 2.0.0 {size} octets received"));
            }
            (None, true) => {
                let from = self.mail_from.take().unwrap_or_default();
                let rcpts = std::mem::take(&mut self.rcpts);
                self.bdat = None;
                self.store(from, rcpts, &message.octets);
            }
        }
        Ok(())
    }

    /// Reads exactly `size` octets of a BDAT chunk into `sink`, or drops them.
    async fn read_octets(&mut self, size: u64, mut sink: Option<&mut Vec<u8>>) -> Step {
        let mut left = size;
        loop {
            let take = self
                .inbuf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            if let Some(sink) = sink.as_mut() {
                sink.extend_from_slice(&self.inbuf[..take]);
            }
            self.inbuf.drain(..take);
            left -= take as u64;
            if left == 0 {
                return Ok(());
            }
            self.fill(false).await?;
        }
    }

    /// Stores a received message and replies with its id (or 451).
    fn store(&mut self, from: String, rcpts: Vec<String>, message: &[u8]) {
        let id = self.shared.store.next_id();
        let trace = self.trace(&id, &from, &rcpts);
        match self.shared.store.write(&id, &trace, message) {
            Ok(path) => {
                let stored = StoredMessage {
                    id: id.clone(),
                    path,
                    mail_from: from,
                    rcpt_to: rcpts,
                    size: message.len(),
                    authenticated_as: self.authenticated.clone(),
                    tls: self.tls,
                };
                if let Some(hook) = &self.shared.on_message {
                    hook(&stored);
                }
                self.reply(&format!("250 2.0.0 Ok: queued as {id}"));
            }
            Err(e) => {
                tracing::error!("cannot store message {id}: {e}");
                self.reply("451 4.3.0 cannot store the message, try again later");
            }
        }
    }

    /// `Received:` (RFC 5321 §4.4) and the envelope, above the message.
    fn trace(&self, id: &str, from: &str, rcpts: &[String]) -> String {
        let with = match (self.esmtp, self.tls, self.authenticated.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let date = mail_builder::headers::date::Date::now().to_rfc822();
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let to: Vec<String> = rcpts.iter().map(|r| format!("<{r}>")).collect();
        format!(
            "Received: from {helo} ([{}])\r\n\tby {} (smtpkit) with {with} id {id};\r\n\t{date}\r\nX-Envelope-From: <{from}>\r\nX-Envelope-To: {}\r\n",
            self.peer.ip(),
            self.shared.config.hostname,
            to.join(", ")
        )
    }

    async fn starttls(&mut self) -> Step {
        let Some(config) = self.shared.config.tls.clone() else {
            self.reply("502 5.5.1 STARTTLS not available");
            return Ok(());
        };
        if self.tls {
            self.reply("503 5.5.1 already under TLS");
            return Ok(());
        }
        // RFC 3207 §4.2 (and CVE-2011-0411): anything pipelined after STARTTLS is discarded.
        self.inbuf.clear();
        self.reply("220 2.0.0 ready to start TLS");
        self.flush().await?;
        let stream = self.stream.take().ok_or(End::Gone)?;
        let accept = TlsAcceptor::from(config).accept(stream);
        let limit = self.shared.config.limits.idle_timeout;
        match tokio::time::timeout(limit, accept).await {
            Ok(Ok(tls)) => {
                self.stream = Some(Box::new(tls));
                self.tls = true;
                // RFC 3207 §4.2: forget everything from before TLS.
                self.helo = None;
                self.esmtp = false;
                self.authenticated = None;
                self.reset_transaction();
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    "session {}: TLS handshake after STARTTLS failed: {e}",
                    self.peer
                );
                Err(End::Gone)
            }
            Err(_) => {
                tracing::warn!(
                    "session {}: no TLS handshake after STARTTLS within {limit:?}",
                    self.peer
                );
                Err(End::Gone)
            }
        }
    }

    async fn auth(&mut self, arg: &str) -> Step {
        if !self.auth_required() {
            self.reply("502 5.5.1 AUTH not available");
            return Ok(());
        }
        if !self.tls && !self.shared.config.allow_insecure_auth {
            tracing::warn!(
                "session {}: AUTH refused with 538: the session is not encrypted (STARTTLS first, or serve with --allow-insecure-auth)",
                self.peer
            );
            self.reply("538 5.7.11 encryption required for requested authentication mechanism");
            return Ok(());
        }
        if self.authenticated.is_some() {
            self.reply("503 5.5.1 already authenticated");
            return Ok(());
        }
        if self.mail_from.is_some() {
            self.reply("503 5.5.1 AUTH not allowed during a mail transaction");
            return Ok(());
        }
        let (mechanism, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_owned())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let config = &self.shared.config;
        match (
            mechanism.as_str(),
            config.auth.clone(),
            config.xoauth2.clone(),
        ) {
            ("PLAIN" | "LOGIN", Some((user, pass)), _) => {
                self.auth_password(&mechanism, initial, &user, &pass).await
            }
            ("XOAUTH2", _, Some((user, token))) => self.auth_xoauth2(initial, &user, &token).await,
            _ => {
                self.reply("504 5.5.4 unrecognized authentication type");
                Ok(())
            }
        }
    }

    /// AUTH PLAIN or LOGIN against the configured user and password.
    async fn auth_password(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
        user: &str,
        pass: &Secret,
    ) -> Step {
        let credentials = if mechanism == "PLAIN" {
            let response = match initial {
                Some(i) => i,
                None => self.challenge("").await?,
            };
            match self.decode(&response) {
                Some(bytes) => {
                    let mut parts = bytes.split(|&b| b == 0);
                    let (_authzid, u, p) = (parts.next(), parts.next(), parts.next());
                    u.zip(p)
                        .map(|(u, p)| (String::from_utf8_lossy(u).into_owned(), p.to_vec()))
                }
                None => return Ok(()),
            }
        } else {
            let u = match initial {
                Some(i) => i,
                None => self.challenge("VXNlcm5hbWU6").await?,
            };
            let Some(u) = self.decode(&u) else {
                return Ok(());
            };
            let p = self.challenge("UGFzc3dvcmQ6").await?;
            let Some(p) = self.decode(&p) else {
                return Ok(());
            };
            Some((String::from_utf8_lossy(&u).into_owned(), p))
        };
        match credentials {
            Some((u, p)) if u == user && constant_time_eq(&p, pass.expose().as_bytes()) => {
                self.authenticated = Some(u);
                self.reply("235 2.7.0 authentication successful");
            }
            Some((u, _)) => {
                tracing::warn!(
                    "session {}: AUTH {mechanism} failed for user {u:?}: wrong user name or password (535)",
                    self.peer
                );
                self.reply("535 5.7.8 authentication credentials invalid");
            }
            None => {
                tracing::warn!(
                    "session {}: AUTH {mechanism} failed: the response holds no user name and password (535)",
                    self.peer
                );
                self.reply("535 5.7.8 authentication credentials invalid");
            }
        }
        Ok(())
    }

    /// AUTH XOAUTH2 against the configured user and token, answered as Gmail answers it.
    async fn auth_xoauth2(&mut self, initial: Option<String>, user: &str, token: &Secret) -> Step {
        let response = match initial {
            Some(i) => i,
            None => self.challenge("").await?,
        };
        let Some(bytes) = self.decode(&response) else {
            return Ok(());
        };
        let (u, t) = match parse_xoauth2(&bytes) {
            Ok(parts) => parts,
            Err(why) => {
                tracing::warn!(
                    "session {}: AUTH XOAUTH2 refused with 501: malformed response ({why})",
                    self.peer
                );
                self.reply(&format!("501 5.5.2 malformed XOAUTH2 response: {why}"));
                return Ok(());
            }
        };
        // Both are checked, with no short cut after a wrong user: the time taken does not
        // tell which of the two was wrong.
        let user_ok = constant_time_eq(u.as_bytes(), user.as_bytes());
        let token_ok = constant_time_eq(t, token.expose().as_bytes());
        if user_ok & token_ok {
            self.authenticated = Some(u);
            self.reply("235 2.7.0 Accepted");
            return Ok(());
        }
        // Gmail's answer to a bad token: the error as a JSON challenge, which the client
        // answers (with an empty line) before the final reply.
        let answer = self.challenge(XOAUTH2_ERROR_CHALLENGE).await?;
        let outcome = if is_cancel(&answer) {
            self.reply(AUTH_CANCELLED);
            "the client cancelled after the error challenge (501)"
        } else {
            self.reply("535 5.7.8 Username and Password not accepted");
            "535"
        };
        tracing::warn!(
            "session {}: AUTH XOAUTH2 failed for user {u:?}: wrong user or token; {outcome}",
            self.peer
        );
        Ok(())
    }

    /// Sends a 334 challenge and reads the answer.
    async fn challenge(&mut self, text: &str) -> Step<String> {
        self.reply(&format!("334 {text}"));
        self.read_line().await
    }

    /// Base64 from the client; `*` or garbage end the exchange with a reply.
    fn decode(&mut self, response: &str) -> Option<Vec<u8>> {
        if is_cancel(response) {
            self.reply(AUTH_CANCELLED);
            return None;
        }
        match BASE64.decode(response.trim()) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                self.reply("501 5.5.2 cannot decode the response");
                None
            }
        }
    }
}

/// RFC 4954 §4: a client's `*` in place of a response cancels the exchange, answered with 501.
fn is_cancel(response: &str) -> bool {
    response.trim() == "*"
}

const AUTH_CANCELLED: &str = "501 5.7.0 AUTH cancelled";

/// Base64 of Gmail's error for a wrong XOAUTH2 user or token:
/// `{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}`.
const XOAUTH2_ERROR_CHALLENGE: &str =
    "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";

/// The user and token of an XOAUTH2 initial response, which must be exactly
/// `user={user}^Aauth=Bearer {token}^A^A` (`^A` is 0x01); otherwise why not.
fn parse_xoauth2(response: &[u8]) -> Result<(String, &[u8]), &'static str> {
    let rest = response
        .strip_prefix(b"user=")
        .ok_or("it must start with user=")?;
    let rest = rest
        .strip_suffix(b"\x01\x01")
        .ok_or("it must end with two ^A")?;
    let sep = rest
        .iter()
        .position(|&b| b == 1)
        .ok_or("no ^A after the user")?;
    let (user, auth) = (&rest[..sep], &rest[sep + 1..]);
    let token = auth
        .strip_prefix(b"auth=Bearer ")
        .ok_or("auth=Bearer must follow the user")?;
    if token.contains(&1) {
        return Err("fields beyond user and auth");
    }
    if user.is_empty() || token.is_empty() {
        return Err("empty user or token");
    }
    let user = std::str::from_utf8(user).map_err(|_| "the user is not UTF-8")?;
    Ok((user.to_owned(), token))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("FROM:<a@b> SIZE=10", "FROM:"),
            Some(("a@b".into(), vec!["SIZE=10".into()]))
        );
        assert_eq!(
            parse_path("from: <>", "FROM:"),
            Some((String::new(), vec![]))
        );
        assert_eq!(parse_path("TO:a@b", "TO:"), None);
        assert_eq!(parse_path("FROM:<a@b", "FROM:"), None);
    }

    #[test]
    fn xoauth2_error_challenge_is_gmails_json() {
        assert_eq!(
            BASE64.decode(XOAUTH2_ERROR_CHALLENGE).expect("base64"),
            br#"{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}"#
        );
    }

    #[test]
    fn xoauth2_responses_are_parsed_strictly() {
        assert_eq!(
            parse_xoauth2(b"user=u@example.com\x01auth=Bearer ya29.t\x01\x01"),
            Ok(("u@example.com".to_owned(), &b"ya29.t"[..]))
        );
        for bad in [
            &b""[..],
            b"user=u\x01auth=Bearer t\x01",
            b"user=u\x01auth=Bearer t",
            b"auth=Bearer t\x01user=u\x01\x01",
            b"user=u\x01auth=Basic t\x01\x01",
            b"user=u\x01auth=bearer t\x01\x01",
            b"user=u\x01auth=Bearer t\x01x=y\x01\x01",
            b"user=\x01auth=Bearer t\x01\x01",
            b"user=u\x01auth=Bearer \x01\x01",
            b"user=u auth=Bearer t\x01\x01",
            b"user=\xff\x01auth=Bearer t\x01\x01",
        ] {
            assert!(
                parse_xoauth2(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
