//! The README's "Library example: the client": one connection, one transaction to two
//! recipients, the refusals and the whole conversation printed.
//!
//! ```sh
//! smtpkit serve --tls self-signed --auth demo:secret &   # a capture server on 127.0.0.1:2525
//! SMTPKIT_EXAMPLE_CA_FILE=smtpkit-mail/smtpkit-local-ca.pem \
//!   SMTPKIT_EXAMPLE_USER=demo SMTPKIT_EXAMPLE_PASS=secret cargo run --example client
//! ```
//!
//! `SMTPKIT_EXAMPLE_HOST` and `SMTPKIT_EXAMPLE_PORT` say where the server is (default
//! `127.0.0.1:2525`); with `SMTPKIT_EXAMPLE_USER` and `SMTPKIT_EXAMPLE_PASS` the client
//! authenticates (after STARTTLS). The default options require TLS (STARTTLS on any port but 465) checked
//! against the system's roots; `SMTPKIT_EXAMPLE_CA_FILE` adds a PEM file of trusted roots, such
//! as the one `smtpkit serve --tls self-signed` writes.

use smtpkit::client::{
    ClientOptions, Connection, Credentials, Envelope, TlsConnector, TlsSettings, Transcript,
};
use smtpkit::proto::{Address, Secret};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::var("SMTPKIT_EXAMPLE_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = match std::env::var("SMTPKIT_EXAMPLE_PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 2525,
    };
    let tls = match std::env::var_os("SMTPKIT_EXAMPLE_CA_FILE") {
        Some(ca_file) => Some(TlsConnector::new(&TlsSettings {
            skip_verify: false,
            ca_file: Some(ca_file.into()),
        })?),
        None => None, // the system's roots
    };

    let credentials = match (
        std::env::var("SMTPKIT_EXAMPLE_USER"),
        std::env::var("SMTPKIT_EXAMPLE_PASS"),
    ) {
        (Ok(user), Ok(pass)) => Some(Credentials::new(user, Secret::new(pass))?),
        _ => None,
    };

    let (transcript, lines) = Transcript::buffer();
    let options = ClientOptions {
        transcript: Some(transcript),
        tls,
        credentials,
        ..ClientOptions::default()
    };
    let mut conn = Connection::connect(&host, port, options).await?;

    let envelope = Envelope::new(
        Address::new("noreply@example.com")?,
        vec![
            Address::new("approver@example.com")?,
            Address::new("audit@example.com")?,
        ],
    )?;
    let message = b"From: noreply@example.com\r\nTo: approver@example.com\r\n\
                    Subject: Access Request Approval Required\r\n\r\n\
                    A new access request requires your approval.\r\n";
    let result = conn.send_mail(&envelope, message).await;
    match &result {
        Ok(report) => {
            println!(
                "accepted: {} (queue id {:?})",
                report.data_reply(),
                report.queue_id()
            );
            for refused in report.rejected() {
                println!("refused {}: {}", refused.address, refused.reply);
            }
        }
        Err(err) if err.is_outcome_unknown() => eprintln!("may have been delivered: {err}"),
        Err(err) => eprintln!("{err}\nhint: {}", err.hint().unwrap_or("-")),
    }
    conn.quit().await?;
    for line in lines.lines() {
        println!("{line}"); // "C: MAIL FROM:<noreply@example.com>", "S: 250 2.1.0 Ok", ...
    }
    result?;
    Ok(())
}
