//! Fine protocol control: stop after the greeting with `Greeted::open`, say EHLO, upgrade with
//! STARTTLS, then drive a transaction one typed `Command` at a time with
//! `Connection::command`, printing every command line and every `Reply` (code, enhanced code,
//! text).
//!
//! ```sh
//! smtpkit serve --tls self-signed &     # a local capture server on 127.0.0.1:2525
//! SMTPKIT_EXAMPLE_CA_FILE=smtpkit-mail/smtpkit-local-ca.pem cargo run --example protocol
//! ```
//!
//! `SMTPKIT_EXAMPLE_HOST` and `SMTPKIT_EXAMPLE_PORT` say where the server is (default
//! `127.0.0.1:2525`). With `SMTPKIT_EXAMPLE_CA_FILE` (a PEM file of trusted roots) the session
//! is upgraded with STARTTLS before any mail command; without it, it stays in plain text,
//! which only a local test server should accept.

use smtpkit::client::{ClientOptions, Connection, Greeted, TlsConnector, TlsSettings};
use smtpkit::proto::{Address, Command, Parameter, Reply, ReversePath};

/// Prints the command as it goes on the wire, sends it, prints the reply.
async fn exchange(conn: &mut Connection, command: &Command) -> Result<Reply, smtpkit::Error> {
    let mut line = Vec::new();
    command.encode(&mut line)?;
    println!("C: {}", String::from_utf8_lossy(&line).trim_end());
    let reply = conn.command(command).await?;
    print_reply(&reply);
    Ok(reply)
}

fn print_reply(reply: &Reply) {
    let enhanced = reply
        .enhanced_code()
        .map_or_else(|| "-".to_owned(), |e| e.to_string());
    println!("S: {} [{}] {}", reply.code(), enhanced, reply.message());
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::var("SMTPKIT_EXAMPLE_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = match std::env::var("SMTPKIT_EXAMPLE_PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 2525,
    };
    let ca_file = std::env::var_os("SMTPKIT_EXAMPLE_CA_FILE");
    let tls = match &ca_file {
        Some(ca_file) => Some(TlsConnector::new(&TlsSettings {
            skip_verify: false,
            ca_file: Some(ca_file.into()),
        })?),
        None => None,
    };
    let options = ClientOptions {
        tls,
        ..ClientOptions::default()
    };

    // TCP and the greeting only: nothing has been said yet.
    let greeted = Greeted::open(&host, port, options).await?;
    print_reply(greeted.greeting());

    // EHLO (HELO if the server answers 500/502), then what the server offers.
    let mut conn = greeted.ehlo().await?;
    println!("capabilities of {}:", conn.capabilities().server_name());
    for (keyword, params) in conn.capabilities().iter() {
        match params {
            [] => println!("  {keyword}"),
            _ => println!("  {keyword} {}", params.join(" ")),
        }
    }
    if ca_file.is_some() {
        // STARTTLS, the handshake, and EHLO again (capabilities are learnt anew over TLS).
        conn = conn.starttls().await?;
        let info = conn.tls_info().ok_or("no TLS after STARTTLS")?;
        println!("TLS: {} {}", info.protocol, info.cipher_suite);
    } else {
        println!("no CA file given: staying in plain text");
    }

    let message = b"From: noreply@example.com\r\nTo: approver@example.com\r\n\
                    Subject: Fine control\r\n\r\n\
                    Sent one command at a time.\r\n";

    // MAIL FROM with the SIZE parameter, only when the server offers SIZE (RFC 1870).
    let mut params = Vec::new();
    if conn.capabilities().size() {
        params.push(Parameter::new("SIZE", Some(&message.len().to_string()))?);
    }
    let from = ReversePath::Mailbox(Address::new("noreply@example.com")?);
    let reply = exchange(&mut conn, &Command::MailFrom { from, params }).await?;
    if !reply.is_positive() {
        return Err(format!("MAIL FROM refused: {reply}").into());
    }
    let mut accepted = 0;
    for to in ["approver@example.com", "audit@example.com"] {
        let rcpt = Command::RcptTo {
            to: Address::new(to)?,
            params: Vec::new(),
        };
        if exchange(&mut conn, &rcpt).await?.is_positive() {
            accepted += 1;
        }
    }
    if accepted == 0 {
        exchange(&mut conn, &Command::Rset).await?;
        return Err("no recipient accepted".into());
    }
    let reply = exchange(&mut conn, &Command::Data).await?;
    if reply.code().value() != 354 {
        return Err(format!("DATA refused: {reply}").into());
    }
    // The body is dot-stuffed and terminated by smtpkit; the reply is the server's verdict.
    println!("C: <{} octets of message>", message.len());
    let reply = conn.send_body(message).await?;
    print_reply(&reply);

    exchange(&mut conn, &Command::Noop).await?;
    // QUIT has its own call: it consumes the connection and closes it after the reply.
    println!("C: QUIT");
    let reply = conn.quit().await?;
    print_reply(&reply);
    Ok(())
}
