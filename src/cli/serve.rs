//! `smtpkit serve`: a local capture server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
  smtpkit serve --tls self-signed --xoauth2 me@example.com:ya29.test-token
  smtpkit serve --listen 127.0.0.1:4650 --tls cert.pem,key.pem --implicit-tls

  smtpkit serve --dir ./demo                        # serve a directory kept by `smtpkit demo --keep ./demo`

With --tls self-signed, the server writes the CA that signed its certificate to DIR/smtpkit-local-ca.pem:
point a provider's `ca_file` at it instead of setting `tls_skip_verify`.")]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:2525, or the address kept in
    /// DIR/smtpkit-serve.json].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Directory for the .eml files. A directory kept by `smtpkit demo --keep` holds
    /// smtpkit-serve.json: its port, certificate and password are used unless given here.
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
    /// Require AUTH XOAUTH2 with this user and OAuth 2.0 token (offered beside PLAIN and LOGIN
    /// with --auth); a wrong token is answered as Gmail answers it. Never read from or written
    /// to smtpkit-serve.json.
    #[arg(long, value_name = "USER:TOKEN")]
    pub xoauth2: Option<String>,
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

/// Where `serve` listens unless told otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:2525";

/// The file, in a `--dir`, of the settings to serve that directory with: written by
/// `smtpkit demo --keep`, so that `smtpkit serve --dir DIR` answers where the kept
/// configuration points (same port, certificate and password).
pub const KEPT_SETTINGS: &str = "smtpkit-serve.json";
/// The CA certificate in a `--dir`, for a provider's `ca_file`.
pub const CA_FILE: &str = "smtpkit-local-ca.pem";
/// The server's certificate and key that `smtpkit demo --keep` leaves in its directory.
pub const CERT_FILE: &str = "smtpkit-local-cert.pem";
/// See [`CERT_FILE`].
pub const KEY_FILE: &str = "smtpkit-local-key.pem";

/// What [`KEPT_SETTINGS`] holds: the values of `serve`'s own flags (`tls` as `CERT,KEY`,
/// relative to the directory; `auth` as `USER:PASS`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptSettings {
    pub listen: SocketAddr,
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub implicit_tls: bool,
    #[serde(default)]
    pub auth: Option<String>,
}

/// Writes a file only its owner may read (mode 0600 on Unix), also when it exists already.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        // An older file keeps its mode through `open`: narrow it before writing.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    use std::io::Write as _;
    options.open(path)?.write_all(contents)
}

/// The settings kept in `dir`, if it holds [`KEPT_SETTINGS`].
fn read_kept(dir: &Path) -> Result<Option<KeptSettings>, String> {
    let path = dir.join(KEPT_SETTINGS);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The user and token of `--xoauth2 USER:TOKEN` (split at the first colon), or why not.
fn parse_xoauth2_account(account: &str) -> Result<(&str, &str), &'static str> {
    let (user, token) = account
        .split_once(':')
        .ok_or("no colon between the user and the token")?;
    if user.is_empty() {
        return Err("the user is empty");
    }
    if token.is_empty() {
        return Err("the token is empty");
    }
    // 0x01 separates XOAUTH2's fields; a line end would end the client's AUTH line.
    if account.chars().any(char::is_control) {
        return Err("control characters are not allowed");
    }
    Ok((user, token))
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
    let kept = match read_kept(&args.dir) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("✗ {e}");
            return exit::CONFIG;
        }
    };
    let listen = args
        .listen
        .or(kept.as_ref().map(|k| k.listen))
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a socket address"));
    // Flags first, then what the directory keeps; certificate paths are the directory's.
    let kept_tls = kept.as_ref().and_then(|k| k.tls.as_deref()).map(|pair| {
        pair.split(',')
            .map(|p| args.dir.join(p).display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    let tls = args.tls.clone().or(kept_tls.clone());
    let implicit_tls =
        args.implicit_tls || (args.tls.is_none() && kept.as_ref().is_some_and(|k| k.implicit_tls));
    let auth = args
        .auth
        .clone()
        .or(kept.as_ref().and_then(|k| k.auth.clone()));
    if !listen.ip().is_loopback() && !args.public {
        eprintln!("✗ refusing to listen on {listen} (not loopback) without --public");
        return exit::USAGE;
    }
    let mut config = ServerConfig::new(listen, args.dir.clone());
    config.hostname = args.hostname.clone();
    config.implicit_tls = implicit_tls;
    config.allow_insecure_auth = args.allow_insecure_auth;
    config.limits.max_message_size = args.max_size;
    if let Some(auth) = &auth {
        let Some((user, pass)) = auth.split_once(':') else {
            eprintln!("✗ --auth wants USER:PASS");
            return exit::USAGE;
        };
        config.auth = Some((user.to_owned(), Secret::new(pass)));
    }
    if let Some(account) = &args.xoauth2 {
        match parse_xoauth2_account(account) {
            Ok((user, token)) => config.xoauth2 = Some((user.to_owned(), Secret::new(token))),
            Err(why) => {
                eprintln!("✗ --xoauth2 wants USER:TOKEN: {why}");
                return exit::USAGE;
            }
        }
    }
    let mut ca_note = None;
    if args.tls.is_none() && kept_tls.is_some() && args.dir.join(CA_FILE).is_file() {
        ca_note = Some(args.dir.join(CA_FILE));
    }
    match tls.as_deref() {
        None => {}
        Some("self-signed") => {
            let names = vec![args.hostname.clone(), listen.ip().to_string()];
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
            let ca_path = args.dir.join(CA_FILE);
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
        match (&config.auth, &config.xoauth2) {
            (None, None) => String::new(),
            (Some(_), None) => ", AUTH required".to_owned(),
            (None, Some((user, _))) => format!(", AUTH required: XOAUTH2 as {user}"),
            (Some(_), Some((user, _))) => {
                format!(", AUTH required: PLAIN or LOGIN, or XOAUTH2 as {user}")
            }
        }
    );
    let auth_unreachable = (config.auth.is_some() || config.xoauth2.is_some())
        && config.tls.is_none()
        && !config.allow_insecure_auth;
    let hook = Arc::new(|m: &StoredMessage| out!("{}", message_line(m)));
    let server = match Server::bind_with(config, Some(hook)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("✗ cannot listen on {listen}: {e}");
            return exit::TEMP_FAIL;
        }
    };
    // Install the handlers before saying "Ctrl-C to stop", so a Ctrl-C right after that line
    // stops the server cleanly instead of killing the process.
    let shutdown = super::shutdown_signal();
    eprintln!(
        "smtpkit serve: listening on {} ({summary}), storing in {}",
        server.local_addr(),
        args.dir.display()
    );
    if kept.is_some() {
        eprintln!(
            "  with the settings kept in {} (port, certificate, password), as `smtpkit demo --keep` left them",
            args.dir.join(KEPT_SETTINGS).display()
        );
    }
    if let Some(ca) = ca_note {
        eprintln!("  trust the server with `ca_file: {}`", ca.display());
    }
    if auth_unreachable {
        eprintln!(
            "  AUTH is offered only over TLS: add --tls self-signed, or --allow-insecure-auth"
        );
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
