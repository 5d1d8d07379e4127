//! `smtpkit serve`: a local capture server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use smtpkit::proto::Secret;
use smtpkit::server::{load_cert_key, LocalCa, Server, ServerConfig, StoredMessage};

use super::exit;

/// Run a local SMTP server that stores every message it receives as a .eml file.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  smtpkit serve                                     # plain, no AUTH, 127.0.0.1:2525, ./smtpkit-mail
  smtpkit serve --tls self-signed --auth demo:secret --dir /tmp/mail
  smtpkit serve --listen 127.0.0.1:4650 --tls cert.pem,key.pem --implicit-tls

With --tls self-signed, the server writes the CA that signed its certificate to DIR/smtpkit-local-ca.pem:
point a provider's `ca_file` at it instead of setting `tls_skip_verify`.")]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub listen: SocketAddr,
    /// Directory for the .eml files.
    #[arg(long, default_value = "smtpkit-mail")]
    pub dir: PathBuf,
    /// `self-signed` (a CA and certificate made at start) or `CERT,KEY` (PEM files).
    #[arg(long, value_name = "self-signed|CERT,KEY")]
    pub tls: Option<String>,
    /// TLS from the first byte (port 465 style) instead of STARTTLS.
    #[arg(long, requires = "tls")]
    pub implicit_tls: bool,
    /// Require AUTH PLAIN or LOGIN with this user and password.
    #[arg(long, value_name = "USER:PASS")]
    pub auth: Option<String>,
    /// Offer AUTH without TLS.
    #[arg(long)]
    pub allow_insecure_auth: bool,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 25 * 1024 * 1024)]
    pub max_size: usize,
    /// Name used in the greeting and in Received: headers.
    #[arg(long, default_value = "localhost")]
    pub hostname: String,
    /// Allow listening on an address other than loopback.
    #[arg(long)]
    pub public: bool,
}

/// One line per stored message.
pub fn message_line(m: &StoredMessage) -> String {
    format!(
        "{} from=<{}> to={} size={} tls={} auth={} file={}",
        m.id,
        m.mail_from,
        m.rcpt_to
            .iter()
            .map(|r| format!("<{r}>"))
            .collect::<Vec<_>>()
            .join(","),
        m.size,
        if m.tls { "yes" } else { "no" },
        m.authenticated_as.as_deref().unwrap_or("-"),
        m.path.display()
    )
}

pub async fn run(args: ServeArgs) -> u8 {
    if !args.listen.ip().is_loopback() && !args.public {
        eprintln!(
            "✗ refusing to listen on {} (not loopback) without --public",
            args.listen
        );
        return exit::USAGE;
    }
    let mut config = ServerConfig::new(args.listen, args.dir.clone());
    config.hostname = args.hostname.clone();
    config.implicit_tls = args.implicit_tls;
    config.allow_insecure_auth = args.allow_insecure_auth;
    config.limits.max_message_size = args.max_size;
    if let Some(auth) = &args.auth {
        let Some((user, pass)) = auth.split_once(':') else {
            eprintln!("✗ --auth wants USER:PASS");
            return exit::USAGE;
        };
        config.auth = Some((user.to_owned(), Secret::new(pass)));
    }
    let mut ca_note = None;
    match args.tls.as_deref() {
        None => {}
        Some("self-signed") => {
            let names = vec![args.hostname.clone(), args.listen.ip().to_string()];
            let ca = match LocalCa::generate(&names) {
                Ok(ca) => ca,
                Err(e) => {
                    eprintln!("✗ {e}");
                    return exit::CONFIG;
                }
            };
            if let Err(e) = std::fs::create_dir_all(&args.dir) {
                eprintln!("✗ cannot create {}: {e}", args.dir.display());
                return exit::CONFIG;
            }
            let ca_path = args.dir.join("smtpkit-local-ca.pem");
            if let Err(e) = std::fs::write(&ca_path, &ca.ca_pem) {
                eprintln!("✗ cannot write {}: {e}", ca_path.display());
                return exit::CONFIG;
            }
            ca_note = Some(ca_path);
            config.tls = Some(ca.server_config);
        }
        Some(pair) => {
            let Some((cert, key)) = pair.split_once(',') else {
                eprintln!("✗ --tls wants self-signed or CERT,KEY");
                return exit::USAGE;
            };
            match load_cert_key(cert.as_ref(), key.as_ref()) {
                Ok(c) => config.tls = Some(c),
                Err(e) => {
                    eprintln!("✗ {e}");
                    return exit::CONFIG;
                }
            }
        }
    }
    let summary = format!(
        "{}{}",
        match (&config.tls, config.implicit_tls) {
            (None, _) => "plain text",
            (Some(_), false) => "STARTTLS",
            (Some(_), true) => "implicit TLS",
        },
        if config.auth.is_some() {
            ", AUTH required"
        } else {
            ""
        }
    );
    let hook = Arc::new(|m: &StoredMessage| out!("{}", message_line(m)));
    let server = match Server::bind_with(config, Some(hook)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("✗ cannot listen on {}: {e}", args.listen);
            return exit::TEMP_FAIL;
        }
    };
    // Install the handlers before saying "Ctrl-C to stop", so a Ctrl-C right after that line
    // stops the server cleanly instead of killing the process.
    let shutdown = shutdown_signal();
    eprintln!(
        "smtpkit serve: listening on {} ({summary}), storing in {}",
        server.local_addr(),
        args.dir.display()
    );
    if let Some(ca) = ca_note {
        eprintln!("  trust the server with `ca_file: {}`", ca.display());
    }
    eprintln!("  Ctrl-C to stop");
    match server.run_until(shutdown).await {
        Ok(()) => {
            eprintln!("smtpkit serve: stopped");
            exit::OK
        }
        Err(e) => {
            eprintln!("✗ {e}");
            exit::TEMP_FAIL
        }
    }
}

/// Completes on SIGINT or SIGTERM; the handlers are in place when this returns.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
